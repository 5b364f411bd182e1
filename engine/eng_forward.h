/* eng_forward.h — the MoE forward pass over a batch of tokens with a KV cache.
 *
 * One forward for every family: per layer the attention variant (eng_attn.c: GQA with the
 * family's biases / qk-norm / RoPE / sliding window / sinks, or DeepSeek MLA) and the FFN
 * (eng_moe.c: dense MLP, or router + policy + routed experts + shared expert).
 *
 * eng_ctx holds what a forward needs besides the weights: the compute backend, the
 * router policy, the probe that observes routing and op timings, the KV cache and
 * scratch buffers. One call of eng_forward() = one "batch" (batch_id) in the trace:
 * prefill passes many tokens, decode passes one. Positions continue from ctx->n_past.
 */
#ifndef MOESCOPE_ENG_FORWARD_H
#define MOESCOPE_ENG_FORWARD_H

#include "engine/eng_model.h"
#include "engine/eng_policy.h"
#include "kernels/krn_backend.h"
#include "probes/prb_probe.h"

#include <stdint.h>

typedef struct eng_ctx {
  const eng_model *m;
  const krn_backend *be;
  eng_policy *policy;
  prb_probe probe;
  int max_ctx;            /* KV capacity in tokens */
  int max_batch;          /* tokens per forward */
  int n_past;             /* tokens already in the KV cache */
  int64_t next_batch_id;
  const int *ids;         /* token ids of the batch being run (for token-aware router policies) */
  float *kcache, *vcache; /* [layers][max_ctx][kdim] and [layers][max_ctx][vdim] */
  int kdim, vdim;         /* floats per cached token per layer (MLA: per-head decompressed keys) */
  /* RoPE tables: inv_freq[rope_dim/2] (YaRN-corrected), per batch cos/sin [max_batch][rope_dim/2] */
  double *inv_freq;
  float *rope_cos, *rope_sin;
  int rope_tables;        /* 1 = rope through tables (YaRN, interleaved, partial), 0 = plain kernel */
  /* scratch */
  float *x, *h, *q, *k, *v, *att, *tmp, *moe, *rlogits, *eg, *eu, *ein, *eout;
  float *mla_a, *mla_b, *mla_c, *plogits;
  int *experts, *dropped, *pos, *etok, *seq_ids, *abs_pos;
  float *weights, *probs, *eweight;
} eng_ctx;

/* Allocates a context for up to max_ctx tokens of context and max_batch per forward. */
/* RoPE inverse frequencies inv[rope_dim/2] of the model, in double: theta^(-2i/d), or HF's
 * YaRN-corrected ones when the config has YaRN scaling (shared by the CPU and CUDA paths). */
void eng_rope_inv_freq(const eng_config *g, double *inv);
int eng_ctx_init(eng_ctx *c, const eng_model *m, const krn_backend *be, eng_policy *policy, prb_probe probe,
                 int max_ctx, int max_batch, char *err, size_t errlen);
void eng_ctx_free(eng_ctx *c);
void eng_ctx_reset(eng_ctx *c);   /* empties the KV cache (new sequence / window) */

/* Which positions get logits. */
enum { ENG_LOGITS_NONE = 0, ENG_LOGITS_LAST = 1, ENG_LOGITS_ALL = 2 };

/* Runs n tokens (n <= max_batch, n_past + n <= max_ctx). logits receives [n, V] (ALL)
 * or [1, V] (LAST). seq_id and abs_pos0 (position of ids[0] within the recorded
 * sequence) only label the trace. Returns the batch id, or -1 (+err). */
int64_t eng_forward(eng_ctx *c, const int *ids, int n, int want_logits, float *logits,
                    int seq_id, int abs_pos0, char *err, size_t errlen);

#endif
