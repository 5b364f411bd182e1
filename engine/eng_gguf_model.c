/* eng_gguf_model.c — presents a GGUF model to the engine the way a Hugging Face folder
 * looks (contract: eng_gguf_model_source / eng_gguf_config_json in eng_gguf.h): tensors
 * renamed to HF names in an eng_st_set that takes over the file mapping, stacked experts
 * split into per-expert views, llama.cpp's Q/K row permutation undone, and a config.json
 * text built from the llama.cpp metadata keys (<arch>.block_count, .embedding_length, ...). */
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

static int has_key(const eng_gguf *g, const char *arch, const char *k, double *v) {
  char key[256];
  snprintf(key, sizeof key, "%s.%s", arch, k);
  return eng_gguf_get_float(g, key, v) == 0;
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
  else if (!strcmp(arch, "deepseek2")) mt = has_key(g, arch, "expert_gating_func", &v) && v == 2 ? "deepseek_v3" : "deepseek_v2";
  else
    for (int i = 0; eng_gguf_arch_map[i][0]; i++)
      if (!strcmp(eng_gguf_arch_map[i][1], arch)) mt = eng_gguf_arch_map[i][0];
  if (!mt) mt = arch;
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
  double heads = 0, hidden = 0;
  has_key(g, arch, "attention.head_count", &heads);
  has_key(g, arch, "embedding_length", &hidden);
  cJSON_AddNumberToObject(c, "num_key_value_heads", has_key(g, arch, "attention.head_count_kv", &v) ? v : heads);
  if (has_key(g, arch, "attention.key_length", &v)) cJSON_AddNumberToObject(c, "head_dim", v);
  else if (heads > 0) cJSON_AddNumberToObject(c, "head_dim", (double)((long long)hidden / (long long)heads));
  int moe_split = strcmp(mt, "mixtral") && strcmp(mt, "olmoe") && strcmp(mt, "llama");
  if (has_key(g, arch, "feed_forward_length", &v)) cJSON_AddNumberToObject(c, "intermediate_size", v);
  if (has_key(g, arch, "expert_feed_forward_length", &v)) {
    if (moe_split) cJSON_AddNumberToObject(c, "moe_intermediate_size", v);
    else if (!cJSON_GetObjectItemCaseSensitive(c, "intermediate_size")) cJSON_AddNumberToObject(c, "intermediate_size", v);
  }
  if (has_key(g, arch, "expert_shared_feed_forward_length", &v))
    cJSON_AddNumberToObject(c, "shared_expert_intermediate_size", v);
  if (n_exp > 0) {
    cJSON_AddNumberToObject(c, !strcmp(mt, "mixtral") ? "num_local_experts"
                               : !strncmp(mt, "deepseek", 8) ? "n_routed_experts" : "num_experts", n_exp);
    if (has_key(g, arch, "expert_used_count", &v)) cJSON_AddNumberToObject(c, "num_experts_per_tok", v);
  }
  if (has_key(g, arch, "context_length", &v)) cJSON_AddNumberToObject(c, "max_position_embeddings", v);
  if (has_key(g, arch, "attention.layer_norm_rms_epsilon", &v)) cJSON_AddNumberToObject(c, "rms_norm_eps", v);
  cJSON_AddNumberToObject(c, "rope_theta", has_key(g, arch, "rope.freq_base", &v) ? v : 10000.0);
  if (!strcmp(mt, "qwen2_moe") || !strcmp(mt, "olmoe")) cJSON_AddBoolToObject(c, "norm_topk_prob", 0);
  if (!strcmp(mt, "qwen3_moe")) cJSON_AddBoolToObject(c, "norm_topk_prob", 1);
  if (!strncmp(mt, "deepseek", 8)) {
    static const char *const ds[][2] = {
      {"leading_dense_block_count", "first_k_dense_replace"}, {"expert_shared_count", "n_shared_experts"},
      {"expert_weights_scale", "routed_scaling_factor"}, {"expert_group_count", "n_group"},
      {"expert_group_used_count", "topk_group"}, {"attention.q_lora_rank", "q_lora_rank"},
      {"attention.kv_lora_rank", "kv_lora_rank"}, {"rope.dimension_count", "qk_rope_head_dim"},
      {"attention.value_length", "v_head_dim"}, {0, 0}};
    for (int i = 0; ds[i][0]; i++)
      if (has_key(g, arch, ds[i][0], &v)) cJSON_AddNumberToObject(c, ds[i][1], v);
    double kl, rd;
    if (has_key(g, arch, "attention.key_length", &kl) && has_key(g, arch, "rope.dimension_count", &rd))
      cJSON_AddNumberToObject(c, "qk_nope_head_dim", kl - rd);
    if (has_key(g, arch, "expert_weights_norm", &v)) cJSON_AddBoolToObject(c, "norm_topk_prob", v != 0);
    cJSON_AddStringToObject(c, "scoring_func", !strcmp(mt, "deepseek_v3") ? "sigmoid" : "softmax");
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
      eng_errf(err, errlen, "%s: tensor '%s' has type %s; supported: F32, F16, BF16, Q8_0, Q4_0", path, t->name,
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
      for (int k = 0; eng_gguf_layer_names[k].gguf; k++) {
        const eng_gguf_name *nm = &eng_gguf_layer_names[k];
        if (strcmp(part, nm->gguf)) continue;
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
