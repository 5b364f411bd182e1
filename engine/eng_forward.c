/* eng_forward.c — the decoder forward pass (Mixtral architecture, exactly as Hugging
 * Face computes it): embedding -> per layer [RMSNorm -> GQA attention with rotate-half
 * RoPE and KV cache -> residual -> RMSNorm -> router -> policy -> SwiGLU experts on the
 * tokens each expert received -> weighted sum -> residual] -> final RMSNorm -> lm_head.
 * Ops are timed into the probe (see TIME_*); routing is reported per layer per batch. */
#include "engine/eng_util.h"
#include "engine/eng_forward.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int eng_ctx_init(eng_ctx *c, const eng_model *m, const krn_backend *be, eng_policy *policy, prb_probe probe,
                 int max_ctx, int max_batch, char *err, size_t errlen) {
  memset(c, 0, sizeof *c);
  const eng_config *g = &m->cfg;
  if (max_ctx <= 0 || max_batch <= 0) return eng_errf(err, errlen, "context and batch sizes must be positive");
  if (max_batch > max_ctx) max_batch = max_ctx;
  c->m = m; c->be = be; c->policy = policy; c->probe = probe;
  c->max_ctx = max_ctx; c->max_batch = max_batch;
  size_t H = g->hidden, B = max_batch, E = g->n_experts, K = eng_policy_kmax(policy);
  size_t qd = (size_t)g->n_heads * g->head_dim, kvd = (size_t)g->n_kv_heads * g->head_dim;
  size_t I = g->intermediate;
  size_t kvsz = (size_t)g->n_layers * max_ctx * kvd;
  c->kcache = malloc(kvsz * sizeof(float));
  c->vcache = malloc(kvsz * sizeof(float));
  c->x = malloc(B * H * sizeof(float));
  c->h = malloc(B * H * sizeof(float));
  c->q = malloc(B * qd * sizeof(float));
  c->k = malloc(B * kvd * sizeof(float));
  c->v = malloc(B * kvd * sizeof(float));
  c->att = malloc(B * qd * sizeof(float));
  c->tmp = malloc(B * (H > qd ? H : qd) * sizeof(float));
  c->moe = malloc(B * H * sizeof(float));
  c->rlogits = malloc(B * E * sizeof(float));
  c->probs = malloc(B * E * sizeof(float));
  c->experts = malloc(B * K * sizeof(int));
  c->weights = malloc(B * K * sizeof(float));
  c->dropped = malloc(E * sizeof(int));
  c->pos = malloc(B * sizeof(int));
  c->abs_pos = malloc(B * sizeof(int));
  c->seq_ids = malloc(B * sizeof(int));
  c->etok = malloc(B * K * sizeof(int));
  c->eweight = malloc(B * K * sizeof(float));
  c->ein = malloc(B * H * sizeof(float));
  c->eg = malloc(B * I * sizeof(float));
  c->eu = malloc(B * I * sizeof(float));
  c->eout = malloc(B * H * sizeof(float));
  if (!c->kcache || !c->vcache || !c->x || !c->h || !c->q || !c->k || !c->v || !c->att || !c->tmp ||
      !c->moe || !c->rlogits || !c->probs || !c->experts || !c->weights || !c->dropped || !c->pos ||
      !c->abs_pos || !c->seq_ids || !c->etok || !c->eweight || !c->ein || !c->eg || !c->eu || !c->eout) {
    eng_ctx_free(c);
    return eng_errf(err, errlen, "out of memory allocating a context of %d tokens", max_ctx);
  }
  return 0;
}

void eng_ctx_free(eng_ctx *c) {
  void *p[] = {c->kcache, c->vcache, c->x, c->h, c->q, c->k, c->v, c->att, c->tmp, c->moe, c->rlogits,
               c->probs, c->experts, c->weights, c->dropped, c->pos, c->abs_pos, c->seq_ids, c->etok,
               c->eweight, c->ein, c->eg, c->eu, c->eout};
  for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) free(p[i]);
  memset(c, 0, sizeof *c);
}

void eng_ctx_reset(eng_ctx *c) { c->n_past = 0; }

/* op timing helpers: only read the clock when someone listens */
/* Op timing granularity. TIME_FINE records every op (norms, qkv, rope, attention, output
 * projection, router, each expert, ...); TIME_COARSE, used for small batches (decode)
 * below record level full, records one "attention" span per layer (norm .. output
 * projection), "router" (norm + gate + policy), "experts" and "lm_head", so decode pays
 * for ~4 rows per layer instead of ~8 + E. */
enum { TIME_OFF = 0, TIME_COARSE = 1, TIME_FINE = 2 };
static int coarse_emits(int op) {
  return op == PRB_OP_ATTN_OUT || op == PRB_OP_ROUTER || op == PRB_OP_LM_HEAD || op == PRB_OP_EXPERTS;
}
#define OP_BEGIN() uint64_t op_t0 = timed ? prb_now_ns() : 0
#define OP_END(L_, OP_, E_) do { if (timed == TIME_FINE || (timed == TIME_COARSE && coarse_emits(OP_))) { \
  uint64_t op_t1 = prb_now_ns(); \
  c->probe.op(c->probe.ctx, bid, (L_), timed == TIME_COARSE && (OP_) == PRB_OP_ATTN_OUT ? PRB_OP_ATTENTION : (OP_), \
              (E_), op_t0, op_t1, 0); op_t0 = op_t1; } } while (0)

/* The MoE block for n tokens: h = normed input [n,H]; adds into out [n,H] (zeroed here). */
static void moe_block(eng_ctx *c, int l, int n, int64_t bid, int timed) {
  const eng_config *g = &c->m->cfg;
  const eng_layer *ly = &c->m->layers[l];
  const krn_backend *be = c->be;
  int H = g->hidden, E = g->n_experts, I = g->intermediate, K = eng_policy_kmax(c->policy);
  OP_BEGIN();
  be->matmul(c->rlogits, c->h, ly->gate, NULL, n, H, E);
  eng_route_out ro = {c->experts, c->weights, c->probs, c->dropped};
  c->policy->route(c->policy, c->rlogits, NULL, n, &ro);
  OP_END(l, PRB_OP_ROUTER, -1);
  if (c->probe.route) {
    prb_route_batch rb = {bid, l, n, K, E, c->seq_ids, c->abs_pos, c->experts, c->weights,
                          c->probe.level >= PRB_LEVEL_FULL ? c->probs : NULL,
                          c->probe.level >= PRB_LEVEL_FULL ? c->rlogits : NULL, c->dropped};
    c->probe.route(c->probe.ctx, &rb);
  }
  memset(c->moe, 0, sizeof(float) * (size_t)n * H);
  uint64_t t_all = timed ? prb_now_ns() : 0;
  for (int e = 0; e < E; e++) {
    /* gather the tokens routed to expert e, in token order */
    int m = 0;
    for (int t = 0; t < n; t++)
      for (int j = 0; j < K; j++)
        if (c->experts[t * K + j] == e) { c->etok[m] = t; c->eweight[m] = c->weights[t * K + j]; m++; }
    if (m == 0) continue;
    uint64_t te = timed == TIME_FINE ? prb_now_ns() : 0;
    for (int i = 0; i < m; i++) memcpy(c->ein + (size_t)i * H, c->h + (size_t)c->etok[i] * H, sizeof(float) * H);
    const eng_expert *x = &ly->experts[e];
    be->matmul(c->eg, c->ein, x->w1, NULL, m, H, I);
    be->matmul(c->eu, c->ein, x->w3, NULL, m, H, I);
    be->swiglu(c->eg, c->eg, c->eu, (size_t)m * I);
    be->matmul(c->eout, c->eg, x->w2, NULL, m, I, H);
    for (int i = 0; i < m; i++) {
      float *dst = c->moe + (size_t)c->etok[i] * H, w = c->eweight[i];
      const float *src = c->eout + (size_t)i * H;
      for (int d = 0; d < H; d++) dst[d] += w * src[d];
    }
    if (timed == TIME_FINE) c->probe.op(c->probe.ctx, bid, l, PRB_OP_EXPERT, e, te, prb_now_ns(), 0);
  }
  if (timed) c->probe.op(c->probe.ctx, bid, l, PRB_OP_EXPERTS, -1, t_all, prb_now_ns(), 0);
}

int64_t eng_forward(eng_ctx *c, const int *ids, int n, int want_logits, float *logits,
                    int seq_id, int abs_pos0, char *err, size_t errlen) {
  const eng_model *M = c->m;
  const eng_config *g = &M->cfg;
  const krn_backend *be = c->be;
  if (n <= 0 || n > c->max_batch) return eng_errf(err, errlen, "batch of %d tokens (limit %d)", n, c->max_batch);
  if (c->n_past + n > c->max_ctx)
    return eng_errf(err, errlen, "context full: %d + %d tokens exceed %d", c->n_past, n, c->max_ctx);
  for (int t = 0; t < n; t++)
    if (ids[t] < 0 || ids[t] >= g->vocab) return eng_errf(err, errlen, "token id %d out of range (vocab %d)", ids[t], g->vocab);
  int64_t bid = c->next_batch_id++;
  int timed = c->probe.op == NULL || c->probe.level < PRB_LEVEL_COUNTS ? TIME_OFF
            : (c->probe.level >= PRB_LEVEL_FULL || n >= 16) ? TIME_FINE : TIME_COARSE;
  int H = g->hidden, nh = g->n_heads, nkv = g->n_kv_heads, hd = g->head_dim;
  int qd = nh * hd, kvd = nkv * hd, start = c->n_past;
  for (int t = 0; t < n; t++) { c->pos[t] = start + t; c->abs_pos[t] = abs_pos0 + t; c->seq_ids[t] = seq_id; }

  OP_BEGIN();
  for (int t = 0; t < n; t++) memcpy(c->x + (size_t)t * H, M->embed + (size_t)ids[t] * H, sizeof(float) * H);
  OP_END(-1, PRB_OP_EMBED, -1);
  for (int l = 0; l < g->n_layers; l++) {
    const eng_layer *ly = &M->layers[l];
    float *kc = c->kcache + (size_t)l * c->max_ctx * kvd, *vc = c->vcache + (size_t)l * c->max_ctx * kvd;
    if (timed) op_t0 = prb_now_ns();
    be->rmsnorm(c->h, c->x, ly->attn_norm, n, H, g->rms_eps);
    OP_END(l, PRB_OP_ATTN_NORM, -1);
    be->matmul(c->q, c->h, ly->q, NULL, n, H, qd);
    be->matmul(kc + (size_t)start * kvd, c->h, ly->k, NULL, n, H, kvd);
    be->matmul(vc + (size_t)start * kvd, c->h, ly->v, NULL, n, H, kvd);
    OP_END(l, PRB_OP_QKV, -1);
    be->rope(c->q, n, nh, hd, c->pos, g->rope_theta);
    be->rope(kc + (size_t)start * kvd, n, nkv, hd, c->pos, g->rope_theta);
    OP_END(l, PRB_OP_ROPE, -1);
    be->attention(c->att, c->q, kc, vc, n, start, nh, nkv, hd);
    OP_END(l, PRB_OP_ATTENTION, -1);
    be->matmul(c->tmp, c->att, ly->o, NULL, n, qd, H);
    for (size_t i = 0; i < (size_t)n * H; i++) c->x[i] += c->tmp[i];
    OP_END(l, PRB_OP_ATTN_OUT, -1);
    be->rmsnorm(c->h, c->x, ly->moe_norm, n, H, g->rms_eps);
    OP_END(l, PRB_OP_MOE_NORM, -1);
    moe_block(c, l, n, bid, timed);
    for (size_t i = 0; i < (size_t)n * H; i++) c->x[i] += c->moe[i];
  }
  c->n_past += n;
  if (want_logits != ENG_LOGITS_NONE) {
    if (timed) op_t0 = prb_now_ns();
    int first = want_logits == ENG_LOGITS_LAST ? n - 1 : 0, cnt = n - first;
    be->rmsnorm(c->h, c->x + (size_t)first * H, M->final_norm, cnt, H, g->rms_eps);
    OP_END(-1, PRB_OP_FINAL_NORM, -1);
    be->matmul(logits, c->h, M->lm_head ? M->lm_head : M->embed, NULL, cnt, H, g->vocab);
    OP_END(-1, PRB_OP_LM_HEAD, -1);
  }
  return bid;
}
