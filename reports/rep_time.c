/* rep_time.c — the time report (rep_export.h: rep_time_cmd): where the time of a run went,
 * by layer, by op and by expert, and what routing imbalance costs.
 *
 * Source: GPU kernels joined to the engine's scopes (kernel_scope) when the run has them,
 * else the CPU op timers (`ops`). Op rows nest (`experts` contains each `expert e`), so
 * totals by layer and by op leave the per-expert rows out. The imbalance table pairs each
 * expert's time with the tokens routed to it (expert_load, per forward batch): per layer,
 * the balanced ideal is sum_b (sum_e t_be) / E and the expert-parallel critical path is
 * sum_b max_e t_be (one expert per device, every batch waits for its slowest expert);
 * cost of imbalance = critical path - ideal, also as % of the critical path. */
#include "reports/rep_export.h"

#include <errno.h>
#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int fail(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -1;
}

static long long q_int(sqlite3 *db, const char *sql, long long a, long long dflt) {
  sqlite3_stmt *st;
  long long v = dflt;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
    if (sqlite3_bind_parameter_count(st) >= 1) sqlite3_bind_int64(st, 1, a);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) v = sqlite3_column_int64(st, 0);
  }
  sqlite3_finalize(st);
  return v;
}

/* time rows (layer, op, expert, batch, ns) of the run from kernels or ops */
static const char *k_src_kernels =
  "SELECT s.layer, s.op, s.expert, s.batch_id, SUM(k.end - k.start) FROM CUPTI_ACTIVITY_KIND_KERNEL AS k"
  " JOIN kernel_scope AS s ON s.correlationId = k.correlationId AND s.globalPid IS k.globalPid"
  " WHERE s.run_id = ?1 GROUP BY s.layer, s.op, s.expert, s.batch_id";
static const char *k_src_ops =
  "SELECT layer, op, expert, batch_id, SUM(end_ns - start_ns) FROM ops WHERE run_id = ?1"
  " GROUP BY layer, op, expert, batch_id";

typedef struct row { int layer, expert; char op[24]; long long batch, ns; } row;

static int load_rows(sqlite3 *db, const char *sql, long long run, row **out, size_t *n) {
  sqlite3_stmt *st;
  *out = NULL;
  *n = 0;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return -1;
  sqlite3_bind_int64(st, 1, run);
  size_t cap = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    if (*n == cap) {
      cap = cap ? cap * 2 : 1024;
      row *nr = realloc(*out, cap * sizeof *nr);
      if (!nr) { sqlite3_finalize(st); return -1; }
      *out = nr;
    }
    row *r = &(*out)[(*n)++];
    r->layer = sqlite3_column_type(st, 0) == SQLITE_NULL ? -1 : sqlite3_column_int(st, 0);
    const char *op = (const char *)sqlite3_column_text(st, 1);
    snprintf(r->op, sizeof r->op, "%s", op ? op : "?");
    r->expert = sqlite3_column_type(st, 2) == SQLITE_NULL ? -1 : sqlite3_column_int(st, 2);
    r->batch = sqlite3_column_int64(st, 3);
    r->ns = sqlite3_column_int64(st, 4);
  }
  sqlite3_finalize(st);
  return 0;
}

static void hdr(FILE *out, int csv, const char *title, const char *cols_csv, const char *cols_txt) {
  if (csv) fprintf(out, "# %s\n%s\n", title, cols_csv);
  else fprintf(out, "\n%s\n%s\n", title, cols_txt);
}

static int by_op_cmp(const void *a, const void *b) { return strcmp(((const row *)a)->op, ((const row *)b)->op); }

int rep_time_cmd(const char *db_path, long long run_id, int csv, FILE *out, char *err, size_t errlen) {
  struct stat sb;
  if (stat(db_path, &sb) != 0) return fail(err, errlen, "%s: %s", db_path, strerror(errno));
  sqlite3 *db = NULL;
  if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
    fail(err, errlen, "%s: %s", db_path, db ? sqlite3_errmsg(db) : "cannot open");
    sqlite3_close(db);
    return -1;
  }
  int rc = -1;
  row *rows = NULL;
  size_t n = 0;
  long long *tok = NULL, *ens = NULL, *crit = NULL;
  double *ideal = NULL;
  long long run = run_id >= 0 ? q_int(db, "SELECT run_id FROM runs WHERE run_id = ?", run_id, -1)
                              : q_int(db, "SELECT MAX(run_id) FROM runs", 0, -1);
  if (run < 0) { fail(err, errlen, run_id >= 0 ? "%s: no run %lld" : "%s: no runs in this trace", db_path, run_id); goto out; }
  int L = (int)q_int(db, "SELECT n_layers FROM runs WHERE run_id = ?", run, 0);
  int E = (int)q_int(db, "SELECT n_experts FROM runs WHERE run_id = ?", run, 0);
  int kern = q_int(db, "SELECT COUNT(*) FROM kernel_scope WHERE run_id = ?", run, 0) > 0;
  if (load_rows(db, kern ? k_src_kernels : k_src_ops, run, &rows, &n)) {
    fail(err, errlen, "%s: %s", db_path, sqlite3_errmsg(db));
    goto out;
  }
  const char *src = kern ? "GPU kernels (kernel_scope)" : "CPU op timers (ops)";
  if (n == 0) {
    fprintf(out, csv ? "# run %lld: no timings (record level off?)\n" : "run %lld: no op or kernel timings in this trace\n", run);
    rc = 0;
    goto out;
  }
  long long total = 0;
  for (size_t i = 0; i < n; i++) {
    if (rows[i].layer >= L) L = rows[i].layer + 1;
    if (rows[i].expert >= E) E = rows[i].expert + 1;
    if (strcmp(rows[i].op, "expert")) total += rows[i].ns;
  }
  if (!csv) fprintf(out, "run %lld: time from %s, total %.3f ms\n", run, src, total / 1e6);
  else fprintf(out, "# run %lld source %s\n", run, kern ? "kernels" : "ops");

  /* by layer (layer -1 = outside layers: embedding, final norm, lm_head) */
  hdr(out, csv, "time by layer", "layer,ms,share",
      "layer          ms   share\n-----  ----------  ------");
  for (int l = -1; l < L; l++) {
    long long s = 0;
    for (size_t i = 0; i < n; i++) if (rows[i].layer == l && strcmp(rows[i].op, "expert")) s += rows[i].ns;
    if (s == 0 && l < 0) continue;
    char lname[16];
    snprintf(lname, sizeof lname, l < 0 ? "-" : "%d", l);
    if (csv) fprintf(out, "%d,%.6f,%.6f\n", l, s / 1e6, total ? (double)s / total : 0);
    else fprintf(out, "%5s  %10.3f  %5.1f%%\n", lname, s / 1e6, total ? 100.0 * s / total : 0);
  }
  /* by op */
  qsort(rows, n, sizeof *rows, by_op_cmp);
  hdr(out, csv, "time by op", "op,calls,ms,share",
      "op                  calls          ms   share\n----------------  -------  ----------  ------");
  for (size_t i = 0; i < n;) {
    size_t j = i;
    long long s = 0, calls = 0;
    while (j < n && !strcmp(rows[j].op, rows[i].op)) { s += rows[j].ns; calls++; j++; }
    double share = strcmp(rows[i].op, "expert") && total ? (double)s / total : NAN;
    if (csv) fprintf(out, "%s,%lld,%.6f,%.6f\n", rows[i].op, calls, s / 1e6, share);
    else if (share == share) fprintf(out, "%-16s  %7lld  %10.3f  %5.1f%%\n", rows[i].op, calls, s / 1e6, 100 * share);
    else fprintf(out, "%-16s  %7lld  %10.3f  (within experts)\n", rows[i].op, calls, s / 1e6);
    i = j;
  }
  /* by expert: time and tokens per (layer, expert), critical path per layer */
  if (E <= 0 || L <= 0) { rc = 0; goto out; }
  tok = calloc((size_t)L * E, sizeof *tok);
  ens = calloc((size_t)L * E, sizeof *ens);
  crit = calloc((size_t)L, sizeof *crit);
  ideal = calloc((size_t)L, sizeof *ideal);
  if (!tok || !ens || !crit || !ideal) { fail(err, errlen, "out of memory"); goto out; }
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db, "SELECT layer, expert, SUM(tokens) FROM expert_load WHERE run_id = ? GROUP BY layer, expert",
                         -1, &st, NULL) == SQLITE_OK) {
    sqlite3_bind_int64(st, 1, run);
    while (sqlite3_step(st) == SQLITE_ROW) {
      int l = sqlite3_column_int(st, 0), e = sqlite3_column_int(st, 1);
      if (l >= 0 && l < L && e >= 0 && e < E) tok[(size_t)l * E + e] = sqlite3_column_int64(st, 2);
    }
  }
  sqlite3_finalize(st);
  int any = 0;
  for (size_t i = 0; i < n;) {   /* rows are sorted by op; walk the "expert" group per (layer, batch) */
    if (strcmp(rows[i].op, "expert") || rows[i].layer < 0 || rows[i].expert < 0) { i++; continue; }
    ens[(size_t)rows[i].layer * E + rows[i].expert] += rows[i].ns;
    any = 1;
    i++;
  }
  if (!any) {
    if (!csv) fprintf(out, "\n(no per-expert timings: record at level full or with batches of >= 16 tokens)\n");
    rc = 0;
    goto out;
  }
  /* critical path and ideal per layer need per-batch maxima: one pass over (layer, batch) */
  for (int l = 0; l < L; l++) {
    long long *bmax = NULL, *bsum = NULL, *bid = NULL;
    size_t nb = 0, cap = 0;
    for (size_t i = 0; i < n; i++) {
      if (strcmp(rows[i].op, "expert") || rows[i].layer != l) continue;
      size_t k = 0;
      while (k < nb && bid[k] != rows[i].batch) k++;
      if (k == nb) {
        if (nb == cap) {
          cap = cap ? cap * 2 : 64;
          long long *a = realloc(bmax, cap * sizeof *a), *b = a ? realloc(bsum, cap * sizeof *b) : NULL,
                    *c = b ? realloc(bid, cap * sizeof *c) : NULL;
          if (a) bmax = a;
          if (b) bsum = b;
          if (c) bid = c;
          if (!a || !b || !c) { free(bmax); free(bsum); free(bid); fail(err, errlen, "out of memory"); goto out; }
        }
        bid[nb] = rows[i].batch; bmax[nb] = 0; bsum[nb] = 0; nb++;
      }
      if (rows[i].ns > bmax[k]) bmax[k] = rows[i].ns;
      bsum[k] += rows[i].ns;
    }
    for (size_t k = 0; k < nb; k++) { crit[l] += bmax[k]; ideal[l] += (double)bsum[k] / E; }
    free(bmax); free(bsum); free(bid);
  }
  hdr(out, csv, "time per expert vs tokens routed", "layer,expert,tokens,token_share,ms,time_share,us_per_token",
      "layer  expert    tokens  tok%        ms   time%  us/token\n-----  ------  --------  -----  --------  ------  --------");
  for (int l = 0; l < L; l++) {
    long long tt = 0, ts = 0;
    for (int e = 0; e < E; e++) { tt += tok[(size_t)l * E + e]; ts += ens[(size_t)l * E + e]; }
    if (ts == 0) continue;
    for (int e = 0; e < E; e++) {
      long long t = tok[(size_t)l * E + e], s = ens[(size_t)l * E + e];
      double upt = t ? s / 1e3 / (double)t : NAN;
      if (csv) fprintf(out, "%d,%d,%lld,%.6f,%.6f,%.6f,%.6f\n", l, e, t, tt ? (double)t / tt : 0, s / 1e6,
                       ts ? (double)s / ts : 0, upt);
      else fprintf(out, "%5d  %6d  %8lld  %4.1f%%  %8.3f  %5.1f%%  %8.3f\n", l, e, t, tt ? 100.0 * t / tt : 0, s / 1e6,
                   ts ? 100.0 * s / ts : 0, upt);
    }
  }
  hdr(out, csv, "cost of imbalance (expert-parallel: one expert per device)",
      "layer,expert_ms,ideal_ms,critical_ms,cost_ms,cost_share",
      "layer  expert_ms   ideal_ms  critical_ms    cost_ms   cost%\n-----  ---------  ---------  -----------  ---------  ------");
  for (int l = 0; l < L; l++) {
    long long ts = 0;
    for (int e = 0; e < E; e++) ts += ens[(size_t)l * E + e];
    if (ts == 0) continue;
    double cost = crit[l] - ideal[l];
    if (csv) fprintf(out, "%d,%.6f,%.6f,%.6f,%.6f,%.6f\n", l, ts / 1e6, ideal[l] / 1e6, crit[l] / 1e6, cost / 1e6,
                     crit[l] ? cost / crit[l] : 0);
    else fprintf(out, "%5d  %9.3f  %9.3f  %11.3f  %9.3f  %5.1f%%\n", l, ts / 1e6, ideal[l] / 1e6, crit[l] / 1e6,
                 cost / 1e6, crit[l] ? 100 * cost / crit[l] : 0);
  }
  rc = 0;
out:
  free(rows); free(tok); free(ens); free(crit); free(ideal);
  sqlite3_close(db);
  return rc;
}
