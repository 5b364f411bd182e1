/* rep_heatmap.c — the cairo heatmap renderer (PNG and SVG) behind every layer x expert
 * and label x expert figure: a diverging log2 colour map centred at 1 (the uniform share),
 * capped to 1/8..8, with title, axis labels, tick labels that thin out as E and L grow,
 * in-cell numbers when cells are big enough, and a labelled colour bar; plus rep_render(),
 * the one place that turns a draw callback into PNG / SVG / PDF files. Uses only the
 * cairo "toy" text API so it needs no pango/fontconfig setup beyond cairo's defaults. */
#include "reports/rep_internal.h"

#include <cairo.h>
#include <cairo-pdf.h>
#include <cairo-svg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
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
  double subw = 0, titw = 0;
  cairo_text_extents_t te;
  if (hm->subtitle) { cairo_set_font_size(cr, 12); cairo_text_extents(cr, hm->subtitle, &te); subw = te.x_advance; }
  if (hm->title) {
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
    cairo_set_font_size(cr, 16);
    cairo_text_extents(cr, hm->title, &te);
    titw = te.x_advance;
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
  double title_w = 30 + (titw > subw ? titw : subw);
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

/* ---- asynchronous PNG encoding -------------------------------------------------------
 * Drawing a figure is cheap; deflating its pixels into a PNG is most of the cost of a report
 * (about 30 ms a figure). Between rep_png_async_begin() and rep_png_async_end(), rep_render
 * hands each drawn image surface to one encoder thread (at most PQ_MAX queued) and goes on
 * drawing, so the encoding overlaps everything else. Not reentrant: one report at a time
 * per process (the CLI runs one). Without begin, PNGs are written synchronously. */
#include <pthread.h>

enum { PQ_MAX = 8 };
typedef struct png_job { cairo_surface_t *s; char path[4200]; struct png_job *next; } png_job;
static pthread_mutex_t pq_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pq_cv = PTHREAD_COND_INITIALIZER;
static png_job *pq_head, *pq_tail;
static int pq_on, pq_stop, pq_pending;   /* pending = queued + being written */
static pthread_t pq_th;
static char pq_err[512];

static void *pq_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&pq_mu);
  for (;;) {
    while (!pq_head && !pq_stop) pthread_cond_wait(&pq_cv, &pq_mu);
    if (!pq_head) break;
    png_job *j = pq_head;
    pq_head = j->next;
    if (!pq_head) pq_tail = NULL;
    pthread_mutex_unlock(&pq_mu);
    cairo_status_t st = cairo_surface_write_to_png(j->s, j->path);
    cairo_surface_destroy(j->s);
    pthread_mutex_lock(&pq_mu);
    if (st != CAIRO_STATUS_SUCCESS && !pq_err[0])
      snprintf(pq_err, sizeof pq_err, "cannot write %.400s: %s", j->path, cairo_status_to_string(st));
    free(j);
    pq_pending--;
    pthread_cond_broadcast(&pq_cv);
  }
  pthread_mutex_unlock(&pq_mu);
  return NULL;
}

void rep_png_async_begin(void) {
  pthread_mutex_lock(&pq_mu);
  if (!pq_on) {
    pq_stop = 0; pq_pending = 0; pq_err[0] = 0;
    pq_on = pthread_create(&pq_th, NULL, pq_main, NULL) == 0;
  }
  pthread_mutex_unlock(&pq_mu);
}

int rep_png_async_end(char *err, size_t errlen) {
  pthread_mutex_lock(&pq_mu);
  if (!pq_on) { pthread_mutex_unlock(&pq_mu); return 0; }
  pq_stop = 1;
  pthread_cond_broadcast(&pq_cv);
  pthread_mutex_unlock(&pq_mu);
  pthread_join(pq_th, NULL);
  pthread_mutex_lock(&pq_mu);
  pq_on = 0;
  int rc = 0;
  if (pq_err[0]) { if (err) snprintf(err, errlen, "%s", pq_err); rc = -1; }
  pthread_mutex_unlock(&pq_mu);
  return rc;
}

/* Queues s (ownership passes) when the encoder runs; returns 1 when queued. */
static int pq_push(cairo_surface_t *s, const char *path) {
  pthread_mutex_lock(&pq_mu);
  if (!pq_on) { pthread_mutex_unlock(&pq_mu); return 0; }
  png_job *j = malloc(sizeof *j);
  if (!j) { pthread_mutex_unlock(&pq_mu); return 0; }
  while (pq_pending >= PQ_MAX) pthread_cond_wait(&pq_cv, &pq_mu);
  j->s = s; j->next = NULL;
  snprintf(j->path, sizeof j->path, "%s", path);
  if (pq_tail) pq_tail->next = j; else pq_head = j;
  pq_tail = j;
  pq_pending++;
  pthread_cond_broadcast(&pq_cv);
  pthread_mutex_unlock(&pq_mu);
  return 1;
}

int rep_render(double width, double height, void (*draw_fn)(cairo_t *, const void *), const void *arg,
               const char *stem, unsigned formats, char *err, size_t errlen) {
  char path[4200];
  if (formats & REP_FMT_PNG) {
    snprintf(path, sizeof path, "%s.png", stem);
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, (int)width, (int)height);
    cairo_t *cr = cairo_create(s);
    draw_fn(cr, arg);
    cairo_status_t st = cairo_status(cr);
    cairo_destroy(cr);
    if (st == CAIRO_STATUS_SUCCESS && pq_push(s, path)) s = NULL;   /* the encoder thread owns it */
    else if (st == CAIRO_STATUS_SUCCESS) st = cairo_surface_write_to_png(s, path);
    if (s) cairo_surface_destroy(s);
    if (st != CAIRO_STATUS_SUCCESS) {
      snprintf(err, errlen, "cannot write %s: %s", path, cairo_status_to_string(st));
      return -1;
    }
  }
  for (int v = 0; v < 2; v++) {   /* vector formats: SVG, PDF (points = pixels) */
    if (!(formats & (v ? REP_FMT_PDF : REP_FMT_SVG))) continue;
    snprintf(path, sizeof path, "%s.%s", stem, v ? "pdf" : "svg");
    cairo_surface_t *s = v ? cairo_pdf_surface_create(path, width, height) : cairo_svg_surface_create(path, width, height);
    cairo_t *cr = cairo_create(s);
    draw_fn(cr, arg);
    cairo_status_t st = cairo_status(cr);
    cairo_destroy(cr);
    cairo_surface_finish(s);
    if (st == CAIRO_STATUS_SUCCESS) st = cairo_surface_status(s);
    cairo_surface_destroy(s);
    if (st != CAIRO_STATUS_SUCCESS) {
      snprintf(err, errlen, "cannot write %s: %s", path, cairo_status_to_string(st));
      return -1;
    }
  }
  return 0;
}

typedef struct hm_arg { const rep_heatmap *hm; layout lo; } hm_arg;
static void hm_draw(cairo_t *cr, const void *p) { const hm_arg *a = p; draw(cr, a->hm, &a->lo); }

int rep_heatmap_render(const rep_heatmap *hm, const char *stem, unsigned formats, int *w, int *h,
                       char *err, size_t errlen) {
  if (hm->rows <= 0 || hm->cols <= 0) { snprintf(err, errlen, "empty heatmap"); return -1; }
  hm_arg a;
  a.hm = hm;
  compute_layout(hm, &a.lo);
  if (w) *w = (int)a.lo.width;
  if (h) *h = (int)a.lo.height;
  return rep_render(a.lo.width, a.lo.height, hm_draw, &a, stem, formats, err, errlen);
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
