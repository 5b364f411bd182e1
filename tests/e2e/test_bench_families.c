/* test_bench_families.c — `moescope bench` works on every family from both formats.
 *
 * For each Hugging Face fixture family (tests/fixtures/hf_* with a config.json) and for the
 * GGUF file `moescope convert --type f16` makes of it, runs a short bench (--no-roofline,
 * small prefill/decode) and asserts what it prints: the model line names the family's
 * layer count, expert count and top-k as config.json gives them, the weight dtype is the
 * format's (F32 safetensors / F16 GGUF), and the table has one row per record level
 * (off, counts, topk, full) with positive prefill and decode tokens/s and a 0.0% overhead
 * for the "off" baseline. Speed itself is never asserted (benchmarks measure, tests check). */
#include "tests/tst.h"
#include "tests/util/tst_fixtures.h"
#include "tests/util/tst_run.h"

#include <cjson/cJSON.h>

static int cfg_int(const cJSON *c, const char *const *keys) {
  for (int i = 0; keys[i]; i++) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, keys[i]);
    if (cJSON_IsNumber(v)) return v->valueint;
  }
  return -1;
}

/* Parses the bench output; returns the number of level rows that are well formed. */
static int check_output(const char *what, const char *out, int layers, int experts, int top_k, const char *dtype) {
  char want[128];
  snprintf(want, sizeof want, ": %d layers, %d experts top-%d,", layers, experts, top_k);
  CHECKF(strstr(out, want) != NULL, "%s: bench model line should contain '%s':\n%s", what, want, out);
  snprintf(want, sizeof want, ", %s weights read in place", dtype);
  CHECKF(strstr(out, want) != NULL, "%s: bench should report %s weights:\n%s", what, dtype, out);
  static const char *const levels[] = {"off", "counts", "topk", "full"};
  int good = 0;
  for (int l = 0; l < 4; l++) {
    char pat[32];
    snprintf(pat, sizeof pat, "\n%s ", levels[l]);
    const char *p = strstr(out, pat);
    double pf = -1, po = -1, df = -1, dov = -1;
    int n = p ? sscanf(p + strlen(pat), "%lf %lf%% %lf %lf%%", &pf, &po, &df, &dov) : 0;
    CHECKF(n == 4, "%s: no well-formed '%s' row:\n%s", what, levels[l], out);
    if (n != 4) continue;
    CHECKF(pf > 0 && df > 0, "%s: %s row has non-positive throughput (%g, %g)", what, levels[l], pf, df);
    if (l == 0) CHECKF(po == 0 && dov == 0, "%s: the baseline row's overhead must be 0 (%g, %g)", what, po, dov);
    good += pf > 0 && df > 0;
  }
  return good;
}

static void bench_family(const char *dir, const char *fam) {
  char cfgp[4300];
  snprintf(cfgp, sizeof cfgp, "%s/config.json", dir);
  size_t cap = 1 << 16;
  char *txt = malloc(cap);
  REQUIRE(txt);
  tst_read_file(cfgp, txt, cap);
  cJSON *c = cJSON_Parse(txt);
  free(txt);
  REQUIRE(c);
  static const char *const k_layers[] = {"num_hidden_layers", 0};
  static const char *const k_exp[] = {"num_local_experts", "num_experts", "n_routed_experts", 0};
  static const char *const k_topk[] = {"num_experts_per_tok", 0};
  int layers = cfg_int(c, k_layers), experts = cfg_int(c, k_exp), top_k = cfg_int(c, k_topk);
  cJSON_Delete(c);
  REQUIRE(layers > 0 && experts > 0 && top_k > 0);

  tst_out o;
  char what[256];
  snprintf(what, sizeof what, "%s safetensors", fam);
  int st = tst_sh(&o, "'%s' bench --model '%s' --prefill 12 --decode 6 --reps 1 --threads 1 --no-roofline", tst_bin(), dir);
  CHECKF(st == 0, "%s: bench exit %d: %s", what, st, o.err);
  int rows_st = st == 0 ? check_output(what, o.out, layers, experts, top_k, "F32") : 0;

  char gguf[4096];
  snprintf(gguf, sizeof gguf, "%s/bench_%s_f16.gguf", tst_tmp(), fam);
  st = tst_sh(&o, "'%s' convert --model '%s' --to gguf --type f16 -o '%s'", tst_bin(), dir, gguf);
  CHECKF(st == 0, "%s: convert f16: %s", fam, o.err);
  int rows_gg = 0;
  if (st == 0) {
    snprintf(what, sizeof what, "%s gguf-f16", fam);
    st = tst_sh(&o, "'%s' bench --model '%s' --prefill 12 --decode 6 --reps 1 --threads 1 --no-roofline", tst_bin(), gguf);
    CHECKF(st == 0, "%s: bench exit %d: %s", what, st, o.err);
    rows_gg = st == 0 ? check_output(what, o.out, layers, experts, top_k, "F16") : 0;
    remove(gguf);
  }
  printf("%-14s bench rows ok: safetensors %d/4, gguf f16 %d/4\n", fam, rows_st, rows_gg);
}

int main(void) {
  int n = tst_each_hf_fixture("config.json", bench_family);
  CHECKF(n >= 7, "expected the 7 HF fixture families, found %d", n);
  return tst_done();
}
