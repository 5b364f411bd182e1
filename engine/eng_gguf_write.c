/* eng_gguf_write.c — `moescope convert`: a Hugging Face model folder -> GGUF v3 with
 * llama.cpp's conventions (contract: eng_gguf_convert in eng_gguf.h).
 *
 * Names: token_embd / output_norm / output, blk.N.{attn_norm, attn_q/k/v/output,
 * ffn_norm, ffn_gate_inp, ffn_{gate,up,down}_exps (experts stacked into one 3-D tensor,
 * ne = [cols, rows, E]), *_shexp, exp_probs_b}. Mixtral is written as llama.cpp does:
 * general.architecture "llama" with llama.expert_count, Q/K rows permuted to ggml's
 * interleaved RoPE order (convert_hf_to_gguf.py LlamaModel.permute). Types: 1-D tensors,
 * *_norm.weight and the routers (ffn_gate_inp, ffn_gate_inp_shexp) stay F32; the rest takes
 * the requested type (Q8_0/Q4_0 quantised exactly as ggml's reference quantizers; a row
 * length not a multiple of 32 falls back to F16, as llama.cpp does).
 * Tokenizer: tokenizer.json byte-level BPE -> tokenizer.ggml.model "gpt2" (tokens,
 * token_type, merges); SentencePiece-style BPE (byte_fallback) -> "llama" (tokens, scores
 * = -merge rank, token_type); bos/eos ids from tokenizer_config.json or config.json.
 * One tensor is converted at a time; the file is written to <out>.tmp.<pid>, fsync'ed and
 * renamed into place. */
#include "engine/eng_util.h"
#include "engine/eng_gguf.h"
#include "engine/eng_gguf_names.h"
#include "engine/eng_st_write.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ALIGN 32

/* ---- growable byte buffer ---------------------------------------------------------------- */

typedef struct { uint8_t *p; size_t n, cap; int oom; } buf;

static void put(buf *b, const void *d, size_t n) {
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
static void put_u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(buf *b, const char *s, size_t n) { put_u64(b, n); put(b, s, n); }

typedef struct { buf b; uint64_t n; } kvbuf;

static void kv_key(kvbuf *k, const char *key, uint32_t type) {
  put_str(&k->b, key, strlen(key));
  put_u32(&k->b, type);
  k->n++;
}
static void kv_u32(kvbuf *k, const char *key, uint32_t v) { kv_key(k, key, GGUF_T_U32); put_u32(&k->b, v); }
static void kv_f32(kvbuf *k, const char *key, float v) { kv_key(k, key, GGUF_T_F32); put(&k->b, &v, 4); }
static void kv_bool(kvbuf *k, const char *key, int v) { uint8_t x = v != 0; kv_key(k, key, GGUF_T_BOOL); put(&k->b, &x, 1); }
static void kv_str(kvbuf *k, const char *key, const char *s) { kv_key(k, key, GGUF_T_STRING); put_str(&k->b, s, strlen(s)); }
static void kv_arr(kvbuf *k, const char *key, uint32_t et, uint64_t n) {
  kv_key(k, key, GGUF_T_ARRAY);
  put_u32(&k->b, et);
  put_u64(&k->b, n);
}

/* ---- output tensors ---------------------------------------------------------------------- */

enum { SRC_PLAIN, SRC_STACK, SRC_PACKED };

typedef struct {
  char name[128];
  int ggml_type, n_dims;
  int64_t ne[4];
  int kind;
  const eng_st_tensor *src;        /* PLAIN, PACKED */
  const eng_st_tensor **exp;       /* STACK: E pointers */
  int64_t n_exp, r0, rows;         /* PACKED: rows [r0, r0+rows) of each expert */
  int64_t permute_heads;           /* > 0: llama.cpp Q/K permutation */
  size_t nbytes;
  uint64_t offset;
} out_tensor;

typedef struct {
  out_tensor *t;
  int n, cap;
  int out_type;
  const char *arch;
} plan;

static out_tensor *plan_add(plan *p, const char *name) {
  if (p->n == p->cap) {
    int cap = p->cap ? p->cap * 2 : 64;
    out_tensor *t = realloc(p->t, sizeof *t * (size_t)cap);
    if (!t) return NULL;
    p->t = t;
    p->cap = cap;
  }
  out_tensor *o = &p->t[p->n++];
  memset(o, 0, sizeof *o);
  snprintf(o->name, sizeof o->name, "%s", name);
  return o;
}

static int64_t numel(const out_tensor *o) {
  int64_t n = 1;
  for (int i = 0; i < o->n_dims; i++) n *= o->ne[i];
  return n;
}

/* Chooses the ggml type as llama.cpp's converter does and sizes the tensor. */
static void choose_type(plan *p, out_tensor *o) {
  size_t len = strlen(o->name);
  int keep_f32 = o->n_dims <= 1 || (len > 12 && !strcmp(o->name + len - 12, "_norm.weight")) ||
                 strstr(o->name, "ffn_gate_inp") != NULL;
  int t = GGML_T_F32;
  if (!keep_f32) switch (p->out_type) {
    case ENG_GGUF_OUT_F16: t = GGML_T_F16; break;
    case ENG_GGUF_OUT_BF16: t = GGML_T_BF16; break;
    case ENG_GGUF_OUT_Q8_0: t = o->ne[0] % 32 ? GGML_T_F16 : GGML_T_Q8_0; break;
    case ENG_GGUF_OUT_Q4_0: t = o->ne[0] % 32 ? GGML_T_F16 : GGML_T_Q4_0; break;
    default: t = GGML_T_F32;
  }
  o->ggml_type = t;
  int64_t n = numel(o);
  o->nbytes = t == GGML_T_F32 ? (size_t)n * 4 : t == GGML_T_Q8_0 ? (size_t)(n / 32) * 34
              : t == GGML_T_Q4_0 ? (size_t)(n / 32) * 18 : (size_t)n * 2;
}

/* Fills dst (numel floats, HF row-major = GGUF order) from the source tensors. */
static int produce(const out_tensor *o, float *dst, char *err, size_t errlen) {
  if (o->kind == SRC_PLAIN) {
    if (eng_st_to_f32(dst, o->src)) return eng_errf(err, errlen, "tensor '%s': dtype %s is not floating point", o->src->name, eng_dtype_name(o->src->dtype));
  } else if (o->kind == SRC_STACK) {
    int64_t per = o->ne[0] * o->ne[1];
    for (int64_t e = 0; e < o->n_exp; e++)
      if (eng_st_to_f32(dst + e * per, o->exp[e]))
        return eng_errf(err, errlen, "tensor '%s': dtype is not floating point", o->exp[e]->name);
  } else {
    const eng_st_tensor *s = o->src;
    int64_t R = s->shape[1], C = s->shape[2];
    size_t es = eng_dtype_size(s->dtype);
    for (int64_t e = 0; e < o->n_exp; e++)
      if (eng_dt_to_f32(dst + e * o->rows * C, s->data + (size_t)((e * R + o->r0) * C) * es, s->dtype, o->rows * C))
        return eng_errf(err, errlen, "tensor '%s': dtype is not floating point", s->name);
  }
  if (o->permute_heads > 0) {
    int64_t rows = o->ne[1], cols = o->ne[0], hd = rows / o->permute_heads, half = hd / 2;
    float *tmp = malloc(sizeof(float) * (size_t)(rows * cols));
    if (!tmp) return eng_errf(err, errlen, "out of memory");
    memcpy(tmp, dst, sizeof(float) * (size_t)(rows * cols));
    for (int64_t h = 0; h < o->permute_heads; h++)
      for (int64_t i = 0; i < half; i++)
        for (int64_t j = 0; j < 2; j++)
          memcpy(dst + (h * hd + 2 * i + j) * cols, tmp + (h * hd + j * half + i) * cols, sizeof(float) * (size_t)cols);
    free(tmp);
  }
  return 0;
}

static void encode(const out_tensor *o, const float *x, uint8_t *dst) {
  int64_t n = numel(o);
  switch (o->ggml_type) {
  case GGML_T_F32: memcpy(dst, x, (size_t)n * 4); break;
  case GGML_T_F16: for (int64_t i = 0; i < n; i++) { uint16_t h = eng_stw_f32_to_f16(x[i]); memcpy(dst + 2 * i, &h, 2); } break;
  case GGML_T_BF16: for (int64_t i = 0; i < n; i++) { uint16_t h = eng_stw_f32_to_bf16(x[i]); memcpy(dst + 2 * i, &h, 2); } break;
  case GGML_T_Q8_0: eng_quant_q8_0(dst, x, n); break;
  case GGML_T_Q4_0: eng_quant_q4_0(dst, x, n); break;
  }
}

/* ---- config ------------------------------------------------------------------------------ */

static int cfg_num(const cJSON *c, const char *k, double *v) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(c, k);
  if (cJSON_IsNumber(x)) { *v = x->valuedouble; return 1; }
  if (cJSON_IsBool(x)) { *v = cJSON_IsTrue(x); return 1; }
  if (cJSON_IsArray(x) && cJSON_IsNumber(x->child)) { *v = x->child->valuedouble; return 1; }
  return 0;
}

static void write_hparams(kvbuf *k, const cJSON *cfg, const char *arch, const char *mt) {
  static const struct { const char *hf, *gguf; int f; } map[] = {
    {"vocab_size", "vocab_size", 0}, {"max_position_embeddings", "context_length", 0},
    {"hidden_size", "embedding_length", 0}, {"num_hidden_layers", "block_count", 0},
    {"intermediate_size", "feed_forward_length", 0}, {"moe_intermediate_size", "expert_feed_forward_length", 0},
    {"shared_expert_intermediate_size", "expert_shared_feed_forward_length", 0},
    {"num_attention_heads", "attention.head_count", 0}, {"num_key_value_heads", "attention.head_count_kv", 0},
    {"rope_theta", "rope.freq_base", 1}, {"rms_norm_eps", "attention.layer_norm_rms_epsilon", 1},
    {"num_local_experts", "expert_count", 0}, {"num_experts", "expert_count", 0}, {"n_routed_experts", "expert_count", 0},
    {"num_experts_per_tok", "expert_used_count", 0}, {"first_k_dense_replace", "leading_dense_block_count", 0},
    {"n_shared_experts", "expert_shared_count", 0}, {"routed_scaling_factor", "expert_weights_scale", 1},
    {"n_group", "expert_group_count", 0}, {"topk_group", "expert_group_used_count", 0},
    {"q_lora_rank", "attention.q_lora_rank", 0}, {"kv_lora_rank", "attention.kv_lora_rank", 0},
    {0, 0, 0}};
  char key[256];
  int have_experts = 0;
  for (int i = 0; map[i].hf; i++) {
    double v;
    if (!cfg_num(cfg, map[i].hf, &v)) continue;
    if (!strcmp(map[i].gguf, "expert_count")) { if (have_experts) continue; have_experts = 1; }
    snprintf(key, sizeof key, "%s.%s", arch, map[i].gguf);
    if (map[i].f) kv_f32(k, key, (float)v);
    else if (v >= 0 && v <= UINT32_MAX) kv_u32(k, key, (uint32_t)v);
  }
  double hd = 0, hidden = 0, heads = 0;
  cfg_num(cfg, "hidden_size", &hidden);
  cfg_num(cfg, "num_attention_heads", &heads);
  int has_hd = cfg_num(cfg, "head_dim", &hd);
  if (!has_hd && heads > 0) hd = (double)((long long)hidden / (long long)heads);
  if (!strcmp(arch, "llama") || !strcmp(arch, "qwen2moe") || !strcmp(arch, "qwen3moe") || !strcmp(arch, "olmoe")) {
    snprintf(key, sizeof key, "%s.rope.dimension_count", arch);
    kv_u32(k, key, (uint32_t)hd);
    if (has_hd) {
      snprintf(key, sizeof key, "%s.attention.key_length", arch);
      kv_u32(k, key, (uint32_t)hd);
      snprintf(key, sizeof key, "%s.attention.value_length", arch);
      kv_u32(k, key, (uint32_t)hd);
    }
  }
  if (!strncmp(mt, "deepseek", 8)) {
    double v, r;
    if (cfg_num(cfg, "norm_topk_prob", &v)) { snprintf(key, sizeof key, "%s.expert_weights_norm", arch); kv_bool(k, key, v != 0); }
    if (cfg_num(cfg, "qk_rope_head_dim", &r)) { snprintf(key, sizeof key, "%s.rope.dimension_count", arch); kv_u32(k, key, (uint32_t)r); }
    if (cfg_num(cfg, "qk_nope_head_dim", &v) && cfg_num(cfg, "qk_rope_head_dim", &r)) {
      snprintf(key, sizeof key, "%s.attention.key_length", arch);
      kv_u32(k, key, (uint32_t)(v + r));
    }
    if (cfg_num(cfg, "v_head_dim", &v)) { snprintf(key, sizeof key, "%s.attention.value_length", arch); kv_u32(k, key, (uint32_t)v); }
    snprintf(key, sizeof key, "%s.expert_gating_func", arch);
    kv_u32(k, key, !strcmp(mt, "deepseek_v3") ? 2 : 1);
  }
}

/* ---- tokenizer ----------------------------------------------------------------------------- */

static cJSON *load_json(const char *path) {
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

/* Adds the tokenizer.ggml.* keys. Returns 0 (also when there is no tokenizer.json) or -1. */
static int write_tokenizer(kvbuf *k, const char *dir, const cJSON *cfg, int64_t n_vocab, char *err, size_t errlen) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/tokenizer.json", dir);
  if (access(path, R_OK)) { /* no tokenizer: still record the special ids config.json names */
    double v;
    if (cfg_num(cfg, "bos_token_id", &v) && v >= 0) kv_u32(k, "tokenizer.ggml.bos_token_id", (uint32_t)v);
    if (cfg_num(cfg, "eos_token_id", &v) && v >= 0) kv_u32(k, "tokenizer.ggml.eos_token_id", (uint32_t)v);
    return 0;
  }
  cJSON *j = load_json(path);
  snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
  cJSON *tc = access(path, R_OK) ? NULL : load_json(path);
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
  const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
  const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
  const cJSON *added = cJSON_GetObjectItemCaseSensitive(j, "added_tokens");
  int rc = 0;
  if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges)) {
    rc = eng_errf(err, errlen, "%s/tokenizer.json: no BPE model.vocab / model.merges", dir);
    goto done;
  }
  int spm = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback"));
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
    if (!tok[i]) { snprintf(pad[i], sizeof pad[i], "[PAD%lld]", (long long)i); tok[i] = pad[i]; type[i] = 4; }
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
  kv_str(k, "tokenizer.ggml.model", spm ? "llama" : "gpt2");
  if (!spm) {
    const char *pre = "default";
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(j, "pre_tokenizer");
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(pt, "type");
    if (cJSON_IsString(ty) && !strcmp(ty->valuestring, "ByteLevel") &&
        !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(pt, "use_regex")))
      pre = "gpt-2";
    kv_str(k, "tokenizer.ggml.pre", pre);
  }
  kv_arr(k, "tokenizer.ggml.tokens", GGUF_T_STRING, (uint64_t)n);
  for (int64_t i = 0; i < n; i++) put_str(&k->b, tok[i], strlen(tok[i]));
  if (spm) {
    kv_arr(k, "tokenizer.ggml.scores", GGUF_T_F32, (uint64_t)n);
    put(&k->b, score, sizeof(float) * (size_t)n);
  }
  kv_arr(k, "tokenizer.ggml.token_type", GGUF_T_I32, (uint64_t)n);
  put(&k->b, type, sizeof(int32_t) * (size_t)n);
  if (!spm) {
    kv_arr(k, "tokenizer.ggml.merges", GGUF_T_STRING, (uint64_t)cJSON_GetArraySize(merges));
    for (const cJSON *m = merges->child; m; m = m->next) {
      char ab[2048];
      if (cJSON_IsString(m)) snprintf(ab, sizeof ab, "%s", m->valuestring);
      else if (cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) && cJSON_IsString(m->child->next))
        snprintf(ab, sizeof ab, "%s %s", m->child->valuestring, m->child->next->valuestring);
      else { rc = eng_errf(err, errlen, "%s/tokenizer.json: malformed merge", dir); goto free_arrays; }
      put_str(&k->b, ab, strlen(ab));
    }
  }
  int bos = token_id_of(vocab, added, cJSON_GetObjectItemCaseSensitive(tc, "bos_token"));
  int eos = token_id_of(vocab, added, cJSON_GetObjectItemCaseSensitive(tc, "eos_token"));
  double v;
  if (bos < 0 && cfg_num(cfg, "bos_token_id", &v)) bos = (int)v;
  if (eos < 0 && cfg_num(cfg, "eos_token_id", &v)) eos = (int)v;
  if (bos >= 0) kv_u32(k, "tokenizer.ggml.bos_token_id", (uint32_t)bos);
  if (eos >= 0) kv_u32(k, "tokenizer.ggml.eos_token_id", (uint32_t)eos);
  if (cJSON_IsString(unk)) { int u = token_id_of(vocab, added, unk); if (u >= 0) kv_u32(k, "tokenizer.ggml.unknown_token_id", (uint32_t)u); }
  const cJSON *ab = cJSON_GetObjectItemCaseSensitive(tc, "add_bos_token");
  if (cJSON_IsBool(ab)) kv_bool(k, "tokenizer.ggml.add_bos_token", cJSON_IsTrue(ab));
free_arrays:
  free(tok); free(type); free(score); free(pad);
done:
  cJSON_Delete(j);
  cJSON_Delete(tc);
  return rc;
}

/* ---- tensor plan ------------------------------------------------------------------------- */

typedef struct { const eng_st_tensor **e[3]; } layer_exps;

static int build_plan(plan *p, const eng_st_set *set, const cJSON *cfg, int mixtral, int64_t n_layers, int64_t n_exp,
                      const char *dir, char *err, size_t errlen) {
  double heads = 0, kvh = 0;
  cfg_num(cfg, "num_attention_heads", &heads);
  if (!cfg_num(cfg, "num_key_value_heads", &kvh)) kvh = heads;
  int permute = !strcmp(p->arch, "llama");
  layer_exps *le = calloc((size_t)n_layers, sizeof *le);
  if (!le) return eng_errf(err, errlen, "out of memory");
  int rc = 0;
  for (int i = 0; i < set->n_tensors && !rc; i++) {
    const eng_st_tensor *t = &set->tensors[i];
    const char *nm = t->name;
    char gname[128] = "", rest[256];
    int l = -1, e = -1, cn = 0;
    if (strstr(nm, "rotary_emb.inv_freq")) continue;
    if (!strcmp(nm, "model.embed_tokens.weight")) snprintf(gname, sizeof gname, "token_embd.weight");
    else if (!strcmp(nm, "model.norm.weight")) snprintf(gname, sizeof gname, "output_norm.weight");
    else if (!strcmp(nm, "lm_head.weight")) snprintf(gname, sizeof gname, "output.weight");
    else if (sscanf(nm, "model.layers.%d.%255s", &l, rest) == 2 && l >= 0 && l < n_layers) {
      for (int k = 0; eng_gguf_layer_names[k].gguf && !*gname; k++) {
        const eng_gguf_name *x = &eng_gguf_layer_names[k];
        if (!strcmp(rest, x->hf) || (x->hf_mixtral && !strcmp(rest, x->hf_mixtral)) ||
            (x->hf_deepseek && !strcmp(rest, x->hf_deepseek)))
          snprintf(gname, sizeof gname, "blk.%d.%s", l, x->gguf);
      }
      for (int k = 0; k < 3 && !*gname; k++) {
        char f1[96], f2[96];
        snprintf(f1, sizeof f1, "block_sparse_moe.experts.%%d.%s.weight%%n", eng_gguf_exp_mixtral[k]);
        snprintf(f2, sizeof f2, "mlp.experts.%%d.%s.weight%%n", eng_gguf_exp_hf[k]);
        if (((cn = 0, sscanf(rest, f1, &e, &cn) == 1 && rest[cn] == 0) ||
             (cn = 0, sscanf(rest, f2, &e, &cn) == 1 && rest[cn] == 0))) {
          if (e < 0 || e >= n_exp) { rc = eng_errf(err, errlen, "%s: tensor '%s': expert %d out of range (%lld experts)", dir, nm, e, (long long)n_exp); break; }
          if (!le[l].e[k] && !(le[l].e[k] = calloc((size_t)n_exp, sizeof(void *)))) { rc = eng_errf(err, errlen, "out of memory"); break; }
          le[l].e[k][e] = t;
          snprintf(gname, sizeof gname, "-");
        }
      }
      if (rc) break;
      if (!*gname && (!strcmp(rest, "mlp.experts.gate_up_proj") || !strcmp(rest, "mlp.experts.down_proj"))) {
        int gu = !strcmp(rest, "mlp.experts.gate_up_proj");
        if (t->ndim != 3 || t->shape[0] != n_exp || (gu && t->shape[1] % 2) || !eng_dtype_size(t->dtype)) {
          rc = eng_errf(err, errlen, "%s: packed tensor '%s' must be 3-D [%lld, rows, cols] of a float dtype", dir, nm, (long long)n_exp);
          break;
        }
        for (int h = 0; h < (gu ? 2 : 1); h++) {
          char g2[128];
          snprintf(g2, sizeof g2, "blk.%d.%s", l, gu ? eng_gguf_exps[h] : eng_gguf_exps[2]);
          out_tensor *o = plan_add(p, g2);
          if (!o) { rc = eng_errf(err, errlen, "out of memory"); break; }
          o->kind = SRC_PACKED;
          o->src = t;
          o->n_exp = n_exp;
          o->rows = gu ? t->shape[1] / 2 : t->shape[1];
          o->r0 = h * o->rows;
          o->n_dims = 3;
          o->ne[0] = t->shape[2]; o->ne[1] = o->rows; o->ne[2] = n_exp;
          choose_type(p, o);
        }
        snprintf(gname, sizeof gname, "-");
      }
    }
    if (rc) break;
    if (!*gname) { rc = eng_errf(err, errlen, "%s: tensor '%s' has no llama.cpp name (unsupported layout)", dir, nm); break; }
    if (!strcmp(gname, "-")) continue;
    if (t->ndim < 1 || t->ndim > 3) { rc = eng_errf(err, errlen, "%s: tensor '%s' has %d dims", dir, nm, t->ndim); break; }
    out_tensor *o = plan_add(p, gname);
    if (!o) { rc = eng_errf(err, errlen, "out of memory"); break; }
    o->kind = SRC_PLAIN;
    o->src = t;
    o->n_dims = t->ndim;
    for (int d = 0; d < t->ndim; d++) o->ne[d] = t->shape[t->ndim - 1 - d];
    size_t gl = strlen(gname);
    if (permute && gl > 14 && (!strcmp(gname + gl - 14, ".attn_q.weight") || !strcmp(gname + gl - 14, ".attn_k.weight"))) {
      o->permute_heads = (int64_t)(gname[gl - 8] == 'q' ? heads : kvh);
      if (o->n_dims != 2 || o->permute_heads <= 0 || o->ne[1] % o->permute_heads || (o->ne[1] / o->permute_heads) % 2) {
        rc = eng_errf(err, errlen, "%s: tensor '%s' rows do not split into %lld heads of even size", dir, nm, (long long)o->permute_heads);
        break;
      }
    }
    choose_type(p, o);
  }
  for (int64_t l = 0; l < n_layers && !rc; l++)
    for (int k = 0; k < 3 && !rc; k++) {
      if (!le[l].e[k]) continue;
      const eng_st_tensor *e0 = le[l].e[k][0];
      for (int64_t e = 0; e < n_exp && !rc; e++) {
        const eng_st_tensor *x = le[l].e[k][e];
        if (!x || !e0 || x->ndim != 2 || x->shape[0] != e0->shape[0] || x->shape[1] != e0->shape[1])
          rc = eng_errf(err, errlen, "%s: layer %lld: expert %lld of %s is missing or has another shape", dir, (long long)l,
                        (long long)e, eng_gguf_exp_hf[k]);
      }
      if (rc) break;
      char g2[128];
      snprintf(g2, sizeof g2, "blk.%lld.%s", (long long)l, eng_gguf_exps[k]);
      out_tensor *o = plan_add(p, g2);
      if (!o) { rc = eng_errf(err, errlen, "out of memory"); break; }
      o->kind = SRC_STACK;
      o->exp = le[l].e[k];
      le[l].e[k] = NULL; /* owned by the plan now */
      o->n_exp = n_exp;
      o->n_dims = 3;
      o->ne[0] = e0->shape[1]; o->ne[1] = e0->shape[0]; o->ne[2] = n_exp;
      choose_type(p, o);
    }
  for (int64_t l = 0; l < n_layers; l++) for (int k = 0; k < 3; k++) free(le[l].e[k]);
  free(le);
  (void)mixtral;
  return rc;
}

static int cmp_out(const void *a, const void *b) {
  const out_tensor *x = a, *y = b;
  int lx = -1, ly = -1;
  sscanf(x->name, "blk.%d.", &lx);
  sscanf(y->name, "blk.%d.", &ly);
  if (lx != ly) return lx < ly ? -1 : 1;
  return strcmp(x->name, y->name);
}

int eng_gguf_out_type(const char *s) {
  static const char *const n[] = {"f32", "f16", "bf16", "q8_0", "q4_0"};
  for (int i = 0; i < 5; i++) if (!strcasecmp(s, n[i])) return i;
  return -1;
}

int eng_gguf_convert(const char *dir, const char *out_path, int out_type, eng_gguf_progress progress, void *pu,
                     char *err, size_t errlen) {
  char path[PATH_MAX], tmp[PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/config.json", dir);
  cJSON *cfg = load_json(path);
  if (!cJSON_IsObject(cfg)) { cJSON_Delete(cfg); return eng_errf(err, errlen, "%s: missing or malformed config.json", dir); }
  const cJSON *mtj = cJSON_GetObjectItemCaseSensitive(cfg, "model_type");
  const char *mt = cJSON_IsString(mtj) ? mtj->valuestring : "";
  const char *arch = NULL;
  for (int i = 0; eng_gguf_arch_map[i][0]; i++) if (!strcmp(mt, eng_gguf_arch_map[i][0])) arch = eng_gguf_arch_map[i][1];
  double nl = 0, ne = 0, vocab = 0;
  cfg_num(cfg, "num_hidden_layers", &nl);
  if (!cfg_num(cfg, "num_local_experts", &ne) && !cfg_num(cfg, "num_experts", &ne)) cfg_num(cfg, "n_routed_experts", &ne);
  cfg_num(cfg, "vocab_size", &vocab);
  if (!arch || !strcmp(arch, "gpt-oss")) { /* format before cfg (which owns mt) is freed */
    eng_errf(err, errlen, "%s: model_type '%s' cannot be converted to GGUF (supported: mixtral, qwen2_moe, qwen3_moe, olmoe, deepseek_v2, deepseek_v3)", dir, mt);
    cJSON_Delete(cfg);
    return -1;
  }
  if (!(nl >= 1 && nl <= 4096) || !(ne >= 0 && ne <= 4096)) {
    cJSON_Delete(cfg);
    return eng_errf(err, errlen, "%s/config.json: implausible num_hidden_layers / experts", dir);
  }
  if (out_type < ENG_GGUF_OUT_F32 || out_type > ENG_GGUF_OUT_Q4_0) {
    cJSON_Delete(cfg);
    return eng_errf(err, errlen, "unknown GGUF output type %d", out_type);
  }
  eng_st_set set;
  if (eng_st_open_dir(&set, dir, err, errlen)) { cJSON_Delete(cfg); return -1; }
  plan p = {.out_type = out_type, .arch = arch};
  kvbuf kv = {0};
  FILE *f = NULL;
  float *fx = NULL;
  uint8_t *qx = NULL;
  int rc = build_plan(&p, &set, cfg, !strcmp(mt, "mixtral"), (int64_t)nl, (int64_t)ne, dir, err, errlen);
  if (rc) goto done;
  qsort(p.t, (size_t)p.n, sizeof *p.t, cmp_out);
  /* metadata */
  kv_str(&kv, "general.architecture", arch);
  const char *base = strrchr(dir, '/');
  base = base && base[1] ? base + 1 : dir;
  kv_str(&kv, "general.name", base);
  static const uint32_t ftype[] = {0, 1, 32, 7, 2}; /* LLAMA_FTYPE_ALL_F32, MOSTLY_F16, _BF16, _Q8_0, _Q4_0 */
  kv_u32(&kv, "general.file_type", ftype[out_type]);
  kv_u32(&kv, "general.quantization_version", 2);
  write_hparams(&kv, cfg, arch, mt);
  { /* the original config.json verbatim: moescope's reader prefers it to the llama.cpp keys,
     * which cannot express every field (mlp_only_layers, norm_topk_prob, rope_scaling, ...) */
    size_t cn = 0;
    char ce[256];
    char *ct = eng_read_file(path, &cn, (size_t)1 << 26, ce, sizeof ce);
    if (!ct) { rc = eng_errf(err, errlen, "%s", ce); goto done; }
    kv_key(&kv, ENG_GGUF_KEY_HF_CONFIG, GGUF_T_STRING);
    put_str(&kv.b, ct, cn);
    free(ct);
  }
  if (write_tokenizer(&kv, dir, cfg, (int64_t)vocab, err, errlen)) { rc = -1; goto done; }
  if (kv.b.oom) { rc = eng_errf(err, errlen, "out of memory"); goto done; }
  /* tensor infos */
  buf hdr = {0};
  put(&hdr, "GGUF", 4);
  put_u32(&hdr, 3);
  put_u64(&hdr, (uint64_t)p.n);
  put_u64(&hdr, kv.n);
  put(&hdr, kv.b.p, kv.b.n);
  uint64_t off = 0;
  size_t maxn = 0, maxb = 0;
  for (int i = 0; i < p.n; i++) {
    out_tensor *o = &p.t[i];
    put_str(&hdr, o->name, strlen(o->name));
    put_u32(&hdr, (uint32_t)o->n_dims);
    for (int d = 0; d < o->n_dims; d++) put_u64(&hdr, (uint64_t)o->ne[d]);
    put_u32(&hdr, (uint32_t)o->ggml_type);
    put_u64(&hdr, off);
    o->offset = off;
    off += (o->nbytes + ALIGN - 1) / ALIGN * ALIGN;
    if ((size_t)numel(o) > maxn) maxn = (size_t)numel(o);
    if (o->nbytes > maxb) maxb = o->nbytes;
  }
  static const uint8_t zeros[ALIGN];
  put(&hdr, zeros, (ALIGN - hdr.n % ALIGN) % ALIGN);
  if (hdr.oom) { free(hdr.p); rc = eng_errf(err, errlen, "out of memory"); goto done; }
  snprintf(tmp, sizeof tmp, "%s.tmp.%d", out_path, (int)getpid());
  f = fopen(tmp, "wb");
  if (!f) { free(hdr.p); rc = eng_errf(err, errlen, "%s: cannot create: %s", tmp, strerror(errno)); goto done; }
  int werr = fwrite(hdr.p, 1, hdr.n, f) != hdr.n;
  free(hdr.p);
  fx = malloc(sizeof(float) * (maxn ? maxn : 1));
  qx = malloc(maxb ? maxb : 1);
  if (!fx || !qx) { rc = eng_errf(err, errlen, "out of memory"); goto done; }
  for (int i = 0; i < p.n && !werr; i++) {
    out_tensor *o = &p.t[i];
    if (produce(o, fx, err, errlen)) { rc = -1; goto done; }
    encode(o, fx, qx);
    werr = fwrite(qx, 1, o->nbytes, f) != o->nbytes;
    size_t padn = (ALIGN - o->nbytes % ALIGN) % ALIGN;
    if (!werr && padn) werr = fwrite(zeros, 1, padn, f) != padn;
    if (progress) progress(pu, i + 1, p.n);
  }
  if (werr || fflush(f) || fsync(fileno(f))) { rc = eng_errf(err, errlen, "%s: write failed: %s", tmp, strerror(errno)); goto done; }
  if (fclose(f)) { f = NULL; rc = eng_errf(err, errlen, "%s: write failed: %s", tmp, strerror(errno)); goto done; }
  f = NULL;
  if (rename(tmp, out_path)) { rc = eng_errf(err, errlen, "%s: cannot rename into place: %s", out_path, strerror(errno)); goto done; }
  rc = 0;
done:
  if (f) fclose(f);
  if (rc && f != NULL) unlink(tmp);
  if (rc) { snprintf(tmp, sizeof tmp, "%s.tmp.%d", out_path, (int)getpid()); unlink(tmp); }
  free(fx);
  free(qx);
  for (int i = 0; i < p.n; i++) if (p.t[i].kind == SRC_STACK) free((void *)p.t[i].exp);
  free(p.t);
  free(kv.b.p);
  eng_st_close(&set);
  cJSON_Delete(cfg);
  return rc;
}
