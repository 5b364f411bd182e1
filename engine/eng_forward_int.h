/* eng_forward_int.h — internal to the forward pass (eng_forward.c, eng_attn.c, eng_moe.c):
 * op-timing macros and the per-layer pieces. Not a public interface. */
#ifndef MOESCOPE_ENG_FORWARD_INT_H
#define MOESCOPE_ENG_FORWARD_INT_H

#include "engine/eng_forward.h"

/* Op timing granularity. TIME_FINE records every op (norms, qkv, rope, attention, output
 * projection, router, each expert, ...); TIME_COARSE, used for small batches (decode)
 * below record level full, records one "attention" span per layer (norm .. output
 * projection), "router" (norm + gate + policy), "experts" and "lm_head", so decode pays
 * for ~4 rows per layer instead of ~8 + E. */
enum { TIME_OFF = 0, TIME_COARSE = 1, TIME_FINE = 2 };
static inline int eng_coarse_emits(int op) {
  return op == PRB_OP_ATTN_OUT || op == PRB_OP_ROUTER || op == PRB_OP_LM_HEAD || op == PRB_OP_EXPERTS;
}
#define OP_BEGIN() uint64_t op_t0 = timed ? prb_now_ns() : 0
#define OP_END(L_, OP_, E_) do { if (timed == TIME_FINE || (timed == TIME_COARSE && eng_coarse_emits(OP_))) { \
  uint64_t op_t1 = prb_now_ns(); \
  c->probe.op(c->probe.ctx, bid, (L_), timed == TIME_COARSE && (OP_) == PRB_OP_ATTN_OUT ? PRB_OP_ATTENTION : (OP_), \
              (E_), op_t0, op_t1, 0); op_t0 = op_t1; } } while (0)

/* Scope hooks (NVTX ranges / CUPTI correlation, prb_probe.scope_begin/end): SCOPE_BEGIN and
 * SCOPE_END bracket a batch, a layer or an op, independent of the op timing above. */
#define SCOPE_(F_, S_, L_, OP_, E_) do { if (c->probe.F_) c->probe.F_(c->probe.scope_ctx, (S_), bid, (L_), (OP_), (E_)); } while (0)
#define SCOPE_BEGIN(S_, L_, OP_, E_) SCOPE_(scope_begin, S_, L_, OP_, E_)
#define SCOPE_END(S_, L_, OP_, E_) SCOPE_(scope_end, S_, L_, OP_, E_)

/* Attention of layer l for n tokens at positions start..start+n-1: reads c->x, writes the
 * K/V cache rows, adds the attention output into c->x. */
void eng_attn_layer(eng_ctx *c, int l, int n, int start, int64_t bid, int timed);
/* FFN of layer l: post-attention norm of c->x into c->h, then dense MLP or MoE (router,
 * policy, probe, routed experts, shared expert) added into c->x. */
void eng_ffn_layer(eng_ctx *c, int l, int n, int64_t bid, int timed);

#endif
