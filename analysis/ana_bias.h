/* ana_bias.h — the router-bias trajectory of a run routed by the auxiliary-loss-free
 * `bias` policy (DeepSeek-V3 style balancing): the per-expert selection bias that routed
 * every forward batch (table router_bias, one row per batch x layer x expert) next to the
 * layer's load imbalance in that same batch (table expert_load):
 *   MaxVio_b = max_e load_be / mean_e load_be - 1,  mean over all E experts
 * (0 = perfectly balanced; NaN when the batch routed no slot in the layer or has no
 * expert_load rows). The bias of batch b is the one the policy *used* for b (it is updated
 * after the batch from b's loads), so MaxVio_b is the imbalance that bias produced.
 * Reads the trace DB only (analysis/ contract); the report draws it (reports/rep_bias.c).
 */
#ifndef MOESCOPE_ANA_BIAS_H
#define MOESCOPE_ANA_BIAS_H

#include "analysis/ana_db.h"

typedef struct ana_bias_traj {
  long long run_id;
  int L;                  /* MoE layers with router_bias rows */
  int E;                  /* experts: max(runs.n_experts, max expert id + 1 in either table) */
  int B;                  /* forward batches with router_bias rows (any layer) */
  int *layer_ids;         /* [L] model layer ids, ascending */
  long long *batch_ids;   /* [B] ascending */
  double *bias;           /* [L][B][E] bias of (layer, batch, expert); NaN when no row */
  long long *load;        /* [L][B][E] expert_load.tokens of that batch (0 when no row) */
  long long *slots;       /* [L][B] sum of load over experts */
  double *maxvio;         /* [L][B] MaxVio_b (see above) */
} ana_bias_traj;

/* Index helpers. */
static inline size_t ana_bias_cell(const ana_bias_traj *t, int li, int b, int e) {
  return ((size_t)li * (size_t)t->B + (size_t)b) * (size_t)t->E + (size_t)e;
}

/* Loads run run_id (< 0 = latest run). Returns 0, 1 when the run has no router_bias rows
 * (or the DB has no router_bias table; *out empty, err says so) or -1 with a message.
 * Free with ana_bias_free (safe on the empty result). */
int ana_bias_trajectory(ana_db *d, long long run_id, ana_bias_traj *out, char *err, size_t errlen);
void ana_bias_free(ana_bias_traj *t);

#endif
