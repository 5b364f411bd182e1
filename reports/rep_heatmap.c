/* rep_heatmap.c — the cairo heatmap renderer (PNG and SVG) behind every layer x expert
 * and label x expert figure: a diverging log2 colour map centred at 1 (the uniform share),
 * capped to 1/8..8, with title, axis labels, tick labels that thin out as E and L grow,
 * in-cell numbers when cells are big enough, and a labelled colour bar. Uses only the
 * cairo "toy" text API so it needs no pango/fontconfig setup beyond cairo's defaults. */
#include "reports/rep_internal.h"

#include <cairo.h>
#include <cairo-svg.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define CAP_LOG2 3.0   /* colour saturates at 2^-3 = 1/8 and 2^3 = 8 */

/* Position in [-1, 1] on the colour scale for a ratio (0 -> -1). */
static double scale_pos(double v) {
  if (!(v > 0)) return -1;
  double t = log2(v) / CAP_LOG2;
  return t < -1 ? -1 : t > 1 ? 1 : t;
}

/* RdBu-like diverging map: dark blue (-1) .. white (0) .. dark red (+1). */
static void colour_at(double t, double rgb[3]) {
  static const double blue[3][3] = {{1, 1, 1}, {0.40, 0.66, 0.81}, {0.02, 0.19, 0.38}};
  static const double red[3][3] = {{1, 1, 1}, {0.90, 0.45, 0.35}, {0.40, 0.00, 0.12}};
  const double (*c)[3] = t < 0 ? blue : red;
  double a = fabs(t) * 2;
  int i = a >= 1 ? 1 : 0;
  double f = a - i;
  if (f > 1) f = 1;
  for (int k = 0; k < 3; k++) rgb[k] = c[i][k] + (c[i + 1][k] - c[i][k]) * f;
}

static double clampd(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Smallest step from 1,2,5,10,20,50,... such that step * cell >= min_px. */
static int nice_step(double cell, double min_px) {
  static const int base[3] = {1, 2, 5};
  for (int mag = 1;; mag *= 10)
    for (int i = 0; i < 3; i++)
      if (base[i] * mag * cell >= min_px || mag > 100000) return base[i] * mag;
}

typedef struct layout {
  double cw, ch, left, top, gw, gh, cbar_x, width, height, font;
} layout;

static void text_at(cairo_t *cr, const char *s, double x, double y, double ax, double ay) {
  cairo_text_extents_t te;
  cairo_text_extents(cr, s, &te);
  cairo_move_to(cr, x - te.width * ax - te.x_bearing, y - te.height * ay - te.y_bearing);
  cairo_show_text(cr, s);
}

static void compute_layout(const rep_heatmap *hm, layout *lo) {
  lo->font = 13;
  lo->cw = clampd(900.0 / hm->cols, 3, 64);
  lo->ch = clampd(560.0 / hm->rows, 3, 40);
  /* Measure the widest row label on a scratch surface. */
  cairo_surface_t *sc = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, 8, 8);
  cairo_t *cr = cairo_create(sc);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, lo->font);
  double maxw = 0;
  for (int r = 0; r < hm->rows; r++) {
    cairo_text_extents_t te;
    cairo_text_extents(cr, hm->row_labels[r] ? hm->row_labels[r] : "", &te);
    if (te.x_advance > maxw) maxw = te.x_advance;
  }
  cairo_destroy(cr);
  cairo_surface_destroy(sc);
  lo->left = 20 + 22 + clampd(maxw, 10, 260) + 8;   /* margin + ylabel + labels + gap */
  lo->top = hm->subtitle ? 62 : 46;
  lo->gw = lo->cw * hm->cols;
  lo->gh = lo->ch * hm->rows;
  lo->cbar_x = lo->left + lo->gw + 24;
  lo->width = ceil(lo->cbar_x + 18 + 52 + 26);
  lo->height = ceil(lo->top + (lo->gh > 200 ? lo->gh : 200) + 62);
  double title_w = 40 + 9.0 * (hm->title ? (double)strlen(hm->title) : 0);
  if (lo->width < title_w) lo->width = ceil(title_w);
}

static void draw(cairo_t *cr, const rep_heatmap *hm, const layout *lo) {
  char buf[64];
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
  cairo_set_font_size(cr, 16);
  cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  if (hm->title) text_at(cr, hm->title, lo->width / 2, 14, 0.5, 0);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  if (hm->subtitle) {
    cairo_set_font_size(cr, 12);
    cairo_set_source_rgb(cr, 0.35, 0.35, 0.35);
    text_at(cr, hm->subtitle, lo->width / 2, 36, 0.5, 0);
  }
  /* cells */
  int show_num = lo->cw >= 34 && lo->ch >= 16;
  double nfont = clampd(lo->ch * 0.55, 8, 12);
  for (int r = 0; r < hm->rows; r++) {
    for (int c = 0; c < hm->cols; c++) {
      double v = hm->ratio[(size_t)r * hm->cols + c], rgb[3];
      double x = lo->left + c * lo->cw, y = lo->top + r * lo->ch;
      double t = 0;
      if (isnan(v)) { rgb[0] = rgb[1] = rgb[2] = 0.85; }
      else { t = scale_pos(v); colour_at(t, rgb); }
      cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
      cairo_rectangle(cr, x, y, lo->cw, lo->ch);
      cairo_fill(cr);
      if (show_num && !isnan(v)) {
        cairo_set_font_size(cr, nfont);
        if (fabs(t) > 0.62) cairo_set_source_rgb(cr, 1, 1, 1);
        else cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
        snprintf(buf, sizeof buf, v >= 9.995 ? "%.0f" : "%.2f", v);
        text_at(cr, buf, x + lo->cw / 2, y + lo->ch / 2, 0.5, 0.5);
      }
    }
  }
  /* grid lines between cells when cells are big enough to separate */
  if (lo->cw >= 8 && lo->ch >= 8) {
    cairo_set_source_rgba(cr, 1, 1, 1, 0.6);
    cairo_set_line_width(cr, 1);
    for (int c = 1; c < hm->cols; c++) {
      cairo_move_to(cr, lo->left + c * lo->cw, lo->top);
      cairo_line_to(cr, lo->left + c * lo->cw, lo->top + lo->gh);
    }
    for (int r = 1; r < hm->rows; r++) {
      cairo_move_to(cr, lo->left, lo->top + r * lo->ch);
      cairo_line_to(cr, lo->left + lo->gw, lo->top + r * lo->ch);
    }
    cairo_stroke(cr);
  }
  cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
  cairo_set_line_width(cr, 1);
  cairo_rectangle(cr, lo->left + 0.5, lo->top + 0.5, lo->gw - 1, lo->gh - 1);
  cairo_stroke(cr);
  /* tick labels */
  cairo_set_font_size(cr, lo->font);
  cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  int cstep = nice_step(lo->cw, 26), rstep = nice_step(lo->ch, 15);
  for (int c = 0; c < hm->cols; c += cstep) {
    snprintf(buf, sizeof buf, "%d", c);
    text_at(cr, buf, lo->left + (c + 0.5) * lo->cw, lo->top + lo->gh + 5, 0.5, 0);
  }
  for (int r = 0; r < hm->rows; r += rstep)
    text_at(cr, hm->row_labels[r] ? hm->row_labels[r] : "", lo->left - 6,
            lo->top + (r + 0.5) * lo->ch, 1, 0.5);
  /* axis labels */
  cairo_set_font_size(cr, 14);
  if (hm->xlabel) text_at(cr, hm->xlabel, lo->left + lo->gw / 2, lo->top + lo->gh + 28, 0.5, 0);
  if (hm->ylabel) {
    cairo_save(cr);
    cairo_translate(cr, 18, lo->top + lo->gh / 2);
    cairo_rotate(cr, -M_PI / 2);
    text_at(cr, hm->ylabel, 0, 0, 0.5, 0.5);
    cairo_restore(cr);
  }
  /* colour bar: top = 8 (red), bottom = 1/8 (blue) */
  double bx = lo->cbar_x, by = lo->top, bh = lo->gh > 200 ? lo->gh : 200, bw = 18;
  int steps = 128;
  for (int i = 0; i < steps; i++) {
    double t = 1 - 2.0 * (i + 0.5) / steps, rgb[3];
    colour_at(t, rgb);
    cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
    cairo_rectangle(cr, bx, by + bh * i / steps, bw, bh / steps + 0.6);
    cairo_fill(cr);
  }
  cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
  cairo_rectangle(cr, bx + 0.5, by + 0.5, bw - 1, bh - 1);
  cairo_stroke(cr);
  static const char *const tick_txt[7] = {"\xe2\x89\xa4" "1/8", "1/4", "1/2", "1", "2", "4",
                                          "\xe2\x89\xa5" "8"};
  cairo_set_font_size(cr, 12);
  for (int i = 0; i < 7; i++) {
    double t = (i - 3) / 3.0, y = by + bh * (1 - t) / 2;
    cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
    cairo_move_to(cr, bx + bw, y);
    cairo_line_to(cr, bx + bw + 4, y);
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    text_at(cr, tick_txt[i], bx + bw + 7, y, 0, 0.5);
  }
  if (hm->cbar_label) {
    cairo_save(cr);
    cairo_translate(cr, bx + bw + 62, by + bh / 2);
    cairo_rotate(cr, -M_PI / 2);
    cairo_set_font_size(cr, 13);
    text_at(cr, hm->cbar_label, 0, 0, 0.5, 0.5);
    cairo_restore(cr);
  }
}

int rep_heatmap_write(const rep_heatmap *hm, const char *png_path, const char *svg_path,
                      int *w, int *h, char *err, size_t errlen) {
  if (hm->rows <= 0 || hm->cols <= 0) { snprintf(err, errlen, "empty heatmap"); return -1; }
  layout lo;
  compute_layout(hm, &lo);
  if (w) *w = (int)lo.width;
  if (h) *h = (int)lo.height;
  if (png_path) {
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, (int)lo.width, (int)lo.height);
    cairo_t *cr = cairo_create(s);
    draw(cr, hm, &lo);
    cairo_status_t st = cairo_status(cr);
    cairo_destroy(cr);
    if (st == CAIRO_STATUS_SUCCESS) st = cairo_surface_write_to_png(s, png_path);
    cairo_surface_destroy(s);
    if (st != CAIRO_STATUS_SUCCESS) {
      snprintf(err, errlen, "cannot write %s: %s", png_path, cairo_status_to_string(st));
      return -1;
    }
  }
  if (svg_path) {
    cairo_surface_t *s = cairo_svg_surface_create(svg_path, lo.width, lo.height);
    cairo_t *cr = cairo_create(s);
    draw(cr, hm, &lo);
    cairo_status_t st = cairo_status(cr);
    cairo_destroy(cr);
    cairo_surface_finish(s);
    if (st == CAIRO_STATUS_SUCCESS) st = cairo_surface_status(s);
    cairo_surface_destroy(s);
    if (st != CAIRO_STATUS_SUCCESS) {
      snprintf(err, errlen, "cannot write %s: %s", svg_path, cairo_status_to_string(st));
      return -1;
    }
  }
  return 0;
}

#ifdef __SANITIZE_ADDRESS__
/* fontconfig (loaded by cairo's toy text API) keeps its config/cache allocations until
 * exit by design; tell LeakSanitizer so ASan runs of anything that draws a figure stay
 * clean. Only compiled into -fsanitize=address builds. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libfontconfig\n"; }
#endif
