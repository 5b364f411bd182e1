/* krn_cpu.c — the optimised CPU backend: OpenMP across cores, AVX-512 where the CPU
 * has it (detected at run time with __builtin_cpu_supports), portable C otherwise.
 * Float32 activations and accumulation; the matmuls (krn_cpu_mm.c) also read typed
 * weights. Checked against krn_ref.c by test_kernels.c; timed by bench/bench_kernels.c. */
#include "kernels/cpu/krn_cpu_int.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int krn_threads = 0;
void krn_set_threads(int n) { if (n > 0) { krn_threads = n; omp_set_num_threads(n); } }
int krn_get_threads(void) { return krn_threads > 0 ? krn_threads : omp_get_max_threads(); }

static int have_avx512 = -1;
int krn_cpu_avx512(void) {
  if (have_avx512 < 0) {
    __builtin_cpu_init();
    have_avx512 = __builtin_cpu_supports("avx512f") ? 1 : 0;
    const char *e = getenv("MOESCOPE_NO_AVX512");
    if (e && *e == '1') have_avx512 = 0;
  }
  return have_avx512;
}

void krn_cpu_force_portable(int on) { have_avx512 = on ? 0 : -1; }

const char *krn_cpu_features(void) {
  static char buf[160];
  __builtin_cpu_init();
  buf[0] = 0;
  const char *names[] = {"avx512f", "avx512bf16", "avx512vnni", "avx512bw", "avx2", "fma", "sse4.2"};
  int has[7] = {__builtin_cpu_supports("avx512f"), __builtin_cpu_supports("avx512bf16"),
                __builtin_cpu_supports("avx512vnni"), __builtin_cpu_supports("avx512bw"),
                __builtin_cpu_supports("avx2"), __builtin_cpu_supports("fma"),
                __builtin_cpu_supports("sse4.2")};
  for (int i = 0; i < 7; i++)
    if (has[i]) { strcat(buf, buf[0] ? " " : ""); strcat(buf, names[i]); }
  return buf;
}

/* ---- elementwise / norms ---------------------------------------------------------- */

static void cpu_rmsnorm(float *y, const float *x, const float *w, int n, int dim, float eps) {
  #pragma omp parallel for schedule(static) if (n >= 16)
  for (int t = 0; t < n; t++) {
    const float *xr = x + (size_t)t * dim;
    float *yr = y + (size_t)t * dim;
    float ss = 0;
    #pragma omp simd reduction(+:ss)
    for (int i = 0; i < dim; i++) ss += xr[i] * xr[i];
    float r = 1.0f / sqrtf(ss / (float)dim + eps);
    for (int i = 0; i < dim; i++) yr[i] = w[i] * (xr[i] * r);
  }
}

static void cpu_rope(float *x, int n, int n_heads, int head_dim, const int *pos, float theta) {
  int half = head_dim / 2;
  double inv[512];
  for (int i = 0; i < half && i < 512; i++) inv[i] = pow((double)theta, -2.0 * i / head_dim);
  #pragma omp parallel for schedule(static) if (n >= 16)
  for (int t = 0; t < n; t++) {
    float cs[512], sn[512];
    for (int i = 0; i < half; i++) {
      double a = pos[t] * inv[i];
      cs[i] = (float)cos(a); sn[i] = (float)sin(a);
    }
    for (int h = 0; h < n_heads; h++) {
      float *v = x + ((size_t)t * n_heads + h) * head_dim;
      for (int i = 0; i < half; i++) {
        float x0 = v[i], x1 = v[i + half];
        v[i] = x0 * cs[i] - x1 * sn[i];
        v[i + half] = x1 * cs[i] + x0 * sn[i];
      }
    }
  }
}

static void cpu_attention(float *out, const float *q, const float *kc, const float *vc, int n, int start,
                          int n_heads, int n_kv, int head_dim) {
  int group = n_heads / n_kv, kvw = n_kv * head_dim;
  float scale = 1.0f / sqrtf((float)head_dim);
  int total = n * n_heads;
  #pragma omp parallel if (total * (start + n) > 4096)
  {
    float *sc = malloc(sizeof(float) * (size_t)(start + n));
    #pragma omp for schedule(dynamic, 4)
    for (int th = 0; th < total; th++) {
      int t = th / n_heads, h = th % n_heads, kvh = h / group, len = start + t + 1;
      const float *qh = q + (size_t)th * head_dim;
      float mx = -INFINITY, sum = 0;
      for (int j = 0; j < len; j++) {
        const float *kr = kc + (size_t)j * kvw + kvh * head_dim;
        float s = 0;
        #pragma omp simd reduction(+:s)
        for (int d = 0; d < head_dim; d++) s += qh[d] * kr[d];
        sc[j] = s * scale;
        if (sc[j] > mx) mx = sc[j];
      }
      for (int j = 0; j < len; j++) { sc[j] = expf(sc[j] - mx); sum += sc[j]; }
      float inv = 1.0f / sum;
      float *o = out + (size_t)th * head_dim;
      for (int d = 0; d < head_dim; d++) o[d] = 0;
      for (int j = 0; j < len; j++) {
        const float *vr = vc + (size_t)j * kvw + kvh * head_dim;
        float p = sc[j] * inv;
        #pragma omp simd
        for (int d = 0; d < head_dim; d++) o[d] += p * vr[d];
      }
    }
    free(sc);
  }
}

static void cpu_swiglu(float *h, const float *g, const float *u, size_t n) {
  for (size_t i = 0; i < n; i++) h[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static void cpu_softmax(float *x, int n, int dim) {
  for (int t = 0; t < n; t++) {
    float *r = x + (size_t)t * dim;
    float mx = -INFINITY, s = 0;
    for (int i = 0; i < dim; i++) if (r[i] > mx) mx = r[i];
    for (int i = 0; i < dim; i++) { r[i] = expf(r[i] - mx); s += r[i]; }
    float inv = 1.0f / s;
    for (int i = 0; i < dim; i++) r[i] *= inv;
  }
}

static void cpu_attention_ex(float *out, const float *q, const float *kc, const float *vc, int n, int start,
                             int n_heads, int n_kv, int qk_dim, int v_dim, float scale, int window,
                             const float *sinks) {
  int group = n_heads / n_kv, kw = n_kv * qk_dim, vw = n_kv * v_dim, total = n * n_heads;
  #pragma omp parallel if (total * (start + n) > 4096)
  {
    float *sc = malloc(sizeof(float) * (size_t)(start + n));
    #pragma omp for schedule(dynamic, 4)
    for (int th = 0; th < total; th++) {
      int t = th / n_heads, h = th % n_heads, kvh = h / group, p = start + t;
      int j0 = window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
      const float *qh = q + (size_t)th * qk_dim;
      float mx = sinks ? sinks[h] : -INFINITY, sum = 0;
      for (int j = j0; j <= p; j++) {
        const float *kr = kc + (size_t)j * kw + kvh * qk_dim;
        float s = 0;
        #pragma omp simd reduction(+:s)
        for (int d = 0; d < qk_dim; d++) s += qh[d] * kr[d];
        sc[j] = s * scale;
        if (sc[j] > mx) mx = sc[j];
      }
      for (int j = j0; j <= p; j++) { sc[j] = expf(sc[j] - mx); sum += sc[j]; }
      if (sinks) sum += expf(sinks[h] - mx);
      float inv = 1.0f / sum;
      float *o = out + (size_t)th * v_dim;
      for (int d = 0; d < v_dim; d++) o[d] = 0;
      for (int j = j0; j <= p; j++) {
        const float *vr = vc + (size_t)j * vw + kvh * v_dim;
        float pr = sc[j] * inv;
        #pragma omp simd
        for (int d = 0; d < v_dim; d++) o[d] += pr * vr[d];
      }
    }
    free(sc);
  }
}

static void cpu_rope_cs(float *x, int n, int n_heads, int row_stride, int head_stride, int rot_dim,
                        const float *cs, const float *sn, int interleaved) {
  int half = rot_dim / 2;
  #pragma omp parallel for schedule(static) if (n >= 16)
  for (int t = 0; t < n; t++) {
    const float *c = cs + (size_t)t * half, *s = sn + (size_t)t * half;
    for (int h = 0; h < n_heads; h++) {
      float *v = x + (size_t)t * row_stride + (size_t)h * head_stride;
      if (interleaved)
        for (int i = 0; i < half; i++) {
          float x0 = v[2 * i], x1 = v[2 * i + 1];
          v[2 * i] = x0 * c[i] - x1 * s[i];
          v[2 * i + 1] = x1 * c[i] + x0 * s[i];
        }
      else
        for (int i = 0; i < half; i++) {
          float x0 = v[i], x1 = v[i + half];
          v[i] = x0 * c[i] - x1 * s[i];
          v[i + half] = x1 * c[i] + x0 * s[i];
        }
    }
  }
}

static void cpu_swiglu_oai(float *h, const float *g, const float *u, size_t n, float alpha, float limit) {
  for (size_t i = 0; i < n; i++) {
    float gg = fminf(g[i], limit), uu = fminf(fmaxf(u[i], -limit), limit);
    h[i] = (uu + 1.0f) * gg / (1.0f + expf(-alpha * gg));
  }
}

static const krn_backend krn_cpu = {
  "cpu", krn_cpu_matmul, cpu_rmsnorm, cpu_rope, cpu_attention, cpu_swiglu, cpu_softmax,
  cpu_attention_ex, cpu_rope_cs, cpu_swiglu_oai, krn_cpu_matmul_w,
};

const krn_backend *krn_cpu_backend(void) { return &krn_cpu; }
