/* test_gguf_families.c — `moescope convert --to gguf` round trip for every HF fixture family
 * (tests/fixtures/hf_* holding a config.json), gpt_oss included:
 *  - f32 with moescope.hf_config: `moescope run --dump-logits` (12 positions, past gpt-oss's
 *    sliding window) on the safetensors folder and on the GGUF give byte-identical .npy files;
 *  - f32 with --no-hf-config (only llama.cpp's metadata, as another tool writes it): the same
 *    byte-identical logits, no moescope.hf_config key, the eng_config built from the metadata
 *    equal field for field (whole struct, torch_dtype aside) to the one from config.json, and
 *    exactly the expected moescope.* extra keys (gpt_oss: swiglu_limit 1.0 != llama.cpp's 7;
 *    deepseek_v3: yarn mscale 1.0 != mscale_all_dim 0.8; every other family: none);
 *  - DeepSeek with --split-kv-b (attn_k_b / attn_v_b as newer llama.cpp writes them): the
 *    tensors hold kv_b_proj in llama.cpp's layout element for element, head_count_kv is 1,
 *    no attn_kv_b, and the joined-back model gives byte-identical f32 logits (metadata-only)
 *    and f16 logits within 1e-3 of the range with identical routing;
 *  - gpt_oss: the GGUF tensors are llama.cpp's layout (gate = even columns of gate_up_proj,
 *    up = odd, transposed to [E, out, in]; biases split the same way; down transposed) and the
 *    llama.cpp metadata names (attention.sliding_window, rope.scaling.*, post_attention_norm,
 *    attn_sinks, ffn_gate_inp.bias);
 *  - f16: same routing at every (layer, position) and logits within 1e-3 of the logit range;
 *  - bad inputs are one line, non-zero status, no crash: a synthetic router in metadata-only
 *    mode, a Q8_0 attn_k_b (a synthetic DeepSeek with 64-wide heads, q_lora_rank null), an
 *    attn_k_b without its attn_v_b. */
#include "engine/eng_forward.h"
#include "engine/eng_gguf.h"
#include "tests/tst.h"
#include "tests/util/tst_fixtures.h"
#include "tests/util/tst_json.h"
#include "tests/util/tst_run.h"

#include <sys/stat.h>

#define N_IDS 16
#define CLI_IDS "1,5,9,12,3,7,30,2,44,8,11,40" /* < 48, the smallest fixture vocab */

typedef struct { float *logits; int *experts; int n_layers, top_k, vocab; } fwd_out;

static fwd_out forward(const char *model, const int *ids_mod) {
  char err[512];
  eng_model m;
  int rc = eng_model_load(&m, model, err, sizeof err);
  if (rc) fprintf(stderr, "%s: %s\n", model, err);
  REQUIRE(rc == 0);
  eng_policy *pol;
  REQUIRE(eng_policy_create(&pol, "native", m.cfg.n_experts, m.cfg.top_k, 1, err, sizeof err) == 0);
  tst_routes routes;
  prb_probe probe = tst_routes_probe(&routes, m.cfg.n_layers, m.cfg.top_k, m.cfg.n_experts, 64);
  eng_ctx c;
  REQUIRE(eng_ctx_init(&c, &m, krn_ref_backend(), pol, probe, 64, 64, err, sizeof err) == 0);
  int ids[N_IDS];
  for (int i = 0; i < N_IDS; i++) ids[i] = ids_mod[i] % m.cfg.vocab;
  fwd_out o = {.n_layers = m.cfg.n_layers, .top_k = m.cfg.top_k, .vocab = m.cfg.vocab};
  o.logits = malloc(sizeof(float) * N_IDS * (size_t)m.cfg.vocab);
  REQUIRE(o.logits && eng_forward(&c, ids, N_IDS, ENG_LOGITS_ALL, o.logits, 0, 0, err, sizeof err) >= 0);
  size_t ne = (size_t)m.cfg.n_layers * 64 * m.cfg.top_k;
  o.experts = malloc(sizeof(int) * ne);
  REQUIRE(o.experts);
  memcpy(o.experts, routes.experts, sizeof(int) * ne);
  for (size_t i = 0; i < ne; i += (size_t)o.top_k) /* compare sets: sort each top-k */
    for (int a = 0; a < o.top_k; a++)
      for (int b = a + 1; b < o.top_k; b++)
        if (o.experts[i + b] < o.experts[i + a]) { int t = o.experts[i + a]; o.experts[i + a] = o.experts[i + b]; o.experts[i + b] = t; }
  eng_ctx_free(&c);
  tst_routes_free(&routes);
  eng_policy_free(pol);
  eng_model_free(&m);
  return o;
}

static int files_equal(const char *a, const char *b) {
  FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
  int eq = fa && fb;
  while (eq) {
    int x = fgetc(fa), y = fgetc(fb);
    if (x != y) eq = 0;
    if (x == EOF || y == EOF) break;
  }
  if (fa) fclose(fa);
  if (fb) fclose(fb);
  return eq;
}

static int convert(const char *dir, const char *gguf, const char *type, const char *opts, const char *what) {
  tst_out o;
  int st = tst_sh(&o, "'%s' convert --model '%s' --to gguf --type %s %s -o '%s'", tst_bin(), dir, type, opts, gguf);
  CHECKF(st == 0, "%s: convert %s %s: %s", what, type, opts, o.err);
  return st;
}

/* f32 logits through the CLI: safetensors folder vs GGUF, byte for byte. */
static int cli_identical(const char *dir, const char *gguf, const char *what) {
  char a[4096], b[4096];
  tst_out o;
  snprintf(a, sizeof a, "%s/fam_st.npy", tst_tmp());
  snprintf(b, sizeof b, "%s/fam_gguf.npy", tst_tmp());
  remove(a);
  remove(b);
  int st = tst_sh(&o, "'%s' run --model '%s' --ids " CLI_IDS " --record off --dump-logits '%s' --quiet", tst_bin(), dir, a);
  CHECKF(st == 0, "%s: run safetensors: %s", what, o.err);
  st |= tst_sh(&o, "'%s' run --model '%s' --ids " CLI_IDS " --record off --dump-logits '%s' --quiet", tst_bin(), gguf, b);
  CHECKF(st == 0, "%s: run gguf: %s", what, o.err);
  int same = st == 0 && files_equal(a, b);
  CHECKF(same, "%s: f32 GGUF logits differ from safetensors", what);
  remove(a);
  remove(b);
  return same;
}

/* The moescope.* keys of a GGUF other than hf_config, comma-separated in file order. */
static void moescope_keys(const eng_gguf *g, char *out, size_t cap) {
  out[0] = 0;
  for (uint64_t i = 0; i < g->n_kv; i++)
    if (!strncmp(g->kv[i].key, "moescope.", 9) && strcmp(g->kv[i].key, ENG_GGUF_KEY_HF_CONFIG))
      snprintf(out + strlen(out), cap - strlen(out), "%s%s", out[0] ? "," : "", g->kv[i].key);
}

/* Metadata-only file: no hf_config, the expected extras, eng_config identical. */
static void check_metadata_only(const char *dir, const char *gguf, const char *fam) {
  char err[512], keys[1024], p[4400];
  eng_gguf g;
  REQUIRE(eng_gguf_open(&g, gguf, err, sizeof err) == 0);
  CHECKF(eng_gguf_find(&g, ENG_GGUF_KEY_HF_CONFIG) == NULL, "%s: --no-hf-config still wrote %s", fam, ENG_GGUF_KEY_HF_CONFIG);
  moescope_keys(&g, keys, sizeof keys);
  /* gpt_oss: swiglu_limit 1.0 is not llama.cpp's fixed 7; deepseek_v3: mscale 1.0 != mscale_all_dim
   * 0.8 (llama.cpp assumes equal); deepseek_v2: mscale_all_dim 0.707 does not survive float32
   * 0.1*x then 10*y exactly, so the exact value rides along */
  const char *want = !strcmp(fam, "gpt_oss") ? "moescope.swiglu_limit"
                     : !strcmp(fam, "deepseek_v3") ? "moescope.rope.scaling.yarn_mscale"
                     : !strcmp(fam, "deepseek_v2") ? "moescope.rope.scaling.yarn_mscale_all_dim" : "";
  CHECKF(!strcmp(keys, want), "%s: moescope.* keys '%s', expected '%s'", fam, keys, want);
  char *txt = eng_gguf_config_json(&g, err, sizeof err);
  CHECKF(txt != NULL, "%s: config from metadata: %s", fam, err);
  eng_config a, b;
  snprintf(p, sizeof p, "%s/config.json", dir);
  REQUIRE(eng_config_load(&a, p, err, sizeof err) == 0);
  int rc = txt ? eng_config_parse(&b, txt, gguf, err, sizeof err) : -1;
  CHECKF(rc == 0, "%s: config from metadata does not parse: %s", fam, err);
  if (rc == 0) {
    memcpy(b.torch_dtype, a.torch_dtype, sizeof a.torch_dtype); /* informational: the file's dtype */
    int same = !memcmp(&a, &b, sizeof a);
    CHECKF(same, "%s: eng_config from metadata differs from config.json's (rope_theta %g/%g, yarn %d/%d, mscale %g/%g, "
           "moe_layer[1] %d/%d, sliding[1] %d/%d, limit %g/%g)\n%s", fam, a.rope_theta, b.rope_theta, a.rope_yarn, b.rope_yarn,
           a.yarn_mscale, b.yarn_mscale, a.moe_layer[1], b.moe_layer[1], a.sliding[1], b.sliding[1], a.act_limit, b.act_limit, txt);
  }
  printf("%-16s metadata-only: eng_config %s, moescope.* keys [%s]\n", fam, rc == 0 ? "checked" : "FAILED", keys);
  free(txt);
  eng_gguf_close(&g);
}

static const eng_gguf_tensor *tensor(const eng_gguf *g, const char *name, int n_dims, int64_t ne0, int64_t ne1, int64_t ne2) {
  const eng_gguf_tensor *t = eng_gguf_find_tensor(g, name);
  int ok = t && t->n_dims == n_dims && t->ggml_type == GGML_T_F32 && t->ne[0] == ne0 && (n_dims < 2 || t->ne[1] == ne1) &&
           (n_dims < 3 || t->ne[2] == ne2);
  CHECKF(ok, "%s missing, not F32 or not ne [%lld, %lld, %lld]", name, (long long)ne0, (long long)ne1, (long long)ne2);
  return ok ? t : NULL;
}

static float *hf_tensor(const eng_st_set *s, const char *name) {
  const eng_st_tensor *t = eng_st_find(s, name);
  REQUIRE(t);
  float *x = malloc(sizeof(float) * (size_t)eng_st_numel(t));
  REQUIRE(x && eng_st_to_f32(x, t) == 0);
  return x;
}

static float at(const eng_gguf_tensor *t, int64_t i) { float v; memcpy(&v, t->data + 4 * i, 4); return v; }

/* gpt-oss f32 GGUF: llama.cpp's names, metadata and expert layout, element for element. */
static void check_oai_layout(const char *dir, const char *gguf) {
  char err[512], n[128];
  eng_gguf g;
  eng_st_set s;
  REQUIRE(eng_gguf_open(&g, gguf, err, sizeof err) == 0);
  REQUIRE(eng_st_open_dir(&s, dir, err, sizeof err) == 0);
  size_t len = 0;
  const char *arch = eng_gguf_get_str(&g, "general.architecture", &len);
  CHECK(arch && len == 7 && !memcmp(arch, "gpt-oss", 7));
  int64_t sw = 0, eff = 0, oc = 0;
  double fac = 0;
  const char *ty = eng_gguf_get_str(&g, "gpt-oss.rope.scaling.type", &len);
  CHECK(ty && len == 4 && !memcmp(ty, "yarn", 4));
  CHECK(eng_gguf_get_int(&g, "gpt-oss.attention.sliding_window", &sw) == 0 && sw == 4);
  CHECK(eng_gguf_get_int(&g, "gpt-oss.expert_feed_forward_length", &eff) == 0 && eff == 16);
  CHECK(eng_gguf_get_float(&g, "gpt-oss.rope.scaling.factor", &fac) == 0 && fac == 4.0);
  CHECK(eng_gguf_get_int(&g, "gpt-oss.rope.scaling.original_context_length", &oc) == 0 && oc == 16);
  const int64_t E = 8, H = 32, I = 16;
  int bad = 0, checked = 0;
  for (int l = 0; l < 2; l++) {
    const char *plain[] = {"attn_sinks.weight", "post_attention_norm.weight", "ffn_gate_inp.bias", "ffn_gate_inp.weight",
                           "attn_output.bias", NULL};
    for (int i = 0; plain[i]; i++) {
      snprintf(n, sizeof n, "blk.%d.%s", l, plain[i]);
      CHECKF(eng_gguf_find_tensor(&g, n) != NULL, "%s missing", n);
    }
    char h[256];
    snprintf(h, sizeof h, "model.layers.%d.mlp.experts.gate_up_proj", l);
    float *gu = hf_tensor(&s, h);
    snprintf(h, sizeof h, "model.layers.%d.mlp.experts.gate_up_proj_bias", l);
    float *gub = hf_tensor(&s, h);
    snprintf(h, sizeof h, "model.layers.%d.mlp.experts.down_proj", l);
    float *dn = hf_tensor(&s, h);
    snprintf(h, sizeof h, "model.layers.%d.mlp.experts.down_proj_bias", l);
    float *dnb = hf_tensor(&s, h);
    for (int par = 0; par < 2; par++) {
      snprintf(n, sizeof n, "blk.%d.%s", l, par ? "ffn_up_exps.weight" : "ffn_gate_exps.weight");
      const eng_gguf_tensor *w = tensor(&g, n, 3, H, I, E);
      snprintf(n, sizeof n, "blk.%d.%s", l, par ? "ffn_up_exps.bias" : "ffn_gate_exps.bias");
      const eng_gguf_tensor *b = tensor(&g, n, 2, I, E, 0);
      for (int64_t e = 0; w && b && e < E; e++)
        for (int64_t i = 0; i < I; i++) {
          for (int64_t x = 0; x < H; x++, checked++) bad += at(w, (e * I + i) * H + x) != gu[(e * H + x) * 2 * I + 2 * i + par];
          bad += at(b, e * I + i) != gub[e * 2 * I + 2 * i + par];
        }
    }
    snprintf(n, sizeof n, "blk.%d.ffn_down_exps.weight", l);
    const eng_gguf_tensor *w = tensor(&g, n, 3, I, H, E);
    snprintf(n, sizeof n, "blk.%d.ffn_down_exps.bias", l);
    const eng_gguf_tensor *b = tensor(&g, n, 2, H, E, 0);
    for (int64_t e = 0; w && b && e < E; e++)
      for (int64_t x = 0; x < H; x++) {
        for (int64_t i = 0; i < I; i++, checked++) bad += at(w, (e * H + x) * I + i) != dn[(e * I + i) * H + x];
        bad += at(b, e * H + x) != dnb[e * H + x];
      }
    free(gu); free(gub); free(dn); free(dnb);
  }
  CHECKF(bad == 0 && checked > 0, "gpt_oss: %d of %d expert values not where llama.cpp puts them", bad, checked);
  printf("gpt_oss          llama.cpp expert layout: %d weights checked, %d misplaced\n", checked, bad);
  eng_st_close(&s);
  eng_gguf_close(&g);
}

/* DeepSeek f32 GGUF with attn_k_b / attn_v_b: llama.cpp's split of kv_b_proj. */
static void check_kv_b_layout(const char *dir, const char *gguf, const char *fam) {
  char err[512], n[128], h[4400];
  eng_gguf g;
  eng_st_set s;
  eng_config c;
  snprintf(h, sizeof h, "%s/config.json", dir);
  REQUIRE(eng_config_load(&c, h, err, sizeof err) == 0);
  REQUIRE(eng_gguf_open(&g, gguf, err, sizeof err) == 0);
  REQUIRE(eng_st_open_dir(&s, dir, err, sizeof err) == 0);
  int64_t kvh = -1, klm = -1;
  CHECK(eng_gguf_get_int(&g, "deepseek2.attention.head_count_kv", &kvh) == 0 && kvh == 1);
  CHECK(eng_gguf_get_int(&g, "deepseek2.attention.key_length_mla", &klm) == 0 && klm == c.qk_nope_dim + c.qk_rope_dim);
  const int64_t nh = c.n_heads, nope = c.qk_nope_dim, v = c.v_head_dim, R = c.kv_lora_rank, W = nope + v;
  int bad = 0, checked = 0;
  for (int l = 0; l < c.n_layers; l++) {
    snprintf(n, sizeof n, "blk.%d.attn_kv_b.weight", l);
    CHECKF(eng_gguf_find_tensor(&g, n) == NULL, "%s: %s written besides attn_k_b/attn_v_b", fam, n);
    snprintf(n, sizeof n, "blk.%d.attn_k_b.weight", l);
    const eng_gguf_tensor *kb = tensor(&g, n, 3, nope, R, nh);
    snprintf(n, sizeof n, "blk.%d.attn_v_b.weight", l);
    const eng_gguf_tensor *vb = tensor(&g, n, 3, R, v, nh);
    snprintf(h, sizeof h, "model.layers.%d.self_attn.kv_b_proj.weight", l);
    float *kv = hf_tensor(&s, h);
    for (int64_t x = 0; kb && vb && x < nh; x++)
      for (int64_t j = 0; j < R; j++) {
        for (int64_t i = 0; i < nope; i++, checked++) bad += at(kb, (x * R + j) * nope + i) != kv[(x * W + i) * R + j];
        for (int64_t i = 0; i < v; i++, checked++) bad += at(vb, (x * v + i) * R + j) != kv[(x * W + nope + i) * R + j];
      }
    free(kv);
  }
  CHECKF(bad == 0 && checked > 0, "%s: %d of %d kv_b values not where llama.cpp puts them", fam, bad, checked);
  printf("%-16s attn_k_b/attn_v_b layout: %d values checked, %d misplaced\n", fam, checked, bad);
  eng_st_close(&s);
  eng_gguf_close(&g);
}

/* f16 (or another rounding type): same routing sets, logits within 1e-3 of the range. */
static double check_close(const char *dir, const char *gguf, const char *what) {
  int ids[N_IDS];
  for (int i = 0; i < N_IDS; i++) ids[i] = i * 37 + 5;
  fwd_out r0 = forward(dir, ids), r1 = forward(gguf, ids);
  REQUIRE(r0.vocab == r1.vocab && r0.n_layers == r1.n_layers && r0.top_k == r1.top_k);
  double maxd = 0, lo = 1e30, hi = -1e30;
  for (size_t i = 0; i < (size_t)N_IDS * r0.vocab; i++) {
    maxd = fmax(maxd, fabs((double)r0.logits[i] - r1.logits[i]));
    lo = fmin(lo, r0.logits[i]);
    hi = fmax(hi, r0.logits[i]);
  }
  int diff_sets = 0;
  for (int l = 0; l < r0.n_layers; l++)
    for (int t = 0; t < N_IDS; t++)
      if (memcmp(r0.experts + ((size_t)l * 64 + t) * r0.top_k, r1.experts + ((size_t)l * 64 + t) * r0.top_k,
                 sizeof(int) * (size_t)r0.top_k))
        diff_sets++;
  printf("%-28s max|dlogit| = %.3g (logit range %.3g), routing sets differing %d/%d\n", what, maxd, hi - lo, diff_sets,
         r0.n_layers * N_IDS);
  CHECKF(diff_sets == 0, "%s: %d routing sets differ", what, diff_sets);
  /* f16 rounds each weight by up to 2^-11 relative: ~1e-3 absolute on these random
   * fixtures, so the bound is relative to the logit range (as test_convert_gguf) */
  CHECKF(maxd <= 1e-3 * (hi - lo), "%s: logits differ by %.3g (range %.3g)", what, maxd, hi - lo);
  free(r0.logits); free(r0.experts); free(r1.logits); free(r1.experts);
  return maxd;
}

static void check_family(const char *dir, const char *fam) {
  char gguf[4096], what[256];
  int ds = !strncmp(fam, "deepseek", 8);
  /* f32 with moescope.hf_config */
  snprintf(gguf, sizeof gguf, "%s/fam_%s_f32.gguf", tst_tmp(), fam);
  snprintf(what, sizeof what, "%s f32", fam);
  int same = !convert(dir, gguf, "f32", "", what) && cli_identical(dir, gguf, what);
  remove(gguf);
  /* f32, llama.cpp metadata only */
  snprintf(gguf, sizeof gguf, "%s/fam_%s_meta.gguf", tst_tmp(), fam);
  snprintf(what, sizeof what, "%s f32 metadata-only", fam);
  int same_meta = 0;
  if (!convert(dir, gguf, "f32", "--no-hf-config", what)) {
    same_meta = cli_identical(dir, gguf, what);
    check_metadata_only(dir, gguf, fam);
    if (!strcmp(fam, "gpt_oss")) check_oai_layout(dir, gguf);
  }
  remove(gguf);
  int same_split = 1;
  if (ds) { /* attn_k_b / attn_v_b: exact in f32 (metadata only), close in f16 (hf_config) */
    snprintf(gguf, sizeof gguf, "%s/fam_%s_split.gguf", tst_tmp(), fam);
    snprintf(what, sizeof what, "%s f32 split kv_b metadata-only", fam);
    same_split = 0;
    if (!convert(dir, gguf, "f32", "--no-hf-config --split-kv-b", what)) {
      same_split = cli_identical(dir, gguf, what);
      check_kv_b_layout(dir, gguf, fam);
    }
    remove(gguf);
    snprintf(gguf, sizeof gguf, "%s/fam_%s_split_f16.gguf", tst_tmp(), fam);
    snprintf(what, sizeof what, "%s f16 split kv_b", fam);
    if (!convert(dir, gguf, "f16", "--split-kv-b", what)) check_close(dir, gguf, what);
    remove(gguf);
  }
  printf("%-16s f32 logits: hf_config %s, metadata-only %s%s\n", fam, same ? "identical" : "DIFFER",
         same_meta ? "identical" : "DIFFER", ds ? (same_split ? ", split kv_b identical" : ", split kv_b DIFFER") : "");
  /* f16: same routing, logits within 1e-3 */
  snprintf(gguf, sizeof gguf, "%s/fam_%s_f16.gguf", tst_tmp(), fam);
  snprintf(what, sizeof what, "%s f16", fam);
  if (!convert(dir, gguf, "f16", "", what)) check_close(dir, gguf, what);
  remove(gguf);
}

/* One line, non-zero status below 128 (no signal), mentioning want. */
static void check_one_line_error(const tst_out *o, int st, const char *want, const char *what) {
  CHECKF(st != 0 && st < 128, "%s: should fail cleanly (status %d)", what, st);
  CHECKF(strstr(o->err, want) != NULL, "%s: error should mention '%s': %s", what, want, o->err);
  CHECKF(tst_count_lines(o->err) == 1, "%s: error should be one line: %s", what, o->err);
  printf("%-28s refused: %s", what, o->err);
}

static void check_bad_inputs(void) {
  char syn[4096], gguf[4096];
  tst_out o;
  /* a synthetic router has no llama.cpp metadata */
  snprintf(syn, sizeof syn, "%s/fam_syn_switch", tst_tmp());
  snprintf(gguf, sizeof gguf, "%s/fam_syn_switch.gguf", tst_tmp());
  REQUIRE(tst_sh(&o, "rm -rf '%s' && '%s' synth -o '%s' --family switch --layers 2 --seed 5", syn, tst_bin(), syn) == 0);
  int st = tst_sh(&o, "'%s' convert --model '%s' --type f32 --no-hf-config -o '%s'", tst_bin(), syn, gguf);
  check_one_line_error(&o, st, "moescope_router", "switch --no-hf-config");
  struct stat sb;
  CHECKF(stat(gguf, &sb) != 0, "no output file after a refusal");
  /* DeepSeek (V2-Lite style: q_lora_rank null, 64-wide heads): exact through split kv_b; a
   * Q8_0 attn_k_b cannot be joined back */
  snprintf(syn, sizeof syn, "%s/fam_syn_ds", tst_tmp());
  snprintf(gguf, sizeof gguf, "%s/fam_syn_ds.gguf", tst_tmp());
  REQUIRE(tst_sh(&o, "rm -rf '%s' && '%s' synth -o '%s' --family deepseek_v2 --layers 2 --hidden 128 --heads 2 --seed 5",
                 syn, tst_bin(), syn) == 0);
  if (!convert(syn, gguf, "f32", "--no-hf-config --split-kv-b", "synthetic deepseek_v2")) {
    cli_identical(syn, gguf, "synthetic deepseek_v2 f32 split kv_b metadata-only");
    /* an attn_k_b without its attn_v_b: rename one tensor in place (same length) */
    FILE *f = fopen(gguf, "r+b");
    REQUIRE(f);
    char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    char *hit = NULL;
    for (size_t i = 0; i + 21 <= n && !hit; i++) if (!memcmp(buf + i, "blk.1.attn_v_b.weight", 21)) hit = buf + i;
    REQUIRE(hit);
    REQUIRE(fseek(f, (long)(hit - buf) + 12, SEEK_SET) == 0 && fputc('x', f) != EOF && fclose(f) == 0);
    st = tst_sh(&o, "'%s' run --model '%s' --ids 1,2,3 --record off --quiet", tst_bin(), gguf);
    check_one_line_error(&o, st, "has no 'blk.1.attn_v_b.weight'", "attn_k_b without attn_v_b");
  }
  remove(gguf);
  if (!convert(syn, gguf, "q8_0", "--split-kv-b", "synthetic deepseek_v2 q8_0")) {
    st = tst_sh(&o, "'%s' run --model '%s' --ids 1,2,3 --record off --quiet", tst_bin(), gguf);
    check_one_line_error(&o, st, "needs F32, F16 or BF16", "Q8_0 attn_k_b");
  }
  remove(gguf);
  tst_sh(&o, "rm -rf '%s/fam_syn_switch' '%s/fam_syn_ds'", tst_tmp(), tst_tmp());
}

int main(void) {
  int n = tst_each_hf_fixture("config.json", check_family);
  CHECKF(n >= 8, "expected the 8 HF fixture folders (7 families + mixtral_tiny), found %d", n);
  check_bad_inputs();
  return tst_done();
}
