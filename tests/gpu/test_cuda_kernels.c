/* test_cuda_kernels.c — GPU label: every CUDA kernel (krn_cuda_ops.h) against its CPU
 * reference on random data: the plain reference backend (krn_ref.c) for RMSNorm, RoPE,
 * attention, SwiGLU (and gpt-oss's clamped variant with expert biases) and matmul; eng_policy.c's routers for the router kernel; small C
 * loops here for permutation, combine, sampling. Tolerances (relative to the largest
 * reference value): float32 paths 1e-4 (attention, GEMV, tiled GEMM, norms), the cuBLAS
 * path whose input is rounded to BF16 1e-2 (the tensor-core grouped expert linear too, and
 * 5e-4 against a reference on the same BF16 activations); integer outputs exact. Weights are BF16 on the
 * device, so the references use the same BF16-rounded weights. Skips (77) without CUDA. */
#include "engine/eng_policy.h"
#include "kernels/krn_backend.h"
#include "tests/gpu/cuda_tst.h"
#include "tests/tst.h"

static krn_cuda_ctx *C;
static const krn_backend *R;

static void test_rmsnorm(void) {
  int n = 5, dim = 300;
  float *x = ct_randv((size_t)n * dim, 3), *w = ct_randv(dim, 1), *ref = malloc(sizeof(float) * n * dim), *got = malloc(sizeof(float) * n * dim);
  R->rmsnorm(ref, x, w, n, dim, 1e-5f);
  float *dx = ct_up(C, x, sizeof(float) * n * dim), *dw = ct_up(C, w, sizeof(float) * dim);
  CHECK(krn_cuda_rmsnorm(C, dx, dx, dw, n, dim, 1e-5f) == 0);   /* in place */
  ct_down(C, got, dx, sizeof(float) * n * dim);
  double e = ct_relmax(got, ref, (size_t)n * dim);
  printf("rmsnorm: rel err %.2e\n", e);
  CHECK(e < 1e-5);
  krn_cuda_free(dx); krn_cuda_free(dw);
  free(x); free(w); free(ref); free(got);
}

static void test_rope(int interleaved, int rot_dim) {
  int n = 6, nh = 3, hd = 64, half = rot_dim / 2, stride = nh * hd;
  float *x = ct_randv((size_t)n * stride, 1), *cs = malloc(sizeof(float) * n * half), *sn = malloc(sizeof(float) * n * half);
  for (int t = 0; t < n; t++)
    for (int i = 0; i < half; i++) {
      double a = (t + 3) * pow(10000.0, -2.0 * i / rot_dim);
      cs[t * half + i] = (float)cos(a);
      sn[t * half + i] = (float)sin(a);
    }
  float *ref = malloc(sizeof(float) * n * stride), *got = malloc(sizeof(float) * n * stride);
  memcpy(ref, x, sizeof(float) * n * stride);
  R->rope_cs(ref, n, nh, stride, hd, rot_dim, cs, sn, interleaved);
  float *dx = ct_up(C, x, sizeof(float) * n * stride), *dc = ct_up(C, cs, sizeof(float) * n * half), *ds = ct_up(C, sn, sizeof(float) * n * half);
  CHECK(krn_cuda_rope_cs(C, dx, n, nh, stride, hd, rot_dim, dc, ds, interleaved) == 0);
  ct_down(C, got, dx, sizeof(float) * n * stride);
  double e = ct_absmax(got, ref, (size_t)n * stride);
  printf("rope (interleaved=%d, rot_dim=%d): abs err %.2e\n", interleaved, rot_dim, e);
  CHECK(e < 1e-5);
  krn_cuda_free(dx); krn_cuda_free(dc); krn_cuda_free(ds);
  free(x); free(cs); free(sn); free(ref); free(got);
}

static void test_attention(int n, int start, int nh, int nkv, int qk, int vd, int window, int with_sinks) {
  int ctx = start + n;
  float scale = 1.0f / sqrtf((float)qk);
  float *q = ct_randv((size_t)n * nh * qk, 1), *kc = ct_randv((size_t)ctx * nkv * qk, 1), *vc = ct_randv((size_t)ctx * nkv * vd, 1);
  float *sinks = with_sinks ? ct_randv(nh, 2) : NULL;
  size_t no = (size_t)n * nh * vd;
  float *ref = malloc(sizeof(float) * no), *got = malloc(sizeof(float) * no);
  R->attention_ex(ref, q, kc, vc, n, start, nh, nkv, qk, vd, scale, window, sinks);
  float *dq = ct_up(C, q, sizeof(float) * n * nh * qk), *dk = ct_up(C, kc, sizeof(float) * ctx * nkv * qk),
        *dv = ct_up(C, vc, sizeof(float) * ctx * nkv * vd), *ds = sinks ? ct_up(C, sinks, sizeof(float) * nh) : NULL,
        *dout = ct_up(C, NULL, sizeof(float) * no);
  for (int kind = 1; kind <= 2; kind++) {
    CHECK(krn_cuda_attention(C, dout, dq, dk, dv, n, start, nh, nkv, qk, vd, scale, window, ds, kind) == 0);
    ct_down(C, got, dout, sizeof(float) * no);
    double e = ct_absmax(got, ref, no);
    printf("attention %s n=%d start=%d heads=%d/%d dims=%d/%d window=%d sinks=%d: abs err %.2e\n",
           kind == 1 ? "prefill" : "decode ", n, start, nh, nkv, qk, vd, window, with_sinks, e);
    CHECKF(e < 1e-4, "kind %d err %g", kind, e);
  }
  krn_cuda_free(dq); krn_cuda_free(dk); krn_cuda_free(dv); krn_cuda_free(ds); krn_cuda_free(dout);
  free(q); free(kc); free(vc); free(sinks); free(ref); free(got);
}

static void test_linear(int rows, int in, int out, int with_bias) {
  float *x = ct_randv((size_t)rows * in, 1), *w = ct_randv((size_t)out * in, 0.5f), *b = with_bias ? ct_randv(out, 1) : NULL;
  uint16_t *wb = ct_bf16(w, (size_t)out * in);
  float *ref = malloc(sizeof(float) * rows * out), *got = malloc(sizeof(float) * rows * out);
  R->matmul(ref, x, w, b, rows, in, out);
  float *dx = ct_up(C, x, sizeof(float) * rows * in), *db = b ? ct_up(C, b, sizeof(float) * out) : NULL,
        *dy = ct_up(C, NULL, sizeof(float) * rows * out), *dwf = ct_up(C, w, sizeof(float) * out * in);
  uint16_t *dw = ct_up(C, wb, sizeof(uint16_t) * out * in);
  int modes[3] = {KRN_LIN_GEMV, KRN_LIN_TILED, KRN_LIN_CUBLAS};
  const char *names[3] = {"gemv", "tiled", "cublas"};
  for (int i = 0; i < 3; i++) {
    if (modes[i] == KRN_LIN_GEMV && rows > KRN_CUDA_GEMV_MAX_ROWS) continue;
    krn_cuda_memset(C, dy, 0xff, sizeof(float) * rows * out);   /* NaN: every output must be written */
    int rc = krn_cuda_linear(C, dy, dx, dw, db, rows, in, out, modes[i]);
    CHECKF(rc == 0, "%s: %s", names[i], krn_cuda_last_error());
    ct_down(C, got, dy, sizeof(float) * rows * out);
    double e = ct_relmax(got, ref, (size_t)rows * out), tol = modes[i] == KRN_LIN_CUBLAS ? 1e-2 : 1e-4;
    printf("linear %-6s rows=%d in=%d out=%d bias=%d: rel err %.2e (tol %.0e)\n", names[i], rows, in, out, with_bias, e, tol);
    CHECKF(e < tol, "%s err %g", names[i], e);
  }
  CHECK(krn_cuda_linear_f32w(C, dy, dx, dwf, db, rows, in, out) == 0);
  ct_down(C, got, dy, sizeof(float) * rows * out);
  double e = ct_relmax(got, ref, (size_t)rows * out);
  printf("linear f32w  rows=%d: rel err %.2e\n", rows, e);
  CHECK(e < 1e-5);
  krn_cuda_free(dx); krn_cuda_free(db); krn_cuda_free(dy); krn_cuda_free(dw); krn_cuda_free(dwf);
  free(x); free(w); free(b); free(wb); free(ref); free(got);
}

/* The router kernel against eng_policy.c's native router of the same configuration. */
static void test_router(eng_router_kind kind, int E, int k, int renorm, int G, int tg, float scale) {
  int n = 200;
  eng_router_cfg rc = {.kind = kind, .n_experts = E, .k = k, .renorm = renorm, .n_group = G, .topk_group = tg,
                       .scale = scale, .capacity_factor = 1.0f};
  eng_policy *p = NULL;
  char err[256];
  REQUIRE(eng_policy_create_cfg(&p, "native", &rc, err, sizeof err) == 0);
  float *z = ct_randv((size_t)n * E, 4), *bias = kind == ENG_ROUTER_SIGMOID_GROUP ? ct_randv(E, 0.3f) : NULL;
  int *ex = malloc(sizeof(int) * n * k), *gex = malloc(sizeof(int) * n * k), dropped[512];
  float *w = malloc(sizeof(float) * n * k), *pr = malloc(sizeof(float) * n * E), *gw = malloc(sizeof(float) * n * k),
        *gpr = malloc(sizeof(float) * n * E);
  eng_route_out ro = {ex, w, pr, dropped, NULL, 0};
  p->sel_bias = bias;
  REQUIRE(p->route(p, z, NULL, n, 0, &ro) == 0);
  float *dz = ct_up(C, z, sizeof(float) * n * E), *db = bias ? ct_up(C, bias, sizeof(float) * E) : NULL,
        *dpr = ct_up(C, NULL, sizeof(float) * n * E), *dw = ct_up(C, NULL, sizeof(float) * n * k),
        *dscr = ct_up(C, NULL, sizeof(float) * n * (E + G));
  int *dex = ct_up(C, NULL, sizeof(int) * n * k);
  krn_cuda_router r = {(int)kind, E, k, renorm, G, tg, E, scale};
  CHECKF(krn_cuda_route(C, &r, dz, db, n, dpr, dex, dw, dscr) == 0, "%s", krn_cuda_last_error());
  ct_down(C, gex, dex, sizeof(int) * n * k);
  ct_down(C, gw, dw, sizeof(float) * n * k);
  ct_down(C, gpr, dpr, sizeof(float) * n * E);
  int mism = 0;
  for (int i = 0; i < n * k; i++) mism += gex[i] != ex[i];
  double ew = ct_absmax(gw, w, (size_t)n * k), ep = ct_absmax(gpr, pr, (size_t)n * E);
  printf("router %s E=%d k=%d renorm=%d groups=%d/%d: %d expert mismatches, weight err %.2e, prob err %.2e\n",
         eng_router_kind_name(kind), E, k, renorm, G, tg, mism, ew, ep);
  CHECK(mism == 0);
  CHECK(ew < 1e-5 * (scale > 1 ? scale : 1));
  CHECK(ep < 1e-5);
  krn_cuda_free(dz); krn_cuda_free(db); krn_cuda_free(dpr); krn_cuda_free(dw); krn_cuda_free(dscr); krn_cuda_free(dex);
  free(z); free(bias); free(ex); free(gex); free(w); free(pr); free(gw); free(gpr);
  eng_policy_free(p);
}

/* permute -> gather -> grouped gate_up -> swiglu -> grouped down -> combine, against the
 * loop of eng_moe.c (experts in ascending order, tokens in order). */
/* oai: gpt-oss experts (biases on gate/up and down, clamped SwiGLU, alpha 1.702, limit 1). */
static void test_moe(int n, int E, int k, int H, int I, int mode, int oai) {
  const float alpha = 1.702f, limit = 1.0f;
  int *ex = malloc(sizeof(int) * n * k);
  float *wt = malloc(sizeof(float) * n * k);
  for (int t = 0; t < n; t++)
    for (int j = 0; j < k; j++) {
      int e;
      do {   /* distinct experts per token; ~5% empty slots (-1) */
        e = (int)((ct_rand() + 1) * 0.5 * E);
        if (e >= E) e = E - 1;
        if (ct_rand() > 0.9f) e = -1;
        int dup = 0;
        for (int jj = 0; jj < j; jj++) dup |= e >= 0 && ex[t * k + jj] == e;
        if (!dup) break;
      } while (1);
      ex[t * k + j] = e;
      wt[t * k + j] = e < 0 ? 0 : (ct_rand() + 1) * 0.5f;
    }
  float *h = ct_randv((size_t)n * H, 1), *w13 = ct_randv((size_t)E * 2 * I * H, 0.2f), *w2 = ct_randv((size_t)E * H * I, 0.2f);
  uint16_t *b13 = ct_bf16(w13, (size_t)E * 2 * I * H), *b2 = ct_bf16(w2, (size_t)E * H * I);
  float *x0 = ct_randv((size_t)n * H, 1), *ref = malloc(sizeof(float) * n * H), *got = malloc(sizeof(float) * n * H);
  float *bb13 = oai ? ct_randv((size_t)E * 2 * I, 0.5f) : NULL, *bb2 = oai ? ct_randv((size_t)E * H, 0.5f) : NULL;
  /* reference */
  float *moe = calloc((size_t)n * H, sizeof(float)), *gu = malloc(sizeof(float) * 2 * I), *act = malloc(sizeof(float) * I),
        *y = malloc(sizeof(float) * H);
  int *cnt = calloc((size_t)E, sizeof(int));
  for (int e = 0; e < E; e++)
    for (int t = 0; t < n; t++)
      for (int j = 0; j < k; j++)
        if (ex[t * k + j] == e) {
          cnt[e]++;
          R->matmul(gu, h + (size_t)t * H, w13 + (size_t)e * 2 * I * H, oai ? bb13 + (size_t)e * 2 * I : NULL, 1, H, 2 * I);
          if (oai) R->swiglu_oai(act, gu, gu + I, (size_t)I, alpha, limit);
          else R->swiglu(act, gu, gu + I, (size_t)I);
          R->matmul(y, act, w2 + (size_t)e * H * I, oai ? bb2 + (size_t)e * H : NULL, 1, I, H);
          for (int d = 0; d < H; d++) moe[(size_t)t * H + d] += wt[t * k + j] * y[d];
        }
  for (size_t i = 0; i < (size_t)n * H; i++) ref[i] = x0[i] + moe[i];
  /* device */
  int rows = n * k;
  int *dex = ct_up(C, ex, sizeof(int) * rows), *dcnt = ct_up(C, NULL, sizeof(int) * E), *doff = ct_up(C, NULL, sizeof(int) * (E + 1)),
      *drt = ct_up(C, NULL, sizeof(int) * rows), *dre = ct_up(C, NULL, sizeof(int) * rows), *dsr = ct_up(C, NULL, sizeof(int) * rows);
  float *dwt = ct_up(C, wt, sizeof(float) * rows), *dh = ct_up(C, h, sizeof(float) * n * H), *dx = ct_up(C, x0, sizeof(float) * n * H),
        *dxin = ct_up(C, NULL, sizeof(float) * rows * H), *dgu = ct_up(C, NULL, sizeof(float) * rows * 2 * I),
        *dact = ct_up(C, NULL, sizeof(float) * rows * I), *dy = ct_up(C, NULL, sizeof(float) * rows * H);
  uint16_t *d13 = ct_up(C, b13, sizeof(uint16_t) * E * 2 * I * H), *d2 = ct_up(C, b2, sizeof(uint16_t) * E * H * I);
  float *db13 = oai ? ct_up(C, bb13, sizeof(float) * E * 2 * I) : NULL, *db2 = oai ? ct_up(C, bb2, sizeof(float) * E * H) : NULL;
  CHECK(krn_cuda_moe_permute(C, dex, n, k, E, dcnt, doff, drt, dre, dsr) == 0);
  int *gcnt = malloc(sizeof(int) * E), *goff = malloc(sizeof(int) * (E + 1)), *grt = malloc(sizeof(int) * rows),
      *gre = malloc(sizeof(int) * rows), *gsr = malloc(sizeof(int) * rows);
  ct_down(C, gcnt, dcnt, sizeof(int) * E);
  ct_down(C, goff, doff, sizeof(int) * (E + 1));
  ct_down(C, grt, drt, sizeof(int) * rows);
  ct_down(C, gre, dre, sizeof(int) * rows);
  ct_down(C, gsr, dsr, sizeof(int) * rows);
  int ok = goff[0] == 0, total = 0;
  for (int e = 0; e < E; e++) { ok &= gcnt[e] == cnt[e] && goff[e + 1] == goff[e] + cnt[e]; total += cnt[e]; }
  for (int s = 0; s < rows && ok; s++) {
    if (ex[s] < 0) { ok &= gsr[s] == -1; continue; }
    int r = gsr[s];
    ok &= r >= goff[ex[s]] && r < goff[ex[s] + 1] && grt[r] == s / k && gre[r] == ex[s];
    if (r > goff[ex[s]]) ok &= grt[r - 1] < grt[r];   /* token order inside an expert */
  }
  CHECKF(ok, "permutation (total %d)", total);
  CHECK(krn_cuda_gather_rows(C, dxin, dh, drt, doff + E, rows, H) == 0);
  CHECK(krn_cuda_grouped_linear(C, dgu, dxin, d13, (size_t)2 * I * H, db13, doff, dre, E, rows, H, 2 * I, mode) == 0);
  if (oai) CHECK(krn_cuda_swiglu_oai(C, dact, dgu, rows, doff + E, I, alpha, limit) == 0);
  else CHECK(krn_cuda_swiglu(C, dact, dgu, rows, doff + E, I) == 0);
  CHECK(krn_cuda_grouped_linear(C, dy, dact, d2, (size_t)H * I, db2, doff, dre, E, rows, I, H, mode) == 0);
  CHECK(krn_cuda_moe_combine(C, dx, dy, dsr, dwt, n, k, H) == 0);
  ct_down(C, got, dx, sizeof(float) * n * H);
  double e = ct_relmax(got, ref, (size_t)n * H);
  printf("moe path n=%d E=%d k=%d H=%d I=%d mode=%s%s: rel err %.2e\n", n, E, k, H, I, mode == KRN_LIN_GEMV ? "gemv" : "tiled",
         oai ? " gpt-oss (biases, clamped swiglu)" : "", e);
  CHECK(e < 1e-4);
  void *dp[] = {dex, dcnt, doff, drt, dre, dsr, dwt, dh, dx, dxin, dgu, dact, dy, d13, d2, db13, db2};
  for (size_t i = 0; i < sizeof dp / sizeof dp[0]; i++) krn_cuda_free(dp[i]);
  free(gcnt); free(goff); free(grt); free(gre); free(gsr);
  free(ex); free(wt); free(h); free(w13); free(w2); free(b13); free(b2); free(x0); free(ref); free(got);
  free(moe); free(gu); free(act); free(y); free(cnt); free(bb13); free(bb2);
}

/* Tensor-core grouped linear (krn_cuda_grouped_linear_tc, --expert-gemm cublas) over E
 * groups of uneven sizes (every third group empty) against (a) a CPU reference on the same
 * BF16-rounded activations: only the summation order differs, 5e-4; (b) the float32 CPU
 * reference and (c) the own tiled grouped kernel, both with float32 activations: BF16
 * rounding of x (relative error <= 2^-9 per element, random signs over `in` terms) stays
 * well under the 1e-2 the cuBLAS dense linear is held to. Each cuBLAS mode in turn. */
static void test_grouped_tc(int E, int in, int out, int with_bias) {
  int *off = malloc(sizeof(int) * (E + 1)), rows = 0;
  off[0] = 0;
  for (int e = 0; e < E; e++) {
    int cnt = e % 3 == 1 ? 0 : 1 + (int)((ct_rand() + 1) * 0.5f * 40);
    off[e + 1] = off[e] + cnt;
  }
  rows = off[E];
  size_t xe = (size_t)rows * in, ye = (size_t)rows * out, we = (size_t)E * out * in;
  float *x = ct_randv(xe, 1), *w = ct_randv(we, 0.5f), *b = with_bias ? ct_randv((size_t)E * out, 1) : NULL;
  uint16_t *wb = ct_bf16(w, we);
  float *xr = malloc(sizeof(float) * xe), *ref = malloc(sizeof(float) * ye), *refb = malloc(sizeof(float) * ye),
        *own = malloc(sizeof(float) * ye), *got = malloc(sizeof(float) * ye);
  for (size_t i = 0; i < xe; i++) xr[i] = krn_bf16_to_f32(krn_f32_to_bf16(x[i]));
  for (int e = 0; e < E; e++) {
    int r0 = off[e], nr = off[e + 1] - r0;
    if (!nr) continue;
    const float *we_ = w + (size_t)e * out * in, *be = b ? b + (size_t)e * out : NULL;
    R->matmul(ref + (size_t)r0 * out, x + (size_t)r0 * in, we_, be, nr, in, out);
    R->matmul(refb + (size_t)r0 * out, xr + (size_t)r0 * in, we_, be, nr, in, out);
  }
  float *dx = ct_up(C, x, sizeof(float) * xe), *dy = ct_up(C, NULL, sizeof(float) * ye),
        *db = b ? ct_up(C, b, sizeof(float) * E * out) : NULL;
  uint16_t *dw = ct_up(C, wb, sizeof(uint16_t) * we), *dxb = ct_up(C, NULL, sizeof(uint16_t) * xe);
  int *doff = ct_up(C, off, sizeof(int) * (E + 1));
  CHECK(krn_cuda_grouped_linear(C, dy, dx, dw, (size_t)out * in, db, doff, NULL, E, rows, in, out, KRN_LIN_TILED) == 0);
  ct_down(C, own, dy, sizeof(float) * ye);
  int modes[3] = {KRN_TC_AUTO, KRN_TC_GROUPED, KRN_TC_PER_GROUP};
  const char *names[3] = {"auto", "grouped", "per-group"};
  for (int i = 0; i < 3; i++) {
    krn_cuda_memset(C, dy, 0xff, sizeof(float) * ye);   /* NaN: every row of a group must be written */
    int rc = krn_cuda_grouped_linear_tc(C, dy, dx, dxb, dw, (size_t)out * in, db, off, E, in, out, modes[i]);
    if (rc && modes[i] == KRN_TC_GROUPED && strstr(krn_cuda_last_error(), "cuBLAS")) {
      printf("grouped-tc grouped: REFUSED by this cuBLAS (%s); auto uses per-group calls\n", krn_cuda_last_error());
      continue;
    }
    CHECKF(rc == 0, "grouped tc %s: %s", names[i], krn_cuda_last_error());
    if (rc) continue;
    ct_down(C, got, dy, sizeof(float) * ye);
    double eb = ct_relmax(got, refb, ye), er = ct_relmax(got, ref, ye), eo = ct_relmax(got, own, ye);
    printf("grouped-tc %-9s E=%d rows=%d in=%d out=%d bias=%d: rel err vs bf16-x ref %.2e (tol 5e-4), vs f32 ref %.2e, "
           "vs own tiled %.2e (tol 1e-2)\n", names[i], E, rows, in, out, with_bias, eb, er, eo);
    CHECKF(eb < 5e-4, "%s vs bf16-x ref %g", names[i], eb);
    CHECKF(er < 1e-2 && eo < 1e-2, "%s vs f32 %g / own %g", names[i], er, eo);
  }
  /* host offsets are validated */
  off[1] = off[0] - 1;
  CHECK(krn_cuda_grouped_linear_tc(C, dy, dx, dxb, dw, (size_t)out * in, db, off, E, in, out, KRN_TC_AUTO) != 0);
  krn_cuda_free(dx); krn_cuda_free(dy); krn_cuda_free(db); krn_cuda_free(dw); krn_cuda_free(dxb); krn_cuda_free(doff);
  free(off); free(x); free(w); free(b); free(wb); free(xr); free(ref); free(refb); free(own); free(got);
}

static void test_small_ops(void) {
  int n = 9, dim = 70, V = 50;
  /* embed */
  float *emb = ct_randv((size_t)V * dim, 1);
  uint16_t *eb = ct_bf16(emb, (size_t)V * dim);
  int ids[9] = {3, 0, 49, 7, 7, 12, 30, 1, 44};
  uint16_t *deb = ct_up(C, eb, sizeof(uint16_t) * V * dim);
  int *dids = ct_up(C, ids, sizeof ids);
  float *dx = ct_up(C, NULL, sizeof(float) * n * dim), *got = malloc(sizeof(float) * n * dim);
  CHECK(krn_cuda_embed(C, dx, deb, dids, n, dim) == 0);
  ct_down(C, got, dx, sizeof(float) * n * dim);
  int ok = 1;
  for (int t = 0; t < n; t++)
    for (int d = 0; d < dim; d++) ok &= got[t * dim + d] == emb[ids[t] * dim + d];
  CHECK(ok);
  /* swiglu / add_rows / rowdot_sigmoid / clamp / bias */
  float *gu = ct_randv((size_t)n * 2 * dim, 3), *ref = malloc(sizeof(float) * n * dim);
  for (int t = 0; t < n; t++) R->swiglu(ref + t * dim, gu + (size_t)t * 2 * dim, gu + (size_t)t * 2 * dim + dim, (size_t)dim);
  float *dgu = ct_up(C, gu, sizeof(float) * n * 2 * dim);
  CHECK(krn_cuda_swiglu(C, dx, dgu, n, NULL, dim) == 0);
  ct_down(C, got, dx, sizeof(float) * n * dim);
  double e = ct_relmax(got, ref, (size_t)n * dim);
  printf("swiglu: rel err %.2e\n", e);
  CHECK(e < 1e-5);
  float *y = ct_randv((size_t)n * dim, 1), *w = ct_randv(dim, 1), s[9], sref[9];
  for (int t = 0; t < n; t++) {
    double z = 0;
    for (int d = 0; d < dim; d++) z += (double)y[t * dim + d] * w[d];
    sref[t] = (float)(1.0 / (1.0 + exp(-z)));
  }
  float *dy = ct_up(C, y, sizeof(float) * n * dim), *dw = ct_up(C, w, sizeof(float) * dim), *ds = ct_up(C, NULL, sizeof s);
  CHECK(krn_cuda_rowdot_sigmoid(C, ds, dy, dw, n, dim) == 0);
  ct_down(C, s, ds, sizeof s);
  CHECK(ct_absmax(s, sref, 9) < 1e-6);
  CHECK(krn_cuda_add_rows(C, dx, dy, ds, n, dim) == 0);
  for (int t = 0; t < n; t++) for (int d = 0; d < dim; d++) ref[t * dim + d] += sref[t] * y[t * dim + d];
  CHECK(krn_cuda_add_bias(C, dx, dw, n, dim) == 0);
  for (int t = 0; t < n; t++) for (int d = 0; d < dim; d++) ref[t * dim + d] += w[d];
  CHECK(krn_cuda_clamp(C, dx, (size_t)n * dim, 0.5f) == 0);
  for (int i = 0; i < n * dim; i++) ref[i] = ref[i] > 0.5f ? 0.5f : ref[i] < -0.5f ? -0.5f : ref[i];
  ct_down(C, got, dx, sizeof(float) * n * dim);
  e = ct_absmax(got, ref, (size_t)n * dim);
  printf("add_rows + add_bias + clamp: abs err %.2e\n", e);
  CHECK(e < 1e-5);
  void *dp[] = {deb, dids, dx, dgu, dy, dw, ds};
  for (size_t i = 0; i < sizeof dp / sizeof dp[0]; i++) krn_cuda_free(dp[i]);
  free(emb); free(eb); free(got); free(gu); free(ref); free(y); free(w);
}

static void test_sampling(void) {
  int n = 4, V = 5000;
  float *z = ct_randv((size_t)n * V, 5);
  z[1 * V + 17] = 9; z[1 * V + 4000] = 9;   /* tie: the lower index wins */
  z[2 * V + 4999] = 11;
  z[3 * V + 0] = 12;
  float *dz = ct_up(C, z, sizeof(float) * n * V);
  int *dout = ct_up(C, NULL, sizeof(int) * n), got[4];
  CHECK(krn_cuda_argmax(C, dout, dz, n, V) == 0);
  ct_down(C, got, dout, sizeof got);
  for (int t = 0; t < n; t++) {
    int best = 0;
    for (int i = 1; i < V; i++) if (z[t * V + i] > z[t * V + best]) best = i;
    CHECKF(got[t] == best, "row %d: %d vs %d", t, got[t], best);
  }
  /* temperature sampling: the pick's CDF interval must contain r (up to float rounding) */
  float T = 0.7f;
  double mx = -INFINITY, tot = 0;
  for (int i = 0; i < V; i++) if (z[i] > mx) mx = z[i];
  for (int i = 0; i < V; i++) tot += exp((z[i] - mx) / T);
  for (int rep = 0; rep < 20; rep++) {
    float r = (float)(rep + 0.5) / 20.0f;
    int pick = -1;
    CHECK(krn_cuda_sample(C, dout, dz, V, T, r) == 0);
    ct_down(C, &pick, dout, sizeof(int));
    double lo = 0;
    for (int i = 0; i < pick; i++) lo += exp((z[i] - mx) / T);
    double hi = lo + (pick >= 0 && pick < V ? exp((z[pick] - mx) / T) : 0);
    CHECKF(pick >= 0 && pick < V && lo / tot <= r + 1e-4 && hi / tot >= r - 1e-4, "r=%g pick=%d cdf [%g,%g]", r, pick, lo / tot, hi / tot);
  }
  krn_cuda_free(dz); krn_cuda_free(dout);
  free(z);
}

int main(void) {
  ct_need_device();
  R = krn_ref_backend();
  REQUIRE(krn_cuda_ctx_create(&C, 0, (size_t)1 << 22) == 0);
  test_rmsnorm();
  test_rope(0, 64);
  test_rope(1, 64);
  test_rope(0, 32);   /* partial rotation */
  test_attention(7, 5, 4, 2, 48, 48, 0, 0);     /* tiny-mixtral shape, continuing a cache */
  test_attention(1, 40, 8, 2, 128, 128, 0, 0);  /* decode */
  test_attention(200, 0, 4, 4, 64, 64, 0, 0);   /* > one 128-key chunk */
  test_attention(1, 300, 4, 1, 64, 64, 0, 0);   /* long decode, MQA */
  test_attention(33, 100, 4, 2, 64, 32, 16, 1); /* window + sinks + v_dim != qk_dim */
  test_attention(3, 0, 2, 1, 256, 256, 0, 0);   /* the largest head dim */
  test_linear(1, 192, 77, 0);
  test_linear(3, 100, 65, 1);     /* in % 8 != 0: scalar GEMV path */
  test_linear(8, 512, 300, 1);
  test_linear(37, 192, 130, 0);
  test_linear(130, 256, 96, 1);
  test_router(ENG_ROUTER_SOFTMAX_TOPK, 8, 2, 1, 1, 1, 1.0f);     /* Mixtral, Qwen3-MoE */
  test_router(ENG_ROUTER_SOFTMAX_TOPK, 60, 4, 0, 1, 1, 1.0f);    /* Qwen2-MoE, OLMoE (64/8) */
  test_router(ENG_ROUTER_GROUP_LIMITED, 64, 6, 0, 8, 3, 16.0f);  /* DeepSeek-V2 */
  test_router(ENG_ROUTER_SIGMOID_GROUP, 256, 8, 1, 8, 4, 2.5f);  /* DeepSeek-V3 */
  test_router(ENG_ROUTER_TOPK_SOFTMAX, 32, 4, 1, 1, 1, 1.0f);    /* gpt-oss */
  test_moe(1, 8, 2, 192, 128, KRN_LIN_GEMV, 0);
  test_moe(5, 16, 4, 96, 40, KRN_LIN_GEMV, 0);
  test_moe(70, 8, 2, 192, 128, KRN_LIN_TILED, 0);
  test_moe(150, 60, 4, 72, 36, KRN_LIN_TILED, 0);
  test_moe(3, 8, 2, 96, 64, KRN_LIN_GEMV, 1);     /* gpt-oss experts, decode */
  test_moe(80, 32, 4, 64, 48, KRN_LIN_TILED, 1);  /* gpt-oss experts, prefill */
  test_grouped_tc(8, 192, 256, 0);    /* gate_up-like: out = 2I */
  test_grouped_tc(12, 128, 96, 1);    /* down-like with expert biases (gpt-oss) */
  test_small_ops();
  test_sampling();
  krn_cuda_ctx_destroy(C);
  return tst_done();
}
