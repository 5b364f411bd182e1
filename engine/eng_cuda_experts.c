/* eng_cuda_experts.c — the routed experts' GEMMs on tensor cores for the GPU forward pass
 * (`moescope run --device cuda --expert-gemm cublas`, env MOESCOPE_EXPERT_GEMM; see
 * eng_cuda.h): selection of the path and, per MoE layer, gate_up -> activation -> down through
 * krn_cuda_grouped_linear_tc. The default path (own fp32 grouped kernels) stays in
 * eng_cuda.c's moe_layer, untouched. cuBLAS takes each expert's row count on the host, so
 * the permutation's offsets are copied back into pinned memory and the stream synchronised
 * once per MoE layer (the price of this path; it is opt-in and meant for prefill batches).
 * Plain C: no CUDA header, builds everywhere (krn_cuda_ops stubs without CUDA). */
#include "engine/eng_cuda_int.h"

#include <string.h>

int eng_cuda_expert_gemm_parse(const char *s) {
  if (!s) return -1;
  if (!strcmp(s, "own")) return ENG_EXPERT_GEMM_OWN;
  if (!strcmp(s, "cublas")) return ENG_EXPERT_GEMM_CUBLAS;
  if (!strcmp(s, "cublas-grouped")) return ENG_EXPERT_GEMM_CUBLAS_GROUPED;
  if (!strcmp(s, "cublas-pergroup")) return ENG_EXPERT_GEMM_CUBLAS_PER_GROUP;
  return -1;
}

const char *eng_cuda_expert_gemm_name(int mode) {
  switch (mode) {
  case ENG_EXPERT_GEMM_OWN: return "own";
  case ENG_EXPERT_GEMM_CUBLAS: return "cublas";
  case ENG_EXPERT_GEMM_CUBLAS_GROUPED: return "cublas-grouped";
  case ENG_EXPERT_GEMM_CUBLAS_PER_GROUP: return "cublas-pergroup";
  default: return "?";
  }
}

int eng_cuda_set_expert_gemm(eng_cuda_ctx *c, int mode, char *err, size_t errlen) {
  if (mode < ENG_EXPERT_GEMM_OWN || mode > ENG_EXPERT_GEMM_CUBLAS_PER_GROUP)
    return eng_errf(err, errlen, "cuda: unknown expert GEMM mode %d", mode);
  if (mode != ENG_EXPERT_GEMM_OWN && !c->xbf) {
    size_t BK = (size_t)c->max_batch * c->K, w = (size_t)(c->H > c->inter ? c->H : c->inter);
    c->xbf = eng_cuda_dalloc(c, BK * w * sizeof(uint16_t));
    if (!c->xbf) return eng_cuda_err(err, errlen, "expert GEMM BF16 scratch");
    if (krn_cuda_host_alloc((void **)&c->p_offs, sizeof(int) * (size_t)(c->E + 1))) {
      c->p_offs = NULL;
      return eng_cuda_err(err, errlen, "expert GEMM offsets (pinned)");
    }
  }
  c->expert_gemm = mode;
  return 0;
}

int eng_cuda_experts_tc(eng_cuda_ctx *c, const cuda_layer *d, int rows, char *err, size_t errlen) {
  const eng_config *g = &c->m->cfg;
  int H = c->H, E = c->E, I = d->ex.inter;
  int tm = c->expert_gemm == ENG_EXPERT_GEMM_CUBLAS_GROUPED    ? KRN_TC_GROUPED
           : c->expert_gemm == ENG_EXPERT_GEMM_CUBLAS_PER_GROUP ? KRN_TC_PER_GROUP
                                                                 : KRN_TC_AUTO;
  CK(krn_cuda_d2h(c->k, c->p_offs, c->offsets, sizeof(int) * (size_t)(E + 1)), "expert offsets copy");
  CK(krn_cuda_sync(c->k), "expert offsets copy");
  if (c->p_offs[E] < 0 || c->p_offs[E] > rows)
    return eng_errf(err, errlen, "cuda: permutation holds %d rows (at most %d)", c->p_offs[E], rows);
  CK(krn_cuda_grouped_linear_tc(c->k, c->gu, c->xin, c->xbf, d->ex.w13, (size_t)2 * I * H, d->ex.b13, c->p_offs, E, H,
                                2 * I, tm), "experts gate_up (cublas)");
  if (d->ex.oai)
    CK(krn_cuda_swiglu_oai(c->k, c->act, c->gu, rows, c->offsets + E, I, g->act_alpha, g->act_limit), "experts swiglu_oai");
  else
    CK(krn_cuda_swiglu(c->k, c->act, c->gu, rows, c->offsets + E, I), "experts swiglu");
  CK(krn_cuda_grouped_linear_tc(c->k, c->yout, c->act, c->xbf, d->ex.w2, (size_t)H * I, d->ex.b2, c->p_offs, E, I, H,
                                tm), "experts down (cublas)");
  return 0;
}
