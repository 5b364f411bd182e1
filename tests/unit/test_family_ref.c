/* test_family_ref.c — every family against the float64 reference forward
 * (tests/util/ref_forward.c, written independently of the engine): for a small model made
 * by `synth --family F` (3 layers, random weights), one 16-token prefill through the
 * optimised CPU engine: logits at every position within 1e-4 absolute, the same expert set
 * for every token and layer (dense layers have none), gate weights within 1e-5 relative;
 * then the same prompt token by token through the KV cache (decode path) with the same
 * logit tolerance. Switch (capacity per batch) is checked on the prefill only, and must
 * have dropped tokens. Also: synth refuses unknown families and planting on non-Mixtral
 * layouts, and `info`-relevant config fields come out right. */
#include "engine/eng_forward.h"
#include "engine/eng_synth.h"
#include "tests/tst.h"
#include "tests/util/ref_forward.h"
#include "tests/util/tst_json.h"

#define NT 16

static double check_family(const char *fam, int top_k, int experts) {
  char dir[4096], err[512];
  snprintf(dir, sizeof dir, "%s/family_ref_%s", tst_tmp_dir(), fam);
  eng_synth_opts o;
  eng_synth_defaults(&o);
  o.family = fam; o.layers = 3; o.top_k = top_k; o.experts = experts; o.seed = 11;
  o.vocab = 300; o.intermediate = 32; o.max_pos = 256;
  if (eng_synth_write(&o, dir, err, sizeof err)) { fprintf(stderr, "%s: %s\n", fam, err); REQUIRE(0); }
  eng_model m;
  if (eng_model_load(&m, dir, err, sizeof err)) { fprintf(stderr, "%s: %s\n", fam, err); REQUIRE(0); }
  int V = m.cfg.vocab, L = m.cfg.n_layers, ids[NT];
  for (int t = 0; t < NT; t++) ids[t] = (t * 37 + 11) % (V - 1);
  ref_out ro;
  if (ref_forward(dir, ids, NT, &ro, err, sizeof err)) { fprintf(stderr, "%s: %s\n", fam, err); REQUIRE(0); }
  eng_policy *pol;
  REQUIRE(eng_policy_create(&pol, "native", m.cfg.n_experts, m.cfg.top_k, m.cfg.norm_topk_prob, err, sizeof err) == 0);
  tst_routes R;
  int K = m.cfg.top_k;
  CHECK(K == ro.k);
  prb_probe probe = tst_routes_probe(&R, L, K, m.cfg.n_experts, NT);
  eng_ctx c;
  REQUIRE(eng_ctx_init(&c, &m, krn_cpu_backend(), pol, probe, 64, NT, err, sizeof err) == 0);
  float *lg = malloc(sizeof(float) * NT * (size_t)V);
  for (size_t i = 0; i < (size_t)L * NT * K; i++) R.experts[i] = -2;
  REQUIRE(eng_forward(&c, ids, NT, ENG_LOGITS_ALL, lg, 0, 0, err, sizeof err) >= 0);
  double worst = 0, worst_w = 0, worst_dec = 0;
  for (size_t i = 0; i < (size_t)NT * V; i++) worst = fmax(worst, fabs(lg[i] - ro.logits[i]));
  int mism = 0, drops = 0;
  for (int l = 0; l < L; l++)
    for (int t = 0; t < NT; t++) {
      const int *ge = R.experts + ((size_t)l * NT + t) * K, *we = ro.experts + ((size_t)l * NT + t) * K;
      const float *gw = R.weights + ((size_t)l * NT + t) * K;
      const double *ww = ro.weights + ((size_t)l * NT + t) * K;
      if (we[0] == -1 && !m.cfg.moe_layer[l]) { CHECK(ge[0] == -2); continue; }  /* dense layer: no event */
      for (int j = 0; j < K; j++) {
        if (we[j] < 0) drops++;
        int found = -1;
        for (int i = 0; i < K; i++) if (ge[i] == we[j]) found = i;
        if (found < 0) { mism++; fprintf(stderr, "%s layer %d pos %d: expert %d missing\n", fam, l, t, we[j]); continue; }
        if (we[j] >= 0) worst_w = fmax(worst_w, fabs(gw[found] - ww[j]) / fabs(ww[j]));
      }
    }
  if (strcmp(fam, "switch")) {   /* decode path: token by token through the KV cache */
    eng_ctx_reset(&c);
    for (int t = 0; t < NT; t++) {
      REQUIRE(eng_forward(&c, ids + t, 1, ENG_LOGITS_LAST, lg, 0, t, err, sizeof err) >= 0);
      for (int v = 0; v < V; v++) worst_dec = fmax(worst_dec, fabs(lg[v] - ro.logits[(size_t)t * V + v]));
    }
  } else {
    CHECKF(drops > 0, "switch: capacity never dropped a token");
  }
  printf("%-13s router %-22s max|logit - f64| prefill %.2e decode %.2e, max rel gate weight diff %.2e, "
         "expert-set mismatches %d, dropped slots %d\n", fam, eng_router_kind_name(m.cfg.router.kind), worst, worst_dec,
         worst_w, mism, drops);
  CHECKF(worst <= 1e-4, "%s: logits differ by %g", fam, worst);
  CHECKF(worst_dec <= 1e-4, "%s: decode logits differ by %g", fam, worst_dec);
  CHECKF(worst_w <= 1e-5, "%s: gate weights differ by %g relative", fam, worst_w);
  CHECK(mism == 0);
  free(lg);
  eng_ctx_free(&c);
  tst_routes_free(&R);
  eng_policy_free(pol);
  eng_model_free(&m);
  ref_out_free(&ro);
  return worst;
}

int main(void) {
  check_family("mixtral", 2, 8);
  check_family("qwen2_moe", 4, 8);
  check_family("qwen3_moe", 2, 8);
  check_family("olmoe", 4, 8);
  check_family("deepseek_v2", 2, 8);
  check_family("deepseek_v3", 3, 8);
  check_family("gpt_oss", 2, 8);
  check_family("switch", 1, 8);
  check_family("hierarchical", 2, 8);
  /* config facts per family */
  {
    char dir[4096], err[512];
    eng_config cf;
    snprintf(dir, sizeof dir, "%s/family_ref_qwen2_moe/config.json", tst_tmp_dir());
    REQUIRE(eng_config_load(&cf, dir, err, sizeof err) == 0);
    CHECK(cf.family == ENG_FAM_QWEN2_MOE && cf.moe_layer[0] && !cf.moe_layer[1] && cf.moe_layer[2] && cf.shared_gated &&
          cf.qkv_bias && !cf.norm_topk_prob);
    snprintf(dir, sizeof dir, "%s/family_ref_deepseek_v3/config.json", tst_tmp_dir());
    REQUIRE(eng_config_load(&cf, dir, err, sizeof err) == 0);
    CHECK(cf.mla && !cf.moe_layer[0] && cf.moe_layer[1] && cf.router.kind == ENG_ROUTER_SIGMOID_GROUP &&
          cf.router.n_group == 4 && cf.router.topk_group == 2 && cf.rope_yarn && cf.rope_interleave &&
          fabs(cf.router.scale - 2.5) < 1e-6);
    snprintf(dir, sizeof dir, "%s/family_ref_gpt_oss/config.json", tst_tmp_dir());
    REQUIRE(eng_config_load(&cf, dir, err, sizeof err) == 0);
    CHECK(cf.sliding[0] && !cf.sliding[1] && cf.sliding[2] && cf.sliding_window == 4 && cf.attn_sinks &&
          cf.router.kind == ENG_ROUTER_TOPK_SOFTMAX && cf.rope_attn_factor > 1.3);
  }
  /* synth refusals */
  {
    char err[512];
    eng_synth_opts o;
    eng_synth_defaults(&o);
    o.family = "bogus";
    CHECK(eng_synth_validate(&o, err, sizeof err) == -1 && strstr(err, "unknown family"));
    o.family = "olmoe"; o.plant = "collapse";
    CHECK(eng_synth_validate(&o, err, sizeof err) == -1 && strstr(err, "--plant"));
    o.family = "switch";
    CHECK(eng_synth_validate(&o, err, sizeof err) == 0);
  }
  return tst_done();
}
