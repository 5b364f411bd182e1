/* eng_cuda.c — the forward pass on a CUDA GPU (see eng_cuda.h): weight upload (through the
 * small adapter below, the only code here that reads eng_model's weight storage), device
 * buffers, the layer loop issuing krn_cuda_ops.h kernels on one stream (standard GQA
 * attention here, DeepSeek MLA in eng_cuda_mla.c; SwiGLU or gpt-oss's clamped SwiGLU with
 * expert biases), routing records in pinned memory reported after the batch's stream sync,
 * per-op CUDA-event timings, and this context as an eng_runner so that score / generate are
 * eng_session.c's loops. Plain C: no CUDA header is included, so this file builds
 * everywhere and fails cleanly (krn_cuda_ops stubs) without CUDA. */
#include "engine/eng_cuda_int.h"
#include "engine/eng_forward.h"

#include "kernels/krn_cuda.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t zmax(size_t a, size_t b) { return a > b ? a : b; }

int eng_cuda_err(char *err, size_t errlen, const char *what) {
  return eng_errf(err, errlen, "cuda: %s: %s", what, krn_cuda_last_error());
}

int eng_cuda_available(char *err, size_t errlen) {
  if (!krn_cuda_built()) {
    eng_errf(err, errlen, "the CUDA backend is not available in this build (configure with -DMOESCOPE_CUDA=ON on a machine with nvcc)");
    return 0;
  }
  char name[256];
  if (krn_cuda_device_count(name, sizeof name, NULL, NULL) <= 0) {
    eng_errf(err, errlen, "no CUDA device is visible (driver missing or no GPU)");
    return 0;
  }
  return 1;
}

/* ---- device allocations ------------------------------------------------------------------ */
static void *dalloc(eng_cuda_ctx *c, size_t bytes) {
  if (c->n_allocs == c->cap_allocs) {
    int cap = c->cap_allocs ? 2 * c->cap_allocs : 64;
    void **na = realloc(c->allocs, sizeof(void *) * (size_t)cap);
    if (!na) return NULL;
    c->allocs = na;
    c->cap_allocs = cap;
  }
  void *p = NULL;
  if (krn_cuda_malloc(&p, bytes)) return NULL;
  c->allocs[c->n_allocs++] = p;
  return p;
}
void *eng_cuda_dalloc(eng_cuda_ctx *c, size_t bytes) { return dalloc(c, bytes); }

/* ---- weight adapter: the only place that reads eng_model weight storage ------------------
 * Matrices come as krn_w views (any stored dtype); krn_w_row_f32 widens a row exactly and
 * BF16 rows are copied bit for bit. */
#define UP_CHUNK_BYTES ((size_t)8 << 20)

/* Uploads matrix w [rows, cols] as BF16 into dst (device, rows*cols elements). */
static int up_mat_into(eng_cuda_ctx *c, uint16_t *dst, const krn_w *w, int rows, int cols, const char *what,
                       char *err, size_t errlen) {
  if (!w->data) return eng_errf(err, errlen, "cuda upload: %s is missing", what);
  if (w->rows != rows || w->cols != cols)
    return eng_errf(err, errlen, "cuda upload: %s is [%d,%d], expected [%d,%d]", what, w->rows, w->cols, rows, cols);
  if (krn_dtype_row_bytes(w->dtype, cols) == 0)
    return eng_errf(err, errlen, "cuda upload: %s has a stored dtype (%d) the GPU upload cannot read", what, w->dtype);
  size_t rb = (size_t)cols * 2;
  int per = (int)(UP_CHUNK_BYTES / rb) > 0 ? (int)(UP_CHUNK_BYTES / rb) : 1;
  uint16_t *stage = malloc(rb * (size_t)per);
  float *row = malloc(sizeof(float) * (size_t)cols);
  if (!stage || !row) { free(stage); free(row); return eng_errf(err, errlen, "cuda upload: out of host memory"); }
  int rc = 0;
  for (int r0 = 0; r0 < rows && rc == 0; r0 += per) {
    int nr = rows - r0 < per ? rows - r0 : per;
    for (int r = 0; r < nr; r++) {
      uint16_t *o = stage + (size_t)r * cols;
      if (w->dtype == KRN_DT_BF16) {
        memcpy(o, (const uint8_t *)w->data + (size_t)(r0 + r) * w->row_stride_bytes, rb);
      } else {
        krn_w_row_f32(w, r0 + r, row);
        for (int i = 0; i < cols; i++) o[i] = krn_f32_to_bf16(row[i]);
      }
    }
    if (krn_cuda_h2d(c->k, dst + (size_t)r0 * cols, stage, rb * (size_t)nr) || krn_cuda_sync(c->k))
      rc = eng_cuda_err(err, errlen, what);
  }
  free(stage);
  free(row);
  return rc;
}

int eng_cuda_up_mat(eng_cuda_ctx *c, uint16_t **dst, const krn_w *w, int rows, int cols, const char *what, char *err,
                    size_t errlen) {
  *dst = dalloc(c, (size_t)rows * cols * 2);
  if (!*dst) return eng_cuda_err(err, errlen, what);
  c->weight_bytes += (size_t)rows * cols * 2;
  return up_mat_into(c, *dst, w, rows, cols, what, err, errlen);
}

/* float32 matrix (router gate), rows x cols, widened exactly. */
static int up_mat_f32(eng_cuda_ctx *c, float **dst, const krn_w *w, int rows, int cols, const char *what, char *err,
                      size_t errlen) {
  if (!w->data) return eng_errf(err, errlen, "cuda upload: %s is missing", what);
  if (w->rows != rows || w->cols != cols)
    return eng_errf(err, errlen, "cuda upload: %s is [%d,%d], expected [%d,%d]", what, w->rows, w->cols, rows, cols);
  float *hbuf = malloc(sizeof(float) * (size_t)rows * cols);
  if (!hbuf) return eng_errf(err, errlen, "cuda upload: out of host memory");
  for (int r = 0; r < rows; r++) krn_w_row_f32(w, r, hbuf + (size_t)r * cols);
  *dst = dalloc(c, sizeof(float) * (size_t)rows * cols);
  int rc = 0;
  if (!*dst || krn_cuda_h2d(c->k, *dst, hbuf, sizeof(float) * (size_t)rows * cols) || krn_cuda_sync(c->k))
    rc = eng_cuda_err(err, errlen, what);
  else c->weight_bytes += sizeof(float) * (size_t)rows * cols;
  free(hbuf);
  return rc;
}

/* float32 vector; NULL stays NULL. */
int eng_cuda_up_vec(eng_cuda_ctx *c, float **dst, const float *src, size_t n, const char *what, char *err, size_t errlen) {
  *dst = NULL;
  if (!src) return 0;
  *dst = dalloc(c, sizeof(float) * n);
  if (!*dst || krn_cuda_h2d(c->k, *dst, src, sizeof(float) * n) || krn_cuda_sync(c->k)) return eng_cuda_err(err, errlen, what);
  c->weight_bytes += sizeof(float) * n;
  return 0;
}

/* Host float32 values into existing device memory (n floats; NULL src = zeros). */
static int up_f32_into(eng_cuda_ctx *c, float *dst, const float *src, size_t n, const char *what, char *err,
                       size_t errlen) {
  if (src) {
    if (krn_cuda_h2d(c->k, dst, src, sizeof(float) * n) || krn_cuda_sync(c->k)) return eng_cuda_err(err, errlen, what);
  } else if (krn_cuda_memset(c->k, dst, 0, sizeof(float) * n) || krn_cuda_sync(c->k)) {
    return eng_cuda_err(err, errlen, what);
  }
  return 0;
}

/* Whether an FFN uses gpt-oss's clamped activation: exactly eng_moe.c's ffn() rule. */
static int ffn_oai(const eng_config *g, const eng_expert *x) { return g->expert_act == ENG_ACT_SWIGLU_OAI && x->b1; }
static int ffn_has_bias(const eng_expert *x) { return x->b1 || x->b3 || x->b2; }

/* A SwiGLU FFN (w1, w3 [I,H]; w2 [H,I]; biases b1, b3 [I], b2 [H]) as w13 [2I,H] (gate rows
 * then up rows) and w2, and when b13 is given its biases as b13 [2I] and b2 [H] (absent
 * biases as zeros: the CPU adds nothing). */
static int up_ffn(eng_cuda_ctx *c, uint16_t *w13, uint16_t *w2, float *b13, float *b2, const eng_expert *x, int I,
                  const char *what, char *err, size_t errlen) {
  int H = c->H;
  if (!b13 && ffn_has_bias(x)) return eng_errf(err, errlen, "cuda upload: %s: unexpected biases", what);
  if (up_mat_into(c, w13, &x->w1, I, H, what, err, errlen)) return -1;
  if (up_mat_into(c, w13 + (size_t)I * H, &x->w3, I, H, what, err, errlen)) return -1;
  if (up_mat_into(c, w2, &x->w2, H, I, what, err, errlen)) return -1;
  if (b13 && (up_f32_into(c, b13, x->b1, (size_t)I, what, err, errlen) ||
              up_f32_into(c, b13 + I, x->b3, (size_t)I, what, err, errlen) ||
              up_f32_into(c, b2, x->b2, (size_t)H, what, err, errlen)))
    return -1;
  return 0;
}

/* One FFN (shared expert or dense MLP) into f: weights, biases when present, activation. */
static int up_ffn1(eng_cuda_ctx *c, cuda_ffn *f, const eng_expert *x, int I, const char *what, char *err, size_t errlen) {
  size_t H = (size_t)c->H;
  f->w13 = dalloc(c, (size_t)2 * I * H * 2);
  f->w2 = dalloc(c, H * I * 2);
  if (!f->w13 || !f->w2) return eng_cuda_err(err, errlen, what);
  c->weight_bytes += (size_t)3 * I * H * 2;
  if (ffn_has_bias(x)) {
    f->b13 = dalloc(c, sizeof(float) * 2 * (size_t)I);
    f->b2 = dalloc(c, sizeof(float) * H);
    if (!f->b13 || !f->b2) return eng_cuda_err(err, errlen, what);
    c->weight_bytes += sizeof(float) * (2 * (size_t)I + H);
  }
  f->inter = I;
  f->oai = ffn_oai(&c->m->cfg, x);
  return up_ffn(c, f->w13, f->w2, f->b13, f->b2, x, I, what, err, errlen);
}

/* Routed experts of a MoE layer: E FFNs of width I, one activation for all (refused when
 * the experts disagree, which the CPU would allow per expert). */
static int up_experts(eng_cuda_ctx *c, cuda_ffn *f, const eng_expert *xs, int E, int I, int l, char *err,
                      size_t errlen) {
  size_t H = (size_t)c->H, s13 = (size_t)2 * I * H, s2 = H * I;
  const eng_config *g = &c->m->cfg;
  int bias = 0;
  for (int e = 0; e < E; e++) {
    bias |= ffn_has_bias(&xs[e]);
    if (ffn_oai(g, &xs[e]) != ffn_oai(g, &xs[0]))
      return eng_errf(err, errlen, "cuda: layer %d: experts mix activations (some without gate biases)", l);
  }
  f->inter = I;
  f->oai = ffn_oai(g, &xs[0]);
  f->w13 = dalloc(c, s13 * 2 * (size_t)E);
  f->w2 = dalloc(c, s2 * 2 * (size_t)E);
  if (!f->w13 || !f->w2) return eng_cuda_err(err, errlen, "experts");
  c->weight_bytes += (s13 + s2) * 2 * (size_t)E;
  if (bias) {
    f->b13 = dalloc(c, sizeof(float) * 2 * (size_t)I * E);
    f->b2 = dalloc(c, sizeof(float) * H * E);
    if (!f->b13 || !f->b2) return eng_cuda_err(err, errlen, "expert biases");
    c->weight_bytes += sizeof(float) * (2 * (size_t)I + H) * E;
  }
  for (int e = 0; e < E; e++) {
    char what[96];
    snprintf(what, sizeof what, "layer %d expert %d", l, e);
    if (up_ffn(c, f->w13 + s13 * e, f->w2 + s2 * e, bias ? f->b13 + (size_t)2 * I * e : NULL,
               bias ? f->b2 + H * e : NULL, &xs[e], I, what, err, errlen))
      return -1;
  }
  return 0;
}

static int upload_model(eng_cuda_ctx *c, char *err, size_t errlen) {
  const eng_model *M = c->m;
  const eng_config *g = &M->cfg;
  int H = c->H, E = c->E, V = g->vocab;
  if (eng_cuda_up_mat(c, &c->embed, &M->embed, V, H, "embed_tokens", err, errlen)) return -1;
  if (M->lm_head.data) { if (eng_cuda_up_mat(c, &c->lm_head, &M->lm_head, V, H, "lm_head", err, errlen)) return -1; }
  else c->lm_head = c->embed;
  if (eng_cuda_up_vec(c, &c->final_norm, M->final_norm, (size_t)H, "norm", err, errlen)) return -1;
  c->L = calloc((size_t)g->n_layers, sizeof(cuda_layer));
  if (!c->L) return eng_errf(err, errlen, "out of memory");
  for (int l = 0; l < g->n_layers; l++) {
    const eng_layer *ly = &M->layers[l];
    cuda_layer *d = &c->L[l];
    char what[96];
    snprintf(what, sizeof what, "layer %d attention", l);
    if (eng_cuda_up_vec(c, &d->attn_norm, ly->attn_norm, (size_t)H, what, err, errlen) ||
        eng_cuda_up_vec(c, &d->moe_norm, ly->moe_norm, (size_t)H, what, err, errlen))
      return -1;
    if (g->mla) {
      if (eng_cuda_mla_upload(c, l, err, errlen)) return -1;
    } else {
      if (eng_cuda_up_mat(c, &d->q, &ly->q, c->qd, H, what, err, errlen) ||
          eng_cuda_up_mat(c, &d->k, &ly->k, c->kvd, H, what, err, errlen) ||
          eng_cuda_up_mat(c, &d->v, &ly->v, c->kvd, H, what, err, errlen) ||
          eng_cuda_up_mat(c, &d->o, &ly->o, H, c->qd, what, err, errlen) ||
          eng_cuda_up_vec(c, &d->bq, ly->bq, (size_t)c->qd, what, err, errlen) ||
          eng_cuda_up_vec(c, &d->bk, ly->bk, (size_t)c->kvd, what, err, errlen) ||
          eng_cuda_up_vec(c, &d->bv, ly->bv, (size_t)c->kvd, what, err, errlen) ||
          eng_cuda_up_vec(c, &d->bo, ly->bo, (size_t)H, what, err, errlen) ||
          eng_cuda_up_vec(c, &d->sinks, ly->sinks, (size_t)c->nh, what, err, errlen))
        return -1;
      if (g->qk_norm == ENG_QKNORM_HEAD) {
        if (eng_cuda_up_vec(c, &d->q_norm, ly->q_norm, (size_t)c->hd, what, err, errlen) ||
            eng_cuda_up_vec(c, &d->k_norm, ly->k_norm, (size_t)c->hd, what, err, errlen)) return -1;
      } else if (g->qk_norm == ENG_QKNORM_FULL) {
        if (eng_cuda_up_vec(c, &d->q_norm, ly->q_norm, (size_t)c->qd, what, err, errlen) ||
            eng_cuda_up_vec(c, &d->k_norm, ly->k_norm, (size_t)c->kvd, what, err, errlen)) return -1;
      }
    }
    d->moe = g->moe_layer[l] != 0;
    if (d->moe) {
      snprintf(what, sizeof what, "layer %d router", l);
      if (up_mat_f32(c, &d->gate, &ly->gate, c->stride, H, what, err, errlen) ||
          eng_cuda_up_vec(c, &d->gate_bias, ly->gate_bias, (size_t)E, what, err, errlen) ||
          eng_cuda_up_vec(c, &d->score_bias, ly->score_bias, (size_t)E, what, err, errlen))
        return -1;
      if (up_experts(c, &d->ex, ly->experts, E, g->intermediate, l, err, errlen)) return -1;
      if (ly->shared.w1.data) {
        snprintf(what, sizeof what, "layer %d shared expert", l);
        if (up_ffn1(c, &d->sh, &ly->shared, g->shared_intermediate, what, err, errlen) ||
            eng_cuda_up_vec(c, &d->shared_gate, ly->shared_gate, (size_t)H, what, err, errlen))
          return -1;
      }
    } else {
      snprintf(what, sizeof what, "layer %d mlp", l);
      if (up_ffn1(c, &d->sh, &ly->dense, g->dense_intermediate, what, err, errlen)) return -1;
    }
  }
  return 0;
}

/* ---- context ------------------------------------------------------------------------------- */
void eng_cuda_ctx_free(eng_cuda_ctx *c) {
  if (!c) return;
  if (c->k) krn_cuda_sync(c->k);
  for (int i = 0; i < c->n_allocs; i++) krn_cuda_free(c->allocs[i]);
  free(c->allocs);
  void *pinned[] = {c->p_ids, c->p_experts, c->p_dropped, c->p_argmax, c->p_cs, c->p_sn, c->p_weights, c->p_probs,
                    c->p_logits, c->p_offs};
  for (size_t i = 0; i < sizeof pinned / sizeof pinned[0]; i++) krn_cuda_host_free(pinned[i]);
  for (int i = 0; i < c->n_ev; i++) krn_cuda_event_destroy(c->ev[i]);
  free(c->ev);
  free(c->evl);
  free(c->L);
  free(c->inv_freq);
  free(c->seq_ids);
  free(c->abs_pos);
  free(c->moe_slot);
  free(c->h_rlogits);
  krn_cuda_ctx_destroy(c->k);
  free(c);
}

static int supported(const eng_config *g, char *err, size_t errlen) {
  int vd = g->mla ? g->v_head_dim : g->head_dim;
  if (g->head_dim > KRN_CUDA_MAX_HEAD_DIM || vd > KRN_CUDA_MAX_HEAD_DIM || vd <= 0)
    return eng_errf(err, errlen, "cuda: head dims %d/%d unsupported (at most %d)", g->head_dim, vd, KRN_CUDA_MAX_HEAD_DIM);
  if (!g->mla && g->v_head_dim != g->head_dim)
    return eng_errf(err, errlen, "cuda: v head dim %d != head dim %d outside MLA", g->v_head_dim, g->head_dim);
  if (g->rope_dim < 2 || g->rope_dim > g->head_dim || g->rope_dim % 2)
    return eng_errf(err, errlen, "cuda: rope dim %d unsupported", g->rope_dim);
  if (g->expert_act != ENG_ACT_SWIGLU && g->expert_act != ENG_ACT_SWIGLU_OAI)
    return eng_errf(err, errlen, "cuda: expert activation %d is not implemented on the GPU (use --device cpu)", g->expert_act);
  return 0;
}

int eng_cuda_ctx_init(eng_cuda_ctx **out, const eng_model *m, eng_policy *policy, prb_probe probe, int max_ctx,
                      int max_batch, char *err, size_t errlen) {
  *out = NULL;
  const eng_config *g = &m->cfg;
  if (!eng_cuda_available(err, errlen)) return -1;
  if (max_ctx <= 0 || max_batch <= 0) return eng_errf(err, errlen, "context and batch sizes must be positive");
  if (max_batch > max_ctx) max_batch = max_ctx;
  if (max_batch > 65535) max_batch = 65535;
  if (supported(g, err, errlen)) return -1;
  if (eng_policy_bind(policy, &g->router))
    return eng_errf(err, errlen, "router policy '%s' has fewer slots than the model's router needs (k=%d)", policy->spec,
                    g->router.k);
  eng_cuda_ctx *c = calloc(1, sizeof *c);
  if (!c) return eng_errf(err, errlen, "out of memory");
  c->m = m; c->policy = policy; c->probe = probe;
  c->max_ctx = max_ctx; c->max_batch = max_batch;
  c->H = g->hidden; c->nh = g->n_heads; c->nkv = g->n_kv_heads; c->hd = g->head_dim;
  c->qd = c->nh * c->hd; c->kvd = c->nkv * c->hd;
  c->kdim = c->vdim = c->kvd;
  c->ad = c->qd;
  if (g->mla) {   /* cache rows hold every head's decompressed key [k_nope | k_pe] and value */
    c->kdim = c->qd;
    c->vdim = c->ad = c->nh * g->v_head_dim;
  }
  c->E = g->n_experts > 0 ? g->n_experts : 1;
  c->K = eng_policy_kmax(policy);
  if (c->K < 1) c->K = 1;
  c->stride = policy->logit_stride > 0 ? policy->logit_stride : c->E;
  c->G = g->router.n_group > 0 ? g->router.n_group : 1;
  c->half = g->rope_dim / 2;
  c->inter = g->intermediate > 0 ? g->intermediate : 1;
  c->s_inter_max = (int)zmax(zmax((size_t)g->shared_intermediate, (size_t)g->dense_intermediate), 1);
  c->attn_scale = g->attn_scale > 0 ? (float)g->attn_scale : 1.0f / sqrtf((float)g->head_dim);
  /* the device router runs the model's native softmax/sigmoid routers; anything else
   * (overrides, Switch capacity, hierarchical) goes through the CPU policy */
  eng_router_kind rk = policy->rc.kind;
  c->gpu_route = policy->native && c->stride == c->E && c->K == policy->rc.k &&
                 (rk == ENG_ROUTER_SOFTMAX_TOPK || rk == ENG_ROUTER_GROUP_LIMITED || rk == ENG_ROUTER_SIGMOID_GROUP ||
                  rk == ENG_ROUTER_TOPK_SOFTMAX);
  if (getenv("MOESCOPE_CUDA_CPU_ROUTER")) c->gpu_route = 0;   /* test knob */
  size_t B = (size_t)max_batch, H = (size_t)c->H, BK = B * (size_t)c->K, Iw = zmax((size_t)c->inter, (size_t)c->s_inter_max);
  size_t scratch = B * zmax(zmax(zmax(H, (size_t)c->qd), (size_t)c->ad), (size_t)c->s_inter_max);
  size_t mla_a = 1, mla_b = 1, mla_c = 1;
  if (g->mla) {
    mla_a = zmax((size_t)g->q_lora_rank, (size_t)(g->kv_lora_rank + g->qk_rope_dim));
    mla_b = (size_t)g->kv_lora_rank;
    mla_c = (size_t)c->nh * (g->qk_nope_dim + g->v_head_dim);
    scratch = zmax(scratch, B * zmax((size_t)g->q_lora_rank, (size_t)g->kv_lora_rank));
  }
  if (krn_cuda_ctx_create(&c->k, 0, scratch)) { eng_cuda_err(err, errlen, "context"); eng_cuda_ctx_free(c); return -1; }
  krn_cuda_device_info(0, c->dev_name, sizeof c->dev_name, NULL, NULL);
  if (upload_model(c, err, errlen)) { eng_cuda_ctx_free(c); return -1; }
  size_t rows_kv = (size_t)g->n_layers * max_ctx;
  c->kc = dalloc(c, rows_kv * c->kdim * 4);
  c->vc = dalloc(c, rows_kv * c->vdim * 4);
  c->mla_a = dalloc(c, B * mla_a * 4);
  c->mla_b = dalloc(c, B * mla_b * 4);
  c->mla_c = dalloc(c, B * mla_c * 4);
  c->x = dalloc(c, B * H * 4);
  c->h = dalloc(c, B * H * 4);
  c->q = dalloc(c, B * c->qd * 4);
  c->att = dalloc(c, B * zmax((size_t)c->qd, (size_t)c->ad) * 4);
  c->tmp = dalloc(c, B * zmax(H, (size_t)c->qd) * 4);
  c->rlogits = dalloc(c, B * c->stride * 4);
  c->probs = dalloc(c, B * c->E * 4);
  c->weights = dalloc(c, BK * 4);
  c->rscratch = dalloc(c, B * (size_t)(c->E + c->G) * 4);
  c->xin = dalloc(c, BK * H * 4);
  c->gu = dalloc(c, BK * 2 * Iw * 4);
  c->act = dalloc(c, BK * Iw * 4);
  c->yout = dalloc(c, BK * H * 4);
  c->sgate = dalloc(c, B * 4);
  c->logits = dalloc(c, B * (size_t)g->vocab * 4);
  c->cs = dalloc(c, B * zmax((size_t)c->half, 1) * 4);
  c->sn = dalloc(c, B * zmax((size_t)c->half, 1) * 4);
  c->ids = dalloc(c, B * 4);
  c->experts = dalloc(c, BK * 4);
  c->counts = dalloc(c, (size_t)c->E * 4);
  c->offsets = dalloc(c, (size_t)(c->E + 1) * 4);
  c->row_tok = dalloc(c, BK * 4);
  c->row_exp = dalloc(c, BK * 4);
  c->slot_row = dalloc(c, BK * 4);
  c->argmax = dalloc(c, B * 4);
  if (!c->kc || !c->vc || !c->mla_a || !c->mla_b || !c->mla_c || !c->x || !c->h || !c->q || !c->att || !c->tmp || !c->rlogits || !c->probs || !c->weights ||
      !c->rscratch || !c->xin || !c->gu || !c->act || !c->yout || !c->sgate || !c->logits || !c->cs || !c->sn ||
      !c->ids || !c->experts || !c->counts || !c->offsets || !c->row_tok || !c->row_exp || !c->slot_row || !c->argmax) {
    eng_cuda_err(err, errlen, "device buffers");
    eng_cuda_ctx_free(c);
    return -1;
  }
  c->moe_slot = malloc(sizeof(int) * (size_t)g->n_layers);
  c->inv_freq = malloc(sizeof(double) * zmax((size_t)c->half, 1));
  c->seq_ids = malloc(sizeof(int) * B);
  c->abs_pos = malloc(sizeof(int) * B);
  c->h_rlogits = malloc(sizeof(float) * B * c->stride);
  if (!c->moe_slot || !c->inv_freq || !c->seq_ids || !c->abs_pos || !c->h_rlogits) {
    eng_cuda_ctx_free(c);
    return eng_errf(err, errlen, "out of memory");
  }
  for (int l = 0; l < g->n_layers; l++) c->moe_slot[l] = g->moe_layer[l] ? c->n_moe++ : -1;
  size_t nm = zmax((size_t)c->n_moe, 1);
  if (krn_cuda_host_alloc((void **)&c->p_ids, B * 4) || krn_cuda_host_alloc((void **)&c->p_argmax, B * 4) ||
      krn_cuda_host_alloc((void **)&c->p_cs, B * zmax((size_t)c->half, 1) * 4) ||
      krn_cuda_host_alloc((void **)&c->p_sn, B * zmax((size_t)c->half, 1) * 4) ||
      krn_cuda_host_alloc((void **)&c->p_experts, nm * BK * 4) ||
      krn_cuda_host_alloc((void **)&c->p_weights, nm * BK * 4) ||
      krn_cuda_host_alloc((void **)&c->p_dropped, nm * (size_t)c->E * 4) ||
      krn_cuda_host_alloc((void **)&c->p_probs, nm * B * (size_t)c->E * 4) ||
      krn_cuda_host_alloc((void **)&c->p_logits, nm * B * (size_t)c->E * 4)) {
    eng_cuda_err(err, errlen, "pinned buffers");
    eng_cuda_ctx_free(c);
    return -1;
  }
  memset(c->p_dropped, 0, nm * (size_t)c->E * 4);
  eng_rope_inv_freq(g, c->inv_freq);   /* the CPU engine's tables, YaRN included */
  /* events: batch start + up to 10 ops per layer + embed, final norm, lm_head */
  c->n_ev = 8 + 10 * g->n_layers;
  c->ev = calloc((size_t)c->n_ev, sizeof(void *));
  c->evl = calloc((size_t)c->n_ev, sizeof(ev_label));
  if (!c->ev || !c->evl) { eng_cuda_ctx_free(c); return eng_errf(err, errlen, "out of memory"); }
  for (int i = 0; i < c->n_ev; i++)
    if (krn_cuda_event_create(&c->ev[i])) {
      c->n_ev = i;
      eng_cuda_err(err, errlen, "events");
      eng_cuda_ctx_free(c);
      return -1;
    }
  const char *eg = getenv("MOESCOPE_EXPERT_GEMM");   /* tests / bench; the CLI sets it after init */
  if (eg && *eg) {
    int mode = eng_cuda_expert_gemm_parse(eg);
    if (mode < 0) {
      eng_cuda_ctx_free(c);
      return eng_errf(err, errlen, "MOESCOPE_EXPERT_GEMM: unknown value '%s' (own, cublas)", eg);
    }
    if (eng_cuda_set_expert_gemm(c, mode, err, errlen)) { eng_cuda_ctx_free(c); return -1; }
  }
  *out = c;
  return 0;
}

void eng_cuda_ctx_reset(eng_cuda_ctx *c) { c->n_past = 0; }
int eng_cuda_max_batch(const eng_cuda_ctx *c) { return c->max_batch; }
int eng_cuda_max_ctx(const eng_cuda_ctx *c) { return c->max_ctx; }
const char *eng_cuda_device_name(const eng_cuda_ctx *c) { return c->dev_name; }
size_t eng_cuda_weight_bytes(const eng_cuda_ctx *c) { return c->weight_bytes; }
void eng_cuda_set_modes(eng_cuda_ctx *c, int linear_mode, int attn_kind) { c->linear_mode = linear_mode; c->attn_kind = attn_kind; }

/* ---- op timing and scopes --------------------------------------------------------------------
 * Event 0 marks the batch start; every op end records the next event, so op i spans events
 * i-1..i on the GPU. Times are placed on the host clock at the batch start (t_host0). */
void eng_cuda_op_begin(eng_cuda_ctx *c, int64_t bid, int l, int op) {
  if (c->probe.scope_begin) c->probe.scope_begin(c->probe.scope_ctx, PRB_SCOPE_OP, bid, l, op, -1);
}
int eng_cuda_op_end(eng_cuda_ctx *c, int64_t bid, int l, int op) {
  if (c->probe.scope_end) c->probe.scope_end(c->probe.scope_ctx, PRB_SCOPE_OP, bid, l, op, -1);
  if (!c->timed || c->ev_used >= c->n_ev) return 0;
  c->evl[c->ev_used] = (ev_label){l, op, -1};
  return krn_cuda_event_record(c->k, c->ev[c->ev_used++]);
}

static void report_ops(eng_cuda_ctx *c, int64_t bid) {
  if (!c->timed || c->ev_used < 2 || !c->probe.op) return;
  float prev = 0;
  for (int i = 1; i < c->ev_used; i++) {
    float ms = 0;
    if (krn_cuda_event_elapsed_ms(c->ev[0], c->ev[i], &ms)) return;
    uint64_t a = c->t_host0 + (uint64_t)((double)prev * 1e6), b = c->t_host0 + (uint64_t)((double)ms * 1e6);
    c->probe.op(c->probe.ctx, bid, c->evl[i].layer, c->evl[i].op, c->evl[i].expert, a, b < a ? a : b, 0);
    prev = ms;
  }
}

/* ---- the forward pass ----------------------------------------------------------------------- */
static int attn_layer(eng_cuda_ctx *c, int l, int n, int start, int64_t bid, char *err, size_t errlen) {
  const eng_config *g = &c->m->cfg;
  const cuda_layer *d = &c->L[l];
  int H = c->H, qd = c->qd, kvd = c->kvd, lm = c->linear_mode;
  float *kc = c->kc + (size_t)l * c->max_ctx * kvd, *vc = c->vc + (size_t)l * c->max_ctx * kvd;
  float *kn = kc + (size_t)start * kvd, *vn = vc + (size_t)start * kvd;
  OPB(l, PRB_OP_ATTN_NORM);
  CK(krn_cuda_rmsnorm(c->k, c->h, c->x, d->attn_norm, n, H, g->rms_eps), "attn_norm");
  OPE(l, PRB_OP_ATTN_NORM);
  if (g->mla) return eng_cuda_mla_attn(c, l, n, start, bid, err, errlen);
  OPB(l, PRB_OP_QKV);
  CK(krn_cuda_linear(c->k, c->q, c->h, d->q, d->bq, n, H, qd, lm), "q_proj");
  CK(krn_cuda_linear(c->k, kn, c->h, d->k, d->bk, n, H, kvd, lm), "k_proj");
  CK(krn_cuda_linear(c->k, vn, c->h, d->v, d->bv, n, H, kvd, lm), "v_proj");
  if (g->qk_norm == ENG_QKNORM_HEAD) {
    CK(krn_cuda_rmsnorm(c->k, c->q, c->q, d->q_norm, n * c->nh, c->hd, g->rms_eps), "q_norm");
    CK(krn_cuda_rmsnorm(c->k, kn, kn, d->k_norm, n * c->nkv, c->hd, g->rms_eps), "k_norm");
  } else if (g->qk_norm == ENG_QKNORM_FULL) {
    CK(krn_cuda_rmsnorm(c->k, c->q, c->q, d->q_norm, n, qd, g->rms_eps), "q_norm");
    CK(krn_cuda_rmsnorm(c->k, kn, kn, d->k_norm, n, kvd, g->rms_eps), "k_norm");
  }
  if (g->clip_qkv > 0) {
    CK(krn_cuda_clamp(c->k, c->q, (size_t)n * qd, g->clip_qkv), "clip_qkv");
    CK(krn_cuda_clamp(c->k, kn, (size_t)n * kvd, g->clip_qkv), "clip_qkv");
    CK(krn_cuda_clamp(c->k, vn, (size_t)n * kvd, g->clip_qkv), "clip_qkv");
  }
  OPE(l, PRB_OP_QKV);
  OPB(l, PRB_OP_ROPE);
  CK(krn_cuda_rope_cs(c->k, c->q, n, c->nh, qd, c->hd, g->rope_dim, c->cs, c->sn, g->rope_interleave), "rope q");
  CK(krn_cuda_rope_cs(c->k, kn, n, c->nkv, kvd, c->hd, g->rope_dim, c->cs, c->sn, g->rope_interleave), "rope k");
  OPE(l, PRB_OP_ROPE);
  OPB(l, PRB_OP_ATTENTION);
  int window = g->sliding[l] ? g->sliding_window : 0;
  CK(krn_cuda_attention(c->k, c->att, c->q, kc, vc, n, start, c->nh, c->nkv, c->hd, c->hd, c->attn_scale, window,
                        d->sinks, c->attn_kind), "attention");
  OPE(l, PRB_OP_ATTENTION);
  OPB(l, PRB_OP_ATTN_OUT);
  CK(krn_cuda_linear(c->k, c->tmp, c->att, d->o, d->bo, n, qd, H, lm), "o_proj");
  CK(krn_cuda_add_rows(c->k, c->x, c->tmp, NULL, n, H), "residual");
  OPE(l, PRB_OP_ATTN_OUT);
  return 0;
}

/* One FFN (eng_moe.c ffn) of n rows of `in` (device) into out: w13 (+b13) -> SwiGLU or the
 * clamped gpt-oss variant -> w2 (+b2). */
static int dense_ffn(eng_cuda_ctx *c, const cuda_ffn *f, const float *in, float *out, int n, char *err, size_t errlen) {
  const eng_config *g = &c->m->cfg;
  int I = f->inter;
  CK(krn_cuda_linear(c->k, c->gu, in, f->w13, f->b13, n, c->H, 2 * I, c->linear_mode), "ffn gate_up");
  if (f->oai) CK(krn_cuda_swiglu_oai(c->k, c->act, c->gu, n, NULL, I, g->act_alpha, g->act_limit), "ffn swiglu_oai");
  else CK(krn_cuda_swiglu(c->k, c->act, c->gu, n, NULL, I), "ffn swiglu");
  CK(krn_cuda_linear(c->k, out, c->act, f->w2, f->b2, n, I, c->H, c->linear_mode), "ffn down");
  return 0;
}

static int moe_layer(eng_cuda_ctx *c, int l, int n, int64_t bid, char *err, size_t errlen) {
  const eng_config *g = &c->m->cfg;
  const cuda_layer *d = &c->L[l];
  int H = c->H, E = c->E, K = c->K, S = c->stride, ms = c->moe_slot[l];
  size_t BK = (size_t)c->max_batch * K;
  int *p_ex = c->p_experts + (size_t)ms * BK;
  float *p_w = c->p_weights + (size_t)ms * BK;
  float *p_pr = c->p_probs + (size_t)ms * c->max_batch * E, *p_lg = c->p_logits + (size_t)ms * c->max_batch * E;
  int full = c->probe.level >= PRB_LEVEL_FULL;
  OPB(l, PRB_OP_ROUTER);
  CK(krn_cuda_linear_f32w(c->k, c->rlogits, c->h, d->gate, S == E ? d->gate_bias : NULL, n, H, S), "router logits");
  if (c->gpu_route) {
    krn_cuda_router r = {(int)c->policy->rc.kind, E, K, c->policy->rc.renorm, c->G, c->policy->rc.topk_group, S,
                         c->policy->rc.scale};
    if (r.kind == KRN_ROUTE_SOFTMAX_TOPK || r.kind == KRN_ROUTE_TOPK_SOFTMAX) r.n_group = 1;
    CK(krn_cuda_route(c->k, &r, c->rlogits, d->score_bias, n, c->probs, c->experts, c->weights, c->rscratch), "router");
    if (c->probe.route) {   /* async copies into pinned memory; reported after the batch sync */
      CK(krn_cuda_d2h(c->k, p_ex, c->experts, sizeof(int) * (size_t)n * K), "routing copy");
      CK(krn_cuda_d2h(c->k, p_w, c->weights, sizeof(float) * (size_t)n * K), "routing copy");
      if (full) {
        CK(krn_cuda_d2h(c->k, p_pr, c->probs, sizeof(float) * (size_t)n * E), "routing copy");
        CK(krn_cuda_d2h(c->k, p_lg, c->rlogits, sizeof(float) * (size_t)n * E), "routing copy");
      }
    }
  } else {   /* the CPU policy (eng_policy.c): one round trip for this layer */
    CK(krn_cuda_d2h(c->k, c->h_rlogits, c->rlogits, sizeof(float) * (size_t)n * S), "router logits copy");
    CK(krn_cuda_sync(c->k), "router logits copy");
    eng_route_out ro = {p_ex, p_w, p_pr, c->p_dropped + (size_t)ms * E, NULL, 0};
    c->policy->sel_bias = c->m->layers[l].score_bias;
    if (c->policy->route(c->policy, c->h_rlogits, c->cur_ids, n, l, &ro))
      return eng_errf(err, errlen, "router policy '%s' failed at layer %d", c->policy->spec, l);
    if (ro.state && c->probe.policy_state) c->probe.policy_state(c->probe.ctx, bid, l, ro.n_state, ro.state);
    if (full)
      for (int t = 0; t < n; t++) memcpy(p_lg + (size_t)t * E, c->h_rlogits + (size_t)t * S, sizeof(float) * (size_t)E);
    CK(krn_cuda_h2d(c->k, c->experts, p_ex, sizeof(int) * (size_t)n * K), "routing upload");
    CK(krn_cuda_h2d(c->k, c->weights, p_w, sizeof(float) * (size_t)n * K), "routing upload");
  }
  OPE(l, PRB_OP_ROUTER);
  OPB(l, PRB_OP_EXPERTS);
  int rows = n * K, I = d->ex.inter;
  CK(krn_cuda_moe_permute(c->k, c->experts, n, K, E, c->counts, c->offsets, c->row_tok, c->row_exp, c->slot_row), "permute");
  CK(krn_cuda_gather_rows(c->k, c->xin, c->h, c->row_tok, c->offsets + E, rows, H), "gather");
  int mode = n <= KRN_CUDA_GEMV_MAX_ROWS ? KRN_LIN_GEMV : KRN_LIN_TILED;
  if (c->expert_gemm) {   /* --expert-gemm cublas: tensor cores (eng_cuda_experts.c) */
    if (eng_cuda_experts_tc(c, d, rows, err, errlen)) return -1;
  } else {
    CK(krn_cuda_grouped_linear(c->k, c->gu, c->xin, d->ex.w13, (size_t)2 * I * H, d->ex.b13, c->offsets, c->row_exp, E,
                               rows, H, 2 * I, mode), "experts gate_up");
    if (d->ex.oai)
      CK(krn_cuda_swiglu_oai(c->k, c->act, c->gu, rows, c->offsets + E, I, g->act_alpha, g->act_limit), "experts swiglu_oai");
    else
      CK(krn_cuda_swiglu(c->k, c->act, c->gu, rows, c->offsets + E, I), "experts swiglu");
    CK(krn_cuda_grouped_linear(c->k, c->yout, c->act, d->ex.w2, (size_t)H * I, d->ex.b2, c->offsets, c->row_exp, E, rows,
                               I, H, mode), "experts down");
  }
  CK(krn_cuda_moe_combine(c->k, c->x, c->yout, c->slot_row, c->weights, n, K, H), "combine");
  OPE(l, PRB_OP_EXPERTS);
  if (d->sh.w13) {
    OPB(l, PRB_OP_SHARED_EXPERT);
    if (dense_ffn(c, &d->sh, c->h, c->yout, n, err, errlen)) return -1;
    if (d->shared_gate) CK(krn_cuda_rowdot_sigmoid(c->k, c->sgate, c->h, d->shared_gate, n, H), "shared gate");
    CK(krn_cuda_add_rows(c->k, c->x, c->yout, d->shared_gate ? c->sgate : NULL, n, H), "shared add");
    OPE(l, PRB_OP_SHARED_EXPERT);
  }
  return 0;
}

static int ffn_layer(eng_cuda_ctx *c, int l, int n, int64_t bid, char *err, size_t errlen) {
  const eng_config *g = &c->m->cfg;
  const cuda_layer *d = &c->L[l];
  OPB(l, PRB_OP_MOE_NORM);
  CK(krn_cuda_rmsnorm(c->k, c->h, c->x, d->moe_norm, n, c->H, g->rms_eps), "post_attention_norm");
  OPE(l, PRB_OP_MOE_NORM);
  if (d->moe) return moe_layer(c, l, n, bid, err, errlen);
  OPB(l, PRB_OP_EXPERTS);
  if (dense_ffn(c, &d->sh, c->h, c->yout, n, err, errlen)) return -1;
  CK(krn_cuda_add_rows(c->k, c->x, c->yout, NULL, n, c->H), "mlp residual");
  OPE(l, PRB_OP_EXPERTS);
  return 0;
}

/* want: ENG_LOGITS_* or ENG_WANT_ARGMAX (greedy next token of the last position into *next). */

static int64_t forward_impl(eng_cuda_ctx *c, const int *ids, int n, int want, float *logits, int *next, int seq_id,
                            int abs_pos0, char *err, size_t errlen) {
  const eng_model *M = c->m;
  const eng_config *g = &M->cfg;
  if (n <= 0 || n > c->max_batch) return eng_errf(err, errlen, "batch of %d tokens (limit %d)", n, c->max_batch);
  if (c->n_past + n > c->max_ctx)
    return eng_errf(err, errlen, "context full: %d + %d tokens exceed %d", c->n_past, n, c->max_ctx);
  for (int t = 0; t < n; t++)
    if (ids[t] < 0 || ids[t] >= g->vocab) return eng_errf(err, errlen, "token id %d out of range (vocab %d)", ids[t], g->vocab);
  int64_t bid = c->next_batch_id++;
  int H = c->H, start = c->n_past;
  c->cur_ids = ids;
  c->timed = c->probe.op != NULL && c->probe.level >= PRB_LEVEL_COUNTS;
  c->ev_used = 0;
  for (int t = 0; t < n; t++) { c->p_ids[t] = ids[t]; c->abs_pos[t] = abs_pos0 + t; c->seq_ids[t] = seq_id; }
  for (int t = 0; t < n; t++)
    for (int i = 0; i < c->half; i++) {
      double a = (double)(start + t) * c->inv_freq[i];
      c->p_cs[(size_t)t * c->half + i] = (float)(cos(a) * g->rope_attn_factor);
      c->p_sn[(size_t)t * c->half + i] = (float)(sin(a) * g->rope_attn_factor);
    }
  if (c->probe.scope_begin) c->probe.scope_begin(c->probe.scope_ctx, PRB_SCOPE_BATCH, bid, -1, -1, -1);
  if (c->timed) {
    c->t_host0 = prb_now_ns();
    c->evl[0] = (ev_label){-1, -1, -1};
    CK(krn_cuda_event_record(c->k, c->ev[c->ev_used++]), "event");
  }
  CK(krn_cuda_h2d(c->k, c->ids, c->p_ids, sizeof(int) * (size_t)n), "ids upload");
  CK(krn_cuda_h2d(c->k, c->cs, c->p_cs, sizeof(float) * (size_t)n * c->half), "rope upload");
  CK(krn_cuda_h2d(c->k, c->sn, c->p_sn, sizeof(float) * (size_t)n * c->half), "rope upload");
  OPB(-1, PRB_OP_EMBED);
  CK(krn_cuda_embed(c->k, c->x, c->embed, c->ids, n, H), "embed");
  OPE(-1, PRB_OP_EMBED);
  for (int l = 0; l < g->n_layers; l++) {
    if (c->probe.scope_begin) c->probe.scope_begin(c->probe.scope_ctx, PRB_SCOPE_LAYER, bid, l, -1, -1);
    if (attn_layer(c, l, n, start, bid, err, errlen) || ffn_layer(c, l, n, bid, err, errlen)) return -1;
    if (c->probe.scope_end) c->probe.scope_end(c->probe.scope_ctx, PRB_SCOPE_LAYER, bid, l, -1, -1);
  }
  c->n_past += n;
  if (want != ENG_LOGITS_NONE) {
    int first = want == ENG_LOGITS_ALL ? 0 : n - 1, cnt = n - first;
    OPB(-1, PRB_OP_FINAL_NORM);
    CK(krn_cuda_rmsnorm(c->k, c->h, c->x + (size_t)first * H, c->final_norm, cnt, H, g->rms_eps), "final norm");
    OPE(-1, PRB_OP_FINAL_NORM);
    OPB(-1, PRB_OP_LM_HEAD);
    CK(krn_cuda_linear(c->k, c->logits, c->h, c->lm_head, NULL, cnt, H, g->vocab, c->linear_mode), "lm_head");
    OPE(-1, PRB_OP_LM_HEAD);
    if (want == ENG_WANT_ARGMAX) {
      OPB(-1, PRB_OP_SAMPLE);
      CK(krn_cuda_argmax(c->k, c->argmax, c->logits, 1, g->vocab), "argmax");
      CK(krn_cuda_d2h(c->k, c->p_argmax, c->argmax, sizeof(int)), "argmax copy");
      OPE(-1, PRB_OP_SAMPLE);
    } else {
      CK(krn_cuda_d2h(c->k, logits, c->logits, sizeof(float) * (size_t)cnt * g->vocab), "logits copy");
    }
  }
  CK(krn_cuda_sync(c->k), "forward");
  if (want == ENG_WANT_ARGMAX && next) *next = c->p_argmax[0];
  if (c->probe.scope_end) c->probe.scope_end(c->probe.scope_ctx, PRB_SCOPE_BATCH, bid, -1, -1, -1);
  if (c->probe.route) {
    size_t BK = (size_t)c->max_batch * c->K;
    int full = c->probe.level >= PRB_LEVEL_FULL;
    for (int l = 0; l < g->n_layers; l++) {
      int ms = c->moe_slot[l];
      if (ms < 0) continue;
      size_t pe = (size_t)ms * c->max_batch * c->E;
      prb_route_batch rb = {bid, l, n, c->K, c->E, c->seq_ids, c->abs_pos, c->p_experts + (size_t)ms * BK,
                            c->p_weights + (size_t)ms * BK, full ? c->p_probs + pe : NULL,
                            full ? c->p_logits + pe : NULL, c->p_dropped + (size_t)ms * c->E};
      c->probe.route(c->probe.ctx, &rb);
    }
  }
  report_ops(c, bid);
  return bid;
}

int64_t eng_cuda_forward(eng_cuda_ctx *c, const int *ids, int n, int want_logits, float *logits, int seq_id,
                         int abs_pos0, char *err, size_t errlen) {
  if (want_logits != ENG_LOGITS_NONE && want_logits != ENG_LOGITS_LAST && want_logits != ENG_LOGITS_ALL)
    return eng_errf(err, errlen, "want_logits %d", want_logits);
  return forward_impl(c, ids, n, want_logits, logits, NULL, seq_id, abs_pos0, err, errlen);
}

/* ---- score / generate: eng_session.c's loops on this context ------------------------------- */
static int64_t runner_forward(void *ctx, const int *ids, int n, int want, float *logits, int *next, int seq_id,
                              int abs_pos0, char *err, size_t errlen) {
  return forward_impl(ctx, ids, n, want, logits, next, seq_id, abs_pos0, err, errlen);
}
static void runner_reset(void *ctx) { eng_cuda_ctx_reset(ctx); }
static eng_runner cuda_runner(eng_cuda_ctx *c) {
  eng_runner r = {c, runner_forward, runner_reset, &c->probe, c->m->cfg.vocab, c->max_ctx, c->max_batch, 1};
  return r;
}

int eng_cuda_score(eng_cuda_ctx *c, const int *ids, int n, int window, int seq_id, float *nll_out,
                   eng_score_result *res, eng_logits_cb cb, void *cb_user, char *err, size_t errlen) {
  eng_runner r = cuda_runner(c);
  return eng_run_score(&r, ids, n, window, seq_id, nll_out, res, cb, cb_user, err, errlen);
}

int eng_cuda_generate(eng_cuda_ctx *c, const int *prompt, int n_prompt, int n_new, const eng_sampler *s, int stop_id,
                      int seq_id, int *out_ids, int *n_out, eng_token_cb tok_cb, void *tok_user, eng_logits_cb cb,
                      void *cb_user, char *err, size_t errlen) {
  eng_runner r = cuda_runner(c);
  return eng_run_generate(&r, prompt, n_prompt, n_new, s, stop_id, seq_id, out_ids, n_out, tok_cb, tok_user, cb,
                          cb_user, err, errlen);
}
