/* rep_chart.c — the cairo line/bar chart (balance metrics per layer, gate-weight
 * distributions) and the text-table figure (top tokens per expert) of `report`. Both go
 * through rep_render() (rep_heatmap.c) so every figure exists as PNG, SVG and PDF with the
 * same look: title + subtitle, labelled axes, light grid, legend, toy-text fonts only. */
#include "reports/rep_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Qualitative palette (Tableau 10), cycled; lines also alternate dash patterns past 10. */
static const double k_pal[10][3] = {
  {0.12, 0.47, 0.71}, {1.00, 0.50, 0.05}, {0.17, 0.63, 0.17}, {0.84, 0.15, 0.16}, {0.58, 0.40, 0.74},
  {0.55, 0.34, 0.29}, {0.89, 0.47, 0.76}, {0.50, 0.50, 0.50}, {0.74, 0.74, 0.13}, {0.09, 0.75, 0.81}};

static void txt(cairo_t *cr, const char *s, double x, double y, double ax, double ay) {
  cairo_text_extents_t te;
  cairo_text_extents(cr, s, &te);
  cairo_move_to(cr, x - te.width * ax - te.x_bearing, y - te.height * ay - te.y_bearing);
  cairo_show_text(cr, s);
}

static void header(cairo_t *cr, const char *title, const char *sub, double width) {
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
  cairo_set_font_size(cr, 16);
  cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  if (title) txt(cr, title, width / 2, 14, 0.5, 0);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  if (sub) {
    cairo_set_font_size(cr, 12);
    cairo_set_source_rgb(cr, 0.35, 0.35, 0.35);
    txt(cr, sub, width / 2, 36, 0.5, 0);
  }
}

enum { CH_W = 900, CH_H = 520, CH_L = 80, CH_T = 64, CH_PW = 620, CH_PH = 380 };

static void chart_draw(cairo_t *cr, const void *p) {
  const rep_chart *c = p;
  header(cr, c->title, c->subtitle, CH_W);
  double lo = c->ymin, hi = c->ymax;
  if (isnan(lo) || isnan(hi)) {
    double mn = INFINITY, mx = -INFINITY;
    for (int i = 0; i < c->n_series * c->n_x; i++) if (!isnan(c->y[i])) { if (c->y[i] < mn) mn = c->y[i]; if (c->y[i] > mx) mx = c->y[i]; }
    if (!isfinite(mn)) { mn = 0; mx = 1; }
    if (isnan(lo)) lo = mn > 0 ? 0 : mn;
    if (isnan(hi)) hi = mx > lo ? mx * 1.05 : lo + 1;
  }
  /* nice tick step (1, 2, 2.5, 5 x 10^n) for about 5 intervals; hi rounded up to a tick */
  double raw = (hi - lo) / 5, mag = pow(10, floor(log10(raw))), stp = mag;
  static const double nice[5] = {1, 2, 2.5, 5, 10};
  for (int i = 0; i < 5; i++) if (nice[i] * mag >= raw * 0.999) { stp = nice[i] * mag; break; }
  int nt = (int)ceil((hi - lo) / stp - 1e-9);
  if (nt < 1) nt = 1;
  hi = lo + nt * stp;
  double x0 = CH_L, y0 = CH_T, pw = CH_PW, ph = CH_PH;
  cairo_set_font_size(cr, 12);
  char b[64];
  for (int i = 0; i <= nt; i++) {
    double v = lo + stp * i, y = y0 + ph - ph * i / nt;
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_set_line_width(cr, 1);
    cairo_move_to(cr, x0, y); cairo_line_to(cr, x0 + pw, y); cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    snprintf(b, sizeof b, stp >= 1 ? "%.0f" : stp >= 0.1 ? "%.1f" : stp >= 0.01 ? "%.2f" : "%.3f", v);
    if (stp == 2.5 * mag && stp < 1) snprintf(b, sizeof b, stp >= 0.25 ? "%.2f" : "%.3f", v);
    txt(cr, b, x0 - 6, y, 1, 0.5);
  }
  double step = pw / (c->n_x > 0 ? c->n_x : 1);
  int tstep = 1;
  while (step * tstep < 34) tstep++;
  for (int i = 0; i < c->n_x; i += tstep) txt(cr, c->xticks[i], x0 + (i + 0.5) * step, y0 + ph + 6, 0.5, 0);
  cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
  cairo_rectangle(cr, x0 + 0.5, y0 + 0.5, pw, ph);
  cairo_stroke(cr);
  cairo_set_font_size(cr, 14);
  cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  if (c->xlabel) txt(cr, c->xlabel, x0 + pw / 2, y0 + ph + 30, 0.5, 0);
  if (c->ylabel) {
    cairo_save(cr);
    cairo_translate(cr, 18, y0 + ph / 2);
    cairo_rotate(cr, -M_PI / 2);
    txt(cr, c->ylabel, 0, 0, 0.5, 0.5);
    cairo_restore(cr);
  }
  cairo_save(cr);
  cairo_rectangle(cr, x0, y0, pw, ph);
  cairo_clip(cr);
  for (int s = 0; s < c->n_series; s++) {
    const double *col = k_pal[s % 10];
    cairo_set_source_rgb(cr, col[0], col[1], col[2]);
    const double *v = c->y + (size_t)s * c->n_x;
    if (c->bars) {
      double bw = step * 0.8 / c->n_series;
      for (int i = 0; i < c->n_x; i++) {
        if (isnan(v[i])) continue;
        double yy = y0 + ph - ph * (v[i] - lo) / (hi - lo), ybase = y0 + ph - ph * (0 > lo ? 0 - lo : 0) / (hi - lo);
        cairo_rectangle(cr, x0 + i * step + step * 0.1 + s * bw, yy < ybase ? yy : ybase, bw, fabs(ybase - yy));
        cairo_fill(cr);
      }
      continue;
    }
    double dash[2] = {6, 3};
    cairo_set_dash(cr, dash, s >= 10 ? 2 : 0, 0);
    cairo_set_line_width(cr, 2);
    int pen = 0;
    for (int i = 0; i < c->n_x; i++) {
      if (isnan(v[i])) { pen = 0; continue; }
      double x = x0 + (i + 0.5) * step, y = y0 + ph - ph * (v[i] - lo) / (hi - lo);
      if (pen) cairo_line_to(cr, x, y); else cairo_move_to(cr, x, y);
      pen = 1;
    }
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
    for (int i = 0; i < c->n_x && c->n_x <= 64; i++) {
      if (isnan(v[i])) continue;
      cairo_arc(cr, x0 + (i + 0.5) * step, y0 + ph - ph * (v[i] - lo) / (hi - lo), 3, 0, 2 * M_PI);
      cairo_fill(cr);
    }
  }
  cairo_restore(cr);
  /* legend, right of the plot; at most 24 entries */
  cairo_set_font_size(cr, 12);
  double lx = x0 + pw + 18, ly = y0 + 6;
  for (int s = 0; s < c->n_series && s < 24; s++) {
    const double *col = k_pal[s % 10];
    cairo_set_source_rgb(cr, col[0], col[1], col[2]);
    cairo_rectangle(cr, lx, ly + s * 18, 14, 10);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    txt(cr, c->series[s], lx + 20, ly + s * 18 + 5, 0, 0.5);
  }
  if (c->n_series > 24) txt(cr, "...", lx, ly + 24 * 18 + 5, 0, 0.5);
}

int rep_chart_render(const rep_chart *c, const char *stem, unsigned formats, char *err, size_t errlen) {
  if (c->n_series <= 0 || c->n_x <= 0) { snprintf(err, errlen, "empty chart"); return -1; }
  return rep_render(CH_W, CH_H, chart_draw, c, stem, formats, err, errlen);
}

/* ---- text table figure ------------------------------------------------------------- */
enum { TT_ROW = 18, TT_TOP = 62, TT_CELL = 28 };

/* Copies at most max bytes of s, cut on a UTF-8 boundary, "..." when cut. */
static void clip_utf8(char *dst, size_t n, const char *s, size_t max) {
  size_t len = strlen(s);
  if (len <= max) { snprintf(dst, n, "%s", s); return; }
  while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80) max--;
  snprintf(dst, n, "%.*s...", (int)max, s);
}

typedef struct tt_arg { const rep_texttab *t; double width, height, *colx; } tt_arg;

static void tt_draw(cairo_t *cr, const void *p) {
  const tt_arg *a = p;
  const rep_texttab *t = a->t;
  header(cr, t->title, t->subtitle, a->width);
  cairo_set_font_size(cr, 12);
  char buf[TT_CELL + 8];
  for (int r = -1; r < t->rows; r++) {
    double y = TT_TOP + (r + 1) * TT_ROW;
    if (r >= 0 && r % 2 == 0) {
      cairo_set_source_rgb(cr, 0.95, 0.95, 0.97);
      cairo_rectangle(cr, 10, y, a->width - 20, TT_ROW);
      cairo_fill(cr);
    }
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, r < 0 ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    for (int c = 0; c < t->cols; c++) {
      const char *s = r < 0 ? t->head[c] : t->cell[(size_t)r * t->cols + c];
      clip_utf8(buf, sizeof buf, s ? s : "", TT_CELL);
      txt(cr, buf, a->colx[c], y + TT_ROW / 2.0, 0, 0.5);
    }
  }
  cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
  cairo_set_line_width(cr, 1);
  cairo_move_to(cr, 10, TT_TOP + TT_ROW + 0.5);
  cairo_line_to(cr, a->width - 10, TT_TOP + TT_ROW + 0.5);
  cairo_stroke(cr);
}

int rep_texttab_render(const rep_texttab *t, const char *stem, unsigned formats, char *err, size_t errlen) {
  if (t->rows <= 0 || t->cols <= 0 || t->cols > 64) { snprintf(err, errlen, "empty table figure"); return -1; }
  double colx[65];
  cairo_surface_t *sc = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, 8, 8);
  cairo_t *cr = cairo_create(sc);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
  cairo_set_font_size(cr, 12);
  char buf[TT_CELL + 8];
  double x = 16;
  for (int c = 0; c < t->cols; c++) {
    double w = 0;
    for (int r = -1; r < t->rows; r++) {
      const char *s = r < 0 ? t->head[c] : t->cell[(size_t)r * t->cols + c];
      clip_utf8(buf, sizeof buf, s ? s : "", TT_CELL);
      cairo_text_extents_t te;
      cairo_text_extents(cr, buf, &te);
      if (te.x_advance > w) w = te.x_advance;
    }
    colx[c] = x;
    x += w + 18;
  }
  cairo_destroy(cr);
  cairo_surface_destroy(sc);
  double title_w = 40 + 9.0 * (t->title ? (double)strlen(t->title) : 0);
  tt_arg a = {t, ceil(x > title_w ? x : title_w) + 10, TT_TOP + (t->rows + 1) * TT_ROW + 16, colx};
  return rep_render(a.width, a.height, tt_draw, &a, stem, formats, err, errlen);
}
