/* krn_cuda_int.cuh — internal to kernels/cuda/: the context struct, error helpers and small
 * device utilities (warp/block reductions, BF16 loads) shared by the .cu files. */
#ifndef MOESCOPE_KRN_CUDA_INT_CUH
#define MOESCOPE_KRN_CUDA_INT_CUH

#include "kernels/krn_cuda_ops.h"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

struct krn_cuda_ctx {
  int device;
  cudaStream_t stream;
  cublasHandle_t blas;
  __nv_bfloat16 *scratch;     /* BF16 copy of a cuBLAS linear's input */
  size_t scratch_elems;
  struct krn_tc_state *tc;    /* krn_cuda_gemm_tc.cu: per-group argument arrays (lazy) */
};

/* krn_cuda_gemm_tc.cu: frees c->tc (called by krn_cuda_ctx_destroy after the stream sync). */
void krn_cuda_tc_free(krn_cuda_ctx *c);

/* Sets this thread's error message; returns -1. */
int krn_cuda_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* -1 + message when e is an error (what names the call). */
int krn_cuda_check(cudaError_t e, const char *what);
/* After a launch: picks up launch-configuration errors. */
int krn_cuda_launched(const char *what);

#define KRN_BLOCK 256

__device__ __forceinline__ float krn_bf(__nv_bfloat16 v) { return __bfloat162float(v); }

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
/* Block-wide reductions (blockDim.x a multiple of 32, <= 1024); red has >= 32 floats.
 * Every thread gets the result. The leading barrier lets red be reused call after call. */
__device__ __forceinline__ float block_sum(float v, float *red) {
  v = warp_sum(v);
  int w = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) red[w] = v;
  __syncthreads();
  float r = 0.0f;
  for (int i = 0; i < nw; i++) r += red[i];
  return r;
}
__device__ __forceinline__ float block_max(float v, float *red) {
  v = warp_max(v);
  int w = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) red[w] = v;
  __syncthreads();
  float r = -INFINITY;
  for (int i = 0; i < nw; i++) r = fmaxf(r, red[i]);
  return r;
}

static inline unsigned krn_blocks(size_t n, unsigned per) { return (unsigned)((n + per - 1) / per); }

#endif
