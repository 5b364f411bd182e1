/* test_info.c — `moescope info` on a trace DB and on things that are not one.
 *  - two runs of the shipped tiny-mixtral (labelled files at level topk, a prompt at level
 *    counts) into one DB: info prints the meta block and one block per run whose row counts
 *    equal COUNT(*) of each table for that run (computed here with SQLite), the labels with
 *    their sequence and token counts, the record level and the policy;
 *  - two paths at once -> usage error (exit 2); a file that is neither a model, a GGUF nor a
 *    SQLite DB -> one clear error line, exit 1. */
#include "tests/tst.h"
#include "tests/util/tst_run.h"

#include <sqlite3.h>

static long long count(sqlite3 *db, const char *table, int run) {
  char sql[256];
  snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM %s WHERE run_id = %d", table, run);
  sqlite3_stmt *st = NULL;
  long long n = -1;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return n;
}

int main(void) {
  char model[4096], db[4200], a[4200], b[4200];
  tst_path(model, sizeof model, "MOESCOPE_SRC", "models/tiny-mixtral");
  snprintf(db, sizeof db, "%s/info.db", tst_tmp());
  snprintf(a, sizeof a, "%s/info_a.txt", tst_tmp());
  snprintf(b, sizeof b, "%s/info_b.txt", tst_tmp());
  remove(db);
  FILE *f = fopen(a, "w");
  REQUIRE(f);
  fputs("def add(a, b):\n    return a + b\n\nprint(add(2, 3))\n", f);
  fclose(f);
  f = fopen(b, "w");
  REQUIRE(f);
  fputs("The river ran slowly past the old mill, and the village slept.\n", f);
  fclose(f);
  tst_out o;
  int st = tst_sh(&o, "'%s' run --model '%s' --file '%s' --label code --file '%s' --label prose --score --db '%s' --quiet",
                  tst_bin(), model, a, b, db);
  REQUIRE(st == 0 || (fprintf(stderr, "%s", o.err), 0));
  st = tst_sh(&o, "'%s' run --model '%s' --prompt 'hello there' --record counts --db '%s' --quiet", tst_bin(), model, db);
  REQUIRE(st == 0 || (fprintf(stderr, "%s", o.err), 0));
  st = tst_sh(&o, "'%s' info '%s'", tst_bin(), db);
  CHECKF(st == 0, "info exit %d: %s", st, o.err);
  printf("%s", o.out);
  CHECK(strstr(o.out, "schema_version") && strstr(o.out, "moescope_version"));
  sqlite3 *s = NULL;
  REQUIRE(sqlite3_open_v2(db, &s, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
  static const char *const tables[] = {"sequences", "tokens", "routing", "expert_load", "ops"};
  for (int run = 1; run <= 2; run++) {
    char hdr[32];
    snprintf(hdr, sizeof hdr, "\nrun %d ", run);
    const char *blk = strstr(o.out, hdr);
    CHECKF(blk != NULL, "no block for run %d", run);
    if (!blk) continue;
    const char *end = strstr(blk + 1, "\nrun ");
    size_t len = end ? (size_t)(end - blk) : strlen(blk);
    char text[4096];
    snprintf(text, sizeof text, "%.*s", (int)(len < sizeof text ? len : sizeof text - 1), blk);
    CHECKF(strstr(text, run == 1 ? "level topk on cpu" : "level counts on cpu") != NULL, "run %d level:\n%s", run, text);
    CHECK(strstr(text, "policy     native(") != NULL);
    CHECK(strstr(text, "8 experts top-2") != NULL);
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
      long long n = count(s, tables[i], run);
      char want[96];
      snprintf(want, sizeof want, " %s %lld", tables[i], n);
      if (n > 0) CHECKF(strstr(text, want) != NULL, "run %d: expected '%s' in:\n%s", run, want, text);
      else CHECKF(strstr(text, tables[i]) == NULL || !strstr(text, "rows"), "run %d: %s has no rows", run, tables[i]);
    }
    if (run == 1) {
      CHECK(count(s, "routing", 1) > 0 && count(s, "routing", 2) == 0);
      CHECKF(strstr(text, "code (1 seq, ") && strstr(text, "prose (1 seq, "), "labels:\n%s", text);
    }
  }
  sqlite3_close(s);
  st = tst_sh(&o, "'%s' info '%s' '%s'", tst_bin(), db, model);
  CHECKF(st == 2, "two paths: exit %d", st);
  st = tst_sh(&o, "'%s' info '%s'", tst_bin(), a);
  CHECKF(st == 1 && strstr(o.err, "not a model folder, a GGUF file or a trace DB") && tst_count_lines(o.err) == 1,
         "junk file: exit %d: %s", st, o.err);
  remove(db);
  remove(a);
  remove(b);
  return tst_done();
}
