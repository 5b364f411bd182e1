/* ana_balance.h — load-balance metrics of a MoE run, per layer and overall.
 *
 * Input is the trace DB (via ana_db.h) only. Definitions (E = experts, c_e = slots
 * routed to expert e in a layer, mean = sum(c)/E):
 *   CV       population std(c) / mean
 *   MaxVio   (max(c) - mean) / mean
 *   H_norm   H(p) / log(E), p_e = c_e / sum(c), 0 log 0 = 0 (1 = perfectly uniform)
 *   Gini     sum_ij |c_i - c_j| / (2 E^2 mean)  (population Gini, 0 = equal, (E-1)/E max)
 *   min/max  min(c) / max(c)
 *   dead     experts with c_e = 0
 *   Jain     (sum c)^2 / (E sum c^2)  (Jain's fairness index: 1 = equal, 1/E = one expert)
 * Capacity overflow (from expert_load per batch_id, every record level): for capacity
 * factor CF, per forward batch b and layer, capacity = ceil(CF x S_b / E) slots per expert
 * where S_b = the batch's slots in that layer (= k x T_b when every token fills its k slots;
 * DESIGN.md: ceil(CF k T / E)); overflow = sum_b sum_e max(0, load_be - capacity) = the
 * slots a capacity-dropping router would have dropped. ANA_NCF factors: 1.0, 1.25, 2.0.
 * Router losses (only when router_probs rows exist, record level `full`):
 *   aux loss = a * E * sum_e f_e * P_e with a = 1, following Hugging Face
 *     transformers' Mixtral load_balancing_loss_func: f_e = (slots routed to e) / T,
 *     i.e. the mean over tokens of the summed top-k one-hot mask (sum_e f_e = k), and
 *     P_e = mean over tokens of the router probability of e (probs blob). A perfectly
 *     balanced router gives k (Switch top-1: 1). Per layer T = router_probs rows of the
 *     layer; the overall value concatenates all layers as HF does (T = all layer-token
 *     rows, f and P averaged over them), which is not the mean of per-layer values.
 *   z-loss   = mean over (token, layer) of logsumexp(logits)^2 (ST-MoE), logits blob.
 * Overall balance metrics are the mean of the per-layer metrics (experts of different
 * layers are different experts, so their counts are not pooled); overall dead = sum.
 * Undefined values (no tokens, E < 2 for H_norm) are NaN.
 */
#ifndef MOESCOPE_ANA_BALANCE_H
#define MOESCOPE_ANA_BALANCE_H

#include "analysis/ana_db.h"

typedef struct ana_balance {
  int n_experts;
  long long total;          /* sum of c_e */
  double mean, cv, maxvio, h_norm, gini, min_max, jain;
  int n_dead;
} ana_balance;

/* Computes the metrics of one count vector. dead (may be NULL) receives the ids of the
 * dead experts (room for E ints). O(E log E). */
void ana_balance_compute(const long long *counts, int n_experts, ana_balance *b, int *dead);

/* Router losses of a run. Arrays are indexed like ana_load rows (layer_ids). */
typedef struct ana_router_loss {
  int have_probs, have_logits;   /* any usable probs / logits blob */
  long long *n_tokens;           /* [n_layers] router_probs rows per layer */
  double *aux;                   /* [n_layers] NaN when unavailable */
  double *z;                     /* [n_layers] NaN when unavailable */
  double aux_overall, z_overall; /* NaN when unavailable */
  /* Router confidence (from the probs blobs, level full): per layer a histogram of the
   * margin p_(k) - p_(k+1) between the k-th and (k+1)-th largest probability in log10
   * bins (bin b covers [10^(ANA_MARGIN_LO + b/4), 10^(ANA_MARGIN_LO + (b+1)/4)); bin 0
   * also holds smaller margins), and the mean normalised entropy of the probs. */
  long long *margin_hist;        /* [n_layers][ANA_MBINS] */
  double *prob_hnorm;            /* [n_layers] NaN when unavailable */
} ana_router_loss;

#define ANA_MARGIN_LO (-7)
#define ANA_MBINS 28

/* Share of a layer's tokens with margin < thr (thr a power of 10^(1/4) is exact). */
double ana_margin_frac_below(const ana_router_loss *rl, int li, double thr);
/* Median margin of a layer (bin centre, geometric), NaN when no probs. */
double ana_margin_median(const ana_router_loss *rl, int li);

/* Reads router_probs (blobs decoded in C: SQL cannot sum float arrays); f_e uses the
 * expert_load slot counts in ld (equal to routing COUNT(*) per layer x expert).
 * Rows whose blob length is not 4*E bytes are skipped. Free with ana_router_loss_free. */
int ana_router_losses(ana_db *d, const ana_run *run, const ana_load *ld, ana_router_loss *out,
                      char *err, size_t errlen);
void ana_router_loss_free(ana_router_loss *rl);

#define ANA_NCF 3
extern const double ana_cf[ANA_NCF];   /* 1.0, 1.25, 2.0 */

/* Overflow slots per (layer row of ld, CF): out[l * ANA_NCF + c]. 0 or -1. */
int ana_capacity_overflow(ana_db *d, const ana_run *run, const ana_load *ld, long long *out,
                          char *err, size_t errlen);

/* Everything `stats` and `report` show about one run. */
typedef struct ana_summary {
  ana_run run;
  ana_load load;
  ana_balance *layer;        /* [load.n_layers] */
  int *dead;                 /* [load.n_layers * load.n_experts], first layer[i].n_dead used */
  ana_balance overall;       /* means of per-layer metrics; total and n_dead summed */
  long long *overflow;       /* [load.n_layers][ANA_NCF] slots over capacity (see above) */
  long long overflow_all[ANA_NCF];
  ana_router_loss loss;
  int has_routing, has_probs;
} ana_summary;

/* Opens nothing: uses an open DB. run_id < 0 = latest run. */
int ana_summary_get(ana_db *d, long long run_id, ana_summary *out, char *err, size_t errlen);
void ana_summary_free(ana_summary *s);

#endif
