/* eng_policy_ext.c — the `--route` overrides (semantics in eng_policy.h; grammar in
 * eng_policy_spec.c): top-k with softmax/sigmoid scores, top-p, capacity dropping
 * (GShard/Switch), expert choice (Zhou et al. 2022), DeepSeek-V3 aux-loss-free bias
 * balancing (per-layer state, bias trajectory handed to the probe through out->state),
 * group-limited routing, noisy top-k (Shazeer et al. 2017), hash and random baselines.
 * Each works on any model's router logits; ties always go to the lower expert index.
 * Randomness is counter-based (a hash of seed, call number, token, expert), so a run is
 * reproducible from its spec alone. */
#include "engine/eng_util.h"
#include "engine/eng_policy_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct px_state {
  eng_px_params a;
  uint64_t calls;            /* route calls so far (noisy / random counter) */
  float *sc, *sel, *rec;     /* [E] scratch; rec = the bias snapshot handed out */
  int *idx, *load;           /* [E] */
  float *bias;               /* bias: [n_layers * E] */
  unsigned char *seen;       /* bias: [n_layers], layer initialised */
  int n_layers;
} px_state;

static px_state *st_of(eng_policy *p) { return (px_state *)p->state; }

static void px_free(eng_policy *p) {
  px_state *s = st_of(p);
  if (s) { free(s->sc); free(s->sel); free(s->rec); free(s->idx); free(s->load); free(s->bias); free(s->seen); free(s); }
  free(p);
}

/* ---- counter-based randomness --------------------------------------------------------- */
static uint64_t mix64(uint64_t x) {   /* splitmix64 finaliser */
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
static uint64_t key4(uint64_t a, uint64_t b, uint64_t c, uint64_t d) { return mix64(mix64(mix64(mix64(a) ^ b) ^ c) ^ d); }
static double u01(uint64_t h) { return ((double)(h >> 11) + 0.5) * (1.0 / 9007199254740992.0); }  /* (0, 1) */
static double normal(uint64_t seed, uint64_t call, uint64_t t, uint64_t e) {
  double u1 = u01(key4(seed, call, t, 2 * e)), u2 = u01(key4(seed, call, t, 2 * e + 1));
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* ---- helpers ---------------------------------------------------------------------------- */
static void score_row(const float *z, int E, int sigmoid, float *out) {
  if (!sigmoid) { eng_softmax_row(z, E, out); return; }
  for (int e = 0; e < E; e++) out[e] = 1.0f / (1.0f + expf(-z[e]));
}

/* w[j] = sc[ex[j]] for the first m slots, renormalised when asked, times the model scale. */
static void set_weights(const eng_policy *p, const float *sc, const int *ex, float *w, int m, int renorm) {
  float sum = 0;
  for (int j = 0; j < m; j++) { w[j] = sc[ex[j]]; sum += w[j]; }
  if (renorm && sum > 0) for (int j = 0; j < m; j++) w[j] /= sum;
  for (int j = 0; j < m; j++) w[j] *= p->rc.scale;
}

static void sort_asc(int *v, int m) {
  for (int i = 1; i < m; i++) for (int j = i; j > 0 && v[j - 1] > v[j]; j--) { int x = v[j]; v[j] = v[j - 1]; v[j - 1] = x; }
}

/* capacity = ceil(x) with a 1e-9 guard against float noise, at least 1 */
static int ceil_cap(double x) { int c = (int)ceil(x - 1e-9); return c < 1 ? 1 : c; }

/* ---- policies --------------------------------------------------------------------------- */
static int topk_route(eng_policy *p, const float *logits, const int *ids, int n, int layer, eng_route_out *o) {
  (void)ids; (void)layer;
  px_state *s = st_of(p);
  int E = p->n_experts, k = s->a.k, K = p->k, S = p->logit_stride;
  eng_route_empty(p, n, o);
  for (int t = 0; t < n; t++) {
    float *pr = o->probs + (size_t)t * E;
    int *ex = o->experts + (size_t)t * K;
    score_row(logits + (size_t)t * S, E, s->a.sigmoid, pr);
    eng_topk(pr, E, k, ex);
    set_weights(p, pr, ex, o->weights + (size_t)t * K, k, s->a.renorm);
  }
  return 0;
}

static int topp_route(eng_policy *p, const float *logits, const int *ids, int n, int layer, eng_route_out *o) {
  (void)ids; (void)layer;
  px_state *s = st_of(p);
  int E = p->n_experts, M = s->a.max_k, K = p->k, S = p->logit_stride;
  eng_route_empty(p, n, o);
  for (int t = 0; t < n; t++) {
    float *pr = o->probs + (size_t)t * E;
    int *ex = o->experts + (size_t)t * K;
    eng_softmax_row(logits + (size_t)t * S, E, pr);
    eng_topk(pr, E, M, s->idx);
    double mass = 0;
    int m = 0;
    while (m < M) {
      ex[m] = s->idx[m];
      mass += pr[ex[m]];
      m++;
      if (mass >= s->a.p - 1e-6) break;
    }
    set_weights(p, pr, ex, o->weights + (size_t)t * K, m, 1);
  }
  return 0;
}

static int capacity_route(eng_policy *p, const float *logits, const int *ids, int n, int layer, eng_route_out *o) {
  (void)ids; (void)layer;
  px_state *s = st_of(p);
  int E = p->n_experts, k = s->a.k, K = p->k, S = p->logit_stride;
  int cap = ceil_cap(s->a.cf * k * n / E);
  eng_route_empty(p, n, o);
  for (int t = 0; t < n; t++) {
    float *pr = o->probs + (size_t)t * E;
    int *ex = o->experts + (size_t)t * K;
    eng_softmax_row(logits + (size_t)t * S, E, pr);
    eng_topk(pr, E, k, ex);
    set_weights(p, pr, ex, o->weights + (size_t)t * K, k, s->a.renorm);
  }
  memset(s->load, 0, sizeof(int) * (size_t)E);
  int outer = s->a.order_rank ? k : n, inner = s->a.order_rank ? n : k;
  for (int a = 0; a < outer; a++)
    for (int b = 0; b < inner; b++) {
      size_t i = s->a.order_rank ? (size_t)b * K + a : (size_t)a * K + b;
      int e = o->experts[i];
      if (s->load[e] < cap) s->load[e]++;
      else { o->experts[i] = -1; o->weights[i] = 0; o->dropped[e]++; }
    }
  return 0;
}

static int expert_choice_route(eng_policy *p, const float *logits, const int *ids, int n, int layer, eng_route_out *o) {
  (void)ids; (void)layer;
  px_state *s = st_of(p);
  int E = p->n_experts, K = p->k, S = p->logit_stride;
  int cap = ceil_cap(s->a.cf * n / E);
  if (cap > n) cap = n;
  eng_route_empty(p, n, o);
  float *col = malloc(sizeof(float) * (size_t)n);
  int *top = malloc(sizeof(int) * (size_t)cap);
  unsigned char *pick = calloc((size_t)n * E, 1);
  if (!col || !top || !pick) { free(col); free(top); free(pick); return -1; }
  for (int t = 0; t < n; t++) eng_softmax_row(logits + (size_t)t * S, E, o->probs + (size_t)t * E);
  for (int e = 0; e < E; e++) {          /* expert e takes its cap best tokens */
    for (int t = 0; t < n; t++) col[t] = o->probs[(size_t)t * E + e];
    eng_topk(col, n, cap, top);
    for (int j = 0; j < cap; j++) pick[(size_t)top[j] * E + e] = 1;
  }
  for (int t = 0; t < n; t++) {          /* a token's experts, by descending probability */
    const float *pr = o->probs + (size_t)t * E;
    int m = 0;
    for (int e = 0; e < E; e++) { s->sel[e] = pick[(size_t)t * E + e] ? pr[e] : -1.0f; m += pick[(size_t)t * E + e]; }
    int *ex = o->experts + (size_t)t * K;
    if (m) eng_topk(s->sel, E, m, ex);
    set_weights(p, pr, ex, o->weights + (size_t)t * K, m, 0);
  }
  free(col); free(top); free(pick);
  return 0;
}

static int bias_route(eng_policy *p, const float *logits, const int *ids, int n, int layer, eng_route_out *o) {
  (void)ids;
  px_state *s = st_of(p);
  int E = p->n_experts, k = s->a.k, K = p->k, S = p->logit_stride;
  if (layer < 0) layer = 0;
  if (layer >= s->n_layers) {
    float *b = realloc(s->bias, sizeof(float) * (size_t)(layer + 1) * E);
    if (b) s->bias = b;
    unsigned char *seen = b ? realloc(s->seen, (size_t)layer + 1) : NULL;
    if (!b || !seen) { eng_route_empty(p, n, o); return -1; }
    s->seen = seen;
    memset(s->seen + s->n_layers, 0, (size_t)(layer + 1 - s->n_layers));
    s->n_layers = layer + 1;
  }
  float *b = s->bias + (size_t)layer * E;
  if (!s->seen[layer]) {
    for (int e = 0; e < E; e++) b[e] = s->a.sigmoid && p->sel_bias ? p->sel_bias[e] : 0.0f;
    s->seen[layer] = 1;
  }
  eng_route_empty(p, n, o);
  memset(s->load, 0, sizeof(int) * (size_t)E);
  for (int t = 0; t < n; t++) {
    float *pr = o->probs + (size_t)t * E;
    int *ex = o->experts + (size_t)t * K;
    score_row(logits + (size_t)t * S, E, s->a.sigmoid, pr);
    for (int e = 0; e < E; e++) s->sel[e] = pr[e] + b[e];
    eng_topk(s->sel, E, k, ex);
    set_weights(p, pr, ex, o->weights + (size_t)t * K, k, s->a.renorm);
    for (int j = 0; j < k; j++) s->load[ex[j]]++;
  }
  memcpy(s->rec, b, sizeof(float) * (size_t)E);
  double mean = (double)n * k / E;
  for (int e = 0; e < E; e++) {
    double d = mean - s->load[e];
    b[e] += (float)(s->a.gamma * (d > 0 ? 1 : d < 0 ? -1 : 0));
  }
  o->state = s->rec;
  o->n_state = E;
  return 0;
}

static int group_route(eng_policy *p, const float *logits, const int *ids, int n, int layer, eng_route_out *o) {
  (void)ids; (void)layer;
  px_state *s = st_of(p);
  int E = p->n_experts, k = s->a.k, K = p->k, S = p->logit_stride, G = s->a.n_group, per = E / G;
  eng_route_empty(p, n, o);
  float *gs = s->sc;                      /* G <= E group scores */
  int *gidx = s->load;
  for (int t = 0; t < n; t++) {
    float *pr = o->probs + (size_t)t * E;
    int *ex = o->experts + (size_t)t * K;
    eng_softmax_row(logits + (size_t)t * S, E, pr);
    for (int g = 0; g < G; g++) {
      int top2[2];
      int m = s->a.top2sum && per >= 2 ? 2 : 1;
      eng_topk(pr + g * per, per, m, top2);
      gs[g] = pr[g * per + top2[0]] + (m == 2 ? pr[g * per + top2[1]] : 0.0f);
    }
    eng_topk(gs, G, s->a.topk_group, gidx);
    for (int e = 0; e < E; e++) s->sel[e] = -1.0f;      /* below every probability */
    for (int j = 0; j < s->a.topk_group; j++)
      memcpy(s->sel + gidx[j] * per, pr + gidx[j] * per, sizeof(float) * (size_t)per);
    eng_topk(s->sel, E, k, ex);
    set_weights(p, pr, ex, o->weights + (size_t)t * K, k, s->a.renorm);
  }
  return 0;
}

static int noisy_route(eng_policy *p, const float *logits, const int *ids, int n, int layer, eng_route_out *o) {
  (void)ids; (void)layer;
  px_state *s = st_of(p);
  int E = p->n_experts, k = s->a.k, K = p->k, S = p->logit_stride;
  uint64_t call = s->calls++;
  eng_route_empty(p, n, o);
  for (int t = 0; t < n; t++) {
    const float *z = logits + (size_t)t * S;
    float *pr = o->probs + (size_t)t * E;
    int *ex = o->experts + (size_t)t * K;
    for (int e = 0; e < E; e++)
      s->sc[e] = s->a.std > 0 ? z[e] + (float)(s->a.std * normal(s->a.seed, call, (uint64_t)t, (uint64_t)e)) : z[e];
    eng_softmax_row(s->sc, E, pr);       /* softmax of the noisy logits; KeepTopK then softmax */
    eng_topk(pr, E, k, ex);              /* = renormalised softmax over the chosen k */
    set_weights(p, pr, ex, o->weights + (size_t)t * K, k, 1);
  }
  return 0;
}

/* Uniform weights 1/k over ex[0..k) sorted ascending. */
static void uniform_slots(const eng_policy *p, int *ex, float *w, int k) {
  sort_asc(ex, k);
  for (int j = 0; j < k; j++) w[j] = p->rc.scale / (float)k;
}

static int hash_route(eng_policy *p, const float *logits, const int *ids, int n, int layer, eng_route_out *o) {
  (void)layer;
  px_state *s = st_of(p);
  int E = p->n_experts, k = s->a.k, K = p->k, S = p->logit_stride;
  eng_route_empty(p, n, o);
  if (!ids) return -1;
  for (int t = 0; t < n; t++) {
    eng_softmax_row(logits + (size_t)t * S, E, o->probs + (size_t)t * E);
    int *ex = o->experts + (size_t)t * K;
    int m = 0;
    memset(s->load, 0, sizeof(int) * (size_t)E);
    for (uint64_t i = 0; m < k && i < 64u * (uint64_t)E; i++) {     /* k distinct draws of the fixed hash */
      int e = (int)(key4(s->a.seed, (uint64_t)(uint32_t)ids[t], i, 0x68617368u) % (uint64_t)E);
      if (!s->load[e]) { s->load[e] = 1; ex[m++] = e; }
    }
    for (int e = 0; m < k && e < E; e++) if (!s->load[e]) { s->load[e] = 1; ex[m++] = e; }
    uniform_slots(p, ex, o->weights + (size_t)t * K, k);
  }
  return 0;
}

static int random_route(eng_policy *p, const float *logits, const int *ids, int n, int layer, eng_route_out *o) {
  (void)ids; (void)layer;
  px_state *s = st_of(p);
  int E = p->n_experts, k = s->a.k, K = p->k, S = p->logit_stride;
  uint64_t call = s->calls++;
  eng_route_empty(p, n, o);
  for (int t = 0; t < n; t++) {
    eng_softmax_row(logits + (size_t)t * S, E, o->probs + (size_t)t * E);
    for (int e = 0; e < E; e++) s->idx[e] = e;
    for (int j = 0; j < k; j++) {         /* partial Fisher-Yates */
      int r = j + (int)(key4(s->a.seed, call, (uint64_t)t, (uint64_t)j) % (uint64_t)(E - j));
      int x = s->idx[j]; s->idx[j] = s->idx[r]; s->idx[r] = x;
    }
    int *ex = o->experts + (size_t)t * K;
    memcpy(ex, s->idx, sizeof(int) * (size_t)k);
    uniform_slots(p, ex, o->weights + (size_t)t * K, k);
  }
  return 0;
}

int eng_px_setup(eng_policy *p, const eng_px_params *par, char *err, size_t errlen) {
  static int (*const fns[PX_COUNT])(eng_policy *, const float *, const int *, int, int, eng_route_out *) = {
    topk_route, topp_route, capacity_route, expert_choice_route, bias_route, group_route, noisy_route,
    hash_route, random_route};
  int E = p->n_experts;
  px_state *s = calloc(1, sizeof *s);
  if (!s) return eng_errf(err, errlen, "out of memory");
  s->a = *par;
  s->sc = malloc(sizeof(float) * (size_t)E);
  s->sel = malloc(sizeof(float) * (size_t)E);
  s->rec = malloc(sizeof(float) * (size_t)E);
  s->idx = malloc(sizeof(int) * (size_t)E);
  s->load = malloc(sizeof(int) * (size_t)E);
  if (!s->sc || !s->sel || !s->rec || !s->idx || !s->load) {
    free(s->sc); free(s->sel); free(s->rec); free(s->idx); free(s->load); free(s);
    return eng_errf(err, errlen, "out of memory");
  }
  p->state = s;
  p->free = px_free;
  p->route = fns[par->kind];
  p->k = par->kind == PX_TOPP ? par->max_k : par->kind == PX_EXPERT_CHOICE ? E : par->k;
  p->renorm = par->renorm;
  p->rc.k = p->k;
  p->rc.renorm = p->renorm;
  return 0;
}
