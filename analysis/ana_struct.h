/* ana_struct.h — structure and specialization statistics of one run, computed in C from
 * the per-token routing arrays of ana_trace.h (no further DB access):
 *  - co-activation: N_ab = tokens whose top-k holds both a and b (diagonal N_a); lift =
 *    N_ab T k / (N_a N_b (k - 1)) (1 = independence baseline: a top-k holds k distinct
 *    experts, so given a, b fills one of the other k - 1 slots with P ~ (k-1)/k x N_b/T;
 *    without the factor, k = 2 routing with no structure reads 0.5 everywhere); reports
 *    compute it (reports/rep_structure.c, rep_coact_lift);
 *  - cross-layer transitions: primary (highest-weight) expert in layer l -> in the next
 *    MoE layer, mutual information in bits and normalised by min(H_l, H_l+1);
 *  - repetition: P(primary(t) = primary(t+1)) for consecutive tokens of a sequence vs the
 *    random baseline sum_e p_e^2 of the primary distribution;
 *  - load along position: slots per (position bin, expert); JS divergence (bits) between
 *    the first and second half of the positions; G-test of bins x experts;
 *  - per label: slots per (label, expert), G-test of independence (p-value, Cramer's V),
 *    JS divergence (bits) of each label from the other labels pooled;
 *  - per token: for the M most frequent token ids, N(x->e) = occurrences of x whose top-k
 *    holds e; token specialization = max_e N(x->e) / N(x), averaged over tokens with
 *    N(x) >= min_count weighted by N(x), vs the large-N independence baseline max_e q_e
 *    (q_e = share of tokens whose top-k holds e);
 *  - gate weights: histograms of the top-1 weight and of every slot weight (20 bins on
 *    [0, 1]), the share of tokens with top-1 weight >= pinned_w ("pinned") and with top-1
 *    weight <= (1 + uniform_tol) x the uniform value (1/k renormalised, else 1/E). */
#ifndef MOESCOPE_ANA_STRUCT_H
#define MOESCOPE_ANA_STRUCT_H

#include "analysis/ana_trace.h"

#define ANA_WBINS 20
#define ANA_MAX_POS_BINS 16

typedef struct ana_struct_opts {
  int max_tokens;        /* M: frequent tokens tracked (default 1024) */
  int min_count;         /* occurrences for token specialization (default 5) */
  double pinned_w;       /* default 0.99 */
  double uniform_tol;    /* default 0.05 */
} ana_struct_opts;

void ana_struct_opts_default(ana_struct_opts *o);

typedef struct ana_struct {
  int L, E, K, n_labels;
  long long *tok_n;           /* [L] tokens routed in layer */
  long long *slots;           /* [L][E] */
  long long *co;              /* [L][E][E] */
  long long *trans;           /* [L-1][E][E] */
  double *trans_mi, *trans_nmi;          /* [L-1] */
  long long *rep_pairs;       /* [L] consecutive pairs */
  double *rep_rate, *rep_base;           /* [L] */
  int n_pos_bins; long long pos_bin_w;
  long long *pos;             /* [L][n_pos_bins][E] */
  double *pos_js, *pos_p;     /* [L] */
  long long *lab;             /* [L][n_labels][E] */
  double *lab_g, *lab_df, *lab_p, *lab_v;  /* [L] */
  double *lab_js;             /* [L][n_labels] */
  long long *whist, *whist_all;          /* [L][ANA_WBINS] */
  double *w1_mean, *w1_pinned, *w1_uniform;  /* [L]; NaN when no weights */
  int renorm;                 /* per-token weights sum to 1 (+-1e-3) */
  int M;                      /* frequent tokens tracked */
  int32_t *tok;               /* [M] token ids, by descending occurrences */
  long long *tok_cnt;         /* [M] occurrences */
  long long *tok_exp;         /* [L][M][E] N(x->e) */
  double *tok_spec, *tok_spec_base;      /* [L]; NaN when no token ids */
  long long *tok_spec_n;      /* [L] occurrences of the tokens that entered tok_spec */
  int min_count;
} ana_struct;

int ana_struct_compute(const ana_trace *t, const ana_struct_opts *o, ana_struct *s, char *err, size_t errlen);
void ana_struct_free(ana_struct *s);

/* Top tokens of expert e in layer index li: tracked tokens x with N(x) >= min_count and
 * N(x->e) >= 1, by descending N(x->e)/N(x) (how exclusively x goes to e), then N(x->e),
 * then token id. Fills up to n indices into s->tok (and the shares); returns how many. */
int ana_top_tokens(const ana_struct *s, int li, int e, int n, int *idx, double *share);

#endif
