/* rep_time.c — the time report (rep_export.h: rep_time_cmd): where the time of a run went,
 * by layer, by op and by expert, and what routing imbalance costs.
 *
 * Source: GPU kernels joined to the engine's scopes (kernel_scope) when the run has them,
 * else the CPU op timers (`ops`). Op rows nest (`experts` contains each `expert e`), so
 * totals by layer and by op leave the per-expert rows out. The imbalance table pairs each
 * expert's time with the tokens routed to it (expert_load, per forward batch): per layer,
 * the balanced ideal is sum_b (sum_e t_be) / E and the expert-parallel critical path is
 * sum_b max_e t_be (one expert per device, every batch waits for its slowest expert);
 * cost of imbalance = critical path - ideal, also as % of the critical path.
 *
 * The numbers are computed once (time_load) and written either as text / CSV sections
 * (rep_time_cmd, `export --time`) or as the report's tables time_layer, time_op,
 * time_expert and time_imbalance (rep_time_tables, rep_internal.h). */
#include "reports/rep_export.h"
#include "reports/rep_internal.h"

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

/* Everything the time tables need, computed once (time_load). */
typedef struct time_data {
  long long run;
  int kern;               /* source: 1 = kernels, 0 = ops */
  int L, E;
  row *rows;              /* sorted by op */
  size_t n;
  long long total;        /* ns, nested ops (expert inside experts) counted once */
  int any_expert;         /* per-expert rows exist */
  long long *tok, *ens, *crit;   /* [L*E] tokens, [L*E] expert ns, [L] critical path */
  double *ideal;          /* [L] */
} time_data;

static void time_free(time_data *td) {
  free(td->rows); free(td->tok); free(td->ens); free(td->crit); free(td->ideal);
  memset(td, 0, sizeof *td);
}

/* Ops nest (`experts` contains each `expert e`), so with the ops source the per-expert rows
 * are left out of totals; a kernel has one (innermost) scope, so every kernel counts. */
static int counted(const time_data *td, const row *r) { return td->kern || strcmp(r->op, "expert"); }

/* Resolves run_id (< 0 = latest) and loads + aggregates its timings. 0 or -1. */
static int time_load(sqlite3 *db, const char *db_path, long long run_id, time_data *td, char *err, size_t errlen) {
  memset(td, 0, sizeof *td);
  long long run = run_id >= 0 ? q_int(db, "SELECT run_id FROM runs WHERE run_id = ?", run_id, -1)
                              : q_int(db, "SELECT MAX(run_id) FROM runs", 0, -1);
  if (run < 0) return fail(err, errlen, run_id >= 0 ? "%s: no run %lld" : "%s: no runs in this trace", db_path, run_id);
  td->run = run;
  int L = (int)q_int(db, "SELECT n_layers FROM runs WHERE run_id = ?", run, 0);
  int E = (int)q_int(db, "SELECT n_experts FROM runs WHERE run_id = ?", run, 0);
  td->kern = q_int(db, "SELECT COUNT(*) FROM CUPTI_ACTIVITY_KIND_KERNEL AS k JOIN kernel_scope AS s"
                       " ON s.correlationId = k.correlationId AND s.globalPid IS k.globalPid WHERE s.run_id = ?",
                   run, 0) > 0;
  if (load_rows(db, td->kern ? k_src_kernels : k_src_ops, run, &td->rows, &td->n))
    return fail(err, errlen, "%s: %s", db_path, sqlite3_errmsg(db));
  for (size_t i = 0; i < td->n; i++) {
    if (td->rows[i].layer >= L) L = td->rows[i].layer + 1;
    if (td->rows[i].expert >= E) E = td->rows[i].expert + 1;
    if (counted(td, &td->rows[i])) td->total += td->rows[i].ns;
  }
  td->L = L;
  td->E = E;
  if (td->n) qsort(td->rows, td->n, sizeof *td->rows, by_op_cmp);
  if (td->n == 0 || E <= 0 || L <= 0) return 0;
  td->tok = calloc((size_t)L * E, sizeof *td->tok);
  td->ens = calloc((size_t)L * E, sizeof *td->ens);
  td->crit = calloc((size_t)L, sizeof *td->crit);
  td->ideal = calloc((size_t)L, sizeof *td->ideal);
  if (!td->tok || !td->ens || !td->crit || !td->ideal) return fail(err, errlen, "out of memory");
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db, "SELECT layer, expert, SUM(tokens) FROM expert_load WHERE run_id = ? GROUP BY layer, expert",
                         -1, &st, NULL) == SQLITE_OK) {
    sqlite3_bind_int64(st, 1, run);
    while (sqlite3_step(st) == SQLITE_ROW) {
      int l = sqlite3_column_int(st, 0), e = sqlite3_column_int(st, 1);
      if (l >= 0 && l < L && e >= 0 && e < E) td->tok[(size_t)l * E + e] = sqlite3_column_int64(st, 2);
    }
  }
  sqlite3_finalize(st);
  const row *rows = td->rows;
  for (size_t i = 0; i < td->n; i++) {   /* the "expert" rows per (layer, expert) */
    if (strcmp(rows[i].op, "expert") || rows[i].layer < 0 || rows[i].expert < 0) continue;
    td->ens[(size_t)rows[i].layer * E + rows[i].expert] += rows[i].ns;
    td->any_expert = 1;
  }
  /* critical path and ideal per layer need per-batch maxima: one pass over (layer, batch) */
  for (int l = 0; l < L && td->any_expert; l++) {
    long long *bmax = NULL, *bsum = NULL, *bid = NULL;
    size_t nb = 0, cap = 0;
    for (size_t i = 0; i < td->n; i++) {
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
          if (!a || !b || !c) { free(bmax); free(bsum); free(bid); return fail(err, errlen, "out of memory"); }
        }
        bid[nb] = rows[i].batch; bmax[nb] = 0; bsum[nb] = 0; nb++;
      }
      if (rows[i].ns > bmax[k]) bmax[k] = rows[i].ns;
      bsum[k] += rows[i].ns;
    }
    for (size_t k = 0; k < nb; k++) { td->crit[l] += bmax[k]; td->ideal[l] += (double)bsum[k] / E; }
    free(bmax); free(bsum); free(bid);
  }
  return 0;
}

static long long layer_ns(const time_data *td, int l) {
  long long s = 0;
  for (size_t i = 0; i < td->n; i++) if (td->rows[i].layer == l && counted(td, &td->rows[i])) s += td->rows[i].ns;
  return s;
}

static long long expert_sum(const time_data *td, int l, long long *tokens) {
  long long ts = 0, tt = 0;
  for (int e = 0; e < td->E; e++) { ts += td->ens[(size_t)l * td->E + e]; tt += td->tok[(size_t)l * td->E + e]; }
  if (tokens) *tokens = tt;
  return ts;
}

static void time_print(const time_data *td, int csv, FILE *out) {
  const row *rows = td->rows;
  size_t n = td->n;
  long long total = td->total, run = td->run;
  int L = td->L, E = td->E;
  const char *src = td->kern ? "GPU kernels (kernel_scope)" : "CPU op timers (ops)";
  if (!csv) fprintf(out, "run %lld: time from %s, total %.3f ms\n", run, src, total / 1e6);
  else fprintf(out, "# run %lld source %s\n", run, td->kern ? "kernels" : "ops");

  /* by layer (layer -1 = outside layers: embedding, final norm, lm_head) */
  hdr(out, csv, "time by layer", "layer,ms,share",
      "layer          ms   share\n-----  ----------  ------");
  for (int l = -1; l < L; l++) {
    long long s = layer_ns(td, l);
    if (s == 0 && l < 0) continue;
    char lname[16];
    snprintf(lname, sizeof lname, l < 0 ? "-" : "%d", l);
    if (csv) fprintf(out, "%d,%.6f,%.6f\n", l, s / 1e6, total ? (double)s / total : 0);
    else fprintf(out, "%5s  %10.3f  %5.1f%%\n", lname, s / 1e6, total ? 100.0 * s / total : 0);
  }
  /* by op */
  hdr(out, csv, "time by op", "op,calls,ms,share",
      "op                  calls          ms   share\n----------------  -------  ----------  ------");
  for (size_t i = 0; i < n;) {
    size_t j = i;
    long long s = 0, calls = 0;
    while (j < n && !strcmp(rows[j].op, rows[i].op)) { s += rows[j].ns; calls++; j++; }
    double share = counted(td, &rows[i]) && total ? (double)s / total : NAN;
    if (csv) fprintf(out, "%s,%lld,%.6f,%.6f\n", rows[i].op, calls, s / 1e6, share);
    else if (share == share) fprintf(out, "%-16s  %7lld  %10.3f  %5.1f%%\n", rows[i].op, calls, s / 1e6, 100 * share);
    else fprintf(out, "%-16s  %7lld  %10.3f  (within experts)\n", rows[i].op, calls, s / 1e6);
    i = j;
  }
  if (E <= 0 || L <= 0) return;
  if (!td->any_expert) {
    if (!csv) fprintf(out, "\n(no per-expert timings: record at level full or with batches of >= 16 tokens)\n");
    return;
  }
  hdr(out, csv, "time per expert vs tokens routed", "layer,expert,tokens,token_share,ms,time_share,us_per_token",
      "layer  expert    tokens  tok%        ms   time%  us/token\n-----  ------  --------  -----  --------  ------  --------");
  for (int l = 0; l < L; l++) {
    long long tt, ts = expert_sum(td, l, &tt);
    if (ts == 0) continue;
    for (int e = 0; e < E; e++) {
      long long t = td->tok[(size_t)l * E + e], s = td->ens[(size_t)l * E + e];
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
    long long ts = expert_sum(td, l, NULL);
    if (ts == 0) continue;
    double cost = td->crit[l] - td->ideal[l];
    if (csv) fprintf(out, "%d,%.6f,%.6f,%.6f,%.6f,%.6f\n", l, ts / 1e6, td->ideal[l] / 1e6, td->crit[l] / 1e6, cost / 1e6,
                     td->crit[l] ? cost / td->crit[l] : 0);
    else fprintf(out, "%5d  %9.3f  %9.3f  %11.3f  %9.3f  %5.1f%%\n", l, ts / 1e6, td->ideal[l] / 1e6, td->crit[l] / 1e6,
                 cost / 1e6, td->crit[l] ? 100 * cost / td->crit[l] : 0);
  }
}

int rep_time_cmd(const char *db_path, long long run_id, int csv, FILE *out, char *err, size_t errlen) {
  struct stat sb;
  if (stat(db_path, &sb) != 0) return fail(err, errlen, "%s: %s", db_path, strerror(errno));
  sqlite3 *db = NULL;
  if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
    fail(err, errlen, "%s: %s", db_path, db ? sqlite3_errmsg(db) : "cannot open");
    sqlite3_close(db);
    return -1;
  }
  time_data td;
  int rc = time_load(db, db_path, run_id, &td, err, errlen);
  if (rc == 0 && td.n == 0)
    fprintf(out, csv ? "# run %lld: no timings (record level off?)\n" : "run %lld: no op or kernel timings in this trace\n",
            td.run);
  else if (rc == 0) time_print(&td, csv, out);
  time_free(&td);
  sqlite3_close(db);
  return rc;
}

/* ---- the same tables for `moescope report` ------------------------------------------ */
int rep_time_tables(sqlite3 *db, const char *db_path, long long run_id, rep_table *tab, int max, int *ntab, char *err,
                    size_t errlen) {
  time_data td;
  int n = *ntab, rc = -1;
  if (time_load(db, db_path, run_id, &td, err, errlen)) goto out;
  rc = 0;
  if (td.n == 0 || n + 4 > max) goto out;
  rc = -1;
  const char *src = td.kern ? "GPU kernels via kernel_scope" : "CPU op timers";
  char cap[256], b[64];
  int L = td.L, E = td.E;
  rep_table *t = &tab[n];
  /* by layer */
  int nl = 0;
  for (int l = -1; l < L; l++) nl += l >= 0 || layer_ns(&td, -1) > 0;
  snprintf(cap, sizeof cap, "Time by layer (%s; 'outside' = embedding, final norm, lm_head, sampling), total %.3f ms",
           src, td.total / 1e6);
  if (rep_table_init(t, "time_layer", cap, nl, 3)) goto oom;
  n++;
  rep_table_set(t, -1, 0, "layer"); rep_table_set(t, -1, 1, "ms"); rep_table_set(t, -1, 2, "share %%");
  for (int l = -1, r = 0; l < L; l++) {
    long long s = layer_ns(&td, l);
    if (l < 0 && s == 0) continue;
    if (l < 0) rep_table_set(t, r, 0, "outside"); else rep_table_set(t, r, 0, "%d", l);
    rep_table_set(t, r, 1, "%.3f", s / 1e6);
    rep_table_set(t, r, 2, "%.1f", td.total ? 100.0 * s / td.total : 0.0);
    r++;
  }
  /* by op */
  int no = 0;
  for (size_t i = 0; i < td.n; i++) no += i == 0 || strcmp(td.rows[i].op, td.rows[i - 1].op);
  t = &tab[n];
  snprintf(cap, sizeof cap, "Time by op (%s)%s", src, td.kern ? "" : "; expert rows lie within experts");
  if (rep_table_init(t, "time_op", cap, no, 4)) goto oom;
  n++;
  rep_table_set(t, -1, 0, "op"); rep_table_set(t, -1, 1, "calls"); rep_table_set(t, -1, 2, "ms");
  rep_table_set(t, -1, 3, "share %%");
  for (size_t i = 0, r = 0; i < td.n; r++) {
    size_t j = i;
    long long s = 0, calls = 0;
    while (j < td.n && !strcmp(td.rows[j].op, td.rows[i].op)) { s += td.rows[j].ns; calls++; j++; }
    rep_table_set(t, (int)r, 0, "%s", td.rows[i].op);
    rep_table_set(t, (int)r, 1, "%lld", calls);
    rep_table_set(t, (int)r, 2, "%.3f", s / 1e6);
    rep_table_set(t, (int)r, 3, "%s", counted(&td, &td.rows[i]) && td.total ? rep_num(b, sizeof b, "%.1f", 100.0 * s / td.total)
                                                                            : "(within experts)");
    i = j;
  }
  if (!td.any_expert) { rc = 0; goto out; }
  int ne = 0, nli = 0;
  for (int l = 0; l < L; l++) if (expert_sum(&td, l, NULL) > 0) { ne += E; nli++; }
  t = &tab[n];
  snprintf(cap, sizeof cap, "Time per expert vs tokens routed (%s)", src);
  if (rep_table_init(t, "time_expert", cap, ne, 7)) goto oom;
  n++;
  static const char *const eh[7] = {"layer", "expert", "tokens", "tokens %", "ms", "time %", "us/token"};
  for (int c = 0; c < 7; c++) rep_table_set(t, -1, c, "%s", eh[c]);
  int r = 0;
  for (int l = 0; l < L; l++) {
    long long tt, ts = expert_sum(&td, l, &tt);
    if (ts == 0) continue;
    for (int e = 0; e < E; e++, r++) {
      long long tk = td.tok[(size_t)l * E + e], s = td.ens[(size_t)l * E + e];
      rep_table_set(t, r, 0, "%d", l);
      rep_table_set(t, r, 1, "%d", e);
      rep_table_set(t, r, 2, "%lld", tk);
      rep_table_set(t, r, 3, "%.1f", tt ? 100.0 * tk / tt : 0.0);
      rep_table_set(t, r, 4, "%.3f", s / 1e6);
      rep_table_set(t, r, 5, "%.1f", 100.0 * s / ts);
      rep_table_set(t, r, 6, "%s", rep_num(b, sizeof b, "%.3f", tk ? s / 1e3 / (double)tk : NAN));
    }
  }
  t = &tab[n];
  snprintf(cap, sizeof cap, "Cost of imbalance per layer (%s): expert-parallel critical path sum_b max_e t_be vs the"
           " balanced ideal sum_b sum_e t_be / E", src);
  if (rep_table_init(t, "time_imbalance", cap, nli, 6)) goto oom;
  n++;
  static const char *const ih[6] = {"layer", "expert ms", "ideal ms", "critical ms", "cost ms", "cost %"};
  for (int c = 0; c < 6; c++) rep_table_set(t, -1, c, "%s", ih[c]);
  r = 0;
  for (int l = 0; l < L; l++) {
    long long ts = expert_sum(&td, l, NULL);
    if (ts == 0) continue;
    double cost = td.crit[l] - td.ideal[l];
    rep_table_set(t, r, 0, "%d", l);
    rep_table_set(t, r, 1, "%.3f", ts / 1e6);
    rep_table_set(t, r, 2, "%.3f", td.ideal[l] / 1e6);
    rep_table_set(t, r, 3, "%.3f", td.crit[l] / 1e6);
    rep_table_set(t, r, 4, "%.3f", cost / 1e6);
    rep_table_set(t, r, 5, "%.1f", td.crit[l] ? 100 * cost / td.crit[l] : 0.0);
    r++;
  }
  rc = 0;
  goto out;
oom:
  fail(err, errlen, "out of memory");
out:
  *ntab = n;
  time_free(&td);
  return rc;
}
