/* rep_tlfig.c — draws the timeline of rep_timeline.c (rep_timeline_render): title and
 * subtitle saying the source (GPU kernels / CPU op timers) and the window, a legend of op
 * categories with their share of the window's busy time, the layer band rows, one track per
 * (device, stream/thread) with a lane per nesting level, each box filled with its op
 * category's colour (named when wide enough), and a time axis relative to the run's start
 * in ns / us / ms / s. Goes through rep_render() so it exists as PNG, SVG and PDF. */
#include "reports/rep_internal.h"
#include "reports/rep_timeline.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum { TL_W = 1400, TL_LW = 150, TL_RM = 24, TL_TOP = 84, TL_BAND = 18, TL_LANE = 16, TL_TGAP = 8, TL_AXIS = 56 };

static const double k_cat_rgb[REP_TL_NCAT][3] = {
  {0.12, 0.47, 0.71},   /* attention: blue */
  {1.00, 0.50, 0.05},   /* router: orange */
  {0.58, 0.40, 0.74},   /* dispatch: purple */
  {0.17, 0.63, 0.17},   /* experts: green */
  {0.84, 0.15, 0.16},   /* combine: red */
  {0.60, 0.60, 0.60}};  /* other: grey */

static void tl_txt(cairo_t *cr, const char *s, double x, double y, double ax, double ay) {
  cairo_text_extents_t te;
  cairo_text_extents(cr, s, &te);
  cairo_move_to(cr, x - te.width * ax - te.x_bearing, y - te.height * ay - te.y_bearing);
  cairo_show_text(cr, s);
}

static double tl_height(const rep_timeline *t) {
  double h = TL_TOP + t->n_band_rows * (TL_BAND + 4) + 6;
  for (int i = 0; i < t->n_tracks; i++) h += t->tracks[i].lanes * TL_LANE + TL_TGAP;
  return h + TL_AXIS;
}

typedef struct tl_scale { double x0, pw; long long t0, span; } tl_scale;
static double tx(const tl_scale *s, long long t) { return s->x0 + (double)(t - s->t0) / (double)s->span * s->pw; }

/* Ticks: unit (ns, us, ms, s) by span and a 1/2/5 step for about 8 intervals. */
static void tl_axis(cairo_t *cr, const tl_scale *s, double y0, double y1) {
  static const char *const unit[4] = {"ns", "us", "ms", "s"};
  double span = (double)s->span, div = 1;
  int u = 0;
  while (u < 3 && span / div >= 10000) { div *= 1000; u++; }
  double raw = span / div / 8, mag = pow(10, floor(log10(raw > 0 ? raw : 1))), stp = mag;
  static const double nice[4] = {1, 2, 5, 10};
  for (int i = 0; i < 4; i++) if (nice[i] * mag >= raw * 0.999) { stp = nice[i] * mag; break; }
  double first = ceil((double)s->t0 / div / stp) * stp;
  cairo_set_font_size(cr, 11);
  char b[48];
  for (double v = first; v <= (double)(s->t0 + s->span) / div + 1e-9; v += stp) {
    double x = tx(s, (long long)llround(v * div));
    cairo_set_source_rgb(cr, 0.88, 0.88, 0.88);
    cairo_set_line_width(cr, 1);
    cairo_move_to(cr, floor(x) + 0.5, y0); cairo_line_to(cr, floor(x) + 0.5, y1); cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    snprintf(b, sizeof b, stp >= 1 ? "%.0f" : stp >= 0.1 ? "%.1f" : stp >= 0.01 ? "%.2f" : "%.3f", v);
    tl_txt(cr, b, x, y1 + 5, 0.5, 0);
  }
  cairo_set_font_size(cr, 13);
  snprintf(b, sizeof b, "time since run start (%s)", unit[u]);
  tl_txt(cr, b, s->x0 + s->pw / 2, y1 + 24, 0.5, 0);
}

static void tl_draw(cairo_t *cr, const void *p) {
  const rep_timeline *t = p;
  double W = TL_W;
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  char title[200], sub[400];
  if (t->source == REP_TL_SRC_KERNELS)
    snprintf(title, sizeof title, "GPU timeline: CUDA kernels per stream (CUPTI), run %lld", t->run_id);
  else snprintf(title, sizeof title, "Timeline from CPU op timers (no GPU kernels in this trace), run %lld", t->run_id);
  char range[64];
  if (t->n_batches_shown > 1) snprintf(range, sizeof range, "batches %lld-%lld", t->batch_first, t->batch_last);
  else snprintf(range, sizeof range, "batch %lld", t->batch_first);
  snprintf(sub, sizeof sub, "%d of %lld %s: %s of %d (%s); colour = op%s; bands = layers%s", t->n_boxes, t->rows_run,
           t->source == REP_TL_SRC_KERNELS ? "kernels" : "op timings", range, t->n_batches_run,
           t->n_batches_shown == t->n_batches_run ? "all" : "window: --timeline-batches",
           t->source == REP_TL_SRC_KERNELS ? " from kernel_scope" : "", t->truncated ? "; truncated" : "");
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
  cairo_set_font_size(cr, 16);
  cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  tl_txt(cr, title, W / 2, 10, 0.5, 0);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, 12);
  cairo_set_source_rgb(cr, 0.35, 0.35, 0.35);
  tl_txt(cr, sub, W / 2, 32, 0.5, 0);
  /* legend: category (share of busy time) */
  long long busy = 0;
  for (int k = 0; k < REP_TL_NCAT; k++) busy += t->cat_ns[k];
  double lx = TL_LW;
  char b[96];
  for (int k = 0; k < REP_TL_NCAT; k++) {
    cairo_set_source_rgb(cr, k_cat_rgb[k][0], k_cat_rgb[k][1], k_cat_rgb[k][2]);
    cairo_rectangle(cr, lx, 56, 14, 12);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    snprintf(b, sizeof b, "%s %.1f%%", rep_tl_cat_name(k), busy ? 100.0 * t->cat_ns[k] / busy : 0.0);
    tl_txt(cr, b, lx + 19, 62, 0, 0.5);
    cairo_text_extents_t te;
    cairo_text_extents(cr, b, &te);
    lx += 19 + te.x_advance + 22;
  }
  tl_scale s = {TL_LW, W - TL_LW - TL_RM, t->t0, t->t1 > t->t0 ? t->t1 - t->t0 : 1};
  double y = TL_TOP, ytop = y;
  /* band rows */
  cairo_set_font_size(cr, 10);
  for (int r = 0; r < t->n_band_rows; r++) {
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    cairo_set_font_size(cr, 11);
    tl_txt(cr, t->band_row[r], TL_LW - 8, y + TL_BAND / 2.0, 1, 0.5);
    cairo_set_font_size(cr, 10);
    for (int i = 0; i < t->n_bands; i++) {
      const rep_tl_band *bd = &t->bands[i];
      if (bd->row != r) continue;
      double x0 = tx(&s, bd->t0), x1 = tx(&s, bd->t1), w = x1 - x0 < 0.6 ? 0.6 : x1 - x0;
      double g = bd->layer % 2 ? 0.70 : 0.84;
      cairo_set_source_rgb(cr, g, g, g + 0.04);
      cairo_rectangle(cr, x0, y, w, TL_BAND);
      cairo_fill(cr);
      snprintf(b, sizeof b, "L%d", bd->layer);
      cairo_text_extents_t te;
      cairo_text_extents(cr, b, &te);
      if (te.x_advance + 4 < w) { cairo_set_source_rgb(cr, 0.15, 0.15, 0.15); tl_txt(cr, b, x0 + w / 2, y + TL_BAND / 2.0, 0.5, 0.5); }
    }
    y += TL_BAND + 4;
  }
  y += 6;
  /* tracks */
  for (int k = 0; k < t->n_tracks; k++) {
    const rep_tl_track *tr = &t->tracks[k];
    double th = tr->lanes * TL_LANE;
    cairo_set_source_rgb(cr, 0.97, 0.97, 0.98);
    cairo_rectangle(cr, TL_LW, y, s.pw, th);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    cairo_set_font_size(cr, 11);
    tl_txt(cr, tr->label, TL_LW - 8, y + th / 2, 1, 0.5);
    cairo_set_font_size(cr, 9);
    for (int i = 0; i < t->n_boxes; i++) {
      const rep_tl_box *x = &t->boxes[i];
      if (x->track != k) continue;
      double x0 = tx(&s, x->t0), x1 = tx(&s, x->t1), w = x1 - x0 < 0.6 ? 0.6 : x1 - x0;
      double yy = y + x->lane * TL_LANE + 1, hh = TL_LANE - 2;
      const double *c = k_cat_rgb[x->cat];
      cairo_set_source_rgb(cr, c[0], c[1], c[2]);
      cairo_rectangle(cr, x0, yy, w, hh);
      cairo_fill(cr);
      if (w >= 4) {   /* a thin dark edge separates back-to-back boxes */
        cairo_set_source_rgb(cr, c[0] * 0.6, c[1] * 0.6, c[2] * 0.6);
        cairo_set_line_width(cr, 0.5);
        cairo_rectangle(cr, x0 + 0.25, yy + 0.25, w - 0.5, hh - 0.5);
        cairo_stroke(cr);
      }
      cairo_text_extents_t te;
      cairo_text_extents(cr, x->name, &te);
      if (te.x_advance + 4 < w) {
        cairo_set_source_rgb(cr, 1, 1, 1);
        tl_txt(cr, x->name, x0 + w / 2, yy + hh / 2, 0.5, 0.5);
      }
    }
    y += th + TL_TGAP;
  }
  cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
  cairo_set_line_width(cr, 1);
  cairo_rectangle(cr, TL_LW + 0.5, ytop - 2.5, s.pw, y - ytop);
  cairo_stroke(cr);
  tl_axis(cr, &s, ytop - 2, y - 2);
}

int rep_timeline_render(const rep_timeline *t, const char *stem, unsigned formats, char *err, size_t errlen) {
  if (t->source == REP_TL_SRC_NONE || t->n_boxes == 0) { snprintf(err, errlen, "timeline: nothing to draw"); return -1; }
  return rep_render(TL_W, ceil(tl_height(t)), tl_draw, t, stem, formats, err, errlen);
}
