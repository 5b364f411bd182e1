/* cuda_tst.h — shared by the gpu-labelled tests and bench_cuda: skip (exit 77) without the
 * CUDA backend or a device, random data, BF16 rounding, device copies, error measures. */
#ifndef MOESCOPE_CUDA_TST_H
#define MOESCOPE_CUDA_TST_H

#include "kernels/krn_cuda.h"
#include "kernels/krn_cuda_ops.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static inline void ct_need_device(void) {
  if (!krn_cuda_built()) { printf("SKIP: built without CUDA\n"); exit(77); }
  char name[256] = "";
  if (krn_cuda_device_count(name, sizeof name, NULL, NULL) <= 0) { printf("SKIP: no CUDA device\n"); exit(77); }
  printf("device: %s\n", name);
}

static uint64_t ct_rng = 0x12345678abcdefull;
static inline float ct_rand(void) {   /* uniform in [-1, 1) */
  ct_rng = ct_rng * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((double)(ct_rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}
static inline float *ct_randv(size_t n, float scale) {
  float *v = malloc(sizeof(float) * (n ? n : 1));
  for (size_t i = 0; i < n; i++) v[i] = ct_rand() * scale;
  return v;
}
/* w rounded to BF16 in place; returns the BF16 bits. */
static inline uint16_t *ct_bf16(float *w, size_t n) {
  uint16_t *b = malloc(sizeof(uint16_t) * (n ? n : 1));
  for (size_t i = 0; i < n; i++) { b[i] = krn_f32_to_bf16(w[i]); w[i] = krn_bf16_to_f32(b[i]); }
  return b;
}
static inline void *ct_up(krn_cuda_ctx *c, const void *h, size_t bytes) {
  void *d = NULL;
  if (krn_cuda_malloc(&d, bytes) || (h && (krn_cuda_h2d(c, d, h, bytes) || krn_cuda_sync(c)))) {
    fprintf(stderr, "cuda: %s\n", krn_cuda_last_error());
    exit(1);
  }
  return d;
}
static inline void ct_down(krn_cuda_ctx *c, void *h, const void *d, size_t bytes) {
  if (krn_cuda_d2h(c, h, d, bytes) || krn_cuda_sync(c)) { fprintf(stderr, "cuda: %s\n", krn_cuda_last_error()); exit(1); }
}
/* max |a - b| / max(max |b|, tiny) */
static inline double ct_relmax(const float *a, const float *b, size_t n) {
  double md = 0, mb = 1e-30;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    if (!(d <= md)) md = d;   /* NaN propagates as failure */
    if (fabs((double)b[i]) > mb) mb = fabs((double)b[i]);
  }
  return md / mb;
}
static inline double ct_absmax(const float *a, const float *b, size_t n) {
  double md = 0;
  for (size_t i = 0; i < n; i++) { double d = fabs((double)a[i] - b[i]); if (!(d <= md)) md = d; }
  return md;
}
#endif
