/* eng_moe.c — the FFN half of a layer (see eng_forward_int.h): post-attention RMSNorm, then
 *  - a dense SwiGLU MLP on non-MoE layers (Qwen mlp_only_layers / decoder_sparse_step,
 *    DeepSeek first_k_dense_replace), or
 *  - the MoE block: router logits (+ gpt-oss router bias; hierarchical: + group logits),
 *    the policy (eng_policy.c: the family's native router or an override; it gets the batch's
 *    token ids and the layer, and a stateful policy's state -- the bias policy's bias -- goes
 *    to probe.policy_state), the routing probe
 *    event (k routed slots only), each routed expert on the tokens it received (SwiGLU, or
 *    gpt-oss's clamped variant with biases), weighted sum; then the shared expert on every
 *    token (Qwen2-MoE: scaled by sigmoid(shared_expert_gate . h); DeepSeek: ungated),
 *    timed as op "shared_expert" (shared experts are never routing slots). */
#include "engine/eng_forward_int.h"

#include <math.h>
#include <string.h>

/* y[m,H] = FFN(x[m,H]) of width I (activation and biases per family) */
static void ffn(eng_ctx *c, const eng_expert *x, int I, const float *in, float *out, int m) {
  const eng_config *g = &c->m->cfg;
  const krn_backend *be = c->be;
  int H = g->hidden;
  be->matmul_w(c->eg, in, &x->w1, x->b1, m, H, I);
  be->matmul_w(c->eu, in, &x->w3, x->b3, m, H, I);
  if (g->expert_act == ENG_ACT_SWIGLU_OAI && x->b1) be->swiglu_oai(c->eg, c->eg, c->eu, (size_t)m * I, g->act_alpha, g->act_limit);
  else be->swiglu(c->eg, c->eg, c->eu, (size_t)m * I);
  be->matmul_w(out, c->eg, &x->w2, x->b2, m, I, H);
}

static void moe_block(eng_ctx *c, int l, int n, int64_t bid, int timed) {
  const eng_config *g = &c->m->cfg;
  const eng_layer *ly = &c->m->layers[l];
  const krn_backend *be = c->be;
  int H = g->hidden, E = g->n_experts, I = g->intermediate, K = eng_policy_kmax(c->policy);
  int stride = c->policy->logit_stride;
  OP_BEGIN();
  SCOPE_BEGIN(PRB_SCOPE_OP, l, PRB_OP_ROUTER, -1);
  be->matmul_w(c->rlogits, c->h, &ly->gate, stride == E ? ly->gate_bias : NULL, n, H, stride);
  eng_route_out ro = {c->experts, c->weights, c->probs, c->dropped, NULL, 0};
  c->policy->sel_bias = ly->score_bias;
  c->policy->route(c->policy, c->rlogits, c->ids, n, l, &ro);   /* on failure: every slot empty */
  if (ro.state && c->probe.policy_state) c->probe.policy_state(c->probe.ctx, bid, l, ro.n_state, ro.state);
  SCOPE_END(PRB_SCOPE_OP, l, PRB_OP_ROUTER, -1);
  OP_END(l, PRB_OP_ROUTER, -1);
  if (c->probe.route) {
    const float *lg = c->rlogits;
    if (stride != E && c->probe.level >= PRB_LEVEL_FULL) {   /* record the E expert logits only */
      for (int t = 0; t < n; t++) memcpy(c->plogits + (size_t)t * E, c->rlogits + (size_t)t * stride, sizeof(float) * E);
      lg = c->plogits;
    }
    prb_route_batch rb = {bid, l, n, K, E, c->seq_ids, c->abs_pos, c->experts, c->weights,
                          c->probe.level >= PRB_LEVEL_FULL ? c->probs : NULL,
                          c->probe.level >= PRB_LEVEL_FULL ? lg : NULL, c->dropped};
    c->probe.route(c->probe.ctx, &rb);
  }
  memset(c->moe, 0, sizeof(float) * (size_t)n * H);
  SCOPE_BEGIN(PRB_SCOPE_OP, l, PRB_OP_EXPERTS, -1);
  uint64_t t_all = timed ? prb_now_ns() : 0;
  for (int e = 0; e < E; e++) {
    /* gather the tokens routed to expert e, in token order */
    int m = 0;
    for (int t = 0; t < n; t++)
      for (int j = 0; j < K; j++)
        if (c->experts[t * K + j] == e) { c->etok[m] = t; c->eweight[m] = c->weights[t * K + j]; m++; }
    if (m == 0) continue;
    SCOPE_BEGIN(PRB_SCOPE_EXPERT, l, PRB_OP_EXPERT, e);
    uint64_t te = timed == TIME_FINE ? prb_now_ns() : 0;
    for (int i = 0; i < m; i++) memcpy(c->ein + (size_t)i * H, c->h + (size_t)c->etok[i] * H, sizeof(float) * H);
    ffn(c, &ly->experts[e], I, c->ein, c->eout, m);
    for (int i = 0; i < m; i++) {
      float *dst = c->moe + (size_t)c->etok[i] * H, w = c->eweight[i];
      const float *src = c->eout + (size_t)i * H;
      for (int d = 0; d < H; d++) dst[d] += w * src[d];
    }
    if (timed == TIME_FINE) c->probe.op(c->probe.ctx, bid, l, PRB_OP_EXPERT, e, te, prb_now_ns(), 0);
    SCOPE_END(PRB_SCOPE_EXPERT, l, PRB_OP_EXPERT, e);
  }
  if (timed) c->probe.op(c->probe.ctx, bid, l, PRB_OP_EXPERTS, -1, t_all, prb_now_ns(), 0);
  SCOPE_END(PRB_SCOPE_OP, l, PRB_OP_EXPERTS, -1);
  if (ly->shared.w1.data) {
    SCOPE_BEGIN(PRB_SCOPE_OP, l, PRB_OP_SHARED_EXPERT, -1);
    uint64_t ts = timed ? prb_now_ns() : 0;
    ffn(c, &ly->shared, g->shared_intermediate, c->h, c->eout, n);
    for (int t = 0; t < n; t++) {
      float w = 1.0f;
      if (ly->shared_gate) {
        const float *ht = c->h + (size_t)t * H;
        double z = 0;
        for (int d = 0; d < H; d++) z += (double)ht[d] * ly->shared_gate[d];
        w = 1.0f / (1.0f + expf(-(float)z));
      }
      float *dst = c->moe + (size_t)t * H;
      const float *src = c->eout + (size_t)t * H;
      for (int d = 0; d < H; d++) dst[d] += w * src[d];
    }
    if (timed) c->probe.op(c->probe.ctx, bid, l, PRB_OP_SHARED_EXPERT, -1, ts, prb_now_ns(), 0);
    SCOPE_END(PRB_SCOPE_OP, l, PRB_OP_SHARED_EXPERT, -1);
  }
}

void eng_ffn_layer(eng_ctx *c, int l, int n, int64_t bid, int timed) {
  const eng_config *g = &c->m->cfg;
  const eng_layer *ly = &c->m->layers[l];
  int H = g->hidden;
  OP_BEGIN();
  c->be->rmsnorm(c->h, c->x, ly->moe_norm, n, H, g->rms_eps);
  OP_END(l, PRB_OP_MOE_NORM, -1);
  if (g->moe_layer[l]) {
    moe_block(c, l, n, bid, timed);
  } else {
    SCOPE_BEGIN(PRB_SCOPE_OP, l, PRB_OP_EXPERTS, -1);
    ffn(c, &ly->dense, g->dense_intermediate, c->h, c->moe, n);
    SCOPE_END(PRB_SCOPE_OP, l, PRB_OP_EXPERTS, -1);
    OP_END(l, PRB_OP_EXPERTS, -1);
  }
  for (size_t i = 0; i < (size_t)n * H; i++) c->x[i] += c->moe[i];
}
