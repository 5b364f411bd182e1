/* rep_info.c — `moescope info TRACE.db` (rep_commands.h: rep_info_cmd): what a trace DB
 * holds, without computing any metric. The meta table (schema version, moescope version,
 * creation time, host), then one block per run: status and times, model (path, family,
 * sha256 prefix, layers/experts/top-k/shared), policy, record level, device, dtype,
 * threads, and the row counts of every table that has the run's rows (sequences, tokens,
 * routing, router_probs, expert_load, ops, kernel_scope, logits_sample, router_bias) plus
 * the labels used. Counts come from COUNT(*) per run; tables absent from an older DB are
 * skipped. Reads through analysis/ana_db.h (read-only, validated). */
#include "reports/rep_commands.h"

#include "analysis/ana_db.h"

#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

static int table_exists(sqlite3 *db, const char *t) {
  sqlite3_stmt *st = NULL;
  int ok = sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type IN ('table','view') AND name = ?", -1, &st,
                              NULL) == SQLITE_OK;
  if (ok) sqlite3_bind_text(st, 1, t, -1, SQLITE_STATIC);
  int found = ok && sqlite3_step(st) == SQLITE_ROW;
  sqlite3_finalize(st);
  return found;
}

static long long count_rows(sqlite3 *db, const char *table, long long run_id) {
  char sql[256];
  snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM \"%s\" WHERE run_id = ?", table);
  sqlite3_stmt *st = NULL;
  long long n = -1;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
    sqlite3_bind_int64(st, 1, run_id);
    if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int64(st, 0);
  }
  sqlite3_finalize(st);
  return n;
}

static void print_labels(sqlite3 *db, long long run_id, FILE *out) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db,
                         "SELECT COALESCE(NULLIF(label, ''), '(unlabelled)'), COUNT(*), SUM(n_tokens) FROM sequences "
                         "WHERE run_id = ? GROUP BY 1 ORDER BY 1", -1, &st, NULL) != SQLITE_OK)
    return;
  sqlite3_bind_int64(st, 1, run_id);
  int first = 1;
  while (sqlite3_step(st) == SQLITE_ROW) {
    fprintf(out, "%s%s (%lld seq, %lld tok)", first ? "  labels     " : ", ", (const char *)sqlite3_column_text(st, 0),
            sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2));
    first = 0;
  }
  if (!first) fputc('\n', out);
  sqlite3_finalize(st);
}

int rep_info_cmd(const char *db_path, FILE *out, char *err, size_t errlen) {
  ana_db *d = NULL;
  if (ana_db_open(&d, db_path, err, errlen)) return -1;
  fprintf(out, "trace        %s (schema %d)\n", db_path, d->user_version);
  sqlite3_stmt *st = NULL;
  if (table_exists(d->db, "meta") &&
      sqlite3_prepare_v2(d->db, "SELECT key, value FROM meta ORDER BY key", -1, &st, NULL) == SQLITE_OK) {
    while (sqlite3_step(st) == SQLITE_ROW)
      fprintf(out, "%-12s %s\n", (const char *)sqlite3_column_text(st, 0),
              sqlite3_column_text(st, 1) ? (const char *)sqlite3_column_text(st, 1) : "");
  }
  sqlite3_finalize(st);
  st = NULL;
  if (sqlite3_prepare_v2(d->db, "SELECT run_id FROM runs ORDER BY run_id", -1, &st, NULL) != SQLITE_OK) {
    snprintf(err, errlen, "%s: cannot list runs: %s", db_path, sqlite3_errmsg(d->db));
    ana_db_close(d);
    return -1;
  }
  static const char *const tables[] = {"sequences", "tokens", "routing", "router_probs", "expert_load", "ops",
                                       "kernel_scope", "logits_sample", "router_bias"};
  int n_runs = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    ana_run r;
    if (ana_run_get(d, sqlite3_column_int64(st, 0), &r, err, errlen)) { sqlite3_finalize(st); ana_db_close(d); return -1; }
    n_runs++;
    fprintf(out, "\nrun %lld     %s, %s .. %s\n", r.run_id, r.status[0] ? r.status : "?", r.started_at,
            r.finished_at[0] ? r.finished_at : "(not finished)");
    fprintf(out, "  model      %s (%s, sha256 %.12s), %d layers, %d experts top-%d", r.model_path, r.family,
            r.model_sha256, r.n_layers, r.n_experts, r.top_k);
    if (r.n_shared_experts) fprintf(out, " + %d shared", r.n_shared_experts);
    fprintf(out, "\n  policy     %s\n  recorded   level %s on %s, %s weights, %d threads\n", r.policy, r.record_level,
            r.device, r.dtype, r.threads);
    fprintf(out, "  rows      ");
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
      if (!table_exists(d->db, tables[i])) continue;
      long long n = count_rows(d->db, tables[i], r.run_id);
      if (n > 0) fprintf(out, " %s %lld", tables[i], n);
    }
    fputc('\n', out);
    print_labels(d->db, r.run_id, out);
  }
  sqlite3_finalize(st);
  if (!n_runs) fprintf(out, "\n(no runs)\n");
  ana_db_close(d);
  return 0;
}
