/* ana_db.h — read-only access to a moescope trace DB (DESIGN.md schema v1) for analysis.
 *
 * analysis/ reads the trace database and nothing else (no engine headers): this file
 * opens it read-only, checks that it is a moescope DB of a supported schema version,
 * picks a run (explicit id or the latest), and loads the aggregated routing data that
 * the metrics need. Aggregation is done in SQL (SUM/COUNT ... GROUP BY); C only receives
 * one row per (layer, expert) or (layer, label, expert).
 *
 * Errors: every function returns 0 on success or -1 with one clear line in err
 * (no trailing newline). ana_label_counts also returns 1 for "no routing rows".
 */
#ifndef MOESCOPE_ANA_DB_H
#define MOESCOPE_ANA_DB_H

#include <stddef.h>
#include <sqlite3.h>

#define ANA_SCHEMA_VERSION 1   /* the PRAGMA user_version this build understands */

typedef struct ana_db {
  sqlite3 *db;
  int user_version;
  char path[1024];
} ana_db;

/* One `runs` row. Missing text fields are "" and missing integers 0. */
typedef struct ana_run {
  long long run_id;
  char started_at[64], finished_at[64], status[32], model_path[512], model_sha256[80];
  char family[64], policy[128], record_level[16], device[32], dtype[16];
  char command_line[1024];
  int n_layers, n_experts, top_k, n_shared_experts, threads;
} ana_run;

/* Per-layer x expert load of a run, from expert_load (present at every record level).
 * Only MoE layers that have rows appear; layer_ids[i] is the model layer of row i. */
typedef struct ana_load {
  int n_layers;            /* rows (MoE layers with data) */
  int n_experts;           /* columns: max(runs.n_experts, max expert id + 1) */
  int *layer_ids;          /* [n_layers] */
  long long *tokens;       /* [n_layers * n_experts] token->expert assignments (slots) */
  double *weight_sum;      /* [n_layers * n_experts] summed gate weights */
  long long *dropped;      /* [n_layers * n_experts] tokens dropped by capacity */
} ana_load;

/* Per-label x expert routing counts, for every layer at once (one SQL scan). */
typedef struct ana_labels {
  int n_layers, n_labels, n_experts;
  int *layer_ids;          /* [n_layers] */
  char **labels;           /* [n_labels]; NULL labels appear as "(unlabelled)" */
  long long *counts;       /* [n_layers][n_labels][n_experts] routing slots */
  int has_real_label;      /* 1 when at least one non-NULL, non-empty label exists */
} ana_labels;

/* Opens path read-only and validates it. Errors name the path: missing file, not a
 * SQLite DB, not a moescope trace DB (no runs table), unsupported user_version. */
int ana_db_open(ana_db **out, const char *path, char *err, size_t errlen);
void ana_db_close(ana_db *d);

/* Fills *run for run_id, or for the latest run (largest run_id) when run_id < 0.
 * Error when the DB has no runs or the id is unknown (lists the valid range). */
int ana_run_get(ana_db *d, long long run_id, ana_run *run, char *err, size_t errlen);

/* Loads expert_load aggregated over batches (SQL SUM GROUP BY layer, expert).
 * Error when the run has no expert_load rows. Free with ana_load_free. */
int ana_load_get(ana_db *d, const ana_run *run, ana_load *out, char *err, size_t errlen);
void ana_load_free(ana_load *ld);

/* Loads routing joined with sequences.label, counted per (layer, label, expert).
 * layer >= 0 restricts to that model layer. Returns 1 (with a message in err, *out
 * empty) when the run has no routing rows (record level `counts`). Free with
 * ana_labels_free. */
int ana_label_counts(ana_db *d, const ana_run *run, int layer, ana_labels *out,
                     char *err, size_t errlen);
void ana_labels_free(ana_labels *lb);

/* 1 when the run has at least one row in table (routing, router_probs, ...), else 0. */
int ana_run_has_rows(ana_db *d, long long run_id, const char *table);

#endif
