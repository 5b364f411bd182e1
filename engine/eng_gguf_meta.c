/* eng_gguf_meta.c — the key/value section of `moescope convert`'s GGUF (see
 * eng_gguf_write_int.h): the llama.cpp hyperparameter keys of each architecture, the
 * moescope.* keys for what those cannot say, and the tokenizer.ggml.* keys.
 *
 * Hyperparameters are written from the engine's own reading of config.json (eng_config),
 * as convert_hf_to_gguf.py names them: <arch>.block_count, .embedding_length,
 * .feed_forward_length, .expert_feed_forward_length, .attention.head_count(_kv),
 * .attention.key_length/value_length, .rope.freq_base, .rope.dimension_count,
 * .attention.layer_norm_rms_epsilon, .expert_count, .expert_used_count; YaRN as
 * .rope.scaling.type "yarn", .factor, .original_context_length, .yarn_beta_fast/_slow
 * (+ .yarn_attn_factor when config.json gives attention_factor); DeepSeek-V2/V3
 * (deepseek2): .leading_dense_block_count, .expert_shared_count, .expert_weights_scale,
 * .expert_weights_norm (only when true), .expert_group_count/_used_count,
 * .expert_gating_func (1 softmax, 2 sigmoid), .attention.q_lora_rank (when there is one),
 * .attention.kv_lora_rank, .rope.scaling.yarn_log_multiplier = 0.1 * mscale_all_dim, and
 * key/value lengths in the form of the kv_b layout written (attn_kv_b: key_length =
 * nope + rope, value_length = v; attn_k_b/attn_v_b: head_count_kv 1, key_length =
 * kv_lora + rope, value_length = kv_lora, key_length_mla, value_length_mla); gpt-oss:
 * .attention.sliding_window; OLMoE: .attention.clamp_kqv.
 *
 * Each moescope.* key (eng_gguf_names.h) is added only when the llama.cpp keys, read the way
 * eng_gguf_config_json reads them, would give another value: gpt-oss swiglu_limit != 7 or
 * sliding layers other than the even ones, YaRN truncate other than the family's default,
 * DeepSeek mscale != mscale_all_dim, a greedy/group-limited choice that n_group/topk_group
 * do not imply, rope_interleave false. Qwen's mlp_only_layers / decoder_sparse_step and
 * every attention bias need no key: the reader infers them from the tensors present.
 * Metadata-only mode (no moescope.hf_config) refuses only a synthetic `moescope_router`.
 *
 * Tokenizer (tokenizer.json): byte-level BPE -> model "gpt2", SentencePiece-style (as
 * eng_tok_load decides) -> "llama" with scores = -rank of the merge making each piece. Added
 * tokens are type 3 (special) / 4; ids up to the model's vocab size that the json lacks are
 * [PADn] fillers of type 5 (UNUSED, as llama.cpp writes them: never matched in text).
 * tokenizer.ggml.pre is the llama.cpp name whose regexes (eng_gguf_tok.c's table) are exactly
 * the json's split regexes; when none is, "default" plus moescope.tokenizer.pattern holding
 * them. Also moescope.tokenizer.ignore_merges when the name does not imply the json's value,
 * ByteLevel add_prefix_space as tokenizer.ggml.add_space_prefix (+ prefix_stage), the Unicode
 * normalizer as moescope.tokenizer.normalizer, and for SPM the Metaspace dummy prefix as
 * add_space_prefix (+ moescope.tokenizer.prepend_scheme "first"); see eng_gguf_write_int.h. */
#include "engine/eng_util.h"
#include "engine/eng_gguf.h"
#include "engine/eng_gguf_names.h"
#include "engine/eng_gguf_write_int.h"
#include "engine/eng_tokenizer_int.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- buffers ------------------------------------------------------------------------------ */

void ggw_put(ggw_buf *b, const void *d, size_t n) {
  if (b->oom) return;
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + n) cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) { b->oom = 1; return; }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, d, n);
  b->n += n;
}
void ggw_put_u32(ggw_buf *b, uint32_t v) { ggw_put(b, &v, 4); }
void ggw_put_u64(ggw_buf *b, uint64_t v) { ggw_put(b, &v, 8); }
void ggw_put_str(ggw_buf *b, const char *s, size_t n) { ggw_put_u64(b, n); ggw_put(b, s, n); }

void ggw_kv_key(ggw_kv *k, const char *key, uint32_t type) {
  ggw_put_str(&k->b, key, strlen(key));
  ggw_put_u32(&k->b, type);
  k->n++;
}
void ggw_kv_u32(ggw_kv *k, const char *key, uint32_t v) { ggw_kv_key(k, key, GGUF_T_U32); ggw_put_u32(&k->b, v); }
void ggw_kv_f32(ggw_kv *k, const char *key, float v) { ggw_kv_key(k, key, GGUF_T_F32); ggw_put(&k->b, &v, 4); }
void ggw_kv_bool(ggw_kv *k, const char *key, int v) { uint8_t x = v != 0; ggw_kv_key(k, key, GGUF_T_BOOL); ggw_put(&k->b, &x, 1); }
void ggw_kv_str(ggw_kv *k, const char *key, const char *s) { ggw_kv_key(k, key, GGUF_T_STRING); ggw_put_str(&k->b, s, strlen(s)); }
void ggw_kv_arr(ggw_kv *k, const char *key, uint32_t et, uint64_t n) {
  ggw_kv_key(k, key, GGUF_T_ARRAY);
  ggw_put_u32(&k->b, et);
  ggw_put_u64(&k->b, n);
}

int ggw_cfg_num(const cJSON *c, const char *k, double *v) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(c, k);
  if (cJSON_IsNumber(x)) { *v = x->valuedouble; return 1; }
  if (cJSON_IsBool(x)) { *v = cJSON_IsTrue(x); return 1; }
  if (cJSON_IsArray(x) && cJSON_IsNumber(x->child)) { *v = x->child->valuedouble; return 1; }
  return 0;
}

/* ---- hyperparameters --------------------------------------------------------------------- */

/* The engine's reading of rope_scaling.attention_factor (only there when config.json has it). */
static float yarn_attention_factor(const cJSON *cfg) {
  const cJSON *rs = cJSON_GetObjectItemCaseSensitive(cfg, "rope_scaling");
  if (!cJSON_IsObject(rs)) rs = cJSON_GetObjectItemCaseSensitive(cfg, "rope_parameters");
  const cJSON *af = cJSON_GetObjectItemCaseSensitive(rs, "attention_factor");
  return cJSON_IsNumber(af) && af->valuedouble > 0 ? (float)af->valuedouble : 0.0f;
}

int ggw_write_hparams(ggw_kv *k, const cJSON *cfg, const eng_config *c, const char *arch, int flags, const char *dir,
                      char *err, size_t errlen) {
  if ((flags & ENG_GGUF_CONVERT_NO_HF_CONFIG) && cJSON_GetObjectItemCaseSensitive(cfg, "moescope_router"))
    return eng_errf(err, errlen, "%s/config.json: a synthetic 'moescope_router' has no llama.cpp metadata; convert without --no-hf-config", dir);
  char key[256];
#define KEY(suffix) (snprintf(key, sizeof key, "%s.%s", arch, suffix), key)
  int ds = c->mla, oai = c->family == ENG_FAM_GPT_OSS, split = ds && (flags & ENG_GGUF_CONVERT_SPLIT_KV_B);
  double v;
  ggw_kv_u32(k, KEY("vocab_size"), (uint32_t)c->vocab);
  ggw_kv_u32(k, KEY("context_length"), (uint32_t)c->max_pos);
  ggw_kv_u32(k, KEY("embedding_length"), (uint32_t)c->hidden);
  ggw_kv_u32(k, KEY("block_count"), (uint32_t)c->n_layers);
  if (ggw_cfg_num(cfg, "intermediate_size", &v) && v >= 0 && v <= UINT32_MAX) ggw_kv_u32(k, KEY("feed_forward_length"), (uint32_t)v);
  if (oai || ggw_cfg_num(cfg, "moe_intermediate_size", &v)) ggw_kv_u32(k, KEY("expert_feed_forward_length"), (uint32_t)c->intermediate);
  if (c->family == ENG_FAM_QWEN2_MOE && c->shared_intermediate > 0)
    ggw_kv_u32(k, KEY("expert_shared_feed_forward_length"), (uint32_t)c->shared_intermediate);
  ggw_kv_u32(k, KEY("attention.head_count"), (uint32_t)c->n_heads);
  ggw_kv_u32(k, KEY("attention.head_count_kv"), split ? 1u : (uint32_t)c->n_kv_heads);
  ggw_kv_f32(k, KEY("rope.freq_base"), c->rope_theta);
  ggw_kv_f32(k, KEY("attention.layer_norm_rms_epsilon"), c->rms_eps);
  ggw_kv_u32(k, KEY("expert_count"), (uint32_t)c->n_experts);
  ggw_kv_u32(k, KEY("expert_used_count"), (uint32_t)c->top_k);
  if (!ds) {
    if (strcmp(arch, "gpt-oss")) ggw_kv_u32(k, KEY("rope.dimension_count"), (uint32_t)c->head_dim);
    if (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(cfg, "head_dim"))) {
      ggw_kv_u32(k, KEY("attention.key_length"), (uint32_t)c->head_dim);
      ggw_kv_u32(k, KEY("attention.value_length"), (uint32_t)c->head_dim);
    }
  } else {
    int dense = 0;
    while (dense < c->n_layers && !c->moe_layer[dense]) dense++;
    ggw_kv_u32(k, KEY("leading_dense_block_count"), (uint32_t)dense);
    ggw_kv_u32(k, KEY("expert_shared_count"), (uint32_t)c->n_shared_experts);
    ggw_kv_f32(k, KEY("expert_weights_scale"), c->router.scale);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cfg, "norm_topk_prob"))) ggw_kv_bool(k, KEY("expert_weights_norm"), 1);
    if (ggw_cfg_num(cfg, "n_group", &v)) ggw_kv_u32(k, KEY("expert_group_count"), (uint32_t)c->router.n_group);
    if (ggw_cfg_num(cfg, "topk_group", &v)) ggw_kv_u32(k, KEY("expert_group_used_count"), (uint32_t)c->router.topk_group);
    ggw_kv_u32(k, KEY("expert_gating_func"), c->family == ENG_FAM_DEEPSEEK_V3 ? 2u : 1u);
    if (c->q_lora_rank > 0) ggw_kv_u32(k, KEY("attention.q_lora_rank"), (uint32_t)c->q_lora_rank);
    ggw_kv_u32(k, KEY("attention.kv_lora_rank"), (uint32_t)c->kv_lora_rank);
    ggw_kv_u32(k, KEY("rope.dimension_count"), (uint32_t)c->qk_rope_dim);
    if (split) { /* newer llama.cpp: MLA as MQA over the latent (absorbed k_b / v_b) */
      ggw_kv_u32(k, KEY("attention.key_length"), (uint32_t)(c->kv_lora_rank + c->qk_rope_dim));
      ggw_kv_u32(k, KEY("attention.value_length"), (uint32_t)c->kv_lora_rank);
      ggw_kv_u32(k, KEY("attention.key_length_mla"), (uint32_t)(c->qk_nope_dim + c->qk_rope_dim));
      ggw_kv_u32(k, KEY("attention.value_length_mla"), (uint32_t)c->v_head_dim);
    } else {
      ggw_kv_u32(k, KEY("attention.key_length"), (uint32_t)(c->qk_nope_dim + c->qk_rope_dim));
      ggw_kv_u32(k, KEY("attention.value_length"), (uint32_t)c->v_head_dim);
    }
    /* the reader takes group-limited routing from n_group > 1 with topk_group < n_group */
    int grouped = c->router.n_group > 1 && c->router.topk_group < c->router.n_group;
    if (c->family == ENG_FAM_DEEPSEEK_V2 && grouped != (c->router.kind == ENG_ROUTER_GROUP_LIMITED))
      ggw_kv_str(k, ENG_GGUF_KEY_TOPK_METHOD, c->router.kind == ENG_ROUTER_GROUP_LIMITED ? "group_limited_greedy" : "greedy");
    if (!c->rope_interleave) ggw_kv_bool(k, ENG_GGUF_KEY_ROPE_INTERLEAVE, 0);
  }
  if (c->family == ENG_FAM_QWEN2_MOE || c->family == ENG_FAM_QWEN3_MOE || c->family == ENG_FAM_OLMOE) {
    int dflt = c->family == ENG_FAM_QWEN3_MOE; /* what llama.cpp hard-codes */
    if (c->norm_topk_prob != dflt) ggw_kv_bool(k, KEY("expert_weights_norm"), c->norm_topk_prob);
  }
  if (c->family == ENG_FAM_OLMOE && c->clip_qkv > 0) ggw_kv_f32(k, KEY("attention.clamp_kqv"), c->clip_qkv);
  if (oai) {
    ggw_kv_u32(k, KEY("attention.sliding_window"), (uint32_t)c->sliding_window);
    int even = 1;
    for (int l = 0; l < c->n_layers; l++) even &= c->sliding[l] == (l % 2 == 0);
    if (!even) {
      ggw_kv_arr(k, ENG_GGUF_KEY_SLIDING_LAYERS, GGUF_T_BOOL, (uint64_t)c->n_layers);
      for (int l = 0; l < c->n_layers; l++) { uint8_t b = c->sliding[l] != 0; ggw_put(&k->b, &b, 1); }
    }
    if (c->act_limit != ENG_GGUF_OAI_SWIGLU_LIMIT) ggw_kv_f32(k, ENG_GGUF_KEY_SWIGLU_LIMIT, c->act_limit);
  }
  if (c->rope_yarn) {
    ggw_kv_str(k, KEY("rope.scaling.type"), "yarn");
    ggw_kv_f32(k, KEY("rope.scaling.factor"), c->yarn_factor);
    ggw_kv_u32(k, KEY("rope.scaling.original_context_length"), (uint32_t)c->yarn_orig_max_pos);
    ggw_kv_f32(k, KEY("rope.scaling.yarn_beta_fast"), c->yarn_beta_fast);
    ggw_kv_f32(k, KEY("rope.scaling.yarn_beta_slow"), c->yarn_beta_slow);
    float af = yarn_attention_factor(cfg);
    if (af > 0) ggw_kv_f32(k, KEY("rope.scaling.yarn_attn_factor"), af);
    /* what the reader will take mscale_all_dim and mscale to be without moescope keys */
    float mad = 0;
    if (ds && c->yarn_mscale_all_dim != 0) {
      float log_mul = (float)(0.1 * (double)c->yarn_mscale_all_dim);
      ggw_kv_f32(k, KEY("rope.scaling.yarn_log_multiplier"), log_mul);
      mad = (float)eng_gguf_mscale_from_log_mul(log_mul);
    }
    if (mad != c->yarn_mscale_all_dim) { ggw_kv_f32(k, ENG_GGUF_KEY_YARN_MSCALE_ALL, c->yarn_mscale_all_dim); mad = c->yarn_mscale_all_dim; }
    if (c->yarn_mscale != (ds ? mad : 0.0f)) ggw_kv_f32(k, ENG_GGUF_KEY_YARN_MSCALE, c->yarn_mscale);
    if (c->yarn_truncate != !oai) ggw_kv_bool(k, ENG_GGUF_KEY_YARN_TRUNCATE, c->yarn_truncate);
  }
#undef KEY
  return 0;
}
/* ---- tokenizer ----------------------------------------------------------------------------- */

cJSON *ggw_load_json(const char *path) {
  char e[256];
  size_t n;
  char *t = eng_read_file(path, &n, (size_t)1 << 30, e, sizeof e);
  if (!t) return NULL;
  cJSON *j = cJSON_ParseWithLength(t, n);
  free(t);
  return j;
}

static int token_id_of(const cJSON *vocab, const cJSON *added, const cJSON *v) {
  if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
  if (!cJSON_IsString(v)) return -1;
  for (const cJSON *a = added ? added->child : NULL; a; a = a->next) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(a, "content"), *id = cJSON_GetObjectItemCaseSensitive(a, "id");
    if (cJSON_IsString(c) && cJSON_IsNumber(id) && !strcmp(c->valuestring, v->valuestring)) return id->valueint;
  }
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(vocab, v->valuestring);
  return cJSON_IsNumber(x) ? x->valueint : -1;
}

/* The byte-level pre-tokenizer of a tokenizer.json, as eng_tokenizer.c's loader reads it: the
 * regex stages in order (Split Regex as is, Split String as \Q..\E, ByteLevel use_regex =
 * GPT-2's regex), ByteLevel's add_prefix_space and the stage it sits at. bad: a node that
 * loader refuses (then nothing exact can be written). */
#define PRETOK_MAX 16
typedef struct { const char *re[PRETOK_MAX]; char *own[PRETOK_MAX]; int n, prefix, stage, bad; } pretok;

static void pretok_add(pretok *p, const char *re, char *own) {
  if (p->n == PRETOK_MAX) { p->bad = 1; free(own); return; }
  p->own[p->n] = own;
  p->re[p->n++] = re;
}

static void pretok_walk(pretok *p, const cJSON *node, int depth) {
  const cJSON *ty = cJSON_GetObjectItemCaseSensitive(node, "type");
  const char *type = cJSON_IsString(ty) ? ty->valuestring : "";
  if (!strcmp(type, "Sequence") && depth < 8) {
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(node, "pretokenizers");
    for (const cJSON *e = cJSON_IsArray(l) ? l->child : NULL; e; e = e->next) pretok_walk(p, e, depth + 1);
  } else if (!strcmp(type, "ByteLevel")) {
    p->prefix = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(node, "add_prefix_space"));
    p->stage = p->n;
    const char *const *gpt2;
    int im;
    if (!cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(node, "use_regex")) && ggw_pre_regexes("gpt-2", 5, &gpt2, &im) == 1)
      pretok_add(p, gpt2[0], NULL);
  } else if (!strcmp(type, "Split")) {
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(node, "pattern");
    const cJSON *rx = cJSON_GetObjectItemCaseSensitive(pat, "Regex"), *lit = cJSON_GetObjectItemCaseSensitive(pat, "String");
    const cJSON *beh = cJSON_GetObjectItemCaseSensitive(node, "behavior");
    if (!cJSON_IsString(beh) || strcmp(beh->valuestring, "Isolated") || cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(node, "invert")))
      p->bad = 1;
    else if (cJSON_IsString(rx)) pretok_add(p, rx->valuestring, NULL);
    else if (cJSON_IsString(lit) && !strstr(lit->valuestring, "\\E")) {
      size_t n = strlen(lit->valuestring) + 5;
      char *q = malloc(n);
      if (!q) { p->bad = 1; return; }
      snprintf(q, n, "\\Q%s\\E", lit->valuestring);
      pretok_add(p, q, q);
    } else p->bad = 1;
  } else p->bad = 1;
}

/* tokenizer.ggml.pre for a byte-level tokenizer.json: the llama.cpp name whose regexes are the
 * json's exactly (ggw_pre_name); otherwise "default" plus moescope.tokenizer.pattern with the
 * exact regexes. Also ignore_merges when the name does not imply it, and add_prefix_space. */
static void write_pretok(ggw_kv *k, const cJSON *j, const cJSON *model) {
  pretok p = {0};
  const cJSON *pre = cJSON_GetObjectItemCaseSensitive(j, "pre_tokenizer");
  if (pre && !cJSON_IsNull(pre)) pretok_walk(&p, pre, 0);
  else p.bad = 1;
  int im = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "ignore_merges")), im_ok = 0;
  const char *name = p.bad ? NULL : ggw_pre_name(p.re, p.n, im, &im_ok);
  ggw_kv_str(k, "tokenizer.ggml.pre", name ? name : "default");
  if (!name && !p.bad) {
    if (p.n == 1) ggw_kv_str(k, GGW_TOK_PATTERN, p.re[0]);
    else {
      ggw_kv_arr(k, GGW_TOK_PATTERN, GGUF_T_STRING, (uint64_t)p.n);
      for (int i = 0; i < p.n; i++) ggw_put_str(&k->b, p.re[i], strlen(p.re[i]));
    }
  }
  if (!im_ok && (name || im)) ggw_kv_bool(k, GGW_TOK_IGNORE_MERGES, im); /* "default" implies false */
  if (p.prefix) {
    ggw_kv_bool(k, "tokenizer.ggml.add_space_prefix", 1);
    if (p.stage) ggw_kv_u32(k, GGW_TOK_PREFIX_STAGE, (uint32_t)p.stage);
  }
  for (int i = 0; i < p.n; i++) free(p.own[i]);
}

/* Adds the tokenizer.ggml.* keys. Returns 0 (also when there is no tokenizer.json) or -1. */
int ggw_write_tokenizer(ggw_kv *k, const char *dir, const cJSON *cfg, int64_t n_vocab, char *err, size_t errlen) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/tokenizer.json", dir);
  if (access(path, R_OK)) { /* no tokenizer: model "none" (llama.cpp's _set_vocab_none: it loads such a file
                             * as vocabulary-free) and still the special ids config.json names */
    double v;
    ggw_kv_str(k, "tokenizer.ggml.model", "none");
    if (ggw_cfg_num(cfg, "bos_token_id", &v) && v >= 0) ggw_kv_u32(k, "tokenizer.ggml.bos_token_id", (uint32_t)v);
    if (ggw_cfg_num(cfg, "eos_token_id", &v) && v >= 0) ggw_kv_u32(k, "tokenizer.ggml.eos_token_id", (uint32_t)v);
    return 0;
  }
  cJSON *j = ggw_load_json(path);
  snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
  cJSON *tc = access(path, R_OK) ? NULL : ggw_load_json(path);
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
  const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
  const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
  const cJSON *added = cJSON_GetObjectItemCaseSensitive(j, "added_tokens");
  int rc = 0;
  if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges)) {
    rc = eng_errf(err, errlen, "%s/tokenizer.json: no BPE model.vocab / model.merges", dir);
    goto done;
  }
  int spm = eng_tki_is_spm_json(j); /* as eng_tok_load decides */
  int64_t n = n_vocab;
  for (const cJSON *e = vocab->child; e; e = e->next) if (cJSON_IsNumber(e) && e->valueint >= n) n = e->valueint + 1;
  for (const cJSON *a = added ? added->child : NULL; a; a = a->next) {
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id");
    if (cJSON_IsNumber(id) && id->valueint >= n) n = id->valueint + 1;
  }
  const char **tok = calloc((size_t)n, sizeof *tok);
  int32_t *type = calloc((size_t)n, sizeof *type);
  float *score = calloc((size_t)n, sizeof *score);
  char (*pad)[32] = calloc((size_t)n, sizeof *pad);
  if (!tok || !type || !score || !pad) { rc = eng_errf(err, errlen, "out of memory"); goto free_arrays; }
  for (const cJSON *e = vocab->child; e; e = e->next)
    if (cJSON_IsNumber(e) && e->valueint >= 0 && e->valueint < n) { tok[e->valueint] = e->string; type[e->valueint] = 1; }
  for (const cJSON *a = added ? added->child : NULL; a; a = a->next) {
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id"), *c = cJSON_GetObjectItemCaseSensitive(a, "content");
    if (!cJSON_IsNumber(id) || !cJSON_IsString(c) || id->valueint < 0) continue;
    tok[id->valueint] = c->valuestring;
    type[id->valueint] = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "special")) ? 3 : 4;
  }
  for (int64_t i = 0; i < n; i++)
    if (!tok[i]) { /* filler up to the model's vocab size: UNUSED, as llama.cpp writes it (never matched) */
      snprintf(pad[i], sizeof pad[i], "[PAD%lld]", (long long)i);
      tok[i] = pad[i];
      type[i] = 5;
    }
  const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
  if (spm) {
    int r = 0;
    for (const cJSON *m = merges->child; m; m = m->next, r++) { /* score = -rank of the merge making the piece */
      char ab[1024];
      if (cJSON_IsString(m)) {
        const char *sp = strchr(m->valuestring, ' ');
        if (!sp) continue;
        snprintf(ab, sizeof ab, "%.*s%s", (int)(sp - m->valuestring), m->valuestring, sp + 1);
      } else if (cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) && cJSON_IsString(m->child->next))
        snprintf(ab, sizeof ab, "%s%s", m->child->valuestring, m->child->next->valuestring);
      else continue;
      const cJSON *x = cJSON_GetObjectItemCaseSensitive(vocab, ab);
      if (cJSON_IsNumber(x) && x->valueint >= 0 && x->valueint < n && score[x->valueint] == 0) score[x->valueint] = -(float)(r + 1);
    }
    for (int64_t i = 0; i < n; i++) {
      unsigned b;
      char tail;
      if (type[i] == 1 && strlen(tok[i]) == 6 && sscanf(tok[i], "<0x%2X%c", &b, &tail) == 2 && tail == '>') type[i] = 6;
    }
    if (cJSON_IsString(unk)) { int u = token_id_of(vocab, added, unk); if (u >= 0 && u < n) type[u] = 2; }
  }
  ggw_kv_str(k, "tokenizer.ggml.model", spm ? "llama" : "gpt2");
  if (!spm) write_pretok(k, j, model);
  else { /* dummy prefix: llama.cpp's add_space_prefix; HF Metaspace "first" in our own key */
    int prefix = eng_tki_spm_json_prefix(j);
    ggw_kv_bool(k, "tokenizer.ggml.add_space_prefix", prefix != ENG_SPM_PREFIX_NONE);
    if (prefix == ENG_SPM_PREFIX_FIRST) ggw_kv_str(k, GGW_TOK_PREPEND_SCHEME, "first");
  }
  int form = ENG_TOK_NORM_NONE;
  char nerr[256];
  if (eng_tki_parse_norm(cJSON_GetObjectItemCaseSensitive(j, "normalizer"), spm, &form, dir, nerr, sizeof nerr) == 0 &&
      form != ENG_TOK_NORM_NONE)
    ggw_kv_str(k, GGW_TOK_NORMALIZER, eng_tok_norm_name(form));
  ggw_kv_arr(k, "tokenizer.ggml.tokens", GGUF_T_STRING, (uint64_t)n);
  for (int64_t i = 0; i < n; i++) ggw_put_str(&k->b, tok[i], strlen(tok[i]));
  if (spm) {
    ggw_kv_arr(k, "tokenizer.ggml.scores", GGUF_T_F32, (uint64_t)n);
    ggw_put(&k->b, score, sizeof(float) * (size_t)n);
  }
  ggw_kv_arr(k, "tokenizer.ggml.token_type", GGUF_T_I32, (uint64_t)n);
  ggw_put(&k->b, type, sizeof(int32_t) * (size_t)n);
  if (!spm) {
    ggw_kv_arr(k, "tokenizer.ggml.merges", GGUF_T_STRING, (uint64_t)cJSON_GetArraySize(merges));
    for (const cJSON *m = merges->child; m; m = m->next) {
      char ab[2048];
      if (cJSON_IsString(m)) snprintf(ab, sizeof ab, "%s", m->valuestring);
      else if (cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) && cJSON_IsString(m->child->next))
        snprintf(ab, sizeof ab, "%s %s", m->child->valuestring, m->child->next->valuestring);
      else { rc = eng_errf(err, errlen, "%s/tokenizer.json: malformed merge", dir); goto free_arrays; }
      ggw_put_str(&k->b, ab, strlen(ab));
    }
  }
  int bos = token_id_of(vocab, added, cJSON_GetObjectItemCaseSensitive(tc, "bos_token"));
  int eos = token_id_of(vocab, added, cJSON_GetObjectItemCaseSensitive(tc, "eos_token"));
  double v;
  if (bos < 0 && ggw_cfg_num(cfg, "bos_token_id", &v)) bos = (int)v;
  if (eos < 0 && ggw_cfg_num(cfg, "eos_token_id", &v)) eos = (int)v;
  if (bos >= 0) ggw_kv_u32(k, "tokenizer.ggml.bos_token_id", (uint32_t)bos);
  if (eos >= 0) ggw_kv_u32(k, "tokenizer.ggml.eos_token_id", (uint32_t)eos);
  if (cJSON_IsString(unk)) { int u = token_id_of(vocab, added, unk); if (u >= 0) ggw_kv_u32(k, "tokenizer.ggml.unknown_token_id", (uint32_t)u); }
  const cJSON *ab = cJSON_GetObjectItemCaseSensitive(tc, "add_bos_token");
  if (cJSON_IsBool(ab)) ggw_kv_bool(k, "tokenizer.ggml.add_bos_token", cJSON_IsTrue(ab));
free_arrays:
  free(tok); free(type); free(score); free(pad);
done:
  cJSON_Delete(j);
  cJSON_Delete(tc);
  return rc;
}

