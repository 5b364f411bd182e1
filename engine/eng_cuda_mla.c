/* eng_cuda_mla.c — DeepSeek-V2/V3 multi-head latent attention on the GPU, a kernel-by-kernel
 * mirror of attn_mla in engine/eng_attn.c (same order, same eps, same cache layout):
 *   q = q_proj(h), or q_b(RMSNorm_1e-6(q_a(h) + b_q_a));
 *   kva = kv_a_proj_with_mqa(h) (+ bias) = [latent (kv_lora_rank) | k_pe (qk_rope_head_dim)];
 *   kvb = kv_b(RMSNorm_1e-6(latent)) = per head [k_nope | v];
 *   RoPE from the batch's cos/sin tables (YaRN attention factor included, interleaved pairs
 *   when configured) on every head's q_pe and on the shared k_pe;
 *   cache rows (float32, decompressed per head): keys [k_nope | k_pe], values v;
 *   causal attention with qk dim nope+rope != v dim and the config's softmax scale (YaRN
 *   mscale^2 for DeepSeek-V2/V3); o_proj (+ bias) added into the residual stream.
 * Weights are BF16 on the device like every other matrix (eng_cuda.h). */
#include "engine/eng_cuda_int.h"

#include <stdio.h>

int eng_cuda_mla_upload(eng_cuda_ctx *c, int l, char *err, size_t errlen) {
  const eng_config *g = &c->m->cfg;
  const eng_layer *ly = &c->m->layers[l];
  cuda_layer *d = &c->L[l];
  int H = c->H, nh = c->nh, nope = g->qk_nope_dim, rd = g->qk_rope_dim, vh = g->v_head_dim;
  int qk = nope + rd, kvr = g->kv_lora_rank, qr = g->q_lora_rank;
  char what[96];
  snprintf(what, sizeof what, "layer %d attention (MLA)", l);
  if (!ly->kv_a_norm || (qr > 0 && !ly->q_a_norm))
    return eng_errf(err, errlen, "cuda upload: %s: a LoRA norm weight is missing", what);
  if (qr > 0) {
    if (eng_cuda_up_mat(c, &d->q_a, &ly->q_a, qr, H, what, err, errlen) ||
        eng_cuda_up_vec(c, &d->b_q_a, ly->b_q_a, (size_t)qr, what, err, errlen) ||
        eng_cuda_up_vec(c, &d->q_a_norm, ly->q_a_norm, (size_t)qr, what, err, errlen) ||
        eng_cuda_up_mat(c, &d->q_b, &ly->q_b, nh * qk, qr, what, err, errlen))
      return -1;
  } else if (eng_cuda_up_mat(c, &d->q, &ly->q, nh * qk, H, what, err, errlen)) {
    return -1;
  }
  if (eng_cuda_up_mat(c, &d->kv_a, &ly->kv_a, kvr + rd, H, what, err, errlen) ||
      eng_cuda_up_vec(c, &d->b_kv_a, ly->b_kv_a, (size_t)(kvr + rd), what, err, errlen) ||
      eng_cuda_up_vec(c, &d->kv_a_norm, ly->kv_a_norm, (size_t)kvr, what, err, errlen) ||
      eng_cuda_up_mat(c, &d->kv_b, &ly->kv_b, nh * (nope + vh), kvr, what, err, errlen) ||
      eng_cuda_up_mat(c, &d->o, &ly->o, H, nh * vh, what, err, errlen) ||
      eng_cuda_up_vec(c, &d->bo, ly->bo, (size_t)H, what, err, errlen))
    return -1;
  return 0;
}

int eng_cuda_mla_attn(eng_cuda_ctx *c, int l, int n, int start, int64_t bid, char *err, size_t errlen) {
  const eng_config *g = &c->m->cfg;
  const cuda_layer *d = &c->L[l];
  int H = c->H, nh = c->nh, nope = g->qk_nope_dim, rd = g->qk_rope_dim, vh = g->v_head_dim, lm = c->linear_mode;
  int qk = nope + rd, kvr = g->kv_lora_rank, qr = g->q_lora_rank, kva = kvr + rd, kvb = nope + vh;
  float *kc = c->kc + (size_t)l * c->max_ctx * c->kdim, *vc = c->vc + (size_t)l * c->max_ctx * c->vdim;
  OPB(l, PRB_OP_QKV);
  if (qr > 0) {
    CK(krn_cuda_linear(c->k, c->mla_a, c->h, d->q_a, d->b_q_a, n, H, qr, lm), "q_a_proj");
    CK(krn_cuda_rmsnorm(c->k, c->mla_a, c->mla_a, d->q_a_norm, n, qr, 1e-6f), "q_a_layernorm");
    CK(krn_cuda_linear(c->k, c->q, c->mla_a, d->q_b, NULL, n, qr, nh * qk, lm), "q_b_proj");
  } else {
    CK(krn_cuda_linear(c->k, c->q, c->h, d->q, NULL, n, H, nh * qk, lm), "q_proj");
  }
  CK(krn_cuda_linear(c->k, c->mla_a, c->h, d->kv_a, d->b_kv_a, n, H, kva, lm), "kv_a_proj_with_mqa");
  CK(krn_cuda_rmsnorm_strided(c->k, c->mla_b, kvr, c->mla_a, kva, d->kv_a_norm, n, kvr, 1e-6f), "kv_a_layernorm");
  CK(krn_cuda_linear(c->k, c->mla_c, c->mla_b, d->kv_b, NULL, n, kvr, nh * kvb, lm), "kv_b_proj");
  OPE(l, PRB_OP_QKV);
  OPB(l, PRB_OP_ROPE);
  CK(krn_cuda_rope_cs(c->k, c->q + nope, n, nh, nh * qk, qk, rd, c->cs, c->sn, g->rope_interleave), "rope q_pe");
  CK(krn_cuda_rope_cs(c->k, c->mla_a + kvr, n, 1, kva, 0, rd, c->cs, c->sn, g->rope_interleave), "rope k_pe");
  OPE(l, PRB_OP_ROPE);
  OPB(l, PRB_OP_ATTENTION);
  CK(krn_cuda_mla_kv(c->k, kc + (size_t)start * c->kdim, vc + (size_t)start * c->vdim, c->mla_c, c->mla_a, n, nh, nope,
                     rd, vh, kvr), "mla cache");
  CK(krn_cuda_attention(c->k, c->att, c->q, kc, vc, n, start, nh, nh, qk, vh, c->attn_scale, 0, NULL, c->attn_kind),
     "attention");
  OPE(l, PRB_OP_ATTENTION);
  OPB(l, PRB_OP_ATTN_OUT);
  CK(krn_cuda_linear(c->k, c->tmp, c->att, d->o, d->bo, n, nh * vh, H, lm), "o_proj");
  CK(krn_cuda_add_rows(c->k, c->x, c->tmp, NULL, n, H), "residual");
  OPE(l, PRB_OP_ATTN_OUT);
  return 0;
}
