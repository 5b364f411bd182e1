/* test_cuda_mla.c — GPU label: the kernels added for DeepSeek MLA and gpt-oss against CPU
 * references: strided RMSNorm (the latent norm of [latent | k_pe] rows) vs krn_ref.c's
 * rmsnorm row by row; the cache scatter krn_cuda_mla_kv vs the memcpy loop of
 * eng_attn.c attn_mla (exact); and a whole MLA attention block (q LoRA, kv_a, norms, kv_b,
 * interleaved RoPE on q_pe and the shared k_pe, cache, attention with qk dim != v dim, o_proj)
 * built from the CUDA kernels vs the same chain on krn_ref.c (float32 linears: 1e-4
 * relative). gpt-oss's clamped SwiGLU and expert biases are covered by test_cuda_kernels.c
 * (test_moe with oai). Skips (77) without CUDA. */
#include "kernels/krn_backend.h"
#include "tests/gpu/cuda_tst.h"
#include "tests/tst.h"

#include <string.h>

static krn_cuda_ctx *C;
static const krn_backend *R;

static void test_rmsnorm_strided(void) {
  int n = 7, kvr = 96, rd = 16, xs = kvr + rd;
  float *x = ct_randv((size_t)n * xs, 2), *w = ct_randv(kvr, 1);
  float *ref = malloc(sizeof(float) * n * kvr), *got = malloc(sizeof(float) * n * kvr);
  for (int t = 0; t < n; t++) R->rmsnorm(ref + (size_t)t * kvr, x + (size_t)t * xs, w, 1, kvr, 1e-6f);
  float *dx = ct_up(C, x, sizeof(float) * n * xs), *dw = ct_up(C, w, sizeof(float) * kvr),
        *dy = ct_up(C, NULL, sizeof(float) * n * kvr);
  CHECK(krn_cuda_rmsnorm_strided(C, dy, kvr, dx, xs, dw, n, kvr, 1e-6f) == 0);
  ct_down(C, got, dy, sizeof(float) * n * kvr);
  double e = ct_relmax(got, ref, (size_t)n * kvr);
  printf("rmsnorm strided: rel err %.2e\n", e);
  CHECK(e < 1e-5);
  /* the rows' tails (k_pe) are untouched by an in-place strided norm */
  CHECK(krn_cuda_rmsnorm_strided(C, dx, xs, dx, xs, dw, n, kvr, 1e-6f) == 0);
  float *back = malloc(sizeof(float) * n * xs);
  ct_down(C, back, dx, sizeof(float) * n * xs);
  int ok = 1;
  for (int t = 0; t < n; t++) {
    ok &= memcmp(back + (size_t)t * xs + kvr, x + (size_t)t * xs + kvr, sizeof(float) * rd) == 0;
    ok &= ct_relmax(back + (size_t)t * xs, ref + (size_t)t * kvr, kvr) < 1e-5;
  }
  CHECKF(ok, "in-place strided rmsnorm");
  CHECK(krn_cuda_rmsnorm_strided(C, dx, kvr, dx, xs, dw, n, kvr, 1e-6f) != 0);   /* refused */
  krn_cuda_free(dx); krn_cuda_free(dw); krn_cuda_free(dy);
  free(x); free(w); free(ref); free(got); free(back);
}

/* eng_attn.c's cache rows from kv_b output and kv_a output */
static void ref_mla_kv(float *kc, float *vc, const float *kvb, const float *kva, int n, int nh, int nope, int rd, int vh,
                       int kvr) {
  int qk = nope + rd, w = nope + vh, kvaw = kvr + rd;
  for (int t = 0; t < n; t++) {
    float *kr = kc + (size_t)t * nh * qk, *vr = vc + (size_t)t * nh * vh;
    const float *src = kvb + (size_t)t * nh * w, *pe = kva + (size_t)t * kvaw + kvr;
    for (int h = 0; h < nh; h++) {
      memcpy(kr + (size_t)h * qk, src + (size_t)h * w, sizeof(float) * nope);
      memcpy(kr + (size_t)h * qk + nope, pe, sizeof(float) * rd);
      memcpy(vr + (size_t)h * vh, src + (size_t)h * w + nope, sizeof(float) * vh);
    }
  }
}

static void test_mla_kv(int n, int nh, int nope, int rd, int vh, int kvr) {
  int qk = nope + rd;
  size_t nb = (size_t)n * nh * (nope + vh), na = (size_t)n * (kvr + rd), nk = (size_t)n * nh * qk, nv = (size_t)n * nh * vh;
  float *kvb = ct_randv(nb, 1), *kva = ct_randv(na, 1);
  float *rk = malloc(sizeof(float) * nk), *rv = malloc(sizeof(float) * nv), *gk = malloc(sizeof(float) * nk),
        *gv = malloc(sizeof(float) * nv);
  ref_mla_kv(rk, rv, kvb, kva, n, nh, nope, rd, vh, kvr);
  float *db = ct_up(C, kvb, sizeof(float) * nb), *da = ct_up(C, kva, sizeof(float) * na),
        *dk = ct_up(C, NULL, sizeof(float) * nk), *dv = ct_up(C, NULL, sizeof(float) * nv);
  CHECK(krn_cuda_mla_kv(C, dk, dv, db, da, n, nh, nope, rd, vh, kvr) == 0);
  ct_down(C, gk, dk, sizeof(float) * nk);
  ct_down(C, gv, dv, sizeof(float) * nv);
  int same = memcmp(gk, rk, sizeof(float) * nk) == 0 && memcmp(gv, rv, sizeof(float) * nv) == 0;
  printf("mla_kv n=%d nh=%d nope=%d rope=%d v=%d kv_lora=%d: %s\n", n, nh, nope, rd, vh, kvr, same ? "exact" : "DIFFERS");
  CHECK(same);
  krn_cuda_free(db); krn_cuda_free(da); krn_cuda_free(dk); krn_cuda_free(dv);
  free(kvb); free(kva); free(rk); free(rv); free(gk); free(gv);
}

/* A BF16-rounded random matrix [rows, cols] on host (float) and device (bits). */
typedef struct mat { float *h; uint16_t *d; } mat;
static mat mk(int rows, int cols, float scale) {
  mat m;
  m.h = ct_randv((size_t)rows * cols, scale);
  uint16_t *b = ct_bf16(m.h, (size_t)rows * cols);
  m.d = ct_up(C, b, sizeof(uint16_t) * rows * cols);
  free(b);
  return m;
}

/* Whole MLA block: start tokens already cached (by an earlier call of the same chain), then
 * n new tokens; out = x + o_proj(attention). Mirrors attn_mla. */
static void test_mla_block(int start, int n, int interleave) {
  int H = 64, nh = 4, nope = 16, rd = 8, vh = 12, kvr = 32, qr = 24, qk = nope + rd, kva = kvr + rd, kvb = nope + vh;
  int ctx = start + n, half = rd / 2;
  float scale = 0.3f;
  mat qa = mk(qr, H, 0.2f), qb = mk(nh * qk, qr, 0.2f), ka = mk(kva, H, 0.2f), kb = mk(nh * kvb, kvr, 0.2f),
      o = mk(H, nh * vh, 0.2f);
  float *qan = ct_randv(qr, 1), *kan = ct_randv(kvr, 1), *bqa = ct_randv(qr, 0.1f), *bo = ct_randv(H, 0.1f);
  float *x = ct_randv((size_t)ctx * H, 1);
  float *cs = malloc(sizeof(float) * ctx * half), *sn = malloc(sizeof(float) * ctx * half);
  for (int t = 0; t < ctx; t++)
    for (int i = 0; i < half; i++) {
      double a = t * pow(10000.0, -2.0 * i / rd);
      cs[t * half + i] = (float)(cos(a) * 1.1);
      sn[t * half + i] = (float)(sin(a) * 1.1);
    }
  /* CPU chain over all ctx tokens at once (causal attention makes it equal to start + n) */
  float *A = malloc(sizeof(float) * ctx * (qr > kva ? qr : kva)), *Bn = malloc(sizeof(float) * ctx * kvr),
        *Cc = malloc(sizeof(float) * ctx * nh * kvb), *Q = malloc(sizeof(float) * ctx * nh * qk),
        *KC = malloc(sizeof(float) * ctx * nh * qk), *VC = malloc(sizeof(float) * ctx * nh * vh),
        *ATT = malloc(sizeof(float) * ctx * nh * vh), *Y = malloc(sizeof(float) * ctx * H);
  R->matmul(A, x, qa.h, bqa, ctx, H, qr);
  R->rmsnorm(A, A, qan, ctx, qr, 1e-6f);
  R->matmul(Q, A, qb.h, NULL, ctx, qr, nh * qk);
  R->matmul(A, x, ka.h, NULL, ctx, H, kva);
  for (int t = 0; t < ctx; t++) R->rmsnorm(Bn + (size_t)t * kvr, A + (size_t)t * kva, kan, 1, kvr, 1e-6f);
  R->matmul(Cc, Bn, kb.h, NULL, ctx, kvr, nh * kvb);
  R->rope_cs(Q + nope, ctx, nh, nh * qk, qk, rd, cs, sn, interleave);
  R->rope_cs(A + kvr, ctx, 1, kva, 0, rd, cs, sn, interleave);
  ref_mla_kv(KC, VC, Cc, A, ctx, nh, nope, rd, vh, kvr);
  R->attention_ex(ATT, Q, KC, VC, ctx, 0, nh, nh, qk, vh, scale, 0, NULL);
  R->matmul(Y, ATT, o.h, bo, ctx, nh * vh, H);
  /* GPU chain, in two calls (prefix then the new tokens) like the engine */
  float *dx = ct_up(C, x, sizeof(float) * ctx * H), *dcs = ct_up(C, cs, sizeof(float) * ctx * half),
        *dsn = ct_up(C, sn, sizeof(float) * ctx * half), *dqan = ct_up(C, qan, sizeof(float) * qr),
        *dkan = ct_up(C, kan, sizeof(float) * kvr), *dbqa = ct_up(C, bqa, sizeof(float) * qr), *dbo = ct_up(C, bo, sizeof(float) * H);
  float *dA = ct_up(C, NULL, sizeof(float) * ctx * (qr > kva ? qr : kva)), *dB = ct_up(C, NULL, sizeof(float) * ctx * kvr),
        *dC = ct_up(C, NULL, sizeof(float) * ctx * nh * kvb), *dQ = ct_up(C, NULL, sizeof(float) * ctx * nh * qk),
        *dK = ct_up(C, NULL, sizeof(float) * ctx * nh * qk), *dV = ct_up(C, NULL, sizeof(float) * ctx * nh * vh),
        *dAT = ct_up(C, NULL, sizeof(float) * ctx * nh * vh), *dY = ct_up(C, NULL, sizeof(float) * ctx * H);
  int ok = 1;
  for (int part = 0; part < 2; part++) {
    int s0 = part ? start : 0, m = part ? n : start;
    if (m == 0) continue;
    const float *xi = dx + (size_t)s0 * H;
    ok &= krn_cuda_linear(C, dA, xi, qa.d, dbqa, m, H, qr, KRN_LIN_TILED) == 0;
    ok &= krn_cuda_rmsnorm(C, dA, dA, dqan, m, qr, 1e-6f) == 0;
    ok &= krn_cuda_linear(C, dQ, dA, qb.d, NULL, m, qr, nh * qk, KRN_LIN_TILED) == 0;
    ok &= krn_cuda_linear(C, dA, xi, ka.d, NULL, m, H, kva, KRN_LIN_TILED) == 0;
    ok &= krn_cuda_rmsnorm_strided(C, dB, kvr, dA, kva, dkan, m, kvr, 1e-6f) == 0;
    ok &= krn_cuda_linear(C, dC, dB, kb.d, NULL, m, kvr, nh * kvb, KRN_LIN_TILED) == 0;
    ok &= krn_cuda_rope_cs(C, dQ + nope, m, nh, nh * qk, qk, rd, dcs + (size_t)s0 * half, dsn + (size_t)s0 * half, interleave) == 0;
    ok &= krn_cuda_rope_cs(C, dA + kvr, m, 1, kva, 0, rd, dcs + (size_t)s0 * half, dsn + (size_t)s0 * half, interleave) == 0;
    ok &= krn_cuda_mla_kv(C, dK + (size_t)s0 * nh * qk, dV + (size_t)s0 * nh * vh, dC, dA, m, nh, nope, rd, vh, kvr) == 0;
    ok &= krn_cuda_attention(C, dAT + (size_t)s0 * nh * vh, dQ, dK, dV, m, s0, nh, nh, qk, vh, scale, 0, NULL, 0) == 0;
    ok &= krn_cuda_linear(C, dY + (size_t)s0 * H, dAT + (size_t)s0 * nh * vh, o.d, dbo, m, nh * vh, H, KRN_LIN_TILED) == 0;
  }
  CHECKF(ok, "mla block launches: %s", krn_cuda_last_error());
  float *got = malloc(sizeof(float) * ctx * H);
  ct_down(C, got, dY, sizeof(float) * ctx * H);
  double e = ct_relmax(got + (size_t)start * H, Y + (size_t)start * H, (size_t)n * H);
  printf("mla block start=%d n=%d interleave=%d: rel err %.2e\n", start, n, interleave, e);
  CHECK(e < 1e-4);
  void *dp[] = {dx, dcs, dsn, dqan, dkan, dbqa, dbo, dA, dB, dC, dQ, dK, dV, dAT, dY, qa.d, qb.d, ka.d, kb.d, o.d};
  for (size_t i = 0; i < sizeof dp / sizeof dp[0]; i++) krn_cuda_free(dp[i]);
  float *hp[] = {qa.h, qb.h, ka.h, kb.h, o.h, qan, kan, bqa, bo, x, cs, sn, A, Bn, Cc, Q, KC, VC, ATT, Y, got};
  for (size_t i = 0; i < sizeof hp / sizeof hp[0]; i++) free(hp[i]);
}

int main(void) {
  ct_need_device();
  R = krn_ref_backend();
  REQUIRE(krn_cuda_ctx_create(&C, 0, (size_t)1 << 20) == 0);
  test_rmsnorm_strided();
  test_mla_kv(5, 4, 16, 8, 12, 32);
  test_mla_kv(3, 16, 128, 64, 128, 512);   /* DeepSeek-V3 shapes */
  test_mla_kv(2, 2, 0, 8, 8, 4);           /* no nope part */
  test_mla_block(0, 9, 1);                 /* prefill */
  test_mla_block(9, 1, 1);                 /* decode over a cached prefix */
  test_mla_block(6, 5, 0);                 /* rotate-half pairs */
  krn_cuda_ctx_destroy(C);
  return tst_done();
}
