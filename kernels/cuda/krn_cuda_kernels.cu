/* krn_cuda_kernels.cu — the CUDA backend's non-GEMM kernels (see krn_cuda_ops.h for each
 * contract): embedding, RMSNorm (optionally strided rows), RoPE, attention (prefill and
 * decode, qk dim != v dim, window, sinks), small elementwise ops, SwiGLU and gpt-oss's
 * clamped variant, MLA's key/value decompression into the cache, the router (a port of
 * eng_policy.c, one thread per token), token permutation by expert, gather, un-permute +
 * combine, argmax and temperature sampling. Kept simple and
 * deterministic (no atomics): every output element has one writer in a fixed order. */
#include "kernels/cuda/krn_cuda_int.cuh"

/* ---- embedding, norms, elementwise ------------------------------------------------------ */
__global__ void k_embed(float *x, const __nv_bfloat16 *emb, const int *ids, int dim) {
  int t = blockIdx.x;
  const __nv_bfloat16 *row = emb + (size_t)ids[t] * dim;
  for (int d = threadIdx.x; d < dim; d += blockDim.x) x[(size_t)t * dim + d] = krn_bf(row[d]);
}

extern "C" int krn_cuda_embed(krn_cuda_ctx *c, float *x, const uint16_t *emb, const int *ids, int n, int dim) {
  if (n <= 0) return 0;
  k_embed<<<n, KRN_BLOCK, 0, c->stream>>>(x, (const __nv_bfloat16 *)emb, ids, dim);
  return krn_cuda_launched("embed");
}

/* row r of x at x + r*xs, of y at y + r*ys (strides in floats) */
__global__ void k_rmsnorm(float *y, size_t ys, const float *x, size_t xs, const float *w, int dim, float eps) {
  __shared__ float red[32];
  const float *xr = x + (size_t)blockIdx.x * xs;
  float *yr = y + (size_t)blockIdx.x * ys;
  float ss = 0.0f;
  for (int d = threadIdx.x; d < dim; d += blockDim.x) ss += xr[d] * xr[d];
  ss = block_sum(ss, red);
  float r = 1.0f / sqrtf(ss / (float)dim + eps);
  for (int d = threadIdx.x; d < dim; d += blockDim.x) yr[d] = w[d] * (xr[d] * r);
}

extern "C" int krn_cuda_rmsnorm_strided(krn_cuda_ctx *c, float *y, int y_stride, const float *x, int x_stride,
                                        const float *w, int n, int dim, float eps) {
  if (n <= 0) return 0;
  if (dim <= 0 || y_stride < dim || x_stride < dim)
    return krn_cuda_fail("rmsnorm: dim %d, strides %d/%d", dim, y_stride, x_stride);
  if (y == x && y_stride != x_stride) return krn_cuda_fail("rmsnorm: in place with different strides");
  k_rmsnorm<<<n, KRN_BLOCK, 0, c->stream>>>(y, (size_t)y_stride, x, (size_t)x_stride, w, dim, eps);
  return krn_cuda_launched("rmsnorm");
}

extern "C" int krn_cuda_rmsnorm(krn_cuda_ctx *c, float *y, const float *x, const float *w, int n, int dim, float eps) {
  return krn_cuda_rmsnorm_strided(c, y, dim, x, dim, w, n, dim, eps);
}

__global__ void k_rope_cs(float *x, int n, int n_heads, int row_stride, int head_stride, int half,
                          const float *cs, const float *sn, int interleaved) {
  size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  size_t total = (size_t)n * n_heads * half;
  if (idx >= total) return;
  int i = (int)(idx % half);
  int h = (int)((idx / half) % n_heads);
  int t = (int)(idx / ((size_t)half * n_heads));
  float *v = x + (size_t)t * row_stride + (size_t)h * head_stride;
  int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
  float cc = cs[(size_t)t * half + i], s = sn[(size_t)t * half + i], x0 = v[a], x1 = v[b];
  v[a] = x0 * cc - x1 * s;
  v[b] = x1 * cc + x0 * s;
}

extern "C" int krn_cuda_rope_cs(krn_cuda_ctx *c, float *x, int n, int n_heads, int row_stride, int head_stride,
                                int rot_dim, const float *cs, const float *sn, int interleaved) {
  int half = rot_dim / 2;
  if (n <= 0 || n_heads <= 0 || half <= 0) return 0;
  size_t total = (size_t)n * n_heads * half;
  k_rope_cs<<<krn_blocks(total, KRN_BLOCK), KRN_BLOCK, 0, c->stream>>>(x, n, n_heads, row_stride, head_stride, half,
                                                                        cs, sn, interleaved);
  return krn_cuda_launched("rope");
}

__global__ void k_add_bias(float *y, const float *bias, size_t total, int dim) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < total) y[i] += bias[i % dim];
}
extern "C" int krn_cuda_add_bias(krn_cuda_ctx *c, float *y, const float *bias, int n, int dim) {
  size_t total = (size_t)n * dim;
  if (total == 0 || !bias) return 0;
  k_add_bias<<<krn_blocks(total, KRN_BLOCK), KRN_BLOCK, 0, c->stream>>>(y, bias, total, dim);
  return krn_cuda_launched("add_bias");
}

__global__ void k_clamp(float *x, size_t total, float lim) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < total) x[i] = fminf(fmaxf(x[i], -lim), lim);
}
extern "C" int krn_cuda_clamp(krn_cuda_ctx *c, float *x, size_t count, float lim) {
  if (count == 0) return 0;
  k_clamp<<<krn_blocks(count, KRN_BLOCK), KRN_BLOCK, 0, c->stream>>>(x, count, lim);
  return krn_cuda_launched("clamp");
}

__global__ void k_add_rows(float *x, const float *y, const float *s, size_t total, int dim) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < total) x[i] += (s ? s[i / dim] : 1.0f) * y[i];
}
extern "C" int krn_cuda_add_rows(krn_cuda_ctx *c, float *x, const float *y, const float *s, int n, int dim) {
  size_t total = (size_t)n * dim;
  if (total == 0) return 0;
  k_add_rows<<<krn_blocks(total, KRN_BLOCK), KRN_BLOCK, 0, c->stream>>>(x, y, s, total, dim);
  return krn_cuda_launched("add_rows");
}

__global__ void k_rowdot_sigmoid(float *s, const float *h, const float *w, int dim) {
  __shared__ float red[32];
  const float *hr = h + (size_t)blockIdx.x * dim;
  float acc = 0.0f;
  for (int d = threadIdx.x; d < dim; d += blockDim.x) acc += hr[d] * w[d];
  acc = block_sum(acc, red);
  if (threadIdx.x == 0) s[blockIdx.x] = 1.0f / (1.0f + expf(-acc));
}
extern "C" int krn_cuda_rowdot_sigmoid(krn_cuda_ctx *c, float *s, const float *h, const float *w, int n, int dim) {
  if (n <= 0) return 0;
  k_rowdot_sigmoid<<<n, KRN_BLOCK, 0, c->stream>>>(s, h, w, dim);
  return krn_cuda_launched("rowdot_sigmoid");
}

/* oai = 0: silu(g) * u; oai = 1: gpt-oss (krn_cpu.c cpu_swiglu_oai, float32 as there):
 * g' = min(g, limit), u' = clamp(u, -limit, limit), (u' + 1) * g' * sigmoid(alpha * g'). */
__global__ void k_swiglu(float *h, const float *gu, int rows, const int *rows_dev, int inter, int oai, float alpha,
                         float limit) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  size_t r = i / inter;
  int col = (int)(i % inter);
  if (r >= (size_t)rows) return;
  if (rows_dev && r >= (size_t)*rows_dev) return;
  float g = gu[r * 2 * inter + col], u = gu[r * 2 * inter + inter + col];
  if (oai) {
    float gg = fminf(g, limit), uu = fminf(fmaxf(u, -limit), limit);
    h[r * inter + col] = (uu + 1.0f) * gg / (1.0f + expf(-alpha * gg));
  } else {
    h[r * inter + col] = g / (1.0f + expf(-g)) * u;
  }
}
extern "C" int krn_cuda_swiglu(krn_cuda_ctx *c, float *h, const float *gu, int rows, const int *rows_dev, int inter) {
  size_t total = (size_t)rows * inter;
  if (total == 0) return 0;
  k_swiglu<<<krn_blocks(total, KRN_BLOCK), KRN_BLOCK, 0, c->stream>>>(h, gu, rows, rows_dev, inter, 0, 0.0f, 0.0f);
  return krn_cuda_launched("swiglu");
}
extern "C" int krn_cuda_swiglu_oai(krn_cuda_ctx *c, float *h, const float *gu, int rows, const int *rows_dev, int inter,
                                   float alpha, float limit) {
  size_t total = (size_t)rows * inter;
  if (total == 0) return 0;
  k_swiglu<<<krn_blocks(total, KRN_BLOCK), KRN_BLOCK, 0, c->stream>>>(h, gu, rows, rows_dev, inter, 1, alpha, limit);
  return krn_cuda_launched("swiglu_oai");
}

/* ---- MLA: decompressed keys/values into the cache ----------------------------------------
 * Token t, head h: k[t][h*(nope+rd) + d] = kvb[t][h*(nope+vh) + d] for d < nope, then the
 * shared (already rotated) k_pe = kva[t][kvr + d - nope]; v[t][h*vh + d] =
 * kvb[t][h*(nope+vh) + nope + d]. One thread per written element. */
__global__ void k_mla_kv(float *kc, float *vc, const float *kvb, const float *kva, int n, int nh, int nope, int rd,
                         int vh, int kvr) {
  int qk = nope + rd, kvbw = nope + vh, kvaw = kvr + rd;
  size_t per = (size_t)nh * (qk + vh), total = (size_t)n * per;
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= total) return;
  int t = (int)(i / per);
  size_t r = i % per;
  const float *src = kvb + (size_t)t * nh * kvbw;
  if (r < (size_t)nh * qk) {
    int h = (int)(r / qk), d = (int)(r % qk);
    kc[(size_t)t * nh * qk + r] = d < nope ? src[(size_t)h * kvbw + d] : kva[(size_t)t * kvaw + kvr + (d - nope)];
  } else {
    r -= (size_t)nh * qk;
    int h = (int)(r / vh), d = (int)(r % vh);
    vc[(size_t)t * nh * vh + r] = src[(size_t)h * kvbw + nope + d];
  }
}
extern "C" int krn_cuda_mla_kv(krn_cuda_ctx *c, float *kc, float *vc, const float *kvb, const float *kva, int n, int nh,
                               int nope, int rd, int vh, int kvr) {
  if (n <= 0) return 0;
  if (nh <= 0 || nope < 0 || rd < 0 || vh <= 0 || kvr < 0 || nope + rd <= 0)
    return krn_cuda_fail("mla_kv: nh=%d nope=%d rope=%d v=%d kv_lora=%d", nh, nope, rd, vh, kvr);
  size_t total = (size_t)n * nh * (nope + rd + vh);
  k_mla_kv<<<krn_blocks(total, KRN_BLOCK), KRN_BLOCK, 0, c->stream>>>(kc, vc, kvb, kva, n, nh, nope, rd, vh, kvr);
  return krn_cuda_launched("mla_kv");
}

/* ---- attention ---------------------------------------------------------------------------
 * Prefill: one block (128 threads) per (head, token). Keys are processed in chunks of 128:
 * thread i scores key chunk+i (q in shared memory), the chunk's max and sum come from block
 * reductions, and the running output (thread d owns dims d and d+128) is rescaled by
 * exp(m_old - m_new) before the chunk's p_j * v_j are added (online softmax). */
#define ATT_T 128
__global__ void k_attn_prefill(float *out, const float *q, const float *kc, const float *vc, int start, int nh,
                               int nkv, int qk, int vd, float scale, int window, const float *sinks) {
  __shared__ float qs[KRN_CUDA_MAX_HEAD_DIM];
  __shared__ float ps[ATT_T];
  __shared__ float red[32];
  int h = blockIdx.x, t = blockIdx.y, tid = threadIdx.x;
  int group = nh / nkv, kvh = h / group;
  int p = start + t;
  int j0 = (window > 0 && p - window + 1 > 0) ? p - window + 1 : 0;
  size_t kw = (size_t)nkv * qk, vw = (size_t)nkv * vd;
  for (int d = tid; d < qk; d += ATT_T) qs[d] = q[((size_t)t * nh + h) * qk + d];
  __syncthreads();
  float m = sinks ? sinks[h] : -INFINITY, l = 0.0f, acc0 = 0.0f, acc1 = 0.0f;
  for (int jc = j0; jc <= p; jc += ATT_T) {
    int j = jc + tid;
    float s = -INFINITY;
    if (j <= p) {
      const float *kr = kc + (size_t)j * kw + (size_t)kvh * qk;
      float dot = 0.0f;
      for (int d = 0; d < qk; d++) dot += qs[d] * kr[d];
      s = dot * scale;
    }
    float cmax = block_max(s, red);
    float mnew = fmaxf(m, cmax);              /* finite: key jc <= p is valid */
    float pj = (j <= p) ? expf(s - mnew) : 0.0f;
    float csum = block_sum(pj, red);          /* its barriers also order ps below */
    float alpha = expf(m - mnew);             /* 0 when m is -inf */
    l = l * alpha + csum;
    ps[tid] = pj;
    __syncthreads();
    int cnt = p - jc + 1 < ATT_T ? p - jc + 1 : ATT_T;
    int d0 = tid, d1 = tid + ATT_T;
    if (d0 < vd) {
      float a = acc0 * alpha;
      for (int jj = 0; jj < cnt; jj++) a += ps[jj] * vc[(size_t)(jc + jj) * vw + (size_t)kvh * vd + d0];
      acc0 = a;
    }
    if (d1 < vd) {
      float a = acc1 * alpha;
      for (int jj = 0; jj < cnt; jj++) a += ps[jj] * vc[(size_t)(jc + jj) * vw + (size_t)kvh * vd + d1];
      acc1 = a;
    }
    m = mnew;
    __syncthreads();                          /* ps is rewritten by the next chunk */
  }
  if (sinks) l += expf(sinks[h] - m);
  float *o = out + ((size_t)t * nh + h) * vd;
  if (tid < vd) o[tid] = acc0 / l;
  if (tid + ATT_T < vd) o[tid + ATT_T] = acc1 / l;
}

/* Decode: one block of 4 warps per (head, token); warp w takes keys j0+w, j0+w+4, ...; the
 * lanes split each dot product over the head dim (coalesced cache reads) and keep the
 * output dims lane, lane+32, ... (up to 8 per lane); the warps' (m, l, acc) are merged in
 * shared memory at the end. */
#define DEC_WARPS 4
__global__ void k_attn_decode(float *out, const float *q, const float *kc, const float *vc, int start, int nh,
                              int nkv, int qk, int vd, float scale, int window, const float *sinks) {
  __shared__ float qs[KRN_CUDA_MAX_HEAD_DIM];
  __shared__ float wm[DEC_WARPS], wl[DEC_WARPS];
  __shared__ float wacc[DEC_WARPS][KRN_CUDA_MAX_HEAD_DIM];
  int h = blockIdx.x, t = blockIdx.y;
  int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  int group = nh / nkv, kvh = h / group;
  int p = start + t;
  int j0 = (window > 0 && p - window + 1 > 0) ? p - window + 1 : 0;
  size_t kw = (size_t)nkv * qk, vw = (size_t)nkv * vd;
  for (int d = threadIdx.x; d < qk; d += blockDim.x) qs[d] = q[((size_t)t * nh + h) * qk + d];
  __syncthreads();
  float m = -INFINITY, l = 0.0f;
  float acc[KRN_CUDA_MAX_HEAD_DIM / 32];
#pragma unroll
  for (int i = 0; i < KRN_CUDA_MAX_HEAD_DIM / 32; i++) acc[i] = 0.0f;
  for (int j = j0 + warp; j <= p; j += DEC_WARPS) {
    const float *kr = kc + (size_t)j * kw + (size_t)kvh * qk;
    float dot = 0.0f;
    for (int d = lane; d < qk; d += 32) dot += qs[d] * kr[d];
    float s = warp_sum(dot) * scale;
    float mnew = fmaxf(m, s);
    float alpha = expf(m - mnew), pj = expf(s - mnew);
    l = l * alpha + pj;
    const float *vr = vc + (size_t)j * vw + (size_t)kvh * vd;
#pragma unroll
    for (int i = 0; i < KRN_CUDA_MAX_HEAD_DIM / 32; i++) {
      int d = lane + 32 * i;
      if (d < vd) acc[i] = acc[i] * alpha + pj * vr[d];
    }
    m = mnew;
  }
  if (lane == 0) { wm[warp] = m; wl[warp] = l; }
#pragma unroll
  for (int i = 0; i < KRN_CUDA_MAX_HEAD_DIM / 32; i++) {
    int d = lane + 32 * i;
    if (d < vd) wacc[warp][d] = acc[i];
  }
  __syncthreads();
  float M = sinks ? sinks[h] : -INFINITY;
  for (int w = 0; w < DEC_WARPS; w++) M = fmaxf(M, wm[w]);
  float L = sinks ? expf(sinks[h] - M) : 0.0f;
  float f[DEC_WARPS];
  for (int w = 0; w < DEC_WARPS; w++) {
    f[w] = wl[w] > 0.0f ? expf(wm[w] - M) : 0.0f;   /* a warp without keys has m = -inf, l = 0 */
    L += wl[w] * f[w];
  }
  float *o = out + ((size_t)t * nh + h) * vd;
  for (int d = threadIdx.x; d < vd; d += blockDim.x) {
    float a = 0.0f;
    for (int w = 0; w < DEC_WARPS; w++) if (f[w] > 0.0f) a += wacc[w][d] * f[w];
    o[d] = a / L;
  }
}

extern "C" int krn_cuda_attention(krn_cuda_ctx *c, float *out, const float *q, const float *kc, const float *vc,
                                  int n, int start, int n_heads, int n_kv, int qk_dim, int v_dim, float scale,
                                  int window, const float *sinks, int kind) {
  if (n <= 0) return 0;
  if (n_heads <= 0 || n_kv <= 0 || n_heads % n_kv)
    return krn_cuda_fail("attention: %d heads not a multiple of %d kv heads", n_heads, n_kv);
  if (qk_dim <= 0 || v_dim <= 0 || qk_dim > KRN_CUDA_MAX_HEAD_DIM || v_dim > KRN_CUDA_MAX_HEAD_DIM)
    return krn_cuda_fail("attention: head dims %d/%d outside 1..%d", qk_dim, v_dim, KRN_CUDA_MAX_HEAD_DIM);
  if (n > 65535) return krn_cuda_fail("attention: %d tokens in one launch (max 65535)", n);
  if (kind == 0) kind = n == 1 ? 2 : 1;
  dim3 grid((unsigned)n_heads, (unsigned)n);
  if (kind == 1)
    k_attn_prefill<<<grid, ATT_T, 0, c->stream>>>(out, q, kc, vc, start, n_heads, n_kv, qk_dim, v_dim, scale, window, sinks);
  else
    k_attn_decode<<<grid, DEC_WARPS * 32, 0, c->stream>>>(out, q, kc, vc, start, n_heads, n_kv, qk_dim, v_dim, scale,
                                                          window, sinks);
  return krn_cuda_launched(kind == 1 ? "attention (prefill)" : "attention (decode)");
}

/* ---- router (port of eng_policy.c; one thread per token) -------------------------------- */
#define ROUTE_MAX_K 64
#define ROUTE_MAX_GROUPS 64

/* Top-k by value, ties to the lower index (eng_topk). */
__device__ void d_topk(const float *v, int n, int k, int *idx) {
  for (int j = 0; j < k; j++) idx[j] = -1;
  for (int i = 0; i < n; i++) {
    int j = k - 1;
    if (idx[j] >= 0 && !(v[i] > v[idx[j]])) continue;
    while (j > 0 && (idx[j - 1] < 0 || v[i] > v[idx[j - 1]])) { idx[j] = idx[j - 1]; j--; }
    idx[j] = i;
  }
}
__device__ void d_softmax_row(const float *z, int E, float *pr) {
  float mx = -INFINITY, s = 0.0f;
  for (int e = 0; e < E; e++) if (z[e] > mx) mx = z[e];
  for (int e = 0; e < E; e++) { pr[e] = expf(z[e] - mx); s += pr[e]; }
  for (int e = 0; e < E; e++) pr[e] /= s;
}
__device__ void d_mask_groups(float *sel, const float *gs, int E, int G, int tg) {
  int gidx[ROUTE_MAX_GROUPS];
  d_topk(gs, G, tg, gidx);
  int per = E / G;
  for (int g = 0; g < G; g++) {
    int keep = 0;
    for (int j = 0; j < tg; j++) keep |= gidx[j] == g;
    if (!keep) for (int e = g * per; e < (g + 1) * per; e++) sel[e] = 0.0f;
  }
}

__global__ void k_route(krn_cuda_router r, const float *logits, const float *sel_bias, int n, float *probs,
                        int *experts, float *weights, float *scratch) {
  int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= n) return;
  int E = r.n_experts, k = r.k, G = r.n_group > 0 ? r.n_group : 1;
  const float *z = logits + (size_t)t * r.stride;
  float *pr = probs + (size_t)t * E;
  float *sel = scratch + (size_t)t * (E + G), *gs = sel + E;
  int *ex = experts + (size_t)t * k;
  float *w = weights + (size_t)t * k;
  if (r.kind == KRN_ROUTE_SOFTMAX_TOPK) {
    d_softmax_row(z, E, pr);
    d_topk(pr, E, k, ex);
    float sum = 0.0f;
    for (int j = 0; j < k; j++) sum += pr[ex[j]];
    for (int j = 0; j < k; j++) w[j] = r.renorm ? pr[ex[j]] / sum : pr[ex[j]];
    if (r.scale != 1.0f) for (int j = 0; j < k; j++) w[j] *= r.scale;
  } else if (r.kind == KRN_ROUTE_GROUP_LIMITED) {
    int per = E / G;
    d_softmax_row(z, E, pr);
    for (int g = 0; g < G; g++) {
      float mx = -INFINITY;
      for (int e = g * per; e < (g + 1) * per; e++) if (pr[e] > mx) mx = pr[e];
      gs[g] = mx;
    }
    for (int e = 0; e < E; e++) sel[e] = pr[e];
    d_mask_groups(sel, gs, E, G, r.topk_group);
    d_topk(sel, E, k, ex);
    for (int j = 0; j < k; j++) w[j] = pr[ex[j]] * r.scale;
  } else if (r.kind == KRN_ROUTE_SIGMOID_GROUP) {
    int per = E / G;
    for (int e = 0; e < E; e++) {
      pr[e] = 1.0f / (1.0f + expf(-z[e]));
      sel[e] = pr[e] + (sel_bias ? sel_bias[e] : 0.0f);
    }
    for (int g = 0; g < G; g++) {
      int top2[2];
      d_topk(sel + g * per, per, per >= 2 ? 2 : 1, top2);
      gs[g] = sel[g * per + top2[0]] + (per >= 2 ? sel[g * per + top2[1]] : 0.0f);
    }
    d_mask_groups(sel, gs, E, G, r.topk_group);
    d_topk(sel, E, k, ex);
    float sum = 0.0f;
    for (int j = 0; j < k; j++) { w[j] = pr[ex[j]]; sum += w[j]; }
    if (r.renorm) for (int j = 0; j < k; j++) w[j] /= (sum + 1e-20f);
    for (int j = 0; j < k; j++) w[j] *= r.scale;
  } else { /* KRN_ROUTE_TOPK_SOFTMAX */
    d_softmax_row(z, E, pr);
    d_topk(z, E, k, ex);
    float mx = z[ex[0]], s = 0.0f;
    for (int j = 0; j < k; j++) { w[j] = expf(z[ex[j]] - mx); s += w[j]; }
    for (int j = 0; j < k; j++) w[j] /= s;
  }
}

extern "C" int krn_cuda_route(krn_cuda_ctx *c, const krn_cuda_router *r, const float *logits, const float *sel_bias,
                              int n, float *probs, int *experts, float *weights, float *scratch) {
  if (n <= 0) return 0;
  int E = r->n_experts, G = r->n_group > 0 ? r->n_group : 1;
  if (r->kind < 0 || r->kind > KRN_ROUTE_TOPK_SOFTMAX) return krn_cuda_fail("router: unknown kind %d", r->kind);
  if (E <= 0 || r->k < 1 || r->k > E || r->k > ROUTE_MAX_K) return krn_cuda_fail("router: k=%d with %d experts", r->k, E);
  if (r->stride < E) return krn_cuda_fail("router: logit stride %d < %d experts", r->stride, E);
  if ((r->kind == KRN_ROUTE_GROUP_LIMITED || r->kind == KRN_ROUTE_SIGMOID_GROUP) &&
      (G > ROUTE_MAX_GROUPS || E % G || r->topk_group < 1 || r->topk_group > G))
    return krn_cuda_fail("router: %d groups (top %d) of %d experts unsupported", G, r->topk_group, E);
  k_route<<<krn_blocks((size_t)n, 64), 64, 0, c->stream>>>(*r, logits, sel_bias, n, probs, experts, weights, scratch);
  return krn_cuda_launched("router");
}

/* ---- permutation, gather, combine ------------------------------------------------------- */
__global__ void k_moe_permute(const int *experts, int nk, int k, int E, int *counts, int *offsets, int *row_tok,
                              int *row_exp, int *slot_row) {
  for (int s = threadIdx.x; s < nk; s += blockDim.x) slot_row[s] = -1;
  for (int e = threadIdx.x; e < E; e += blockDim.x) {
    int cnt = 0;
    for (int s = 0; s < nk; s++) cnt += experts[s] == e;
    counts[e] = cnt;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int acc = 0;
    for (int e = 0; e < E; e++) { offsets[e] = acc; acc += counts[e]; }
    offsets[E] = acc;
  }
  __syncthreads();
  for (int e = threadIdx.x; e < E; e += blockDim.x) {
    int r = offsets[e];
    for (int s = 0; s < nk; s++)
      if (experts[s] == e) { row_tok[r] = s / k; row_exp[r] = e; slot_row[s] = r; r++; }
  }
}

extern "C" int krn_cuda_moe_permute(krn_cuda_ctx *c, const int *experts, int n, int k, int n_experts, int *counts,
                                    int *offsets, int *row_tok, int *row_exp, int *slot_row) {
  if (n <= 0 || k <= 0 || n_experts <= 0) return krn_cuda_fail("permute: n=%d k=%d E=%d", n, k, n_experts);
  k_moe_permute<<<1, 1024, 0, c->stream>>>(experts, n * k, k, n_experts, counts, offsets, row_tok, row_exp, slot_row);
  return krn_cuda_launched("moe_permute");
}

__global__ void k_gather_rows(float *dst, const float *src, const int *row_tok, const int *total, int dim) {
  int r = blockIdx.x;
  if (r >= *total) return;
  const float *s = src + (size_t)row_tok[r] * dim;
  float *d = dst + (size_t)r * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) d[i] = s[i];
}
extern "C" int krn_cuda_gather_rows(krn_cuda_ctx *c, float *dst, const float *src, const int *row_tok, const int *total,
                                    int max_rows, int dim) {
  if (max_rows <= 0) return 0;
  k_gather_rows<<<max_rows, KRN_BLOCK, 0, c->stream>>>(dst, src, row_tok, total, dim);
  return krn_cuda_launched("gather_rows");
}

__global__ void k_moe_combine(float *x, const float *y, const int *slot_row, const float *weights, int k, int dim) {
  int t = blockIdx.x;
  for (int d = threadIdx.x; d < dim; d += blockDim.x) {
    float acc = 0.0f;
    for (int j = 0; j < k; j++) {
      int r = slot_row[(size_t)t * k + j];
      if (r >= 0) acc += weights[(size_t)t * k + j] * y[(size_t)r * dim + d];
    }
    x[(size_t)t * dim + d] += acc;
  }
}
extern "C" int krn_cuda_moe_combine(krn_cuda_ctx *c, float *x, const float *y, const int *slot_row, const float *weights,
                                    int n, int k, int dim) {
  if (n <= 0) return 0;
  k_moe_combine<<<n, KRN_BLOCK, 0, c->stream>>>(x, y, slot_row, weights, k, dim);
  return krn_cuda_launched("moe_combine");
}

/* ---- sampling --------------------------------------------------------------------------- */
__global__ void k_argmax(int *out, const float *logits, int V) {
  __shared__ float bv[KRN_BLOCK];
  __shared__ int bi[KRN_BLOCK];
  const float *z = logits + (size_t)blockIdx.x * V;
  float best = -INFINITY;
  int idx = -1;
  for (int i = threadIdx.x; i < V; i += blockDim.x)
    if (idx < 0 || z[i] > best) { best = z[i]; idx = i; }   /* strided ascending: first max kept */
  bv[threadIdx.x] = best;
  bi[threadIdx.x] = idx;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      float ov = bv[threadIdx.x + s];
      int oi = bi[threadIdx.x + s];
      if (oi >= 0 && (bi[threadIdx.x] < 0 || ov > bv[threadIdx.x] || (ov == bv[threadIdx.x] && oi < bi[threadIdx.x]))) {
        bv[threadIdx.x] = ov;
        bi[threadIdx.x] = oi;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = bi[0] < 0 ? 0 : bi[0];
}
extern "C" int krn_cuda_argmax(krn_cuda_ctx *c, int *out, const float *logits, int n, int vocab) {
  if (n <= 0 || vocab <= 0) return krn_cuda_fail("argmax: n=%d vocab=%d", n, vocab);
  k_argmax<<<n, KRN_BLOCK, 0, c->stream>>>(out, logits, vocab);
  return krn_cuda_launched("argmax");
}

/* One block: chunk sums of exp((z - max) / T) per thread (contiguous chunks), then thread 0
 * walks the chunks and the chosen chunk in index order. */
__global__ void k_sample(int *out, const float *z, int V, float invT, float r) {
  __shared__ float red[32];
  __shared__ float csum[KRN_BLOCK];
  float mx = -INFINITY;
  for (int i = threadIdx.x; i < V; i += blockDim.x) mx = fmaxf(mx, z[i]);
  mx = block_max(mx, red);
  int chunk = (V + blockDim.x - 1) / blockDim.x;
  int a = threadIdx.x * chunk, b = a + chunk < V ? a + chunk : V;
  float s = 0.0f;
  for (int i = a; i < b; i++) s += expf((z[i] - mx) * invT);
  csum[threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.x != 0) return;
  float total = 0.0f;
  for (int i = 0; i < (int)blockDim.x; i++) total += csum[i];
  float target = r * total, acc = 0.0f;
  int pick = V - 1, ci = 0;
  for (; ci < (int)blockDim.x; ci++) {
    if (acc + csum[ci] > target) break;
    acc += csum[ci];
  }
  if (ci < (int)blockDim.x) {
    int lo = ci * chunk, hi = lo + chunk < V ? lo + chunk : V;
    for (int i = lo; i < hi; i++) {
      acc += expf((z[i] - mx) * invT);
      if (acc > target) { pick = i; break; }
      pick = i;
    }
  }
  *out = pick;
}
extern "C" int krn_cuda_sample(krn_cuda_ctx *c, int *out, const float *logits, int vocab, float temperature, float r) {
  if (vocab <= 0) return krn_cuda_fail("sample: vocab %d", vocab);
  if (!(temperature > 0)) return krn_cuda_argmax(c, out, logits, 1, vocab);
  if (r < 0 || r >= 1) return krn_cuda_fail("sample: r=%g outside [0,1)", (double)r);
  k_sample<<<1, KRN_BLOCK, 0, c->stream>>>(out, logits, vocab, 1.0f / temperature, r);
  return krn_cuda_launched("sample");
}
