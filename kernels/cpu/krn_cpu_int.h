/* krn_cpu_int.h — internal to the CPU backend (krn_cpu.c, krn_cpu_mm.c): run-time SIMD
 * choice and the matmul entry points that krn_cpu.c puts in its vtable. */
#ifndef MOESCOPE_KRN_CPU_INT_H
#define MOESCOPE_KRN_CPU_INT_H

#include "kernels/krn_backend.h"

/* 1 when the AVX-512 paths are used (CPU has avx512f, not forced portable, no
 * MOESCOPE_NO_AVX512=1). */
int krn_cpu_avx512(void);

void krn_cpu_matmul(float *y, const float *x, const float *w, const float *bias, int n, int in, int out);
void krn_cpu_matmul_w(float *y, const float *x, const krn_w *w, const float *bias, int n, int in, int out);

#endif
