/* ana_diag.h — `moescope diagnose`: a verdict per MoE layer with its evidence.
 *
 * Rules (thresholds in ana_diag_thr, all overridable from the CLI; defaults and the
 * reasoning behind them are printed with every diagnosis):
 *  - insufficient data: fewer than min_slots slots per expert on average (a note, not a
 *    finding: nothing below is judged).
 *  - collapsed ("a few experts take most tokens"): the busiest ceil(collapse_frac x E)
 *    experts (default a quarter of them; 25% of the slots under uniform routing) hold >=
 *    collapse_share of the slots (default 0.55: most of the routing, more than twice their
 *    uniform share), or the busiest expert is in the top-k of >= collapse_tok of the
 *    tokens (default 2/3; k x its slot share).
 *  - imbalanced: not collapsed, CV >= imb_cv (default 0.5) or MaxVio >= imb_maxvio
 *    (default 1.0: the busiest expert gets twice its fair share, i.e. it overflows even a
 *    capacity factor of 2). Both also need a chi-square goodness-of-fit p < alpha.
 *  - dead experts: experts with slots < dead_frac x the fair share (default 0.1), only
 *    judged when the fair share is >= 30 slots (then 0 is not chance: P < e^-30).
 *  - router saturation: share of tokens whose top-1 gate weight is >= pinned_w (0.99)
 *    is >= sat_frac (0.5) ("pinned"; skipped when k = 1 and weights are renormalised,
 *    where the weight is 1 by construction); or the share of tokens whose top-1 weight is
 *    within uniform_tol (5%) of the uniform value is >= sat_frac ("uniform"); or, at
 *    level full, the share of tokens whose margin p_(k) - p_(k+1) < margin (1e-3) is >=
 *    sat_frac ("low margin": the top-k choice is a coin flip).
 *  - drift: JS divergence (bits) between the expert distributions of the first and the
 *    second half of the positions >= drift_js, or between one label's distribution and
 *    that of all other labels >= drift_js, with the G-test p < alpha (default 1e-3).
 *    Default 0.5 bits, the midpoint between identical routing (0) and routing to disjoint
 *    experts (1 bit); learned domain preference of a healthy model stays well below it.
 * Exit status of the command: 0 when no layer has a finding, 3 otherwise.
 */
#ifndef MOESCOPE_ANA_DIAG_H
#define MOESCOPE_ANA_DIAG_H

#include "analysis/ana_balance.h"
#include "analysis/ana_struct.h"

typedef struct ana_diag_thr {
  double min_slots, collapse_frac, collapse_share, collapse_tok, imb_cv, imb_maxvio, dead_frac, sat_frac, pinned_w,
         uniform_tol, margin, drift_js, alpha;
} ana_diag_thr;

void ana_diag_thr_default(ana_diag_thr *t);

enum {
  ANA_F_COLLAPSED = 1, ANA_F_IMBALANCED = 2, ANA_F_DEAD = 4, ANA_F_PINNED = 8,
  ANA_F_UNIFORM = 16, ANA_F_LOW_MARGIN = 32, ANA_F_DRIFT_POS = 64, ANA_F_DRIFT_LABEL = 128,
  ANA_F_LOWDATA = 256   /* note only */
};

#define ANA_DIAG_TOP 3

typedef struct ana_diag_layer {
  int layer;
  unsigned flags;
  const char *verdict;      /* healthy, collapsed, dead experts, imbalanced, router saturation,
                               drift, insufficient data */
  long long slots;
  double cv, maxvio, h_norm, chi2_p;
  int n_half;               /* fewest experts holding >= half of the slots */
  int n_few;                /* ceil(collapse_frac x E) */
  double few_share;         /* slot share of the n_few busiest experts */
  double top_tok;           /* share of tokens whose top-k holds the busiest expert (k x share) */
  int top_e[ANA_DIAG_TOP]; double top_share[ANA_DIAG_TOP];   /* busiest experts, slot shares */
  int n_dead; int *dead;    /* ids (points into ana_diag storage) */
  double w1_pinned, w1_uniform, low_margin, margin_med, prob_hnorm;   /* NaN = unavailable */
  double pos_js, pos_p;
  int drift_label; double label_js, label_p;                         /* -1 = none */
  int resp_tok[5]; long long resp_tok_n[5]; int n_resp_tok;   /* tokens feeding top_e[0] */
  int resp_label; double resp_label_share;    /* label sending the largest share to top_e[0] */
} ana_diag_layer;

typedef struct ana_diag {
  ana_summary sum;
  ana_diag_thr thr;
  int has_trace;            /* routing rows were available */
  ana_trace trace;
  ana_struct st;
  int n;                    /* layers */
  ana_diag_layer *layers;
  int *dead_store;
  int n_findings;           /* layers with at least one finding */
} ana_diag;

int ana_diagnose(ana_db *d, long long run_id, const ana_diag_thr *thr, ana_diag *out, char *err, size_t errlen);
void ana_diag_free(ana_diag *g);

/* Names of the finding bits set in flags, comma-separated, into buf. */
const char *ana_diag_flag_names(unsigned flags, char *buf, size_t n);

#endif
