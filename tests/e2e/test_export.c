/* test_export.c — `moescope export` on a real CPU trace (tiny-mixtral, record level full):
 * the Perfetto JSON parses (cJSON), has one "X" event per `ops` row and one "C" counter per
 * (batch, layer) of expert_load whose args equal the per-expert token counts, every event
 * has ph/pid/tid and ts in microseconds (= start_ns / 1000); NVTX ranges match NVTX_EVENTS;
 * --csv writes one file per table whose record counts equal the table counts (RFC 4180
 * parsing: quoted fields may hold commas, quotes and newlines); --time prints the time
 * tables; bad arguments give one error line and exit 2. */
#include <cjson/cJSON.h>
#include <math.h>
#include <sqlite3.h>

#include "tests/tst.h"
#include "tests/util/tst_files.h"
#include "tests/util/tst_run.h"

static sqlite3 *db;
static long long qi(const char *sql) {
  sqlite3_stmt *st;
  long long v = -999;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) { fprintf(stderr, "SQL: %s\n", sqlite3_errmsg(db)); return v; }
  if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

static size_t g_len;   /* length of the last tst_slurp (CSV text may hold NUL bytes) */

/* RFC 4180 records in a CSV text (header included) */
static long csv_records(const char *s, size_t len) {
  long n = 0;
  int q = 0, any = 0;
  for (const char *end = s + len; s < end; s++) {
    if (*s == '"') q = !q;
    else if (*s == '\n' && !q) { n++; any = 0; continue; }
    any = 1;
  }
  return n + any;
}

int main(void) {
  char path[4096], model[4096], texts[4096], json[4096], csv[4096];
  snprintf(path, sizeof path, "%s/export_test.db", tst_tmp());
  snprintf(json, sizeof json, "%s/export_test.json", tst_tmp());
  snprintf(csv, sizeof csv, "%s/export_csv", tst_tmp());
  remove(path);
  tst_path(model, sizeof model, "MOESCOPE_SRC", "models/tiny-mixtral");
  tst_path(texts, sizeof texts, "MOESCOPE_SRC", "demo/texts");
  tst_out o;
  tst_sh(&o, "%s run --model %s --file %s/code.txt --label code --max-tokens 120 --batch 40 --record full --db %s",
         tst_bin(), model, texts, path);
  REQUIRE(o.status == 0);
  tst_sh(&o, "%s export %s --perfetto %s --csv %s --time", tst_bin(), path, json, csv);
  CHECKF(o.status == 0, "export: %s", o.err);
  CHECK(strstr(o.out, "time by layer") && strstr(o.out, "cost of imbalance") && strstr(o.out, "time per expert"));
  REQUIRE(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
  long long n_ops = qi("SELECT COUNT(*) FROM ops WHERE run_id = 1");
  long long n_bl = qi("SELECT COUNT(*) FROM (SELECT DISTINCT batch_id, layer FROM expert_load WHERE run_id = 1)");
  long long n_nvtx = qi("SELECT COUNT(*) FROM NVTX_EVENTS WHERE eventType = 59");
  CHECK(n_ops > 0 && n_bl == 3 * 4 && n_nvtx == 1 + 3 + 12);

  char *txt = tst_slurp(json, &g_len);
  REQUIRE(txt);
  cJSON *root = cJSON_Parse(txt);
  free(txt);
  REQUIRE(root);
  cJSON *ev = cJSON_GetObjectItem(root, "traceEvents");
  REQUIRE(cJSON_IsArray(ev));
  long x_ops = 0, x_nvtx = 0, counters = 0, bad = 0, bad_ts = 0, bad_counter = 0;
  long long min_start = qi("SELECT MIN(start_ns) FROM ops WHERE run_id = 1");
  cJSON *e;
  cJSON_ArrayForEach(e, ev) {
    const char *ph = cJSON_GetStringValue(cJSON_GetObjectItem(e, "ph"));
    cJSON *pid = cJSON_GetObjectItem(e, "pid"), *tid = cJSON_GetObjectItem(e, "tid");
    if (!ph || !cJSON_IsNumber(pid) || !cJSON_IsNumber(tid) || !cJSON_GetStringValue(cJSON_GetObjectItem(e, "name"))) { bad++; continue; }
    if (!strcmp(ph, "M")) continue;
    cJSON *ts = cJSON_GetObjectItem(e, "ts");
    if (!cJSON_IsNumber(ts)) { bad++; continue; }
    const char *cat = cJSON_GetStringValue(cJSON_GetObjectItem(e, "cat"));
    if (!strcmp(ph, "X")) {
      cJSON *dur = cJSON_GetObjectItem(e, "dur");
      if (!cJSON_IsNumber(dur) || dur->valuedouble < 0) bad++;
      if (cat && !strcmp(cat, "op")) {
        x_ops++;
        if (ts->valuedouble < min_start / 1000.0 - 1e-3) bad_ts++;
      } else if (cat && !strcmp(cat, "nvtx")) x_nvtx++;
    } else if (!strcmp(ph, "C")) {
      counters++;
      cJSON *args = cJSON_GetObjectItem(e, "args");
      double sum = 0;
      cJSON *a;
      cJSON_ArrayForEach(a, args) sum += a->valuedouble;
      if (cJSON_GetArraySize(args) != 8) bad_counter++;
      /* each layer of a batch routes k = 2 slots per token: 40 tokens -> 80 */
      if (fabs(sum - 80) > 1e-9) bad_counter++;
    } else bad++;
  }
  CHECK(bad == 0);
  CHECKF(x_ops == n_ops, "X op events %ld, ops rows %lld", x_ops, n_ops);
  CHECK(x_nvtx == n_nvtx);
  CHECKF(counters == n_bl, "counters %ld, (batch, layer) %lld", counters, n_bl);
  CHECK(bad_counter == 0 && bad_ts == 0);
  /* one specific op: the router of layer 2 in the second batch, ts = start_ns / 1000 exactly */
  long long r_start = qi("SELECT start_ns FROM ops WHERE run_id = 1 AND op = 'router' AND layer = 2 ORDER BY batch_id LIMIT 1 OFFSET 1");
  int found = 0;
  cJSON_ArrayForEach(e, ev) {
    cJSON *args = cJSON_GetObjectItem(e, "args");
    const char *nm = cJSON_GetStringValue(cJSON_GetObjectItem(e, "name"));
    if (nm && !strcmp(nm, "router") && cJSON_GetObjectItem(args, "layer") && cJSON_GetObjectItem(args, "layer")->valueint == 2 &&
        fabs(cJSON_GetObjectItem(e, "ts")->valuedouble - r_start / 1000.0) < 1e-3)
      found++;
  }
  CHECK(found == 1);
  cJSON_Delete(root);

  /* CSV: one file per table, record counts = table counts + header */
  sqlite3_stmt *st;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'", -1, &st, NULL) == SQLITE_OK);
  int tables = 0, bad_csv = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    const char *t = (const char *)sqlite3_column_text(st, 0);
    char f[4200], sql[256];
    snprintf(f, sizeof f, "%s/%s.csv", csv, t);
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM \"%s\"", t);
    char *c = tst_slurp(f, &g_len);
    if (!c) { bad_csv++; continue; }
    long recs = csv_records(c, g_len);
    if (recs != qi(sql) + 1) { fprintf(stderr, "%s: %ld records, %lld rows\n", t, recs, qi(sql)); bad_csv++; }
    free(c);
    tables++;
  }
  sqlite3_finalize(st);
  CHECK(tables >= 15 && bad_csv == 0);
  CHECK(qi("SELECT COUNT(*) FROM vocab WHERE piece LIKE '%,%' OR piece LIKE '%\"%' OR piece LIKE '%' || char(10) || '%'") > 0);
  sqlite3_close(db);

  /* errors: one line, usage 2 / runtime 1 */
  CHECK(tst_sh(&o, "%s export", tst_bin()) == 2 && tst_count_lines(o.err) == 1);
  CHECK(tst_sh(&o, "%s export %s", tst_bin(), path) == 2 && tst_count_lines(o.err) == 1);
  CHECK(tst_sh(&o, "%s export %s --perfetto %s --run 99", tst_bin(), path, json) == 1 && strstr(o.err, "no run 99"));
  CHECK(tst_sh(&o, "%s export %s/missing.db --time", tst_bin(), tst_tmp()) == 1 && tst_count_lines(o.err) == 1);
  return tst_done();
}
