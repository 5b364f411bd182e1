/* test_fidelity_qwen2moe.c — the engine (qwen2_moe family: q/k/v biases, fine-grained experts,
 * softmax top-4 without renormalisation, sigmoid-gated shared expert) against the float64
 * reference of the trained tiny-qwen2moe (../shared/models/tiny-qwen2moe, F32; skipped when
 * absent). For every reference prompt: the expert set of every token and layer, gate weights
 * within 1e-4 absolute / 1e-5 relative, final logits within 1e-3, mean nll within 1e-4 and the
 * greedy continuation.
 *
 * Near-ties (models/README.md): router probability gaps below 1e-5 at (github, layer 1,
 * pos 37) and (c4, layer 0, pos 23); a float32 engine may legitimately choose the other
 * expert there. When it does, that (layer, position) is reported, and only what is upstream
 * of it is compared: routing at earlier positions (all layers) and at that position in
 * earlier layers; final logits, nll and the greedy continuation of that prompt depend on it
 * and are skipped. A difference anywhere else fails. */
#include "engine/eng_forward.h"
#include "engine/eng_session.h"
#include "tests/tst.h"
#include "tests/util/tst_json.h"

#define CAP 1024

typedef struct { const char *domain; int layer, pos; } near_tie;
static const near_tie TIES[] = {{"github", 1, 37}, {"c4", 0, 23}};

static int find_tie(const char *domain, int layer, int pos) {
  for (size_t i = 0; i < sizeof TIES / sizeof TIES[0]; i++)
    if (!strcmp(domain, TIES[i].domain) && TIES[i].layer == layer && TIES[i].pos == pos) return 1;
  return 0;
}

int main(void) {
  tst_need_shared("models/tiny-qwen2moe/reference.json");
  char dir[4096], rp[4200], err[512];
  snprintf(dir, sizeof dir, "%s/models/tiny-qwen2moe", tst_shared());
  snprintf(rp, sizeof rp, "%s/reference.json", dir);
  cJSON *ref = tst_json_load(rp);
  REQUIRE(ref);
  eng_model m;
  if (eng_model_load(&m, dir, err, sizeof err)) { fprintf(stderr, "%s\n", err); REQUIRE(0); }
  CHECK(m.cfg.family == ENG_FAM_QWEN2_MOE && m.cfg.norm_topk_prob == 0 && m.cfg.shared_gated == 1);
  eng_policy *pol;
  REQUIRE(eng_policy_create_cfg(&pol, "native", &m.cfg.router, err, sizeof err) == 0);
  tst_routes R;
  int K = m.cfg.top_k, V = m.cfg.vocab;
  prb_probe probe = tst_routes_probe(&R, m.cfg.n_layers, K, m.cfg.n_experts, CAP);
  eng_ctx c;
  REQUIRE(eng_ctx_init(&c, &m, krn_cpu_backend(), pol, probe, CAP, 256, err, sizeof err) == 0);
  float *logits = malloc(sizeof(float) * 256 * (size_t)V);
  double worst_logit = 0, worst_w = 0, worst_rel = 0, worst_nll = 0;
  int mismatches = 0, pairs = 0, prompts = 0, tie_flips = 0;
  for (const cJSON *P = tst_get(ref, "prompts")->child; P; P = P->next, prompts++) {
    const char *dom = tst_get(P, "domain")->valuestring;
    int ids[CAP];
    int n = tst_int_array(tst_get(P, "ids"), ids, CAP);
    REQUIRE(n > 1 && n <= 256);
    eng_ctx_reset(&c);
    REQUIRE(eng_forward(&c, ids, n, ENG_LOGITS_ALL, logits, 0, 0, err, sizeof err) >= 0);
    /* routing, layer by layer; a flip at a listed near-tie cuts off what depends on it */
    int cut_layer = 1 << 30, cut_pos = 1 << 30;
    for (const cJSON *L = tst_get(P, "routing")->child; L; L = L->next) {
      int l = tst_get(L, "layer")->valueint, t = 0;
      const cJSON *W = tst_get(L, "weights")->child;
      for (const cJSON *Ex = tst_get(L, "experts")->child; Ex; Ex = Ex->next, W = W ? W->next : NULL, t++) {
        if (t >= cut_pos && l >= cut_layer) continue;   /* downstream of a near-tie flip */
        int want[16] = {0};
        tst_int_array(Ex, want, K);
        const int *got = R.experts + ((size_t)l * CAP + t) * K;
        const float *gw = R.weights + ((size_t)l * CAP + t) * K;
        pairs++;
        int same = 1;
        for (int j = 0; j < K; j++) if (got[j] != want[j]) same = 0;
        if (!same && find_tie(dom, l, t)) {
          tie_flips++;
          printf("note: %s layer %d pos %d: near-tie resolved differently (documented); downstream not compared\n", dom, l, t);
          if (l < cut_layer || (l == cut_layer && t < cut_pos)) { cut_layer = l; cut_pos = t; }
          continue;
        }
        if (!same) { mismatches++; fprintf(stderr, "%s layer %d pos %d: experts differ\n", dom, l, t); continue; }
        int j = 0;
        for (const cJSON *w = W ? W->child : NULL; w && j < K; w = w->next, j++) {
          double d = fabs(gw[j] - w->valuedouble), r = d / fabs(w->valuedouble);
          if (d > worst_w) worst_w = d;
          if (r > worst_rel) worst_rel = r;
        }
      }
    }
    if (cut_pos < (1 << 30)) continue;   /* final logits depend on the flipped decision */
    const float *last = logits + (size_t)(n - 1) * V;
    int v = 0;
    for (const cJSON *x = tst_get(P, "final_logits")->child; x; x = x->next, v++) {
      double d = fabs(last[v] - x->valuedouble);
      if (d > worst_logit) worst_logit = d;
    }
    CHECK(v == V);
    double nll = 0;
    for (int t = 0; t + 1 < n; t++) {
      const float *z = logits + (size_t)t * V;
      double mx = -1e30, s = 0;
      for (int i = 0; i < V; i++) if (z[i] > mx) mx = z[i];
      for (int i = 0; i < V; i++) s += exp(z[i] - mx);
      nll += -(z[ids[t + 1]] - mx - log(s));
    }
    nll /= (n - 1);
    double dn = fabs(nll - tst_get(P, "mean_nll")->valuedouble);
    if (dn > worst_nll) worst_nll = dn;
    int want_g[64], got_g[64], ng = 0;
    int nwant = tst_int_array(tst_get(P, "greedy_new_ids"), want_g, 64);
    eng_sampler s = {0, 1, 0};
    REQUIRE(eng_generate(&c, ids, n, nwant, &s, -1, 1, got_g, &ng, NULL, NULL, NULL, NULL, err, sizeof err) == 0);
    CHECK(ng == nwant);
    for (int i = 0; i < nwant && i < ng; i++) CHECKF(got_g[i] == want_g[i], "%s greedy step %d: %d vs %d", dom, i, got_g[i], want_g[i]);
  }
  printf("tiny-qwen2moe: %d prompts, max|final logit diff| %.3g, max|gate weight diff| %.3g (rel %.3g), "
         "max|mean nll diff| %.3g, routing mismatches %d/%d, documented near-tie flips %d\n", prompts, worst_logit,
         worst_w, worst_rel, worst_nll, mismatches, pairs, tie_flips);
  CHECK(prompts == 6);
  CHECKF(worst_logit <= 1e-3, "final logits differ by %g", worst_logit);
  CHECKF(worst_w <= 1e-4 && worst_rel <= 1e-5, "gate weights differ by %g (rel %g)", worst_w, worst_rel);
  CHECKF(worst_nll <= 1e-4, "mean nll differs by %g", worst_nll);
  CHECK(mismatches == 0);
  CHECK(pairs > 1000);
  free(logits);
  eng_ctx_free(&c);
  tst_routes_free(&R);
  eng_policy_free(pol);
  eng_model_free(&m);
  cJSON_Delete(ref);
  return tst_done();
}
