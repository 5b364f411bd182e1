/* krn_backend.h — the compute backend interface the engine calls for every op.
 *
 * The engine's forward pass is written once against this vtable; a backend supplies
 * the kernels (CPU now: kernels/cpu/, CUDA later: kernels/cuda/). All tensors here are
 * row-major float32 in host memory for the CPU backend. Shapes use n = tokens in the
 * batch. Each CPU kernel has a plain reference twin in krn_ref.c that tests compare to.
 */
#ifndef MOESCOPE_KRN_BACKEND_H
#define MOESCOPE_KRN_BACKEND_H

#include <stddef.h>

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
