/* rep_sankey.c — figure transitions_sankey of `moescope report` (see rep_bias.h): the
 * cross-layer expert flow as a Sankey / alluvial diagram. Columns = MoE layers (the first
 * REP_SANKEY_MAX_COLS when there are more, said in the subtitle), nodes = experts stacked
 * in id order, node height proportional to the tokens whose *primary* (top-1 weight)
 * expert it is (one count per token and layer, so every column holds the same tokens),
 * ribbons between adjacent layers proportional to the tokens going a -> b, coloured by the
 * source expert (rep_expert_rgb, the colours of bias_trajectory). Only the ribbons kept by
 * ana_flow (>= REP_SANKEY_MIN_SHARE of the pair's tokens and among the
 * REP_SANKEY_RIBBONS largest) are drawn; each ribbon keeps its exact place inside its
 * nodes (ordered by the other end's expert id), so hidden flows leave gaps and the share
 * drawn is printed under every layer pair. Data: ana_struct transitions via ana_flow.h. */
#include "reports/rep_bias.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/ana_diag.h"
#include "analysis/ana_flow.h"

static void txt(cairo_t *cr, const char *s, double x, double y, double ax, double ay) {
  cairo_text_extents_t te;
  cairo_text_extents(cr, s, &te);
  cairo_move_to(cr, x - te.width * ax - te.x_bearing, y - te.height * ay - te.y_bearing);
  cairo_show_text(cr, s);
}

enum { SK_TOP = 96, SK_PH = 560, SK_NW = 14, SK_LEFT = 80, SK_RIGHT = 80, SK_BOTTOM = 56 };

typedef struct sk_arg {
  const ana_flow *f;
  const int *layer_ids;
  long long run;
  int C;                 /* columns drawn */
  double width, height, colgap, pad, scale;
  const long long *T;    /* [C-1][E][E] full transition matrices (from every non-zero ribbon) */
  double *top;           /* [C][E] node top y */
} sk_arg;

static double colx(const sk_arg *a, int c) { return SK_LEFT + c * a->colgap; }

static void sk_draw(cairo_t *cr, const void *p) {
  const sk_arg *a = p;
  const ana_flow *f = a->f;
  int E = f->E, C = a->C;
  size_t EE = (size_t)E * E;
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  char b[512];
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
  cairo_set_font_size(cr, 16);
  cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  snprintf(b, sizeof b, "Cross-layer expert flow (primary expert per token), run %lld", a->run);
  txt(cr, b, a->width / 2, 14, 0.5, 0);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, 12);
  cairo_set_source_rgb(cr, 0.35, 0.35, 0.35);
  snprintf(b, sizeof b, "node = tokens whose top-1 (highest-weight) expert it is; ribbon = tokens moving a -> b to the"
           " next MoE layer, coloured by a; numbers = expert ids");
  txt(cr, b, a->width / 2, 36, 0.5, 0);
  snprintf(b, sizeof b, "ribbons drawn: >= %.0f%% of the pair's tokens and the %d largest per pair", 100 * f->min_share,
           f->max_ribbons);
  if (C < f->L)
    snprintf(b + strlen(b), sizeof b - strlen(b), "; first %d of %d MoE layers shown", C, f->L);
  txt(cr, b, a->width / 2, 54, 0.5, 0);
  /* ribbons: smallest first so the big flows stay on top */
  for (int l = 0; l + 1 < C; l++) {
    const long long *T = a->T + (size_t)l * EE;
    const ana_ribbon *r = f->rib + (size_t)l * EE;
    double x1 = colx(a, l) + SK_NW, x2 = colx(a, l + 1), xm = (x1 + x2) / 2;
    for (int i = f->n_rib[l] - 1; i >= 0; i--) {
      int s = r[i].src, d = r[i].dst;
      long long so = 0, dof = 0;
      for (int k = 0; k < d; k++) so += T[(size_t)s * E + k];
      for (int k = 0; k < s; k++) dof += T[(size_t)k * E + d];
      double h = r[i].n * a->scale;
      double ys = a->top[(size_t)l * E + s] + so * a->scale, yd = a->top[(size_t)(l + 1) * E + d] + dof * a->scale;
      double rgb[3];
      rep_expert_rgb(s, rgb);
      cairo_set_source_rgba(cr, rgb[0], rgb[1], rgb[2], 0.5);
      cairo_move_to(cr, x1, ys);
      cairo_curve_to(cr, xm, ys, xm, yd, x2, yd);
      cairo_line_to(cr, x2, yd + h);
      cairo_curve_to(cr, xm, yd + h, xm, ys + h, x1, ys + h);
      cairo_close_path(cr);
      cairo_fill(cr);
    }
    /* share drawn, under the pair */
    cairo_set_font_size(cr, 10);
    cairo_set_source_rgb(cr, 0.35, 0.35, 0.35);
    snprintf(b, sizeof b, "%d ribbon%s", f->n_rib[l], f->n_rib[l] == 1 ? "" : "s");
    txt(cr, b, xm, SK_TOP + SK_PH + 18, 0.5, 0);
    snprintf(b, sizeof b, "%.0f%% of tokens", f->pair_n[l] ? 100.0 * f->shown[l] / f->pair_n[l] : 0.0);
    txt(cr, b, xm, SK_TOP + SK_PH + 31, 0.5, 0);
  }
  /* nodes and labels */
  for (int c = 0; c < C; c++) {
    double x = colx(a, c);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
    cairo_set_font_size(cr, 13);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    snprintf(b, sizeof b, "layer %d", a->layer_ids[c]);
    txt(cr, b, x + SK_NW / 2.0, SK_TOP - 10, 0.5, 1);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, 10);
    for (int e = 0; e < E; e++) {
      long long n = f->node[(size_t)c * E + e];
      if (n <= 0) continue;
      double y = a->top[(size_t)c * E + e], h = n * a->scale, rgb[3];
      rep_expert_rgb(e, rgb);
      cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
      cairo_rectangle(cr, x, y, SK_NW, h < 0.8 ? 0.8 : h);
      cairo_fill(cr);
      if (h >= 9 && E <= 128) {
        cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
        snprintf(b, sizeof b, "%d", e);
        if (c == 0) txt(cr, b, x - 4, y + h / 2, 1, 0.5);
        else txt(cr, b, x + SK_NW + 3, y + h / 2, 0, 0.5);
      }
    }
  }
}

int rep_sankey_figure(const ana_diag *dg, const char *outdir, unsigned fmt, rep_figs *fg, char *why, size_t whylen,
                      char *err, size_t errlen) {
  why[0] = 0;
  if (!dg->has_trace) return 1;   /* the report's note already says routing is missing */
  const ana_struct *st = &dg->st;
  if (st->L < 2) {
    snprintf(why, whylen, "only one MoE layer with routing in run %lld: no transitions_sankey figure", dg->trace.run_id);
    return 1;
  }
  ana_flow f;
  if (ana_flow_compute(st, REP_SANKEY_RIBBONS, REP_SANKEY_MIN_SHARE, &f, err, errlen) != 0) return -1;
  int C = f.L < REP_SANKEY_MAX_COLS ? f.L : REP_SANKEY_MAX_COLS, E = f.E, rc = -1;
  long long any = 0;
  for (int l = 0; l + 1 < C; l++) any += f.pair_n[l];
  if (!any) {
    snprintf(why, whylen, "no token routed in two adjacent MoE layers in run %lld: no transitions_sankey figure",
             dg->trace.run_id);
    ana_flow_free(&f);
    return 1;
  }
  size_t EE = (size_t)E * E;
  sk_arg a = {.f = &f, .layer_ids = dg->trace.layer_ids, .run = dg->trace.run_id, .C = C};
  long long *T = calloc((size_t)(C - 1) * EE + 1, sizeof *T);
  double *top = calloc((size_t)C * E + 1, sizeof *top);
  if (!T || !top) { snprintf(err, errlen, "out of memory"); goto done; }
  for (int l = 0; l + 1 < C; l++)
    for (int i = 0; i < f.n_all[l]; i++) {
      const ana_ribbon *r = f.rib + (size_t)l * EE + i;
      T[(size_t)l * EE + (size_t)r->src * E + r->dst] = r->n;
    }
  a.T = T; a.top = top;
  a.colgap = C > 1 ? 1100.0 / (C - 1) : 200;
  if (a.colgap > 260) a.colgap = 260;
  if (a.colgap < 100) a.colgap = 100;
  a.width = SK_LEFT + (C - 1) * a.colgap + SK_NW + SK_RIGHT;
  if (a.width < 900) { a.colgap += (900 - a.width) / (C - 1); a.width = 900; }
  a.height = SK_TOP + SK_PH + SK_BOTTOM;
  long long tmax = 0;
  for (int c = 0; c < C; c++) {
    long long t = 0;
    for (int e = 0; e < E; e++) t += f.node[(size_t)c * E + e];
    if (t > tmax) tmax = t;
  }
  a.pad = E > 1 ? fmin(8.0, 0.3 * SK_PH / (E - 1)) : 0;
  a.scale = tmax > 0 ? (SK_PH - a.pad * (E - 1)) / (double)tmax : 0;
  for (int c = 0; c < C; c++) {   /* nodes stacked in expert order, column centred */
    double h = 0;
    for (int e = 0; e < E; e++) h += f.node[(size_t)c * E + e] * a.scale;
    double y = SK_TOP + (SK_PH - h - a.pad * (E - 1)) / 2;
    for (int e = 0; e < E; e++) {
      top[(size_t)c * E + e] = y;
      y += f.node[(size_t)c * E + e] * a.scale + a.pad;
    }
  }
  char path[4200], cap[200];
  snprintf(path, sizeof path, "%s/transitions_sankey", outdir);
  if (rep_render(a.width, a.height, sk_draw, &a, path, fmt, err, errlen) != 0) goto done;
  snprintf(cap, sizeof cap, "Cross-layer expert flow (Sankey): top-1 expert per token, ribbons >= %.0f%% of tokens "
           "(at most %d per layer pair)", 100 * REP_SANKEY_MIN_SHARE, REP_SANKEY_RIBBONS);
  if (rep_figs_add(fg, "transitions_sankey", cap)) { snprintf(err, errlen, "out of memory"); goto done; }
  rc = 0;
done:
  free(T); free(top);
  ana_flow_free(&f);
  return rc;
}
