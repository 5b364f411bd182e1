/* krn_ref.c — plain reference kernels: straightforward loops, double accumulation,
 * single thread. They define what the optimised CPU kernels must compute and are the
 * oracle of tests/unit/test_kernels.c. Never used on the hot path. Typed weights (krn_w)
 * are widened row by row with krn_w_row_f32, which defines their float32 values. */
#include "kernels/krn_backend.h"

#include <math.h>
#include <stdlib.h>

static void ref_matmul(float *y, const float *x, const float *w, const float *bias, int n, int in, int out) {
  for (int t = 0; t < n; t++)
    for (int o = 0; o < out; o++) {
      double s = bias ? bias[o] : 0.0;
      for (int i = 0; i < in; i++) s += (double)x[(size_t)t * in + i] * w[(size_t)o * in + i];
      y[(size_t)t * out + o] = (float)s;
    }
}

/* Typed weights: each row widened exactly (krn_w_row_f32), then the float32 reference. */
static void ref_matmul_w(float *y, const float *x, const krn_w *w, const float *bias, int n, int in, int out) {
  float *row = malloc(sizeof(float) * (size_t)(in > 0 ? in : 1));
  if (!row) return;
  krn_w v = *w;
  v.cols = in;
  for (int o = 0; o < out; o++) {
    krn_w_row_f32(&v, o, row);
    for (int t = 0; t < n; t++) {
      double s = bias ? bias[o] : 0.0;
      for (int i = 0; i < in; i++) s += (double)x[(size_t)t * in + i] * row[i];
      y[(size_t)t * out + o] = (float)s;
    }
  }
  free(row);
}

static void ref_rmsnorm(float *y, const float *x, const float *w, int n, int dim, float eps) {
  for (int t = 0; t < n; t++) {
    double ss = 0;
    for (int i = 0; i < dim; i++) ss += (double)x[(size_t)t * dim + i] * x[(size_t)t * dim + i];
    double r = 1.0 / sqrt(ss / dim + eps);
    for (int i = 0; i < dim; i++) y[(size_t)t * dim + i] = (float)(w[i] * (x[(size_t)t * dim + i] * r));
  }
}

static void ref_rope(float *x, int n, int n_heads, int head_dim, const int *pos, float theta) {
  int half = head_dim / 2;
  for (int t = 0; t < n; t++)
    for (int h = 0; h < n_heads; h++) {
      float *v = x + ((size_t)t * n_heads + h) * head_dim;
      for (int i = 0; i < half; i++) {
        double a = pos[t] * pow(theta, -2.0 * i / head_dim);
        double c = cos(a), s = sin(a), x0 = v[i], x1 = v[i + half];
        v[i] = (float)(x0 * c - x1 * s);
        v[i + half] = (float)(x1 * c + x0 * s);
      }
    }
}

static void ref_attention(float *out, const float *q, const float *kc, const float *vc, int n, int start,
                          int n_heads, int n_kv, int head_dim) {
  int group = n_heads / n_kv, kvw = n_kv * head_dim;
  double scale = 1.0 / sqrt((double)head_dim);
  double *sc = malloc(sizeof(double) * (size_t)(start + n));
  for (int t = 0; t < n; t++)
    for (int h = 0; h < n_heads; h++) {
      const float *qh = q + ((size_t)t * n_heads + h) * head_dim;
      int kvh = h / group, len = start + t + 1;
      double mx = -INFINITY, sum = 0;
      for (int j = 0; j < len; j++) {
        double s = 0;
        for (int d = 0; d < head_dim; d++) s += (double)qh[d] * kc[(size_t)j * kvw + kvh * head_dim + d];
        sc[j] = s * scale;
        if (sc[j] > mx) mx = sc[j];
      }
      for (int j = 0; j < len; j++) { sc[j] = exp(sc[j] - mx); sum += sc[j]; }
      for (int d = 0; d < head_dim; d++) {
        double acc = 0;
        for (int j = 0; j < len; j++) acc += sc[j] * vc[(size_t)j * kvw + kvh * head_dim + d];
        out[((size_t)t * n_heads + h) * head_dim + d] = (float)(acc / sum);
      }
    }
  free(sc);
}

static void ref_swiglu(float *h, const float *g, const float *u, size_t n) {
  for (size_t i = 0; i < n; i++) h[i] = (float)((double)g[i] / (1.0 + exp(-(double)g[i])) * u[i]);
}

static void ref_softmax(float *x, int n, int dim) {
  for (int t = 0; t < n; t++) {
    float *r = x + (size_t)t * dim;
    double mx = -INFINITY, s = 0;
    for (int i = 0; i < dim; i++) if (r[i] > mx) mx = r[i];
    for (int i = 0; i < dim; i++) s += exp((double)r[i] - mx);
    for (int i = 0; i < dim; i++) r[i] = (float)(exp((double)r[i] - mx) / s);
  }
}

static void ref_attention_ex(float *out, const float *q, const float *kc, const float *vc, int n, int start,
                             int n_heads, int n_kv, int qk_dim, int v_dim, float scale, int window,
                             const float *sinks) {
  int group = n_heads / n_kv, kw = n_kv * qk_dim, vw = n_kv * v_dim;
  double *sc = malloc(sizeof(double) * (size_t)(start + n));
  for (int t = 0; t < n; t++)
    for (int h = 0; h < n_heads; h++) {
      const float *qh = q + ((size_t)t * n_heads + h) * qk_dim;
      int kvh = h / group, p = start + t, j0 = window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
      double mx = sinks ? sinks[h] : -INFINITY, sum = 0;
      for (int j = j0; j <= p; j++) {
        double s = 0;
        for (int d = 0; d < qk_dim; d++) s += (double)qh[d] * kc[(size_t)j * kw + kvh * qk_dim + d];
        sc[j] = s * scale;
        if (sc[j] > mx) mx = sc[j];
      }
      for (int j = j0; j <= p; j++) { sc[j] = exp(sc[j] - mx); sum += sc[j]; }
      if (sinks) sum += exp(sinks[h] - mx);
      for (int d = 0; d < v_dim; d++) {
        double acc = 0;
        for (int j = j0; j <= p; j++) acc += sc[j] * vc[(size_t)j * vw + kvh * v_dim + d];
        out[((size_t)t * n_heads + h) * v_dim + d] = (float)(acc / sum);
      }
    }
  free(sc);
}

static void ref_rope_cs(float *x, int n, int n_heads, int row_stride, int head_stride, int rot_dim,
                        const float *cs, const float *sn, int interleaved) {
  int half = rot_dim / 2;
  for (int t = 0; t < n; t++)
    for (int h = 0; h < n_heads; h++) {
      float *v = x + (size_t)t * row_stride + (size_t)h * head_stride;
      for (int i = 0; i < half; i++) {
        int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
        double c = cs[(size_t)t * half + i], s = sn[(size_t)t * half + i], x0 = v[a], x1 = v[b];
        v[a] = (float)(x0 * c - x1 * s);
        v[b] = (float)(x1 * c + x0 * s);
      }
    }
}

static void ref_swiglu_oai(float *h, const float *g, const float *u, size_t n, float alpha, float limit) {
  for (size_t i = 0; i < n; i++) {
    double gg = g[i] > limit ? limit : g[i], uu = u[i] > limit ? limit : u[i] < -limit ? -limit : u[i];
    h[i] = (float)((uu + 1.0) * gg / (1.0 + exp(-(double)alpha * gg)));
  }
}

static const krn_backend krn_ref = {
  "ref", ref_matmul, ref_rmsnorm, ref_rope, ref_attention, ref_swiglu, ref_softmax,
  ref_attention_ex, ref_rope_cs, ref_swiglu_oai, ref_matmul_w,
};

const krn_backend *krn_ref_backend(void) { return &krn_ref; }
