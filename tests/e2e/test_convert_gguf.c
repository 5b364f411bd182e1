/* test_convert_gguf.c — `moescope convert` -> GGUF -> eng_gguf_model_source, for the
 * shipped trained model (models/tiny-mixtral, BF16) and the HF random fixture (F32, classic
 * and packed expert layouts), types f16, bf16, q8_0:
 *  - every HF tensor comes back under its own name and shape; values exact where the type
 *    holds them exactly (BF16 source -> bf16/f16 file; F32 source -> f32), within the
 *    rounding of the type otherwise, and for Q8_0 within the per-block bound
 *    d/2 + 127*|d - f16(d)| <= max|x|/127 * (1/2 + 127*2^-11) (d = max|x|/127 is the scale
 *    ggml computes; rounding x/d to an integer errs by <= d/2, storing d as f16 moves each
 *    q*d by at most 127 * d * 2^-11);
 *  - the config.json text built from the GGUF metadata loads and equals the original;
 *  - the same model loaded from safetensors and from the GGUF (dequantised into a
 *    safetensors folder and loaded by eng_model_load) gives the same logits: identical for
 *    exact types, and identical routing (all top-k sets) for f16/bf16; Q8_0 within 0.05 of
 *    the logit range (measured ~1e-2 relative; see the report printed).
 * The Q8_0 bytes were also checked equal to llama.cpp's gguf-py quantizer (tools/gguf-check.py). */
#include <cjson/cJSON.h>

#include "engine/eng_forward.h"
#include "engine/eng_gguf.h"
#include "engine/eng_st_write.h"
#include "tests/tst.h"
#include "tests/util/tst_json.h"
#include "tests/util/tst_run.h"

#include <sys/stat.h>

static double worst_q8_ratio = 0; /* max over blocks of err / (max|x|/127) */

/* Compares n floats a (source) with b (from GGUF) under the type's bound. */
static int compare(const char *name, const float *a, const float *b, int64_t n, int64_t row, const char *type,
                   int src_bf16) {
  double maxd = 0;
  int bad = 0;
  if (!strcmp(type, "q8_0") && row % 32 == 0) {
    for (int64_t blk = 0; blk < n / 32; blk++) {
      double amax = 0, e = 0;
      for (int j = 0; j < 32; j++) amax = fmax(amax, fabs(a[blk * 32 + j]));
      for (int j = 0; j < 32; j++) e = fmax(e, fabs((double)a[blk * 32 + j] - b[blk * 32 + j]));
      double bound = amax / 127 * (0.5 + 127 * ldexp(1, -11)) + ldexp(1, -24) * 127;
      if (amax > 0 && e / (amax / 127) > worst_q8_ratio) worst_q8_ratio = e / (amax / 127);
      if (e > bound) bad++;
      if (e > maxd) maxd = e;
    }
  } else {
    int exact = !strcmp(type, "f32") || (src_bf16 && !strcmp(type, "bf16"));
    for (int64_t i = 0; i < n; i++) {
      double d = fabs((double)a[i] - b[i]);
      double tol = exact ? 0 : !strcmp(type, "bf16") ? fabs(a[i]) * ldexp(1, -8) : fabs(a[i]) * ldexp(1, -11) + ldexp(1, -25);
      if (d > tol) bad++;
      if (d > maxd) maxd = d;
    }
  }
  CHECKF(bad == 0, "%s (%s): %d values/blocks beyond the bound, max diff %.3g", name, type, bad, maxd);
  return bad;
}

static float *to_f32(const eng_st_tensor *t) {
  float *x = malloc(sizeof(float) * (size_t)eng_st_numel(t));
  REQUIRE(x && eng_st_to_f32(x, t) == 0);
  return x;
}

static void check_tensors(const eng_st_set *src, const eng_st_set *gg, const char *type) {
  int n_checked = 0;
  for (int i = 0; i < src->n_tensors; i++) {
    const eng_st_tensor *s = &src->tensors[i];
    int bf = s->dtype == ENG_DT_BF16;

    if (strstr(s->name, "mlp.experts.gate_up_proj")) {
      int l = -1;
      sscanf(s->name, "model.layers.%d.", &l);
      float *x = to_f32(s);
      int64_t E = s->shape[0], R = s->shape[1] / 2, C = s->shape[2];
      for (int64_t e = 0; e < E; e++)
        for (int h = 0; h < 2; h++) {
          char nm[256];
          snprintf(nm, sizeof nm, "model.layers.%d.block_sparse_moe.experts.%lld.%s.weight", l, (long long)e, h ? "w3" : "w1");
          const eng_st_tensor *g = eng_st_find(gg, nm);
          CHECKF(g && g->ndim == 2 && g->shape[0] == R && g->shape[1] == C, "%s missing or misshapen", nm);
          if (!g) continue;
          float *y = to_f32(g);
          compare(nm, x + (e * 2 * R + h * R) * C, y, R * C, C, type, bf);
          free(y);
          n_checked++;
        }
      free(x);
      continue;
    }
    if (strstr(s->name, "mlp.experts.down_proj")) {
      int l = -1;
      sscanf(s->name, "model.layers.%d.", &l);
      float *x = to_f32(s);
      int64_t E = s->shape[0], R = s->shape[1], C = s->shape[2];
      for (int64_t e = 0; e < E; e++) {
        char nm[256];
        snprintf(nm, sizeof nm, "model.layers.%d.block_sparse_moe.experts.%lld.w2.weight", l, (long long)e);
        const eng_st_tensor *g = eng_st_find(gg, nm);
        CHECKF(g && g->ndim == 2 && g->shape[0] == R && g->shape[1] == C, "%s missing or misshapen", nm);
        if (!g) continue;
        float *y = to_f32(g);
        compare(nm, x + e * R * C, y, R * C, C, type, bf);
        free(y);
        n_checked++;
      }
      free(x);
      continue;
    }
    const char *name = s->name;
    char alt[256];
    if (!eng_st_find(gg, name) && strstr(name, ".mlp.gate.weight")) { /* mixtral router under its classic name */
      int l = -1;
      sscanf(name, "model.layers.%d.", &l);
      snprintf(alt, sizeof alt, "model.layers.%d.block_sparse_moe.gate.weight", l);
      name = alt;
    }
    const eng_st_tensor *g = eng_st_find(gg, name);
    CHECKF(g != NULL, "tensor %s missing from the GGUF set", s->name);
    if (!g) continue;
    int same_shape = g->ndim == s->ndim;
    for (int d = 0; same_shape && d < s->ndim; d++) same_shape = g->shape[d] == s->shape[d];
    CHECKF(same_shape, "tensor %s: shape differs", s->name);
    if (!same_shape) continue;
    float *x = to_f32(s), *y = to_f32(g);
    compare(s->name, x, y, eng_st_numel(s), s->shape[s->ndim - 1], g->dtype == ENG_DT_F32 ? "f32" : type, bf);
    if (g->dtype == ENG_DT_F32) CHECKF(s->ndim == 1 || strstr(s->name, "gate.weight"), "%s kept F32 unexpectedly", s->name);
    free(x); free(y);
    n_checked++;
  }
  CHECK(n_checked > 10);
}

/* Dequantises the GGUF set into dir/model.safetensors (F32) + config.json. */
static void write_dequantised(const eng_st_set *gg, const char *cfg, const char *dir) {
  char err[512];
  mkdir(dir, 0755);
  eng_stw *w = eng_stw_new();
  REQUIRE(w);
  for (int i = 0; i < gg->n_tensors; i++) {
    const eng_st_tensor *t = &gg->tensors[i];
    float *x = to_f32(t);
    REQUIRE(eng_stw_add(w, t->name, ENG_STW_F32, t->ndim, t->shape, x, err, sizeof err) == 0);
    free(x);
  }
  REQUIRE(eng_stw_write_dir(w, dir, err, sizeof err) == 0 || (fprintf(stderr, "%s\n", err), 0));
  eng_stw_free(w);
  char p[4200];
  snprintf(p, sizeof p, "%s/config.json", dir);
  REQUIRE(eng_stw_write_file_atomic(p, cfg, strlen(cfg), err, sizeof err) == 0);
}

typedef struct { float *logits; int *experts; } fwd_out;

/* set != NULL: load through eng_model_load_set (the GGUF set itself, no copy on disk) */
static fwd_out forward_set(const char *dir, const int *ids, int n, eng_st_set *set, const char *cfg) {
  char err[512];
  eng_model m;
  if (set) REQUIRE(eng_model_load_set(&m, dir, cfg, set, err, sizeof err) == 0 || (fprintf(stderr, "%s: %s\n", dir, err), 0));
  else REQUIRE(eng_model_load(&m, dir, err, sizeof err) == 0 || (fprintf(stderr, "%s: %s\n", dir, err), 0));
  eng_policy *pol;
  REQUIRE(eng_policy_create(&pol, "native", m.cfg.n_experts, m.cfg.top_k, 1, err, sizeof err) == 0);
  tst_routes routes;
  prb_probe probe = tst_routes_probe(&routes, m.cfg.n_layers, m.cfg.top_k, m.cfg.n_experts, 64);
  eng_ctx c;
  REQUIRE(eng_ctx_init(&c, &m, krn_ref_backend(), pol, probe, 64, 64, err, sizeof err) == 0);
  fwd_out o;
  o.logits = malloc(sizeof(float) * (size_t)n * m.cfg.vocab);
  REQUIRE(eng_forward(&c, ids, n, ENG_LOGITS_ALL, o.logits, 0, 0, err, sizeof err) >= 0);
  size_t ne = (size_t)m.cfg.n_layers * 64 * m.cfg.top_k;
  o.experts = malloc(sizeof(int) * ne);
  memcpy(o.experts, routes.experts, sizeof(int) * ne);
  /* top-k order may differ between equal-weight ties; sort each k-set */
  for (size_t i = 0; i < ne; i += (size_t)m.cfg.top_k)
    for (int a = 0; a < m.cfg.top_k; a++)
      for (int b = a + 1; b < m.cfg.top_k; b++)
        if (o.experts[i + b] < o.experts[i + a]) { int t = o.experts[i + a]; o.experts[i + a] = o.experts[i + b]; o.experts[i + b] = t; }
  eng_ctx_free(&c);
  tst_routes_free(&routes);
  eng_policy_free(pol);
  eng_model_free(&m);
  return o;
}

static fwd_out forward(const char *dir, const int *ids, int n) { return forward_set(dir, ids, n, NULL, NULL); }

static void check_model(const char *dir, const char *label, const char *type, int vocab, int n_layers, int top_k) {
  char gguf[4096], out[4096], err[512];
  snprintf(gguf, sizeof gguf, "%s/conv_%s_%s.gguf", tst_tmp(), label, type);
  tst_out o;
  int st = tst_sh(&o, "'%s' convert --model '%s' --to gguf --type %s -o '%s'", tst_bin(), dir, type, gguf);
  CHECKF(st == 0, "convert %s %s: %s", label, type, o.err);
  if (st) return;
  eng_st_set src, gg;
  char *cfg = NULL;
  REQUIRE(eng_st_open_dir(&src, dir, err, sizeof err) == 0);
  int rc = eng_gguf_model_source(gguf, &gg, &cfg, err, sizeof err);
  CHECKF(rc == 0, "%s: %s", gguf, err);
  if (rc) { eng_st_close(&src); return; }
  check_tensors(&src, &gg, type);
  /* config from metadata == original */
  snprintf(out, sizeof out, "%s/conv_%s_%s", tst_tmp(), label, type);
  write_dequantised(&gg, cfg, out);
  eng_config a, b;
  char p1[4200], p2[4200];
  snprintf(p1, sizeof p1, "%s/config.json", dir);
  snprintf(p2, sizeof p2, "%s/config.json", out);
  REQUIRE(eng_config_load(&a, p1, err, sizeof err) == 0);
  rc = eng_config_load(&b, p2, err, sizeof err);
  CHECKF(rc == 0, "GGUF config: %s", err);
  if (rc == 0) {
    CHECK(!strcmp(a.model_type, b.model_type) && a.vocab == b.vocab && a.hidden == b.hidden && a.n_layers == b.n_layers);
    CHECK(a.n_heads == b.n_heads && a.n_kv_heads == b.n_kv_heads && a.head_dim == b.head_dim);
    CHECK(a.intermediate == b.intermediate && a.n_experts == b.n_experts && a.top_k == b.top_k);
    CHECK(a.max_pos == b.max_pos && a.rms_eps == b.rms_eps && a.rope_theta == b.rope_theta);
    CHECK(a.tie_embeddings == b.tie_embeddings && a.bos_id == b.bos_id && a.eos_id == b.eos_id);
  }
  /* logits and routing: safetensors vs GGUF */
  int ids[24];
  for (int i = 0; i < 24; i++) ids[i] = (i * 37 + 5) % vocab;
  fwd_out r0 = forward(dir, ids, 24), r1 = forward(out, ids, 24);
  double maxd = 0, lo = 1e30, hi = -1e30;
  for (int i = 0; i < 24 * vocab; i++) {
    maxd = fmax(maxd, fabs((double)r0.logits[i] - r1.logits[i]));
    lo = fmin(lo, r0.logits[i]);
    hi = fmax(hi, r0.logits[i]);
  }
  int nsets = n_layers * 24, diff_sets = 0;
  for (int l = 0; l < n_layers; l++)
    for (int t = 0; t < 24; t++)
      if (memcmp(r0.experts + ((size_t)l * 64 + t) * top_k, r1.experts + ((size_t)l * 64 + t) * top_k, sizeof(int) * top_k))
        diff_sets++;
  printf("%-14s %-5s max|logit(safetensors) - logit(gguf)| = %.3g (logit range %.3g), routing sets differing %d/%d\n",
         label, type, maxd, hi - lo, diff_sets, nsets);
  int src_bf16 = strstr(label, "tiny-mixtral") != NULL;
  if (!strcmp(type, "bf16") && src_bf16) CHECKF(maxd == 0, "bf16 of a BF16 model must give identical logits (%.3g)", maxd);
  if (strcmp(type, "q8_0")) CHECKF(diff_sets == 0, "%s %s: %d routing sets differ", label, type, diff_sets);
  if (!strcmp(type, "f16")) CHECKF(maxd <= 1e-3 * (hi - lo), "%s f16 logits differ by %.3g", label, maxd);
  if (!strcmp(type, "q8_0")) CHECKF(maxd <= 0.05 * (hi - lo), "%s q8_0 logits differ by %.3g (range %.3g)", label, maxd, hi - lo);
  if (strcmp(type, "q8_0")) { /* F16/BF16 tensors load straight from the GGUF mapping too */
    fwd_out r2 = forward_set(gguf, ids, 24, &gg, cfg);
    CHECKF(!memcmp(r1.logits, r2.logits, sizeof(float) * 24 * (size_t)vocab), "%s %s: eng_model_load_set logits differ", label, type);
    free(r2.logits); free(r2.experts);
  }
  free(r0.logits); free(r0.experts); free(r1.logits); free(r1.experts);
  free(cfg);
  eng_st_close(&gg);
  eng_st_close(&src);
  remove(gguf);
}

int main(void) {
  char tiny[4096], hf[4096], packed[4096];
  tst_path(tiny, sizeof tiny, "MOESCOPE_SRC", "models/tiny-mixtral");
  tst_path(hf, sizeof hf, "MOESCOPE_SRC", "tests/fixtures/hf_mixtral_tiny");
  tst_path(packed, sizeof packed, "MOESCOPE_SRC", "tests/fixtures/hf_mixtral_tiny/packed");
  const char *types[3] = {"bf16", "f16", "q8_0"};
  for (int i = 0; i < 3; i++) {
    check_model(tiny, "tiny-mixtral", types[i], 8192, 4, 2);
    check_model(hf, "hf_mixtral", types[i], 48, 2, 2);
    check_model(packed, "hf_packed", types[i], 48, 2, 2);
  }
  printf("Q8_0: worst block error = %.4f * max|x|/127 (bound 0.5 + 127*2^-11 = %.4f)\n", worst_q8_ratio,
         0.5 + 127 * ldexp(1, -11));
  return tst_done();
}
