/* krn_cuda_ops.h — the CUDA kernels and device runtime helpers of the CUDA backend, as
 * plain C entry points (kernels/cuda/ *.cu, extern "C"); engine/eng_cuda.c drives the GPU
 * forward pass through them and never includes a CUDA header. Without nvcc the stubs in
 * krn_cuda_ops_stub.c return -1 with "built without CUDA" (krn_cuda_last_error()).
 *
 * Conventions (llm.c style: every kernel has a C reference and a test in tests/gpu/):
 *  - All tensor pointers are device pointers, row-major. Activations are float32; matrix
 *    weights are BF16 (uint16_t bit patterns, round-to-nearest-even from float32); norm
 *    weights, biases and small vectors are float32. Accumulation is float32.
 *  - Every call is asynchronous on the context's stream and returns 0, or -1 with a
 *    message for krn_cuda_last_error() (thread-local; launch errors and bad arguments).
 *  - Index types: token ids, expert ids and rows are int.
 */
#ifndef MOESCOPE_KRN_CUDA_OPS_H
#define MOESCOPE_KRN_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Largest head dims the attention kernels accept (qk_dim, v_dim). */
#define KRN_CUDA_MAX_HEAD_DIM 256
/* Dense linears with at most this many rows use the GEMV kernel (weights read once). */
#define KRN_CUDA_GEMV_MAX_ROWS 8

typedef struct krn_cuda_ctx krn_cuda_ctx;   /* device, stream, cuBLAS handle, BF16 scratch */

/* Last error of this thread ("" when none). */
const char *krn_cuda_last_error(void);

/* Creates a context on `device` with its own stream and cuBLAS handle; scratch_elems is
 * the largest rows*in of a linear that may take the cuBLAS path (its input is converted
 * to BF16 into that scratch). 0 or -1. */
int krn_cuda_ctx_create(krn_cuda_ctx **out, int device, size_t scratch_elems);
void krn_cuda_ctx_destroy(krn_cuda_ctx *c);
/* Waits for the stream; reports asynchronous kernel faults. */
int krn_cuda_sync(krn_cuda_ctx *c);
/* Device name, memory and peak DRAM bandwidth (bytes/s from the memory clock and bus width;
 * 0 when the driver does not report them). */
int krn_cuda_device_info(int device, char *name, size_t namelen, size_t *total_mem, double *peak_bw);

/* Memory. */
int krn_cuda_malloc(void **p, size_t bytes);
void krn_cuda_free(void *p);
int krn_cuda_host_alloc(void **p, size_t bytes);     /* pinned host memory */
void krn_cuda_host_free(void *p);
int krn_cuda_h2d(krn_cuda_ctx *c, void *dst, const void *src, size_t bytes);   /* async on stream */
int krn_cuda_d2h(krn_cuda_ctx *c, void *dst, const void *src, size_t bytes);   /* async on stream */
int krn_cuda_d2d(krn_cuda_ctx *c, void *dst, const void *src, size_t bytes);
int krn_cuda_memset(krn_cuda_ctx *c, void *dst, int value, size_t bytes);

/* Events (timing): create/record on the stream/elapsed milliseconds between two. */
int krn_cuda_event_create(void **ev);
void krn_cuda_event_destroy(void *ev);
int krn_cuda_event_record(krn_cuda_ctx *c, void *ev);
int krn_cuda_event_elapsed_ms(void *ev0, void *ev1, float *ms);

/* Host helpers (no device): float32 -> BF16 bits (round to nearest even, NaN kept) and back. */
uint16_t krn_f32_to_bf16(float f);
float krn_bf16_to_f32(uint16_t b);

/* ---- kernels ---------------------------------------------------------------------------- */
/* x[t,:] = float(emb[ids[t],:]) for t < n; ids on the device. */
int krn_cuda_embed(krn_cuda_ctx *c, float *x, const uint16_t *emb, const int *ids, int n, int dim);
/* y[n,dim] = w * x / sqrt(mean(x^2) + eps); y may alias x. */
int krn_cuda_rmsnorm(krn_cuda_ctx *c, float *y, const float *x, const float *w, int n, int dim, float eps);
/* The same over rows with strides (floats between row starts; y == x needs equal strides):
 * row r of x at x + r*x_stride, of y at y + r*y_stride (MLA's latent norm of [latent|k_pe]). */
int krn_cuda_rmsnorm_strided(krn_cuda_ctx *c, float *y, int y_stride, const float *x, int x_stride, const float *w,
                             int n, int dim, float eps);
/* RoPE from tables (see krn_backend.h rope_cs): head h of token t at x + t*row_stride +
 * h*head_stride; first rot_dim values rotated with cs/sn [n, rot_dim/2]; rotate-half
 * pairs (i, i+rot_dim/2) or interleaved pairs (2i, 2i+1). */
int krn_cuda_rope_cs(krn_cuda_ctx *c, float *x, int n, int n_heads, int row_stride, int head_stride, int rot_dim,
                     const float *cs, const float *sn, int interleaved);
/* Causal GQA attention (krn_backend.h attention_ex): q [n, n_heads*qk_dim], caches
 * kc [ctx, n_kv*qk_dim], vc [ctx, n_kv*v_dim] (row = absolute position, rows 0..start+n-1
 * filled), out [n, n_heads*v_dim]; scale, sliding window (0 = none), sinks [n_heads] or NULL.
 * kind: 0 auto (decode kernel for n == 1, else prefill kernel), 1 prefill kernel (one block
 * per (token, head), keys in chunks with online softmax), 2 decode kernel (warps split the
 * keys, coalesced reads of each cache row, per-warp online softmax merged at the end). */
int krn_cuda_attention(krn_cuda_ctx *c, float *out, const float *q, const float *kc, const float *vc, int n,
                       int start, int n_heads, int n_kv, int qk_dim, int v_dim, float scale, int window,
                       const float *sinks, int kind);
/* y[n,dim] += bias[dim] */
int krn_cuda_add_bias(krn_cuda_ctx *c, float *y, const float *bias, int n, int dim);
/* x[i] = clamp(x[i], -lim, lim) */
int krn_cuda_clamp(krn_cuda_ctx *c, float *x, size_t count, float lim);
/* x[t,:] += (s ? s[t] : 1) * y[t,:] */
int krn_cuda_add_rows(krn_cuda_ctx *c, float *x, const float *y, const float *s, int n, int dim);
/* s[t] = sigmoid(h[t,:] . w) (Qwen2-MoE shared-expert gate) */
int krn_cuda_rowdot_sigmoid(krn_cuda_ctx *c, float *s, const float *h, const float *w, int n, int dim);
/* h[r, i] = silu(gu[r, i]) * gu[r, I + i] for r < rows (and r < *rows_dev when given) */
int krn_cuda_swiglu(krn_cuda_ctx *c, float *h, const float *gu, int rows, const int *rows_dev, int inter);
/* gpt-oss's clamped variant (krn_backend.h swiglu_oai, float32 as krn_cpu.c): with
 * g = min(gate, limit), u = clamp(up, -limit, limit): h = (u + 1) * g * sigmoid(alpha * g). */
int krn_cuda_swiglu_oai(krn_cuda_ctx *c, float *h, const float *gu, int rows, const int *rows_dev, int inter,
                        float alpha, float limit);
/* DeepSeek MLA (engine/eng_attn.c attn_mla): n tokens' cache rows from kv_b's output
 * kvb [n, nh*(nope+vh)] (per head [k_nope | v]) and kv_a's output kva [n, kvr+rd] (the
 * rotated shared k_pe in its last rd values): kc [n, nh*(nope+rd)] per head [k_nope | k_pe],
 * vc [n, nh*vh]. */
int krn_cuda_mla_kv(krn_cuda_ctx *c, float *kc, float *vc, const float *kvb, const float *kva, int n, int nh, int nope,
                    int rd, int vh, int kvr);

/* Linear layers with BF16 weights W [out, in] (optionally one per group, w_stride apart):
 * y[r, o] = sum_i x[r, i] * W[o, i] (+ bias[o]).
 * mode: 0 auto (GEMV when rows <= KRN_CUDA_GEMV_MAX_ROWS, else cuBLAS), 1 GEMV (rows <=
 * KRN_CUDA_GEMV_MAX_ROWS; x stays float32), 2 cuBLAS cublasGemmEx (x rounded to BF16,
 * F32 accumulation and output), 3 tiled kernel (x stays float32, float32 FMA). */
enum { KRN_LIN_AUTO = 0, KRN_LIN_GEMV = 1, KRN_LIN_CUBLAS = 2, KRN_LIN_TILED = 3 };
int krn_cuda_linear(krn_cuda_ctx *c, float *y, const float *x, const uint16_t *w, const float *bias, int rows,
                    int in, int out, int mode);
/* Linear with float32 weights (the router: small, kept exact): one warp per (row, output). */
int krn_cuda_linear_f32w(krn_cuda_ctx *c, float *y, const float *x, const float *w, const float *bias, int rows,
                         int in, int out);
/* Grouped (expert) linear over permuted rows: rows offsets[e]..offsets[e+1]-1 (device
 * array [E+1]) use W + e*w_stride (and bias + e*out when bias). max_rows bounds the rows of
 * any one group and of all groups (offsets[E] <= max_rows). mode: 0 auto (GEMV per row when
 * max_rows <= KRN_CUDA_GEMV_MAX_ROWS*8 — decode — else tiled), 1 per-row GEMV using
 * row_exp[r] (device [max_rows]), 3 tiled grouped GEMM. */
int krn_cuda_grouped_linear(krn_cuda_ctx *c, float *y, const float *x, const uint16_t *w, size_t w_stride,
                            const float *bias, const int *offsets, const int *row_exp, int n_groups,
                            int max_rows, int in, int out, int mode);
/* The same grouped linear on tensor cores (cuBLAS; `--expert-gemm cublas`), with the group
 * offsets on the HOST: h_offsets[E+1] (h_offsets[0] == 0, non-decreasing; the caller copies
 * the permutation's offsets back and syncs). x [h_offsets[E], in] is rounded to BF16 (nearest
 * even) into xbf (device, >= h_offsets[E]*in elements, must not overlap x or y), then
 * y[r, :] = xbf[r, :] . W_e^T (+ bias_e) per group with CUBLAS_COMPUTE_32F (F32 accumulation
 * and output); empty groups are skipped. So it differs from the own kernels only by the BF16
 * rounding of the activations (and the summation order).
 * mode: 0 auto (one cublasGemmGroupedBatchedEx call for all non-empty groups, each its own
 * m; falls back to mode 2 for good when the library refuses that call), 1 grouped call only,
 * 2 one cublasGemmEx per non-empty group. */
enum { KRN_TC_AUTO = 0, KRN_TC_GROUPED = 1, KRN_TC_PER_GROUP = 2 };
int krn_cuda_grouped_linear_tc(krn_cuda_ctx *c, float *y, const float *x, uint16_t *xbf, const uint16_t *w,
                               size_t w_stride, const float *bias, const int *h_offsets, int n_groups, int in,
                               int out, int mode);

/* Router: scores + top-k for n tokens, one thread per token, exactly the CPU policies of
 * eng_policy.c (ties to the lower index). logits [n, stride]; probs [n, E]; experts and
 * weights [n, k]; scratch [n, E + n_group] device floats; sel_bias [E] or NULL.
 * kind: 0 softmax top-k (+renorm, *scale), 1 group-limited greedy (softmax, group max),
 * 2 sigmoid + bias + group top-2 sums (+renorm with 1e-20, *scale), 3 top-k of logits then
 * softmax over the k (gpt-oss). */
enum { KRN_ROUTE_SOFTMAX_TOPK = 0, KRN_ROUTE_GROUP_LIMITED = 1, KRN_ROUTE_SIGMOID_GROUP = 2, KRN_ROUTE_TOPK_SOFTMAX = 3 };
typedef struct krn_cuda_router {
  int kind, n_experts, k, renorm, n_group, topk_group, stride;
  float scale;
} krn_cuda_router;
int krn_cuda_route(krn_cuda_ctx *c, const krn_cuda_router *r, const float *logits, const float *sel_bias, int n,
                   float *probs, int *experts, float *weights, float *scratch);

/* Token permutation by expert (one block, deterministic): counts[E], offsets[E+1] (exclusive
 * scan), rows grouped by expert in token order: row_tok[r] = token, row_exp[r] = expert;
 * slot_row[t*k + j] = the row of slot j of token t (-1 for an empty slot: expert outside
 * 0..E-1). Arrays row_* and slot_row have n*k entries. */
int krn_cuda_moe_permute(krn_cuda_ctx *c, const int *experts, int n, int k, int n_experts, int *counts,
                         int *offsets, int *row_tok, int *row_exp, int *slot_row);
/* dst[r,:] = src[row_tok[r],:] for r < *total (device int; max_rows launched). */
int krn_cuda_gather_rows(krn_cuda_ctx *c, float *dst, const float *src, const int *row_tok, const int *total,
                         int max_rows, int dim);
/* Un-permute + weighted combine: x[t,:] += sum_j weights[t*k+j] * y[slot_row[t*k+j],:]
 * (j ascending; empty slots skipped). */
int krn_cuda_moe_combine(krn_cuda_ctx *c, float *x, const float *y, const int *slot_row, const float *weights,
                         int n, int k, int dim);

/* Sampling. argmax of each row of logits [n, V] (ties to the lower index) into out[n]. */
int krn_cuda_argmax(krn_cuda_ctx *c, int *out, const float *logits, int n, int vocab);
/* Temperature sampling of one row: p_i = softmax(z / T); the first i whose cumulative
 * probability exceeds r * sum (r in [0,1)) into *out. */
int krn_cuda_sample(krn_cuda_ctx *c, int *out, const float *logits, int vocab, float temperature, float r);

#ifdef __cplusplus
}
#endif
#endif
