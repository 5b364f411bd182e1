/* eng_attn.c — the attention variants of the forward pass (see eng_forward_int.h):
 *  - standard GQA (Mixtral, Qwen2/3-MoE, OLMoE, gpt-oss): q/k/v projections with optional
 *    biases, qk RMSNorm per head (Qwen3) or over the whole projection (OLMoE, then clip_qkv),
 *    RoPE (rotate-half; YaRN tables for gpt-oss), causal softmax attention, optional sliding
 *    window and learned sinks (gpt-oss), output projection (+ bias);
 *  - DeepSeek MLA: q directly or through the q LoRA (q_a -> RMSNorm -> q_b), compressed KV
 *    (kv_a_proj_with_mqa -> [latent | k_pe]), latent RMSNorm -> kv_b -> per-head k_nope and
 *    v; decoupled RoPE on q_pe and the shared k_pe (interleaved pairs, YaRN when configured);
 *    keys [k_nope | k_pe] and values are cached decompressed per head.
 * The LoRA norms use eps 1e-6 (HF DeepseekV2/V3RMSNorm default; not rms_norm_eps). */
#include "engine/eng_forward_int.h"

#include <math.h>
#include <string.h>

static void clampv(float *x, size_t n, float lim) {
  for (size_t i = 0; i < n; i++) x[i] = x[i] > lim ? lim : x[i] < -lim ? -lim : x[i];
}

static void attn_standard(eng_ctx *c, int l, int n, int start, int64_t bid, int timed, uint64_t op_t0) {
  const eng_config *g = &c->m->cfg;
  const eng_layer *ly = &c->m->layers[l];
  const krn_backend *be = c->be;
  int H = g->hidden, nh = g->n_heads, nkv = g->n_kv_heads, hd = g->head_dim;
  int qd = nh * hd, kvd = nkv * hd;
  float *kc = c->kcache + (size_t)l * c->max_ctx * kvd, *vc = c->vcache + (size_t)l * c->max_ctx * kvd;
  float *kn = kc + (size_t)start * kvd, *vn = vc + (size_t)start * kvd;
  be->matmul_w(c->q, c->h, &ly->q, ly->bq, n, H, qd);
  be->matmul_w(kn, c->h, &ly->k, ly->bk, n, H, kvd);
  be->matmul_w(vn, c->h, &ly->v, ly->bv, n, H, kvd);
  if (g->qk_norm == ENG_QKNORM_HEAD) {
    be->rmsnorm(c->q, c->q, ly->q_norm, n * nh, hd, g->rms_eps);
    be->rmsnorm(kn, kn, ly->k_norm, n * nkv, hd, g->rms_eps);
  } else if (g->qk_norm == ENG_QKNORM_FULL) {
    be->rmsnorm(c->q, c->q, ly->q_norm, n, qd, g->rms_eps);
    be->rmsnorm(kn, kn, ly->k_norm, n, kvd, g->rms_eps);
  }
  if (g->clip_qkv > 0) {
    clampv(c->q, (size_t)n * qd, g->clip_qkv);
    clampv(kn, (size_t)n * kvd, g->clip_qkv);
    clampv(vn, (size_t)n * kvd, g->clip_qkv);
  }
  OP_END(l, PRB_OP_QKV, -1);
  if (c->rope_tables) {
    be->rope_cs(c->q, n, nh, qd, hd, g->rope_dim, c->rope_cos, c->rope_sin, g->rope_interleave);
    be->rope_cs(kn, n, nkv, kvd, hd, g->rope_dim, c->rope_cos, c->rope_sin, g->rope_interleave);
  } else {
    be->rope(c->q, n, nh, hd, c->pos, g->rope_theta);
    be->rope(kn, n, nkv, hd, c->pos, g->rope_theta);
  }
  OP_END(l, PRB_OP_ROPE, -1);
  int window = g->sliding[l] ? g->sliding_window : 0;
  if (window == 0 && !ly->sinks && g->family != ENG_FAM_GPT_OSS)
    be->attention(c->att, c->q, kc, vc, n, start, nh, nkv, hd);
  else
    be->attention_ex(c->att, c->q, kc, vc, n, start, nh, nkv, hd, hd, (float)g->attn_scale, window, ly->sinks);
  OP_END(l, PRB_OP_ATTENTION, -1);
  be->matmul_w(c->tmp, c->att, &ly->o, ly->bo, n, qd, H);
  for (size_t i = 0; i < (size_t)n * H; i++) c->x[i] += c->tmp[i];
  OP_END(l, PRB_OP_ATTN_OUT, -1);
}

static void attn_mla(eng_ctx *c, int l, int n, int start, int64_t bid, int timed, uint64_t op_t0) {
  const eng_config *g = &c->m->cfg;
  const eng_layer *ly = &c->m->layers[l];
  const krn_backend *be = c->be;
  int H = g->hidden, nh = g->n_heads, nope = g->qk_nope_dim, rd = g->qk_rope_dim, vh = g->v_head_dim;
  int qk = nope + rd, kvr = g->kv_lora_rank, qr = g->q_lora_rank, kva = kvr + rd, kvb = nope + vh;
  float *kc = c->kcache + (size_t)l * c->max_ctx * c->kdim, *vc = c->vcache + (size_t)l * c->max_ctx * c->vdim;
  if (qr > 0) {
    be->matmul_w(c->mla_a, c->h, &ly->q_a, ly->b_q_a, n, H, qr);
    be->rmsnorm(c->mla_a, c->mla_a, ly->q_a_norm, n, qr, 1e-6f);
    be->matmul_w(c->q, c->mla_a, &ly->q_b, NULL, n, qr, nh * qk);
  } else {
    be->matmul_w(c->q, c->h, &ly->q, NULL, n, H, nh * qk);
  }
  be->matmul_w(c->mla_a, c->h, &ly->kv_a, ly->b_kv_a, n, H, kva);           /* [latent | k_pe] */
  for (int t = 0; t < n; t++)
    be->rmsnorm(c->mla_b + (size_t)t * kvr, c->mla_a + (size_t)t * kva, ly->kv_a_norm, 1, kvr, 1e-6f);
  be->matmul_w(c->mla_c, c->mla_b, &ly->kv_b, NULL, n, kvr, nh * kvb);       /* per head [k_nope | v] */
  OP_END(l, PRB_OP_QKV, -1);
  be->rope_cs(c->q + nope, n, nh, nh * qk, qk, rd, c->rope_cos, c->rope_sin, g->rope_interleave);
  be->rope_cs(c->mla_a + kvr, n, 1, kva, 0, rd, c->rope_cos, c->rope_sin, g->rope_interleave);
  OP_END(l, PRB_OP_ROPE, -1);
  for (int t = 0; t < n; t++) {
    float *kr = kc + (size_t)(start + t) * c->kdim, *vr = vc + (size_t)(start + t) * c->vdim;
    const float *src = c->mla_c + (size_t)t * nh * kvb, *pe = c->mla_a + (size_t)t * kva + kvr;
    for (int h = 0; h < nh; h++) {
      memcpy(kr + (size_t)h * qk, src + (size_t)h * kvb, sizeof(float) * nope);
      memcpy(kr + (size_t)h * qk + nope, pe, sizeof(float) * rd);
      memcpy(vr + (size_t)h * vh, src + (size_t)h * kvb + nope, sizeof(float) * vh);
    }
  }
  be->attention_ex(c->att, c->q, kc, vc, n, start, nh, nh, qk, vh, (float)g->attn_scale, 0, NULL);
  OP_END(l, PRB_OP_ATTENTION, -1);
  be->matmul_w(c->tmp, c->att, &ly->o, ly->bo, n, nh * vh, H);
  for (size_t i = 0; i < (size_t)n * H; i++) c->x[i] += c->tmp[i];
  OP_END(l, PRB_OP_ATTN_OUT, -1);
}

void eng_attn_layer(eng_ctx *c, int l, int n, int start, int64_t bid, int timed) {
  const eng_config *g = &c->m->cfg;
  OP_BEGIN();
  c->be->rmsnorm(c->h, c->x, c->m->layers[l].attn_norm, n, g->hidden, g->rms_eps);
  OP_END(l, PRB_OP_ATTN_NORM, -1);
  if (g->mla) attn_mla(c, l, n, start, bid, timed, op_t0);
  else attn_standard(c, l, n, start, bid, timed, op_t0);
}
