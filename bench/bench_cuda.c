/* bench_cuda.c — CUDA micro-benchmarks (llm.c style, one line per kernel): time per call
 * (median of 20 after warm-up, CUDA events) and achieved bandwidth against the device's
 * peak (memory clock x bus width) and a measured device-to-device copy, or TFLOP/s for the
 * compute-bound GEMMs. With a model folder argument it also runs the GPU engine: prefill
 * and decode tokens/s and the decode share of the bandwidth roofline (bytes of the weights
 * a decode step reads: attention, k routed + shared experts, router, lm_head), at every
 * record level (off, counts, topk, full: the probe overhead, trace into $MOESCOPE_TMP), then
 * once more per routed-expert GEMM path (own, cublas: tensor cores; the kernel lines time
 * krn_cuda_grouped_linear_tc in its three modes, TFLOP/s at 512 tokens x k=8).
 * usage: bench_cuda [MODEL_DIR [PREFILL_TOKENS [DECODE_TOKENS]]]. Exit 77 without a device. */
#include "engine/eng_cuda.h"
#include "engine/eng_model.h"
#include "probes/prb_sink.h"
#include "tests/gpu/cuda_tst.h"

#include <string.h>

static krn_cuda_ctx *C;
static void *E0, *E1;
static double peak_bw, copy_bw;

#define TIME_MS(expr, out) do {                                                      \
    for (int w_ = 0; w_ < 3; w_++) if ((expr) != 0) { fprintf(stderr, "%s\n", krn_cuda_last_error()); exit(1); } \
    float ts_[20];                                                                   \
    for (int r_ = 0; r_ < 20; r_++) {                                                \
      krn_cuda_event_record(C, E0); (void)(expr); krn_cuda_event_record(C, E1);      \
      if (krn_cuda_sync(C)) { fprintf(stderr, "%s\n", krn_cuda_last_error()); exit(1); } \
      krn_cuda_event_elapsed_ms(E0, E1, &ts_[r_]);                                   \
    }                                                                                \
    for (int i_ = 0; i_ < 20; i_++) for (int j_ = i_ + 1; j_ < 20; j_++) if (ts_[j_] < ts_[i_]) { float t_ = ts_[i_]; ts_[i_] = ts_[j_]; ts_[j_] = t_; } \
    (out) = ts_[10];                                                                 \
  } while (0)

static void line_bw(const char *name, double ms, double bytes) {
  double bw = bytes / (ms * 1e-3);
  printf("%-44s %9.3f ms %9.1f GB/s %6.1f%% of peak %6.1f%% of copy\n", name, ms, bw / 1e9,
         peak_bw > 0 ? 100 * bw / peak_bw : 0, copy_bw > 0 ? 100 * bw / copy_bw : 0);
}
static void line_flops(const char *name, double ms, double flops, double bytes) {
  printf("%-44s %9.3f ms %9.2f TFLOP/s %9.1f GB/s\n", name, ms, flops / (ms * 1e-3) / 1e12, bytes / (ms * 1e-3) / 1e9);
}

static void *dev_rand(size_t n, float scale) {
  float *h = ct_randv(n, scale);
  void *d = ct_up(C, h, n * sizeof(float));
  free(h);
  return d;
}
static uint16_t *dev_rand_bf16(size_t n, float scale) {
  float *h = ct_randv(n, scale);
  uint16_t *b = ct_bf16(h, n);
  uint16_t *d = ct_up(C, b, n * 2);
  free(h); free(b);
  return d;
}

static void kernels(void) {
  /* memcpy D2D: read + write */
  size_t cb = (size_t)1 << 30;
  void *a = ct_up(C, NULL, cb), *b = ct_up(C, NULL, cb);
  float ms;
  TIME_MS(krn_cuda_d2d(C, b, a, cb), ms);
  copy_bw = 2.0 * cb / (ms * 1e-3);
  printf("%-44s %9.3f ms %9.1f GB/s (read + write)\n", "memcpy D2D 1 GiB", ms, copy_bw / 1e9);
  krn_cuda_free(a); krn_cuda_free(b);

  int H = 4096, O = 14336;
  uint16_t *W = dev_rand_bf16((size_t)O * H, 0.02f);
  float *x = dev_rand((size_t)512 * 14336, 1), *y = dev_rand((size_t)512 * 14336, 1);
  TIME_MS(krn_cuda_linear(C, y, x, W, NULL, 1, H, O, KRN_LIN_GEMV), ms);
  line_bw("gemv bf16 1x4096 -> 14336 (decode)", ms, (double)O * H * 2);
  TIME_MS(krn_cuda_linear(C, y, x, W, NULL, 8, H, O, KRN_LIN_GEMV), ms);
  line_bw("gemv bf16 8x4096 -> 14336", ms, (double)O * H * 2);
  TIME_MS(krn_cuda_linear(C, y, x, W, NULL, 512, H, O, KRN_LIN_CUBLAS), ms);
  line_flops("cublasGemmEx bf16 512x4096 -> 14336", ms, 2.0 * 512 * H * O, (double)O * H * 2);
  TIME_MS(krn_cuda_linear(C, y, x, W, NULL, 512, H, O, KRN_LIN_TILED), ms);
  line_flops("tiled f32-FMA 512x4096 -> 14336", ms, 2.0 * 512 * H * O, (double)O * H * 2);
  krn_cuda_free(W);

  /* experts: E = 64, k = 8, H = 2048, I = 1408 (Qwen2-MoE-like) */
  int E = 64, k = 8, Hd = 2048, I = 1408, n = 512;
  uint16_t *W13 = dev_rand_bf16((size_t)E * 2 * I * Hd, 0.02f);
  int *ex = malloc(sizeof(int) * n * k);
  for (int t = 0; t < n; t++) for (int j = 0; j < k; j++) ex[t * k + j] = (t * 7 + j * 8 + (t / 8)) % E;
  for (int t = 0; t < n; t++) for (int j = 0; j < k; j++) ex[t * k + j] = (ex[t * k] + j) % E;   /* distinct */
  int *dex = ct_up(C, ex, sizeof(int) * n * k), *cnt = ct_up(C, NULL, 4 * E), *off = ct_up(C, NULL, 4 * (E + 1)),
      *rt = ct_up(C, NULL, 4 * n * k), *re = ct_up(C, NULL, 4 * n * k), *sr = ct_up(C, NULL, 4 * n * k);
  float *xin = dev_rand((size_t)n * k * Hd, 1), *gu = dev_rand((size_t)n * k * 2 * I, 1);
  TIME_MS(krn_cuda_moe_permute(C, dex, 1, k, E, cnt, off, rt, re, sr), ms);
  printf("%-44s %9.3f ms\n", "moe_permute 1 token, E=64 k=8", ms);
  TIME_MS(krn_cuda_grouped_linear(C, gu, xin, W13, (size_t)2 * I * Hd, NULL, off, re, E, k, Hd, 2 * I, KRN_LIN_GEMV), ms);
  line_bw("grouped gemv 8 experts 2048 -> 2816 (decode)", ms, (double)k * 2 * I * Hd * 2);
  TIME_MS(krn_cuda_moe_permute(C, dex, n, k, E, cnt, off, rt, re, sr), ms);
  printf("%-44s %9.3f ms\n", "moe_permute 512 tokens, E=64 k=8", ms);
  TIME_MS(krn_cuda_grouped_linear(C, gu, xin, W13, (size_t)2 * I * Hd, NULL, off, re, E, n * k, Hd, 2 * I, KRN_LIN_TILED), ms);
  line_flops("grouped tiled 512 tok x k=8, 2048 -> 2816", ms, 2.0 * n * k * Hd * 2 * I, (double)E * 2 * I * Hd * 2);
  {   /* the same expert GEMM on tensor cores (--expert-gemm cublas): host offsets, BF16 x */
    int *hoff = malloc(sizeof(int) * (E + 1));
    uint16_t *xbf = ct_up(C, NULL, sizeof(uint16_t) * (size_t)n * k * Hd);
    ct_down(C, hoff, off, sizeof(int) * (E + 1));
    int modes[3] = {KRN_TC_AUTO, KRN_TC_GROUPED, KRN_TC_PER_GROUP};
    const char *names[3] = {"grouped cublas auto 512 tok x k=8", "grouped cublas GroupedBatchedEx 512x8",
                            "grouped cublas per-expert GemmEx 512x8"};
    for (int i = 0; i < 3; i++) {
      if (krn_cuda_grouped_linear_tc(C, gu, xin, xbf, W13, (size_t)2 * I * Hd, NULL, hoff, E, Hd, 2 * I, modes[i]) ||
          krn_cuda_sync(C)) {
        printf("%-44s refused: %s\n", names[i], krn_cuda_last_error());
        continue;
      }
      TIME_MS(krn_cuda_grouped_linear_tc(C, gu, xin, xbf, W13, (size_t)2 * I * Hd, NULL, hoff, E, Hd, 2 * I, modes[i]), ms);
      line_flops(names[i], ms, 2.0 * n * k * Hd * 2 * I, (double)E * 2 * I * Hd * 2);
    }
    krn_cuda_free(xbf);
    free(hoff);
  }
  TIME_MS(krn_cuda_gather_rows(C, xin, x, rt, off + E, n * k, Hd), ms);
  line_bw("gather 4096 rows x 2048", ms, 2.0 * n * k * Hd * 4);
  TIME_MS(krn_cuda_moe_combine(C, y, xin, sr, x, n, k, Hd), ms);
  line_bw("combine 512 tokens x k=8 x 2048", ms, (double)n * k * Hd * 4 + 2.0 * n * Hd * 4);
  /* router */
  krn_cuda_router r = {KRN_ROUTE_SOFTMAX_TOPK, E, k, 0, 1, 1, E, 1.0f};
  float *lg = dev_rand((size_t)n * E, 3), *pr = dev_rand((size_t)n * E, 1), *w = dev_rand((size_t)n * k, 1),
        *scr = dev_rand((size_t)n * (E + 1), 1);
  TIME_MS(krn_cuda_route(C, &r, lg, NULL, n, pr, dex, w, scr), ms);
  printf("%-44s %9.3f ms\n", "router softmax top-8 of 64, 512 tokens", ms);
  krn_cuda_free(W13); krn_cuda_free(dex); krn_cuda_free(cnt); krn_cuda_free(off); krn_cuda_free(rt); krn_cuda_free(re);
  krn_cuda_free(sr); krn_cuda_free(xin); krn_cuda_free(gu); krn_cuda_free(lg); krn_cuda_free(pr); krn_cuda_free(w);
  krn_cuda_free(scr); free(ex);

  /* attention */
  int nh = 32, nkv = 8, hd = 128, ctx = 4096;
  float *q = dev_rand((size_t)512 * nh * hd, 1), *kc = dev_rand((size_t)ctx * nkv * hd, 1), *vc = dev_rand((size_t)ctx * nkv * hd, 1),
        *o = dev_rand((size_t)512 * nh * hd, 1);
  TIME_MS(krn_cuda_attention(C, o, q, kc, vc, 1, ctx - 1, nh, nkv, hd, hd, 0.088f, 0, NULL, 2), ms);
  line_bw("attention decode ctx 4096, 32/8 heads x 128", ms, 2.0 * ctx * nkv * hd * 4);
  TIME_MS(krn_cuda_attention(C, o, q, kc, vc, 512, 0, nh, nkv, hd, hd, 0.088f, 0, NULL, 1), ms);
  line_flops("attention prefill 512 tokens, 32 heads x 128", ms, 2.0 * 2 * nh * hd * (512.0 * 513 / 2), 0);
  float *nw = dev_rand(4096, 1);
  TIME_MS(krn_cuda_rmsnorm(C, y, x, nw, 512, 4096, 1e-5f), ms);
  line_bw("rmsnorm 512 x 4096", ms, 2.0 * 512 * 4096 * 4);
  int *am = ct_up(C, NULL, 4 * 8);
  TIME_MS(krn_cuda_argmax(C, am, x, 1, 151936), ms);
  line_bw("argmax 1 x 151936", ms, 151936.0 * 4);
  krn_cuda_free(q); krn_cuda_free(kc); krn_cuda_free(vc); krn_cuda_free(o); krn_cuda_free(nw); krn_cuda_free(am);
  krn_cuda_free(x); krn_cuda_free(y);
}

/* One record level: prefill + decode, best of 3; the trace goes to a scratch DB. */
static int model_level(const eng_model *m, int level, int expert_gemm, const char *db, int n_pre, int n_dec,
                       double *tp, double *td, char *dev, size_t devlen) {
  char err[1024];
  eng_policy *pol = NULL;
  if (eng_policy_create_cfg(&pol, "native", &m->cfg.router, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
  prb_sink *sink = NULL;
  prb_probe probe = prb_probe_none();
  if (level > PRB_LEVEL_OFF) {
    int64_t run_id;
    prb_run_info ri = {m->dir, m->sha256, m->cfg.model_type, pol->spec, "cuda", m->dtype, "bench_cuda",
                       m->cfg.n_layers, m->cfg.n_experts, m->cfg.top_k, m->cfg.n_shared_experts, 1, level};
    if (prb_sink_open(&sink, db, 0, err, sizeof err) || prb_sink_begin_run(sink, &ri, &run_id, err, sizeof err)) {
      fprintf(stderr, "%s\n", err);
      return 1;
    }
    probe = prb_sink_probe(sink, level);
  }
  eng_cuda_ctx *c = NULL;
  if (eng_cuda_ctx_init(&c, m, pol, probe, n_pre + n_dec + 1, n_pre, err, sizeof err)) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  if (expert_gemm >= 0 && eng_cuda_set_expert_gemm(c, expert_gemm, err, sizeof err)) {
    fprintf(stderr, "%s\n", err);
    eng_cuda_ctx_free(c);
    return 1;
  }
  snprintf(dev, devlen, "%s, %.1f MB of weights", eng_cuda_device_name(c), eng_cuda_weight_bytes(c) / 1e6);
  int V = m->cfg.vocab, *ids = malloc(sizeof(int) * (size_t)n_pre);
  float *logits = malloc(sizeof(float) * (size_t)V);
  for (int i = 0; i < n_pre; i++) ids[i] = (int)(((unsigned)i * 2654435761u >> 7) % (unsigned)V);
  double best_p = 1e30, best_d = 1e30;
  int rc = 0;
  for (int rep = 0; rep < 3 && rc == 0; rep++) {
    eng_cuda_ctx_reset(c);
    uint64_t t0 = prb_now_ns();
    if (eng_cuda_forward(c, ids, n_pre, ENG_LOGITS_LAST, logits, rep, 0, err, sizeof err) < 0) { rc = 1; break; }
    uint64_t t1 = prb_now_ns();
    for (int i = 0; i < n_dec && rc == 0; i++)
      if (eng_cuda_forward(c, &ids[i % n_pre], 1, ENG_LOGITS_LAST, logits, rep, n_pre + i, err, sizeof err) < 0) rc = 1;
    uint64_t t2 = prb_now_ns();
    if ((t1 - t0) * 1e-9 < best_p) best_p = (t1 - t0) * 1e-9;
    if ((t2 - t1) * 1e-9 < best_d) best_d = (t2 - t1) * 1e-9;
  }
  if (rc) fprintf(stderr, "%s\n", err);
  *tp = n_pre / best_p;
  *td = n_dec / best_d;
  free(ids); free(logits);
  eng_cuda_ctx_free(c);
  if (sink && prb_sink_close(sink, err, sizeof err)) { fprintf(stderr, "%s\n", err); rc = 1; }
  eng_policy_free(pol);
  return rc;
}

static int model(const char *dir, int n_pre, int n_dec) {
  eng_model m;
  char err[1024], dev[512] = "", db[1100];
  if (eng_model_load(&m, dir, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
  const char *tmp = getenv("MOESCOPE_TMP");
  snprintf(db, sizeof db, "%s/bench_cuda_trace.db", tmp && *tmp ? tmp : "/tmp");
  const eng_config *g = &m.cfg;
  /* BF16 bytes a decode step reads: the active parameters minus the embedding table (one
   * row per token) when the lm_head is a separate matrix */
  double bytes = 2.0 * ((double)m.n_active_params - (double)g->vocab * g->hidden * (m.lm_head.data ? 1 : 0));
  printf("model %s (%s, %.3f B params, %.3f B active)\n", dir, g->model_type, m.n_params / 1e9, m.n_active_params / 1e9);
  double tp0 = 0, td0 = 0;
  int rc = 0;
  for (int level = PRB_LEVEL_OFF; level <= PRB_LEVEL_FULL && rc == 0; level++) {
    double tp, td;
    if (model_level(&m, level, -1, db, n_pre, n_dec, &tp, &td, dev, sizeof dev)) { rc = 1; break; }
    if (level == PRB_LEVEL_OFF) { tp0 = tp; td0 = td; printf("  on %s\n", dev); }
    printf("  record %-6s prefill %d tok: %10.1f tok/s (%+5.1f%%)  decode %d tok: %8.1f tok/s (%+5.1f%%), "
           "%.1f GB/s = %.1f%% of peak, %.1f%% of copy bw\n",
           prb_level_name(level), n_pre, tp, 100 * (tp0 / tp - 1), n_dec, td, 100 * (td0 / td - 1), bytes * td / 1e9,
           peak_bw > 0 ? 100 * bytes * td / peak_bw : 0, copy_bw > 0 ? 100 * bytes * td / copy_bw : 0);
  }
  printf("  (percentages in brackets: time overhead against record level off)\n");
  const char *eg = getenv("MOESCOPE_EXPERT_GEMM");
  for (int mode = ENG_EXPERT_GEMM_OWN; mode <= ENG_EXPERT_GEMM_CUBLAS && rc == 0; mode++) {   /* both expert GEMM paths */
    double tp, td;
    if (model_level(&m, PRB_LEVEL_OFF, mode, db, n_pre, n_dec, &tp, &td, dev, sizeof dev)) { rc = 1; break; }
    printf("  expert-gemm %-6s record off: prefill %d tok: %10.1f tok/s (%+5.1f%% vs the run above, expert GEMM %s)  "
           "decode %d tok: %8.1f tok/s\n", eng_cuda_expert_gemm_name(mode), n_pre, tp, 100 * (tp0 / tp - 1),
           eg && *eg ? eg : "own", n_dec, td);
  }
  remove(db);
  eng_model_free(&m);
  return rc;
}

int main(int argc, char **argv) {
  ct_need_device();
  char name[256];
  size_t mem = 0;
  krn_cuda_device_info(0, name, sizeof name, &mem, &peak_bw);
  printf("%s: %.1f GB, peak DRAM bandwidth %.0f GB/s (memory clock x bus width)\n", name, mem / 1e9, peak_bw / 1e9);
  if (krn_cuda_ctx_create(&C, 0, (size_t)512 * 14336) || krn_cuda_event_create(&E0) || krn_cuda_event_create(&E1)) {
    fprintf(stderr, "%s\n", krn_cuda_last_error());
    return 1;
  }
  kernels();
  int rc = 0;
  if (argc > 1) rc = model(argv[1], argc > 2 ? atoi(argv[2]) : 256, argc > 3 ? atoi(argv[3]) : 64);
  krn_cuda_event_destroy(E0);
  krn_cuda_event_destroy(E1);
  krn_cuda_ctx_destroy(C);
  return rc;
}
