/* krn_kquant.c — ggml K-quants (Q4_K, Q5_K, Q6_K): scalar dequantisation (the definition
 * krn_w_row_f32 uses), an element accessor for the portable matmul fallback, and
 * moescope's own simple quantizers (contract and layouts: krn_kquant.h; OpenMP over
 * super-blocks, deterministic). Plain C, no SIMD;
 * built without floating-point contraction (ISO C mode), so d*sc, (d*sc)*q and the
 * subtraction of dmin*m are each rounded once, as numpy and ggml's reference code do. */
#include "kernels/krn_kquant.h"
#include "kernels/krn_backend.h"

#include <math.h>
#include <string.h>

size_t krn_kq_block_bytes(int dtype) {
  switch (dtype) {
  case KRN_DT_Q4_K: return 144;
  case KRN_DT_Q5_K: return 176;
  case KRN_DT_Q6_K: return 210;
  default: return 0;
  }
}

static float ld_f16(const uint8_t *p) { return krn_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

/* Six-bit scale and min of sub-block j (0..7) from the 12 packed bytes (ggml get_scale_min_k4). */
static void scale_min(int j, const uint8_t *q, int *sc, int *m) {
  if (j < 4) { *sc = q[j] & 63; *m = q[j + 4] & 63; }
  else {
    *sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

/* One Q4_K (qh == NULL) or Q5_K super-block. */
static void deq_q45(const uint8_t *b, int five, float *y) {
  const float d = ld_f16(b), dmin = ld_f16(b + 2);
  const uint8_t *sc12 = b + 4, *qh = five ? b + 16 : NULL, *qs = five ? b + 48 : b + 16;
  for (int s = 0; s < 8; s++) {
    int sc, m;
    scale_min(s, sc12, &sc, &m);
    const float d1 = d * (float)sc, m1 = dmin * (float)m;
    const uint8_t *q = qs + 32 * (s / 2);
    const int sh = (s & 1) * 4;
    for (int l = 0; l < 32; l++) {
      int v = (q[l] >> sh) & 15;
      if (qh) v += ((qh[l] >> s) & 1) << 4;
      y[32 * s + l] = d1 * (float)v - m1;
    }
  }
}

static void deq_q6(const uint8_t *b, float *y) {
  const uint8_t *ql = b, *qh = b + 128;
  const int8_t *sc = (const int8_t *)(b + 192);
  const float d = ld_f16(b + 208);
  for (int e = 0; e < KRN_QK_K; e++) {
    int h = e / 128, r = e % 128, k = r / 32, l = r % 32;
    int lo = (ql[64 * h + 32 * (k & 1) + l] >> (k >= 2 ? 4 : 0)) & 15;
    int hi = (qh[32 * h + l] >> (2 * k)) & 3;
    y[e] = (d * (float)sc[e / 16]) * (float)((lo | hi << 4) - 32);
  }
}

void krn_kq_dequant(int dtype, const uint8_t *src, int64_t n, float *dst) {
  size_t bb = krn_kq_block_bytes(dtype);
  for (int64_t b = 0; b < n / KRN_QK_K; b++, src += bb, dst += KRN_QK_K) {
    if (dtype == KRN_DT_Q6_K) deq_q6(src, dst);
    else deq_q45(src, dtype == KRN_DT_Q5_K, dst);
  }
}

float krn_kq_at(int dtype, const uint8_t *row, int i) {
  const uint8_t *b = row + (size_t)(i / KRN_QK_K) * krn_kq_block_bytes(dtype);
  int e = i % KRN_QK_K;
  if (dtype == KRN_DT_Q6_K) {
    int h = e / 128, r = e % 128, k = r / 32, l = r % 32;
    int lo = (b[64 * h + 32 * (k & 1) + l] >> (k >= 2 ? 4 : 0)) & 15;
    int hi = (b[128 + 32 * h + l] >> (2 * k)) & 3;
    return (ld_f16(b + 208) * (float)(int8_t)b[192 + e / 16]) * (float)((lo | hi << 4) - 32);
  }
  int five = dtype == KRN_DT_Q5_K, s = e / 32, l = e % 32, sc, m;
  scale_min(s, b + 4, &sc, &m);
  const uint8_t *qs = five ? b + 48 : b + 16;
  int v = (qs[32 * (s / 2) + l] >> ((s & 1) * 4)) & 15;
  if (five) v += ((b[16 + l] >> s) & 1) << 4;
  return (ld_f16(b) * (float)sc) * (float)v - ld_f16(b + 2) * (float)m;
}

/* ---- quantizers ---------------------------------------------------------------------------- */

/* float -> IEEE half, round to nearest even (finite inputs; overflow saturates to 65504). */
static uint16_t f32_to_f16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7bffu); /* >= 65520 (rounds to inf): saturate */
  if (a < 0x38800000u) { /* below the smallest normal half: subnormal (or zero) */
    if (a < 0x33000000u) return (uint16_t)sign;             /* < 2^-25: rounds to 0 */
    uint32_t man = (a & 0x7fffffu) | 0x800000u, sh = 126 - (a >> 23); /* 14..24 */
    uint32_t h = man >> sh, rem = man & ((1u << sh) - 1), half = 1u << (sh - 1);
    if (rem > half || (rem == half && (h & 1))) h++;
    return (uint16_t)(sign | h);
  }
  uint32_t h = ((a >> 13) - ((127u - 15u) << 10)), rem = a & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++;
  return (uint16_t)(sign | h);
}

/* The smallest half >= v (v >= 0 finite), saturating at 65504. */
static uint16_t f16_up(float v) {
  uint16_t h = f32_to_f16(v);
  if (h < 0x7bffu && krn_f16_to_f32(h) < v) h++;
  return h;
}

static void st_f16(uint8_t *p, uint16_t h) { p[0] = (uint8_t)h; p[1] = (uint8_t)(h >> 8); }

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* The integer nearest x/step clamped to [lo, hi] (0 when step is 0). */
static int qnear(float x, float step, int lo, int hi) {
  if (step == 0.0f) return clampi(0, lo, hi);
  float t = x / step;
  if (!(t > (float)lo)) return lo;   /* also NaN */
  if (t >= (float)hi) return hi;
  return clampi((int)lrintf(t), lo, hi);
}

/* Sum of squared errors of x[32] on the grid o + s*q, q in 0..nmax (nearest, clamped). */
static double sse_grid(const float *x, float s, float o, int nmax) {
  double e = 0;
  for (int l = 0; l < 32; l++) {
    float y = s * (float)qnear(x[l] - o, s, 0, nmax) + o;
    e += ((double)x[l] - y) * ((double)x[l] - y);
  }
  return e;
}

/* Step s >= 0 and offset o <= 0 of one 32-value sub-block (value = s*q + o, q in 0..nmax)
 * with a small squared error: candidate grids shrink the [min(0, min x), max x] range by
 * 0..30% (clamping the tails), each assignment refined by a least-squares refit of (s, o)
 * (o held at 0 when the fit wants it positive); the smallest sum of squares wins. */
static void fit_sub(const float *x, int nmax, float *s_out, float *o_out) {
  float lo = x[0], hi = x[0];
  for (int l = 1; l < 32; l++) { lo = fminf(lo, x[l]); hi = fmaxf(hi, x[l]); }
  lo = fminf(lo, 0.0f);
  *s_out = 0.0f;
  *o_out = lo;
  if (!(hi > lo)) return; /* constant block <= 0: exact with s = 0 */
  double best = sse_grid(x, (hi - lo) / (float)nmax, lo, nmax);
  *s_out = (hi - lo) / (float)nmax;
  for (int k = 0; k <= 12; k++) {
    float f = 1.0f - 0.025f * (float)k, s = (hi - lo) * f / (float)nmax;
    float o = fminf(lo + (hi - lo) * (1.0f - f) * 0.5f, 0.0f);
    double sq = 0, sqq = 0, sx = 0, sxq = 0;
    for (int l = 0; l < 32; l++) {
      double q = qnear(x[l] - o, s, 0, nmax);
      sq += q; sqq += q * q; sx += x[l]; sxq += x[l] * q;
    }
    double det = 32 * sqq - sq * sq, fs, fo;
    if (det <= 0) continue;
    fs = (32 * sxq - sq * sx) / det;
    fo = (sx - fs * sq) / 32;
    if (fo > 0) { fo = 0; fs = sxq / sqq; }
    if (!(fs > 0)) continue;
    double e = sse_grid(x, (float)fs, (float)fo, nmax);
    if (e < best) { best = e; *s_out = (float)fs; *o_out = (float)fo; }
  }
}

/* One Q4_K (nmax 15) or Q5_K (nmax 31) super-block of x[256] into b: per sub-block fit, then
 * six-bit scales / mins relative to f16 d = max step / 63, dmin = max min / 63, each rounded
 * down or up, whichever fits the sub-block better; finally the nearest clamped quants. */
static void quant_q45(const float *x, int nmax, uint8_t *b) {
  float st[8], mn[8], smax = 0.0f, mmax = 0.0f;
  for (int s = 0; s < 8; s++) {
    float o;
    fit_sub(x + 32 * s, nmax, &st[s], &o);
    mn[s] = -o;
    smax = fmaxf(smax, st[s]);
    mmax = fmaxf(mmax, mn[s]);
  }
  uint16_t hd = f32_to_f16(smax / 63.0f), hm = f32_to_f16(mmax / 63.0f);
  const float d = krn_f16_to_f32(hd), dmin = krn_f16_to_f32(hm);
  int ls[8], lm[8];
  for (int s = 0; s < 8; s++) {
    float ts = d > 0.0f ? st[s] / d : 0.0f, tm = dmin > 0.0f ? mn[s] / dmin : 0.0f;
    double best = -1;
    for (int a = 0; a < 2; a++)
      for (int c = 0; c < 2; c++) {
        int cs = clampi((int)floorf(ts) + a, 0, 63), cm = clampi((int)floorf(tm) + c, 0, 63);
        double e = sse_grid(x + 32 * s, d * (float)cs, -(dmin * (float)cm), nmax);
        if (best < 0 || e < best) { best = e; ls[s] = cs; lm[s] = cm; }
      }
  }
  memset(b, 0, nmax == 15 ? 144 : 176);
  st_f16(b, hd);
  st_f16(b + 2, hm);
  uint8_t *sc = b + 4, *qh = nmax == 31 ? b + 16 : NULL, *qs = qh ? b + 48 : b + 16;
  for (int s = 0; s < 8; s++) {
    if (s < 4) { sc[s] = (uint8_t)ls[s]; sc[s + 4] = (uint8_t)lm[s]; }
    else {
      sc[s + 4] = (uint8_t)((ls[s] & 15) | (lm[s] & 15) << 4);
      sc[s - 4] |= (uint8_t)((ls[s] >> 4) << 6);
      sc[s] |= (uint8_t)((lm[s] >> 4) << 6);
    }
  }
  for (int s = 0; s < 8; s++) {
    const float d1 = d * (float)ls[s], m1 = dmin * (float)lm[s];
    for (int l = 0; l < 32; l++) {
      int q = qnear(x[32 * s + l] + m1, d1, 0, nmax);
      qs[32 * (s / 2) + l] |= (uint8_t)((q & 15) << ((s & 1) * 4));
      if (qh) qh[l] |= (uint8_t)((q >> 4) << s);
    }
  }
}

static void quant_q6(const float *x, uint8_t *b) {
  float st[16], big = 0.0f;
  int ib = 0;
  for (int s = 0; s < 16; s++) { /* wanted step: the largest-magnitude value maps to -32 */
    float v = 0.0f;
    for (int l = 0; l < 16; l++) if (fabsf(x[16 * s + l]) > fabsf(v)) v = x[16 * s + l];
    st[s] = v / -32.0f;
    if (fabsf(st[s]) > big) { big = fabsf(st[s]); ib = s; }
  }
  memset(b, 0, 210);
  uint16_t hd = f16_up(big / 128.0f);
  float d = krn_f16_to_f32(hd);
  if (st[ib] > 0.0f) { d = -d; hd |= 0x8000u; } /* the largest sub-block gets scale -128 */
  int ls[16];
  for (int s = 0; s < 16; s++) {
    float t = d != 0.0f ? st[s] / d : 0.0f;
    ls[s] = t < 0.0f ? -clampi((int)ceilf(-t), 0, 128) : clampi((int)ceilf(t), 0, 127);
    b[192 + s] = (uint8_t)(int8_t)ls[s];
  }
  st_f16(b + 208, hd);
  for (int e = 0; e < KRN_QK_K; e++) {
    int q = qnear(x[e], d * (float)ls[e / 16], -32, 31) + 32;
    int h = e / 128, r = e % 128, k = r / 32, l = r % 32;
    b[64 * h + 32 * (k & 1) + l] |= (uint8_t)((q & 15) << (k >= 2 ? 4 : 0));
    b[128 + 32 * h + l] |= (uint8_t)((q >> 4) << (2 * k));
  }
}

void krn_kq_quant(int dtype, void *dst, const float *x, int64_t n) {
  const size_t bb = krn_kq_block_bytes(dtype);
  const int64_t nb = n / KRN_QK_K;
  /* super-blocks are independent: the result does not depend on the thread count */
  #pragma omp parallel for schedule(static) if (nb >= 256)
  for (int64_t i = 0; i < nb; i++) {
    uint8_t *b = (uint8_t *)dst + (size_t)i * bb;
    if (dtype == KRN_DT_Q6_K) quant_q6(x + i * KRN_QK_K, b);
    else if (dtype == KRN_DT_Q4_K || dtype == KRN_DT_Q5_K) quant_q45(x + i * KRN_QK_K, dtype == KRN_DT_Q5_K ? 31 : 15, b);
  }
}
