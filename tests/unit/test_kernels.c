/* test_kernels.c — every optimised CPU kernel against its plain reference (krn_ref.c)
 * on random data, over shapes that exercise tails (sizes not multiples of 4 or 16),
 * single tokens and batches, GQA and long contexts; both the AVX-512 and the portable
 * paths. Tolerances are relative to the magnitude of the result. Typed weights (matmul_w:
 * F32 / BF16 / F16 / Q8_0 / Q4_0 views, contiguous and strided) must equal, bit for bit,
 * widening the weights with the engine's converter (eng_dt_to_f32) and calling the same
 * backend's float32 matmul; the ref twin likewise. */
#include "engine/eng_safetensors.h"
#include "engine/eng_st_write.h"
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

/* Random weights [out, in] stored as dt with row stride of row bytes + pad (bytes). */
static uint8_t *typed_weights(int dt, int out, int in, size_t pad, size_t *stride) {
  size_t rb = krn_dtype_row_bytes(dt, in);
  *stride = rb + pad;
  uint8_t *d = malloc(*stride * (size_t)out + 1);
  float *row = rnd((size_t)in);
  for (int o = 0; o < out; o++) {
    for (int i = 0; i < in; i++) row[i] = frand() * (o % 3 == 2 ? 1e-6f : 1.0f); /* some tiny rows: f16 subnormals */
    uint8_t *r = d + (size_t)o * *stride;
    memset(r + rb, 0xa5, pad);
    if (dt == KRN_DT_F32) memcpy(r, row, rb);
    else if (dt == KRN_DT_Q8_0) eng_quant_q8_0(r, row, in);
    else if (dt == KRN_DT_Q4_0) eng_quant_q4_0(r, row, in);
    else
      for (int i = 0; i < in; i++) {
        uint16_t h = dt == KRN_DT_BF16 ? eng_stw_f32_to_bf16(row[i]) : eng_stw_f32_to_f16(row[i]);
        memcpy(r + 2 * (size_t)i, &h, 2);
      }
  }
  free(row);
  return d;
}

static void run_typed(const krn_backend *cpu, const krn_backend *ref, const char *tag) {
  const int dts[] = {KRN_DT_F32, KRN_DT_BF16, KRN_DT_F16, KRN_DT_Q8_0, KRN_DT_Q4_0};
  const int shapes[][3] = {{1, 192, 128}, {1, 17, 5}, {2, 100, 7}, {3, 64, 9}, {4, 33, 4}, {5, 96, 13},
                           {9, 160, 37}, {17, 1, 3}, {64, 256, 40}};
  for (size_t di = 0; di < sizeof dts / sizeof dts[0]; di++)
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
      for (int pad = 0; pad < 2; pad++) {
        int dt = dts[di], n = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
        if ((dt == KRN_DT_Q8_0 || dt == KRN_DT_Q4_0) && in % 32) continue;
        size_t stride;
        uint8_t *wd = typed_weights(dt, out, in, pad ? (dt == KRN_DT_F32 ? 12 : 6) : 0, &stride);
        krn_w w = {dt, wd, out, in, stride};
        float *wf = malloc(sizeof(float) * (size_t)out * in), *rowf = malloc(sizeof(float) * (size_t)in);
        int rows_ok = 1;
        for (int o = 0; o < out; o++) {
          eng_dt_to_f32(wf + (size_t)o * in, wd + (size_t)o * stride, dt, in);
          krn_w_row_f32(&w, o, rowf);
          rows_ok &= !memcmp(rowf, wf + (size_t)o * in, sizeof(float) * (size_t)in);
        }
        CHECKF(rows_ok, "%s krn_w_row_f32 %s in=%d differs from eng_dt_to_f32", tag, eng_dtype_name(dt), in);
        float *x = rnd((size_t)n * in), *b = rnd((size_t)out);
        float *y1 = malloc(sizeof(float) * n * out), *y2 = malloc(sizeof(float) * n * out);
        for (int bias = 0; bias < 2; bias++) {
          const krn_backend *be[2] = {cpu, ref};
          for (int k = 0; k < 2; k++) {
            be[k]->matmul_w(y1, x, &w, bias ? b : NULL, n, in, out);
            be[k]->matmul(y2, x, wf, bias ? b : NULL, n, in, out);
            CHECKF(!memcmp(y1, y2, sizeof(float) * (size_t)n * out),
                   "%s %s matmul_w %s n=%d in=%d out=%d pad=%d bias=%d differs from widen+matmul (max %g)", tag,
                   k ? "ref" : "cpu", eng_dtype_name(dt), n, in, out, pad, bias, maxdiff(y1, y2, (size_t)n * out));
          }
          ref->matmul_w(y2, x, &w, bias ? b : NULL, n, in, out);
          cpu->matmul_w(y1, x, &w, bias ? b : NULL, n, in, out);
          double d = maxdiff(y1, y2, (size_t)n * out);
          CHECKF(d < 1e-5 * sqrt(in) + 1e-6, "%s matmul_w %s vs ref n=%d in=%d out=%d: %g", tag, eng_dtype_name(dt), n,
                 in, out, d);
        }
        free(wd); free(wf); free(rowf); free(x); free(b); free(y1); free(y2);
      }
  /* F16 specials widen exactly: +-0, subnormals, inf, the largest finite */
  uint16_t sp[16] = {0x0000, 0x8000, 0x0001, 0x83ff, 0x0400, 0x7bff, 0xfbff, 0x7c00, 0xfc00, 0x3c00, 0xbc00,
                     0x3555, 0x0200, 0x8001, 0x1234, 0x5678};
  float a[16], e[16], xo[16], y1, y2;
  krn_w w = {KRN_DT_F16, sp, 1, 16, 32};
  krn_w_row_f32(&w, 0, a);
  eng_dt_to_f32(e, sp, ENG_DT_F16, 16);
  CHECK(!memcmp(a, e, sizeof a));
  for (int i = 0; i < 16; i++) xo[i] = i == 7 || i == 8 ? 0.0f : 1.0f;   /* skip the infinities */
  krn_w w1 = {KRN_DT_F16, sp, 1, 16, 32};
  cpu->matmul_w(&y1, xo, &w1, NULL, 1, 16, 1);
  cpu->matmul(&y2, xo, e, NULL, 1, 16, 1);
  CHECK(y1 == y2 || (y1 != y1 && y2 != y2));
}

static void run_all(const krn_backend *cpu, const krn_backend *ref, const char *tag) {
  run_typed(cpu, ref, tag);
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
  /* generalised attention: qk_dim != v_dim (MLA), sliding window, sinks; window = huge and
   * no sinks equals the plain kernel */
  {
    int ex[][9] = {{5, 0, 4, 2, 24, 16, 0, 0}, {1, 40, 4, 4, 24, 8, 4, 1}, {9, 3, 4, 1, 16, 16, 3, 1}, {33, 0, 2, 2, 8, 12, 0, 1}};
    for (size_t s = 0; s < sizeof ex / sizeof ex[0]; s++) {
      int n = ex[s][0], start = ex[s][1], nh = ex[s][2], nkv = ex[s][3], qd = ex[s][4], vd = ex[s][5], win = ex[s][6];
      size_t ctx = (size_t)(start + n);
      float *q = rnd((size_t)n * nh * qd), *kc = rnd(ctx * nkv * qd), *vc = rnd(ctx * nkv * vd), *sk = rnd((size_t)nh);
      float *o1 = malloc(sizeof(float) * n * nh * vd), *o2 = malloc(sizeof(float) * n * nh * vd);
      const float *sinks = ex[s][7] ? sk : NULL;
      cpu->attention_ex(o1, q, kc, vc, n, start, nh, nkv, qd, vd, 0.3f, win, sinks);
      ref->attention_ex(o2, q, kc, vc, n, start, nh, nkv, qd, vd, 0.3f, win, sinks);
      double d = maxdiff(o1, o2, (size_t)n * nh * vd);
      CHECKF(d < 1e-5, "%s attention_ex case %zu: %g", tag, s, d);
      free(q); free(kc); free(vc); free(sk); free(o1); free(o2);
    }
    int n = 6, nh = 4, nkv = 2, hd = 16;
    float *q = rnd((size_t)n * nh * hd), *kc = rnd((size_t)n * nkv * hd), *vc = rnd((size_t)n * nkv * hd);
    float *o1 = malloc(sizeof(float) * n * nh * hd), *o2 = malloc(sizeof(float) * n * nh * hd);
    cpu->attention(o1, q, kc, vc, n, 0, nh, nkv, hd);
    cpu->attention_ex(o2, q, kc, vc, n, 0, nh, nkv, hd, hd, 0.25f, 0, NULL);
    CHECK(maxdiff(o1, o2, (size_t)n * nh * hd) < 1e-6);
    /* window 1: each token sees only itself, so the output is its own value row */
    cpu->attention_ex(o2, q, kc, vc, n, 0, nh, nkv, hd, hd, 0.25f, 1, NULL);
    CHECK(maxdiff(o2 + (size_t)5 * nh * hd, vc + (size_t)5 * nkv * hd, (size_t)hd) < 1e-6);
    free(q); free(kc); free(vc); free(o1); free(o2);
  }
  /* rope from tables: rotate-half with the tables of rope() equals rope(); interleaved and
   * strided partial rotation against the reference */
  {
    int n = 4, nh = 3, hd = 16, half = 8, pos[4] = {0, 3, 77, 1000};
    float *a = rnd((size_t)n * nh * hd), *b = malloc(sizeof(float) * n * nh * hd);
    float *cs = malloc(sizeof(float) * n * half), *sn = malloc(sizeof(float) * n * half);
    for (int t = 0; t < n; t++)
      for (int i = 0; i < half; i++) {
        double ang = pos[t] * pow(10000.0, -2.0 * i / hd);
        cs[t * half + i] = (float)cos(ang); sn[t * half + i] = (float)sin(ang);
      }
    memcpy(b, a, sizeof(float) * n * nh * hd);
    cpu->rope_cs(a, n, nh, nh * hd, hd, hd, cs, sn, 0);
    ref->rope(b, n, nh, hd, pos, 10000.0f);
    CHECK(maxdiff(a, b, (size_t)n * nh * hd) < 1e-5);
    for (int il = 0; il < 2; il++) {
      float *c = rnd((size_t)n * nh * 24), *d = malloc(sizeof(float) * n * nh * 24);
      memcpy(d, c, sizeof(float) * n * nh * 24);
      cpu->rope_cs(c + 8, n, nh, nh * 24, 24, 16, cs, sn, il);
      ref->rope_cs(d + 8, n, nh, nh * 24, 24, 16, cs, sn, il);
      CHECK(maxdiff(c, d, (size_t)n * nh * 24) < 1e-6);
      free(c); free(d);
    }
    free(a); free(b); free(cs); free(sn);
  }
  /* gpt-oss clamped swiglu, values on both sides of the limit */
  {
    size_t n = 777;
    float *g = rnd(n), *u = rnd(n), *h1 = malloc(sizeof(float) * n), *h2 = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) { g[i] *= 12; u[i] *= 12; }
    cpu->swiglu_oai(h1, g, u, n, 1.702f, 7.0f);
    ref->swiglu_oai(h2, g, u, n, 1.702f, 7.0f);
    CHECK(maxdiff(h1, h2, n) < 1e-4);
    float g1 = 9.0f, u1 = -9.0f, r;
    ref->swiglu_oai(&r, &g1, &u1, 1, 1.702f, 7.0f);      /* (-7 + 1) * 7 * sigmoid(11.914) */
    CHECK_NEAR(r, -6.0 * 7.0 / (1.0 + exp(-1.702 * 7.0)), 1e-5);
    free(g); free(u); free(h1); free(h2);
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
