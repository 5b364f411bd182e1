/* krn_cuda_gemm_tc.cu — the routed experts' grouped linear on tensor cores through cuBLAS
 * (krn_cuda_grouped_linear_tc, see krn_cuda_ops.h; `moescope run --expert-gemm cublas`):
 * the permuted activations are rounded to BF16 once into the caller's scratch, then every
 * non-empty expert e computes y[r0:r1, :] = xbf[r0:r1, :] . W_e^T with BF16 operands and
 * CUBLAS_COMPUTE_32F (F32 accumulation, F32 output), bias added per group afterwards.
 *
 * Why cublasGemmGroupedBatchedEx: the experts' GEMMs share n/k (out, in) but each has its own
 * m (tokens routed to it), which plain cublasGemmBatchedEx / StridedBatchedEx cannot express
 * (one m per call: per-expert calls or padding to the largest group). CUDA >= 12.5 cuBLAS
 * (13.1 here) takes per-group m/n/k/ld arrays on the host and per-problem pointer arrays on
 * the device in one call, so one call covers all experts; each expert is a group of size 1.
 * Because support for BF16 operands with an F32 output in that call depends on the library
 * build, KRN_TC_AUTO falls back (for the rest of the context's life) to one cublasGemmEx per
 * expert (the path krn_cuda_linear's cuBLAS mode already relies on) when the grouped call is
 * refused. Column-major view as in krn_cuda_gemm.cu: C (out x m, ld out) = W^T B, with W as
 * column-major [in, out] (ld in) transposed and B = xbf as column-major [in, m] (ld in). */
#include "kernels/cuda/krn_cuda_int.cuh"

#include <stdlib.h>

int krn_cuda_blas_check(cublasStatus_t s, const char *what);

struct krn_tc_state {
  int cap;                    /* groups the arrays below hold */
  int grouped_off;            /* 1: the grouped call was refused once; auto uses per-group calls */
  cublasOperation_t *ta, *tb;
  int *m, *n, *k, *lda, *ldb, *ldc, *gsize;
  float *alpha, *beta;
  const void **hptr;          /* [3*cap]: A pointers, B pointers, C pointers (host copy) */
  void **dptr;                /* the same on the device */
};

static void tc_arrays_free(krn_tc_state *t) {
  free(t->ta); free(t->tb); free(t->m); free(t->n); free(t->k); free(t->lda); free(t->ldb); free(t->ldc);
  free(t->gsize); free(t->alpha); free(t->beta); free(t->hptr);
  if (t->dptr) cudaFree(t->dptr);
  t->ta = t->tb = NULL; t->m = t->n = t->k = t->lda = t->ldb = t->ldc = t->gsize = NULL;
  t->alpha = t->beta = NULL; t->hptr = NULL; t->dptr = NULL; t->cap = 0;
}

void krn_cuda_tc_free(krn_cuda_ctx *c) {
  if (!c || !c->tc) return;
  tc_arrays_free(c->tc);
  free(c->tc);
  c->tc = NULL;
}

static krn_tc_state *tc_state(krn_cuda_ctx *c, int groups) {
  if (!c->tc) {
    c->tc = (krn_tc_state *)calloc(1, sizeof(krn_tc_state));
    if (!c->tc) { krn_cuda_fail("grouped linear tc: out of host memory"); return NULL; }
  }
  krn_tc_state *t = c->tc;
  if (t->cap >= groups) return t;
  /* cudaFree of the old pointer array synchronises the device: in-flight calls are done */
  tc_arrays_free(t);
  size_t g = (size_t)groups;
  t->ta = (cublasOperation_t *)malloc(sizeof(cublasOperation_t) * g);
  t->tb = (cublasOperation_t *)malloc(sizeof(cublasOperation_t) * g);
  t->m = (int *)malloc(sizeof(int) * g); t->n = (int *)malloc(sizeof(int) * g); t->k = (int *)malloc(sizeof(int) * g);
  t->lda = (int *)malloc(sizeof(int) * g); t->ldb = (int *)malloc(sizeof(int) * g); t->ldc = (int *)malloc(sizeof(int) * g);
  t->gsize = (int *)malloc(sizeof(int) * g);
  t->alpha = (float *)malloc(sizeof(float) * g); t->beta = (float *)malloc(sizeof(float) * g);
  t->hptr = (const void **)malloc(sizeof(void *) * 3 * g);
  if (!t->ta || !t->tb || !t->m || !t->n || !t->k || !t->lda || !t->ldb || !t->ldc || !t->gsize || !t->alpha ||
      !t->beta || !t->hptr) {
    tc_arrays_free(t);
    krn_cuda_fail("grouped linear tc: out of host memory");
    return NULL;
  }
  if (krn_cuda_check(cudaMalloc((void **)&t->dptr, sizeof(void *) * 3 * g), "grouped linear tc: cudaMalloc(pointers)")) {
    t->dptr = NULL;
    tc_arrays_free(t);
    return NULL;
  }
  t->cap = groups;
  return t;
}

static __global__ void k_tc_to_bf16(__nv_bfloat16 *dst, const float *src, size_t n) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) dst[i] = __float2bfloat16_rn(src[i]);
}

/* One cublasGemmGroupedBatchedEx over the ng groups filled into t; CUBLAS status. */
static cublasStatus_t tc_grouped(krn_cuda_ctx *c, krn_tc_state *t, int ng) {
  /* pointer arrays: an async copy from pageable memory is staged before it returns, so the
   * host copy may be rewritten by the next call; stream order protects the device copy */
  if (cudaMemcpyAsync(t->dptr, t->hptr, sizeof(void *) * 3 * (size_t)ng, cudaMemcpyHostToDevice, c->stream) != cudaSuccess)
    return CUBLAS_STATUS_EXECUTION_FAILED;
  /* ng A pointers, then ng B pointers, then ng C pointers (packed by the caller) */
  const void *const *A = (const void *const *)t->dptr;
  const void *const *B = (const void *const *)(t->dptr + ng);
  void *const *C = (void *const *)(t->dptr + 2 * (size_t)ng);
  return cublasGemmGroupedBatchedEx(c->blas, t->ta, t->tb, t->m, t->n, t->k, t->alpha, A, CUDA_R_16BF, t->lda, B,
                                    CUDA_R_16BF, t->ldb, t->beta, C, CUDA_R_32F, t->ldc, ng, t->gsize,
                                    CUBLAS_COMPUTE_32F);
}

extern "C" int krn_cuda_grouped_linear_tc(krn_cuda_ctx *c, float *y, const float *x, uint16_t *xbf, const uint16_t *w,
                                          size_t w_stride, const float *bias, const int *h_offsets, int n_groups,
                                          int in, int out, int mode) {
  if (in <= 0 || out <= 0 || n_groups <= 0) return krn_cuda_fail("grouped linear tc: in=%d out=%d groups=%d", in, out, n_groups);
  if (mode != KRN_TC_AUTO && mode != KRN_TC_GROUPED && mode != KRN_TC_PER_GROUP)
    return krn_cuda_fail("grouped linear tc: unknown mode %d", mode);
  if (w_stride < (size_t)out * in) return krn_cuda_fail("grouped linear tc: weight stride %zu < %d x %d", w_stride, out, in);
  if (!h_offsets || h_offsets[0] != 0) return krn_cuda_fail("grouped linear tc: offsets must start at 0");
  for (int g = 0; g < n_groups; g++)
    if (h_offsets[g + 1] < h_offsets[g])
      return krn_cuda_fail("grouped linear tc: offsets[%d..%d] = %d, %d", g, g + 1, h_offsets[g], h_offsets[g + 1]);
  int total = h_offsets[n_groups];
  if (total == 0) return 0;
  size_t nx = (size_t)total * in;
  k_tc_to_bf16<<<krn_blocks(nx, KRN_BLOCK), KRN_BLOCK, 0, c->stream>>>((__nv_bfloat16 *)xbf, x, nx);
  if (krn_cuda_launched("grouped linear tc (to bf16)")) return -1;
  const __nv_bfloat16 *W = (const __nv_bfloat16 *)w, *X = (const __nv_bfloat16 *)xbf;
  krn_tc_state *t = NULL;
  if (mode != KRN_TC_PER_GROUP && !(mode == KRN_TC_AUTO && c->tc && c->tc->grouped_off)) {
    if (!(t = tc_state(c, n_groups))) return -1;
    int ng = 0;
    for (int g = 0; g < n_groups; g++)
      if (h_offsets[g + 1] > h_offsets[g]) ng++;
    int j = 0;
    for (int g = 0; g < n_groups; g++) {
      int r0 = h_offsets[g], nr = h_offsets[g + 1] - r0;
      if (nr == 0) continue;
      t->ta[j] = CUBLAS_OP_T; t->tb[j] = CUBLAS_OP_N;
      t->m[j] = out; t->n[j] = nr; t->k[j] = in;
      t->lda[j] = in; t->ldb[j] = in; t->ldc[j] = out;
      t->gsize[j] = 1; t->alpha[j] = 1.0f; t->beta[j] = 0.0f;
      t->hptr[j] = W + (size_t)g * w_stride;
      t->hptr[ng + j] = X + (size_t)r0 * in;
      t->hptr[2 * ng + j] = y + (size_t)r0 * out;
      j++;
    }
    cublasStatus_t st = tc_grouped(c, t, ng);
    if (st == CUBLAS_STATUS_SUCCESS) goto bias;
    if (mode == KRN_TC_GROUPED || (st != CUBLAS_STATUS_NOT_SUPPORTED && st != CUBLAS_STATUS_INVALID_VALUE))
      return krn_cuda_blas_check(st, "cublasGemmGroupedBatchedEx");
    t->grouped_off = 1;   /* refused: per-group calls from now on */
  }
  {
    const float alpha = 1.0f, beta = 0.0f;
    for (int g = 0; g < n_groups; g++) {
      int r0 = h_offsets[g], nr = h_offsets[g + 1] - r0;
      if (nr == 0) continue;
      cublasStatus_t st = cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, out, nr, in, &alpha, W + (size_t)g * w_stride,
                                       CUDA_R_16BF, in, X + (size_t)r0 * in, CUDA_R_16BF, in, &beta,
                                       y + (size_t)r0 * out, CUDA_R_32F, out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
      if (krn_cuda_blas_check(st, "cublasGemmEx (expert)")) return -1;
    }
  }
bias:
  if (bias)
    for (int g = 0; g < n_groups; g++) {
      int r0 = h_offsets[g], nr = h_offsets[g + 1] - r0;
      if (nr > 0 && krn_cuda_add_bias(c, y + (size_t)r0 * out, bias + (size_t)g * out, nr, out)) return -1;
    }
  return 0;
}
