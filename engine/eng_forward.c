/* eng_forward.c — the decoder forward pass, one implementation for every family (exactly as
 * Hugging Face computes it): embedding -> per layer [RMSNorm -> attention variant with KV
 * cache (eng_attn.c) -> residual -> RMSNorm -> dense MLP or MoE block (eng_moe.c) ->
 * residual] -> final RMSNorm -> lm_head. This file owns the context (buffers, KV cache,
 * RoPE frequency tables incl. YaRN) and the layer loop; ops are timed into the probe.
 * Weight matmuls go through the backend's matmul_w on the model's typed views (stored
 * dtype, read in place); the embedding row of each token is widened with krn_w_row_f32. */
#include "engine/eng_util.h"
#include "engine/eng_forward_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t zmax(size_t a, size_t b) { return a > b ? a : b; }

/* HF _compute_yarn_parameters (modeling_rope_utils.py), in double. */
static void yarn_inv_freq(const eng_config *g, double *inv) {
  int dim = g->rope_dim, half = dim / 2;
  double base = g->rope_theta, factor = g->yarn_factor, orig = g->yarn_orig_max_pos;
  double low = dim * log(orig / (g->yarn_beta_fast * 2 * M_PI)) / (2 * log(base));
  double high = dim * log(orig / (g->yarn_beta_slow * 2 * M_PI)) / (2 * log(base));
  if (g->yarn_truncate) { low = floor(low); high = ceil(high); }
  if (low < 0) low = 0;
  if (high > dim - 1) high = dim - 1;
  if (low == high) high += 0.001;
  for (int i = 0; i < half; i++) {
    double pf = pow(base, 2.0 * i / dim), extra = 1.0 / pf, inter = 1.0 / (factor * pf);
    double ramp = (i - low) / (high - low);
    ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
    double ef = 1.0 - ramp;
    inv[i] = inter * (1 - ef) + extra * ef;
  }
}

void eng_rope_inv_freq(const eng_config *g, double *inv) {
  if (g->rope_yarn) yarn_inv_freq(g, inv);
  else
    for (int i = 0; i < g->rope_dim / 2; i++) inv[i] = pow((double)g->rope_theta, -2.0 * (double)i / g->rope_dim);
}

int eng_ctx_init(eng_ctx *c, const eng_model *m, const krn_backend *be, eng_policy *policy, prb_probe probe,
                 int max_ctx, int max_batch, char *err, size_t errlen) {
  memset(c, 0, sizeof *c);
  const eng_config *g = &m->cfg;
  if (max_ctx <= 0 || max_batch <= 0) return eng_errf(err, errlen, "context and batch sizes must be positive");
  if (max_batch > max_ctx) max_batch = max_ctx;
  if (eng_policy_bind(policy, &g->router))
    return eng_errf(err, errlen, "router policy '%s' has fewer slots than the model's router needs (k=%d)",
                    policy->spec, g->router.k);
  c->m = m; c->be = be; c->policy = policy; c->probe = probe;
  c->max_ctx = max_ctx; c->max_batch = max_batch;
  int G = g->router.kind == ENG_ROUTER_HIER ? g->router.n_group : 0;
  size_t H = g->hidden, B = max_batch, E = g->n_experts, K = eng_policy_kmax(policy);
  size_t qd = (size_t)g->n_heads * g->head_dim, vd = (size_t)g->n_heads * g->v_head_dim;
  c->kdim = g->n_kv_heads * g->head_dim;
  c->vdim = g->n_kv_heads * g->v_head_dim;
  size_t I = zmax(zmax((size_t)g->intermediate, (size_t)g->dense_intermediate), (size_t)g->shared_intermediate);
  size_t kvsz_k = (size_t)g->n_layers * max_ctx * c->kdim, kvsz_v = (size_t)g->n_layers * max_ctx * c->vdim;
  size_t mla_a = zmax((size_t)g->q_lora_rank, (size_t)(g->kv_lora_rank + g->qk_rope_dim));
  size_t mla_c = (size_t)g->n_heads * (g->qk_nope_dim + g->v_head_dim);
  size_t half = (size_t)g->rope_dim / 2;
  c->rope_tables = g->rope_yarn || g->rope_interleave || g->rope_dim != g->head_dim || g->rope_attn_factor != 1.0;
  c->kcache = malloc(kvsz_k * sizeof(float));
  c->vcache = malloc(kvsz_v * sizeof(float));
  c->x = malloc(B * H * sizeof(float));
  c->h = malloc(B * H * sizeof(float));
  c->q = malloc(B * qd * sizeof(float));
  c->k = malloc(B * c->kdim * sizeof(float));
  c->v = malloc(B * c->vdim * sizeof(float));
  c->att = malloc(B * zmax(qd, vd) * sizeof(float));
  c->tmp = malloc(B * zmax(zmax(H, qd), vd) * sizeof(float));
  c->moe = malloc(B * H * sizeof(float));
  c->rlogits = malloc(B * (E + G) * sizeof(float));
  c->plogits = malloc(B * E * sizeof(float));
  c->probs = malloc(B * E * sizeof(float));
  c->experts = malloc(B * K * sizeof(int));
  c->weights = malloc(B * K * sizeof(float));
  c->dropped = malloc(E * sizeof(int));
  c->pos = malloc(B * sizeof(int));
  c->abs_pos = malloc(B * sizeof(int));
  c->seq_ids = malloc(B * sizeof(int));
  c->etok = malloc(B * K * sizeof(int));
  c->eweight = malloc(B * zmax(K, 1) * sizeof(float));
  c->ein = malloc(B * H * sizeof(float));
  c->eg = malloc(B * I * sizeof(float));
  c->eu = malloc(B * I * sizeof(float));
  c->eout = malloc(B * H * sizeof(float));
  c->mla_a = malloc(B * zmax(mla_a, 1) * sizeof(float));
  c->mla_b = malloc(B * zmax((size_t)g->kv_lora_rank, 1) * sizeof(float));
  c->mla_c = malloc(B * zmax(mla_c, 1) * sizeof(float));
  c->inv_freq = malloc(zmax(half, 1) * sizeof(double));
  c->rope_cos = malloc(B * zmax(half, 1) * sizeof(float));
  c->rope_sin = malloc(B * zmax(half, 1) * sizeof(float));
  if (!c->kcache || !c->vcache || !c->x || !c->h || !c->q || !c->k || !c->v || !c->att || !c->tmp ||
      !c->moe || !c->rlogits || !c->plogits || !c->probs || !c->experts || !c->weights || !c->dropped || !c->pos ||
      !c->abs_pos || !c->seq_ids || !c->etok || !c->eweight || !c->ein || !c->eg || !c->eu || !c->eout ||
      !c->mla_a || !c->mla_b || !c->mla_c || !c->inv_freq || !c->rope_cos || !c->rope_sin) {
    eng_ctx_free(c);
    return eng_errf(err, errlen, "out of memory allocating a context of %d tokens", max_ctx);
  }
  eng_rope_inv_freq(g, c->inv_freq);
  return 0;
}

void eng_ctx_free(eng_ctx *c) {
  void *p[] = {c->kcache, c->vcache, c->x, c->h, c->q, c->k, c->v, c->att, c->tmp, c->moe, c->rlogits,
               c->plogits, c->probs, c->experts, c->weights, c->dropped, c->pos, c->abs_pos, c->seq_ids, c->etok,
               c->eweight, c->ein, c->eg, c->eu, c->eout, c->mla_a, c->mla_b, c->mla_c, c->inv_freq,
               c->rope_cos, c->rope_sin};
  for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) free(p[i]);
  memset(c, 0, sizeof *c);
}

void eng_ctx_reset(eng_ctx *c) { c->n_past = 0; }

int64_t eng_forward(eng_ctx *c, const int *ids, int n, int want_logits, float *logits,
                    int seq_id, int abs_pos0, char *err, size_t errlen) {
  const eng_model *M = c->m;
  const eng_config *g = &M->cfg;
  const krn_backend *be = c->be;
  if (n <= 0 || n > c->max_batch) return eng_errf(err, errlen, "batch of %d tokens (limit %d)", n, c->max_batch);
  if (c->n_past + n > c->max_ctx)
    return eng_errf(err, errlen, "context full: %d + %d tokens exceed %d", c->n_past, n, c->max_ctx);
  for (int t = 0; t < n; t++)
    if (ids[t] < 0 || ids[t] >= g->vocab) return eng_errf(err, errlen, "token id %d out of range (vocab %d)", ids[t], g->vocab);
  int64_t bid = c->next_batch_id++;
  c->ids = ids;
  int timed = c->probe.op == NULL || c->probe.level < PRB_LEVEL_COUNTS ? TIME_OFF
            : (c->probe.level >= PRB_LEVEL_FULL || n >= 16) ? TIME_FINE : TIME_COARSE;
  int H = g->hidden, start = c->n_past;
  for (int t = 0; t < n; t++) { c->pos[t] = start + t; c->abs_pos[t] = abs_pos0 + t; c->seq_ids[t] = seq_id; }
  if (c->rope_tables) {   /* cos/sin of this batch's positions (YaRN attention factor included) */
    int half = g->rope_dim / 2;
    for (int t = 0; t < n; t++)
      for (int i = 0; i < half; i++) {
        double a = (double)c->pos[t] * c->inv_freq[i];
        c->rope_cos[(size_t)t * half + i] = (float)(cos(a) * g->rope_attn_factor);
        c->rope_sin[(size_t)t * half + i] = (float)(sin(a) * g->rope_attn_factor);
      }
  }

  SCOPE_BEGIN(PRB_SCOPE_BATCH, -1, -1, -1);
  OP_BEGIN();
  for (int t = 0; t < n; t++) krn_w_row_f32(&M->embed, ids[t], c->x + (size_t)t * H);
  OP_END(-1, PRB_OP_EMBED, -1);
  for (int l = 0; l < g->n_layers; l++) {
    SCOPE_BEGIN(PRB_SCOPE_LAYER, l, -1, -1);
    SCOPE_BEGIN(PRB_SCOPE_OP, l, PRB_OP_ATTENTION, -1);
    eng_attn_layer(c, l, n, start, bid, timed);
    SCOPE_END(PRB_SCOPE_OP, l, PRB_OP_ATTENTION, -1);
    eng_ffn_layer(c, l, n, bid, timed);
    SCOPE_END(PRB_SCOPE_LAYER, l, -1, -1);
  }
  c->n_past += n;
  if (want_logits != ENG_LOGITS_NONE) {
    if (timed) op_t0 = prb_now_ns();
    int first = want_logits == ENG_LOGITS_LAST ? n - 1 : 0, cnt = n - first;
    be->rmsnorm(c->h, c->x + (size_t)first * H, M->final_norm, cnt, H, g->rms_eps);
    OP_END(-1, PRB_OP_FINAL_NORM, -1);
    SCOPE_BEGIN(PRB_SCOPE_OP, -1, PRB_OP_LM_HEAD, -1);
    be->matmul_w(logits, c->h, M->lm_head.data ? &M->lm_head : &M->embed, NULL, cnt, H, g->vocab);
    SCOPE_END(PRB_SCOPE_OP, -1, PRB_OP_LM_HEAD, -1);
    OP_END(-1, PRB_OP_LM_HEAD, -1);
  }
  SCOPE_END(PRB_SCOPE_BATCH, -1, -1, -1);
  return bid;
}
