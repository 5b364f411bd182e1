/* ana_flow.h — cross-layer expert flow for the Sankey (alluvial) figure of `report`, built
 * from the primary-expert transition counts that ana_struct already computes
 * (ana_struct.trans[l][a][b] = tokens whose primary, i.e. highest-weight, expert is a in
 * MoE layer index l and b in index l + 1). One token counts once per layer (top-1, not
 * every top-k slot), so every column of the figure sums to the same token count.
 *  - node[l][e]: tokens whose primary is e in layer index l = max(outflow of e towards
 *    l + 1, inflow of e from l - 1) (the two are equal when every token is routed in both
 *    layers; the max keeps every ribbon inside its node otherwise);
 *  - ribbons of pair (l, l + 1): the non-zero transitions a -> b sorted by count (desc),
 *    then a, then b; a ribbon is *kept* (drawn) when its count >= min_share x pair_n[l]
 *    and it is among the first max_ribbons; shown[l] = tokens the kept ribbons carry.
 * Pure C over ana_struct (no DB access). */
#ifndef MOESCOPE_ANA_FLOW_H
#define MOESCOPE_ANA_FLOW_H

#include "analysis/ana_struct.h"

typedef struct ana_ribbon { int src, dst; long long n; } ana_ribbon;

typedef struct ana_flow {
  int L, E;                 /* MoE layers (columns), experts */
  int max_ribbons;          /* per layer pair */
  double min_share;         /* of the pair's tokens */
  long long *node;          /* [L][E] */
  long long *pair_n;        /* [L-1] tokens with a primary in both layers */
  int *n_all;               /* [L-1] non-zero transitions of the pair */
  int *n_rib;               /* [L-1] kept ribbons */
  ana_ribbon *rib;          /* [L-1][E*E]: first n_all[l] used, the first n_rib[l] kept */
  long long *shown;         /* [L-1] tokens on kept ribbons */
} ana_flow;

/* The flow of st (st->L >= 1; with one layer there is no pair). max_ribbons < 1 means no
 * count limit; min_share <= 0 keeps every non-zero transition up to max_ribbons.
 * 0, or -1 (out of memory). Free with ana_flow_free. */
int ana_flow_compute(const ana_struct *st, int max_ribbons, double min_share, ana_flow *f, char *err, size_t errlen);
void ana_flow_free(ana_flow *f);

#endif
