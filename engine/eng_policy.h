/* eng_policy.h — router policies: given router logits for a batch of tokens, choose
 * experts and gate weights. The forward pass only talks to this interface, so a run can
 * swap the model's own router for another (`moescope run --route SPEC`).
 *
 * Contract: out->experts/out->weights are [n, k_max] (k_max from eng_policy_kmax);
 * an empty slot has expert -1 and weight 0. out->probs [n, E] receives the router
 * scores the policy used (softmax probabilities for softmax routers). Slots are in
 * descending score order; ties are broken by the lower expert index. dropped[E] counts
 * tokens an expert refused (capacity policies; 0 otherwise).
 *
 * Specs: "native" (the model's router), "topk:k=K,renorm=0|1".
 */
#ifndef MOESCOPE_ENG_POLICY_H
#define MOESCOPE_ENG_POLICY_H

#include <stddef.h>

typedef struct eng_route_out {
  int *experts;      /* [n * k_max] */
  float *weights;    /* [n * k_max] */
  float *probs;      /* [n * E] */
  int *dropped;      /* [E] */
} eng_route_out;

typedef struct eng_policy eng_policy;
struct eng_policy {
  char spec[128];    /* canonical text, stored in runs.policy */
  int n_experts, k, renorm;
  int (*route)(eng_policy *p, const float *logits, const int *token_ids, int n, eng_route_out *out);
  void (*free)(eng_policy *p);
  void *state;
};

/* Builds a policy from SPEC for a model with E experts whose native router is
 * softmax -> top-k (k_native) -> renormalise (renorm_native). 0 or -1 (+err). */
int eng_policy_create(eng_policy **out, const char *spec, int n_experts, int k_native, int renorm_native,
                      char *err, size_t errlen);
void eng_policy_free(eng_policy *p);
int eng_policy_kmax(const eng_policy *p);

/* Top-k of one row by value, ties to the lower index; idx[k] in descending order. */
void eng_topk(const float *v, int n, int k, int *idx);

#endif
