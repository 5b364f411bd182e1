/* test_cuda_families.c — GPU label: the GPU forward (engine/eng_cuda.c) against the CPU
 * engine on small synthetic BF16 models of each family the GPU supports (moescope synth:
 * mixtral; qwen2_moe: qkv biases, sigmoid-gated shared expert, no renormalisation;
 * qwen3_moe: per-head qk-norm; olmoe: full qk-norm; switch: capacity router and
 * hierarchical: two-level router, both through the CPU policy between kernels), with the
 * same comparison as test_cuda_forward.c (float32 linears: logits within 2e-3 relative;
 * default cuBLAS prefill: 1e-2; identical expert sets except CPU near-ties). MLA families
 * (deepseek_v2/v3) and gpt_oss must be refused with one clear error. Skips (77) without a
 * device. */
#include "engine/eng_synth.h"
#include "tests/gpu/cuda_fwd.h"

static void family(const char *fam, int expect_ok) {
  char dir[4096], err[512];
  snprintf(dir, sizeof dir, "%s/cuda_synth_%s", tst_tmp_dir(), fam);
  eng_synth_opts o;
  eng_synth_defaults(&o);
  o.family = fam;
  o.dtype = "bf16";
  o.vocab = 512;
  o.max_pos = 512;
  if (eng_synth_write(&o, dir, err, sizeof err)) { fprintf(stderr, "synth %s: %s\n", fam, err); CHECK(0); return; }
  eng_model m;
  if (eng_model_load(&m, dir, err, sizeof err)) { fprintf(stderr, "load %s: %s\n", fam, err); CHECK(0); return; }
  if (!expect_ok) {
    eng_policy *pol = NULL;
    REQUIRE(eng_policy_create_cfg(&pol, "native", &m.cfg.router, err, sizeof err) == 0);
    eng_cuda_ctx *c = NULL;
    int rc = eng_cuda_ctx_init(&c, &m, pol, prb_probe_none(), 64, 16, err, sizeof err);
    printf("%s: refused as expected: %s\n", fam, err);
    CHECK(rc == -1 && c == NULL && strstr(err, "not implemented on the GPU"));
    eng_policy_free(pol);
    eng_model_free(&m);
    return;
  }
  REQUIRE(m.cfg.n_layers <= MAXL && m.cfg.n_experts <= MAXE);
  int V = m.cfg.vocab, T = NPRE + NDEC;
  int *ids = malloc(sizeof(int) * T);
  for (int i = 0; i < T; i++) ids[i] = (int)(((unsigned)i * 2654435761u >> 7) % (unsigned)V);
  float *lc = malloc(sizeof(float) * (size_t)T * V), *lg = malloc(sizeof(float) * (size_t)T * V);
  rec *rc = calloc(1, sizeof(rec)), *rg = calloc(1, sizeof(rec));
  run_cpu(&m, ids, lc, rc);
  char what[128];
  snprintf(what, sizeof what, "%s float32 linears", fam);
  CHECK(run_gpu(&m, ids, lg, rg, KRN_LIN_TILED) == 0);
  compare(&m, lc, lg, rc, rg, 2e-3, what);
  memset(rg, 0, sizeof *rg);
  snprintf(what, sizeof what, "%s auto", fam);
  CHECK(run_gpu(&m, ids, lg, rg, KRN_LIN_AUTO) == 0);
  compare(&m, lc, lg, rc, rg, 1e-2, what);
  free(ids); free(lc); free(lg); free(rc); free(rg);
  eng_model_free(&m);
}

int main(void) {
  ct_need_device();
  family("mixtral", 1);
  family("qwen2_moe", 1);
  family("qwen3_moe", 1);
  family("olmoe", 1);
  family("switch", 1);
  family("hierarchical", 1);
  family("deepseek_v2", 0);
  family("deepseek_v3", 0);
  family("gpt_oss", 0);
  return tst_done();
}
