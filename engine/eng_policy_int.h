/* eng_policy_int.h — internal to the router policies (eng_policy.c: native routers and
 * policy creation; eng_policy_ext.c: the --route overrides; eng_policy_spec.c: the spec
 * parser). Not a public interface. */
#ifndef MOESCOPE_ENG_POLICY_INT_H
#define MOESCOPE_ENG_POLICY_INT_H

#include "engine/eng_policy.h"

#include <stdint.h>

/* p[E] = softmax(z[E]) (max-subtracted, float). */
void eng_softmax_row(const float *z, int E, float *p);

/* Empties every slot of a [n, kmax] output (expert -1, weight 0) and zeroes dropped[E]. */
void eng_route_empty(eng_policy *p, int n, eng_route_out *o);

/* Override kinds (eng_policy_ext.c). */
enum { PX_TOPK = 0, PX_TOPP, PX_CAPACITY, PX_EXPERT_CHOICE, PX_BIAS, PX_GROUP, PX_NOISY, PX_HASH, PX_RANDOM, PX_COUNT };

/* Parameters of an override, filled by the spec parser. */
typedef struct eng_px_params {
  int kind;
  int k, renorm, sigmoid;     /* selection k; renormalise; score = sigmoid (else softmax) */
  double p;                   /* topp mass */
  int max_k;                  /* topp slots */
  double cf;                  /* capacity / expert_choice capacity factor */
  int order_rank;             /* capacity: rank-major slot priority */
  double gamma;               /* bias update speed */
  int n_group, topk_group, top2sum;
  double std;                 /* noisy */
  uint64_t seed;              /* noisy / hash / random */
} eng_px_params;

/* Parses "NAME[:key=value,...]" for an override. Returns 0 (par filled, defaults from the
 * native router nat), -1 (+ one error line naming the bad parameter) or 1 (NAME is not an
 * override). */
int eng_px_parse(const char *spec, const eng_router_cfg *nat, eng_px_params *par, char *err, size_t errlen);
/* Writes the canonical spec of par (every parameter) into buf. */
void eng_px_spec(const eng_px_params *par, float scale, char *buf, size_t n);
/* Turns p into the override described by par (route, free, k = slots, state). 0 or -1. */
int eng_px_setup(eng_policy *p, const eng_px_params *par, char *err, size_t errlen);

#endif
