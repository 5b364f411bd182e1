/* rep_internal.h — helpers shared inside reports/ (not part of the CLI contract):
 * number formatting with '-' for unavailable values, the balance table in Markdown and
 * HTML, and the cairo heatmap renderer used by every load/preference figure. */
#ifndef MOESCOPE_REP_INTERNAL_H
#define MOESCOPE_REP_INTERNAL_H

#include <stddef.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "analysis/ana_balance.h"
#include "analysis/ana_struct.h"

/* snprintf(fmt, v), or "-" when v is NaN/inf. Returns buf. */
const char *rep_num(char *buf, size_t n, const char *fmt, double v);

/* The balance table (one row per MoE layer + an "all" row): columns rep_balance_heads. */
#define REP_NCOLS 14
extern const char *const rep_balance_heads[REP_NCOLS];
/* Cells of row li (< 0 = overall), '-' when unavailable. */
void rep_balance_row(const ana_summary *s, int li, char cells[][32]);
void rep_stats_csv(const ana_summary *s, FILE *out);
void rep_balance_table_text(FILE *f, const ana_summary *s);
void rep_balance_table_md(FILE *f, const ana_summary *s);
void rep_balance_table_html(FILE *f, const ana_summary *s);
/* Writes s with &<>"' escaped. */
void rep_html_escape(FILE *f, const char *s);

/* A rows x cols heatmap of ratios to the uniform share (1 = balanced), drawn with a
 * diverging log colour map centred at 1 (blue < 1 < red, capped to 1/8..8), labelled
 * colour bar, title and axis labels; numbers in cells when cells are large enough. */
typedef struct rep_heatmap {
  const char *title, *subtitle, *xlabel, *ylabel, *cbar_label;
  int rows, cols;
  const char *const *row_labels;   /* [rows] */
  const double *ratio;             /* [rows * cols]; NaN = no data (grey) */
} rep_heatmap;

/* Writes png_path and/or svg_path (either may be NULL); *w, *h receive the image size in
 * pixels (may be NULL). 0, or -1 with a message. */
int rep_heatmap_write(const rep_heatmap *hm, const char *png_path, const char *svg_path,
                      int *w, int *h, char *err, size_t errlen);

/* A table of strings, rendered identically to CSV, Markdown, HTML and LaTeX (rep_table.c). */
typedef struct rep_table {
  char name[48];            /* file stem of tables/<name>.csv and the LaTeX label */
  char caption[256];
  int rows, cols;
  char **head;              /* [cols] */
  char **cell;              /* [rows * cols]; NULL = "" */
} rep_table;
int rep_table_init(rep_table *t, const char *name, const char *caption, int rows, int cols);
/* Sets cell (r, c), r = -1 for the header. */
void rep_table_set(rep_table *t, int r, int c, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void rep_table_free(rep_table *t);
int rep_table_csv(const rep_table *t, const char *path, char *err, size_t errlen);
void rep_table_md(FILE *f, const rep_table *t);
void rep_table_html(FILE *f, const rep_table *t);
void rep_table_tex(FILE *f, const rep_table *t);   /* table float, booktabs, one row per data row */
void rep_tex_escape(FILE *f, const char *s);

/* The time tables of `export --time` (rep_time.c) for the report: appends time_layer,
 * time_op and, when per-expert timings exist, time_expert and time_imbalance to tab
 * (*ntab advanced; nothing when the run has no timings or fewer than 4 slots are left
 * below max). 0, or -1 with a message. */
int rep_time_tables(sqlite3 *db, const char *db_path, long long run_id, rep_table *tab, int max, int *ntab, char *err,
                    size_t errlen);

/* Structure statistics (rep_structure.c). */
#define REP_TOPTOK 5       /* top tokens shown per expert */
/* Co-activation lift of experts a, b in layer index li (ana_struct.h), NaN when undefined
 * (a == b, k < 2, unused expert); rep_max_lift = its maximum over pairs. */
double rep_coact_lift(const ana_struct *st, int li, int a, int b);
double rep_max_lift(const ana_struct *st, int li);
void rep_structure_text(FILE *out, ana_db *d, const ana_trace *t, const ana_struct *st);
cJSON *rep_structure_json(ana_db *d, const ana_trace *t, const ana_struct *st);

/* Figure formats. */
#define REP_FMT_PNG 1u
#define REP_FMT_SVG 2u
#define REP_FMT_PDF 4u
#include <cairo.h>
/* Draws arg with draw_fn on a width x height surface into stem.png/.svg/.pdf (formats). */
int rep_render(double width, double height, void (*draw_fn)(cairo_t *, const void *), const void *arg,
               const char *stem, unsigned formats, char *err, size_t errlen);
/* Between begin and end, PNGs are encoded by a background thread (rep_heatmap.c); end
 * waits for them and returns -1 with the first write error. */
void rep_png_async_begin(void);
int rep_png_async_end(char *err, size_t errlen);
/* The heatmap into stem.{png,svg,pdf} per formats. */
int rep_heatmap_render(const rep_heatmap *hm, const char *stem, unsigned formats, int *w, int *h,
                       char *err, size_t errlen);

/* Line chart: n_series lines over n_x points (x tick labels), y in [ymin, ymax] (NaN =
 * from the data); NaN values leave gaps; legend with the series names. bars = 1 draws
 * grouped bars instead of lines. */
typedef struct rep_chart {
  const char *title, *subtitle, *xlabel, *ylabel;
  int n_series, n_x, bars;
  const char *const *series;       /* [n_series] */
  const char *const *xticks;       /* [n_x] */
  const double *y;                 /* [n_series * n_x] */
  double ymin, ymax;
} rep_chart;
int rep_chart_render(const rep_chart *c, const char *stem, unsigned formats, char *err, size_t errlen);

/* Text table figure: rows x cols cells (UTF-8 strings), a header row, column widths
 * proportional to content (cells truncated to 28 bytes on a UTF-8 boundary). */
typedef struct rep_texttab {
  const char *title, *subtitle;
  int rows, cols;
  const char *const *head;         /* [cols] */
  const char *const *cell;         /* [rows * cols] */
} rep_texttab;
int rep_texttab_render(const rep_texttab *t, const char *stem, unsigned formats, char *err, size_t errlen);

/* The report's figures (rep_figs.c): file stems (no extension) and captions. */
typedef struct rep_figure { char stem[64]; char caption[200]; } rep_figure;
typedef struct rep_figs { rep_figure *v; int n, cap; } rep_figs;
int rep_figs_add(rep_figs *f, const char *stem, const char *caption);
struct ana_diag;
/* Draws every figure of a report into outdir in formats fmt; note says what was skipped. */
int rep_figures(ana_db *d, const struct ana_diag *dg, const char *outdir, unsigned fmt, rep_figs *fg,
                char *note, size_t notelen, char *err, size_t errlen);

/* Diagnosis text pieces shared by diagnose and report (rep_diag.c). */
struct ana_diag;
struct ana_diag_layer;
struct ana_diag_thr;
void rep_diag_thresholds_text(FILE *f, const struct ana_diag_thr *t);
void rep_diag_evidence(FILE *f, ana_db *d, const struct ana_diag *dg, const struct ana_diag_layer *g,
                       const char *indent);

#endif
