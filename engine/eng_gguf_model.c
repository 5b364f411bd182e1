/* eng_gguf_model.c — presents a GGUF model to the engine the way a Hugging Face folder
 * looks (contract: eng_gguf_model_source / eng_gguf_config_json in eng_gguf.h): tensors
 * renamed to HF names in an eng_st_set that takes over the file mapping, stacked experts
 * (and gpt-oss's stacked expert biases) split into per-expert views, llama.cpp's Q/K row
 * permutation undone, DeepSeek's attn_k_b + attn_v_b (newer llama.cpp) joined back into
 * kv_b_proj, and a config.json text: moescope.hf_config when the file has it, else one built
 * from the llama.cpp metadata keys (<arch>.block_count, .embedding_length, ...; the key set
 * and the moescope.* extras are described in eng_gguf_meta.c), with what the keys do not
 * say taken from the tensors present (dense layers of Qwen-MoE = no ffn_gate_inp;
 * attention biases; FFN widths and MLA head sizes when their keys are absent). */
#include "engine/eng_util.h"
#include "engine/eng_gguf.h"
#include "engine/eng_gguf_names.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- config.json from metadata --------------------------------------------------------- */

static int arch_str(const eng_gguf *g, char *arch, size_t cap) {
  size_t n;
  const char *a = eng_gguf_get_str(g, "general.architecture", &n);
  if (!a || n == 0 || n >= cap) return -1;
  memcpy(arch, a, n);
  arch[n] = 0;
  return 0;
}

/* A numeric key (a per-layer array gives its first element). */
static int num_key(const eng_gguf *g, const char *key, double *v) {
  if (eng_gguf_get_float(g, key, v) == 0) return 1;
  const eng_gguf_kv *kv = eng_gguf_find(g, key);
  if (kv && kv->type == GGUF_T_ARRAY && kv->n > 0 && kv->arr_type != GGUF_T_STRING && kv->arr_type != GGUF_T_ARRAY) {
    *v = eng_gguf_arr_float(kv, 0);
    return 1;
  }
  return 0;
}

static int has_key(const eng_gguf *g, const char *arch, const char *k, double *v) {
  char key[256];
  snprintf(key, sizeof key, "%s.%s", arch, k);
  return num_key(g, key, v);
}

/* blk.<l>.<part> (l < 0: any layer) or NULL */
static const eng_gguf_tensor *layer_tensor(const eng_gguf *g, int l, const char *part) {
  char name[256];
  if (l >= 0) {
    snprintf(name, sizeof name, "blk.%d.%s", l, part);
    return eng_gguf_find_tensor(g, name);
  }
  for (uint64_t i = 0; i < g->n_tensors; i++) {
    int n = 0;
    if (sscanf(g->tensors[i].name, "blk.%*d.%n", &n) == 0 && n > 0 && !strcmp(g->tensors[i].name + n, part))
      return &g->tensors[i];
  }
  return NULL;
}

/* ne[d] of the first blk.*.<part>, or 0 */
static double tensor_dim(const eng_gguf *g, const char *part, int d) {
  const eng_gguf_tensor *t = layer_tensor(g, -1, part);
  return t && d < t->n_dims ? (double)t->ne[d] : 0;
}

/* c[k] = v when have (absent values are left to config.json's defaults) */
static void add_num(cJSON *c, const char *k, int have, double v) { if (have) cJSON_AddNumberToObject(c, k, v); }
/* c[k] = <arch>.<gk> when the file has it */
static void add_key(cJSON *c, const char *k, const eng_gguf *g, const char *arch, const char *gk) {
  double v;
  if (has_key(g, arch, gk, &v)) cJSON_AddNumberToObject(c, k, v);
}

/* rope_scaling from <arch>.rope.scaling.* (+ moescope.* overrides); see eng_gguf_meta.c. */
static void add_rope_scaling(cJSON *c, const eng_gguf *g, const char *arch, int ds, int oai) {
  char key[256];
  snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
  size_t n = 0;
  const char *ty = eng_gguf_get_str(g, key, &n);
  if (!ty || (n == 4 && !memcmp(ty, "none", 4))) return;
  cJSON *rs = cJSON_AddObjectToObject(c, "rope_scaling");
  if (!rs) return;
  char t[32];
  snprintf(t, sizeof t, "%.*s", (int)(n < 31 ? n : 31), ty);
  cJSON_AddStringToObject(rs, "rope_type", t);
  double v;
  add_key(rs, "factor", g, arch, "rope.scaling.factor");
  if (strcmp(t, "yarn")) return; /* the engine refuses other types with its own message */
  add_key(rs, "original_max_position_embeddings", g, arch, "rope.scaling.original_context_length");
  add_key(rs, "beta_fast", g, arch, "rope.scaling.yarn_beta_fast");
  add_key(rs, "beta_slow", g, arch, "rope.scaling.yarn_beta_slow");
  add_key(rs, "attention_factor", g, arch, "rope.scaling.yarn_attn_factor");
  double mad = 0;
  if (ds && has_key(g, arch, "rope.scaling.yarn_log_multiplier", &v)) mad = eng_gguf_mscale_from_log_mul((float)v);
  if (num_key(g, ENG_GGUF_KEY_YARN_MSCALE_ALL, &v)) mad = v;
  if (mad != 0) cJSON_AddNumberToObject(rs, "mscale_all_dim", mad);
  double ms = ds ? mad : 0; /* llama.cpp's deepseek2 YaRN has mscale == mscale_all_dim */
  if (num_key(g, ENG_GGUF_KEY_YARN_MSCALE, &v)) ms = v;
  if (ms != 0) cJSON_AddNumberToObject(rs, "mscale", ms);
  int trunc = !oai; /* gpt-oss: YaRN without rounding the correction range */
  if (num_key(g, ENG_GGUF_KEY_YARN_TRUNCATE, &v)) trunc = v != 0;
  cJSON_AddBoolToObject(rs, "truncate", trunc);
}

char *eng_gguf_config_json(const eng_gguf *g, char *err, size_t errlen) {
  char arch[64];
  if (arch_str(g, arch, sizeof arch)) {
    eng_errf(err, errlen, "%s: no general.architecture (not a model GGUF)", g->path);
    return NULL;
  }
  size_t hn = 0;
  const char *ht = eng_gguf_get_str(g, ENG_GGUF_KEY_HF_CONFIG, &hn);
  if (ht) { /* written by moescope convert: the source config.json verbatim */
    cJSON *h = cJSON_ParseWithLength(ht, hn);
    if (!cJSON_IsObject(h)) {
      cJSON_Delete(h);
      eng_errf(err, errlen, "%s: metadata key '%s' is not a JSON object", g->path, ENG_GGUF_KEY_HF_CONFIG);
      return NULL;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(h, "gguf_architecture");
    cJSON_AddStringToObject(h, "gguf_architecture", arch);
    char *txt = cJSON_Print(h);
    cJSON_Delete(h);
    if (!txt) eng_errf(err, errlen, "out of memory");
    return txt;
  }
  double v, n_exp = 0;
  has_key(g, arch, "expert_count", &n_exp);
  const char *mt = NULL;
  if (!strcmp(arch, "llama")) mt = n_exp > 0 ? "mixtral" : "llama";
  else if (!strcmp(arch, "deepseek2"))
    mt = (has_key(g, arch, "expert_gating_func", &v) && v == 2) || layer_tensor(g, -1, "exp_probs_b.bias") ? "deepseek_v3"
                                                                                                           : "deepseek_v2";
  else
    for (int i = 0; eng_gguf_arch_map[i][0]; i++)
      if (!strcmp(eng_gguf_arch_map[i][1], arch)) mt = eng_gguf_arch_map[i][0];
  if (!mt) mt = arch;
  int ds = !strncmp(mt, "deepseek", 8), oai = !strcmp(mt, "gpt_oss"), qwen = !strncmp(mt, "qwen", 4);
  cJSON *c = cJSON_CreateObject();
  if (!c) { eng_errf(err, errlen, "out of memory"); return NULL; }
  cJSON_AddStringToObject(c, "model_type", mt);
  cJSON_AddStringToObject(c, "gguf_architecture", arch);
  static const char *const req[][2] = {
    {"block_count", "num_hidden_layers"}, {"embedding_length", "hidden_size"},
    {"attention.head_count", "num_attention_heads"}, {0, 0}};
  for (int i = 0; req[i][0]; i++) {
    if (!has_key(g, arch, req[i][0], &v)) {
      cJSON_Delete(c);
      eng_errf(err, errlen, "%s: missing metadata key '%s.%s'", g->path, arch, req[i][0]);
      return NULL;
    }
    cJSON_AddNumberToObject(c, req[i][1], v);
  }
  double heads = 0, hidden = 0, layers = 0;
  has_key(g, arch, "attention.head_count", &heads);
  has_key(g, arch, "embedding_length", &hidden);
  has_key(g, arch, "block_count", &layers);
  int n_layers = layers > 0 && layers <= 4096 ? (int)layers : 0;
  cJSON_AddNumberToObject(c, "num_key_value_heads", has_key(g, arch, "attention.head_count_kv", &v) && !ds ? v : heads);
  if (!ds) {
    if (has_key(g, arch, "attention.key_length", &v)) cJSON_AddNumberToObject(c, "head_dim", v);
    else if (heads > 0) cJSON_AddNumberToObject(c, "head_dim", (double)((long long)hidden / (long long)heads));
  }
  /* FFN widths: routed experts, dense layers, shared expert (tensor shapes when keys are absent) */
  double ff = 0, eff = 0, sff = 0;
  int have_ff = has_key(g, arch, "feed_forward_length", &ff) || (ff = tensor_dim(g, "ffn_gate.weight", 1)) > 0;
  int have_eff = has_key(g, arch, "expert_feed_forward_length", &eff) || (eff = tensor_dim(g, "ffn_gate_exps.weight", 1)) > 0;
  if (qwen || ds) {
    add_num(c, "moe_intermediate_size", have_eff, eff);
    add_num(c, "intermediate_size", have_ff, ff);
  } else add_num(c, "intermediate_size", have_eff || have_ff, have_eff ? eff : ff);
  if (!strcmp(mt, "qwen2_moe") &&
      (has_key(g, arch, "expert_shared_feed_forward_length", &sff) || (sff = tensor_dim(g, "ffn_gate_shexp.weight", 1)) > 0))
    cJSON_AddNumberToObject(c, "shared_expert_intermediate_size", sff);
  if (n_exp > 0) {
    cJSON_AddNumberToObject(c, !strcmp(mt, "mixtral") || oai ? "num_local_experts" : ds ? "n_routed_experts" : "num_experts", n_exp);
    add_key(c, "num_experts_per_tok", g, arch, "expert_used_count");
  }
  add_key(c, "max_position_embeddings", g, arch, "context_length");
  add_key(c, "rms_norm_eps", g, arch, "attention.layer_norm_rms_epsilon");
  cJSON_AddNumberToObject(c, "rope_theta", has_key(g, arch, "rope.freq_base", &v) ? v : 10000.0);
  add_rope_scaling(c, g, arch, ds, oai);
  int bias = layer_tensor(g, -1, "attn_q.bias") != NULL;
  if (qwen || !strcmp(mt, "olmoe")) {
    int norm = !strcmp(mt, "qwen3_moe"); /* llama.cpp: qwen3moe renormalises, qwen2moe / olmoe do not */
    if (has_key(g, arch, "expert_weights_norm", &v)) norm = v != 0;
    cJSON_AddBoolToObject(c, "norm_topk_prob", norm);
    cJSON_AddBoolToObject(c, !strcmp(mt, "qwen2_moe") ? "qkv_bias" : "attention_bias", bias);
  }
  if (qwen) { /* dense layers are the ones without a router */
    cJSON *ml = cJSON_AddArrayToObject(c, "mlp_only_layers");
    for (int l = 0; ml && l < n_layers; l++)
      if (!layer_tensor(g, l, "ffn_gate_inp.weight")) cJSON_AddItemToArray(ml, cJSON_CreateNumber(l));
  }
  if (!strcmp(mt, "olmoe")) add_key(c, "clip_qkv", g, arch, "attention.clamp_kqv");
  if (ds) {
    static const char *const dk[][2] = {
      {"leading_dense_block_count", "first_k_dense_replace"}, {"expert_shared_count", "n_shared_experts"},
      {"expert_weights_scale", "routed_scaling_factor"}, {"expert_group_count", "n_group"},
      {"expert_group_used_count", "topk_group"}, {"attention.kv_lora_rank", "kv_lora_rank"},
      {"rope.dimension_count", "qk_rope_head_dim"}, {0, 0}};
    for (int i = 0; dk[i][0]; i++) add_key(c, dk[i][1], g, arch, dk[i][0]);
    if (!has_key(g, arch, "attention.kv_lora_rank", &v) && (v = tensor_dim(g, "attn_kv_a_norm.weight", 0)) > 0)
      cJSON_AddNumberToObject(c, "kv_lora_rank", v);
    /* no q_lora_rank key (DeepSeek-V2-Lite) or no attn_q_a tensor: q_proj directly */
    if (has_key(g, arch, "attention.q_lora_rank", &v) && v > 0 && layer_tensor(g, -1, "attn_q_a.weight"))
      cJSON_AddNumberToObject(c, "q_lora_rank", v);
    double rd = 0, kl = 0, vl = 0;
    has_key(g, arch, "rope.dimension_count", &rd);
    const eng_gguf_tensor *kb = layer_tensor(g, -1, ENG_GGUF_K_B), *vb = layer_tensor(g, -1, ENG_GGUF_V_B);
    if (has_key(g, arch, "attention.key_length_mla", &kl)) kl -= rd; /* newer llama.cpp: MLA sizes here */
    else if (kb && !layer_tensor(g, -1, "attn_kv_b.weight") && kb->n_dims == 3) kl = (double)kb->ne[0];
    else if (has_key(g, arch, "attention.key_length", &kl)) kl -= rd;
    else kl = -1;
    if (has_key(g, arch, "attention.value_length_mla", &vl)) {}
    else if (vb && !layer_tensor(g, -1, "attn_kv_b.weight") && vb->n_dims == 3) vl = (double)vb->ne[1];
    else if (!has_key(g, arch, "attention.value_length", &vl)) vl = -1;
    if (kl >= 0) cJSON_AddNumberToObject(c, "qk_nope_head_dim", kl);
    if (vl >= 0) cJSON_AddNumberToObject(c, "v_head_dim", vl);
    int v3 = !strcmp(mt, "deepseek_v3");
    if (v3) cJSON_AddBoolToObject(c, "norm_topk_prob", has_key(g, arch, "expert_weights_norm", &v) && v != 0);
    else {
      size_t n = 0;
      const char *tm = eng_gguf_get_str(g, ENG_GGUF_KEY_TOPK_METHOD, &n);
      double ng = 1, tg = 1;
      has_key(g, arch, "expert_group_count", &ng);
      has_key(g, arch, "expert_group_used_count", &tg);
      char m[32];
      snprintf(m, sizeof m, "%.*s", tm ? (int)(n < 31 ? n : 31) : 0, tm ? tm : "");
      cJSON_AddStringToObject(c, "topk_method", tm ? m : ng > 1 && tg < ng ? "group_limited_greedy" : "greedy");
    }
    if (num_key(g, ENG_GGUF_KEY_ROPE_INTERLEAVE, &v)) cJSON_AddBoolToObject(c, "rope_interleave", v != 0);
    cJSON_AddStringToObject(c, "scoring_func", v3 ? "sigmoid" : "softmax");
  }
  if (oai) {
    if (has_key(g, arch, "attention.sliding_window", &v) || has_key(g, arch, "sliding_window", &v))
      cJSON_AddNumberToObject(c, "sliding_window", v);
    const eng_gguf_kv *sl = eng_gguf_find(g, ENG_GGUF_KEY_SLIDING_LAYERS);
    cJSON *lt = cJSON_AddArrayToObject(c, "layer_types");
    for (int l = 0; lt && l < n_layers; l++) { /* llama.cpp: swa pattern 2, even layers sliding */
      int s = sl && sl->type == GGUF_T_ARRAY && (uint64_t)l < sl->n ? eng_gguf_arr_int(sl, (uint64_t)l) != 0 : l % 2 == 0;
      cJSON_AddItemToArray(lt, cJSON_CreateString(s ? "sliding_attention" : "full_attention"));
    }
    cJSON_AddNumberToObject(c, "swiglu_limit", num_key(g, ENG_GGUF_KEY_SWIGLU_LIMIT, &v) ? v : ENG_GGUF_OAI_SWIGLU_LIMIT);
    cJSON_AddBoolToObject(c, "attention_bias", bias);
  }
  const eng_gguf_tensor *emb = eng_gguf_find_tensor(g, "token_embd.weight");
  const eng_gguf_kv *toks = eng_gguf_find(g, "tokenizer.ggml.tokens");
  if (emb && emb->n_dims == 2) cJSON_AddNumberToObject(c, "vocab_size", (double)emb->ne[1]);
  else if (has_key(g, arch, "vocab_size", &v)) cJSON_AddNumberToObject(c, "vocab_size", v);
  else if (toks) cJSON_AddNumberToObject(c, "vocab_size", (double)toks->n);
  cJSON_AddBoolToObject(c, "tie_word_embeddings", emb && !eng_gguf_find_tensor(g, "output.weight"));
  int64_t id;
  if (eng_gguf_get_int(g, "tokenizer.ggml.bos_token_id", &id) == 0) cJSON_AddNumberToObject(c, "bos_token_id", (double)id);
  if (eng_gguf_get_int(g, "tokenizer.ggml.eos_token_id", &id) == 0) cJSON_AddNumberToObject(c, "eos_token_id", (double)id);
  int64_t ft = -1;
  eng_gguf_get_int(g, "general.file_type", &ft);
  cJSON_AddStringToObject(c, "torch_dtype", ft == 1 ? "float16" : ft == 32 ? "bfloat16" : "float32");
  if (!strcmp(mt, "mixtral")) {
    cJSON *a = cJSON_AddArrayToObject(c, "architectures");
    cJSON_AddItemToArray(a, cJSON_CreateString("MixtralForCausalLM"));
  }
  char *txt = cJSON_Print(c);
  cJSON_Delete(c);
  if (!txt) eng_errf(err, errlen, "out of memory");
  return txt;
}

/* ---- tensors ----------------------------------------------------------------------------- */

typedef struct {
  eng_st_set *set;
  int cap;
  const char *path;
  char *err;
  size_t errlen;
} builder;

static int add(builder *b, const char *name, int dtype, int ndim, const int64_t *shape, const uint8_t *data,
               size_t nbytes) {
  eng_st_set *s = b->set;
  if (s->n_tensors == b->cap) {
    int cap = b->cap ? b->cap * 2 : 256;
    eng_st_tensor *t = realloc(s->tensors, sizeof *t * (size_t)cap);
    if (!t) return eng_errf(b->err, b->errlen, "%s: out of memory", b->path);
    s->tensors = t;
    b->cap = cap;
  }
  eng_st_tensor *t = &s->tensors[s->n_tensors];
  memset(t, 0, sizeof *t);
  if (!(t->name = strdup(name))) return eng_errf(b->err, b->errlen, "%s: out of memory", b->path);
  s->n_tensors++;
  t->dtype = dtype;
  t->ndim = ndim;
  for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
  t->data = data;
  t->nbytes = nbytes;
  t->file = 0;
  return 0;
}

static int cmp_tensor(const void *a, const void *b) {
  return strcmp(((const eng_st_tensor *)a)->name, ((const eng_st_tensor *)b)->name);
}

/* llama.cpp's convert permutes Q/K rows of llama-architecture models (HF's rotate-half
 * RoPE -> ggml's interleaved pairs): GGUF row h*hd + 2i + j = HF row h*hd + j*hd/2 + i.
 * Undo it into a heap copy (rows are whole blocks, so this works for any type). */
static const uint8_t *unpermute(builder *b, const eng_gguf_tensor *t, int64_t n_head) {
  int64_t rows = t->ne[1];
  if (t->n_dims != 2 || n_head <= 0 || rows % n_head || (rows / n_head) % 2) {
    eng_errf(b->err, b->errlen, "%s: tensor '%s' rows %lld do not split into %lld heads of even size", b->path,
             t->name, (long long)rows, (long long)n_head);
    return NULL;
  }
  size_t rb = t->nbytes / (size_t)rows;
  int64_t hd = rows / n_head, half = hd / 2;
  uint8_t *o = malloc(t->nbytes ? t->nbytes : 1);
  if (!o || eng_st_own(b->set, o)) { eng_errf(b->err, b->errlen, "%s: out of memory", b->path); return NULL; }
  for (int64_t h = 0; h < n_head; h++)
    for (int64_t j = 0; j < 2; j++)
      for (int64_t i = 0; i < half; i++)
        memcpy(o + (size_t)(h * hd + j * half + i) * rb, t->data + (size_t)(h * hd + 2 * i + j) * rb, rb);
  return o;
}

/* Newer llama.cpp splits DeepSeek's kv_b_proj [n_head*(nope+v), kv_lora] into attn_k_b
 * (ne [nope, kv_lora, n_head]: each head's K rows transposed) and attn_v_b (ne [kv_lora, v,
 * n_head]: each head's V rows). Joins them back into a heap copy the set owns, element by
 * element in their own float type (F32 when the two differ); quantised halves are refused. */
static int join_kv_b(builder *b, const eng_gguf_tensor *kb, const eng_gguf_tensor *vb, int layer) {
  if (kb->n_dims != 3 || vb->n_dims != 3 || kb->ne[1] != vb->ne[0] || kb->ne[2] != vb->ne[2])
    return eng_errf(b->err, b->errlen, "%s: '%s' and '%s' do not fit together (ne [nope, kv_lora, n_head] and [kv_lora, v, n_head])",
                    b->path, kb->name, vb->name);
  int dk = eng_ggml_to_dtype(kb->ggml_type), dv = eng_ggml_to_dtype(vb->ggml_type);
  for (int i = 0; i < 2; i++) {
    int d = i ? dv : dk;
    if (d != ENG_DT_F32 && d != ENG_DT_F16 && d != ENG_DT_BF16)
      return eng_errf(b->err, b->errlen, "%s: tensor '%s' is %s; joining attn_k_b/attn_v_b into kv_b_proj needs F32, F16 or BF16",
                      b->path, (i ? vb : kb)->name, eng_ggml_type_name((i ? vb : kb)->ggml_type));
  }
  int64_t nope = kb->ne[0], R = kb->ne[1], nh = kb->ne[2], v = vb->ne[1], W = nope + v;
  int out = dk == dv ? dk : ENG_DT_F32;
  size_t es = eng_dtype_size(out), ek = eng_dtype_size(dk), ev = eng_dtype_size(dv);
  uint8_t *o = malloc((size_t)(nh * W * R) * es + 1);
  if (!o || eng_st_own(b->set, o)) { free(o); return eng_errf(b->err, b->errlen, "%s: out of memory", b->path); }
  for (int64_t h = 0; h < nh; h++)
    for (int64_t j = 0; j < R; j++) {
      for (int64_t i = 0; i < nope; i++) { /* K: kv_b[h*W + i][j] = k_b[h][j][i] */
        const uint8_t *src = kb->data + (size_t)((h * R + j) * nope + i) * ek;
        uint8_t *dst = o + (size_t)((h * W + i) * R + j) * es;
        if (out == dk) memcpy(dst, src, es);
        else eng_dt_to_f32((float *)(void *)dst, src, dk, 1);
      }
      for (int64_t i = 0; i < v; i++) { /* V: kv_b[h*W + nope + i][j] = v_b[h][i][j] */
        const uint8_t *src = vb->data + (size_t)((h * v + i) * R + j) * ev;
        uint8_t *dst = o + (size_t)((h * W + nope + i) * R + j) * es;
        if (out == dv) memcpy(dst, src, es);
        else eng_dt_to_f32((float *)(void *)dst, src, dv, 1);
      }
    }
  char name[256];
  snprintf(name, sizeof name, "model.layers.%d.self_attn.kv_b_proj.weight", layer);
  int64_t shape[2] = {nh * W, R};
  return add(b, name, out, 2, shape, o, (size_t)(nh * W * R) * es);
}

/* Every layer's attn_k_b + attn_v_b pair (ignored where attn_kv_b is there too). */
static int join_all_kv_b(builder *b, const eng_gguf *g) {
  for (uint64_t i = 0; i < g->n_tensors; i++) {
    const eng_gguf_tensor *t = &g->tensors[i];
    int layer = -1, n = 0;
    if (sscanf(t->name, "blk.%d.%n", &layer, &n) != 1 || layer < 0 || n <= 0) continue;
    int is_k = !strcmp(t->name + n, ENG_GGUF_K_B);
    if (!is_k && strcmp(t->name + n, ENG_GGUF_V_B)) continue;
    char other[256], kv[256];
    snprintf(other, sizeof other, "blk.%d.%s", layer, is_k ? ENG_GGUF_V_B : ENG_GGUF_K_B);
    snprintf(kv, sizeof kv, "blk.%d.attn_kv_b.weight", layer);
    if (eng_gguf_find_tensor(g, kv)) continue;
    const eng_gguf_tensor *o = eng_gguf_find_tensor(g, other);
    if (!o) return eng_errf(b->err, b->errlen, "%s: tensor '%s' has no '%s' to form kv_b_proj", b->path, t->name, other);
    if (is_k && join_kv_b(b, t, o, layer)) return -1;
  }
  return 0;
}

int eng_gguf_model_source(const char *path, eng_st_set *set, char **config_json_text, char *err, size_t errlen) {
  memset(set, 0, sizeof *set);
  *config_json_text = NULL;
  eng_gguf g;
  if (eng_gguf_open(&g, path, err, errlen)) return -1;
  char *cfg = eng_gguf_config_json(&g, err, errlen);
  if (!cfg) { eng_gguf_close(&g); return -1; }
  builder b = {.set = set, .path = path, .err = err, .errlen = errlen};
  int rc = -1;
  /* the set takes over the mapping */
  set->paths = malloc(sizeof(char *));
  set->maps = malloc(sizeof(void *));
  set->map_sizes = malloc(sizeof(size_t));
  if (!set->paths || !set->maps || !set->map_sizes || !(set->paths[0] = strdup(path))) {
    eng_errf(err, errlen, "%s: out of memory", path);
    free(set->paths); free(set->maps); free(set->map_sizes);
    memset(set, 0, sizeof *set);
    goto fail_g;
  }
  set->maps[0] = (void *)g.base;
  set->map_sizes[0] = g.size;
  set->n_files = 1;
  g.mapped = 0;
  char arch[64] = "";
  arch_str(&g, arch, sizeof arch);
  int is_mixtral = strstr(cfg, "\"mixtral\"") != NULL, is_ds = !strcmp(arch, "deepseek2");
  int permute_qk = !strcmp(arch, "llama");
  double nh = 0, nkv = 0;
  has_key(&g, arch, "attention.head_count", &nh);
  if (!has_key(&g, arch, "attention.head_count_kv", &nkv)) nkv = nh;
  for (uint64_t i = 0; i < g.n_tensors; i++) {
    const eng_gguf_tensor *t = &g.tensors[i];
    int dt = eng_ggml_to_dtype(t->ggml_type);
    if (dt < 0) {
      eng_errf(err, errlen, "%s: tensor '%s' has type %s; supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K", path, t->name,
               eng_ggml_type_name(t->ggml_type));
      goto fail;
    }
    int64_t shape[ENG_GGUF_MAX_DIMS];
    for (int d = 0; d < t->n_dims; d++) shape[d] = t->ne[t->n_dims - 1 - d];
    char name[512];
    const uint8_t *data = t->data;
    int layer = -1, used = 0;
    char part[256] = "";
    if (!strcmp(t->name, "token_embd.weight")) snprintf(name, sizeof name, "model.embed_tokens.weight");
    else if (!strcmp(t->name, "output_norm.weight")) snprintf(name, sizeof name, "model.norm.weight");
    else if (!strcmp(t->name, "output.weight")) snprintf(name, sizeof name, "lm_head.weight");
    else if (sscanf(t->name, "blk.%d.%255s", &layer, part) == 2 && layer >= 0) {
      snprintf(name, sizeof name, "%s", t->name); /* unknown part: keep the GGUF name */
      if (is_ds && (!strcmp(part, ENG_GGUF_K_B) || !strcmp(part, ENG_GGUF_V_B))) continue; /* joined below */
      const eng_gguf_name *nm = NULL;
      for (int pass = 0; pass < 2 && !nm; pass++) /* this architecture's own names first */
        for (int k = 0; eng_gguf_layer_names[k].gguf && !nm; k++) {
          const eng_gguf_name *x = &eng_gguf_layer_names[k];
          if (pass == 0 ? !x->arch || strcmp(x->arch, arch) : x->arch != NULL) continue;
          if (!strcmp(part, x->gguf)) nm = x;
        }
      if (nm) {
        const char *hf = is_mixtral && nm->hf_mixtral ? nm->hf_mixtral : is_ds && nm->hf_deepseek ? nm->hf_deepseek : nm->hf;
        snprintf(name, sizeof name, "model.layers.%d.%s", layer, hf);
        if (permute_qk && (!strcmp(part, "attn_q.weight") || !strcmp(part, "attn_k.weight"))) {
          data = unpermute(&b, t, (int64_t)(!strcmp(part, "attn_q.weight") ? nh : nkv));
          if (!data) goto fail;
        }
      }
      for (int k = 0; k < 3 && !used; k++) {
        int e = -1, cn = 0;
        static const char *const legacy[3] = {"ffn_gate.%d.weight%n", "ffn_up.%d.weight%n", "ffn_down.%d.weight%n"};
        if (!strcmp(part, eng_gguf_exps[k])) { /* stacked [E, rows, cols] -> per-expert views */
          if (t->n_dims != 3) {
            eng_errf(err, errlen, "%s: tensor '%s' must be 3-D [experts, rows, cols]", path, t->name);
            goto fail;
          }
          size_t per = t->nbytes / (size_t)(t->ne[2] ? t->ne[2] : 1);
          for (int64_t x = 0; x < t->ne[2]; x++) {
            snprintf(name, sizeof name, is_mixtral ? "model.layers.%d.block_sparse_moe.experts.%lld.%s.weight"
                                                   : "model.layers.%d.mlp.experts.%lld.%s.weight",
                     layer, (long long)x, is_mixtral ? eng_gguf_exp_mixtral[k] : eng_gguf_exp_hf[k]);
            if (add(&b, name, dt, 2, shape + 1, t->data + per * (size_t)x, per)) goto fail;
          }
          used = 1;
        } else if (!strcmp(part, eng_gguf_exps_bias[k])) { /* gpt-oss [E, rows] -> per-expert vectors */
          if (t->n_dims != 2) {
            eng_errf(err, errlen, "%s: tensor '%s' must be 2-D [experts, rows]", path, t->name);
            goto fail;
          }
          size_t per = t->nbytes / (size_t)(t->ne[1] ? t->ne[1] : 1);
          for (int64_t x = 0; x < t->ne[1]; x++) {
            snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%lld.%s.bias", layer, (long long)x, eng_gguf_exp_hf[k]);
            if (add(&b, name, dt, 1, shape + 1, t->data + per * (size_t)x, per)) goto fail;
          }
          used = 1;
        } else if (sscanf(part, legacy[k], &e, &cn) == 1 && part[cn] == 0 && e >= 0) { /* blk.N.ffn_gate.E.weight */
          snprintf(name, sizeof name, is_mixtral ? "model.layers.%d.block_sparse_moe.experts.%d.%s.weight"
                                                 : "model.layers.%d.mlp.experts.%d.%s.weight",
                   layer, e, is_mixtral ? eng_gguf_exp_mixtral[k] : eng_gguf_exp_hf[k]);
        }
      }
      if (used) continue;
    } else snprintf(name, sizeof name, "%s", t->name);
    if (add(&b, name, dt, t->n_dims, shape, data, t->nbytes)) goto fail;
  }
  if (is_ds && join_all_kv_b(&b, &g)) goto fail;
  qsort(set->tensors, (size_t)set->n_tensors, sizeof *set->tensors, cmp_tensor);
  for (int i = 1; i < set->n_tensors; i++)
    if (!strcmp(set->tensors[i].name, set->tensors[i - 1].name)) {
      eng_errf(err, errlen, "%s: two GGUF tensors both map to '%s'", path, set->tensors[i].name);
      goto fail;
    }
  rc = 0;
  *config_json_text = cfg;
  cfg = NULL;
fail:
  if (rc) eng_st_close(set);
fail_g:
  free(cfg);
  eng_gguf_close(&g);
  return rc;
}
