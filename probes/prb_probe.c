/* prb_probe.c — the small shared pieces of the probe interface (prb_probe.h): names of
 * record levels, engine ops and token phases (the strings stored in the trace DB, so they
 * are part of the schema contract), level parsing for `--record LEVEL`, the do-nothing
 * probe and the monotonic clock used by the CPU op timers. */
#include "probes/prb_probe.h"

#include <strings.h>
#include <time.h>

static const char *const level_names[] = { "off", "counts", "topk", "full" };

/* ops.op values; order follows enum prb_op. */
static const char *const op_names[PRB_OP_COUNT] = {
  [PRB_OP_EMBED] = "embed",
  [PRB_OP_ATTN_NORM] = "attn_norm",
  [PRB_OP_QKV] = "qkv",
  [PRB_OP_ROPE] = "rope",
  [PRB_OP_ATTENTION] = "attention",
  [PRB_OP_ATTN_OUT] = "attn_out",
  [PRB_OP_MOE_NORM] = "moe_norm",
  [PRB_OP_ROUTER] = "router",
  [PRB_OP_EXPERTS] = "experts",
  [PRB_OP_EXPERT] = "expert",
  [PRB_OP_SHARED_EXPERT] = "shared_expert",
  [PRB_OP_FINAL_NORM] = "final_norm",
  [PRB_OP_LM_HEAD] = "lm_head",
  [PRB_OP_SAMPLE] = "sample",
};

const char *prb_level_name(int level) {
  if (level < PRB_LEVEL_OFF || level > PRB_LEVEL_FULL) return "unknown";
  return level_names[level];
}

/* Case-insensitive level name; -1 when NULL or unknown. */
int prb_level_parse(const char *s) {
  if (!s) return -1;
  for (int i = PRB_LEVEL_OFF; i <= PRB_LEVEL_FULL; i++)
    if (strcasecmp(s, level_names[i]) == 0) return i;
  return -1;
}

const char *prb_op_name(int op) {
  if (op < 0 || op >= PRB_OP_COUNT) return "unknown";
  return op_names[op];
}

const char *prb_scope_name(int scope) {
  static const char *const names[PRB_SCOPE_COUNT] = { "run", "batch", "layer", "op", "expert" };
  return scope >= 0 && scope < PRB_SCOPE_COUNT ? names[scope] : "unknown";
}

const char *prb_phase_name(int phase) {
  switch (phase) {
    case PRB_PHASE_PREFILL: return "prefill";
    case PRB_PHASE_DECODE: return "decode";
    default: return "unknown";
  }
}

prb_probe prb_probe_none(void) {
  prb_probe p = { .ctx = NULL, .level = PRB_LEVEL_OFF,
                  .route = NULL, .op = NULL, .sequence = NULL, .tokens = NULL, .policy_state = NULL, .logits = NULL,
                  .scope_ctx = NULL, .scope_begin = NULL, .scope_end = NULL };
  return p;
}

uint64_t prb_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
