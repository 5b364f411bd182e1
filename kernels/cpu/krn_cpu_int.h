/* krn_cpu_int.h — internal to the CPU backend (krn_cpu.c, krn_cpu_mm.c, krn_cpu_kq.c): run-time SIMD
 * choice and the matmul entry points that krn_cpu.c puts in its vtable. */
#ifndef MOESCOPE_KRN_CPU_INT_H
#define MOESCOPE_KRN_CPU_INT_H

#include "kernels/krn_backend.h"

/* 1 when the AVX-512 paths are used (CPU has avx512f, not forced portable, no
 * MOESCOPE_NO_AVX512=1). */
int krn_cpu_avx512(void);

void krn_cpu_matmul(float *y, const float *x, const float *w, const float *bias, int n, int in, int out);
void krn_cpu_matmul_w(float *y, const float *x, const krn_w *w, const float *bias, int n, int in, int out);
/* Rows [0, no) of a K-quant view (row r at w0 + r*ld, in a multiple of 256) into buf
 * [no, in] as float32, bit-identical to krn_w_row_f32 (krn_cpu_kq.c; avx: AVX-512 path). */
void krn_cpu_kq_rows(const uint8_t *w0, size_t ld, int dt, int no, int in, float *buf, int avx);
/* AVX-512 only: y[t0..t0+nt) x rows [o0, o0+no) (no <= 4, row b at w0 + b*ld) of a K-quant
 * view, unpacked in registers; bit-identical to the float32 tile over dequantised rows. */
void krn_cpu_kq_tile(float *y, const float *x, const uint8_t *w0, size_t ld, int dt, const float *bias, int t0, int nt,
                     int o0, int no, int in, int out);

#endif
