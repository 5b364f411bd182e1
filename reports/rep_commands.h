/* rep_commands.h — the report-side entry points that cli/ calls for `moescope stats` and
 * `moescope report`. They open the trace DB read-only (analysis/ana_db.h), compute the
 * balance summary (analysis/ana_balance.h) and write text, JSON, figures and documents.
 * Both return 0, or -1 with one error line in err (no trailing newline, no exit()). */
#ifndef MOESCOPE_REP_COMMANDS_H
#define MOESCOPE_REP_COMMANDS_H

#include <stddef.h>
#include <stdio.h>

/* Per-layer balance table (layer, slots, CV, MaxVio, H_norm, Gini, min/max, dead,
 * aux_loss, z_loss; '-' when unavailable) plus an overall row, for run_id (< 0 = latest).
 * json = 1 prints one JSON object instead: run info, metric definitions, per-layer metrics,
 * per-layer per-expert counts, overall row. */
#define REP_STATS_CSV 2        /* json = 2: the balance table as CSV */
#define REP_STATS_STRUCTURE 4  /* | 4 (text mode): add the structure table (one routing scan) */
int rep_stats_cmd(const char *db_path, long long run_id /* <0 = latest */, int json, FILE *out,
                  char *err, size_t errlen);

/* `moescope info TRACE.db` (reports/rep_info.c): meta table, then per run the model, policy,
 * record level, device, row counts per table and labels. */
int rep_info_cmd(const char *db_path, FILE *out, char *err, size_t errlen);

/* Writes a report folder (created with mkdir -p): figures (see reports/rep_figs.c, and the
 * gpu_timeline of reports/rep_timeline.h) as PNG,
 * SVG and PDF, report.md, report.tex, a self-contained index.html (figures embedded as
 * base64 PNG) and tables/<name>.csv. */
int rep_report_cmd(const char *db_path, long long run_id, const char *outdir, char *err,
                   size_t errlen);

/* Documents of a report (--format html,md,tex,pdf): html = index.html, md = report.md (both
 * with PNG + SVG figures), tex = report.tex (booktabs tables, PDF figures), pdf = PDF figures.
 * tables/<name>.csv are always written. rep_report_cmd = all of them. */
#define REP_DOC_HTML 1u
#define REP_DOC_MD 2u
#define REP_DOC_TEX 4u
#define REP_DOC_PDF 8u
#define REP_DOC_ALL 15u
int rep_report_cmd_fmt(const char *db_path, long long run_id, const char *outdir, unsigned docs, char *err,
                       size_t errlen);
/* All options of `moescope report`: docs (REP_DOC_*, 0 = all) and the window of the timeline
 * figure (reports/rep_timeline.h): tl_first = first batch (-1 = the run's first), tl_batches =
 * number of batches (0 = all). rep_report_opts_default: all documents, the first 4 batches. */
typedef struct rep_report_opts {
  unsigned docs;
  long long tl_first;
  int tl_batches;
} rep_report_opts;
void rep_report_opts_default(rep_report_opts *o);
int rep_report_cmd_opts(const char *db_path, long long run_id, const char *outdir, const rep_report_opts *o, char *err,
                        size_t errlen);

/* "html,md,tex,pdf" (any subset, or "all") -> REP_DOC_* bits; 0 with a message when invalid. */
unsigned rep_parse_formats(const char *s, char *err, size_t errlen);

/* `moescope diagnose`: per-layer verdicts with evidence (text, or JSON when json = 1) for
 * run_id (< 0 = latest) with thresholds thr (NULL = defaults, see analysis/ana_diag.h).
 * *findings receives the number of layers with a finding (exit status 3 when > 0). */
struct ana_diag_thr;
int rep_diagnose_cmd(const char *db_path, long long run_id, const struct ana_diag_thr *thr, int json, FILE *out,
                     int *findings, char *err, size_t errlen);

#endif
