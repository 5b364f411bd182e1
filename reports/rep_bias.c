/* rep_bias.c — figure bias_trajectory of `moescope report` (see rep_bias.h): for a run
 * routed by the aux-loss-free `bias` policy, small multiples (one panel per MoE layer, at
 * most REP_BIAS_MAX_PANELS, evenly spaced when there are more and named in the subtitle),
 * each with the selection bias of every expert over batch_id (one line per expert, colour
 * = expert, the same in every panel) on top and the layer's MaxVio per batch beneath it on
 * a shared x axis, so the bias can be seen pushing the imbalance down. All panels share
 * their y scales. Data: ana_bias_trajectory (analysis/ana_bias.c). Also the expert colour
 * and layer selection helpers shared with rep_sankey.c. */
#include "reports/rep_bias.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/ana_bias.h"

static const double k_tab10[10][3] = {
  {0.12, 0.47, 0.71}, {1.00, 0.50, 0.05}, {0.17, 0.63, 0.17}, {0.84, 0.15, 0.16}, {0.58, 0.40, 0.74},
  {0.55, 0.34, 0.29}, {0.89, 0.47, 0.76}, {0.50, 0.50, 0.50}, {0.74, 0.74, 0.13}, {0.09, 0.75, 0.81}};
static const double k_tab10l[10][3] = {
  {0.68, 0.78, 0.91}, {1.00, 0.73, 0.47}, {0.60, 0.87, 0.54}, {1.00, 0.60, 0.59}, {0.77, 0.69, 0.84},
  {0.77, 0.61, 0.58}, {0.97, 0.71, 0.82}, {0.78, 0.78, 0.78}, {0.86, 0.86, 0.55}, {0.62, 0.85, 0.90}};

void rep_expert_rgb(int e, double rgb[3]) {
  if (e < 0) e = 0;
  if (e < 20) { memcpy(rgb, e < 10 ? k_tab10[e] : k_tab10l[e - 10], 3 * sizeof(double)); return; }
  double h = fmod(e * 0.6180339887, 1.0) * 6, s = 0.65, v = e % 2 ? 0.80 : 0.62;   /* HSV -> RGB */
  int i = (int)h;
  double f = h - i, p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  double c[6][3] = {{v, t, p}, {q, v, p}, {p, v, t}, {p, q, v}, {t, p, v}, {v, p, q}};
  memcpy(rgb, c[i % 6], 3 * sizeof(double));
}

int rep_pick_layers(int n, int max, int *idx) {
  if (n <= max) { for (int i = 0; i < n; i++) idx[i] = i; return n; }
  for (int i = 0; i < max; i++) idx[i] = (int)lround((double)i * (n - 1) / (max - 1));
  return max;
}

static void txt(cairo_t *cr, const char *s, double x, double y, double ax, double ay) {
  cairo_text_extents_t te;
  cairo_text_extents(cr, s, &te);
  cairo_move_to(cr, x - te.width * ax - te.x_bearing, y - te.height * ay - te.y_bearing);
  cairo_show_text(cr, s);
}

/* A "nice" tick step (1, 2, 2.5, 5 x 10^n) for about n intervals over span. */
static double nice_step(double span, int n) {
  if (!(span > 0)) return 1;
  double raw = span / n, mag = pow(10, floor(log10(raw)));
  static const double nice[5] = {1, 2, 2.5, 5, 10};
  for (int i = 0; i < 5; i++) if (nice[i] * mag >= raw * 0.999) return nice[i] * mag;
  return 10 * mag;
}

static void fmt_tick(char *b, size_t n, double v, double stp) {
  if (fabs(v) < stp * 1e-6) v = 0;
  int dec = stp >= 1 ? 0 : (int)ceil(-log10(stp) - 1e-9);
  if (fabs(stp * pow(10, dec) - round(stp * pow(10, dec))) > 1e-6) dec++;   /* 2.5 x 10^n */
  snprintf(b, n, "%.*f", dec > 6 ? 6 : dec, v);
}

enum { BP_W = 300, BP_GAP = 36, BP_TOP = 92, BP_BH = 190, BP_MID = 14, BP_MH = 90, BP_ROWH = 360, BP_LEFT = 70,
       BP_LEG = 130 };

typedef struct bias_arg {
  const ana_bias_traj *t;
  const char *policy;
  int np, cols, rows, idx[REP_BIAS_MAX_PANELS];
  double width, height, xoff, blo, bhi, bstep, mhi, mstep, xlo, xhi, xstep;
} bias_arg;

/* y axis with grid and tick labels for [lo, lo + k*stp] over [y0, y0 + h]. */
static void yaxis(cairo_t *cr, double x0, double y0, double w, double h, double lo, double hi, double stp, int labels) {
  char b[48];
  cairo_set_font_size(cr, 10);
  for (double v = lo; v <= hi + stp * 1e-6; v += stp) {
    double y = y0 + h - h * (v - lo) / (hi - lo);
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_set_line_width(cr, 1);
    cairo_move_to(cr, x0, y); cairo_line_to(cr, x0 + w, y); cairo_stroke(cr);
    if (labels) {
      cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);
      fmt_tick(b, sizeof b, v, stp);
      txt(cr, b, x0 - 4, y, 1, 0.5);
    }
  }
}

static void bias_draw(cairo_t *cr, const void *p) {
  const bias_arg *a = p;
  const ana_bias_traj *t = a->t;
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  char b[512], lay[160] = "";
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
  cairo_set_font_size(cr, 16);
  cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  snprintf(b, sizeof b, "Router-bias trajectory and load imbalance per batch, run %lld", t->run_id);
  txt(cr, b, a->width / 2, 14, 0.5, 0);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, 12);
  cairo_set_source_rgb(cr, 0.35, 0.35, 0.35);
  snprintf(b, sizeof b, "policy %.160s", a->policy);
  if (a->np < t->L) {
    for (int i = 0; i < a->np; i++)
      snprintf(lay + strlen(lay), sizeof lay - strlen(lay), "%s%d", i ? ", " : "", t->layer_ids[a->idx[i]]);
    snprintf(b + strlen(b), sizeof b - strlen(b), "; %d of %d MoE layers shown: %s", a->np, t->L, lay);
  }
  txt(cr, b, a->width / 2, 36, 0.5, 0);
  txt(cr, "top: selection bias of each expert used to route the batch; bottom: MaxVio = max load / mean load - 1"
      " of that batch", a->width / 2, 54, 0.5, 0);
  double xs = a->xhi > a->xlo ? a->xhi - a->xlo : 1;
  for (int i = 0; i < a->np; i++) {
    int li = a->idx[i], col = i % a->cols, row = i / a->cols;
    double x0 = a->xoff + BP_LEFT + col * (BP_W + BP_GAP), y0 = BP_TOP + row * BP_ROWH, ym = y0 + BP_BH + BP_MID;
    /* panel title */
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
    cairo_set_font_size(cr, 13);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    const double *mv = t->maxvio + (size_t)li * t->B;
    int first = -1, last = -1;
    for (int k = 0; k < t->B; k++) if (!isnan(mv[k])) { if (first < 0) first = k; last = k; }
    if (first >= 0) snprintf(b, sizeof b, "layer %d: MaxVio %.2f -> %.2f", t->layer_ids[li], mv[first], mv[last]);
    else snprintf(b, sizeof b, "layer %d", t->layer_ids[li]);
    txt(cr, b, x0 + BP_W / 2.0, y0 - 6, 0.5, 1);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    yaxis(cr, x0, y0, BP_W, BP_BH, a->blo, a->bhi, a->bstep, 1);
    yaxis(cr, x0, ym, BP_W, BP_MH, 0, a->mhi, a->mstep, 1);
    /* zero line of the bias */
    if (a->blo < 0 && a->bhi > 0) {
      double yz = y0 + BP_BH - BP_BH * (0 - a->blo) / (a->bhi - a->blo);
      cairo_set_source_rgb(cr, 0.55, 0.55, 0.55);
      cairo_set_line_width(cr, 1);
      cairo_move_to(cr, x0, yz); cairo_line_to(cr, x0 + BP_W, yz); cairo_stroke(cr);
    }
    /* x ticks under the MaxVio plot */
    cairo_set_font_size(cr, 10);
    for (double v = ceil(a->xlo / a->xstep) * a->xstep; v <= a->xhi + 1e-9; v += a->xstep) {
      double x = x0 + BP_W * (v - a->xlo) / xs;
      cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
      cairo_move_to(cr, x, ym + BP_MH); cairo_line_to(cr, x, ym + BP_MH + 4); cairo_stroke(cr);
      snprintf(b, sizeof b, "%.0f", v);
      txt(cr, b, x, ym + BP_MH + 6, 0.5, 0);
    }
    cairo_set_font_size(cr, 11);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    txt(cr, "forward batch", x0 + BP_W / 2.0, ym + BP_MH + 20, 0.5, 0);
    if (col == 0) {
      cairo_save(cr);
      cairo_translate(cr, x0 - 48, y0 + BP_BH / 2.0); cairo_rotate(cr, -M_PI / 2);
      txt(cr, "selection bias", 0, 0, 0.5, 0.5);
      cairo_restore(cr);
      cairo_save(cr);
      cairo_translate(cr, x0 - 48, ym + BP_MH / 2.0); cairo_rotate(cr, -M_PI / 2);
      txt(cr, "MaxVio", 0, 0, 0.5, 0.5);
      cairo_restore(cr);
    }
    /* bias lines */
    cairo_save(cr);
    cairo_rectangle(cr, x0, y0, BP_W, BP_BH);
    cairo_clip(cr);
    cairo_set_line_width(cr, t->E <= 16 ? 1.6 : t->E <= 64 ? 1.0 : 0.6);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    for (int e = 0; e < t->E; e++) {
      double rgb[3];
      rep_expert_rgb(e, rgb);
      cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
      int pen = 0;
      for (int k = 0; k < t->B; k++) {
        double v = t->bias[ana_bias_cell(t, li, k, e)];
        if (isnan(v)) { if (pen) cairo_stroke(cr); pen = 0; continue; }
        double x = x0 + BP_W * ((double)t->batch_ids[k] - a->xlo) / xs, y = y0 + BP_BH - BP_BH * (v - a->blo) / (a->bhi - a->blo);
        if (t->B == 1) { cairo_arc(cr, x, y, 3, 0, 2 * M_PI); cairo_fill(cr); continue; }
        if (pen) cairo_line_to(cr, x, y); else cairo_move_to(cr, x, y);
        pen = 1;
      }
      if (pen) cairo_stroke(cr);
    }
    cairo_restore(cr);
    /* MaxVio line */
    cairo_save(cr);
    cairo_rectangle(cr, x0 - 4, ym - 4, BP_W + 8, BP_MH + 8);
    cairo_clip(cr);
    cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);
    cairo_set_line_width(cr, 1.6);
    int pen = 0;
    for (int k = 0; k < t->B; k++) {
      if (isnan(mv[k])) { if (pen) cairo_stroke(cr); pen = 0; continue; }
      double x = x0 + BP_W * ((double)t->batch_ids[k] - a->xlo) / xs, y = ym + BP_MH - BP_MH * mv[k] / a->mhi;
      if (pen) cairo_line_to(cr, x, y); else cairo_move_to(cr, x, y);
      pen = 1;
    }
    if (pen) cairo_stroke(cr);
    for (int k = 0; k < t->B && t->B <= 80; k++) {
      if (isnan(mv[k])) continue;
      cairo_arc(cr, x0 + BP_W * ((double)t->batch_ids[k] - a->xlo) / xs, ym + BP_MH - BP_MH * mv[k] / a->mhi, 2.2, 0, 2 * M_PI);
      cairo_fill(cr);
    }
    cairo_restore(cr);
    cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
    cairo_set_line_width(cr, 1);
    cairo_rectangle(cr, x0 + 0.5, y0 + 0.5, BP_W, BP_BH); cairo_stroke(cr);
    cairo_rectangle(cr, x0 + 0.5, ym + 0.5, BP_W, BP_MH); cairo_stroke(cr);
  }
  /* expert legend, right */
  double lx = a->xoff + BP_LEFT + a->cols * (BP_W + BP_GAP) - BP_GAP + 20, ly = BP_TOP;
  cairo_set_font_size(cr, 11);
  int shown = t->E <= 24 ? t->E : 20;
  for (int e = 0; e < shown; e++) {
    double rgb[3];
    rep_expert_rgb(e, rgb);
    cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
    cairo_rectangle(cr, lx, ly + e * 15, 16, 4);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    snprintf(b, sizeof b, "expert %d", e);
    txt(cr, b, lx + 22, ly + e * 15 + 2, 0, 0.5);
  }
  if (shown < t->E) {
    snprintf(b, sizeof b, "... %d experts", t->E);
    txt(cr, b, lx, ly + shown * 15 + 2, 0, 0.5);
  }
}

int rep_bias_figure(ana_db *d, long long run, const char *outdir, unsigned fmt, rep_figs *fg, char *why, size_t whylen,
                    char *err, size_t errlen) {
  ana_bias_traj t;
  char msg[256];
  int rc = ana_bias_trajectory(d, run, &t, msg, sizeof msg);
  if (rc == 1) { snprintf(why, whylen, "%s: no bias_trajectory figure", msg); return 1; }
  if (rc != 0) { snprintf(err, errlen, "%s", msg); return -1; }
  ana_run r;
  if (ana_run_get(d, t.run_id, &r, err, errlen) != 0) { ana_bias_free(&t); return -1; }
  bias_arg a = {.t = &t, .policy = r.policy[0] ? r.policy : "bias policy"};
  a.np = rep_pick_layers(t.L, REP_BIAS_MAX_PANELS, a.idx);
  a.cols = a.np < 4 ? a.np : 4;
  a.rows = (a.np + a.cols - 1) / a.cols;
  double bmin = INFINITY, bmax = -INFINITY, mmax = 0;
  for (int i = 0; i < a.np; i++) {
    int li = a.idx[i];
    for (int k = 0; k < t.B; k++) {
      double m = t.maxvio[(size_t)li * t.B + k];
      if (!isnan(m) && m > mmax) mmax = m;
      for (int e = 0; e < t.E; e++) {
        double v = t.bias[ana_bias_cell(&t, li, k, e)];
        if (isnan(v)) continue;
        if (v < bmin) bmin = v;
        if (v > bmax) bmax = v;
      }
    }
  }
  if (!isfinite(bmin)) { bmin = -1; bmax = 1; }
  if (bmax - bmin < 1e-9) { bmin -= 0.5 * (fabs(bmin) > 0 ? fabs(bmin) : 1); bmax += 0.5 * (fabs(bmax) > 0 ? fabs(bmax) : 1); }
  a.bstep = nice_step(bmax - bmin, 5);
  a.blo = floor(bmin / a.bstep - 1e-9) * a.bstep;
  a.bhi = ceil(bmax / a.bstep + 1e-9) * a.bstep;
  if (!(mmax > 0)) mmax = 1;
  a.mstep = nice_step(mmax, 3);
  a.mhi = ceil(mmax / a.mstep - 1e-9) * a.mstep;
  if (a.mhi < mmax * 1.02) a.mhi += a.mstep * 0.5;
  a.xlo = (double)t.batch_ids[0];
  a.xhi = (double)t.batch_ids[t.B - 1];
  if (a.xhi <= a.xlo) { a.xlo -= 1; a.xhi += 1; }
  a.xstep = nice_step(a.xhi - a.xlo, 5);
  if (a.xstep < 1) a.xstep = 1;
  a.width = BP_LEFT + a.cols * (BP_W + BP_GAP) - BP_GAP + BP_LEG;
  if (a.width < 820) { a.xoff = (820 - a.width) / 2; a.width = 820; }
  a.height = BP_TOP + a.rows * BP_ROWH - 20;
  char path[4200], cap[200];
  snprintf(path, sizeof path, "%s/bias_trajectory", outdir);
  rc = rep_render(a.width, a.height, bias_draw, &a, path, fmt, err, errlen);
  if (rc == 0) {
    snprintf(cap, sizeof cap, "Router-bias trajectory (aux-loss-free bias policy): per-expert bias and MaxVio per batch, "
             "%d forward batches", t.B);
    if (rep_figs_add(fg, "bias_trajectory", cap)) { snprintf(err, errlen, "out of memory"); rc = -1; }
  }
  ana_bias_free(&t);
  return rc;
}
