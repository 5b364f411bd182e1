/* rep_export.h — `moescope export`: a trace DB as a Chrome/Perfetto trace-event JSON file
 * (ui.perfetto.dev, chrome://tracing) and as one CSV file per table, plus the time
 * report (rep_time.c): op/kernel time by layer, op and expert, and the cost of imbalance.
 * All return 0, or -1 with one error line in err. */
#ifndef MOESCOPE_REP_EXPORT_H
#define MOESCOPE_REP_EXPORT_H

#include <stddef.h>
#include <stdio.h>

typedef struct rep_export_counts {
  long long ops, kernels, nvtx, counters, metadata;
} rep_export_counts;

/* Perfetto JSON for run_id (< 0 = latest): engine ops as "X" events on the run's thread
 * track (pid = run_id, ts/dur in microseconds), NVTX ranges of the run on their own track,
 * GPU kernels on "GPU <device>" processes with one track per stream (args: correlationId,
 * layer, op, expert from kernel_scope), and per (batch, layer) a "C" counter event with the
 * tokens each expert received. counts (may be NULL) receives the number of each. */
int rep_export_perfetto(const char *db_path, long long run_id, const char *out_path, rep_export_counts *counts,
                        char *err, size_t errlen);

/* Every table of the DB as dir/<table>.csv (created with mkdir -p): header row, RFC 4180
 * quoting, NULL = empty field, BLOBs as hex. *n_tables (may be NULL) = files written. */
int rep_export_csv(const char *db_path, const char *dir, int *n_tables, char *err, size_t errlen);

/* Time report of run_id (< 0 = latest): time by layer, by op, by expert, and expert time
 * versus tokens routed with the cost of imbalance (expert-parallel critical path over the
 * balanced ideal). From GPU kernels (kernel_scope) when the run has them, else from the
 * CPU op timers (ops). csv = 1: the same tables as CSV sections. */
int rep_time_cmd(const char *db_path, long long run_id, int csv, FILE *out, char *err, size_t errlen);

#endif
