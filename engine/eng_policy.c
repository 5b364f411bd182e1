/* eng_policy.c — router policies (see header): the native router of every family
 * (softmax top-k with/without renormalisation, DeepSeek-V2 group-limited greedy, DeepSeek-V3
 * sigmoid + bias + groups, gpt-oss top-k then softmax) and the synthetic Switch (capacity)
 * and hierarchical routers, and policy creation from a spec (the --route overrides live in
 * eng_policy_ext.c, their grammar in eng_policy_spec.c). */
#include "engine/eng_util.h"
#include "engine/eng_policy_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void eng_topk(const float *v, int n, int k, int *idx) {
  for (int j = 0; j < k; j++) idx[j] = -1;
  for (int i = 0; i < n; i++) {
    /* insert i if it beats the current k-th; strict > keeps the lower index on ties */
    int j = k - 1;
    if (idx[j] >= 0 && !(v[i] > v[idx[j]])) continue;
    while (j > 0 && (idx[j - 1] < 0 || v[i] > v[idx[j - 1]])) { idx[j] = idx[j - 1]; j--; }
    idx[j] = i;
  }
}

void eng_route_empty(eng_policy *p, int n, eng_route_out *o) {
  int K = eng_policy_kmax(p);
  for (size_t i = 0; i < (size_t)n * K; i++) { o->experts[i] = -1; o->weights[i] = 0; }
  for (int e = 0; e < p->n_experts; e++) o->dropped[e] = 0;
}

void eng_softmax_row(const float *z, int E, float *pr) {
  float mx = -INFINITY, s = 0;
  for (int e = 0; e < E; e++) if (z[e] > mx) mx = z[e];
  for (int e = 0; e < E; e++) { pr[e] = expf(z[e] - mx); s += pr[e]; }
  for (int e = 0; e < E; e++) pr[e] /= s;
}

static int softmax_topk_route(eng_policy *p, const float *logits, const int *ids, int n, int layer, eng_route_out *o) {
  (void)ids; (void)layer;
  int E = p->n_experts, k = p->k, S = p->logit_stride;
  for (int e = 0; e < E; e++) o->dropped[e] = 0;
  for (int t = 0; t < n; t++) {
    float *pr = o->probs + (size_t)t * E;
    eng_softmax_row(logits + (size_t)t * S, E, pr);
    int *ex = o->experts + (size_t)t * k;
    float *w = o->weights + (size_t)t * k;
    eng_topk(pr, E, k, ex);
    float sum = 0;
    for (int j = 0; j < k; j++) sum += pr[ex[j]];
    for (int j = 0; j < k; j++) w[j] = p->renorm ? pr[ex[j]] / sum : pr[ex[j]];
    if (p->rc.scale != 1.0f) for (int j = 0; j < k; j++) w[j] *= p->rc.scale;
  }
  return 0;
}

/* Keeps the topk_group best groups of gs[G] (ties to the lower group) and zeroes the
 * selection scores of the experts outside them (HF masked_fill(..., 0.0)). */
static void mask_groups(float *sel, const float *gs, int E, int G, int tg, int *gidx) {
  eng_topk(gs, G, tg, gidx);
  int per = E / G;
  for (int g = 0; g < G; g++) {
    int keep = 0;
    for (int j = 0; j < tg; j++) keep |= gidx[j] == g;
    if (!keep) for (int e = g * per; e < (g + 1) * per; e++) sel[e] = 0.0f;
  }
}

/* Group-limited routing, both DeepSeek flavours (one loop; `v3` picks the scoring):
 *  V2 (group_limited_greedy): softmax scores, group score = the group's best score,
 *     weights = the chosen scores (no renormalisation) x routed_scaling_factor;
 *  V3 (noaux_tc): sigmoid scores, selection adds e_score_correction_bias, group score = sum
 *     of the group's two best biased scores, weights = the chosen UNbiased scores,
 *     renormalised when norm_topk_prob, x routed_scaling_factor. */
static int group_route_any(eng_policy *p, const float *logits, int n, eng_route_out *o, int v3) {
  int E = p->n_experts, k = p->k, G = p->rc.n_group, per = E / G, S = p->logit_stride;
  float *sel = malloc(sizeof(float) * (size_t)(E + G));
  int *gidx = malloc(sizeof(int) * (size_t)G);
  if (!sel || !gidx) { free(sel); free(gidx); eng_route_empty(p, n, o); return -1; }
  float *gs = sel + E;
  for (int e = 0; e < E; e++) o->dropped[e] = 0;
  for (int t = 0; t < n; t++) {
    const float *z = logits + (size_t)t * S;
    float *sc = o->probs + (size_t)t * E;
    if (v3) {
      for (int e = 0; e < E; e++) {
        sc[e] = 1.0f / (1.0f + expf(-z[e]));
        sel[e] = sc[e] + (p->sel_bias ? p->sel_bias[e] : 0.0f);
      }
      for (int g = 0; g < G; g++) {       /* sum of the group's two best biased scores */
        int top2[2];
        eng_topk(sel + g * per, per, per >= 2 ? 2 : 1, top2);
        gs[g] = sel[g * per + top2[0]] + (per >= 2 ? sel[g * per + top2[1]] : 0.0f);
      }
    } else {
      eng_softmax_row(z, E, sc);
      for (int g = 0; g < G; g++) {       /* the group's best score */
        float m = -INFINITY;
        for (int e = g * per; e < (g + 1) * per; e++) if (sc[e] > m) m = sc[e];
        gs[g] = m;
      }
      memcpy(sel, sc, sizeof(float) * (size_t)E);
    }
    mask_groups(sel, gs, E, G, p->rc.topk_group, gidx);
    int *ex = o->experts + (size_t)t * k;
    float *w = o->weights + (size_t)t * k;
    eng_topk(sel, E, k, ex);
    float sum = 0;
    for (int j = 0; j < k; j++) { w[j] = sc[ex[j]]; sum += w[j]; }
    if (v3 && p->renorm) for (int j = 0; j < k; j++) w[j] /= (sum + 1e-20f);
    for (int j = 0; j < k; j++) w[j] *= p->rc.scale;
  }
  free(sel); free(gidx);
  return 0;
}

static int group_limited_route(eng_policy *p, const float *logits, const int *ids, int n, int layer, eng_route_out *o) {
  (void)ids; (void)layer;
  return group_route_any(p, logits, n, o, 0);
}

static int sigmoid_group_route(eng_policy *p, const float *logits, const int *ids, int n, int layer, eng_route_out *o) {
  (void)ids; (void)layer;
  return group_route_any(p, logits, n, o, 1);
}

static int topk_softmax_route(eng_policy *p, const float *logits, const int *ids, int n, int layer, eng_route_out *o) {
  (void)ids; (void)layer;
  int E = p->n_experts, k = p->k, S = p->logit_stride;
  for (int e = 0; e < E; e++) o->dropped[e] = 0;
  for (int t = 0; t < n; t++) {
    const float *z = logits + (size_t)t * S;
    eng_softmax_row(z, E, o->probs + (size_t)t * E);   /* recorded scores: softmax over all E */
    int *ex = o->experts + (size_t)t * k;
    float *w = o->weights + (size_t)t * k;
    eng_topk(z, E, k, ex);
    float mx = z[ex[0]], s = 0;
    for (int j = 0; j < k; j++) { w[j] = expf(z[ex[j]] - mx); s += w[j]; }
    for (int j = 0; j < k; j++) w[j] /= s;
  }
  return 0;
}

static int switch_route(eng_policy *p, const float *logits, const int *ids, int n, int layer, eng_route_out *o) {
  (void)ids; (void)layer;
  int E = p->n_experts, k = p->k, S = p->logit_stride;
  int cap = (int)ceil((double)p->rc.capacity_factor * n / E);
  if (cap < 1) cap = 1;
  int *load = calloc((size_t)E, sizeof(int));
  if (!load) { eng_route_empty(p, n, o); return -1; }
  for (int e = 0; e < E; e++) o->dropped[e] = 0;
  for (int t = 0; t < n; t++) {
    float *pr = o->probs + (size_t)t * E;
    eng_softmax_row(logits + (size_t)t * S, E, pr);
    int *ex = o->experts + (size_t)t * k;
    float *w = o->weights + (size_t)t * k;
    for (int j = 0; j < k; j++) { ex[j] = -1; w[j] = 0; }
    int best;
    eng_topk(pr, E, 1, &best);
    if (load[best] < cap) { load[best]++; ex[0] = best; w[0] = pr[best]; }
    else o->dropped[best]++;
  }
  free(load);
  return 0;
}

static int hier_route(eng_policy *p, const float *logits, const int *ids, int n, int layer, eng_route_out *o) {
  (void)ids; (void)layer;
  int E = p->n_experts, k = p->k, G = p->rc.n_group, per = E / G, S = p->logit_stride;
  float *pg = malloc(sizeof(float) * (size_t)(G + per));
  if (!pg) { eng_route_empty(p, n, o); return -1; }
  float *pe = pg + G;
  for (int e = 0; e < E; e++) o->dropped[e] = 0;
  for (int t = 0; t < n; t++) {
    const float *z = logits + (size_t)t * S;
    float *pr = o->probs + (size_t)t * E;
    eng_softmax_row(z + E, G, pg);
    int g;
    eng_topk(pg, G, 1, &g);
    for (int gg = 0; gg < G; gg++) {           /* joint probability p(group) * p(expert | group) */
      eng_softmax_row(z + gg * per, per, pe);
      for (int i = 0; i < per; i++) pr[gg * per + i] = pg[gg] * pe[i];
    }
    eng_softmax_row(z + g * per, per, pe);
    int *ex = o->experts + (size_t)t * k;
    float *w = o->weights + (size_t)t * k;
    eng_topk(pe, per, k, ex);
    for (int j = 0; j < k; j++) { w[j] = pg[g] * pe[ex[j]]; ex[j] += g * per; }
  }
  free(pg);
  return 0;
}

static void plain_free(eng_policy *p) { free(p); }

const char *eng_router_kind_name(eng_router_kind k) {
  static const char *names[] = {"softmax_topk", "group_limited_greedy", "sigmoid_group_bias", "topk_softmax",
                                "switch_capacity", "hierarchical"};
  return (unsigned)k < ENG_ROUTER_COUNT ? names[k] : "?";
}

static void set_native(eng_policy *p, const eng_router_cfg *rc) {
  static int (*const fns[])(eng_policy *, const float *, const int *, int, int, eng_route_out *) = {
    softmax_topk_route, group_limited_route, sigmoid_group_route, topk_softmax_route, switch_route, hier_route};
  p->rc = *rc;
  if (p->rc.scale == 0) p->rc.scale = 1.0f;
  p->n_experts = rc->n_experts;
  p->k = rc->k;
  p->renorm = rc->renorm;
  p->route = fns[rc->kind];
  p->logit_stride = rc->n_experts + (rc->kind == ENG_ROUTER_HIER ? rc->n_group : 0);
  switch (rc->kind) {
  case ENG_ROUTER_SOFTMAX_TOPK:
    if (p->rc.scale != 1.0f)
      snprintf(p->spec, sizeof p->spec, "native(softmax,topk:k=%d,renorm=%d,scale=%g)", p->k, p->renorm, (double)p->rc.scale);
    else snprintf(p->spec, sizeof p->spec, "native(softmax,topk:k=%d,renorm=%d)", p->k, p->renorm);
    break;
  case ENG_ROUTER_GROUP_LIMITED:
    snprintf(p->spec, sizeof p->spec, "native(softmax,group_limited_greedy:k=%d,groups=%d,topk_group=%d,scale=%g)",
             p->k, rc->n_group, rc->topk_group, (double)p->rc.scale);
    break;
  case ENG_ROUTER_SIGMOID_GROUP:
    snprintf(p->spec, sizeof p->spec, "native(sigmoid+bias,group_top2:k=%d,groups=%d,topk_group=%d,renorm=%d,scale=%g)",
             p->k, rc->n_group, rc->topk_group, p->renorm, (double)p->rc.scale);
    break;
  case ENG_ROUTER_TOPK_SOFTMAX: snprintf(p->spec, sizeof p->spec, "native(topk_logits:k=%d,softmax_over_k)", p->k); break;
  case ENG_ROUTER_SWITCH:
    snprintf(p->spec, sizeof p->spec, "native(switch:k=1,capacity_factor=%g)", (double)rc->capacity_factor);
    break;
  default:
    snprintf(p->spec, sizeof p->spec, "native(hierarchical:groups=%d,k=%d)", rc->n_group, p->k);
    break;
  }
}

int eng_policy_bind(eng_policy *p, const eng_router_cfg *rc) {
  p->logit_stride = rc->n_experts + (rc->kind == ENG_ROUTER_HIER ? rc->n_group : 0);
  if (!p->native) return 0;
  if (rc->k > p->k) return -1;
  set_native(p, rc);
  return 0;
}

/* Builds a policy from spec for a model whose native router is nat. */
static int policy_new(eng_policy **out, const char *spec, const eng_router_cfg *nat, char *err, size_t errlen) {
  *out = NULL;
  if (!spec || !*spec) spec = "native";
  int E = nat->n_experts;
  if (E < 1 || nat->k < 1 || nat->k > E) return eng_errf(err, errlen, "router: k=%d with %d experts", nat->k, E);
  eng_px_params par;
  int prc = strcmp(spec, "native") ? eng_px_parse(spec, nat, &par, err, errlen) : 1;
  if (prc < 0) return -1;
  if (prc > 0 && strcmp(spec, "native")) {
    size_t nl = strcspn(spec, ":");
    return eng_errf(err, errlen, "--route: unknown policy '%.*s' (known: native, topk, topp, capacity, expert_choice, "
                    "bias, group, noisy, hash, random)", (int)(nl < 64 ? nl : 64), spec);
  }
  eng_policy *p = calloc(1, sizeof *p);
  if (!p) return eng_errf(err, errlen, "out of memory");
  p->n_experts = E;
  p->k = nat->k;
  p->renorm = nat->renorm;
  p->route = softmax_topk_route;
  p->free = plain_free;
  p->logit_stride = E + (nat->kind == ENG_ROUTER_HIER ? nat->n_group : 0);
  p->rc = (eng_router_cfg){ENG_ROUTER_SOFTMAX_TOPK, E, nat->k, nat->renorm, 1, 1, 1.0f, 1.0f};
  if (prc > 0) {   /* native */
    p->native = 1;
    snprintf(p->spec, sizeof p->spec, "native(softmax,topk:k=%d,renorm=%d)", p->k, p->renorm);
  } else {
    p->rc.scale = nat->scale != 0 ? nat->scale : 1.0f;   /* the model's routed_scaling_factor */
    eng_px_spec(&par, p->rc.scale, p->spec, sizeof p->spec);
    if (eng_px_setup(p, &par, err, errlen)) { free(p); return -1; }
  }
  *out = p;
  return 0;
}

int eng_policy_create_cfg(eng_policy **out, const char *spec, const eng_router_cfg *native, char *err, size_t errlen) {
  if (policy_new(out, spec, native, err, errlen)) return -1;
  if ((*out)->native) set_native(*out, native);
  return 0;
}

int eng_policy_create(eng_policy **out, const char *spec, int E, int k_native, int renorm_native,
                      char *err, size_t errlen) {
  eng_router_cfg rc = {ENG_ROUTER_SOFTMAX_TOPK, E, k_native, renorm_native, 1, 1, 1.0f, 1.0f};
  return policy_new(out, spec, &rc, err, errlen);
}

void eng_policy_free(eng_policy *p) { if (p) p->free(p); }
int eng_policy_kmax(const eng_policy *p) { return p->k; }
