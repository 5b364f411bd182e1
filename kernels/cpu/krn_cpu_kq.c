/* krn_cpu_kq.c — the CPU backend's K-quant (Q4_K, Q5_K, Q6_K) row dequantisation for the
 * typed matmul (krn_cpu_mm.c): a block of rows becomes float32 in a per-thread buffer,
 * which then goes through the float32 tile. The AVX-512 path (chosen at run time) unpacks
 * 16 quants at a time and computes, per sub-block, exactly the scalar definition of
 * krn_kquant.c: d1 = d*sc and m1 = dmin*m rounded as float, then d1*q and the subtraction
 * rounded separately (no FMA; ISO C mode does not contract), so the result is bit-identical
 * to krn_w_row_f32. Without AVX-512 the scalar definition itself is used. Decode-sized
 * batches (n <= 4) skip the buffer: krn_cpu_kq_tile unpacks 16 weights at a time in
 * registers straight into the float32 tile's FMA sequence (same sums, same order). */
#include "kernels/cpu/krn_cpu_int.h"
#include "kernels/krn_kquant.h"

#include <immintrin.h>

/* f16 at p -> float with the hardware converter (exact, like krn_f16_to_f32). */
__attribute__((target("avx512f"), always_inline))
static inline float h2f(const uint8_t *p) {
  return _mm512_cvtss_f32(_mm512_cvtph_ps(_mm256_set1_epi16((short)(p[0] | p[1] << 8))));
}

/* 16 bytes at p widened to 16 int32 lanes. */
__attribute__((target("avx512f"), always_inline))
static inline __m512i ld16(const uint8_t *p) { return _mm512_cvtepu8_epi32(_mm_loadu_si128((const void *)p)); }

/* v[0..7] * d as floats (one rounding each, as the scalar d * (float)v): vector int -> float
 * conversion, as scalar cvtsi2ss in the loop stalls on a false dependency. */
__attribute__((target("avx512f"), always_inline))
static inline void scale8(const int *v, float d, float *out) {
  _mm256_storeu_ps(out, _mm256_mul_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(_mm256_loadu_si256((const void *)v))));
}

__attribute__((target("avx512f")))
static void deq_q45_avx512(const uint8_t *b, int five, float *y) {
  const float d = h2f(b), dmin = h2f(b + 2);
  const uint8_t *s12 = b + 4, *qh = b + 16, *qs = five ? b + 48 : b + 16;
  const __m512i m15 = _mm512_set1_epi32(15), one = _mm512_set1_epi32(1);
  int sc[8], m[8];
  float d1[8], m1[8];
  for (int s = 0; s < 4; s++) {
    sc[s] = s12[s] & 63;
    m[s] = s12[s + 4] & 63;
    sc[s + 4] = (s12[s + 8] & 15) | ((s12[s] >> 6) << 4);
    m[s + 4] = (s12[s + 8] >> 4) | ((s12[s + 4] >> 6) << 4);
  }
  scale8(sc, d, d1);
  scale8(m, dmin, m1);
  for (int s = 0; s < 8; s++) {
    const __m512 vd = _mm512_set1_ps(d1[s]), vm = _mm512_set1_ps(m1[s]);
    const __m128i sh = _mm_cvtsi32_si128((s & 1) * 4), hs = _mm_cvtsi32_si128(s);
    for (int h = 0; h < 2; h++) {
      __m512i v = _mm512_and_si512(_mm512_srl_epi32(ld16(qs + 32 * (s / 2) + 16 * h), sh), m15);
      if (five) v = _mm512_add_epi32(v, _mm512_slli_epi32(_mm512_and_si512(_mm512_srl_epi32(ld16(qh + 16 * h), hs), one), 4));
      _mm512_storeu_ps(y + 32 * s + 16 * h, _mm512_sub_ps(_mm512_mul_ps(vd, _mm512_cvtepi32_ps(v)), vm));
    }
  }
}

__attribute__((target("avx512f")))
static void deq_q6_avx512(const uint8_t *b, float *y) {
  const uint8_t *ql = b, *qh = b + 128;
  const int8_t *sc = (const int8_t *)(b + 192);
  const float d = h2f(b + 208);
  const __m512i m15 = _mm512_set1_epi32(15), m3 = _mm512_set1_epi32(3), c32 = _mm512_set1_epi32(32);
  int si[16];
  float ds[16];
  for (int j = 0; j < 16; j++) si[j] = sc[j];
  scale8(si, d, ds);
  scale8(si + 8, d, ds + 8);
  for (int e = 0; e < KRN_QK_K; e += 16) {
    int h = e / 128, r = e % 128, k = r / 32, l = r % 32;
    __m512i lo = _mm512_srl_epi32(ld16(ql + 64 * h + 32 * (k & 1) + l), _mm_cvtsi32_si128(k >= 2 ? 4 : 0));
    __m512i hi = _mm512_srl_epi32(ld16(qh + 32 * h + l), _mm_cvtsi32_si128(2 * k));
    __m512i q = _mm512_sub_epi32(_mm512_or_si512(_mm512_and_si512(lo, m15), _mm512_slli_epi32(_mm512_and_si512(hi, m3), 4)), c32);
    _mm512_storeu_ps(y + e, _mm512_mul_ps(_mm512_set1_ps(ds[e / 16]), _mm512_cvtepi32_ps(q)));
  }
}

/* Per-sub-block float scales of a super-block: Q4_K/Q5_K d1[8] = d*sc, m1[8] = dmin*m;
 * Q6_K d1[16] = d*scale (m1 unused). */
__attribute__((target("avx512f"), always_inline))
static inline void kq_scales(const uint8_t *b, const int DT, float *d1, float *m1) {
  if (DT == KRN_DT_Q6_K) {
    int si[16];
    for (int j = 0; j < 16; j++) si[j] = (int8_t)b[192 + j];
    const float d = h2f(b + 208);
    scale8(si, d, d1);
    scale8(si + 8, d, d1 + 8);
    return;
  }
  const uint8_t *s12 = b + 4;
  int sc[8], m[8];
  for (int s = 0; s < 4; s++) {
    sc[s] = s12[s] & 63;
    m[s] = s12[s + 4] & 63;
    sc[s + 4] = (s12[s + 8] & 15) | ((s12[s] >> 6) << 4);
    m[s + 4] = (s12[s + 8] >> 4) | ((s12[s + 4] >> 6) << 4);
  }
  scale8(sc, h2f(b), d1);
  scale8(m, h2f(b + 2), m1);
}

/* Elements [16c, 16c+16) of super-block b as float32 (the same values as the deq_* above). */
__attribute__((target("avx512f"), always_inline))
static inline __m512 kq_w16(const uint8_t *b, const int DT, int c, const float *d1, const float *m1) {
  if (DT == KRN_DT_Q6_K) {
    int h = c / 8, k = (c / 2) % 4, l = (c & 1) * 16;
    __m512i lo = _mm512_srl_epi32(ld16(b + 64 * h + 32 * (k & 1) + l), _mm_cvtsi32_si128(k >= 2 ? 4 : 0));
    __m512i hi = _mm512_srl_epi32(ld16(b + 128 + 32 * h + l), _mm_cvtsi32_si128(2 * k));
    __m512i q = _mm512_sub_epi32(_mm512_or_si512(_mm512_and_si512(lo, _mm512_set1_epi32(15)),
                                                 _mm512_slli_epi32(_mm512_and_si512(hi, _mm512_set1_epi32(3)), 4)),
                                 _mm512_set1_epi32(32));
    return _mm512_mul_ps(_mm512_set1_ps(d1[c]), _mm512_cvtepi32_ps(q));
  }
  int s = c / 2, h = c & 1;
  const uint8_t *qs = b + (DT == KRN_DT_Q5_K ? 48 : 16);
  __m512i v = _mm512_and_si512(_mm512_srl_epi32(ld16(qs + 32 * (s / 2) + 16 * h), _mm_cvtsi32_si128((s & 1) * 4)),
                               _mm512_set1_epi32(15));
  if (DT == KRN_DT_Q5_K)
    v = _mm512_add_epi32(v, _mm512_slli_epi32(_mm512_and_si512(_mm512_srl_epi32(ld16(b + 16 + 16 * h), _mm_cvtsi32_si128(s)),
                                                               _mm512_set1_epi32(1)), 4));
  return _mm512_sub_ps(_mm512_mul_ps(_mm512_set1_ps(d1[s]), _mm512_cvtepi32_ps(v)), _mm512_set1_ps(m1[s]));
}

/* NT tokens x up to 4 rows, the K-quant rows unpacked in registers: the same FMA sequence
 * as the float32 tile of krn_cpu_mm.c over the dequantised rows (16 elements at a time,
 * in order, then a reduce-add and the bias), so the result is bit-identical to it. */
__attribute__((target("avx512f"), always_inline))
static inline void kq_tile_nt(float *y, const float *x, const uint8_t *w0, size_t ld, const int DT, const float *bias,
                              int t0, const int NT, int o0, int no, int in, int out) {
  __m512 acc[4][4];
  for (int a = 0; a < NT; a++) for (int b = 0; b < 4; b++) acc[a][b] = _mm512_setzero_ps();
  const float *xr[4];
  const uint8_t *wr[4];
  for (int a = 0; a < NT; a++) xr[a] = x + (size_t)(t0 + a) * in;
  for (int b = 0; b < 4; b++) wr[b] = w0 + (size_t)(b < no ? b : 0) * ld;
  const size_t bb = krn_kq_block_bytes(DT);
  float d1[4][16], m1[4][8];
  for (int sb = 0; sb < in / KRN_QK_K; sb++) {
    for (int b = 0; b < 4; b++) kq_scales(wr[b] + (size_t)sb * bb, DT, d1[b], m1[b]);
    #pragma GCC unroll 16
    for (int c = 0; c < 16; c++) {
      __m512 w_0 = kq_w16(wr[0] + (size_t)sb * bb, DT, c, d1[0], m1[0]);
      __m512 w_1 = kq_w16(wr[1] + (size_t)sb * bb, DT, c, d1[1], m1[1]);
      __m512 w_2 = kq_w16(wr[2] + (size_t)sb * bb, DT, c, d1[2], m1[2]);
      __m512 w_3 = kq_w16(wr[3] + (size_t)sb * bb, DT, c, d1[3], m1[3]);
      int i = sb * KRN_QK_K + 16 * c;
      for (int a = 0; a < NT; a++) {
        __m512 xv = _mm512_loadu_ps(xr[a] + i);
        acc[a][0] = _mm512_fmadd_ps(xv, w_0, acc[a][0]);
        acc[a][1] = _mm512_fmadd_ps(xv, w_1, acc[a][1]);
        acc[a][2] = _mm512_fmadd_ps(xv, w_2, acc[a][2]);
        acc[a][3] = _mm512_fmadd_ps(xv, w_3, acc[a][3]);
      }
    }
  }
  for (int a = 0; a < NT; a++)
    for (int b = 0; b < no; b++) {
      float s = _mm512_reduce_add_ps(acc[a][b]);
      if (bias) s += bias[o0 + b];
      y[(size_t)(t0 + a) * out + o0 + b] = s;
    }
}

__attribute__((target("avx512f"), always_inline))
static inline void kq_tile_dt(float *y, const float *x, const uint8_t *w0, size_t ld, const int DT, const float *bias,
                              int t0, int nt, int o0, int no, int in, int out) {
  switch (nt) {
  case 4: kq_tile_nt(y, x, w0, ld, DT, bias, t0, 4, o0, no, in, out); break;
  case 3: kq_tile_nt(y, x, w0, ld, DT, bias, t0, 3, o0, no, in, out); break;
  case 2: kq_tile_nt(y, x, w0, ld, DT, bias, t0, 2, o0, no, in, out); break;
  default: kq_tile_nt(y, x, w0, ld, DT, bias, t0, 1, o0, no, in, out); break;
  }
}

__attribute__((target("avx512f")))
void krn_cpu_kq_tile(float *y, const float *x, const uint8_t *w0, size_t ld, int dt, const float *bias, int t0, int nt,
                     int o0, int no, int in, int out) {
  switch (dt) {
  case KRN_DT_Q6_K: kq_tile_dt(y, x, w0, ld, KRN_DT_Q6_K, bias, t0, nt, o0, no, in, out); break;
  case KRN_DT_Q5_K: kq_tile_dt(y, x, w0, ld, KRN_DT_Q5_K, bias, t0, nt, o0, no, in, out); break;
  default: kq_tile_dt(y, x, w0, ld, KRN_DT_Q4_K, bias, t0, nt, o0, no, in, out); break;
  }
}

__attribute__((target("avx512f")))
static void rows_avx512(const uint8_t *w0, size_t ld, int dt, int no, int in, float *buf) {
  const size_t bb = krn_kq_block_bytes(dt);
  for (int r = 0; r < no; r++) {
    const uint8_t *p = w0 + (size_t)r * ld;
    float *y = buf + (size_t)r * in;
    for (int i = 0; i < in; i += KRN_QK_K, p += bb, y += KRN_QK_K) {
      if (dt == KRN_DT_Q6_K) deq_q6_avx512(p, y);
      else deq_q45_avx512(p, dt == KRN_DT_Q5_K, y);
    }
  }
}

void krn_cpu_kq_rows(const uint8_t *w0, size_t ld, int dt, int no, int in, float *buf, int avx) {
  if (avx) { rows_avx512(w0, ld, dt, no, in, buf); return; }
  for (int r = 0; r < no; r++) krn_kq_dequant(dt, w0 + (size_t)r * ld, in, buf + (size_t)r * in);
}
