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
int rep_stats_cmd(const char *db_path, long long run_id /* <0 = latest */, int json, FILE *out,
                  char *err, size_t errlen);

/* Writes a report folder (created with mkdir -p): heatmap_load.{png,svg},
 * label_pref_layer<L>.{png,svg} per MoE layer when routing rows and labels exist,
 * report.md and a self-contained index.html (figures embedded as base64 PNG). */
int rep_report_cmd(const char *db_path, long long run_id, const char *outdir, char *err,
                   size_t errlen);

#endif
