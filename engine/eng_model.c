/* eng_model.c — loads config + safetensors weights into an eng_model (see header).
 * Every tensor is looked up under each known name variant, its shape checked against
 * the config, and converted to float32. */
#include "engine/eng_util.h"
#include "engine/eng_model.h"
#include "engine/eng_safetensors.h"

#include <limits.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
  if (ok && t->dtype != ENG_DT_F32 && t->dtype != ENG_DT_BF16 && t->dtype != ENG_DT_F16 && t->dtype != ENG_DT_F64)
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

static int load_experts(loader *L, eng_layer *ly, int l) {
  const eng_config *c = &L->m->cfg;
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
      const char *names[] = {a, b, NULL};
      if (load_2d(L, dst[j], j == 2 ? H : I, j == 2 ? I : H, names)) return -1;
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

int eng_model_load(eng_model *m, const char *dir, char *err, size_t errlen) {
  memset(m, 0, sizeof *m);
  snprintf(m->dir, sizeof m->dir, "%s", dir);
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/config.json", dir);
  if (eng_config_load(&m->cfg, path, err, errlen)) return -1;
  const eng_config *c = &m->cfg;
  loader L = {.m = m, .err = err, .errlen = errlen};
  if (eng_st_open_dir(&L.set, dir, err, errlen)) return -1;
  int64_t H = c->hidden, V = c->vocab, E = c->n_experts;
  int64_t qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
  int rc = 0;
  {
    const char *ne[] = {"model.embed_tokens.weight", NULL};
    const char *nn[] = {"model.norm.weight", NULL};
    const char *nl[] = {"lm_head.weight", NULL};
    if ((rc = load_2d(&L, &m->embed, V, H, ne)) || (rc = load_2d(&L, &m->final_norm, H, 0, nn))) goto done;
    if (c->tie_embeddings && !eng_st_find(&L.set, "lm_head.weight")) m->lm_head = NULL;
    else if ((rc = load_2d(&L, &m->lm_head, V, H, nl))) goto done;
  }
  m->layers = calloc((size_t)c->n_layers, sizeof(eng_layer));
  if (!m->layers) { rc = eng_errf(err, errlen, "out of memory"); goto done; }
  for (int l = 0; l < c->n_layers && rc == 0; l++) {
    eng_layer *ly = &m->layers[l];
    char p[128], n[7][256], alt[256];
    snprintf(p, sizeof p, "model.layers.%d.", l);
    const char *suffix[7] = {"input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
                             "self_attn.v_proj.weight", "self_attn.o_proj.weight",
                             "post_attention_layernorm.weight", "block_sparse_moe.gate.weight"};
    float **dst[7] = {&ly->attn_norm, &ly->q, &ly->k, &ly->v, &ly->o, &ly->moe_norm, &ly->gate};
    int64_t rows[7] = {H, qd, kvd, kvd, H, H, E}, cols[7] = {0, H, H, H, qd, 0, H};
    for (int j = 0; j < 7 && rc == 0; j++) {
      snprintf(n[j], sizeof n[j], "%s%s", p, suffix[j]);
      snprintf(alt, sizeof alt, "%smlp.gate.weight", p);
      const char *names[] = {n[j], j == 6 ? alt : NULL, NULL};
      rc = load_2d(&L, dst[j], rows[j], cols[j], names);
    }
    if (rc) break;
    ly->experts = calloc((size_t)E, sizeof(eng_expert));
    if (!ly->experts) { rc = eng_errf(err, errlen, "out of memory"); break; }
    rc = load_experts(&L, ly, l);
  }
  if (rc) goto done;
  {
    size_t best = 0;
    for (int d = 0; d < ENG_DT_COUNT; d++)
      if (L.dt_count[d] > best) { best = L.dt_count[d]; snprintf(m->dtype, sizeof m->dtype, "%s", eng_dtype_name(d)); }
    size_t per_expert = (size_t)3 * c->hidden * c->intermediate;
    m->n_active_params = m->n_params - (size_t)c->n_layers * (size_t)(c->n_experts - c->top_k) * per_expert;
    sha256_files(&L);
  }
done:
  eng_st_close(&L.set);
  if (rc) eng_model_free(m);
  return rc;
}

void eng_model_free(eng_model *m) {
  if (m->layers) {
    for (int l = 0; l < m->cfg.n_layers; l++) {
      eng_layer *ly = &m->layers[l];
      free(ly->attn_norm); free(ly->q); free(ly->k); free(ly->v); free(ly->o);
      free(ly->moe_norm); free(ly->gate);
      if (ly->experts)
        for (int e = 0; e < m->cfg.n_experts; e++) {
          free(ly->experts[e].w1); free(ly->experts[e].w3); free(ly->experts[e].w2);
        }
      free(ly->experts);
    }
    free(m->layers);
  }
  free(m->embed); free(m->final_norm); free(m->lm_head);
  memset(m, 0, sizeof *m);
}
