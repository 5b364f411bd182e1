/* krn_weight.c — typed weight views (krn_w, see krn_backend.h): row sizes of each storage
 * type and the exact scalar widening / dequantisation of one row to float32. This is the
 * definition the SIMD paths in cpu/krn_cpu_mm.c must reproduce bit for bit, and what the
 * reference backend and the engine's embedding lookup use. Plain C, no SIMD. The K-quants
 * (Q4_K, Q5_K, Q6_K; super-blocks of 256) are defined in krn_kquant.c. */
#include "kernels/krn_backend.h"
#include "kernels/krn_kquant.h"

#include <string.h>

size_t krn_dtype_row_bytes(int dtype, int cols) {
  if (cols < 0) return 0;
  switch (dtype) {
  case KRN_DT_F32: return (size_t)cols * 4;
  case KRN_DT_F16: case KRN_DT_BF16: return (size_t)cols * 2;
  case KRN_DT_Q8_0: return cols % 32 ? 0 : (size_t)cols / 32 * 34;
  case KRN_DT_Q4_0: return cols % 32 ? 0 : (size_t)cols / 32 * 18;
  case KRN_DT_Q4_K: case KRN_DT_Q5_K: case KRN_DT_Q6_K:
    return cols % KRN_QK_K ? 0 : (size_t)cols / KRN_QK_K * krn_kq_block_bytes(dtype);
  default: return 0;
  }
}

krn_w krn_w_view(int dtype, const void *data, int rows, int cols) {
  krn_w w = {dtype, data, rows, cols, krn_dtype_row_bytes(dtype, cols)};
  return w;
}

size_t krn_w_bytes(const krn_w *w) { return w->data ? (size_t)w->rows * w->row_stride_bytes : 0; }

float krn_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
  if (exp == 0) {
    if (man == 0) u = sign;
    else { /* subnormal: normalise */
      exp = 127 - 15 + 1;
      while (!(man & 0x400)) { man <<= 1; exp--; }
      man &= 0x3ff;
      u = sign | (exp << 23) | (man << 13);
    }
  } else if (exp == 31) u = sign | 0x7f800000u | (man << 13);
  else u = sign | ((exp + 127 - 15) << 23) | (man << 13);
  float f;
  memcpy(&f, &u, 4);
  return f;
}

void krn_w_row_f32(const krn_w *w, int r, float *dst) {
  const uint8_t *p = (const uint8_t *)w->data + (size_t)r * w->row_stride_bytes;
  int n = w->cols;
  switch (w->dtype) {
  case KRN_DT_F32: memcpy(dst, p, (size_t)n * 4); break;
  case KRN_DT_BF16:
    for (int i = 0; i < n; i++) {
      uint16_t h;
      memcpy(&h, p + 2 * (size_t)i, 2);
      uint32_t u = (uint32_t)h << 16;
      memcpy(dst + i, &u, 4);
    }
    break;
  case KRN_DT_F16:
    for (int i = 0; i < n; i++) { uint16_t h; memcpy(&h, p + 2 * (size_t)i, 2); dst[i] = krn_f16_to_f32(h); }
    break;
  case KRN_DT_Q8_0:
    for (int b = 0; b < n / 32; b++, p += 34) {
      uint16_t h;
      memcpy(&h, p, 2);
      const float d = krn_f16_to_f32(h);
      for (int j = 0; j < 32; j++) dst[b * 32 + j] = (float)(int8_t)p[2 + j] * d;
    }
    break;
  case KRN_DT_Q4_0:
    for (int b = 0; b < n / 32; b++, p += 18) {
      uint16_t h;
      memcpy(&h, p, 2);
      const float d = krn_f16_to_f32(h);
      for (int j = 0; j < 16; j++) {
        dst[b * 32 + j] = (float)((p[2 + j] & 0x0f) - 8) * d;
        dst[b * 32 + 16 + j] = (float)((p[2 + j] >> 4) - 8) * d;
      }
    }
    break;
  case KRN_DT_Q4_K: case KRN_DT_Q5_K: case KRN_DT_Q6_K: krn_kq_dequant(w->dtype, p, n, dst); break;
  default: memset(dst, 0, sizeof(float) * (size_t)n); break;
  }
}
