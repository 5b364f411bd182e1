/* prb_probe.h — the observation interface between the engine and whoever records.
 *
 * The engine never knows about SQLite: it reports what it does through this small
 * vtable (a `prb_probe`). A NULL function pointer means "not interested", so an
 * all-NULL probe (prb_probe_none()) costs one branch per event. The SQLite sink
 * (prb_sink.h) is the main implementation; tests use in-memory collectors.
 *
 * Event granularity is a batch: one call per (forward batch, layer) carries the routing
 * of every token in the batch, so the per-token cost is a memcpy into the sink's ring.
 * All pointers are only valid during the call; implementations copy what they keep.
 */
#ifndef MOESCOPE_PRB_PROBE_H
#define MOESCOPE_PRB_PROBE_H

#include <stdint.h>
#include <stddef.h>

/* Record levels (DESIGN.md): off < counts < topk < full. */
enum prb_level { PRB_LEVEL_OFF = 0, PRB_LEVEL_COUNTS = 1, PRB_LEVEL_TOPK = 2, PRB_LEVEL_FULL = 3 };
const char *prb_level_name(int level);          /* "off","counts","topk","full" */
int prb_level_parse(const char *s);             /* -1 when unknown */

/* Engine-level operations timed on the CPU (the `ops` table, column op). */
enum prb_op {
  PRB_OP_EMBED = 0, PRB_OP_ATTN_NORM, PRB_OP_QKV, PRB_OP_ROPE, PRB_OP_ATTENTION, PRB_OP_ATTN_OUT,
  PRB_OP_MOE_NORM, PRB_OP_ROUTER, PRB_OP_EXPERTS, PRB_OP_EXPERT, PRB_OP_SHARED_EXPERT,
  PRB_OP_FINAL_NORM, PRB_OP_LM_HEAD, PRB_OP_SAMPLE, PRB_OP_COUNT
};
const char *prb_op_name(int op);                /* "attention", "router", "expert", ... */

/* Token phases (tokens.phase). */
enum prb_phase { PRB_PHASE_PREFILL = 0, PRB_PHASE_DECODE = 1 };
const char *prb_phase_name(int phase);

/* Routing of one forward batch at one MoE layer. */
typedef struct prb_route_batch {
  int64_t batch_id;
  int layer;
  int n_tokens;
  int k;                 /* slots per token (experts[] row width) */
  int n_experts;         /* E */
  const int *seq_ids;    /* [n_tokens] */
  const int *pos;        /* [n_tokens] position in the sequence (absolute, not window) */
  const int *experts;    /* [n_tokens*k]; -1 marks an empty slot (token dropped/fewer experts) */
  const float *weights;  /* [n_tokens*k] gate weights actually applied */
  const float *probs;    /* [n_tokens*E] router probabilities, or NULL */
  const float *logits;   /* [n_tokens*E] raw router logits, or NULL */
  const int *dropped;    /* [E] tokens dropped per expert by the policy, or NULL (= 0) */
} prb_route_batch;

/* Nested scopes bracketed by prb_probe.scope_begin/scope_end (NVTX ranges, CUPTI external
 * correlation ids): run > batch > layer > op > expert, always closed in LIFO order. */
enum prb_scope_kind { PRB_SCOPE_RUN = 0, PRB_SCOPE_BATCH, PRB_SCOPE_LAYER, PRB_SCOPE_OP, PRB_SCOPE_EXPERT,
                 PRB_SCOPE_COUNT };
const char *prb_scope_name(int scope);          /* "run", "batch", "layer", "op", "expert" */

typedef struct prb_probe {
  void *ctx;
  int level;             /* what the consumer wants; the engine skips work above it */
  void (*route)(void *ctx, const prb_route_batch *rb);
  /* one timed op; expert = -1 when not expert-specific, layer = -1 outside layers */
  void (*op)(void *ctx, int64_t batch_id, int layer, int op, int expert,
             uint64_t start_ns, uint64_t end_ns, int thread);
  void (*sequence)(void *ctx, int seq_id, const char *label, const char *source, int n_tokens);
  /* n tokens of a sequence; nll may be NULL (no scores) and NaN entries mean "no score" */
  void (*tokens)(void *ctx, int seq_id, int n, const int *pos, const int *token_ids,
                 int phase, const float *nll);
  /* State of a stateful router policy at one (forward batch, layer): n values, one per
   * expert (the bias policy: the selection bias it used in this batch) -> router_bias. */
  void (*policy_state)(void *ctx, int64_t batch_id, int layer, int n, const float *values);
  /* Next-token logits (vocab floats) at position pos of a scored sequence; the engine calls
   * it at level full for every PRB_LOGITS_EVERY-th position -> logits_sample (compare's
   * KL divergence and top-1 agreement between runs). */
  void (*logits)(void *ctx, int seq_id, int pos, int vocab, const float *z);
  /* Scope hooks (probes/prb_nvtx.h), called with scope_ctx on the engine's thread around
   * batches, layers and ops (op = enum prb_op; expert = -1 when not expert-specific;
   * layer = -1 outside layers). NULL = not interested. Independent of `level`. */
  void *scope_ctx;
  void (*scope_begin)(void *scope_ctx, int scope, int64_t batch_id, int layer, int op, int expert);
  void (*scope_end)(void *scope_ctx, int scope, int64_t batch_id, int layer, int op, int expert);
} prb_probe;

/* Sampling stride of the logits hook (positions 0, 8, 16, ... of each sequence). */
#define PRB_LOGITS_EVERY 8

/* A probe that records nothing. */
prb_probe prb_probe_none(void);

/* Monotonic clock in nanoseconds (CLOCK_MONOTONIC). */
uint64_t prb_now_ns(void);

#endif
