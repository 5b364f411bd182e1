/* rep_bias.h — the two flow figures of `moescope report` that live outside rep_figs.c:
 *   bias_trajectory     router-bias trajectory of a `--route bias` run: per MoE layer the
 *                       selection bias of every expert over the forward batches, with the
 *                       layer's MaxVio per batch beneath it (rep_bias.c, data ana_bias.h);
 *   transitions_sankey  cross-layer expert flow as a Sankey / alluvial diagram: columns =
 *                       MoE layers, nodes = primary experts, ribbons = tokens moving between
 *                       adjacent layers (rep_sankey.c, data ana_flow.h).
 * Each returns 0 when drawn (and appended to fg), 1 when skipped (why[] says why, for the
 * report's "Skipped" note) or -1 with a message in err. Plus the expert colour both use.
 * Internal to reports/. */
#ifndef MOESCOPE_REP_BIAS_H
#define MOESCOPE_REP_BIAS_H

#include "reports/rep_internal.h"

struct ana_diag;

#define REP_BIAS_MAX_PANELS 8     /* layers drawn in bias_trajectory */
#define REP_SANKEY_MAX_COLS 16    /* MoE layers (columns) drawn in transitions_sankey */
#define REP_SANKEY_RIBBONS 40     /* ribbons kept per layer pair ... */
#define REP_SANKEY_MIN_SHARE 0.01 /* ... each carrying >= 1% of the pair's tokens */

int rep_bias_figure(ana_db *d, long long run, const char *outdir, unsigned fmt, rep_figs *fg, char *why, size_t whylen,
                    char *err, size_t errlen);
int rep_sankey_figure(const struct ana_diag *dg, const char *outdir, unsigned fmt, rep_figs *fg, char *why,
                      size_t whylen, char *err, size_t errlen);

/* Colour of expert e (same expert, same colour in every flow figure): Tableau 10 for
 * e < 10, their light variants for e < 20, then golden-angle hues. */
void rep_expert_rgb(int e, double rgb[3]);
/* The layer indices (into 0..n-1) of at most max panels: all when n <= max, else evenly
 * spaced including the first and the last. Returns how many. */
int rep_pick_layers(int n, int max, int *idx);

#endif
