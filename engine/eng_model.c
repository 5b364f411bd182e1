/* eng_model.c — loads config + safetensors weights into an eng_model (see header).
 * Every tensor is looked up under each known name variant of every family, its shape
 * checked against the config, and converted to float32. Per layer: attention (standard
 * GQA with optional biases / qk-norm / sinks, or DeepSeek MLA), then the FFN (dense MLP,
 * or router + routed experts + shared expert). */
#include "engine/eng_util.h"
#include "engine/eng_model.h"
#include "engine/eng_gguf.h"
#include "engine/eng_safetensors.h"

#include <limits.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct loader {
  eng_model *m;
  eng_st_set set;
  char *err;
  size_t errlen;
  size_t dt_count[ENG_DT_COUNT];
} loader;

static const char *tensor_file(loader *L, const eng_st_tensor *t) { return L->set.paths[t->file]; }

static int check_shape(loader *L, const eng_st_tensor *t, int ndim, const int64_t *dims) {
  int ok = t->ndim == ndim;
  for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == dims[i];
  if (ok && !eng_dtype_is_float(t->dtype))
    return eng_errf(L->err, L->errlen, "%s: tensor '%s' has dtype %s; weights must be F32, BF16 or F16",
                 tensor_file(L, t), t->name, eng_dtype_name(t->dtype));
  if (ok) return 0;
  char want[128] = "", got[128] = "";
  for (int i = 0; i < ndim; i++) snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i ? "," : "", (long long)dims[i]);
  for (int i = 0; i < t->ndim; i++) snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? "," : "", (long long)t->shape[i]);
  return eng_errf(L->err, L->errlen, "%s: tensor '%s' has shape [%s] but config.json implies [%s]",
               tensor_file(L, t), t->name, got, want);
}

/* Finds the first existing name of a NULL-terminated list. */
static const eng_st_tensor *find_any(loader *L, const char *const *names) {
  for (int i = 0; names[i]; i++) {
    const eng_st_tensor *t = eng_st_find(&L->set, names[i]);
    if (t) return t;
  }
  return NULL;
}

static int load_2d(loader *L, float **out, int64_t rows, int64_t cols, const char *const *names) {
  const eng_st_tensor *t = find_any(L, names);
  if (!t) return eng_errf(L->err, L->errlen, "%s: missing tensor '%s'", L->set.paths[0], names[0]);
  int64_t dims[2] = {rows, cols};
  int nd = cols > 0 ? 2 : 1;
  if (nd == 1) dims[0] = rows;
  if (check_shape(L, t, nd, dims)) return -1;
  *out = malloc(sizeof(float) * (size_t)eng_st_numel(t));
  if (!*out) return eng_errf(L->err, L->errlen, "out of memory loading '%s'", t->name);
  eng_st_to_f32(*out, t);
  L->dt_count[t->dtype] += (size_t)eng_st_numel(t);
  L->m->n_params += (size_t)eng_st_numel(t);
  return 0;
}

/* Copies rows [r0, r0+rows) of expert e of a packed 3-D tensor [E, R, C] as float32. */
static int load_packed(loader *L, float **out, const eng_st_tensor *t, int e, int64_t r0, int64_t rows, int64_t cols) {
  *out = malloc(sizeof(float) * (size_t)(rows * cols));
  if (!*out) return eng_errf(L->err, L->errlen, "out of memory loading '%s'", t->name);
  eng_st_tensor sub = *t;
  size_t es = eng_dtype_size(t->dtype);
  sub.ndim = 2; sub.shape[0] = rows; sub.shape[1] = cols;
  sub.data = t->data + ((size_t)e * t->shape[1] * t->shape[2] + (size_t)r0 * cols) * es;
  sub.nbytes = (size_t)(rows * cols) * es;
  eng_st_to_f32(*out, &sub);
  return 0;
}


/* Loads an optional tensor: absent -> *out = NULL, 0. */
static int load_opt(loader *L, float **out, int64_t rows, int64_t cols, const char *name) {
  *out = NULL;
  if (!eng_st_find(&L->set, name)) return 0;
  const char *names[] = {name, NULL};
  return load_2d(L, out, rows, cols, names);
}

#define LNAME(buf, ...) (snprintf(buf, sizeof buf, __VA_ARGS__), buf)

/* gpt-oss packed experts: gate_up_proj [E,H,2I] (x @ W, gate/up interleaved by column),
 * gate_up_proj_bias [E,2I], down_proj [E,I,H], down_proj_bias [E,H]; transposed here to
 * the engine's [out,in] rows with gate (even columns) and up (odd columns) split. */
static int load_experts_oai(loader *L, eng_layer *ly, int l) {
  const eng_config *c = &L->m->cfg;
  int64_t H = c->hidden, I = c->intermediate, E = c->n_experts;
  char n[4][256];
  const char *suf[4] = {"gate_up_proj", "gate_up_proj_bias", "down_proj", "down_proj_bias"};
  const eng_st_tensor *t[4];
  for (int j = 0; j < 4; j++) {
    t[j] = eng_st_find(&L->set, LNAME(n[j], "model.layers.%d.mlp.experts.%s", l, suf[j]));
    if (!t[j]) return eng_errf(L->err, L->errlen, "%s: missing tensor '%s'", L->set.paths[0], n[j]);
  }
  int64_t d0[3] = {E, H, 2 * I}, d1[2] = {E, 2 * I}, d2[3] = {E, I, H}, d3[2] = {E, H};
  if (check_shape(L, t[0], 3, d0) || check_shape(L, t[1], 2, d1) || check_shape(L, t[2], 3, d2) ||
      check_shape(L, t[3], 2, d3))
    return -1;
  float *tmp = malloc(sizeof(float) * (size_t)(H * 2 * I));
  if (!tmp) return eng_errf(L->err, L->errlen, "out of memory loading '%s'", n[0]);
  for (int e = 0; e < E; e++) {
    eng_expert *x = &ly->experts[e];
    x->w1 = malloc(sizeof(float) * (size_t)(I * H)); x->w3 = malloc(sizeof(float) * (size_t)(I * H));
    x->w2 = malloc(sizeof(float) * (size_t)(H * I)); x->b1 = malloc(sizeof(float) * (size_t)I);
    x->b3 = malloc(sizeof(float) * (size_t)I); x->b2 = malloc(sizeof(float) * (size_t)H);
    if (!x->w1 || !x->w3 || !x->w2 || !x->b1 || !x->b3 || !x->b2) { free(tmp); return eng_errf(L->err, L->errlen, "out of memory"); }
    size_t es = eng_dtype_size(t[0]->dtype);
    eng_dt_to_f32(tmp, t[0]->data + (size_t)e * H * 2 * I * es, t[0]->dtype, H * 2 * I);
    for (int64_t h = 0; h < H; h++)
      for (int64_t i = 0; i < I; i++) {
        x->w1[i * H + h] = tmp[h * 2 * I + 2 * i];
        x->w3[i * H + h] = tmp[h * 2 * I + 2 * i + 1];
      }
    eng_dt_to_f32(tmp, t[1]->data + (size_t)e * 2 * I * eng_dtype_size(t[1]->dtype), t[1]->dtype, 2 * I);
    for (int64_t i = 0; i < I; i++) { x->b1[i] = tmp[2 * i]; x->b3[i] = tmp[2 * i + 1]; }
    eng_dt_to_f32(tmp, t[2]->data + (size_t)e * I * H * eng_dtype_size(t[2]->dtype), t[2]->dtype, I * H);
    for (int64_t i = 0; i < I; i++)
      for (int64_t h = 0; h < H; h++) x->w2[h * I + i] = tmp[i * H + h];
    eng_dt_to_f32(x->b2, t[3]->data + (size_t)e * H * eng_dtype_size(t[3]->dtype), t[3]->dtype, H);
  }
  free(tmp);
  for (int j = 0; j < 4; j++) {
    L->dt_count[t[j]->dtype] += (size_t)eng_st_numel(t[j]);
    L->m->n_params += (size_t)eng_st_numel(t[j]);
  }
  return 0;
}

static int load_experts(loader *L, eng_layer *ly, int l) {
  const eng_config *c = &L->m->cfg;
  if (c->family == ENG_FAM_GPT_OSS) return load_experts_oai(L, ly, l);
  int64_t H = c->hidden, I = c->intermediate, E = c->n_experts;
  char n1[256], n2[256];
  snprintf(n1, sizeof n1, "model.layers.%d.mlp.experts.gate_up_proj", l);
  snprintf(n2, sizeof n2, "model.layers.%d.mlp.experts.down_proj", l);
  const eng_st_tensor *gu = eng_st_find(&L->set, n1), *dn = eng_st_find(&L->set, n2);
  if (gu || dn) { /* transformers-5 packed layout */
    if (!gu || !dn) return eng_errf(L->err, L->errlen, "%s: packed experts of layer %d need both gate_up_proj and down_proj",
                                 L->set.paths[0], l);
    int64_t d1[3] = {E, 2 * I, H}, d2[3] = {E, H, I};
    if (check_shape(L, gu, 3, d1) || check_shape(L, dn, 3, d2)) return -1;
    for (int e = 0; e < E; e++) {
      eng_expert *x = &ly->experts[e];
      if (load_packed(L, &x->w1, gu, e, 0, I, H) || load_packed(L, &x->w3, gu, e, I, I, H) ||
          load_packed(L, &x->w2, dn, e, 0, H, I))
        return -1;
    }
    L->dt_count[gu->dtype] += (size_t)(eng_st_numel(gu) + eng_st_numel(dn));
    L->m->n_params += (size_t)(eng_st_numel(gu) + eng_st_numel(dn));
    return 0;
  }
  for (int e = 0; e < E; e++) {
    eng_expert *x = &ly->experts[e];
    char a[256], b[256];
    const char *w[3] = {"w1", "w3", "w2"}, *alt[3] = {"gate_proj", "up_proj", "down_proj"};
    float **dst[3] = {&x->w1, &x->w3, &x->w2};
    for (int j = 0; j < 3; j++) {
      snprintf(a, sizeof a, "model.layers.%d.block_sparse_moe.experts.%d.%s.weight", l, e, w[j]);
      snprintf(b, sizeof b, "model.layers.%d.mlp.experts.%d.%s.weight", l, e, alt[j]);
      const char *names[] = {c->family == ENG_FAM_MIXTRAL ? a : b, c->family == ENG_FAM_MIXTRAL ? b : a, NULL};
      if (load_2d(L, dst[j], j == 2 ? H : I, j == 2 ? I : H, names)) return -1;
    }
  }
  return 0;
}

/* A SwiGLU MLP under prefix (gate_proj / up_proj / down_proj) of width I. */
static int load_mlp(loader *L, eng_expert *x, const char *prefix, int64_t I) {
  int64_t H = L->m->cfg.hidden;
  char n[3][256];
  const char *names0[] = {LNAME(n[0], "%sgate_proj.weight", prefix), NULL};
  const char *names1[] = {LNAME(n[1], "%sup_proj.weight", prefix), NULL};
  const char *names2[] = {LNAME(n[2], "%sdown_proj.weight", prefix), NULL};
  return load_2d(L, &x->w1, I, H, names0) || load_2d(L, &x->w3, I, H, names1) || load_2d(L, &x->w2, H, I, names2) ? -1 : 0;
}

static int load_attention(loader *L, eng_layer *ly, const char *p) {
  const eng_config *c = &L->m->cfg;
  int64_t H = c->hidden, nh = c->n_heads, hd = c->head_dim;
  char n[256];
  if (c->mla) {
    int64_t qk = c->qk_nope_dim + c->qk_rope_dim, kvr = c->kv_lora_rank, qr = c->q_lora_rank;
    if (qr > 0) {
      const char *a[] = {LNAME(n, "%sself_attn.q_a_proj.weight", p), NULL};
      if (load_2d(L, &ly->q_a, qr, H, a)) return -1;
      if (load_opt(L, &ly->b_q_a, qr, 0, LNAME(n, "%sself_attn.q_a_proj.bias", p))) return -1;
      const char *b[] = {LNAME(n, "%sself_attn.q_a_layernorm.weight", p), NULL};
      if (load_2d(L, &ly->q_a_norm, qr, 0, b)) return -1;
      const char *d[] = {LNAME(n, "%sself_attn.q_b_proj.weight", p), NULL};
      if (load_2d(L, &ly->q_b, nh * qk, qr, d)) return -1;
    } else {
      const char *a[] = {LNAME(n, "%sself_attn.q_proj.weight", p), NULL};
      if (load_2d(L, &ly->q, nh * qk, H, a)) return -1;
    }
    const char *k1[] = {LNAME(n, "%sself_attn.kv_a_proj_with_mqa.weight", p), NULL};
    if (load_2d(L, &ly->kv_a, kvr + c->qk_rope_dim, H, k1)) return -1;
    if (load_opt(L, &ly->b_kv_a, kvr + c->qk_rope_dim, 0, LNAME(n, "%sself_attn.kv_a_proj_with_mqa.bias", p))) return -1;
    const char *k2[] = {LNAME(n, "%sself_attn.kv_a_layernorm.weight", p), NULL};
    if (load_2d(L, &ly->kv_a_norm, kvr, 0, k2)) return -1;
    const char *k3[] = {LNAME(n, "%sself_attn.kv_b_proj.weight", p), NULL};
    if (load_2d(L, &ly->kv_b, nh * (c->qk_nope_dim + c->v_head_dim), kvr, k3)) return -1;
    const char *o[] = {LNAME(n, "%sself_attn.o_proj.weight", p), NULL};
    if (load_2d(L, &ly->o, H, nh * c->v_head_dim, o)) return -1;
    return load_opt(L, &ly->bo, H, 0, LNAME(n, "%sself_attn.o_proj.bias", p));
  }
  int64_t qd = nh * hd, kvd = (int64_t)c->n_kv_heads * hd;
  const char *pr[4] = {"q_proj", "k_proj", "v_proj", "o_proj"};
  float **w[4] = {&ly->q, &ly->k, &ly->v, &ly->o}, **bias[4] = {&ly->bq, &ly->bk, &ly->bv, &ly->bo};
  int64_t rows[4] = {qd, kvd, kvd, H}, cols[4] = {H, H, H, qd};
  for (int j = 0; j < 4; j++) {
    const char *names[] = {LNAME(n, "%sself_attn.%s.weight", p, pr[j]), NULL};
    if (load_2d(L, w[j], rows[j], cols[j], names)) return -1;
    if ((j < 3 ? c->qkv_bias : c->o_bias)) {
      const char *bn[] = {LNAME(n, "%sself_attn.%s.bias", p, pr[j]), NULL};
      if (load_2d(L, bias[j], rows[j], 0, bn)) return -1;
    }
  }
  if (c->qk_norm) {
    int full = c->qk_norm == ENG_QKNORM_FULL;
    const char *qn[] = {LNAME(n, "%sself_attn.q_norm.weight", p), NULL};
    if (load_2d(L, &ly->q_norm, full ? qd : hd, 0, qn)) return -1;
    const char *kn[] = {LNAME(n, "%sself_attn.k_norm.weight", p), NULL};
    if (load_2d(L, &ly->k_norm, full ? kvd : hd, 0, kn)) return -1;
  }
  if (c->attn_sinks) {
    const char *sn[] = {LNAME(n, "%sself_attn.sinks", p), NULL};
    if (load_2d(L, &ly->sinks, nh, 0, sn)) return -1;
  }
  return 0;
}

static int load_ffn(loader *L, eng_layer *ly, int l, const char *p) {
  const eng_config *c = &L->m->cfg;
  int64_t H = c->hidden, E = c->n_experts;
  char n[256], alt[256], alt2[256];
  if (!c->moe_layer[l]) return load_mlp(L, &ly->dense, LNAME(n, "%smlp.", p), c->dense_intermediate);
  int G = c->router.kind == ENG_ROUTER_HIER ? c->router.n_group : 0;
  const char *gn[] = {LNAME(n, "%sblock_sparse_moe.gate.weight", p), LNAME(alt, "%smlp.gate.weight", p),
                      LNAME(alt2, "%smlp.router.weight", p), NULL};
  if (c->family != ENG_FAM_MIXTRAL) { gn[0] = alt; gn[1] = alt2; gn[2] = n; }
  if (load_2d(L, &ly->gate, E, H, gn)) return -1;
  if (G) {   /* hierarchical: group gate rows appended after the expert rows */
    float *gg = NULL;
    const char *ggn[] = {LNAME(n, "%sblock_sparse_moe.group_gate.weight", p), NULL};
    if (load_2d(L, &gg, G, H, ggn)) return -1;
    float *both = realloc(ly->gate, sizeof(float) * (size_t)((E + G) * H));
    if (!both) { free(gg); return eng_errf(L->err, L->errlen, "out of memory"); }
    memcpy(both + E * H, gg, sizeof(float) * (size_t)(G * H));
    free(gg);
    ly->gate = both;
  }
  if (c->router_bias) {
    const char *bn[] = {LNAME(n, "%smlp.router.bias", p), NULL};
    if (load_2d(L, &ly->gate_bias, E, 0, bn)) return -1;
  }
  if (c->router.kind == ENG_ROUTER_SIGMOID_GROUP &&
      load_opt(L, &ly->score_bias, E, 0, LNAME(n, "%smlp.gate.e_score_correction_bias", p)))
    return -1;
  ly->experts = calloc((size_t)E, sizeof(eng_expert));
  if (!ly->experts) return eng_errf(L->err, L->errlen, "out of memory");
  if (load_experts(L, ly, l)) return -1;
  if (c->shared_intermediate > 0) {
    int qwen = c->family == ENG_FAM_QWEN2_MOE;
    if (load_mlp(L, &ly->shared, LNAME(n, "%smlp.%s.", p, qwen ? "shared_expert" : "shared_experts"), c->shared_intermediate))
      return -1;
    if (c->shared_gated) {
      const char *sg[] = {LNAME(n, "%smlp.shared_expert_gate.weight", p), NULL};
      if (load_2d(L, &ly->shared_gate, 1, H, sg)) return -1;
    }
  }
  return 0;
}

static int sha256_files(loader *L) {
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (!ctx) return -1;
  EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
  for (int i = 0; i < L->set.n_files; i++) EVP_DigestUpdate(ctx, L->set.maps[i], L->set.map_sizes[i]);
  unsigned char md[32];
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx, md, &n);
  EVP_MD_CTX_free(ctx);
  for (int i = 0; i < 32; i++) snprintf(L->m->sha256 + 2 * i, 3, "%02x", md[i]);
  return 0;
}

static int load_from_set(eng_model *m, loader *L) {
  const eng_config *c = &m->cfg;
  char *err = L->err;
  size_t errlen = L->errlen;
  int64_t H = c->hidden, V = c->vocab;
  int rc = 0;
  {
    const char *ne[] = {"model.embed_tokens.weight", NULL};
    const char *nn[] = {"model.norm.weight", NULL};
    const char *nl[] = {"lm_head.weight", NULL};
    if ((rc = load_2d(L, &m->embed, V, H, ne)) || (rc = load_2d(L, &m->final_norm, H, 0, nn))) return rc;
    if (c->tie_embeddings && !eng_st_find(&L->set, "lm_head.weight")) m->lm_head = NULL;
    else if ((rc = load_2d(L, &m->lm_head, V, H, nl))) return rc;
  }
  m->layers = calloc((size_t)c->n_layers, sizeof(eng_layer));
  if (!m->layers) return eng_errf(err, errlen, "out of memory");
  for (int l = 0; l < c->n_layers && rc == 0; l++) {
    eng_layer *ly = &m->layers[l];
    char p[128], n[256];
    snprintf(p, sizeof p, "model.layers.%d.", l);
    const char *a[] = {LNAME(n, "%sinput_layernorm.weight", p), NULL};
    if ((rc = load_2d(L, &ly->attn_norm, H, 0, a))) break;
    const char *b[] = {LNAME(n, "%spost_attention_layernorm.weight", p), NULL};
    if ((rc = load_2d(L, &ly->moe_norm, H, 0, b))) break;
    if ((rc = load_attention(L, ly, p))) break;
    rc = load_ffn(L, ly, l, p);
  }
  if (rc) return rc;
  size_t best = 0;
  for (int d = 0; d < ENG_DT_COUNT; d++)
    if (L->dt_count[d] > best) { best = L->dt_count[d]; snprintf(m->dtype, sizeof m->dtype, "%s", eng_dtype_name(d)); }
  size_t per_expert = (size_t)3 * c->hidden * c->intermediate;
  if (c->expert_bias) per_expert += (size_t)2 * c->intermediate + (size_t)c->hidden;
  m->n_active_params = m->n_params;
  for (int l = 0; l < c->n_layers; l++)
    if (c->moe_layer[l]) m->n_active_params -= (size_t)(c->n_experts - c->top_k) * per_expert;
  return 0;
}

int eng_model_load(eng_model *m, const char *dir, char *err, size_t errlen) {
  size_t dn = strlen(dir);
  if (dn > 5 && !strcasecmp(dir + dn - 5, ".gguf")) { /* a GGUF file: HF-named tensors + config from its metadata */
    eng_st_set set;
    char *cfg = NULL;
    if (eng_gguf_model_source(dir, &set, &cfg, err, errlen)) return -1;
    int rc = eng_model_load_set(m, dir, cfg, &set, err, errlen);
    free(cfg);
    eng_st_close(&set);
    return rc;
  }
  memset(m, 0, sizeof *m);
  snprintf(m->dir, sizeof m->dir, "%s", dir);
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/config.json", dir);
  if (eng_config_load(&m->cfg, path, err, errlen)) return -1;
  loader L = {.m = m, .err = err, .errlen = errlen};
  if (eng_st_open_dir(&L.set, dir, err, errlen)) return -1;
  int rc = load_from_set(m, &L);
  if (!rc) sha256_files(&L);
  eng_st_close(&L.set);
  if (rc) eng_model_free(m);
  return rc;
}

int eng_model_load_set(eng_model *m, const char *label, const char *config_json, eng_st_set *set, char *err,
                       size_t errlen) {
  memset(m, 0, sizeof *m);
  snprintf(m->dir, sizeof m->dir, "%s", label);
  if (eng_config_parse(&m->cfg, config_json, label, err, errlen)) return -1;
  loader L = {.m = m, .err = err, .errlen = errlen, .set = *set};
  int rc = load_from_set(m, &L);
  if (!rc) sha256_files(&L);
  if (rc) eng_model_free(m);
  return rc;
}

static void free_expert(eng_expert *x) {
  free(x->w1); free(x->w3); free(x->w2); free(x->b1); free(x->b3); free(x->b2);
}

void eng_model_free(eng_model *m) {
  if (m->layers) {
    for (int l = 0; l < m->cfg.n_layers; l++) {
      eng_layer *ly = &m->layers[l];
      void *p[] = {ly->attn_norm, ly->q, ly->k, ly->v, ly->o, ly->bq, ly->bk, ly->bv, ly->bo, ly->q_norm, ly->k_norm,
                   ly->sinks, ly->q_a, ly->q_a_norm, ly->q_b, ly->kv_a, ly->kv_a_norm, ly->kv_b, ly->b_q_a, ly->b_kv_a,
                   ly->moe_norm, ly->gate, ly->gate_bias, ly->score_bias, ly->shared_gate};
      for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) free(p[i]);
      if (ly->experts)
        for (int e = 0; e < m->cfg.n_experts; e++) free_expert(&ly->experts[e]);
      free(ly->experts);
      free_expert(&ly->dense);
      free_expert(&ly->shared);
    }
    free(m->layers);
  }
  free(m->embed); free(m->final_norm); free(m->lm_head);
  memset(m, 0, sizeof *m);
}
