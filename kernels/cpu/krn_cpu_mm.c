/* krn_cpu_mm.c — the CPU backend's matmuls (y = x . W^T + bias): float32 weights
 * (krn_cpu_matmul) and typed weight views (krn_cpu_matmul_w: F32 / BF16 / F16 / Q8_0 /
 * Q4_0 / Q4_K / Q5_K / Q6_K read where they lie, e.g. in a memory-mapped checkpoint). Work is split over
 * blocks of 4 output rows (OpenMP); a tile computes up to 4 tokens x 4 rows with AVX-512
 * (chosen at run time) or portable C. Typed weights are widened inside the tile, 16
 * elements at a time, to exactly the float32 values krn_w_row_f32 gives (BF16 << 16, F16
 * exact, Q*d rounded once), and then go through the same FMA sequence as float32 weights,
 * so a typed matmul is bit-identical to converting W first. Decode (n <= 4) converts in
 * registers; larger batches convert each block of 4 rows once into a per-thread buffer
 * and reuse it for every token. The K-quants (Q4_K / Q5_K / Q6_K, super-blocks of 256)
 * have their own unpacking in krn_cpu_kq.c: in registers for decode, into the per-thread
 * buffer (AVX-512 or the scalar definition) otherwise. */
#include "kernels/cpu/krn_cpu_int.h"
#include "kernels/krn_kquant.h"

#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Below this many multiply-adds a matmul runs on one thread: waking the team costs more. */
#define KRN_PAR_MIN_WORK 262144.0

/* ---- float32 tiles --------------------------------------------------------------------- */

/* NT tokens (1..4, a compile-time constant after inlining) against no <= 4 rows of W, row
 * b at w0 + b*ldw: y[t][o0+b] for t in [t0,t0+NT). Each W vector is loaded once per 16
 * elements and reused across the NT tokens. */
__attribute__((target("avx512f"), always_inline))
static inline void mm_tile_avx512_nt(float *y, const float *x, const float *w0, size_t ldw, const float *bias,
                                     int t0, const int NT, int o0, int no, int in, int out) {
  __m512 acc[4][4];
  for (int a = 0; a < NT; a++) for (int b = 0; b < 4; b++) acc[a][b] = _mm512_setzero_ps();
  const float *xr[4], *wr[4];
  for (int a = 0; a < NT; a++) xr[a] = x + (size_t)(t0 + a) * in;
  for (int b = 0; b < 4; b++) wr[b] = w0 + (size_t)(b < no ? b : 0) * ldw;
  int i = 0;
  for (; i + 16 <= in; i += 16) {
    __m512 w_0 = _mm512_loadu_ps(wr[0] + i), w_1 = _mm512_loadu_ps(wr[1] + i);
    __m512 w_2 = _mm512_loadu_ps(wr[2] + i), w_3 = _mm512_loadu_ps(wr[3] + i);
    for (int a = 0; a < NT; a++) {
      __m512 xv = _mm512_loadu_ps(xr[a] + i);
      acc[a][0] = _mm512_fmadd_ps(xv, w_0, acc[a][0]);
      acc[a][1] = _mm512_fmadd_ps(xv, w_1, acc[a][1]);
      acc[a][2] = _mm512_fmadd_ps(xv, w_2, acc[a][2]);
      acc[a][3] = _mm512_fmadd_ps(xv, w_3, acc[a][3]);
    }
  }
  if (i < in) {
    __mmask16 m = (__mmask16)((1u << (in - i)) - 1);
    __m512 wv[4];
    for (int b = 0; b < 4; b++) wv[b] = _mm512_maskz_loadu_ps(m, wr[b] + i);
    for (int a = 0; a < NT; a++) {
      __m512 xv = _mm512_maskz_loadu_ps(m, xr[a] + i);
      for (int b = 0; b < 4; b++) acc[a][b] = _mm512_fmadd_ps(xv, wv[b], acc[a][b]);
    }
  }
  for (int a = 0; a < NT; a++)
    for (int b = 0; b < no; b++) {
      float s = _mm512_reduce_add_ps(acc[a][b]);
      if (bias) s += bias[o0 + b];
      y[(size_t)(t0 + a) * out + o0 + b] = s;
    }
}

__attribute__((target("avx512f")))
static void mm_tile_avx512(float *y, const float *x, const float *w0, size_t ldw, const float *bias,
                           int t0, int nt, int o0, int no, int in, int out) {
  switch (nt) {
  case 4: mm_tile_avx512_nt(y, x, w0, ldw, bias, t0, 4, o0, no, in, out); break;
  case 3: mm_tile_avx512_nt(y, x, w0, ldw, bias, t0, 3, o0, no, in, out); break;
  case 2: mm_tile_avx512_nt(y, x, w0, ldw, bias, t0, 2, o0, no, in, out); break;
  default: mm_tile_avx512_nt(y, x, w0, ldw, bias, t0, 1, o0, no, in, out); break;
  }
}

static void mm_tile_c(float *y, const float *x, const float *w0, size_t ldw, const float *bias,
                      int t0, int nt, int o0, int no, int in, int out) {
  for (int a = 0; a < nt; a++)
    for (int b = 0; b < no; b++) {
      const float *xr = x + (size_t)(t0 + a) * in, *wr = w0 + (size_t)b * ldw;
      float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      int i = 0;
      for (; i + 4 <= in; i += 4) {
        s0 += xr[i] * wr[i]; s1 += xr[i + 1] * wr[i + 1];
        s2 += xr[i + 2] * wr[i + 2]; s3 += xr[i + 3] * wr[i + 3];
      }
      for (; i < in; i++) s0 += xr[i] * wr[i];
      float s = (s0 + s1) + (s2 + s3);
      if (bias) s += bias[o0 + b];
      y[(size_t)(t0 + a) * out + o0 + b] = s;
    }
}

void krn_cpu_matmul(float *y, const float *x, const float *w, const float *bias, int n, int in, int out) {
  int avx = krn_cpu_avx512();
  int nob = (out + 3) / 4;
  double work = (double)n * in * out;
  #pragma omp parallel for schedule(static) if (work > KRN_PAR_MIN_WORK)
  for (int ob = 0; ob < nob; ob++) {
    int o0 = ob * 4, no = out - o0 < 4 ? out - o0 : 4;
    const float *w0 = w + (size_t)o0 * in;
    for (int t0 = 0; t0 < n; t0 += 4) {
      int nt = n - t0 < 4 ? n - t0 : 4;
      if (avx) mm_tile_avx512(y, x, w0, (size_t)in, bias, t0, nt, o0, no, in, out);
      else mm_tile_c(y, x, w0, (size_t)in, bias, t0, nt, o0, no, in, out);
    }
  }
}

/* ---- typed weights ----------------------------------------------------------------------- */

/* Elements [i, i+16) of a weight row (i a multiple of 16, i + 16 <= cols) as float32. */
__attribute__((target("avx512f"), always_inline))
static inline __m512 ld_w16(const uint8_t *row, const int DT, int i) {
  if (DT == KRN_DT_F32) return _mm512_loadu_ps(row + 4 * (size_t)i);
  if (DT == KRN_DT_BF16) {
    __m256i h = _mm256_loadu_si256((const void *)(row + 2 * (size_t)i));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  if (DT == KRN_DT_F16) return _mm512_cvtph_ps(_mm256_loadu_si256((const void *)(row + 2 * (size_t)i)));
  if (DT == KRN_DT_Q8_0) {
    const uint8_t *blk = row + (size_t)(i >> 5) * 34;
    __m512 d = _mm512_cvtph_ps(_mm256_set1_epi16((short)(blk[0] | blk[1] << 8)));
    __m128i q = _mm_loadu_si128((const void *)(blk + 2 + (i & 31)));
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), d);
  }
  /* Q4_0: low nibbles are elements 0..15 of the block, high nibbles 16..31 */
  const uint8_t *blk = row + (size_t)(i >> 5) * 18;
  __m512 d = _mm512_cvtph_ps(_mm256_set1_epi16((short)(blk[0] | blk[1] << 8)));
  __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const void *)(blk + 2)));
  v = (i & 31) ? _mm512_srli_epi32(v, 4) : _mm512_and_si512(v, _mm512_set1_epi32(15));
  v = _mm512_sub_epi32(v, _mm512_set1_epi32(8));
  return _mm512_mul_ps(_mm512_cvtepi32_ps(v), d);
}

/* Elements [i, cols) (fewer than 16; only plain types have tails) into t[16], zero padded. */
static void tail_f32(const uint8_t *row, int dt, int i, int cols, float *t) {
  for (int j = 0; j < 16; j++) t[j] = 0.0f;
  for (int j = 0; i + j < cols; j++) {
    const uint8_t *p = row + (size_t)(i + j) * (dt == KRN_DT_F32 ? 4 : 2);
    if (dt == KRN_DT_F32) { memcpy(&t[j], p, 4); continue; }
    uint16_t h;
    memcpy(&h, p, 2);
    if (dt == KRN_DT_F16) t[j] = krn_f16_to_f32(h);
    else { uint32_t u = (uint32_t)h << 16; memcpy(&t[j], &u, 4); }
  }
}

/* As mm_tile_avx512_nt with rows b of a typed view (row bytes at w0 + b*ld). */
__attribute__((target("avx512f"), always_inline))
static inline void mmw_tile_nt(float *y, const float *x, const uint8_t *w0, size_t ld, const int DT,
                               const float *bias, int t0, const int NT, int o0, int no, int in, int out) {
  __m512 acc[4][4];
  for (int a = 0; a < NT; a++) for (int b = 0; b < 4; b++) acc[a][b] = _mm512_setzero_ps();
  const float *xr[4];
  const uint8_t *wr[4];
  for (int a = 0; a < NT; a++) xr[a] = x + (size_t)(t0 + a) * in;
  for (int b = 0; b < 4; b++) wr[b] = w0 + (size_t)(b < no ? b : 0) * ld;
  int i = 0;
  for (; i + 16 <= in; i += 16) {
    __m512 w_0 = ld_w16(wr[0], DT, i), w_1 = ld_w16(wr[1], DT, i);
    __m512 w_2 = ld_w16(wr[2], DT, i), w_3 = ld_w16(wr[3], DT, i);
    for (int a = 0; a < NT; a++) {
      __m512 xv = _mm512_loadu_ps(xr[a] + i);
      acc[a][0] = _mm512_fmadd_ps(xv, w_0, acc[a][0]);
      acc[a][1] = _mm512_fmadd_ps(xv, w_1, acc[a][1]);
      acc[a][2] = _mm512_fmadd_ps(xv, w_2, acc[a][2]);
      acc[a][3] = _mm512_fmadd_ps(xv, w_3, acc[a][3]);
    }
  }
  if (i < in) {
    __mmask16 m = (__mmask16)((1u << (in - i)) - 1);
    __m512 wv[4];
    float t[16];
    for (int b = 0; b < 4; b++) { tail_f32(wr[b], DT, i, in, t); wv[b] = _mm512_loadu_ps(t); }
    for (int a = 0; a < NT; a++) {
      __m512 xv = _mm512_maskz_loadu_ps(m, xr[a] + i);
      for (int b = 0; b < 4; b++) acc[a][b] = _mm512_fmadd_ps(xv, wv[b], acc[a][b]);
    }
  }
  for (int a = 0; a < NT; a++)
    for (int b = 0; b < no; b++) {
      float s = _mm512_reduce_add_ps(acc[a][b]);
      if (bias) s += bias[o0 + b];
      y[(size_t)(t0 + a) * out + o0 + b] = s;
    }
}

/* One token block (nt <= 4) against one row block, the type fixed at compile time. */
__attribute__((target("avx512f"), always_inline))
static inline void mmw_tile_dt(float *y, const float *x, const uint8_t *w0, size_t ld, const int DT,
                               const float *bias, int t0, int nt, int o0, int no, int in, int out) {
  switch (nt) {
  case 4: mmw_tile_nt(y, x, w0, ld, DT, bias, t0, 4, o0, no, in, out); break;
  case 3: mmw_tile_nt(y, x, w0, ld, DT, bias, t0, 3, o0, no, in, out); break;
  case 2: mmw_tile_nt(y, x, w0, ld, DT, bias, t0, 2, o0, no, in, out); break;
  default: mmw_tile_nt(y, x, w0, ld, DT, bias, t0, 1, o0, no, in, out); break;
  }
}

__attribute__((target("avx512f")))
static void mmw_tile_avx512(float *y, const float *x, const uint8_t *w0, size_t ld, int dt, const float *bias,
                            int t0, int nt, int o0, int no, int in, int out) {
  switch (dt) {
  case KRN_DT_BF16: mmw_tile_dt(y, x, w0, ld, KRN_DT_BF16, bias, t0, nt, o0, no, in, out); break;
  case KRN_DT_F16: mmw_tile_dt(y, x, w0, ld, KRN_DT_F16, bias, t0, nt, o0, no, in, out); break;
  case KRN_DT_Q8_0: mmw_tile_dt(y, x, w0, ld, KRN_DT_Q8_0, bias, t0, nt, o0, no, in, out); break;
  case KRN_DT_Q4_0: mmw_tile_dt(y, x, w0, ld, KRN_DT_Q4_0, bias, t0, nt, o0, no, in, out); break;
  default: mmw_tile_dt(y, x, w0, ld, KRN_DT_F32, bias, t0, nt, o0, no, in, out); break;
  }
}

__attribute__((target("avx512f"), always_inline))
static inline void rows_to_f32_dt(const uint8_t *w0, size_t ld, const int DT, int no, int in, float *buf) {
  for (int b = 0; b < no; b++) {
    const uint8_t *row = w0 + (size_t)b * ld;
    float *dst = buf + (size_t)b * in;
    int i = 0;
    for (; i + 16 <= in; i += 16) _mm512_storeu_ps(dst + i, ld_w16(row, DT, i));
    if (i < in) {
      float t[16];
      tail_f32(row, DT, i, in, t);
      memcpy(dst + i, t, sizeof(float) * (size_t)(in - i));
    }
  }
}

/* Rows [0, no) of a typed view into buf [no, in] as float32 (same values as ld_w16). */
__attribute__((target("avx512f")))
static void rows_to_f32_avx512(const uint8_t *w0, size_t ld, int dt, int no, int in, float *buf) {
  switch (dt) {
  case KRN_DT_BF16: rows_to_f32_dt(w0, ld, KRN_DT_BF16, no, in, buf); break;
  case KRN_DT_F16: rows_to_f32_dt(w0, ld, KRN_DT_F16, no, in, buf); break;
  case KRN_DT_Q8_0: rows_to_f32_dt(w0, ld, KRN_DT_Q8_0, no, in, buf); break;
  case KRN_DT_Q4_0: rows_to_f32_dt(w0, ld, KRN_DT_Q4_0, no, in, buf); break;
  default: rows_to_f32_dt(w0, ld, KRN_DT_F32, no, in, buf); break;
  }
}

/* Element i of row r, widened exactly (scalar; the fallback of the fallback). */
static float w_at(const krn_w *w, int r, int i) {
  const uint8_t *row = (const uint8_t *)w->data + (size_t)r * w->row_stride_bytes;
  uint16_t h;
  switch (w->dtype) {
  case KRN_DT_F32: { float f; memcpy(&f, row + 4 * (size_t)i, 4); return f; }
  case KRN_DT_BF16: { memcpy(&h, row + 2 * (size_t)i, 2); uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f; }
  case KRN_DT_F16: memcpy(&h, row + 2 * (size_t)i, 2); return krn_f16_to_f32(h);
  case KRN_DT_Q8_0: {
    const uint8_t *blk = row + (size_t)(i / 32) * 34;
    memcpy(&h, blk, 2);
    return (float)(int8_t)blk[2 + i % 32] * krn_f16_to_f32(h);
  }
  case KRN_DT_Q4_0: {
    const uint8_t *blk = row + (size_t)(i / 32) * 18;
    int j = i % 32, q = j < 16 ? (blk[2 + j] & 0x0f) : (blk[2 + j - 16] >> 4);
    memcpy(&h, blk, 2);
    return (float)(q - 8) * krn_f16_to_f32(h);
  }
  case KRN_DT_Q4_K: case KRN_DT_Q5_K: case KRN_DT_Q6_K: return krn_kq_at(w->dtype, row, i);
  default: return 0.0f;
  }
}

/* mm_tile_c reading the typed rows element by element (same sums, same order). */
static void mmw_tile_c(float *y, const float *x, const krn_w *w, const float *bias,
                       int t0, int nt, int o0, int no, int in, int out) {
  for (int a = 0; a < nt; a++)
    for (int b = 0; b < no; b++) {
      const float *xr = x + (size_t)(t0 + a) * in;
      int r = o0 + b;
      float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      int i = 0;
      for (; i + 4 <= in; i += 4) {
        s0 += xr[i] * w_at(w, r, i); s1 += xr[i + 1] * w_at(w, r, i + 1);
        s2 += xr[i + 2] * w_at(w, r, i + 2); s3 += xr[i + 3] * w_at(w, r, i + 3);
      }
      for (; i < in; i++) s0 += xr[i] * w_at(w, r, i);
      float s = (s0 + s1) + (s2 + s3);
      if (bias) s += bias[o0 + b];
      y[(size_t)(t0 + a) * out + o0 + b] = s;
    }
}

void krn_cpu_matmul_w(float *y, const float *x, const krn_w *w, const float *bias, int n, int in, int out) {
  int avx = krn_cpu_avx512();
  int nob = (out + 3) / 4;
  const uint8_t *base = w->data;
  size_t ld = w->row_stride_bytes;
  int dt = w->dtype;
  /* decode-sized batches convert in registers; larger ones convert each row block once */
  int kq = krn_kq_block_bytes(dt) != 0;
  int buffered = !avx || n > 4;
  double work = (double)n * in * out;
  #pragma omp parallel if (work > KRN_PAR_MIN_WORK)
  {
    float *buf = buffered ? malloc(sizeof(float) * 4 * (size_t)in) : NULL;
    #pragma omp for schedule(static)
    for (int ob = 0; ob < nob; ob++) {
      int o0 = ob * 4, no = out - o0 < 4 ? out - o0 : 4;
      const uint8_t *w0 = base + (size_t)o0 * ld;
      if (buffered && buf) {
        if (kq) krn_cpu_kq_rows(w0, ld, dt, no, in, buf, avx);
        else if (avx) rows_to_f32_avx512(w0, ld, dt, no, in, buf);
        else {
          krn_w v = *w;
          v.cols = in;
          for (int b = 0; b < no; b++) krn_w_row_f32(&v, o0 + b, buf + (size_t)b * in);
        }
      }
      for (int t0 = 0; t0 < n; t0 += 4) {
        int nt = n - t0 < 4 ? n - t0 : 4;
        if (buffered && buf) {
          if (avx) mm_tile_avx512(y, x, buf, (size_t)in, bias, t0, nt, o0, no, in, out);
          else mm_tile_c(y, x, buf, (size_t)in, bias, t0, nt, o0, no, in, out);
        } else if (avx && kq) {
          krn_cpu_kq_tile(y, x, w0, ld, dt, bias, t0, nt, o0, no, in, out);
        } else if (avx) {
          mmw_tile_avx512(y, x, w0, ld, dt, bias, t0, nt, o0, no, in, out);
        } else { /* portable path without its row buffer (out of memory) */
          mmw_tile_c(y, x, w, bias, t0, nt, o0, no, in, out);
        }
      }
    }
    free(buf);
  }
}
