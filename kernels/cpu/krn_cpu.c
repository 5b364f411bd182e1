/* krn_cpu.c — the optimised CPU backend: OpenMP across cores, AVX-512 where the CPU
 * has it (detected at run time with __builtin_cpu_supports), portable C otherwise.
 * Float32 storage and accumulation. Checked against krn_ref.c by test_kernels.c;
 * timed by bench/bench_kernels.c. */
#include "kernels/krn_backend.h"

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Below this many multiply-adds a matmul runs on one thread: waking the team costs more. */
#define KRN_PAR_MIN_WORK 262144.0

static int krn_threads = 0;
void krn_set_threads(int n) { if (n > 0) { krn_threads = n; omp_set_num_threads(n); } }
int krn_get_threads(void) { return krn_threads > 0 ? krn_threads : omp_get_max_threads(); }

static int have_avx512 = -1;
static int krn_avx512(void) {
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

/* ---- matmul ------------------------------------------------------------------------ */

/* NT tokens (1..4, a compile-time constant after inlining) against 4 rows of W:
 * y[t][o] for t in [t0,t0+NT), o in [o0,o0+no). Each W row is loaded once per 16
 * elements and reused across the NT tokens; no work is wasted when NT < 4. */
__attribute__((target("avx512f"), always_inline))
static inline void mm_tile_avx512_nt(float *y, const float *x, const float *w, const float *bias,
                                     int t0, const int NT, int o0, int no, int in, int out) {
  __m512 acc[4][4];
  for (int a = 0; a < NT; a++) for (int b = 0; b < 4; b++) acc[a][b] = _mm512_setzero_ps();
  const float *xr[4], *wr[4];
  for (int a = 0; a < NT; a++) xr[a] = x + (size_t)(t0 + a) * in;
  for (int b = 0; b < 4; b++) wr[b] = w + (size_t)(o0 + (b < no ? b : 0)) * in;
  int i = 0;
  for (; i + 16 <= in; i += 16) {
    __m512 w0 = _mm512_loadu_ps(wr[0] + i), w1 = _mm512_loadu_ps(wr[1] + i);
    __m512 w2 = _mm512_loadu_ps(wr[2] + i), w3 = _mm512_loadu_ps(wr[3] + i);
    for (int a = 0; a < NT; a++) {
      __m512 xv = _mm512_loadu_ps(xr[a] + i);
      acc[a][0] = _mm512_fmadd_ps(xv, w0, acc[a][0]);
      acc[a][1] = _mm512_fmadd_ps(xv, w1, acc[a][1]);
      acc[a][2] = _mm512_fmadd_ps(xv, w2, acc[a][2]);
      acc[a][3] = _mm512_fmadd_ps(xv, w3, acc[a][3]);
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
static void mm_tile_avx512(float *y, const float *x, const float *w, const float *bias,
                           int t0, int nt, int o0, int no, int in, int out) {
  switch (nt) {
  case 4: mm_tile_avx512_nt(y, x, w, bias, t0, 4, o0, no, in, out); break;
  case 3: mm_tile_avx512_nt(y, x, w, bias, t0, 3, o0, no, in, out); break;
  case 2: mm_tile_avx512_nt(y, x, w, bias, t0, 2, o0, no, in, out); break;
  default: mm_tile_avx512_nt(y, x, w, bias, t0, 1, o0, no, in, out); break;
  }
}

static void mm_tile_c(float *y, const float *x, const float *w, const float *bias,
                      int t0, int nt, int o0, int no, int in, int out) {
  for (int a = 0; a < nt; a++)
    for (int b = 0; b < no; b++) {
      const float *xr = x + (size_t)(t0 + a) * in, *wr = w + (size_t)(o0 + b) * in;
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

static void cpu_matmul(float *y, const float *x, const float *w, const float *bias, int n, int in, int out) {
  int avx = krn_avx512();
  int nob = (out + 3) / 4;
  double work = (double)n * in * out;
  #pragma omp parallel for schedule(static) if (work > KRN_PAR_MIN_WORK)
  for (int ob = 0; ob < nob; ob++) {
    int o0 = ob * 4, no = out - o0 < 4 ? out - o0 : 4;
    for (int t0 = 0; t0 < n; t0 += 4) {
      int nt = n - t0 < 4 ? n - t0 : 4;
      if (avx) mm_tile_avx512(y, x, w, bias, t0, nt, o0, no, in, out);
      else mm_tile_c(y, x, w, bias, t0, nt, o0, no, in, out);
    }
  }
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
  "cpu", cpu_matmul, cpu_rmsnorm, cpu_rope, cpu_attention, cpu_swiglu, cpu_softmax,
  cpu_attention_ex, cpu_rope_cs, cpu_swiglu_oai,
};

const krn_backend *krn_cpu_backend(void) { return &krn_cpu; }
