/* tst_fidelity.h — the engine against a trained model's float64 reference.json (the format
 * of ../shared/models/<name>/reference.json: prompts with ids, final_logits, mean_nll,
 * per-layer routing experts/weights, greedy_new_ids). One routine runs every prompt through
 * the optimised CPU path and measures the worst differences; the test asserts its bounds.
 *
 * Near-ties (models/README.md lists (domain, layer, pos) where two router probabilities
 * differ by < 1e-5): a float32 engine may legitimately pick the other expert there. When
 * it does, only what is upstream of that decision is compared for that prompt (earlier
 * positions in every layer, that position in earlier layers); its final logits, nll and
 * greedy continuation depend on it and are skipped. A flip anywhere else is a mismatch. */
#ifndef MOESCOPE_TST_FIDELITY_H
#define MOESCOPE_TST_FIDELITY_H

typedef struct { const char *domain; int layer, pos; } tst_near_tie;

typedef struct {
  int prompts, pairs, mismatches, tie_flips;
  int greedy_steps, greedy_wrong, logits_len_wrong;
  double worst_logit, worst_w, worst_rel, worst_nll;
  int family, norm_topk_prob, shared_gated;     /* from the loaded config, for the caller */
} tst_fidelity;

/* Loads model_dir, runs every prompt of ref_path; 0, or -1 (message on stderr) when the model
 * or reference cannot be loaded or a forward fails. */
int tst_fidelity_run(const char *model_dir, const char *ref_path, const tst_near_tie *ties, int n_ties,
                     tst_fidelity *out);
/* One summary line on stdout. */
void tst_fidelity_print(const char *name, const tst_fidelity *f);

#endif
