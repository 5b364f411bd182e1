/* eng_cuda_int.h — internal to the GPU forward pass (eng_cuda.c, eng_cuda_mla.c,
 * eng_cuda_experts.c): the device
 * context, per-layer device weights, and the helpers they share (error line, uploads,
 * op timing macros). Not a public interface; eng_cuda.h is. */
#ifndef MOESCOPE_ENG_CUDA_INT_H
#define MOESCOPE_ENG_CUDA_INT_H

#include "engine/eng_cuda.h"
#include "engine/eng_util.h"
#include "kernels/krn_backend.h"
#include "kernels/krn_cuda_ops.h"

/* One SwiGLU FFN on the device (shared expert or dense MLP; routed experts use the same
 * layout E times): w13 [2I,H] (gate rows then up rows), w2 [H,I], optional biases b13 [2I]
 * (gate then up) and b2 [H]; oai = gpt-oss's clamped activation. */
typedef struct cuda_ffn {
  uint16_t *w13, *w2;
  float *b13, *b2;
  int inter, oai;
} cuda_ffn;

typedef struct cuda_layer {
  float *attn_norm, *bq, *bk, *bv, *bo, *q_norm, *k_norm, *sinks, *moe_norm;
  uint16_t *q, *k, *v, *o;                /* MLA: q = q_proj when q_lora_rank is 0 */
  uint16_t *q_a, *q_b, *kv_a, *kv_b;      /* MLA */
  float *q_a_norm, *kv_a_norm, *b_q_a, *b_kv_a;
  float *gate, *gate_bias, *score_bias;   /* router [stride, H] float32 */
  cuda_ffn ex;                            /* routed experts: w13 [E][2I][H], w2 [E][H][I], b13 [E][2I], b2 [E][H] */
  cuda_ffn sh;                            /* shared expert (MoE layer) or dense MLP; inter 0 = none */
  float *shared_gate;                     /* [H] or NULL */
  int moe;                                /* 1 = MoE FFN, 0 = dense MLP in sh */
} cuda_layer;

typedef struct ev_label { int layer, op, expert; } ev_label;

struct eng_cuda_ctx {
  const eng_model *m;
  eng_policy *policy;
  prb_probe probe;
  krn_cuda_ctx *k;
  char dev_name[256];
  size_t weight_bytes;
  int max_ctx, max_batch, n_past;
  int64_t next_batch_id;
  int linear_mode, attn_kind;
  int expert_gemm;          /* ENG_EXPERT_GEMM_* (eng_cuda_experts.c); 0 = own kernels */
  uint16_t *xbf;            /* expert_gemm != 0: BF16 copy of the experts' input [B*K, max(H, I)] */
  int *p_offs;              /* expert_gemm != 0: pinned host copy of the permutation offsets [E+1] */
  int H, nh, nkv, hd, qd, kvd, E, K, G, stride, half, s_inter_max, inter, gpu_route;
  int kdim, vdim, ad;       /* cache row widths (keys, values) and attention output width */
  float attn_scale;
  void **allocs;            /* every device allocation (freed together) */
  int n_allocs, cap_allocs;
  uint16_t *embed, *lm_head;
  float *final_norm;
  cuda_layer *L;
  float *kc, *vc;           /* [layers][max_ctx][kdim], [layers][max_ctx][vdim] */
  /* device scratch */
  float *x, *h, *q, *att, *tmp, *rlogits, *probs, *weights, *rscratch, *xin, *gu, *act, *yout, *sgate, *logits,
      *cs, *sn;
  float *mla_a, *mla_b, *mla_c;   /* MLA: [B, max(q_lora, kv_lora+rope)], [B, kv_lora], [B, nh*(nope+v)] */
  int *ids, *experts, *counts, *offsets, *row_tok, *row_exp, *slot_row, *argmax;
  /* host */
  double *inv_freq;
  int *seq_ids, *abs_pos, *moe_slot, n_moe;
  float *h_rlogits;         /* CPU-policy path: router logits of one layer [B, stride] */
  const int *cur_ids;       /* host token ids of the running batch (token-aware CPU policies) */
  /* pinned */
  int *p_ids, *p_experts, *p_dropped, *p_argmax;
  float *p_cs, *p_sn, *p_weights, *p_probs, *p_logits;
  /* timing */
  void **ev;
  ev_label *evl;
  int n_ev, ev_used, timed;
  uint64_t t_host0;
};

/* A device allocation freed with the context (eng_cuda.c). NULL on failure. */
void *eng_cuda_dalloc(eng_cuda_ctx *c, size_t bytes);

/* "cuda: <what>: <krn_cuda_last_error()>" into err; returns -1. */
int eng_cuda_err(char *err, size_t errlen, const char *what);
#define CK(expr, what) do { if ((expr) != 0) return eng_cuda_err(err, errlen, what); } while (0)

/* Uploads matrix w [rows, cols] as BF16 into a new device allocation; float32 vector (NULL
 * stays NULL). 0 or -1 (+err). */
int eng_cuda_up_mat(eng_cuda_ctx *c, uint16_t **dst, const krn_w *w, int rows, int cols, const char *what, char *err,
                    size_t errlen);
int eng_cuda_up_vec(eng_cuda_ctx *c, float **dst, const float *src, size_t n, const char *what, char *err,
                    size_t errlen);

/* Op scopes and CUDA-event timing (see eng_cuda.c). */
void eng_cuda_op_begin(eng_cuda_ctx *c, int64_t bid, int l, int op);
int eng_cuda_op_end(eng_cuda_ctx *c, int64_t bid, int l, int op);
#define OPB(L_, OP_) eng_cuda_op_begin(c, bid, (L_), (OP_))
#define OPE(L_, OP_) CK(eng_cuda_op_end(c, bid, (L_), (OP_)), prb_op_name(OP_))

/* eng_cuda_mla.c: DeepSeek MLA attention weights of layer l, and its attention (after the
 * attn_norm, which the caller runs into c->h) for n tokens at positions start.. . */
int eng_cuda_mla_upload(eng_cuda_ctx *c, int l, char *err, size_t errlen);
/* eng_cuda_experts.c: the routed experts' gate_up -> activation -> down on tensor cores
 * (krn_cuda_grouped_linear_tc) for the `rows` permuted rows in c->xin, into c->yout; one
 * offsets copy + stream sync per MoE layer (cuBLAS needs the group sizes on the host). */
int eng_cuda_experts_tc(eng_cuda_ctx *c, const cuda_layer *d, int rows, char *err, size_t errlen);

int eng_cuda_mla_attn(eng_cuda_ctx *c, int l, int n, int start, int64_t bid, char *err, size_t errlen);

#endif
