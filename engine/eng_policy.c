/* eng_policy.c — router policies (see header). Step 1: the softmax top-k family
 * (Mixtral: softmax over all E, top-k, renormalise). */
#include "engine/eng_util.h"
#include "engine/eng_policy.h"

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

static int softmax_topk_route(eng_policy *p, const float *logits, const int *ids, int n, eng_route_out *o) {
  (void)ids;
  int E = p->n_experts, k = p->k;
  for (int e = 0; e < E; e++) o->dropped[e] = 0;
  for (int t = 0; t < n; t++) {
    const float *z = logits + (size_t)t * E;
    float *pr = o->probs + (size_t)t * E;
    float mx = -INFINITY, s = 0;
    for (int e = 0; e < E; e++) if (z[e] > mx) mx = z[e];
    for (int e = 0; e < E; e++) { pr[e] = expf(z[e] - mx); s += pr[e]; }
    for (int e = 0; e < E; e++) pr[e] /= s;
    int *ex = o->experts + (size_t)t * k;
    float *w = o->weights + (size_t)t * k;
    eng_topk(pr, E, k, ex);
    float sum = 0;
    for (int j = 0; j < k; j++) sum += pr[ex[j]];
    for (int j = 0; j < k; j++) w[j] = p->renorm ? pr[ex[j]] / sum : pr[ex[j]];
  }
  return 0;
}

static void plain_free(eng_policy *p) { free(p); }

/* Parses "key=value,key=value" into ints; unknown keys are an error. */
static int parse_kv(const char *args, const char *const *keys, int *vals, int nkeys, char *err, size_t errlen) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", args);
  for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(tok, '=');
    if (!eq) return eng_errf(err, errlen, "--route: expected key=value, got '%s'", tok);
    *eq = 0;
    int found = 0;
    for (int i = 0; i < nkeys; i++)
      if (!strcmp(tok, keys[i])) {
        char *end;
        long v = strtol(eq + 1, &end, 10);
        if (*end || end == eq + 1) return eng_errf(err, errlen, "--route: %s must be an integer, got '%s'", tok, eq + 1);
        vals[i] = (int)v;
        found = 1;
      }
    if (!found) return eng_errf(err, errlen, "--route: unknown parameter '%s'", tok);
  }
  return 0;
}

int eng_policy_create(eng_policy **out, const char *spec, int E, int k_native, int renorm_native,
                      char *err, size_t errlen) {
  *out = NULL;
  if (!spec || !*spec) spec = "native";
  eng_policy *p = calloc(1, sizeof *p);
  if (!p) return eng_errf(err, errlen, "out of memory");
  p->n_experts = E;
  p->k = k_native;
  p->renorm = renorm_native;
  p->route = softmax_topk_route;
  p->free = plain_free;
  if (!strcmp(spec, "native")) {
    snprintf(p->spec, sizeof p->spec, "native(softmax,topk:k=%d,renorm=%d)", p->k, p->renorm);
  } else if (!strncmp(spec, "topk", 4) && (spec[4] == 0 || spec[4] == ':')) {
    const char *keys[] = {"k", "renorm"};
    int vals[2] = {k_native, renorm_native};
    if (spec[4] == ':' && parse_kv(spec + 5, keys, vals, 2, err, errlen)) { free(p); return -1; }
    if (vals[0] < 1 || vals[0] > E) { free(p); return eng_errf(err, errlen, "--route: k=%d must be in 1..%d", vals[0], E); }
    if (vals[1] != 0 && vals[1] != 1) { free(p); return eng_errf(err, errlen, "--route: renorm must be 0 or 1"); }
    p->k = vals[0];
    p->renorm = vals[1];
    snprintf(p->spec, sizeof p->spec, "topk:k=%d,renorm=%d,score=softmax", p->k, p->renorm);
  } else {
    free(p);
    return eng_errf(err, errlen, "--route: unknown policy '%s' (known: native, topk:k=K,renorm=0|1)", spec);
  }
  *out = p;
  return 0;
}

void eng_policy_free(eng_policy *p) { if (p) p->free(p); }
int eng_policy_kmax(const eng_policy *p) { return p->k; }
