/* rep_report_int.h — what rep_report.c (tables, orchestration) shares with rep_docs.c
 * (the report.md / index.html / report.tex writers): the document context and the run /
 * diagnosis text helpers. Internal to reports/. */
#ifndef MOESCOPE_REP_REPORT_INT_H
#define MOESCOPE_REP_REPORT_INT_H

#include "analysis/ana_diag.h"
#include "reports/rep_internal.h"

#define REP_MAX_TABLES 12

typedef struct rep_doc {
  ana_db *d;
  const ana_diag *dg;
  const rep_figs *fg;
  const rep_table *tab;    /* [ntab]: run, diagnosis, balance, then structure/labels/top_tokens and time_* when available */
  int ntab;
  const char *note;        /* what was skipped, "" when nothing */
  unsigned fmt;            /* REP_FMT_* of the figures */
} rep_doc;

int rep_mkdir_p(const char *path, char *err, size_t errlen);
int rep_put_base64_file(FILE *f, const char *path);
void rep_run_rows(const ana_summary *s, const char *names[], char vals[][1100], int *n);
extern const char rep_conventions[];
void rep_diag_text(FILE *f, ana_db *d, const ana_diag *dg);

int rep_write_md(const char *outdir, const rep_doc *doc, char *err, size_t errlen);
int rep_write_html(const char *outdir, const rep_doc *doc, char *err, size_t errlen);
int rep_write_tex(const char *outdir, const rep_doc *doc, char *err, size_t errlen);

#endif
