/* test_kquant_model.c — K-quant GGUF models end to end: `moescope synth` a Mixtral-family
 * model (2 layers, 4 experts, top-2, hidden 256, intermediate 512, F32), `moescope convert`
 * it to q8_0, q6_k, q5_k, q4_k and q4_0, load each GGUF (eng_gguf_model_source +
 * eng_model_load_set: weights stay in the mapping as Q4_K / Q5_K / Q6_K views, embedding
 * rows dequantised per token), run the same 96 tokens through the CPU backend and compare
 * with the F32 safetensors model:
 *  - logits: RMS error over all positions relative to the RMS of the F32 logits. Bounds:
 *    for a K-quant, twice its weight RMS error ratio to Q8_0 (13.4x for Q4_K, 6.6x Q5_K,
 *    3.6x Q6_K on gaussian weights, measured by test_kquant) times Q8_0's measured logit
 *    error, and an absolute cap (Q8_0 0.03, Q6_K 0.06, Q5_K 0.10, Q4_K 0.18, Q4_0 0.25);
 *    errors must grow strictly q8_0 < q6_k < q5_k < q4_k < q4_0 (Q4_K beats Q4_0 at the
 *    same 4.5 bits per weight). Measured: 0.008, 0.032, 0.053, 0.109, 0.127.
 *  - routing: the share of (layer, position) whose top-2 expert set equals the F32
 *    model's, asserted >= 98% Q8_0, 95% Q6_K, 93% Q5_K, 90% Q4_K, 85% Q4_0 (measured 100,
 *    99.5, 99.0, 95.3, 94.3%: a random synth router has small margins, so flips are
 *    expected at 4 bits);
 *  - the file: general.file_type 7 / 18 / 16 / 14 / 2, ffn_down_exps and token_embd stored
 *    as the requested type; a second synth with hidden 288 (a multiple of 32, not of 256)
 *    falls back to Q8_0 for the rows of length 288 while ffn_down's rows of 512 stay Q4_K,
 *    and the mixed model runs. */
#include "engine/eng_forward.h"
#include "engine/eng_gguf.h"
#include "engine/eng_model.h"
#include "tests/tst.h"
#include "tests/util/tst_json.h"
#include "tests/util/tst_run.h"

#define NTOK 96

typedef struct { float *logits; int *experts; int vocab, L, k; } fwd_out;

static fwd_out run(const char *dir, const char *gguf) {
  char err[512];
  eng_model m;
  eng_st_set set;
  char *cfg = NULL;
  if (gguf) {
    REQUIRE(eng_gguf_model_source(gguf, &set, &cfg, err, sizeof err) == 0 || (fprintf(stderr, "%s\n", err), 0));
    REQUIRE(eng_model_load_set(&m, gguf, cfg, &set, err, sizeof err) == 0 || (fprintf(stderr, "%s\n", err), 0));
  } else REQUIRE(eng_model_load(&m, dir, err, sizeof err) == 0 || (fprintf(stderr, "%s\n", err), 0));
  eng_policy *pol;
  REQUIRE(eng_policy_create(&pol, "native", m.cfg.n_experts, m.cfg.top_k, 1, err, sizeof err) == 0);
  tst_routes routes;
  prb_probe probe = tst_routes_probe(&routes, m.cfg.n_layers, m.cfg.top_k, m.cfg.n_experts, NTOK);
  eng_ctx c;
  REQUIRE(eng_ctx_init(&c, &m, krn_cpu_backend(), pol, probe, NTOK, NTOK, err, sizeof err) == 0);
  int ids[NTOK];
  for (int i = 0; i < NTOK; i++) ids[i] = (i * 37 + 11) % m.cfg.vocab;
  fwd_out o = {malloc(sizeof(float) * (size_t)NTOK * m.cfg.vocab), NULL, m.cfg.vocab, m.cfg.n_layers, m.cfg.top_k};
  REQUIRE(o.logits && eng_forward(&c, ids, NTOK, ENG_LOGITS_ALL, o.logits, 0, 0, err, sizeof err) >= 0);
  size_t ne = (size_t)o.L * NTOK * o.k;
  o.experts = malloc(sizeof(int) * ne);
  memcpy(o.experts, routes.experts, sizeof(int) * ne);
  for (size_t i = 0; i < ne; i += (size_t)o.k) /* sets: sort each top-k */
    for (int a = 0; a < o.k; a++)
      for (int b = a + 1; b < o.k; b++)
        if (o.experts[i + b] < o.experts[i + a]) { int t = o.experts[i + a]; o.experts[i + a] = o.experts[i + b]; o.experts[i + b] = t; }
  eng_ctx_free(&c);
  tst_routes_free(&routes);
  eng_policy_free(pol);
  eng_model_free(&m);
  if (gguf) { eng_st_close(&set); free(cfg); }
  return o;
}

static int file_type_of(const char *gguf, const char *tensor, int *ggml_type) {
  eng_gguf g;
  char err[512];
  REQUIRE(eng_gguf_open(&g, gguf, err, sizeof err) == 0);
  int64_t ft = -1;
  eng_gguf_get_int(&g, "general.file_type", &ft);
  const eng_gguf_tensor *t = eng_gguf_find_tensor(&g, tensor);
  *ggml_type = t ? t->ggml_type : -1;
  eng_gguf_close(&g);
  return (int)ft;
}

static void convert(const char *dir, const char *type, char *gguf, size_t n) {
  snprintf(gguf, n, "%s/kq_%d_%s.gguf", tst_tmp(), (int)getpid(), type);
  tst_out o;
  int st = tst_sh(&o, "'%s' convert --model '%s' --type %s -o '%s'", tst_bin(), dir, type, gguf);
  REQUIRE(st == 0 || (fprintf(stderr, "convert %s: %s\n", type, o.err), 0));
}

int main(void) {
  char dir[4096], dir2[4096], gguf[4200];
  snprintf(dir, sizeof dir, "%s/kq_synth_%d", tst_tmp(), (int)getpid());
  snprintf(dir2, sizeof dir2, "%s/kq_synth288_%d", tst_tmp(), (int)getpid());
  tst_out o;
  REQUIRE(tst_sh(&o, "'%s' synth -o '%s' --family mixtral --layers 2 --experts 4 --top-k 2 --hidden 256 "
                 "--intermediate 512 --heads 4 --kv-heads 2 --vocab 512 --seed 11 --dtype f32", tst_bin(), dir) == 0 ||
          (fprintf(stderr, "%s\n", o.err), 0));
  fwd_out ref = run(dir, NULL);
  size_t nl = (size_t)NTOK * ref.vocab, nr = (size_t)ref.L * NTOK;
  double ref_rms = 0;
  for (size_t i = 0; i < nl; i++) ref_rms += (double)ref.logits[i] * ref.logits[i];
  ref_rms = sqrt(ref_rms / nl);

  static const struct { const char *type; int ftype, ggml; double weight_ratio, cap, agree; } T[] = {
    {"q8_0", 7, 8, 1.0, 0.03, 0.98}, {"q6_k", 18, 14, 3.6, 0.06, 0.95}, {"q5_k", 16, 13, 6.6, 0.10, 0.93},
    {"q4_k", 14, 12, 13.4, 0.18, 0.90}, {"q4_0", 2, 2, 16.0, 0.25, 0.85}};
  double q8_err = 0, prev_err = 0;
  for (int k = 0; k < 5; k++) {
    convert(dir, T[k].type, gguf, sizeof gguf);
    int gt, ft = file_type_of(gguf, "blk.0.ffn_down_exps.weight", &gt);
    CHECKF(ft == T[k].ftype && gt == T[k].ggml, "%s: file_type %d (want %d), ffn_down_exps type %d (want %d)",
           T[k].type, ft, T[k].ftype, gt, T[k].ggml);
    file_type_of(gguf, "token_embd.weight", &gt);
    CHECKF(gt == T[k].ggml, "%s: token_embd type %d", T[k].type, gt);
    fwd_out q = run(NULL, gguf);
    double se = 0, mx = 0;
    for (size_t i = 0; i < nl; i++) {
      double d = (double)q.logits[i] - ref.logits[i];
      se += d * d;
      mx = fmax(mx, fabs(d));
    }
    double rel = sqrt(se / nl) / ref_rms;
    int same = 0;
    for (size_t i = 0; i < nr; i++) same += !memcmp(q.experts + i * ref.k, ref.experts + i * ref.k, sizeof(int) * (size_t)ref.k);
    double agree = (double)same / (double)nr;
    if (k == 0) q8_err = rel;
    double bound = k ? fmin(T[k].cap, 2.0 * T[k].weight_ratio * q8_err) : T[k].cap;
    printf("%-5s logits RMS error %.4f of the F32 logit RMS (max abs %.4f; bound %.4f), routing: %d/%zu = %.1f%% "
           "identical top-%d sets\n", T[k].type, rel, mx, bound, same, nr, 100 * agree, ref.k);
    CHECKF(rel <= bound, "%s: logits error %.4f > %.4f", T[k].type, rel, bound);
    CHECKF(agree >= T[k].agree, "%s: routing agreement %.3f < %.2f", T[k].type, agree, T[k].agree);
    CHECKF(rel > prev_err, "%s: logits error %.4f not above the previous (finer) type's %.4f", T[k].type, rel, prev_err);
    prev_err = rel;
    free(q.logits);
    free(q.experts);
    remove(gguf);
  }

  /* fallbacks: rows of 288 -> Q8_0, rows of 512 -> Q4_K */
  REQUIRE(tst_sh(&o, "'%s' synth -o '%s' --family mixtral --layers 1 --experts 2 --top-k 1 --hidden 288 "
                 "--intermediate 512 --heads 4 --kv-heads 2 --vocab 300 --seed 3 --dtype bf16", tst_bin(), dir2) == 0);
  convert(dir2, "q4_k", gguf, sizeof gguf);
  int gt;
  file_type_of(gguf, "blk.0.ffn_gate_exps.weight", &gt);
  CHECKF(gt == 8, "hidden 288: ffn_gate_exps (rows of 288) stored as type %d, want Q8_0", gt);
  file_type_of(gguf, "blk.0.ffn_down_exps.weight", &gt);
  CHECKF(gt == 12, "hidden 288: ffn_down_exps (rows of 512) stored as type %d, want Q4_K", gt);
  fwd_out f = run(NULL, gguf); /* mixed Q4_K / Q8_0 / F32 model runs */
  int finite = 1;
  for (size_t i = 0; i < (size_t)NTOK * f.vocab; i++) finite &= isfinite(f.logits[i]) != 0;
  CHECK(finite);
  free(f.logits);
  free(f.experts);
  remove(gguf);
  free(ref.logits);
  free(ref.experts);
  tst_sh(&o, "rm -rf '%s' '%s'", dir, dir2);
  return tst_done();
}
