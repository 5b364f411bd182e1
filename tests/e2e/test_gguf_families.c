/* test_gguf_families.c — `moescope convert --to gguf` round trip for every HF fixture family
 * (tests/fixtures/hf_* holding a config.json):
 *  - f32: `moescope run --dump-logits` on the safetensors folder and on the GGUF give
 *    byte-identical .npy files;
 *  - f16: the model loaded from the GGUF (eng_model_load on the .gguf path) routes every
 *    (layer, position) to the same expert set as the safetensors model and its logits are
 *    within 1e-3 of the logit range;
 *  - families convert cannot write (gpt_oss) are refused with one line naming the
 *    model_type, exit status non-zero and no output file left behind. */
#include "engine/eng_forward.h"
#include "engine/eng_gguf.h"
#include "tests/tst.h"
#include "tests/util/tst_json.h"
#include "tests/util/tst_run.h"

#include <dirent.h>
#include <sys/stat.h>

#define N_IDS 16

typedef struct { float *logits; int *experts; int n_layers, top_k, vocab; } fwd_out;

static fwd_out forward(const char *model, const int *ids_mod) {
  char err[512];
  eng_model m;
  int rc = eng_model_load(&m, model, err, sizeof err);
  if (rc) fprintf(stderr, "%s: %s\n", model, err);
  REQUIRE(rc == 0);
  eng_policy *pol;
  REQUIRE(eng_policy_create(&pol, "native", m.cfg.n_experts, m.cfg.top_k, 1, err, sizeof err) == 0);
  tst_routes routes;
  prb_probe probe = tst_routes_probe(&routes, m.cfg.n_layers, m.cfg.top_k, m.cfg.n_experts, 64);
  eng_ctx c;
  REQUIRE(eng_ctx_init(&c, &m, krn_ref_backend(), pol, probe, 64, 64, err, sizeof err) == 0);
  int ids[N_IDS];
  for (int i = 0; i < N_IDS; i++) ids[i] = ids_mod[i] % m.cfg.vocab;
  fwd_out o = {.n_layers = m.cfg.n_layers, .top_k = m.cfg.top_k, .vocab = m.cfg.vocab};
  o.logits = malloc(sizeof(float) * N_IDS * (size_t)m.cfg.vocab);
  REQUIRE(o.logits && eng_forward(&c, ids, N_IDS, ENG_LOGITS_ALL, o.logits, 0, 0, err, sizeof err) >= 0);
  size_t ne = (size_t)m.cfg.n_layers * 64 * m.cfg.top_k;
  o.experts = malloc(sizeof(int) * ne);
  REQUIRE(o.experts);
  memcpy(o.experts, routes.experts, sizeof(int) * ne);
  for (size_t i = 0; i < ne; i += (size_t)o.top_k) /* compare sets: sort each top-k */
    for (int a = 0; a < o.top_k; a++)
      for (int b = a + 1; b < o.top_k; b++)
        if (o.experts[i + b] < o.experts[i + a]) { int t = o.experts[i + a]; o.experts[i + a] = o.experts[i + b]; o.experts[i + b] = t; }
  eng_ctx_free(&c);
  tst_routes_free(&routes);
  eng_policy_free(pol);
  eng_model_free(&m);
  return o;
}

static int files_equal(const char *a, const char *b) {
  FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
  int eq = fa && fb;
  while (eq) {
    int x = fgetc(fa), y = fgetc(fb);
    if (x != y) eq = 0;
    if (x == EOF || y == EOF) break;
  }
  if (fa) fclose(fa);
  if (fb) fclose(fb);
  return eq;
}

static void check_refused(const char *dir, const char *fam) {
  char gguf[4096];
  snprintf(gguf, sizeof gguf, "%s/fam_%s.gguf", tst_tmp(), fam);
  remove(gguf);
  tst_out o;
  int st = tst_sh(&o, "'%s' convert --model '%s' --to gguf --type f32 -o '%s'", tst_bin(), dir, gguf);
  char want[256];
  snprintf(want, sizeof want, "model_type '%s' cannot be converted", fam);
  CHECKF(st != 0 && st < 128, "%s: convert should be refused cleanly (status %d)", fam, st);
  CHECKF(strstr(o.err, want) != NULL, "%s: refusal should name the model_type: %s", fam, o.err);
  CHECKF(tst_count_lines(o.err) == 1, "%s: refusal should be one line: %s", fam, o.err);
  struct stat sb;
  CHECKF(stat(gguf, &sb) != 0, "%s: no output file after a refusal", fam);
  printf("%-16s refused: %s", fam, o.err);
}

static void check_family(const char *dir, const char *fam) {
  char gguf[4096], a[4096], b[4096];
  tst_out o;
  /* f32: byte-identical logits through the CLI */
  snprintf(gguf, sizeof gguf, "%s/fam_%s_f32.gguf", tst_tmp(), fam);
  snprintf(a, sizeof a, "%s/fam_%s_st.npy", tst_tmp(), fam);
  snprintf(b, sizeof b, "%s/fam_%s_gguf.npy", tst_tmp(), fam);
  int st = tst_sh(&o, "'%s' convert --model '%s' --to gguf --type f32 -o '%s'", tst_bin(), dir, gguf);
  CHECKF(st == 0, "%s: convert f32: %s", fam, o.err);
  if (st) return;
  st = tst_sh(&o, "'%s' run --model '%s' --ids 1,5,9,12 --record off --dump-logits '%s' --quiet", tst_bin(), dir, a);
  CHECKF(st == 0, "%s: run safetensors: %s", fam, o.err);
  st |= tst_sh(&o, "'%s' run --model '%s' --ids 1,5,9,12 --record off --dump-logits '%s' --quiet", tst_bin(), gguf, b);
  CHECKF(st == 0, "%s: run gguf: %s", fam, o.err);
  int same = st == 0 && files_equal(a, b);
  CHECKF(same, "%s: f32 GGUF logits differ from safetensors", fam);
  remove(gguf);
  remove(a);
  remove(b);
  /* f16: same routing, logits within 1e-3 */
  snprintf(gguf, sizeof gguf, "%s/fam_%s_f16.gguf", tst_tmp(), fam);
  st = tst_sh(&o, "'%s' convert --model '%s' --to gguf --type f16 -o '%s'", tst_bin(), dir, gguf);
  CHECKF(st == 0, "%s: convert f16: %s", fam, o.err);
  if (st) return;
  int ids[N_IDS];
  for (int i = 0; i < N_IDS; i++) ids[i] = i * 37 + 5;
  fwd_out r0 = forward(dir, ids), r1 = forward(gguf, ids);
  REQUIRE(r0.vocab == r1.vocab && r0.n_layers == r1.n_layers && r0.top_k == r1.top_k);
  double maxd = 0, lo = 1e30, hi = -1e30;
  for (size_t i = 0; i < (size_t)N_IDS * r0.vocab; i++) {
    maxd = fmax(maxd, fabs((double)r0.logits[i] - r1.logits[i]));
    lo = fmin(lo, r0.logits[i]);
    hi = fmax(hi, r0.logits[i]);
  }
  int diff_sets = 0;
  for (int l = 0; l < r0.n_layers; l++)
    for (int t = 0; t < N_IDS; t++)
      if (memcmp(r0.experts + ((size_t)l * 64 + t) * r0.top_k, r1.experts + ((size_t)l * 64 + t) * r0.top_k,
                 sizeof(int) * (size_t)r0.top_k))
        diff_sets++;
  printf("%-16s f32 logits %s; f16 max|dlogit| = %.3g (logit range %.3g), routing sets differing %d/%d\n", fam,
         same ? "identical" : "DIFFER", maxd, hi - lo, diff_sets, r0.n_layers * N_IDS);
  CHECKF(diff_sets == 0, "%s f16: %d routing sets differ", fam, diff_sets);
  /* f16 rounds each weight by up to 2^-11 relative: ~1e-3 absolute on these random
   * fixtures, so the bound is relative to the logit range (as test_convert_gguf) */
  CHECKF(maxd <= 1e-3 * (hi - lo), "%s f16: logits differ by %.3g (range %.3g)", fam, maxd, hi - lo);
  free(r0.logits); free(r0.experts); free(r1.logits); free(r1.experts);
  remove(gguf);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(void) {
  char root[4096];
  tst_path(root, sizeof root, "MOESCOPE_SRC", "tests/fixtures");
  DIR *d = opendir(root);
  REQUIRE(d != NULL);
  char *names[64];
  int n = 0;
  for (struct dirent *e; (e = readdir(d)) && n < 64;)
    if (!strncmp(e->d_name, "hf_", 3)) names[n++] = strdup(e->d_name);
  closedir(d);
  qsort(names, (size_t)n, sizeof *names, cmp_str);
  int n_checked = 0;
  for (int i = 0; i < n; i++) {
    char dir[4200], cfgp[4300], cfg[65536];
    snprintf(dir, sizeof dir, "%s/%s", root, names[i]);
    snprintf(cfgp, sizeof cfgp, "%s/config.json", dir);
    struct stat sb;
    if (stat(cfgp, &sb) == 0) {
      tst_read_file(cfgp, cfg, sizeof cfg);
      const char *fam = names[i] + 3;
      if (strstr(cfg, "\"gpt_oss\"")) check_refused(dir, "gpt_oss");
      else { check_family(dir, fam); n_checked++; }
    }
    free(names[i]);
  }
  CHECKF(n_checked >= 6, "expected at least 6 convertible families, found %d", n_checked);
  return tst_done();
}
