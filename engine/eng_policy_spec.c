/* eng_policy_spec.c — the `--route SPEC` grammar of the router overrides (eng_policy.h lists
 * them): "NAME[:key=value,...]", parameters in any order, omitted ones from defaults (some
 * taken from the model's native router), every value range-checked with one error line that
 * names the bad parameter, and the canonical text with every parameter that runs.policy
 * stores (so a report states exactly what ran). */
#include "engine/eng_util.h"
#include "engine/eng_policy_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const px_names[PX_COUNT] = {"topk", "topp", "capacity", "expert_choice", "bias",
                                               "group", "noisy", "hash", "random"};
/* Keys each override accepts, in canonical order. */
static const char *const px_keys[PX_COUNT][6] = {
  {"k", "score", "renorm"}, {"p", "max_k"}, {"cf", "k", "renorm", "order"}, {"cf"},
  {"gamma", "k", "score", "renorm"}, {"n_group", "topk_group", "score", "k", "renorm"},
  {"std", "k", "seed"}, {"k", "seed"}, {"k", "seed"}};

static int key_list(int kind, char *buf, size_t n) {
  buf[0] = 0;
  for (int i = 0; i < 6 && px_keys[kind][i]; i++)
    snprintf(buf + strlen(buf), n - strlen(buf), "%s%s", i ? ", " : "", px_keys[kind][i]);
  return 0;
}

static int parse_long(const char *v, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (!*v || *end || errno || x < lo || x > hi) return -1;
  *out = x;
  return 0;
}

static int parse_double(const char *v, double lo, double hi, int lo_open, double *out) {
  char *end;
  errno = 0;
  double x = strtod(v, &end);
  if (!*v || *end || errno || !isfinite(x) || x < lo || x > hi || (lo_open && x == lo)) return -1;
  *out = x;
  return 0;
}

/* Sets one parameter; -1 + error naming it. */
static int set_param(eng_px_params *par, const char *name, const char *key, const char *v, int E,
                     char *err, size_t errlen) {
  long l;
  double d;
  if (!strcmp(key, "k") || !strcmp(key, "max_k")) {
    if (parse_long(v, 1, E, &l)) return eng_errf(err, errlen, "--route %s: %s=%s must be an integer in 1..%d (the model has %d experts)", name, key, v, E, E);
    if (key[0] == 'k') par->k = (int)l; else par->max_k = (int)l;
  } else if (!strcmp(key, "renorm")) {
    if (parse_long(v, 0, 1, &l)) return eng_errf(err, errlen, "--route %s: renorm=%s must be 0 or 1", name, v);
    par->renorm = (int)l;
  } else if (!strcmp(key, "score")) {
    if (par->kind == PX_GROUP) {
      if (strcmp(v, "max") && strcmp(v, "top2sum")) return eng_errf(err, errlen, "--route %s: score=%s must be max or top2sum", name, v);
      par->top2sum = !strcmp(v, "top2sum");
    } else {
      if (strcmp(v, "softmax") && strcmp(v, "sigmoid")) return eng_errf(err, errlen, "--route %s: score=%s must be softmax or sigmoid", name, v);
      par->sigmoid = !strcmp(v, "sigmoid");
    }
  } else if (!strcmp(key, "p")) {
    if (parse_double(v, 0, 1, 1, &d)) return eng_errf(err, errlen, "--route %s: p=%s must be a number in (0, 1]", name, v);
    par->p = d;
  } else if (!strcmp(key, "cf")) {
    if (parse_double(v, 0, 1e6, 1, &d)) return eng_errf(err, errlen, "--route %s: cf=%s must be a number > 0", name, v);
    par->cf = d;
  } else if (!strcmp(key, "order")) {
    if (strcmp(v, "token") && strcmp(v, "rank")) return eng_errf(err, errlen, "--route %s: order=%s must be token or rank", name, v);
    par->order_rank = !strcmp(v, "rank");
  } else if (!strcmp(key, "gamma")) {
    if (parse_double(v, 0, 1e6, 0, &d)) return eng_errf(err, errlen, "--route %s: gamma=%s must be a number >= 0", name, v);
    par->gamma = d;
  } else if (!strcmp(key, "n_group")) {
    if (parse_long(v, 1, E, &l)) return eng_errf(err, errlen, "--route %s: n_group=%s must be an integer in 1..%d", name, v, E);
    par->n_group = (int)l;
  } else if (!strcmp(key, "topk_group")) {
    if (parse_long(v, 1, E, &l)) return eng_errf(err, errlen, "--route %s: topk_group=%s must be an integer in 1..%d", name, v, E);
    par->topk_group = (int)l;
  } else if (!strcmp(key, "std")) {
    if (parse_double(v, 0, 1e6, 0, &d)) return eng_errf(err, errlen, "--route %s: std=%s must be a number >= 0", name, v);
    par->std = d;
  } else if (!strcmp(key, "seed")) {
    if (parse_long(v, 0, 0x7fffffffL, &l)) return eng_errf(err, errlen, "--route %s: seed=%s must be an integer in 0..2147483647", name, v);
    par->seed = (uint64_t)l;
  }
  return 0;
}

int eng_px_parse(const char *spec, const eng_router_cfg *nat, eng_px_params *par, char *err, size_t errlen) {
  size_t nl = strcspn(spec, ":");
  int kind = -1;
  for (int i = 0; i < PX_COUNT; i++)
    if (strlen(px_names[i]) == nl && !strncmp(spec, px_names[i], nl)) kind = i;
  if (kind < 0) return 1;
  const char *name = px_names[kind];
  int E = nat->n_experts;
  *par = (eng_px_params){.kind = kind, .k = nat->k < E ? nat->k : E, .renorm = nat->renorm, .p = 0.4, .max_k = E,
                         .cf = kind == PX_EXPERT_CHOICE ? 2.0 : 1.25, .gamma = 0.001, .std = 1.0};
  if (kind == PX_BIAS) par->sigmoid = nat->kind == ENG_ROUTER_SIGMOID_GROUP;
  if (spec[nl] == ':') {
    char buf[512], keys[128];
    if (strlen(spec + nl + 1) >= sizeof buf) return eng_errf(err, errlen, "--route %s: parameter list too long", name);
    snprintf(buf, sizeof buf, "%s", spec + nl + 1);
    unsigned seen = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
      char *eq = strchr(tok, '=');
      if (!eq) return eng_errf(err, errlen, "--route %s: expected key=value, got '%s'", name, tok);
      *eq = 0;
      int ki = -1;
      for (int i = 0; i < 6 && px_keys[kind][i]; i++) if (!strcmp(tok, px_keys[kind][i])) ki = i;
      key_list(kind, keys, sizeof keys);
      if (ki < 0) return eng_errf(err, errlen, "--route %s: unknown parameter '%s' (known: %s)", name, tok, keys);
      if (seen & (1u << ki)) return eng_errf(err, errlen, "--route %s: parameter '%s' given twice", name, tok);
      seen |= 1u << ki;
      if (set_param(par, name, tok, eq + 1, E, err, errlen)) return -1;
    }
    if (kind == PX_GROUP && (!(seen & 1u) || !(seen & 2u)))
      return eng_errf(err, errlen, "--route group: n_group and topk_group are required (group:n_group=N,topk_group=M)");
  } else if (spec[nl]) {
    return 1;
  } else if (kind == PX_GROUP) {
    return eng_errf(err, errlen, "--route group: n_group and topk_group are required (group:n_group=N,topk_group=M)");
  }
  if (kind == PX_GROUP) {
    if (E % par->n_group) return eng_errf(err, errlen, "--route group: n_group=%d must divide the %d experts", par->n_group, E);
    if (par->topk_group > par->n_group)
      return eng_errf(err, errlen, "--route group: topk_group=%d must be <= n_group=%d", par->topk_group, par->n_group);
    if (par->k > par->topk_group * (E / par->n_group))
      return eng_errf(err, errlen, "--route group: k=%d exceeds the %d experts of topk_group=%d groups", par->k,
                      par->topk_group * (E / par->n_group), par->topk_group);
  }
  return 0;
}

void eng_px_spec(const eng_px_params *a, float scale, char *buf, size_t n) {
  const char *score = a->sigmoid ? "sigmoid" : "softmax";
  switch (a->kind) {
  case PX_TOPK: snprintf(buf, n, "topk:k=%d,score=%s,renorm=%d", a->k, score, a->renorm); break;
  case PX_TOPP: snprintf(buf, n, "topp:p=%.9g,max_k=%d", a->p, a->max_k); break;
  case PX_CAPACITY:
    snprintf(buf, n, "capacity:cf=%.9g,k=%d,renorm=%d,order=%s", a->cf, a->k, a->renorm, a->order_rank ? "rank" : "token");
    break;
  case PX_EXPERT_CHOICE: snprintf(buf, n, "expert_choice:cf=%.9g", a->cf); break;
  case PX_BIAS: snprintf(buf, n, "bias:gamma=%.9g,k=%d,score=%s,renorm=%d", a->gamma, a->k, score, a->renorm); break;
  case PX_GROUP:
    snprintf(buf, n, "group:n_group=%d,topk_group=%d,score=%s,k=%d,renorm=%d", a->n_group, a->topk_group,
             a->top2sum ? "top2sum" : "max", a->k, a->renorm);
    break;
  case PX_NOISY: snprintf(buf, n, "noisy:std=%.9g,k=%d,seed=%llu", a->std, a->k, (unsigned long long)a->seed); break;
  case PX_HASH: snprintf(buf, n, "hash:k=%d,seed=%llu", a->k, (unsigned long long)a->seed); break;
  default: snprintf(buf, n, "random:k=%d,seed=%llu", a->k, (unsigned long long)a->seed); break;
  }
  if (scale != 1.0f && strlen(buf) + 1 < n) snprintf(buf + strlen(buf), n - strlen(buf), ",scale=%.9g", (double)scale);
}
