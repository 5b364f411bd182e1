/* test_cli_logits.c — `moescope run --ids ... --dump-logits F.npy` on the Hugging Face
 * fixture writes a valid NumPy file (magic, header dict, shape [5, 48], float32) whose
 * values equal HF's float64 logits within 1e-5; generation with --ids prints the greedy
 * ids HF produced (--ignore-eos; by default it stops at EOS); `info` describes the model. */
#include "tests/tst.h"
#include "tests/util/tst_json.h"
#include "tests/util/tst_run.h"

int main(void) {
  char model[2048], npy[2048], p[2200];
  tst_path(model, sizeof model, "MOESCOPE_SRC", "tests/fixtures/hf_mixtral_tiny");
  snprintf(npy, sizeof npy, "%s/hf_logits.npy", tst_tmp_dir());
  tst_out o;
  tst_sh(&o, "%s run --model %s --ids 22,25,29,38,36 --dump-logits %s --record off", tst_bin(), model, npy);
  CHECKF(o.status == 0, "%s", o.err);
  FILE *f = fopen(npy, "rb");
  REQUIRE(f);
  unsigned char hdr[10];
  REQUIRE(fread(hdr, 1, 10, f) == 10);
  CHECK(memcmp(hdr, "\x93NUMPY\x01\x00", 8) == 0);
  int hl = hdr[8] | hdr[9] << 8;
  CHECK((10 + hl) % 64 == 0);
  char dict[1024] = {0};
  REQUIRE(hl < (int)sizeof dict && fread(dict, 1, (size_t)hl, f) == (size_t)hl);
  CHECK(strstr(dict, "'descr': '<f4'") && strstr(dict, "'shape': (5, 48)") && strstr(dict, "'fortran_order': False"));
  float lg[5 * 48];
  CHECK(fread(lg, sizeof(float), 5 * 48, f) == 5 * 48);
  CHECK(fgetc(f) == EOF);
  fclose(f);
  snprintf(p, sizeof p, "%s/hf_reference.json", model);
  cJSON *ref = tst_json_load(p);
  REQUIRE(ref);
  double maxd = 0;
  for (int i = 0; i < 5 * 48; i++) {
    double d = fabs(lg[i] - cJSON_GetArrayItem(tst_get(ref, "hf_logits"), i)->valuedouble);
    if (d > maxd) maxd = d;
  }
  printf("dumped logits vs HF: max diff %.3g\n", maxd);
  CHECK(maxd < 1e-5);
  cJSON_Delete(ref);
  /* greedy generation from ids (no tokenizer in the fixture): prints the ids */
  tst_sh(&o, "%s run --model %s --ids 22,25,29 --generate 4 --ignore-eos --record off", tst_bin(), model);
  CHECKF(o.status == 0, "%s", o.err);
  CHECKF(strstr(o.out, "17,20,10,17") != NULL, "generated: %s", o.out);
  /* without --ignore-eos generation stops at the config's eos (20) */
  tst_sh(&o, "%s run --model %s --ids 22,25,29 --generate 4 --record off", tst_bin(), model);
  CHECKF(o.status == 0 && strstr(o.out, "17,20") && !strstr(o.out, "17,20,"), "generated: %s", o.out);
  tst_sh(&o, "%s info %s", tst_bin(), model);
  CHECK(o.status == 0 && strstr(o.out, "mixtral") && strstr(o.out, "experts      4"));
  return tst_done();
}
