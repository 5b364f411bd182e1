/* test_kquant.c — ggml K-quants (Q4_K, Q5_K, Q6_K; kernels/krn_kquant.c):
 *  - known answers: tests/fixtures/kquant/kquant.bin (tools/make-kquant-fixture.py) holds
 *    random-but-valid blocks (random bytes, finite f16 scales incl. zero, negative and
 *    subnormal ones) and blocks of OUR quantizer on fixed inputs, each with the float32
 *    values gguf-py's numpy dequantizers (an independent implementation) give. Our
 *    dequantisation must equal them bit for bit through every entry point: krn_kq_dequant,
 *    krn_w_row_f32, krn_kq_at, eng_dt_to_f32, and the CPU backend's row unpacking (AVX-512
 *    and portable). The same math in the same order (d*sc, then *q, then - dmin*m, all
 *    float32, no FMA) makes exact equality the right expectation. Our quantizer must still
 *    produce exactly the fixture's bytes from the fixture's inputs (a regression pin: after
 *    a deliberate quantizer change, regenerate with the script).
 *  - our quantizer on random data: every value on the nearest point of its sub-block's
 *    grid, and within a scale-derived bound (Q6_K: half a step, one step for values
 *    opposite the extreme, the grid being -32..31; Q4_K/Q5_K: 0.2 of the sub-block span);
 *    RMS error ordered Q8_0 < Q6_K < Q5_K < Q4_K < Q4_0 with margins; zero / constant /
 *    all-negative / tiny / huge / outlier blocks.
 *  - matmul: the CPU backend's matmul_w over K-quant weights equals its float32 matmul over
 *    the dequantised rows bit for bit (the kernels promise identity, stronger than the
 *    reassociation tolerance one could allow), 1..3 threads, odd shapes, AVX-512 and
 *    portable paths; the reference backend (double sums) agrees within 1e-5 of sum |x*w|.
 * `test_kquant --emit-ours FILE` writes the quantizer inputs and our blocks for the script. */
#include "engine/eng_safetensors.h"
#include "kernels/krn_backend.h"
#include "kernels/krn_kquant.h"
#include "tests/tst.h"

#include <stdint.h>

static const int DTS[3] = {KRN_DT_Q4_K, KRN_DT_Q5_K, KRN_DT_Q6_K};
static const char *dt_name(int dt) { return dt == KRN_DT_Q4_K ? "Q4_K" : dt == KRN_DT_Q5_K ? "Q5_K" : "Q6_K"; }
static int ggml_of(int dt) { return dt == KRN_DT_Q4_K ? 12 : dt == KRN_DT_Q5_K ? 13 : 14; }
static int dt_of_ggml(uint32_t g) { return g == 12 ? KRN_DT_Q4_K : g == 13 ? KRN_DT_Q5_K : g == 14 ? KRN_DT_Q6_K : -1; }

/* ---- deterministic random numbers ------------------------------------------------------- */
static uint64_t rng_s = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
  rng_s ^= rng_s << 13; rng_s ^= rng_s >> 7; rng_s ^= rng_s << 17;
  return (uint32_t)(rng_s >> 32);
}
static float unif(void) { return ((float)(rnd() >> 8) + 0.5f) / 16777216.0f; }
static float gauss(void) { return sqrtf(-2.0f * logf(unif())) * cosf(6.2831853f * unif()); }

/* The fixed quantizer inputs (4 super-blocks): gaussian, gaussian with outliers, one-sided
 * (all negative then all positive halves), tiny values (f16 subnormal scales). */
static void ours_input(float *x) {
  rng_s = 0x1234567887654321ull;
  for (int i = 0; i < 256; i++) x[i] = 0.02f * gauss();
  for (int i = 0; i < 256; i++) x[256 + i] = 0.05f * gauss() + (i % 37 == 5 ? 0.6f * (i & 1 ? 1 : -1) : 0.0f);
  for (int i = 0; i < 256; i++) x[512 + i] = i < 128 ? -0.1f - 0.3f * unif() : 0.2f + 0.1f * unif();
  for (int i = 0; i < 256; i++) x[768 + i] = 3e-6f * gauss();
}

static int emit_ours(const char *path) {
  FILE *f = fopen(path, "wb");
  if (!f) { perror(path); return 1; }
  float x[1024];
  uint8_t q[4 * 210];
  ours_input(x);
  uint32_t hdr[2] = {0x4e49514bu /* "KQIN" */, 3};
  fwrite(hdr, 4, 2, f);
  for (int k = 0; k < 3; k++) {
    uint32_t s[2] = {(uint32_t)ggml_of(DTS[k]), 4};
    krn_kq_quant(DTS[k], q, x, 1024);
    fwrite(s, 4, 2, f);
    fwrite(x, 4, 1024, f);
    fwrite(q, 1, 4 * krn_kq_block_bytes(DTS[k]), f);
  }
  return fclose(f) ? 1 : 0;
}

/* ---- known answers ----------------------------------------------------------------------- */

static int first_diff(const float *a, const float *b, int n) {
  for (int i = 0; i < n; i++) if (memcmp(&a[i], &b[i], 4)) return i;
  return -1;
}

static void check_section(int dt, int kind, int nb, const float *xin, const uint8_t *blk, const float *want) {
  int n = nb * 256, i;
  float *got = malloc(sizeof(float) * (size_t)n);
  REQUIRE(got);
  const char *what = kind ? "ours" : "random";
  krn_kq_dequant(dt, blk, n, got);
  CHECKF((i = first_diff(got, want, n)) < 0, "%s %s krn_kq_dequant: [%d] %.9g != gguf %.9g", dt_name(dt), what, i,
         got[i < 0 ? 0 : i], want[i < 0 ? 0 : i]);
  krn_w w = krn_w_view(dt, blk, nb, 256); /* nb rows of one block */
  for (int r = 0; r < nb; r++) krn_w_row_f32(&w, r, got + 256 * r);
  CHECKF((i = first_diff(got, want, n)) < 0, "%s %s krn_w_row_f32 at %d", dt_name(dt), what, i);
  krn_w w1 = krn_w_view(dt, blk, 1, n); /* one row of nb blocks */
  CHECK(w1.row_stride_bytes == (size_t)nb * krn_kq_block_bytes(dt));
  krn_w_row_f32(&w1, 0, got);
  CHECKF((i = first_diff(got, want, n)) < 0, "%s %s one-row krn_w_row_f32 at %d", dt_name(dt), what, i);
  for (int k = 0; k < n; k++) got[k] = krn_kq_at(dt, blk, k);
  CHECKF((i = first_diff(got, want, n)) < 0, "%s %s krn_kq_at at %d", dt_name(dt), what, i);
  memset(got, 0, sizeof(float) * (size_t)n);
  CHECK(eng_dt_to_f32(got, blk, dt, n) == 0);
  CHECKF((i = first_diff(got, want, n)) < 0, "%s %s eng_dt_to_f32 at %d", dt_name(dt), what, i);
  CHECK(eng_dt_to_f32(got, blk, dt, n - 32) == -1);
  /* the CPU backend's unpacking: a matmul against unit vectors reads back each column */
  for (int portable = 0; portable < 2; portable++) {
    krn_cpu_force_portable(portable);
    float *e = calloc((size_t)256 * 256, sizeof(float)), *y = malloc(sizeof(float) * 256 * (size_t)nb);
    REQUIRE(e && y);
    for (int c = 0; c < 256; c++) e[(size_t)c * 256 + c] = 1.0f;
    krn_cpu_backend()->matmul_w(y, e, &w, NULL, 256, 256, nb); /* y[c, r] = W[r, c] exactly */
    int bad = 0;
    for (int r = 0; r < nb; r++)
      for (int c = 0; c < 256; c++) bad += y[(size_t)c * nb + r] != want[256 * r + c]; /* == : sums lose -0 */
    CHECKF(bad == 0, "%s %s cpu matmul_w unpacking (portable=%d): %d values differ", dt_name(dt), what, portable, bad);
    free(e);
    free(y);
  }
  krn_cpu_force_portable(0);
  if (xin) { /* our quantizer reproduces the pinned bytes */
    size_t bytes = (size_t)nb * krn_kq_block_bytes(dt);
    uint8_t *q = malloc(bytes);
    REQUIRE(q);
    krn_kq_quant(dt, q, xin, n);
    CHECKF(memcmp(q, blk, bytes) == 0, "%s: our quantizer no longer gives the fixture's bytes (regenerate with "
           "tools/make-kquant-fixture.py after a deliberate change)", dt_name(dt));
    free(q);
  }
  printf("fixture %s %-6s %d blocks: bit-exact vs gguf-py\n", dt_name(dt), what, nb);
  free(got);
}

static void test_fixture(void) {
  char path[4096];
  tst_path(path, sizeof path, "MOESCOPE_SRC", "tests/fixtures/kquant/kquant.bin");
  FILE *f = fopen(path, "rb");
  REQUIRE(f);
  uint32_t hdr[3];
  REQUIRE(fread(hdr, 4, 3, f) == 3 && hdr[0] == 0x5846514bu /* "KQFX" */ && hdr[1] == 1);
  int seen[2][3] = {{0}};
  for (uint32_t s = 0; s < hdr[2]; s++) {
    uint32_t h[3];
    REQUIRE(fread(h, 4, 3, f) == 3);
    int dt = dt_of_ggml(h[0]), nb = (int)h[2], kind = (int)h[1];
    REQUIRE(dt >= 0 && nb > 0 && nb <= 64 && kind >= 0 && kind <= 1);
    size_t bb = krn_kq_block_bytes(dt);
    float *x = kind ? malloc(sizeof(float) * 256 * (size_t)nb) : NULL, *want = malloc(sizeof(float) * 256 * (size_t)nb);
    uint8_t *blk = malloc(bb * (size_t)nb);
    REQUIRE(want && blk && (!kind || x));
    if (kind) REQUIRE(fread(x, 4, 256 * (size_t)nb, f) == 256 * (size_t)nb);
    REQUIRE(fread(blk, 1, bb * (size_t)nb, f) == bb * (size_t)nb);
    REQUIRE(fread(want, 4, 256 * (size_t)nb, f) == 256 * (size_t)nb);
    check_section(dt, kind, nb, x, blk, want);
    seen[kind][dt - KRN_DT_Q4_K] = 1;
    free(x); free(want); free(blk);
  }
  fclose(f);
  for (int k = 0; k < 2; k++) for (int d = 0; d < 3; d++) CHECKF(seen[k][d], "fixture lacks section kind %d type %d", k, d);
}

/* ---- our quantizer ------------------------------------------------------------------------- */

/* Grid of the sub-block holding element e of super-block b: value = step*q + off, q in
 * [qlo, qhi], computed as the dequantiser does. */
static void grid_of(int dt, const uint8_t *b, int e, float *step, float *off, int *qlo, int *qhi) {
  if (dt == KRN_DT_Q6_K) {
    *step = krn_f16_to_f32((uint16_t)(b[208] | b[209] << 8)) * (float)(int8_t)b[192 + e / 16];
    *off = 0.0f;
    *qlo = -32;
    *qhi = 31;
    return;
  }
  int s = e / 32, sc, m;
  if (s < 4) { sc = b[4 + s] & 63; m = b[8 + s] & 63; }
  else { sc = (b[8 + s] & 15) | ((b[s] >> 6) << 4); m = (b[8 + s] >> 4) | ((b[4 + s] >> 6) << 4); }
  *step = krn_f16_to_f32((uint16_t)(b[0] | b[1] << 8)) * (float)sc;
  *off = -(krn_f16_to_f32((uint16_t)(b[2] | b[3] << 8)) * (float)m);
  *qlo = 0;
  *qhi = dt == KRN_DT_Q5_K ? 31 : 15;
}

static double worst_range_ratio[3]; /* Q4_K/Q5_K: max err / sub-block range; Q6_K: max err / step */

/* Quantises x[n] (n a multiple of 256) with dt and checks every value: it took the nearest
 * point of its sub-block's grid, and its error is within a scale-derived bound (Q6_K: half
 * a step, one step on the grid's short side; Q4_K/Q5_K: 0.2 of the sub-block's span
 * max(0, max x) - min(0, min x), as the search may clamp up to 15% at each end and the
 * six-bit scales round). Returns the RMS error. */
static double roundtrip(int dt, const float *x, int n, const char *what) {
  size_t bb = krn_kq_block_bytes(dt);
  uint8_t *q = malloc(bb * (size_t)(n / 256));
  float *y = malloc(sizeof(float) * (size_t)n);
  REQUIRE(q && y);
  krn_kq_quant(dt, q, x, n);
  krn_kq_dequant(dt, q, n, y);
  double se = 0;
  int bad_near = 0, bad_bound = 0, k = dt - KRN_DT_Q4_K;
  for (int i = 0; i < n; i++) {
    const uint8_t *b = q + (size_t)(i / 256) * bb;
    int sub = dt == KRN_DT_Q6_K ? 16 : 32, j0 = i / sub * sub, qlo, qhi;
    double lo = 0, hi = 0, amax = 0;
    for (int j = j0; j < j0 + sub; j++) { lo = fmin(lo, x[j]); hi = fmax(hi, x[j]); amax = fmax(amax, fabs(x[j])); }
    float st, off;
    grid_of(dt, b, i % 256, &st, &off, &qlo, &qhi);
    double err = fabs((double)x[i] - y[i]), near = INFINITY;
    for (int v = qlo; v <= qhi; v++) near = fmin(near, fabs((double)x[i] - (st * (float)v + off)));
    if (!(err <= near + 1e-6 * amax)) {
      if (bad_near++ < 3) fprintf(stderr, "%s %s [%d]: x %.9g y %.9g, nearest grid error %.3g\n", dt_name(dt), what, i, x[i], y[i], near);
    }
    double bound, ratio;
    if (dt == KRN_DT_Q6_K) {
      bound = fabs(st) * (1 + 1e-5) + 1e-6 * amax;
      ratio = st != 0 ? err / fabs(st) : 0;
    } else {
      /* + the f16 subnormal quantum of d times the largest multiplier (tiny blocks) */
      bound = 0.2 * (hi - lo) + 1e-6 * amax + ldexp(1, -24) * 63 * 31;
      ratio = hi > lo ? err / (hi - lo) : 0;
    }
    if (!(err <= bound)) {
      if (bad_bound++ < 3) fprintf(stderr, "%s %s [%d]: x %.9g y %.9g beyond bound %.3g\n", dt_name(dt), what, i, x[i], y[i], bound);
    }
    worst_range_ratio[k] = fmax(worst_range_ratio[k], ratio);
    se += err * err;
  }
  CHECKF(bad_near == 0, "%s %s: %d values not on their nearest grid point", dt_name(dt), what, bad_near);
  CHECKF(bad_bound == 0, "%s %s: %d values beyond the error bound", dt_name(dt), what, bad_bound);
  free(q);
  free(y);
  return sqrt(se / n);
}

static double rms_legacy(int q8, const float *x, int n) {
  uint8_t *q = malloc((size_t)(n / 32) * 34);
  float *y = malloc(sizeof(float) * (size_t)n);
  REQUIRE(q && y);
  if (q8) eng_quant_q8_0(q, x, n); else eng_quant_q4_0(q, x, n);
  eng_dt_to_f32(y, q, q8 ? ENG_DT_Q8_0 : ENG_DT_Q4_0, n);
  double se = 0;
  for (int i = 0; i < n; i++) se += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
  free(q);
  free(y);
  return sqrt(se / n);
}

static void test_quantizer(void) {
  enum { N = 256 * 64 };
  float *x = malloc(sizeof(float) * N);
  REQUIRE(x);
  rng_s = 42;
  for (int i = 0; i < N; i++) x[i] = 0.03f * gauss() * (1.0f + (float)(i / 2048)); /* blocks of varying spread */
  double r4 = roundtrip(KRN_DT_Q4_K, x, N, "gauss"), r5 = roundtrip(KRN_DT_Q5_K, x, N, "gauss");
  double r6 = roundtrip(KRN_DT_Q6_K, x, N, "gauss"), r40 = rms_legacy(0, x, N), r80 = rms_legacy(1, x, N);
  printf("RMS error on gaussian weights: Q4_0 %.3g  Q4_K %.3g  Q5_K %.3g  Q6_K %.3g  Q8_0 %.3g\n", r40, r4, r5, r6, r80);
  /* same 4.5 bits per weight as Q4_0; the per-sub-block offset and the fitted (tail-clamping)
   * step give ~0.84x Q4_0's RMS here (a uniform 16-level grid cannot do much better on
   * gaussian data); each extra bit about halves it */
  CHECKF(r4 < 0.9 * r40, "Q4_K RMS %.3g not clearly below Q4_0's %.3g", r4, r40);
  CHECKF(r5 < 0.65 * r4, "Q5_K RMS %.3g vs Q4_K %.3g", r5, r4);
  CHECKF(r6 < 0.75 * r5, "Q6_K RMS %.3g vs Q5_K %.3g", r6, r5);
  CHECKF(r80 < r6, "Q8_0 RMS %.3g vs Q6_K %.3g", r80, r6);

  /* special blocks: zeros, a constant, all negative, tiny (subnormal f16 scales), huge, an outlier */
  float s[256 * 6];
  for (int i = 0; i < 256; i++) {
    s[i] = 0.0f;
    s[256 + i] = 0.25f;
    s[512 + i] = -1.0f - unif();
    s[768 + i] = 1e-7f * gauss();
    s[1024 + i] = 300.0f * gauss();
    s[1280 + i] = i == 77 ? 5.0f : 0.01f * gauss();
  }
  for (int k = 0; k < 3; k++) {
    roundtrip(DTS[k], s, 256 * 6, "special");
    printf("%s worst error / %s: %.3g\n", dt_name(DTS[k]), k < 2 ? "sub-block range" : "step", worst_range_ratio[k]);
    uint8_t q[210];
    float y[256];
    krn_kq_quant(DTS[k], q, s, 256);
    krn_kq_dequant(DTS[k], q, 256, y);
    int nz = 0;
    for (int i = 0; i < 256; i++) nz += y[i] != 0.0f;
    CHECKF(nz == 0, "%s: zeros do not come back as zeros", dt_name(DTS[k]));
  }
  free(x);
}

/* ---- matmul -------------------------------------------------------------------------------- */

static void test_matmul(void) {
  static const int shapes[][3] = {{1, 256, 1}, {1, 512, 7}, {3, 768, 13}, {4, 256, 64}, {5, 512, 9}, {17, 1024, 33},
                                  {2, 2048, 6}};
  int nthr[3] = {1, 2, 3}, saved = krn_get_threads();
  int nbad = 0, ncase = 0;
  double worst_ref = 0;
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
    int n = shapes[si][0], in = shapes[si][1], out = shapes[si][2];
    float *wf = malloc(sizeof(float) * (size_t)in * out), *x = malloc(sizeof(float) * (size_t)n * in);
    float *bias = malloc(sizeof(float) * (size_t)out), *y0 = malloc(sizeof(float) * (size_t)n * out);
    float *y1 = malloc(sizeof(float) * (size_t)n * out), *yr = malloc(sizeof(float) * (size_t)n * out);
    uint8_t *q = malloc((size_t)in / 256 * 210 * out);
    REQUIRE(wf && x && bias && y0 && y1 && yr && q);
    for (int i = 0; i < in * out; i++) wf[i] = 0.05f * gauss();
    for (int i = 0; i < n * in; i++) x[i] = gauss();
    for (int i = 0; i < out; i++) bias[i] = 0.1f * gauss();
    for (int k = 0; k < 3; k++) {
      krn_kq_quant(DTS[k], q, wf, (int64_t)in * out);
      krn_w w = krn_w_view(DTS[k], q, out, in);
      float *deq = malloc(sizeof(float) * (size_t)in * out);
      REQUIRE(deq);
      for (int r = 0; r < out; r++) krn_w_row_f32(&w, r, deq + (size_t)r * in);
      krn_ref_backend()->matmul_w(yr, x, &w, bias, n, in, out);
      for (int portable = 0; portable < 2; portable++)
        for (int t = 0; t < 3; t++) {
          krn_cpu_force_portable(portable);
          krn_set_threads(nthr[t]);
          const float *b = (si + t) % 2 ? bias : NULL;
          krn_cpu_backend()->matmul(y0, x, deq, b, n, in, out);
          krn_cpu_backend()->matmul_w(y1, x, &w, b, n, in, out);
          ncase++;
          if (memcmp(y0, y1, sizeof(float) * (size_t)n * out)) {
            nbad++;
            fprintf(stderr, "%s n=%d in=%d out=%d threads=%d portable=%d: matmul_w != matmul(dequantised)\n",
                    dt_name(DTS[k]), n, in, out, nthr[t], portable);
          }
          if (b) /* float32 sums vs the reference's double: relative to sum |x*w| */
            for (int i = 0; i < n * out; i++) {
              double mag = fabs((double)b[i % out]);
              for (int c = 0; c < in; c++) mag += fabs((double)x[(size_t)(i / out) * in + c] * deq[(size_t)(i % out) * in + c]);
              worst_ref = fmax(worst_ref, fabs((double)y1[i] - yr[i]) / mag);
            }
        }
      free(deq);
    }
    free(wf); free(x); free(bias); free(y0); free(y1); free(yr); free(q);
  }
  krn_cpu_force_portable(0);
  krn_set_threads(saved);
  CHECKF(nbad == 0, "%d of %d typed matmuls differ from the float32 matmul of the dequantised rows", nbad, ncase);
  CHECKF(worst_ref < 1e-5, "cpu vs reference backend: worst difference / sum|x*w| %.3g", worst_ref);
  printf("matmul: %d K-quant cases bit-identical to float32 over dequantised rows (cpu features: %s); "
         "vs reference backend worst diff / sum|x*w| %.2g\n", ncase, krn_cpu_features(), worst_ref);
}

static void test_types(void) {
  CHECK(krn_dtype_row_bytes(KRN_DT_Q4_K, 512) == 288 && krn_dtype_row_bytes(KRN_DT_Q5_K, 256) == 176);
  CHECK(krn_dtype_row_bytes(KRN_DT_Q6_K, 768) == 630 && krn_dtype_row_bytes(KRN_DT_Q4_K, 288) == 0);
  size_t bb;
  CHECK(eng_dtype_block(ENG_DT_Q4_K, &bb) == 256 && bb == 144);
  CHECK(eng_dtype_block(ENG_DT_Q6_K, &bb) == 256 && bb == 210);
  CHECK(eng_dtype_nbytes(ENG_DT_Q5_K, 512) == 352 && eng_dtype_nbytes(ENG_DT_Q5_K, 500) == 0);
  CHECK(!strcmp(eng_dtype_name(ENG_DT_Q4_K), "Q4_K") && !strcmp(eng_dtype_name(ENG_DT_Q6_K), "Q6_K"));
  CHECK(eng_dtype_is_float(ENG_DT_Q5_K) && eng_dtype_size(ENG_DT_Q4_K) == 0);
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "--emit-ours")) return emit_ours(argv[2]);
  test_types();
  test_fixture();
  test_quantizer();
  test_matmul();
  return tst_done();
}
