/* krn_backend.h — the compute backend interface the engine calls for every op.
 *
 * The engine's forward pass is written once against this vtable; a backend supplies
 * the kernels (CPU now: kernels/cpu/, CUDA later: kernels/cuda/). Activations are
 * row-major float32 in host memory for the CPU backend; weights of the matmuls may also
 * come as a typed view (krn_w: F32 / BF16 / F16 / Q8_0 / Q4_0 / Q4_K / Q5_K / Q6_K rows
 * read in place, e.g. straight from a memory-mapped checkpoint, widened to float32 inside
 * the kernel). Shapes use n = tokens in the batch. Each CPU kernel has a plain reference
 * twin in krn_ref.c that tests compare to.
 */
#ifndef MOESCOPE_KRN_BACKEND_H
#define MOESCOPE_KRN_BACKEND_H

#include <stddef.h>
#include <stdint.h>

/* Weight storage types; the codes are those of engine/eng_safetensors.h's eng_dtype
 * (checked there at compile time). Q8_0 / Q4_0 are ggml blocks of 32 along a row:
 * Q8_0 = f16 scale d + 32 int8 q (34 bytes), value q*d; Q4_0 = f16 d + 16 bytes of
 * nibbles (18 bytes), element j<16 = ((b[j] & 15) - 8)*d, element 16+j = ((b[j] >> 4) - 8)*d.
 * Q4_K / Q5_K / Q6_K are ggml K-quant super-blocks of 256 along a row (144 / 176 / 210
 * bytes; six-bit sub-block scales and mins, or int8 scales for Q6_K; layouts and exact
 * dequantisation in krn_kquant.h). */
enum { KRN_DT_F32 = 0, KRN_DT_F16 = 1, KRN_DT_BF16 = 2, KRN_DT_Q8_0 = 9, KRN_DT_Q4_0 = 10,
       KRN_DT_Q4_K = 11, KRN_DT_Q5_K = 12, KRN_DT_Q6_K = 13 };

/* A weight matrix [rows, cols] (row-major, [out, in]) in its stored type: row r starts at
 * data + r * row_stride_bytes. Q8_0 / Q4_0 need cols % 32 == 0, the K-quants cols % 256 == 0.
 * No alignment is required. */
typedef struct krn_w {
  int dtype;
  const void *data;
  int rows, cols;
  size_t row_stride_bytes;
} krn_w;

/* Bytes of one row of cols elements of dtype (0: unknown type or a partial Q block). */
size_t krn_dtype_row_bytes(int dtype, int cols);
/* A view of contiguous rows (row stride = krn_dtype_row_bytes). */
krn_w krn_w_view(int dtype, const void *data, int rows, int cols);
/* Bytes the matrix occupies as stored (rows x row bytes). */
size_t krn_w_bytes(const krn_w *w);
/* Row r widened / dequantised to float32 exactly (BF16 << 16, F16 exact, Q*d in float). */
void krn_w_row_f32(const krn_w *w, int r, float *dst);
/* IEEE half -> float, exact (subnormals, inf, NaN). */
float krn_f16_to_f32(uint16_t h);

typedef struct krn_backend {
  const char *name;
  /* y[n,out] = x[n,in] . W[out,in]^T (+ bias[out] when bias != NULL) */
  void (*matmul)(float *y, const float *x, const float *w, const float *bias, int n, int in, int out);
  /* y[n,dim] = w * x / sqrt(mean(x^2) + eps), row by row (y may alias x) */
  void (*rmsnorm)(float *y, const float *x, const float *w, int n, int dim, float eps);
  /* in-place rotate-half RoPE on x[n, n_heads*head_dim], pos[n] positions */
  void (*rope)(float *x, int n, int n_heads, int head_dim, const int *pos, float theta);
  /* causal GQA attention for n new tokens at positions start..start+n-1 whose K/V are
   * already in the caches kc/vc [ctx, n_kv*head_dim]; q [n, n_heads*head_dim];
   * out [n, n_heads*head_dim]. Token i attends to cache rows 0..start+i. */
  void (*attention)(float *out, const float *q, const float *kc, const float *vc, int n, int start,
                    int n_heads, int n_kv, int head_dim);
  /* h[i] = silu(g[i]) * u[i] for n elements (h may alias g) */
  void (*swiglu)(float *h, const float *g, const float *u, size_t n);
  /* row-wise softmax in place over x[n, dim] */
  void (*softmax)(float *x, int n, int dim);
  /* Generalised causal attention (families other than Mixtral): q [n, n_heads*qk_dim], caches
   * kc [ctx, n_kv*qk_dim] and vc [ctx, n_kv*v_dim] (cache row = absolute position), out
   * [n, n_heads*v_dim]; scores are q.k * scale. window > 0: token i (position start+i) sees
   * rows j with j > start+i-window (HF sliding window); sinks [n_heads] or NULL: one extra
   * logit per head that joins the softmax denominator and is dropped (gpt-oss sinks). */
  void (*attention_ex)(float *out, const float *q, const float *kc, const float *vc, int n, int start,
                       int n_heads, int n_kv, int qk_dim, int v_dim, float scale, int window,
                       const float *sinks);
  /* RoPE from precomputed tables: head h of token t starts at x + t*row_stride + h*head_stride;
   * the first rot_dim values are rotated with cs/sn [n, rot_dim/2] (cos, sin of angle i):
   * rotate-half pairs (i, i+rot_dim/2), or interleaved pairs (2i, 2i+1) when interleaved. */
  void (*rope_cs)(float *x, int n, int n_heads, int row_stride, int head_stride, int rot_dim,
                  const float *cs, const float *sn, int interleaved);
  /* gpt-oss clamped SwiGLU: g' = min(g, limit), u' = clamp(u, -limit, limit),
   * h = (u' + 1) * g' * sigmoid(alpha * g') (h may alias g) */
  void (*swiglu_oai)(float *h, const float *g, const float *u, size_t n, float alpha, float limit);
  /* matmul against a typed weight view: y[n,out] = x[n,in] . W[out,in]^T (+ bias), W read
   * in its stored type (w->rows >= out, w->cols == in). Bit-identical to widening W to
   * float32 first and calling matmul of the same backend (same accumulation order). */
  void (*matmul_w)(float *y, const float *x, const krn_w *w, const float *bias, int n, int in, int out);
} krn_backend;

/* The optimised, multithreaded CPU backend (OpenMP, SIMD chosen at run time). */
const krn_backend *krn_cpu_backend(void);
/* The plain reference backend (single-threaded, obviously correct; used by tests). */
const krn_backend *krn_ref_backend(void);

/* Threads used by the CPU backend (OpenMP); n <= 0 leaves the default. */
void krn_set_threads(int n);
int krn_get_threads(void);
/* Tests: force the portable C paths (on = 1) or go back to run-time detection (0). */
void krn_cpu_force_portable(int on);
/* CPU features detected at run time, e.g. "avx512f avx512bf16 avx2 fma". */
const char *krn_cpu_features(void);

#endif
