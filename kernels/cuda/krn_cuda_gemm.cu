/* krn_cuda_gemm.cu — linear layers with BF16 weights (see krn_cuda_ops.h):
 *  - GEMV for a few rows (decode): one warp per output row, 16-byte loads of 8 weights,
 *    every row's dot product from the same weight registers (weights read once);
 *  - grouped GEMV (decode experts): one row per blockIdx.y, its expert from row_exp;
 *  - tiled GEMM (prefill experts, optionally dense): 64x64 output tile per block, 16-deep
 *    k slices in shared memory, 4x4 outputs per thread, float32 FMA; grouped over experts
 *    via device offsets, so no host round trip is needed to know the tokens per expert;
 *  - cuBLAS cublasGemmEx for dense prefill (input rounded to BF16, F32 accumulate/output).
 * Row-major everywhere: y[r, o] = sum_i x[r, i] * W[o, i] (+ bias[o]). */
#include "kernels/cuda/krn_cuda_int.cuh"

int krn_cuda_blas_check(cublasStatus_t s, const char *what);

#define GEMV_WARPS 8

__device__ __forceinline__ void unpack8(uint4 raw, float *f) {
  unsigned u[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int i = 0; i < 4; i++) {
    f[2 * i] = __uint_as_float(u[i] << 16);
    f[2 * i + 1] = __uint_as_float(u[i] & 0xffff0000u);
  }
}

/* rows <= NT; vec: in % 8 == 0 and x, W 16-byte aligned. */
template <int NT>
__global__ void k_gemv(float *y, const float *x, const __nv_bfloat16 *W, const float *bias, int rows, int in, int out,
                       int vec) {
  int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  int o = blockIdx.x * GEMV_WARPS + warp;
  if (o >= out) return;   /* whole warp */
  const __nv_bfloat16 *w = W + (size_t)o * in;
  float acc[NT];
#pragma unroll
  for (int t = 0; t < NT; t++) acc[t] = 0.0f;
  if (vec) {
    for (int i = lane * 8; i < in; i += 32 * 8) {
      float wf[8];
      unpack8(*(const uint4 *)(w + i), wf);
#pragma unroll
      for (int t = 0; t < NT; t++) {
        if (t < rows) {
          const float *xr = x + (size_t)t * in + i;
          float4 a = *(const float4 *)xr, b = *(const float4 *)(xr + 4);
          acc[t] += wf[0] * a.x + wf[1] * a.y + wf[2] * a.z + wf[3] * a.w + wf[4] * b.x + wf[5] * b.y + wf[6] * b.z +
                    wf[7] * b.w;
        }
      }
    }
  } else {
    for (int i = lane; i < in; i += 32) {
      float wv = krn_bf(w[i]);
#pragma unroll
      for (int t = 0; t < NT; t++)
        if (t < rows) acc[t] += wv * x[(size_t)t * in + i];
    }
  }
#pragma unroll
  for (int t = 0; t < NT; t++) {
    if (t < rows) {
      float s = warp_sum(acc[t]);
      if (lane == 0) y[(size_t)t * out + o] = s + (bias ? bias[o] : 0.0f);
    }
  }
}

/* Row r = blockIdx.y of a permuted batch (r < offsets[n_groups]) with expert row_exp[r]. */
__global__ void k_grouped_gemv(float *y, const float *x, const __nv_bfloat16 *W, size_t w_stride, const float *bias,
                               const int *total, const int *row_exp, int in, int out, int vec) {
  int r = blockIdx.y;
  if (r >= *total) return;
  int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  int o = blockIdx.x * GEMV_WARPS + warp;
  if (o >= out) return;
  int e = row_exp[r];
  const __nv_bfloat16 *w = W + (size_t)e * w_stride + (size_t)o * in;
  const float *xr = x + (size_t)r * in;
  float acc = 0.0f;
  if (vec) {
    for (int i = lane * 8; i < in; i += 32 * 8) {
      float wf[8];
      unpack8(*(const uint4 *)(w + i), wf);
      float4 a = *(const float4 *)(xr + i), b = *(const float4 *)(xr + i + 4);
      acc += wf[0] * a.x + wf[1] * a.y + wf[2] * a.z + wf[3] * a.w + wf[4] * b.x + wf[5] * b.y + wf[6] * b.z + wf[7] * b.w;
    }
  } else {
    for (int i = lane; i < in; i += 32) acc += krn_bf(w[i]) * xr[i];
  }
  acc = warp_sum(acc);
  if (lane == 0) y[(size_t)r * out + o] = acc + (bias ? bias[(size_t)e * out + o] : 0.0f);
}

/* Tiled (grouped) GEMM: block (x: 64 outputs, y: 64 rows, z: group). offsets NULL = one
 * group of `rows` rows starting at 0. Thread (tx, ty) owns rows ty+16i, outputs tx+16j. */
#define TM 64
#define TN 64
#define TK 16
__global__ void k_tiled(float *y, const float *x, const __nv_bfloat16 *W, size_t w_stride, const float *bias,
                        const int *offsets, int rows, int in, int out) {
  __shared__ float xs[TK][TM + 1];
  __shared__ float ws[TK][TN + 1];
  int g = blockIdx.z;
  int r0 = 0, nr = rows;
  if (offsets) { r0 = offsets[g]; nr = offsets[g + 1] - r0; }
  int m0 = blockIdx.y * TM;
  if (m0 >= nr) return;   /* whole block: no barrier reached yet */
  int n0 = blockIdx.x * TN;
  const __nv_bfloat16 *Wg = W + (size_t)g * w_stride;
  int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;
  for (int k0 = 0; k0 < in; k0 += TK) {
    for (int idx = threadIdx.x; idx < TM * TK; idx += blockDim.x) {
      int m = idx / TK, kk = idx % TK, gm = m0 + m, gk = k0 + kk;
      xs[kk][m] = (gm < nr && gk < in) ? x[(size_t)(r0 + gm) * in + gk] : 0.0f;
    }
    for (int idx = threadIdx.x; idx < TN * TK; idx += blockDim.x) {
      int nn = idx / TK, kk = idx % TK, gn = n0 + nn, gk = k0 + kk;
      ws[kk][nn] = (gn < out && gk < in) ? krn_bf(Wg[(size_t)gn * in + gk]) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < TK; kk++) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; i++) a[i] = xs[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; j++) b[j] = ws[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] += a[i] * b[j];
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; i++) {
    int gm = m0 + ty + 16 * i;
    if (gm >= nr) continue;
#pragma unroll
    for (int j = 0; j < 4; j++) {
      int gn = n0 + tx + 16 * j;
      if (gn < out) y[(size_t)(r0 + gm) * out + gn] = acc[i][j] + (bias ? bias[(size_t)g * out + gn] : 0.0f);
    }
  }
}

__global__ void k_to_bf16(__nv_bfloat16 *dst, const float *src, size_t n) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) dst[i] = __float2bfloat16_rn(src[i]);
}

static int aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

extern "C" int krn_cuda_linear(krn_cuda_ctx *c, float *y, const float *x, const uint16_t *w, const float *bias, int rows,
                               int in, int out, int mode) {
  if (rows <= 0) return 0;
  if (in <= 0 || out <= 0) return krn_cuda_fail("linear: in=%d out=%d", in, out);
  const __nv_bfloat16 *W = (const __nv_bfloat16 *)w;
  if (mode == KRN_LIN_AUTO) mode = rows <= KRN_CUDA_GEMV_MAX_ROWS ? KRN_LIN_GEMV : KRN_LIN_CUBLAS;
  if (mode == KRN_LIN_GEMV) {
    if (rows > KRN_CUDA_GEMV_MAX_ROWS) return krn_cuda_fail("linear: GEMV takes at most %d rows (%d)", KRN_CUDA_GEMV_MAX_ROWS, rows);
    int vec = in % 8 == 0 && aligned16(x) && aligned16(w);
    k_gemv<KRN_CUDA_GEMV_MAX_ROWS><<<krn_blocks((size_t)out, GEMV_WARPS), GEMV_WARPS * 32, 0, c->stream>>>(
        y, x, W, bias, rows, in, out, vec);
    return krn_cuda_launched("linear (gemv)");
  }
  if (mode == KRN_LIN_TILED) {
    if ((size_t)rows > 65535u * TM) return krn_cuda_fail("linear: %d rows", rows);
    dim3 grid(krn_blocks((size_t)out, TN), krn_blocks((size_t)rows, TM), 1);
    k_tiled<<<grid, 256, 0, c->stream>>>(y, x, W, 0, bias, NULL, rows, in, out);
    return krn_cuda_launched("linear (tiled)");
  }
  if (mode != KRN_LIN_CUBLAS) return krn_cuda_fail("linear: unknown mode %d", mode);
  size_t nx = (size_t)rows * in;
  if (nx > c->scratch_elems)
    return krn_cuda_fail("linear: %zu input values exceed the BF16 scratch (%zu)", nx, c->scratch_elems);
  k_to_bf16<<<krn_blocks(nx, KRN_BLOCK), KRN_BLOCK, 0, c->stream>>>(c->scratch, x, nx);
  if (krn_cuda_launched("linear (to bf16)")) return -1;
  /* Column-major view: Y^T [out, rows] = W^T' ... i.e. C(out x rows, ld out) = op(A) B with
   * A = W as column-major [in, out] (ld in) transposed, B = x as column-major [in, rows]. */
  const float alpha = 1.0f, beta = 0.0f;
  cublasStatus_t st = cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, out, rows, in, &alpha, W, CUDA_R_16BF, in,
                                   c->scratch, CUDA_R_16BF, in, &beta, y, CUDA_R_32F, out, CUBLAS_COMPUTE_32F,
                                   CUBLAS_GEMM_DEFAULT);
  if (krn_cuda_blas_check(st, "cublasGemmEx")) return -1;
  return bias ? krn_cuda_add_bias(c, y, bias, rows, out) : 0;
}

extern "C" int krn_cuda_grouped_linear(krn_cuda_ctx *c, float *y, const float *x, const uint16_t *w, size_t w_stride,
                                       const float *bias, const int *offsets, const int *row_exp, int n_groups,
                                       int max_rows, int in, int out, int mode) {
  if (max_rows <= 0) return 0;
  if (in <= 0 || out <= 0 || n_groups <= 0) return krn_cuda_fail("grouped linear: in=%d out=%d groups=%d", in, out, n_groups);
  if (n_groups > 65535) return krn_cuda_fail("grouped linear: %d groups (max 65535)", n_groups);
  const __nv_bfloat16 *W = (const __nv_bfloat16 *)w;
  if (mode == KRN_LIN_AUTO) mode = max_rows <= KRN_CUDA_GEMV_MAX_ROWS * 8 ? KRN_LIN_GEMV : KRN_LIN_TILED;
  if (mode == KRN_LIN_GEMV) {
    if (max_rows > 65535) return krn_cuda_fail("grouped linear: %d rows for the GEMV path", max_rows);
    int vec = in % 8 == 0 && w_stride % 8 == 0 && aligned16(x) && aligned16(w);
    dim3 grid(krn_blocks((size_t)out, GEMV_WARPS), (unsigned)max_rows, 1);
    k_grouped_gemv<<<grid, GEMV_WARPS * 32, 0, c->stream>>>(y, x, W, w_stride, bias, offsets + n_groups, row_exp, in, out, vec);
    return krn_cuda_launched("grouped linear (gemv)");
  }
  if (mode != KRN_LIN_TILED) return krn_cuda_fail("grouped linear: unknown mode %d", mode);
  if ((size_t)max_rows > 65535u * TM) return krn_cuda_fail("grouped linear: %d rows", max_rows);
  dim3 grid(krn_blocks((size_t)out, TN), krn_blocks((size_t)max_rows, TM), (unsigned)n_groups);
  k_tiled<<<grid, 256, 0, c->stream>>>(y, x, W, w_stride, bias, offsets, max_rows, in, out);
  return krn_cuda_launched("grouped linear (tiled)");
}

__global__ void k_linear_f32w(float *y, const float *x, const float *W, const float *bias, int in, int out) {
  int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  int o = blockIdx.x * GEMV_WARPS + warp, r = blockIdx.y;
  if (o >= out) return;
  const float *w = W + (size_t)o * in, *xr = x + (size_t)r * in;
  float acc = 0.0f;
  for (int i = lane; i < in; i += 32) acc += w[i] * xr[i];
  acc = warp_sum(acc);
  if (lane == 0) y[(size_t)r * out + o] = acc + (bias ? bias[o] : 0.0f);
}

extern "C" int krn_cuda_linear_f32w(krn_cuda_ctx *c, float *y, const float *x, const float *w, const float *bias,
                                    int rows, int in, int out) {
  if (rows <= 0) return 0;
  if (in <= 0 || out <= 0 || rows > 65535) return krn_cuda_fail("linear_f32w: rows=%d in=%d out=%d", rows, in, out);
  dim3 grid(krn_blocks((size_t)out, GEMV_WARPS), (unsigned)rows, 1);
  k_linear_f32w<<<grid, GEMV_WARPS * 32, 0, c->stream>>>(y, x, w, bias, in, out);
  return krn_cuda_launched("linear_f32w");
}
