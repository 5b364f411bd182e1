/* test_kernels.c — every optimised CPU kernel against its plain reference (krn_ref.c)
 * on random data, over shapes that exercise tails (sizes not multiples of 4 or 16),
 * single tokens and batches, GQA and long contexts; both the AVX-512 and the portable
 * paths. Tolerances are relative to the magnitude of the result. */
#include "kernels/krn_backend.h"
#include "tests/tst.h"

#include <stdint.h>

static uint64_t rs = 88172645463325252ull;
static float frand(void) {
  rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
  return (float)((double)(rs >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}
static float *rnd(size_t n) {
  float *p = malloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) p[i] = frand();
  return p;
}
static double maxdiff(const float *a, const float *b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) { double d = fabs((double)a[i] - b[i]); if (d > m || d != d) m = d != d ? 1e30 : d; }
  return m;
}

static void run_all(const krn_backend *cpu, const krn_backend *ref, const char *tag) {
  int shapes[][3] = {{1, 192, 128}, {3, 17, 5}, {4, 64, 64}, {7, 100, 33}, {256, 192, 8192 / 16}, {5, 1, 1}, {9, 48, 200}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int n = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
    float *x = rnd((size_t)n * in), *w = rnd((size_t)out * in), *b = rnd((size_t)out);
    float *y1 = malloc(sizeof(float) * n * out), *y2 = malloc(sizeof(float) * n * out);
    for (int bias = 0; bias < 2; bias++) {
      cpu->matmul(y1, x, w, bias ? b : NULL, n, in, out);
      ref->matmul(y2, x, w, bias ? b : NULL, n, in, out);
      double d = maxdiff(y1, y2, (size_t)n * out);
      CHECKF(d < 1e-5 * sqrt(in) + 1e-6, "%s matmul n=%d in=%d out=%d bias=%d: %g", tag, n, in, out, bias, d);
    }
    free(x); free(w); free(b); free(y1); free(y2);
  }
  /* rmsnorm (also in place) */
  {
    int n = 5, dim = 193;
    float *x = rnd((size_t)n * dim), *w = rnd(dim), *y1 = malloc(sizeof(float) * n * dim), *y2 = malloc(sizeof(float) * n * dim);
    cpu->rmsnorm(y1, x, w, n, dim, 1e-5f);
    ref->rmsnorm(y2, x, w, n, dim, 1e-5f);
    CHECK(maxdiff(y1, y2, (size_t)n * dim) < 1e-5);
    cpu->rmsnorm(x, x, w, n, dim, 1e-5f);
    CHECK(maxdiff(x, y2, (size_t)n * dim) < 1e-5);
    free(x); free(w); free(y1); free(y2);
  }
  /* rope at large positions: the angle is computed in double in both */
  {
    int n = 6, nh = 3, hd = 48, pos[6] = {0, 1, 2, 100, 1000, 4095};
    float *a = rnd((size_t)n * nh * hd), *b = malloc(sizeof(float) * n * nh * hd);
    memcpy(b, a, sizeof(float) * n * nh * hd);
    cpu->rope(a, n, nh, hd, pos, 10000.0f);
    ref->rope(b, n, nh, hd, pos, 10000.0f);
    CHECK(maxdiff(a, b, (size_t)n * nh * hd) < 1e-5);
    /* position 0 is the identity */
    float *c = rnd((size_t)nh * hd), *c0 = malloc(sizeof(float) * nh * hd);
    memcpy(c0, c, sizeof(float) * nh * hd);
    int p0 = 0;
    cpu->rope(c, 1, nh, hd, &p0, 10000.0f);
    CHECK(maxdiff(c, c0, (size_t)nh * hd) == 0);
    free(a); free(b); free(c); free(c0);
  }
  /* attention: prefill from empty cache and decode against a long cache, GQA 4:2 and 8:1 */
  int cfg[][5] = {{5, 0, 4, 2, 48}, {1, 300, 4, 2, 48}, {3, 17, 8, 1, 16}, {64, 0, 4, 4, 8}};
  for (size_t s = 0; s < sizeof cfg / sizeof cfg[0]; s++) {
    int n = cfg[s][0], start = cfg[s][1], nh = cfg[s][2], nkv = cfg[s][3], hd = cfg[s][4];
    size_t ctx = (size_t)(start + n);
    float *q = rnd((size_t)n * nh * hd), *kc = rnd(ctx * nkv * hd), *vc = rnd(ctx * nkv * hd);
    float *o1 = malloc(sizeof(float) * n * nh * hd), *o2 = malloc(sizeof(float) * n * nh * hd);
    cpu->attention(o1, q, kc, vc, n, start, nh, nkv, hd);
    ref->attention(o2, q, kc, vc, n, start, nh, nkv, hd);
    CHECKF(maxdiff(o1, o2, (size_t)n * nh * hd) < 1e-5, "%s attention case %zu: %g", tag, s, maxdiff(o1, o2, (size_t)n * nh * hd));
    free(q); free(kc); free(vc); free(o1); free(o2);
  }
  /* causality: the first token's output does not depend on later keys */
  {
    int nh = 2, nkv = 2, hd = 8, n = 4;
    float *q = rnd((size_t)n * nh * hd), *kc = rnd((size_t)n * nkv * hd), *vc = rnd((size_t)n * nkv * hd);
    float *o1 = malloc(sizeof(float) * n * nh * hd), *o2 = malloc(sizeof(float) * n * nh * hd);
    cpu->attention(o1, q, kc, vc, n, 0, nh, nkv, hd);
    for (int i = nkv * hd; i < n * nkv * hd; i++) { kc[i] += 5; vc[i] -= 3; }
    cpu->attention(o2, q, kc, vc, n, 0, nh, nkv, hd);
    CHECK(maxdiff(o1, o2, (size_t)nh * hd) == 0);
    /* a single key: output equals its value */
    CHECK(maxdiff(o1, vc, (size_t)hd) < 1e-6);
    free(q); free(kc); free(vc); free(o1); free(o2);
  }
  /* swiglu and softmax */
  {
    size_t n = 1001;
    float *g = rnd(n), *u = rnd(n), *h1 = malloc(sizeof(float) * n), *h2 = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) g[i] *= 20;
    cpu->swiglu(h1, g, u, n);
    ref->swiglu(h2, g, u, n);
    CHECK(maxdiff(h1, h2, n) < 1e-5);
    float *s1 = rnd(3 * 333), *s2 = malloc(sizeof(float) * 3 * 333);
    for (int i = 0; i < 999; i++) s1[i] *= 50;
    memcpy(s2, s1, sizeof(float) * 999);
    cpu->softmax(s1, 3, 333);
    ref->softmax(s2, 3, 333);
    CHECK(maxdiff(s1, s2, 999) < 1e-6);
    double sum = 0;
    for (int i = 0; i < 333; i++) sum += s1[i];
    CHECK_NEAR(sum, 1.0, 1e-5);
    free(g); free(u); free(h1); free(h2); free(s1); free(s2);
  }
}

int main(void) {
  printf("cpu features: %s, threads %d\n", krn_cpu_features(), krn_get_threads());
  run_all(krn_cpu_backend(), krn_ref_backend(), "simd");
  krn_cpu_force_portable(1);
  run_all(krn_cpu_backend(), krn_ref_backend(), "portable");
  krn_cpu_force_portable(0);
  krn_set_threads(1);
  run_all(krn_cpu_backend(), krn_ref_backend(), "1-thread");
  return tst_done();
}
