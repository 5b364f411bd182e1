/* rep_internal.h — helpers shared inside reports/ (not part of the CLI contract):
 * number formatting with '-' for unavailable values, the balance table in Markdown and
 * HTML, and the cairo heatmap renderer used by every load/preference figure. */
#ifndef MOESCOPE_REP_INTERNAL_H
#define MOESCOPE_REP_INTERNAL_H

#include <stddef.h>
#include <stdio.h>

#include "analysis/ana_balance.h"

/* snprintf(fmt, v), or "-" when v is NaN/inf. Returns buf. */
const char *rep_num(char *buf, size_t n, const char *fmt, double v);

/* The balance table (one row per MoE layer + an "all" row). */
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

#endif
