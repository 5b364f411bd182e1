/* eng_model.c — loads config + safetensors weights into an eng_model (see header).
 * Every tensor is looked up under each known name variant of every family, its shape
 * checked against the config; matrices become krn_w views into the mapping (per-expert
 * row ranges of packed 3-D tensors included), vectors float32 copies, and the few layouts
 * that need a transform float32 copies (gpt-oss packed experts, hierarchical gate, F64;
 * gpt-oss experts from GGUF come per expert as [out,in] views plus bias vectors). Per
 * layer: attention (standard GQA with optional biases / qk-norm / sinks, or DeepSeek MLA),
 * then the FFN (dense MLP, or router + routed experts + shared expert). */
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

/* kernels/ cannot see eng_dtype; its weight type codes must be the same numbers */
_Static_assert((int)KRN_DT_F32 == (int)ENG_DT_F32 && (int)KRN_DT_F16 == (int)ENG_DT_F16 &&
               (int)KRN_DT_BF16 == (int)ENG_DT_BF16 && (int)KRN_DT_Q8_0 == (int)ENG_DT_Q8_0 && (int)KRN_DT_Q4_0 == (int)ENG_DT_Q4_0 &&
               (int)KRN_DT_Q4_K == (int)ENG_DT_Q4_K && (int)KRN_DT_Q5_K == (int)ENG_DT_Q5_K && (int)KRN_DT_Q6_K == (int)ENG_DT_Q6_K,
               "krn/eng dtype codes differ");

static const char *tensor_file(loader *L, const eng_st_tensor *t) { return L->set.paths[t->file]; }

/* Allocates a block the model owns (freed by eng_model_free), counted in heap_bytes. */
static void *m_alloc(eng_model *m, size_t bytes, int zero) {
  if (m->n_heap == m->cap_heap) {
    int cap = m->cap_heap ? m->cap_heap * 2 : 64;
    void **h = realloc(m->heap, sizeof(void *) * (size_t)cap);
    if (!h) return NULL;
    m->heap_bytes += sizeof(void *) * (size_t)(cap - m->cap_heap);
    m->heap = h;
    m->cap_heap = cap;
  }
  void *p = zero ? calloc(bytes ? bytes : 1, 1) : malloc(bytes ? bytes : 1);
  if (!p) return NULL;
  m->heap[m->n_heap++] = p;
  m->heap_bytes += bytes;
  return p;
}

/* A float32 heap matrix [rows, cols] as a weight view (for layouts that need a transform). */
static float *copy_mat(loader *L, krn_w *w, int64_t rows, int64_t cols, const char *name) {
  float *p = m_alloc(L->m, sizeof(float) * (size_t)(rows * cols), 0);
  if (!p) { eng_errf(L->err, L->errlen, "out of memory loading '%s'", name); return NULL; }
  *w = krn_w_view(KRN_DT_F32, p, (int)rows, (int)cols);
  L->m->weight_bytes += krn_w_bytes(w);
  L->m->copied_weight_bytes += krn_w_bytes(w);
  return p;
}

/* Points w at rows [r0, r0+rows) of a [*, cols] block of t starting at element offset
 * elem0 (row-aligned), in place when the kernels read t's dtype, else as a float32 copy. */
static int view_rows(loader *L, krn_w *w, const eng_st_tensor *t, size_t elem0, int64_t rows, int64_t cols) {
  size_t rb = krn_dtype_row_bytes(t->dtype, (int)cols);
  if (rb && rows <= INT32_MAX && cols <= INT32_MAX) {
    *w = krn_w_view(t->dtype, t->data + elem0 / (size_t)cols * rb, (int)rows, (int)cols);
    L->m->weight_bytes += krn_w_bytes(w);
    return 0;
  }
  /* F64 (or a type the kernels do not read): widen */
  float *p = copy_mat(L, w, rows, cols, t->name);
  if (!p) return -1;
  size_t es = eng_dtype_size(t->dtype);
  if (!es || eng_dt_to_f32(p, t->data + elem0 * es, t->dtype, rows * cols))
    return eng_errf(L->err, L->errlen, "%s: tensor '%s' has dtype %s the engine cannot read", tensor_file(L, t),
                    t->name, eng_dtype_name(t->dtype));
  return 0;
}

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

static void count(loader *L, const eng_st_tensor *t) {
  L->dt_count[t->dtype] += (size_t)eng_st_numel(t);
  L->m->n_params += (size_t)eng_st_numel(t);
}

/* A weight matrix [rows, cols]: a view into the mapping. */
static int load_mat(loader *L, krn_w *out, int64_t rows, int64_t cols, const char *const *names) {
  const eng_st_tensor *t = find_any(L, names);
  if (!t) return eng_errf(L->err, L->errlen, "%s: missing tensor '%s'", L->set.paths[0], names[0]);
  int64_t dims[2] = {rows, cols};
  if (check_shape(L, t, 2, dims) || view_rows(L, out, t, 0, rows, cols)) return -1;
  count(L, t);
  return 0;
}

/* A small tensor [n] (cols == 0) or [n, cols] as a float32 copy. */
static int load_vec2(loader *L, float **out, int64_t n, int64_t cols, const char *const *names) {
  const eng_st_tensor *t = find_any(L, names);
  if (!t) return eng_errf(L->err, L->errlen, "%s: missing tensor '%s'", L->set.paths[0], names[0]);
  int64_t dims[2] = {n, cols};
  if (check_shape(L, t, cols ? 2 : 1, dims)) return -1;
  if (cols) n *= cols;
  *out = m_alloc(L->m, sizeof(float) * (size_t)n, 0);
  if (!*out) return eng_errf(L->err, L->errlen, "out of memory loading '%s'", t->name);
  if (eng_st_to_f32(*out, t)) return eng_errf(L->err, L->errlen, "%s: tensor '%s' cannot be read", tensor_file(L, t), t->name);
  L->m->weight_bytes += sizeof(float) * (size_t)n;
  count(L, t);
  return 0;
}

static int load_vec(loader *L, float **out, int64_t n, const char *const *names) { return load_vec2(L, out, n, 0, names); }

/* Rows [r0, r0+rows) of expert e of a packed 3-D tensor [E, R, C] as a view. */
static int load_packed(loader *L, krn_w *out, const eng_st_tensor *t, int e, int64_t r0, int64_t rows, int64_t cols) {
  return view_rows(L, out, t, ((size_t)e * (size_t)t->shape[1] + (size_t)r0) * (size_t)cols, rows, cols);
}

/* Loads an optional vector: absent -> *out = NULL, 0. */
static int load_opt(loader *L, float **out, int64_t n, const char *name) {
  *out = NULL;
  if (!eng_st_find(&L->set, name)) return 0;
  const char *names[] = {name, NULL};
  return load_vec(L, out, n, names);
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
  int rc = 0;
  for (int e = 0; e < E && rc == 0; e++) {
    eng_expert *x = &ly->experts[e];
    float *w1 = copy_mat(L, &x->w1, I, H, n[0]), *w3 = copy_mat(L, &x->w3, I, H, n[0]);
    float *w2 = copy_mat(L, &x->w2, H, I, n[2]);
    x->b1 = m_alloc(L->m, sizeof(float) * (size_t)I, 0);
    x->b3 = m_alloc(L->m, sizeof(float) * (size_t)I, 0);
    x->b2 = m_alloc(L->m, sizeof(float) * (size_t)H, 0);
    if (!w1 || !w3 || !w2 || !x->b1 || !x->b3 || !x->b2) { rc = eng_errf(L->err, L->errlen, "out of memory"); break; }
    L->m->weight_bytes += sizeof(float) * (size_t)(2 * I + H);
    size_t es = eng_dtype_size(t[0]->dtype);
    eng_dt_to_f32(tmp, t[0]->data + (size_t)e * H * 2 * I * es, t[0]->dtype, H * 2 * I);
    for (int64_t h = 0; h < H; h++)
      for (int64_t i = 0; i < I; i++) {
        w1[i * H + h] = tmp[h * 2 * I + 2 * i];
        w3[i * H + h] = tmp[h * 2 * I + 2 * i + 1];
      }
    eng_dt_to_f32(tmp, t[1]->data + (size_t)e * 2 * I * eng_dtype_size(t[1]->dtype), t[1]->dtype, 2 * I);
    for (int64_t i = 0; i < I; i++) { x->b1[i] = tmp[2 * i]; x->b3[i] = tmp[2 * i + 1]; }
    eng_dt_to_f32(tmp, t[2]->data + (size_t)e * I * H * eng_dtype_size(t[2]->dtype), t[2]->dtype, I * H);
    for (int64_t i = 0; i < I; i++)
      for (int64_t h = 0; h < H; h++) w2[h * I + i] = tmp[i * H + h];
    eng_dt_to_f32(x->b2, t[3]->data + (size_t)e * H * eng_dtype_size(t[3]->dtype), t[3]->dtype, H);
  }
  free(tmp);
  if (rc) return rc;
  for (int j = 0; j < 4; j++) {
    L->dt_count[t[j]->dtype] += (size_t)eng_st_numel(t[j]);
    L->m->n_params += (size_t)eng_st_numel(t[j]);
  }
  return 0;
}

static int load_experts(loader *L, eng_layer *ly, int l) {
  const eng_config *c = &L->m->cfg;
  int64_t H = c->hidden, I = c->intermediate, E = c->n_experts;
  char n1[256], n2[256];
  snprintf(n1, sizeof n1, "model.layers.%d.mlp.experts.gate_up_proj", l);
  snprintf(n2, sizeof n2, "model.layers.%d.mlp.experts.down_proj", l);
  const eng_st_tensor *gu = eng_st_find(&L->set, n1), *dn = eng_st_find(&L->set, n2);
  /* gpt-oss: HF packed tensors, or (from GGUF) per-expert [out,in] matrices + biases below */
  if (c->family == ENG_FAM_GPT_OSS && gu) return load_experts_oai(L, ly, l);
  if ((gu || dn) && c->family != ENG_FAM_GPT_OSS) { /* transformers-5 packed layout */
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
    krn_w *dst[3] = {&x->w1, &x->w3, &x->w2};
    for (int j = 0; j < 3; j++) {
      snprintf(a, sizeof a, "model.layers.%d.block_sparse_moe.experts.%d.%s.weight", l, e, w[j]);
      snprintf(b, sizeof b, "model.layers.%d.mlp.experts.%d.%s.weight", l, e, alt[j]);
      const char *names[] = {c->family == ENG_FAM_MIXTRAL ? a : b, c->family == ENG_FAM_MIXTRAL ? b : a, NULL};
      if (load_mat(L, dst[j], j == 2 ? H : I, j == 2 ? I : H, names)) return -1;
      if (c->expert_bias) {
        float **bias[3] = {&x->b1, &x->b3, &x->b2};
        const char *bn[] = {LNAME(b, "model.layers.%d.mlp.experts.%d.%s.bias", l, e, alt[j]), NULL};
        if (load_vec(L, bias[j], j == 2 ? H : I, bn)) return -1;
      }
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
  return load_mat(L, &x->w1, I, H, names0) || load_mat(L, &x->w3, I, H, names1) || load_mat(L, &x->w2, H, I, names2) ? -1 : 0;
}

static int load_attention(loader *L, eng_layer *ly, const char *p) {
  const eng_config *c = &L->m->cfg;
  int64_t H = c->hidden, nh = c->n_heads, hd = c->head_dim;
  char n[256];
  if (c->mla) {
    int64_t qk = c->qk_nope_dim + c->qk_rope_dim, kvr = c->kv_lora_rank, qr = c->q_lora_rank;
    if (qr > 0) {
      const char *a[] = {LNAME(n, "%sself_attn.q_a_proj.weight", p), NULL};
      if (load_mat(L, &ly->q_a, qr, H, a)) return -1;
      if (load_opt(L, &ly->b_q_a, qr, LNAME(n, "%sself_attn.q_a_proj.bias", p))) return -1;
      const char *b[] = {LNAME(n, "%sself_attn.q_a_layernorm.weight", p), NULL};
      if (load_vec(L, &ly->q_a_norm, qr, b)) return -1;
      const char *d[] = {LNAME(n, "%sself_attn.q_b_proj.weight", p), NULL};
      if (load_mat(L, &ly->q_b, nh * qk, qr, d)) return -1;
    } else {
      const char *a[] = {LNAME(n, "%sself_attn.q_proj.weight", p), NULL};
      if (load_mat(L, &ly->q, nh * qk, H, a)) return -1;
    }
    const char *k1[] = {LNAME(n, "%sself_attn.kv_a_proj_with_mqa.weight", p), NULL};
    if (load_mat(L, &ly->kv_a, kvr + c->qk_rope_dim, H, k1)) return -1;
    if (load_opt(L, &ly->b_kv_a, kvr + c->qk_rope_dim, LNAME(n, "%sself_attn.kv_a_proj_with_mqa.bias", p))) return -1;
    const char *k2[] = {LNAME(n, "%sself_attn.kv_a_layernorm.weight", p), NULL};
    if (load_vec(L, &ly->kv_a_norm, kvr, k2)) return -1;
    const char *k3[] = {LNAME(n, "%sself_attn.kv_b_proj.weight", p), NULL};
    if (load_mat(L, &ly->kv_b, nh * (c->qk_nope_dim + c->v_head_dim), kvr, k3)) return -1;
    const char *o[] = {LNAME(n, "%sself_attn.o_proj.weight", p), NULL};
    if (load_mat(L, &ly->o, H, nh * c->v_head_dim, o)) return -1;
    return load_opt(L, &ly->bo, H, LNAME(n, "%sself_attn.o_proj.bias", p));
  }
  int64_t qd = nh * hd, kvd = (int64_t)c->n_kv_heads * hd;
  const char *pr[4] = {"q_proj", "k_proj", "v_proj", "o_proj"};
  krn_w *w[4] = {&ly->q, &ly->k, &ly->v, &ly->o};
  float **bias[4] = {&ly->bq, &ly->bk, &ly->bv, &ly->bo};
  int64_t rows[4] = {qd, kvd, kvd, H}, cols[4] = {H, H, H, qd};
  for (int j = 0; j < 4; j++) {
    const char *names[] = {LNAME(n, "%sself_attn.%s.weight", p, pr[j]), NULL};
    if (load_mat(L, w[j], rows[j], cols[j], names)) return -1;
    if ((j < 3 ? c->qkv_bias : c->o_bias)) {
      const char *bn[] = {LNAME(n, "%sself_attn.%s.bias", p, pr[j]), NULL};
      if (load_vec(L, bias[j], rows[j], bn)) return -1;
    }
  }
  if (c->qk_norm) {
    int full = c->qk_norm == ENG_QKNORM_FULL;
    const char *qn[] = {LNAME(n, "%sself_attn.q_norm.weight", p), NULL};
    if (load_vec(L, &ly->q_norm, full ? qd : hd, qn)) return -1;
    const char *kn[] = {LNAME(n, "%sself_attn.k_norm.weight", p), NULL};
    if (load_vec(L, &ly->k_norm, full ? kvd : hd, kn)) return -1;
  }
  if (c->attn_sinks) {
    const char *sn[] = {LNAME(n, "%sself_attn.sinks", p), NULL};
    if (load_vec(L, &ly->sinks, nh, sn)) return -1;
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
  if (!G && load_mat(L, &ly->gate, E, H, gn)) return -1;
  if (G) {   /* hierarchical: group gate rows appended after the expert rows (a float32 copy) */
    const eng_st_tensor *te = find_any(L, gn);
    const char *ggn[] = {LNAME(n, "%sblock_sparse_moe.group_gate.weight", p), NULL};
    const eng_st_tensor *tg = find_any(L, ggn);
    if (!te) return eng_errf(L->err, L->errlen, "%s: missing tensor '%s'", L->set.paths[0], gn[0]);
    if (!tg) return eng_errf(L->err, L->errlen, "%s: missing tensor '%s'", L->set.paths[0], ggn[0]);
    int64_t de[2] = {E, H}, dg[2] = {G, H};
    if (check_shape(L, te, 2, de) || check_shape(L, tg, 2, dg)) return -1;
    float *both = copy_mat(L, &ly->gate, E + G, H, te->name);
    if (!both) return -1;
    eng_st_to_f32(both, te);
    eng_st_to_f32(both + E * H, tg);
    count(L, te);
    count(L, tg);
  }
  if (c->router_bias) {
    const char *bn[] = {LNAME(n, "%smlp.router.bias", p), NULL};
    if (load_vec(L, &ly->gate_bias, E, bn)) return -1;
  }
  if (c->router.kind == ENG_ROUTER_SIGMOID_GROUP &&
      load_opt(L, &ly->score_bias, E, LNAME(n, "%smlp.gate.e_score_correction_bias", p)))
    return -1;
  ly->experts = m_alloc(L->m, (size_t)E * sizeof(eng_expert), 1);
  if (!ly->experts) return eng_errf(L->err, L->errlen, "out of memory");
  if (load_experts(L, ly, l)) return -1;
  if (c->shared_intermediate > 0) {
    int qwen = c->family == ENG_FAM_QWEN2_MOE;
    if (load_mlp(L, &ly->shared, LNAME(n, "%smlp.%s.", p, qwen ? "shared_expert" : "shared_experts"), c->shared_intermediate))
      return -1;
    if (c->shared_gated) {
      const char *sg[] = {LNAME(n, "%smlp.shared_expert_gate.weight", p), NULL};
      if (load_vec2(L, &ly->shared_gate, 1, H, sg)) return -1;
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
    if ((rc = load_mat(L, &m->embed, V, H, ne)) || (rc = load_vec(L, &m->final_norm, H, nn))) return rc;
    if (c->tie_embeddings && !eng_st_find(&L->set, "lm_head.weight")) memset(&m->lm_head, 0, sizeof m->lm_head);
    else if ((rc = load_mat(L, &m->lm_head, V, H, nl))) return rc;
  }
  m->layers = m_alloc(m, (size_t)c->n_layers * sizeof(eng_layer), 1);
  if (!m->layers) return eng_errf(err, errlen, "out of memory");
  for (int l = 0; l < c->n_layers && rc == 0; l++) {
    eng_layer *ly = &m->layers[l];
    char p[128], n[256];
    snprintf(p, sizeof p, "model.layers.%d.", l);
    const char *a[] = {LNAME(n, "%sinput_layernorm.weight", p), NULL};
    if ((rc = load_vec(L, &ly->attn_norm, H, a))) break;
    const char *b[] = {LNAME(n, "%spost_attention_layernorm.weight", p), NULL};
    if ((rc = load_vec(L, &ly->moe_norm, H, b))) break;
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

/* Takes the tensor set into the model: the weight views point into its mappings. */
static int adopt_set(eng_model *m, eng_st_set *set, char *err, size_t errlen) {
  m->set = malloc(sizeof *m->set);
  if (!m->set) { eng_st_close(set); return eng_errf(err, errlen, "out of memory"); }
  *m->set = *set;
  m->owns_set = 1;
  m->heap_bytes += sizeof *m->set;
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
    if (rc) { eng_st_close(&set); return rc; }
    if (adopt_set(m, &set, err, errlen)) { eng_model_free(m); return -1; }
    return 0;
  }
  memset(m, 0, sizeof *m);
  snprintf(m->dir, sizeof m->dir, "%s", dir);
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/config.json", dir);
  if (eng_config_load(&m->cfg, path, err, errlen)) return -1;
  eng_st_set set;
  if (eng_st_open_dir(&set, dir, err, errlen)) return -1;
  if (adopt_set(m, &set, err, errlen)) return -1;
  loader L = {.m = m, .err = err, .errlen = errlen, .set = *m->set};
  int rc = load_from_set(m, &L);
  if (!rc) sha256_files(&L);
  if (rc) eng_model_free(m);
  return rc;
}

int eng_model_load_set(eng_model *m, const char *label, const char *config_json, eng_st_set *set, char *err,
                       size_t errlen) {
  memset(m, 0, sizeof *m);
  snprintf(m->dir, sizeof m->dir, "%s", label);
  if (eng_config_parse(&m->cfg, config_json, label, err, errlen)) return -1;
  m->set = set;
  m->owns_set = 0;
  loader L = {.m = m, .err = err, .errlen = errlen, .set = *set};
  int rc = load_from_set(m, &L);
  if (!rc) sha256_files(&L);
  if (rc) eng_model_free(m);
  return rc;
}

void eng_model_free(eng_model *m) {
  for (int i = 0; i < m->n_heap; i++) free(m->heap[i]);
  free(m->heap);
  if (m->set && m->owns_set) {
    eng_st_close(m->set);
    free(m->set);
  }
  memset(m, 0, sizeof *m);
}

static double expert_bytes(const eng_expert *x, int I, int H) {
  double b = (double)krn_w_bytes(&x->w1) + (double)krn_w_bytes(&x->w3) + (double)krn_w_bytes(&x->w2);
  if (x->b1) b += 4.0 * (2 * I + H);
  return b;
}

double eng_model_decode_bytes(const eng_model *m) {
  const eng_config *c = &m->cfg;
  double b = (double)m->embed.row_stride_bytes + 4.0 * c->hidden;           /* one embedding row, final norm */
  b += (double)krn_w_bytes(m->lm_head.data ? &m->lm_head : &m->embed);
  for (int l = 0; l < c->n_layers; l++) {
    const eng_layer *ly = &m->layers[l];
    const krn_w *w[] = {&ly->q, &ly->k, &ly->v, &ly->o, &ly->q_a, &ly->q_b, &ly->kv_a, &ly->kv_b, &ly->gate};
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) b += (double)krn_w_bytes(w[i]);
    b += 8.0 * c->hidden;                                                      /* the two norms */
    if (c->moe_layer[l] && ly->experts) {
      double sum = 0;
      for (int e = 0; e < c->n_experts; e++) sum += expert_bytes(&ly->experts[e], c->intermediate, c->hidden);
      b += sum / c->n_experts * c->top_k;
    } else {
      b += expert_bytes(&ly->dense, c->dense_intermediate, c->hidden);
    }
    if (ly->shared.w1.data) b += expert_bytes(&ly->shared, c->shared_intermediate, c->hidden);
  }
  return b;
}
