/* cuda_fwd.h — helpers of the GPU forward tests: a probe that keeps the routing of every
 * (layer, position) and counts op timings, CPU and GPU runs of the same token stream
 * (prefill 100 tokens as 64 + 36, then 6 decode steps), and the comparison (logits within
 * a relative tolerance, identical expert sets except near-ties: CPU margin < 2e-3 on the
 * scores the router selects by, group scores included for the DeepSeek group routers; a
 * token whose experts flipped at a near-tie is left out of the logit and weight checks). */
#ifndef MOESCOPE_CUDA_FWD_H
#define MOESCOPE_CUDA_FWD_H

#include "engine/eng_cuda.h"
#include "engine/eng_forward.h"
#include "engine/eng_model.h"
#include "kernels/krn_backend.h"
#include "tests/gpu/cuda_tst.h"
#include "tests/tst.h"

#define MAXT 128
#define MAXL 8
#define MAXK 8
#define MAXE 64

typedef struct rec {
  int ex[MAXL][MAXT][MAXK];
  float w[MAXL][MAXT][MAXK];
  float pr[MAXL][MAXT][MAXE];
  int seen[MAXL][MAXT];
  int k, n_ops;
} rec;

static void on_route(void *ctx, const prb_route_batch *rb) {
  rec *r = ctx;
  r->k = rb->k;
  for (int t = 0; t < rb->n_tokens; t++) {
    int pos = rb->pos[t];
    if (pos < 0 || pos >= MAXT || rb->layer >= MAXL || rb->k > MAXK || rb->n_experts > MAXE) continue;
    for (int j = 0; j < rb->k; j++) {
      r->ex[rb->layer][pos][j] = rb->experts[t * rb->k + j];
      r->w[rb->layer][pos][j] = rb->weights[t * rb->k + j];
    }
    if (rb->probs) memcpy(r->pr[rb->layer][pos], rb->probs + (size_t)t * rb->n_experts, sizeof(float) * rb->n_experts);
    r->seen[rb->layer][pos]++;
  }
}
static void on_op(void *ctx, int64_t b, int l, int op, int e, uint64_t s, uint64_t en, int th) {
  (void)b; (void)l; (void)op; (void)e; (void)th;
  rec *r = ctx;
  if (en >= s) r->n_ops++;
}
static prb_probe probe_of(rec *r) {
  prb_probe p = prb_probe_none();
  p.ctx = r;
  p.level = PRB_LEVEL_FULL;
  p.route = on_route;
  p.op = on_op;
  return p;
}

static int cmp_set(const int *a, const int *b, int k) {   /* same set of k experts */
  for (int i = 0; i < k; i++) {
    int f = 0;
    for (int j = 0; j < k; j++) f |= a[i] == b[j];
    if (!f) return 0;
  }
  return 1;
}

/* k-th minus (k+1)-th value of v[0..n) */
static float kgap(const float *v, int n, int k) {
  float s[MAXE];
  memcpy(s, v, sizeof(float) * n);
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++) if (s[j] > s[i]) { float t = s[i]; s[i] = s[j]; s[j] = t; }
  return k < n ? s[k - 1] - s[k] : 1.0f;
}

/* How close a CPU routing decision was to a tie, on the scores the router selects by
 * (eng_policy.c): probabilities, or for DeepSeek-V3 sigmoid + selection bias; for the
 * group routers also the gap between the last kept and the first dropped group score, and
 * the expert gap only among the kept groups. */
static float margin_of(const eng_model *m, int l, const float *p) {
  const eng_router_cfg *rc = &m->cfg.router;
  int E = rc->n_experts, k = rc->k, G = rc->n_group > 0 ? rc->n_group : 1, tg = rc->topk_group;
  float sel[MAXE];
  for (int e = 0; e < E; e++)
    sel[e] = p[e] + (rc->kind == ENG_ROUTER_SIGMOID_GROUP && m->layers[l].score_bias ? m->layers[l].score_bias[e] : 0.0f);
  if ((rc->kind != ENG_ROUTER_GROUP_LIMITED && rc->kind != ENG_ROUTER_SIGMOID_GROUP) || G <= 1 || tg >= G || E % G)
    return kgap(sel, E, k);
  int per = E / G;
  float gs[MAXE];
  for (int g = 0; g < G; g++) {
    if (rc->kind == ENG_ROUTER_GROUP_LIMITED) {
      gs[g] = -INFINITY;
      for (int e = g * per; e < (g + 1) * per; e++) if (sel[e] > gs[g]) gs[g] = sel[e];
    } else {
      float a = -INFINITY, b = -INFINITY;
      for (int e = g * per; e < (g + 1) * per; e++) {
        if (sel[e] > a) { b = a; a = sel[e]; } else if (sel[e] > b) b = sel[e];
      }
      gs[g] = a + (per >= 2 ? b : 0.0f);
    }
  }
  float gm = kgap(gs, G, tg), cut = -INFINITY, kept[MAXE];
  { float t[MAXE]; memcpy(t, gs, sizeof(float) * G);
    for (int i = 0; i < G; i++) for (int j = i + 1; j < G; j++) if (t[j] > t[i]) { float x = t[i]; t[i] = t[j]; t[j] = x; }
    cut = t[tg - 1]; }
  int nk = 0;
  for (int g = 0; g < G; g++)
    if (gs[g] >= cut) for (int e = g * per; e < (g + 1) * per; e++) kept[nk++] = sel[e];
  float em = kgap(kept, nk, k);
  return gm < em ? gm : em;
}

#define NPRE 100
#define NDEC 6

static void run_cpu(const eng_model *m, const int *ids, float *logits, rec *r) {
  eng_policy *pol = NULL;
  char err[512];
  REQUIRE(eng_policy_create_cfg(&pol, "native", &m->cfg.router, err, sizeof err) == 0);
  eng_ctx c;
  REQUIRE(eng_ctx_init(&c, m, krn_cpu_backend(), pol, probe_of(r), 256, 64, err, sizeof err) == 0);
  int V = m->cfg.vocab;
  REQUIRE(eng_forward(&c, ids, 64, ENG_LOGITS_ALL, logits, 0, 0, err, sizeof err) >= 0);
  REQUIRE(eng_forward(&c, ids + 64, NPRE - 64, ENG_LOGITS_ALL, logits + (size_t)64 * V, 0, 64, err, sizeof err) >= 0);
  for (int i = 0; i < NDEC; i++)
    REQUIRE(eng_forward(&c, ids + NPRE + i, 1, ENG_LOGITS_LAST, logits + (size_t)(NPRE + i) * V, 0, NPRE + i, err, sizeof err) >= 0);
  eng_ctx_free(&c);
  eng_policy_free(pol);
}

/* expert_gemm: ENG_EXPERT_GEMM_* (eng_cuda_set_expert_gemm); run_gpu keeps the default. */
static int run_gpu_eg(const eng_model *m, const int *ids, float *logits, rec *r, int linear_mode, int expert_gemm) {
  eng_policy *pol = NULL;
  char err[512];
  REQUIRE(eng_policy_create_cfg(&pol, "native", &m->cfg.router, err, sizeof err) == 0);
  eng_cuda_ctx *c = NULL;
  if (eng_cuda_ctx_init(&c, m, pol, probe_of(r), 256, 64, err, sizeof err)) {
    fprintf(stderr, "eng_cuda_ctx_init: %s\n", err);
    eng_policy_free(pol);
    return -1;
  }
  eng_cuda_set_modes(c, linear_mode, 0);
  if (expert_gemm && eng_cuda_set_expert_gemm(c, expert_gemm, err, sizeof err)) {
    fprintf(stderr, "eng_cuda_set_expert_gemm: %s\n", err);
    eng_cuda_ctx_free(c);
    eng_policy_free(pol);
    return -1;
  }
  int V = m->cfg.vocab, rc = 0;
  if (eng_cuda_forward(c, ids, 64, ENG_LOGITS_ALL, logits, 0, 0, err, sizeof err) < 0 ||
      eng_cuda_forward(c, ids + 64, NPRE - 64, ENG_LOGITS_ALL, logits + (size_t)64 * V, 0, 64, err, sizeof err) < 0)
    rc = -1;
  for (int i = 0; i < NDEC && rc == 0; i++)
    if (eng_cuda_forward(c, ids + NPRE + i, 1, ENG_LOGITS_LAST, logits + (size_t)(NPRE + i) * V, 0, NPRE + i, err, sizeof err) < 0)
      rc = -1;
  if (rc) fprintf(stderr, "eng_cuda_forward: %s\n", err);
  printf("gpu: %s, %.1f MB of weights on the device\n", eng_cuda_device_name(c), eng_cuda_weight_bytes(c) / 1e6);
  eng_cuda_ctx_free(c);
  eng_policy_free(pol);
  return rc;
}

static int run_gpu(const eng_model *m, const int *ids, float *logits, rec *r, int linear_mode) {
  return run_gpu_eg(m, ids, logits, r, linear_mode, ENG_EXPERT_GEMM_OWN);
}

/* Logits within tol (relative to the largest |CPU logit|) and routing per (layer, token).
 * A near-tie flip legitimately changes everything that token computes afterwards: its
 * later layers' routing (any margin, counted as "after a near-tie") and its logits, so such
 * tokens are left out of the logit and gate-weight figures (at most 10% of the tokens).
 * Gate weights are compared per expert (a near-tie may swap the slot order). */
static void compare(const eng_model *m, const float *lc, const float *lg, const rec *rc, const rec *rg, double tol,
                    const char *what) {
  const eng_config *g = &m->cfg;
  int V = g->vocab, T = NPRE + NDEC, k = rc->k;
  int flips = 0, hard = 0, after = 0, missing = 0, tainted[NPRE + NDEC] = {0};
  double werr = 0;
  for (int l = 0; l < g->n_layers && l < MAXL; l++)
    for (int t = 0; t < T; t++) {
      if (!g->moe_layer[l]) { missing += rg->seen[l][t] != 0 || rc->seen[l][t] != 0; continue; }   /* dense layer */
      if (rg->seen[l][t] != 1 || rc->seen[l][t] != 1) { missing++; continue; }
      if (!cmp_set(rc->ex[l][t], rg->ex[l][t], k)) {
        flips++;
        float mg = margin_of(m, l, rc->pr[l][t]);
        if (tainted[t]) { after++; printf("%s: layer %d pos %d: experts differ after a near-tie (margin %.2e)\n", what, l, t, mg); }
        else if (mg >= 2e-3f) { hard++; fprintf(stderr, "%s: layer %d pos %d: experts differ at margin %g\n", what, l, t, mg); }
        else printf("%s: near-tie at layer %d pos %d (margin %.2e): expert sets differ\n", what, l, t, mg);
        tainted[t] = 1;
      } else if (!tainted[t]) {
        for (int j = 0; j < k; j++)
          for (int i = 0; i < k; i++)
            if (rg->ex[l][t][i] == rc->ex[l][t][j]) {
              double d = fabs(rc->w[l][t][j] - rg->w[l][t][i]);
              if (d > werr) werr = d;
            }
      }
    }
  int n_taint = 0;
  double md = 0, mb = 1e-30;
  for (int t = 0; t < T; t++) {
    n_taint += tainted[t];
    for (int v = 0; v < V; v++) {
      double b = fabs((double)lc[(size_t)t * V + v]), d = fabs((double)lg[(size_t)t * V + v] - lc[(size_t)t * V + v]);
      if (b > mb) mb = b;
      if (!tainted[t] && !(d <= md)) md = d;   /* NaN propagates as failure */
    }
  }
  double e = md / mb;
  printf("%s: logits max rel err %.3e (tol %.0e; %d of %d tokens after a near-tie left out)\n", what, e, tol, n_taint, T);
  CHECKF(e <= tol, "%s: logits err %g", what, e);
  printf("%s: %d of %d (token, layer) expert sets differ (%d beyond the near-tie margin, %d after a near-tie), gate weight err %.2e\n",
         what, flips, T * g->n_layers, hard, after, werr);
  CHECK(missing == 0);
  CHECK(hard == 0);
  CHECK(n_taint * 10 <= T);
  CHECK(werr < (tol > 1e-2 ? tol : 1e-2));   /* looser only where the logits are (expert-gemm cublas, gpt-oss) */
  CHECK(rg->n_ops > 0);
}

#endif
