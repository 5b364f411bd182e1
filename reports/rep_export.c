/* rep_export.c — `moescope export` (rep_export.h): the trace DB as Chrome/Perfetto
 * trace-event JSON (ops, NVTX ranges, GPU kernels, per-layer routing counters) and as CSV
 * files, one per table. Reads the DB only; streams its output (no JSON tree in memory). */
#include "reports/rep_export.h"

#include <errno.h>
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

static int open_ro(sqlite3 **db, const char *path, char *err, size_t errlen) {
  struct stat sb;
  if (stat(path, &sb) != 0) return fail(err, errlen, "%s: %s", path, strerror(errno));
  if (sqlite3_open_v2(path, db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
    fail(err, errlen, "%s: %s", path, *db ? sqlite3_errmsg(*db) : "cannot open");
    sqlite3_close(*db);
    *db = NULL;
    return -1;
  }
  sqlite3_busy_timeout(*db, 10000);
  return 0;
}

static int table_exists(sqlite3 *db, const char *name) {
  sqlite3_stmt *st;
  int ok = 0;
  if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type IN ('table','view') AND name = ?", -1, &st, NULL) ==
      SQLITE_OK) {
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    ok = sqlite3_step(st) == SQLITE_ROW;
  }
  sqlite3_finalize(st);
  return ok;
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

/* JSON string body (no quotes) */
static void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
    if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
    else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
    else fputc(*p, f);
  }
  fputc('"', f);
}

/* nanoseconds -> microseconds with ns precision */
static void json_us(FILE *f, long long ns) {
  if (ns < 0) { fputc('-', f); ns = -ns; }
  fprintf(f, "%lld.%03lld", ns / 1000, ns % 1000);
}

typedef struct jw { FILE *f; int n; } jw;
static void ev_sep(jw *w) { fputs(w->n++ ? ",\n" : "\n", w->f); }

static void meta(jw *w, const char *what, long long pid, long long tid, const char *name) {
  ev_sep(w);
  fprintf(w->f, "{\"ph\":\"M\",\"name\":\"%s\",\"pid\":%lld,\"tid\":%lld,\"args\":{\"name\":", what, pid, tid);
  json_str(w->f, name);
  fputs("}}", w->f);
}

#define GPU_PID_BASE 1000000000LL

static int export_ops(sqlite3 *db, jw *w, long long run, rep_export_counts *c) {
  sqlite3_stmt *st;
  const char *sql = "SELECT op, batch_id, layer, expert, start_ns, end_ns, COALESCE(thread, 0), device FROM ops"
                    " WHERE run_id = ? ORDER BY start_ns, end_ns DESC";
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return -1;
  sqlite3_bind_int64(st, 1, run);
  long long seen_threads[64];
  int n_threads = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    const char *op = (const char *)sqlite3_column_text(st, 0);
    long long bid = sqlite3_column_int64(st, 1), layer = sqlite3_column_int64(st, 2);
    int has_e = sqlite3_column_type(st, 3) != SQLITE_NULL && sqlite3_column_int64(st, 3) >= 0;
    long long e = sqlite3_column_int64(st, 3), t0 = sqlite3_column_int64(st, 4), t1 = sqlite3_column_int64(st, 5);
    long long tid = sqlite3_column_int64(st, 6);
    int known = 0;
    for (int i = 0; i < n_threads; i++) known |= seen_threads[i] == tid;
    if (!known && n_threads < 64) {
      seen_threads[n_threads++] = tid;
      char nm[64];
      snprintf(nm, sizeof nm, "engine ops (thread %lld)", tid);
      meta(w, "thread_name", run, tid, nm);
      c->metadata++;
    }
    char name[96];
    if (has_e) snprintf(name, sizeof name, "%s %lld", op ? op : "op", e);
    else snprintf(name, sizeof name, "%s", op ? op : "op");
    ev_sep(w);
    fputs("{\"ph\":\"X\",\"cat\":\"op\",\"name\":", w->f);
    json_str(w->f, name);
    fputs(",\"ts\":", w->f);
    json_us(w->f, t0);
    fputs(",\"dur\":", w->f);
    json_us(w->f, t1 > t0 ? t1 - t0 : 0);
    fprintf(w->f, ",\"pid\":%lld,\"tid\":%lld,\"args\":{\"batch\":%lld,\"layer\":%lld", run, tid, bid, layer);
    if (has_e) fprintf(w->f, ",\"expert\":%lld", e);
    fputs("}}", w->f);
    c->ops++;
  }
  sqlite3_finalize(st);
  return 0;
}

/* globalPid of the run's process: from TARGET_INFO_GPU, else from its NVTX run range */
static long long run_gpid(sqlite3 *db, long long run) {
  long long g = -1;
  if (table_exists(db, "TARGET_INFO_GPU"))
    g = q_int(db, "SELECT globalPid FROM TARGET_INFO_GPU WHERE run_id = ? LIMIT 1", run, -1);
  if (g < 0 && table_exists(db, "NVTX_EVENTS"))
    g = q_int(db, "SELECT (globalTid / 16777216) * 16777216 FROM NVTX_EVENTS WHERE eventType = 59 AND category = 1"
                  " AND int64Value = ? ORDER BY start DESC LIMIT 1", run, -1);
  return g;
}

static int export_nvtx(sqlite3 *db, jw *w, long long run, rep_export_counts *c) {
  if (!table_exists(db, "NVTX_EVENTS")) return 0;
  long long gpid = run_gpid(db, run);
  if (gpid < 0) return 0;
  sqlite3_stmt *st;
  /* the run's window: its "run N" range (category 1, payload run_id) in its process */
  const char *sql =
    "WITH w AS (SELECT start AS s, end AS e FROM NVTX_EVENTS WHERE eventType = 59 AND category = 1 AND int64Value = ?1"
    " AND globalTid / 16777216 = ?2 / 16777216 ORDER BY start DESC LIMIT 1)"
    " SELECT COALESCE(n.text, si.value), n.start, n.end, n.globalTid % 16777216, n.category, n.int64Value"
    " FROM NVTX_EVENTS AS n LEFT JOIN StringIds AS si ON si.id = n.textId, w"
    " WHERE n.eventType = 59 AND n.globalTid / 16777216 = ?2 / 16777216 AND n.start >= w.s AND n.end <= w.e"
    " ORDER BY n.start, n.end DESC";
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return -1;
  sqlite3_bind_int64(st, 1, run);
  sqlite3_bind_int64(st, 2, gpid);
  int named = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    long long t0 = sqlite3_column_int64(st, 1), t1 = sqlite3_column_int64(st, 2);
    long long tid = 100000000LL + sqlite3_column_int64(st, 3);   /* own track, apart from the ops */
    if (!named) { meta(w, "thread_name", run, tid, "NVTX (moescope domain)"); c->metadata++; named = 1; }
    ev_sep(w);
    fputs("{\"ph\":\"X\",\"cat\":\"nvtx\",\"name\":", w->f);
    json_str(w->f, (const char *)sqlite3_column_text(st, 0));
    fputs(",\"ts\":", w->f);
    json_us(w->f, t0);
    fputs(",\"dur\":", w->f);
    json_us(w->f, t1 > t0 ? t1 - t0 : 0);
    fprintf(w->f, ",\"pid\":%lld,\"tid\":%lld,\"args\":{\"category\":%lld,\"payload\":%lld}}", run, tid,
            sqlite3_column_int64(st, 4), sqlite3_column_int64(st, 5));
    c->nvtx++;
  }
  sqlite3_finalize(st);
  return 0;
}

static int export_kernels(sqlite3 *db, jw *w, long long run, rep_export_counts *c) {
  if (!table_exists(db, "CUPTI_ACTIVITY_KIND_KERNEL")) return 0;
  long long gpid = run_gpid(db, run);
  sqlite3_stmt *st;
  const char *sql =
    "SELECT COALESCE(sn.value, '?'), k.start, k.end, k.deviceId, k.streamId, k.correlationId, s.layer, s.op, s.expert,"
    " s.batch_id FROM CUPTI_ACTIVITY_KIND_KERNEL AS k LEFT JOIN StringIds AS sn ON sn.id = k.shortName"
    " LEFT JOIN kernel_scope AS s ON s.correlationId = k.correlationId AND s.globalPid IS k.globalPid"
    " WHERE k.globalPid = ?2 OR s.run_id = ?1 ORDER BY k.start";
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return -1;
  sqlite3_bind_int64(st, 1, run);
  sqlite3_bind_int64(st, 2, gpid);
  long long named[64][2];
  int n_named = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    long long t0 = sqlite3_column_int64(st, 1), t1 = sqlite3_column_int64(st, 2);
    long long dev = sqlite3_column_int64(st, 3), stream = sqlite3_column_int64(st, 4);
    long long pid = GPU_PID_BASE + dev;
    int known = 0;
    for (int i = 0; i < n_named; i++) known |= named[i][0] == dev && named[i][1] == stream;
    if (!known && n_named < 64) {
      int dev_known = 0;
      for (int i = 0; i < n_named; i++) dev_known |= named[i][0] == dev;
      named[n_named][0] = dev; named[n_named][1] = stream; n_named++;
      char nm[64];
      if (!dev_known) { snprintf(nm, sizeof nm, "GPU %lld", dev); meta(w, "process_name", pid, 0, nm); c->metadata++; }
      snprintf(nm, sizeof nm, "stream %lld", stream);
      meta(w, "thread_name", pid, stream, nm);
      c->metadata++;
    }
    ev_sep(w);
    fputs("{\"ph\":\"X\",\"cat\":\"kernel\",\"name\":", w->f);
    json_str(w->f, (const char *)sqlite3_column_text(st, 0));
    fputs(",\"ts\":", w->f);
    json_us(w->f, t0);
    fputs(",\"dur\":", w->f);
    json_us(w->f, t1 > t0 ? t1 - t0 : 0);
    fprintf(w->f, ",\"pid\":%lld,\"tid\":%lld,\"args\":{\"correlationId\":%lld", pid, stream, sqlite3_column_int64(st, 5));
    if (sqlite3_column_type(st, 7) != SQLITE_NULL) {
      fprintf(w->f, ",\"batch\":%lld,\"layer\":%lld,\"op\":", sqlite3_column_int64(st, 9), sqlite3_column_int64(st, 6));
      json_str(w->f, (const char *)sqlite3_column_text(st, 7));
      fprintf(w->f, ",\"expert\":%lld", sqlite3_column_int64(st, 8));
    }
    fputs("}}", w->f);
    c->kernels++;
  }
  sqlite3_finalize(st);
  return 0;
}

/* one "C" event per (batch, layer): tokens of every expert (0 when none), at the router's
 * start when timed, else the batch's first op */
static void counter_flush(jw *w, long long run, long long layer, long long ts, const long long *tok, int E) {
  ev_sep(w);
  fprintf(w->f, "{\"ph\":\"C\",\"cat\":\"routing\",\"name\":\"layer %lld tokens per expert\",\"ts\":", layer);
  json_us(w->f, ts);
  fprintf(w->f, ",\"pid\":%lld,\"tid\":0,\"id\":%lld,\"args\":{", run, layer);
  for (int e = 0; e < E; e++) fprintf(w->f, "%s\"e%d\":%lld", e ? "," : "", e, tok[e]);
  fputs("}}", w->f);
}

static int export_counters(sqlite3 *db, jw *w, long long run, rep_export_counts *c) {
  sqlite3_stmt *st;
  int E = (int)q_int(db, "SELECT MAX(COALESCE(r.n_experts, 0), COALESCE((SELECT MAX(expert) + 1 FROM expert_load"
                         " WHERE run_id = ?1), 0)) FROM runs AS r WHERE r.run_id = ?1", run, 0);
  if (E <= 0 || E > 1 << 16) return 0;
  long long *tok = calloc((size_t)E, sizeof *tok);
  if (!tok) return -1;
  const char *sql =
    "WITH t AS (SELECT batch_id, layer, MIN(start_ns) AS ts FROM ops WHERE run_id = ?1 AND op = 'router'"
    "   GROUP BY batch_id, layer),"
    " b AS (SELECT batch_id, MIN(start_ns) AS ts FROM ops WHERE run_id = ?1 GROUP BY batch_id)"
    " SELECT el.batch_id, el.layer, el.expert, el.tokens, COALESCE(t.ts, b.ts, el.batch_id * 1000)"
    " FROM expert_load AS el LEFT JOIN t ON t.batch_id = el.batch_id AND t.layer = el.layer"
    " LEFT JOIN b ON b.batch_id = el.batch_id WHERE el.run_id = ?1 ORDER BY el.batch_id, el.layer, el.expert";
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) { free(tok); return -1; }
  sqlite3_bind_int64(st, 1, run);
  long long cur_b = -1, cur_l = -1, cur_ts = 0;
  int open = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    long long bid = sqlite3_column_int64(st, 0), layer = sqlite3_column_int64(st, 1);
    long long e = sqlite3_column_int64(st, 2), n = sqlite3_column_int64(st, 3), ts = sqlite3_column_int64(st, 4);
    if (!open || bid != cur_b || layer != cur_l) {
      if (open) { counter_flush(w, run, cur_l, cur_ts, tok, E); c->counters++; }
      memset(tok, 0, sizeof *tok * (size_t)E);
      cur_b = bid; cur_l = layer; cur_ts = ts; open = 1;
    }
    if (e >= 0 && e < E) tok[e] += n;
  }
  if (open) { counter_flush(w, run, cur_l, cur_ts, tok, E); c->counters++; }
  sqlite3_finalize(st);
  free(tok);
  return 0;
}

int rep_export_perfetto(const char *db_path, long long run_id, const char *out_path, rep_export_counts *counts,
                        char *err, size_t errlen) {
  sqlite3 *db = NULL;
  if (open_ro(&db, db_path, err, errlen)) return -1;
  rep_export_counts c = {0};
  int rc = -1;
  FILE *f = NULL;
  long long run = run_id >= 0 ? q_int(db, "SELECT run_id FROM runs WHERE run_id = ?", run_id, -1)
                              : q_int(db, "SELECT MAX(run_id) FROM runs", 0, -1);
  if (run < 0) {
    fail(err, errlen, run_id >= 0 ? "%s: no run %lld" : "%s: no runs in this trace", db_path, run_id);
    goto out;
  }
  f = fopen(out_path, "w");
  if (!f) { fail(err, errlen, "%s: %s", out_path, strerror(errno)); goto out; }
  jw w = {f, 0};
  fputs("{\"displayTimeUnit\":\"ns\",\"traceEvents\":[", f);
  char nm[512];
  sqlite3_stmt *st;
  snprintf(nm, sizeof nm, "moescope run %lld", run);
  if (sqlite3_prepare_v2(db, "SELECT COALESCE(model_path,''), COALESCE(device,'cpu') FROM runs WHERE run_id = ?", -1,
                         &st, NULL) == SQLITE_OK) {
    sqlite3_bind_int64(st, 1, run);
    if (sqlite3_step(st) == SQLITE_ROW)
      snprintf(nm, sizeof nm, "moescope run %lld (%s, %s)", run, (const char *)sqlite3_column_text(st, 1),
               (const char *)sqlite3_column_text(st, 0));
  }
  sqlite3_finalize(st);
  meta(&w, "process_name", run, 0, nm);
  c.metadata++;
  if (export_ops(db, &w, run, &c) || export_nvtx(db, &w, run, &c) || export_kernels(db, &w, run, &c) ||
      export_counters(db, &w, run, &c)) {
    fail(err, errlen, "%s: %s", db_path, sqlite3_errmsg(db));
    goto out;
  }
  fprintf(f, "\n],\"otherData\":{\"producer\":\"moescope\",\"run_id\":%lld}}\n", run);
  if (ferror(f)) { fail(err, errlen, "%s: write error", out_path); goto out; }
  rc = 0;
out:
  if (f && fclose(f) != 0 && rc == 0) rc = fail(err, errlen, "%s: %s", out_path, strerror(errno));
  sqlite3_close(db);
  if (counts) *counts = c;
  return rc;
}

/* ---- CSV ----------------------------------------------------------------------------------- */

static int mkdir_p(const char *dir) {
  char p[4096];
  snprintf(p, sizeof p, "%s", dir);
  for (char *s = p + 1; *s; s++)
    if (*s == '/') { *s = 0; if (mkdir(p, 0777) && errno != EEXIST) return -1; *s = '/'; }
  return mkdir(p, 0777) && errno != EEXIST ? -1 : 0;
}

static void csv_field(FILE *f, sqlite3_stmt *st, int i) {
  switch (sqlite3_column_type(st, i)) {
    case SQLITE_NULL: break;
    case SQLITE_INTEGER: fprintf(f, "%lld", (long long)sqlite3_column_int64(st, i)); break;
    case SQLITE_FLOAT: fprintf(f, "%.17g", sqlite3_column_double(st, i)); break;
    case SQLITE_BLOB: {
      const unsigned char *b = sqlite3_column_blob(st, i);
      int n = sqlite3_column_bytes(st, i);
      for (int k = 0; k < n; k++) fprintf(f, "%02x", b[k]);
      break;
    }
    default: {
      const char *s = (const char *)sqlite3_column_text(st, i);
      int n = sqlite3_column_bytes(st, i);
      int quote = 0;
      for (int k = 0; k < n; k++) quote |= s[k] == ',' || s[k] == '"' || s[k] == '\n' || s[k] == '\r';
      if (!quote) { fwrite(s, 1, (size_t)n, f); break; }
      fputc('"', f);
      for (int k = 0; k < n; k++) { if (s[k] == '"') fputc('"', f); fputc(s[k], f); }
      fputc('"', f);
    }
  }
}

int rep_export_csv(const char *db_path, const char *dir, int *n_tables, char *err, size_t errlen) {
  sqlite3 *db = NULL;
  if (n_tables) *n_tables = 0;
  if (open_ro(&db, db_path, err, errlen)) return -1;
  if (mkdir_p(dir)) { fail(err, errlen, "%s: %s", dir, strerror(errno)); sqlite3_close(db); return -1; }
  sqlite3_stmt *tl;
  int rc = 0, n = 0;
  if (sqlite3_prepare_v2(db, "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
                             " ORDER BY name", -1, &tl, NULL) != SQLITE_OK) {
    fail(err, errlen, "%s: %s", db_path, sqlite3_errmsg(db));
    sqlite3_close(db);
    return -1;
  }
  while (rc == 0 && sqlite3_step(tl) == SQLITE_ROW) {
    const char *t = (const char *)sqlite3_column_text(tl, 0);
    char path[4096], sql[600];
    if (!t || strlen(t) > 200 || strpbrk(t, "/\"")) continue;
    snprintf(path, sizeof path, "%s/%s.csv", dir, t);
    snprintf(sql, sizeof sql, "SELECT * FROM \"%s\"", t);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) { rc = fail(err, errlen, "%s: %s", t, sqlite3_errmsg(db)); break; }
    FILE *f = fopen(path, "w");
    if (!f) { rc = fail(err, errlen, "%s: %s", path, strerror(errno)); sqlite3_finalize(st); break; }
    int nc = sqlite3_column_count(st);
    for (int i = 0; i < nc; i++) {
      if (i) fputc(',', f);
      fputs(sqlite3_column_name(st, i), f);
    }
    fputs("\r\n", f);
    while (sqlite3_step(st) == SQLITE_ROW) {
      for (int i = 0; i < nc; i++) { if (i) fputc(',', f); csv_field(f, st, i); }
      fputs("\r\n", f);
    }
    sqlite3_finalize(st);
    if (ferror(f)) rc = fail(err, errlen, "%s: write error", path);
    if (fclose(f) != 0 && rc == 0) rc = fail(err, errlen, "%s: %s", path, strerror(errno));
    n++;
  }
  sqlite3_finalize(tl);
  sqlite3_close(db);
  if (n_tables) *n_tables = n;
  return rc;
}
