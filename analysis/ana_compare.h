/* ana_compare.h — two runs of the same inputs side by side (`moescope compare`): the
 * effect of a routing strategy on quality, routing and cost.
 *
 * Both runs must have scored the same token stream (same (seq_id, pos, token_id)
 * rows); otherwise the comparison is refused. Measured:
 *  quality  perplexity per label and overall from tokens.nll, tokens dropped; at level full
 *           (logits_sample rows in both) the mean KL(P_A || P_B) of the next-token
 *           distributions and their top-1 agreement over the sampled positions
 *  routing  per layer (needs routing rows in both): mean Jaccard of the expert sets
 *           |A∩B|/|A∪B| per token, top-1 agreement (slot 0), Pearson correlation of the
 *           gate weights over the union of experts (0 where not chosen), balance metrics
 *           of both (ana_balance) and the load shift per expert (share B - share A)
 *  cost     time per token and per layer (ns): GPU kernel time (CUPTI_ACTIVITY_KIND_KERNEL
 *           rows joined to the run's kernel_scope rows, every kernel once) when both runs
 *           have such rows, else the engine's CPU op timers (ops table; nested per-expert
 *           rows left out). A pair where only one run has kernel rows is "mixed": ops for
 *           both, cost_mixed set, so that the two numbers stay comparable.
 * Runs may come from different DB files. */
#ifndef MOESCOPE_ANA_COMPARE_H
#define MOESCOPE_ANA_COMPARE_H

#include "analysis/ana_balance.h"

typedef struct ana_cmp_quality {
  int n_labels;
  char **labels;          /* [n_labels] ("(unlabelled)" for NULL) */
  double *ppl_a, *ppl_b;  /* [n_labels], NaN when nothing scored */
  long long *scored;      /* [n_labels] scored tokens (same in both) */
  double ppl_all_a, ppl_all_b;
} ana_cmp_quality;

typedef struct ana_compare {
  ana_run run_a, run_b;
  long long n_tokens;
  ana_cmp_quality q;
  int has_routing;        /* both runs have routing rows */
  int n_layers, n_experts;
  int *layer_ids;         /* [n_layers] */
  double *jaccard, *top1, *wcorr, *mean_k_a, *mean_k_b;    /* [n_layers] */
  ana_balance *bal_a, *bal_b;                              /* [n_layers] */
  double *shift;          /* [n_layers * n_experts] share_b - share_a */
  long long dropped_a, dropped_b;
  long long n_logit_pos;   /* sampled positions with logits in both runs (level full) */
  double kl_mean, next_top1; /* mean KL(P_A || P_B) of next-token distributions (nats), argmax agreement; NaN without samples */
  int cost_src;            /* ANA_COST_KERNELS or ANA_COST_OPS: what ns_per_token_* measure */
  int kern_a, kern_b;      /* the run has GPU kernel rows joined to kernel_scope */
  int cost_mixed;          /* kern_a != kern_b: fell back to ops */
  double ns_per_token_a, ns_per_token_b;                   /* NaN without rows of the source */
  double *layer_ns_a, *layer_ns_b;                         /* [n_layers] per token */
} ana_compare;

enum { ANA_COST_AUTO = -1, ANA_COST_OPS = 1, ANA_COST_KERNELS = 2 };
const char *ana_cost_src_name(int src);   /* "gpu kernels", "cpu ops" */
/* 1 when run (>= 0) of d has GPU kernel rows joined to kernel_scope, else 0. */
int ana_run_has_kernels(ana_db *d, long long run);

/* Compares run_a of da with run_b of db (da may equal db). 0, or -1 + one error line
 * (e.g. "token streams differ at seq 0 pos 17"). Free with ana_compare_free. */
int ana_compare_runs(ana_db *da, long long run_a, ana_db *db, long long run_b, ana_compare *out,
                     char *err, size_t errlen);
/* The same with the cost source chosen by the caller: ANA_COST_AUTO (kernels when both runs
 * have them), ANA_COST_OPS, or ANA_COST_KERNELS (honoured only when both have them; else ops). */
int ana_compare_runs_src(ana_db *da, long long run_a, ana_db *db, long long run_b, int cost_src, ana_compare *out,
                         char *err, size_t errlen);
void ana_compare_free(ana_compare *c);

#endif
