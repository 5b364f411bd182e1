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
 * Overrides (`--route SPEC`, eng_policy_ext.c; parameters in any order, omitted ones take
 * the defaults in brackets; p->spec holds the canonical form with every parameter). Below,
 * p = softmax(z) over the E experts, s = sigmoid(z), "top-k" = k largest, ties to the lower
 * expert index. Every override multiplies its weights by the model's routed_scaling_factor
 * (1 except DeepSeek-V2/V3; then ",scale=X" ends the spec).
 *  native                         the model's own router (above)
 *  topk:k=K,score=softmax|sigmoid,renorm=0|1    [native k, softmax, native renorm]
 *                 top-k of the scores; w = score (renorm: / sum of the k)
 *  topp:p=P,max_k=M               [0.4, E] experts by descending p until their mass >= P
 *                 (|mass - P| within 1e-6 counts as reached), at most M, at least 1;
 *                 w = p / mass of the chosen set (renormalised, sums to 1). Slots = M.
 *  capacity:cf=C,k=K,renorm=0|1,order=token|rank  [1.25, native k, native renorm, token]
 *                 GShard/Switch: cap = ceil(C*k*T/E) slots per expert per call (T = tokens
 *                 of the forward batch); each token's top-k of p, w = p (renorm: over the k
 *                 before dropping); slots claimed in token order (token 0 first, within a
 *                 token by rank) -- order=rank: every token's rank-1 slot first, then rank 2
 *                 (GShard's priority); a slot over capacity is emptied (expert -1, w 0) and
 *                 counted in dropped[e]. A token with every slot dropped gets MoE output 0
 *                 (the residual passes through; shared experts still apply).
 *  expert_choice:cf=C             [2] Zhou et al. 2022: cap = min(T, ceil(C*T/E)); every
 *                 expert takes the cap tokens with the highest p[t][e] (ties to the lower
 *                 token); a token gets 0..E experts, slots by descending p; w = p[t][e]
 *                 (not renormalised). Slots = E; dropped[] = 0. Decode (T = 1): every
 *                 expert takes the token.
 *  bias:gamma=G,k=K,score=softmax|sigmoid,renorm=0|1  [0.001, native k, sigmoid for
 *                 DeepSeek-V3 models else softmax, native renorm] DeepSeek-V3 aux-loss-free
 *                 balancing: per layer a bias b[E] (starts at 0; at the model's
 *                 e_score_correction_bias with score=sigmoid on DeepSeek-V3); top-k of
 *                 score + b; w = unbiased score (renorm: / sum); after the call (one forward
 *                 batch at one layer) b_e += G * sign(T*k/E - load_e). out->state = the b
 *                 that was used for this call's selection ([E]; probe hook policy_state).
 *  group:n_group=N,topk_group=M,score=max|top2sum,k=K,renorm=0|1  [-, -, max, native k,
 *                 native renorm] group-limited routing on p: group score = max p in the
 *                 group (DeepSeek-V2) or sum of its two best p (DeepSeek-V3); the M best
 *                 groups (ties to the lower group); top-k of p inside them; w = p (renorm).
 *                 E % N == 0 and k <= M*E/N.
 *  noisy:std=S,k=K,seed=X         [1, native k, 0] Shazeer et al. 2017 noisy top-k gating
 *                 with a fixed noise scale: z' = z + S*n, n ~ N(0,1) (counter-based RNG
 *                 keyed by seed, call number, token, expert); top-k of z'; w = softmax of
 *                 z' over the chosen k (KeepTopK then softmax). probs = softmax(z') over E.
 *                 std=0 equals topk:score=softmax,renorm=1.
 *  hash:k=K,seed=X                [native k, 0] Roller et al. 2021 hash layers: k distinct
 *                 experts from a fixed hash of (seed, token id) (same in every layer,
 *                 batch and run); slots by ascending expert; w = 1/k. Needs token ids.
 *  random:k=K,seed=X              [native k, 0] k distinct experts uniformly at random
 *                 (counter-based RNG keyed by seed, call number, token); slots by
 *                 ascending expert; w = 1/k.
 * hash/random/capacity/expert_choice/topp record probs = p (the model's softmax).
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
  /* out: state worth recording after this call (bias: the [E] selection bias it used), or
   * NULL; valid until the policy's next route call. Zero-initialise before the call. */
  const float *state;
  int n_state;
} eng_route_out;

typedef struct eng_policy eng_policy;
struct eng_policy {
  char spec[128];    /* canonical text, stored in runs.policy */
  int n_experts, k, renorm;
  int native;        /* created from "native": eng_policy_bind() may adopt the model's router */
  eng_router_cfg rc;
  int logit_stride;  /* floats per token row of logits (E, or E + G for HIER) */
  const float *sel_bias;  /* SIGMOID_GROUP: the current layer's selection bias [E] (or NULL) */
  /* token_ids [n] may be NULL (policies that need them -- hash -- then fail); layer picks
   * per-layer state (bias). Returns 0, or -1 with every slot emptied (expert -1). */
  int (*route)(eng_policy *p, const float *logits, const int *token_ids, int n, int layer, eng_route_out *out);
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
