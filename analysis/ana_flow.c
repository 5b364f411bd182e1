/* ana_flow.c — node sizes and thresholded ribbons of the cross-layer expert flow
 * (Sankey) from ana_struct's primary-expert transitions; see ana_flow.h. */
#include "analysis/ana_flow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_rib(const void *a, const void *b) {
  const ana_ribbon *x = a, *y = b;
  if (x->n != y->n) return x->n > y->n ? -1 : 1;
  if (x->src != y->src) return x->src - y->src;
  return x->dst - y->dst;
}

void ana_flow_free(ana_flow *f) {
  if (!f) return;
  free(f->node); free(f->pair_n); free(f->n_all); free(f->n_rib); free(f->rib); free(f->shown);
  memset(f, 0, sizeof *f);
}

int ana_flow_compute(const ana_struct *st, int max_ribbons, double min_share, ana_flow *f, char *err, size_t errlen) {
  memset(f, 0, sizeof *f);
  int L = st->L, E = st->E, P = L > 1 ? L - 1 : 0;
  size_t EE = (size_t)E * E;
  f->L = L; f->E = E; f->max_ribbons = max_ribbons; f->min_share = min_share;
  f->node = calloc((size_t)L * E + 1, sizeof *f->node);
  f->pair_n = calloc((size_t)P + 1, sizeof *f->pair_n);
  f->n_all = calloc((size_t)P + 1, sizeof *f->n_all);
  f->n_rib = calloc((size_t)P + 1, sizeof *f->n_rib);
  f->rib = calloc((size_t)P * EE + 1, sizeof *f->rib);
  f->shown = calloc((size_t)P + 1, sizeof *f->shown);
  if (!f->node || !f->pair_n || !f->n_all || !f->n_rib || !f->rib || !f->shown) {
    ana_flow_free(f);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  for (int l = 0; l < P; l++) {
    const long long *tr = st->trans + (size_t)l * EE;
    ana_ribbon *r = f->rib + (size_t)l * EE;
    int n = 0;
    long long tot = 0;
    for (int a = 0; a < E; a++)
      for (int b = 0; b < E; b++) {
        long long c = tr[(size_t)a * E + b];
        if (c <= 0) continue;
        r[n].src = a; r[n].dst = b; r[n].n = c; n++;
        tot += c;
      }
    f->pair_n[l] = tot;
    f->n_all[l] = n;
    qsort(r, (size_t)n, sizeof *r, cmp_rib);
    int k = 0;
    long long shown = 0;
    for (; k < n; k++) {
      if (max_ribbons > 0 && k >= max_ribbons) break;
      if (min_share > 0 && (double)r[k].n < min_share * (double)tot) break;   /* sorted: the rest are smaller */
      shown += r[k].n;
    }
    f->n_rib[l] = k;
    f->shown[l] = shown;
  }
  /* node sizes: max(outflow, inflow) */
  for (int l = 0; l < L; l++)
    for (int e = 0; e < E; e++) {
      long long out = 0, in = 0;
      if (l < P) for (int b = 0; b < E; b++) out += st->trans[(size_t)l * EE + (size_t)e * E + b];
      if (l > 0) for (int a = 0; a < E; a++) in += st->trans[(size_t)(l - 1) * EE + (size_t)a * E + e];
      f->node[(size_t)l * E + e] = out > in ? out : in;
    }
  return 0;
}
