/* eng_policy.h — router policies: given router logits for a batch of tokens, choose
 * experts and gate weights. The forward pass only talks to this interface, so a run can
 * swap the model's own router for another (`moescope run --route SPEC`).
 *
 * Contract: out->experts/out->weights are [n, k_max] (k_max from eng_policy_kmax);
 * an empty slot (a token dropped by a capacity policy) has expert -1 and weight 0.
 * out->probs [n, E] receives the router scores the policy used (softmax probabilities for
 * softmax routers, sigmoid scores for DeepSeek-V3, the joint group x expert probability for
 * the hierarchical router). Slots are in descending selection-score order; ties are broken by
 * the lower expert index everywhere (groups too). dropped[E] counts tokens an expert refused.
 *
 * Native routers (one per family, eng_router_cfg.kind):
 *  SOFTMAX_TOPK   softmax over E, top-k, optional renormalisation, * scale
 *                 (Mixtral, Qwen2/3-MoE, OLMoE, DeepSeek-V2 topk_method greedy)
 *  GROUP_LIMITED  DeepSeek-V2 group_limited_greedy: softmax; group score = max p in the group;
 *                 the topk_group best groups; top-k of p with other groups masked to 0; * scale
 *  SIGMOID_GROUP  DeepSeek-V3: s = sigmoid(z); selection on s + bias (bias from the layer);
 *                 group score = sum of the group's top-2; top topk_group groups; others masked
 *                 to 0; top-k; w = s (renormalised with +1e-20 when renorm) * scale
 *  TOPK_SOFTMAX   gpt-oss: top-k of the logits, w = softmax over the k chosen logits
 *  SWITCH         top-1 of softmax, w = p, capacity ceil(cf * T / E) tokens per expert per
 *                 batch in token order; overflow dropped (expert -1) and counted
 *  HIER           two-level: logits row = [E expert logits | G group logits]; g = argmax
 *                 softmax(group logits); top-k of the softmax over group g's E/G experts;
 *                 w = p(g) * p(e | g)
 *
 * Specs: "native" (the model's router), "topk:k=K,renorm=0|1".
 */
#ifndef MOESCOPE_ENG_POLICY_H
#define MOESCOPE_ENG_POLICY_H

#include <stddef.h>

typedef enum {
  ENG_ROUTER_SOFTMAX_TOPK = 0, ENG_ROUTER_GROUP_LIMITED, ENG_ROUTER_SIGMOID_GROUP, ENG_ROUTER_TOPK_SOFTMAX,
  ENG_ROUTER_SWITCH, ENG_ROUTER_HIER, ENG_ROUTER_COUNT
} eng_router_kind;

typedef struct eng_router_cfg {
  eng_router_kind kind;
  int n_experts, k, renorm;
  int n_group, topk_group;    /* GROUP_LIMITED / SIGMOID_GROUP; HIER: n_group = groups */
  float scale;                /* routed_scaling_factor (1 = none) */
  float capacity_factor;      /* SWITCH */
} eng_router_cfg;

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
  int native;        /* created from "native": eng_policy_bind() may adopt the model's router */
  eng_router_cfg rc;
  int logit_stride;  /* floats per token row of logits (E, or E + G for HIER) */
  const float *sel_bias;  /* SIGMOID_GROUP: the current layer's selection bias [E] (or NULL) */
  int (*route)(eng_policy *p, const float *logits, const int *token_ids, int n, eng_route_out *out);
  void (*free)(eng_policy *p);
  void *state;
};

/* Builds a policy from SPEC for a model with E experts whose native router is
 * softmax -> top-k (k_native) -> renormalise (renorm_native). 0 or -1 (+err). */
int eng_policy_create(eng_policy **out, const char *spec, int n_experts, int k_native, int renorm_native,
                      char *err, size_t errlen);
/* Same, with the model's full native router description (any kind above). */
int eng_policy_create_cfg(eng_policy **out, const char *spec, const eng_router_cfg *native, char *err, size_t errlen);
/* A "native" policy adopts the router described by rc (eng_ctx_init calls this, so a policy
 * made with eng_policy_create("native", E, k, renorm) runs every family's own router).
 * Other specs are left alone. 0, or -1 when rc needs more slots than the policy was made with. */
int eng_policy_bind(eng_policy *p, const eng_router_cfg *rc);
void eng_policy_free(eng_policy *p);
int eng_policy_kmax(const eng_policy *p);
const char *eng_router_kind_name(eng_router_kind k);

/* Top-k of one row by value, ties to the lower index; idx[k] in descending order. */
void eng_topk(const float *v, int n, int k, int *idx);

#endif
