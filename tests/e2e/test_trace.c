/* test_trace.c — trace integrity end to end: `moescope run` over the demo texts at
 * record levels topk, counts and full appended to one DB, then plain SQL checks: routing
 * rows = tokens x layers x k, gate weights per (token, layer) sum to 1, expert_load equals
 * the aggregate of routing, run metadata, no routing rows at level counts, router_probs
 * rows and blobs at level full agree with the routing (top-2 of the stored probs). */
#include <sqlite3.h>

#include "tests/tst.h"
#include "tests/util/tst_run.h"

static sqlite3 *db;

static double q1(const char *sql) {
  sqlite3_stmt *st;
  double v = NAN;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) { fprintf(stderr, "SQL error: %s: %s\n", sql, sqlite3_errmsg(db)); return NAN; }
  if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) v = sqlite3_column_double(st, 0);
  sqlite3_finalize(st);
  return v;
}

static double qf(const char *fmt, long long a) {
  char sql[2048];
  snprintf(sql, sizeof sql, fmt, a, a, a, a);
  return q1(sql);
}

int main(void) {
  char path[4096], texts[4096], model[4096];
  snprintf(path, sizeof path, "%s/trace_test.db", tst_tmp());
  remove(path);
  tst_path(texts, sizeof texts, "MOESCOPE_SRC", "demo/texts");
  tst_path(model, sizeof model, "MOESCOPE_SRC", "models/tiny-mixtral");
  tst_out o;
  const char *levels[3] = {"topk", "counts", "full"};
  for (int i = 0; i < 3; i++) {
    tst_sh(&o, "%s run --model %s --file %s/code.txt --label code --file %s/prose.txt --label prose --score "
               "--record %s --db %s --batch 100", tst_bin(), model, texts, texts, levels[i], path);
    CHECKF(o.status == 0, "run at level %s failed: %s", levels[i], o.err);
    CHECK(strstr(o.out, "code") && strstr(o.out, "prose"));
  }
  REQUIRE(sqlite3_open(path, &db) == SQLITE_OK);
  CHECK(q1("PRAGMA user_version") == 1);
  CHECK(q1("SELECT COUNT(*) FROM runs") == 3);
  CHECK(q1("SELECT COUNT(DISTINCT run_id) FROM runs") == 3);
  CHECK(q1("SELECT COUNT(*) FROM runs WHERE family='mixtral' AND n_layers=4 AND n_experts=8 AND top_k=2 "
           "AND length(model_sha256)=64 AND status='ok' AND device='cpu' AND dtype='BF16'") == 3);
  CHECK(q1("SELECT COUNT(*) FROM runs WHERE run_id=1 AND record_level='topk'") == 1);
  CHECK(q1("SELECT COUNT(*) FROM runs WHERE run_id=2 AND record_level='counts'") == 1);
  CHECK(q1("SELECT COUNT(*) FROM runs WHERE run_id=3 AND record_level='full'") == 1);
  CHECK(q1("SELECT COUNT(*) FROM meta WHERE key='schema_version'") == 1);
  for (long long r = 1; r <= 3; r++) {
    double T = qf("SELECT COUNT(*) FROM tokens WHERE run_id=%lld", r);
    CHECKF(T > 1000, "run %lld: %g tokens", r, T);
    CHECK(qf("SELECT SUM(n_tokens) FROM sequences WHERE run_id=%lld", r) == T);
    CHECK(qf("SELECT COUNT(*) FROM sequences WHERE run_id=%lld AND label IN ('code','prose')", r) == 2);
    /* the first token of each window is unscored (NULL nll), the rest scored */
    CHECK(qf("SELECT COUNT(*) FROM tokens WHERE run_id=%lld AND nll IS NULL", r) == 2);
    CHECK(qf("SELECT SUM(tokens) FROM expert_load WHERE run_id=%lld", r) == T * 4 * 2);
    CHECK(qf("SELECT COUNT(DISTINCT layer) FROM expert_load WHERE run_id=%lld", r) == 4);
    CHECK(qf("SELECT COUNT(*) FROM ops WHERE run_id=%lld AND op='attention'", r) > 0);
    CHECK(qf("SELECT COUNT(*) FROM ops WHERE run_id=%lld AND op='expert' AND expert >= 0", r) > 0);
    double routing = qf("SELECT COUNT(*) FROM routing WHERE run_id=%lld", r);
    if (r == 2) { CHECK(routing == 0); CHECK(qf("SELECT COUNT(*) FROM router_probs WHERE run_id=%lld", r) == 0); continue; }
    CHECKF(routing == T * 4 * 2, "run %lld: routing rows %g vs tokens*layers*k %g", r, routing, T * 8);
    CHECK(qf("SELECT COUNT(*) FROM (SELECT seq_id,pos,layer,SUM(weight) s FROM routing WHERE run_id=%lld "
             "GROUP BY seq_id,pos,layer HAVING abs(s-1.0) > 1e-5)", r) == 0);
    CHECK(qf("SELECT COUNT(*) FROM (SELECT seq_id,pos,layer FROM routing WHERE run_id=%lld GROUP BY seq_id,pos,layer "
             "HAVING COUNT(DISTINCT expert) != 2)", r) == 0);
    /* expert_load == aggregate of routing, per (layer, expert), exact counts and sums */
    CHECK(qf("SELECT COUNT(*) FROM (SELECT layer, expert, COUNT(*) n, SUM(weight) w FROM routing WHERE run_id=%lld "
             "GROUP BY layer, expert) a LEFT JOIN (SELECT layer, expert, SUM(tokens) n, SUM(weight_sum) w FROM expert_load "
             "WHERE run_id=%lld GROUP BY layer, expert) b USING(layer, expert) WHERE b.n IS NULL OR a.n != b.n OR "
             "abs(a.w - b.w) > 1e-3", r) == 0);
    CHECK(qf("SELECT COUNT(*) FROM vocab WHERE run_id=%lld", r) == 8192);
    CHECK(qf("SELECT COUNT(*) FROM vocab WHERE run_id=%lld AND token_id=220 AND piece=' '", r) == 1);
  }
  /* level full: one router_probs row per token and layer, E float32 per blob; the
   * routing's experts are the top-2 of the stored probabilities */
  double T3 = q1("SELECT COUNT(*) FROM tokens WHERE run_id=3");
  CHECK(q1("SELECT COUNT(*) FROM router_probs WHERE run_id=3") == T3 * 4);
  CHECK(q1("SELECT COUNT(*) FROM router_probs WHERE run_id=3 AND (length(probs) != 32 OR length(logits) != 32)") == 0);
  sqlite3_stmt *st;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT p.probs, r1.expert, r2.expert FROM router_probs p "
          "JOIN routing r1 ON r1.run_id=p.run_id AND r1.seq_id=p.seq_id AND r1.pos=p.pos AND r1.layer=p.layer AND r1.slot=0 "
          "JOIN routing r2 ON r2.run_id=p.run_id AND r2.seq_id=p.seq_id AND r2.pos=p.pos AND r2.layer=p.layer AND r2.slot=1 "
          "WHERE p.run_id=3", -1, &st, NULL) == SQLITE_OK);
  int rows = 0, bad = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    const float *p = sqlite3_column_blob(st, 0);
    int e1 = sqlite3_column_int(st, 1), e2 = sqlite3_column_int(st, 2);
    float s = 0;
    int best = 0, second = -1;
    for (int e = 0; e < 8; e++) s += p[e];
    for (int e = 1; e < 8; e++) if (p[e] > p[best]) best = e;
    for (int e = 0; e < 8; e++) if (e != best && (second < 0 || p[e] > p[second])) second = e;
    if (fabsf(s - 1) > 1e-5 || best != e1 || second != e2) bad++;
    rows++;
  }
  sqlite3_finalize(st);
  CHECK(rows == T3 * 4);
  CHECKF(bad == 0, "%d of %d router_probs rows disagree with routing", bad, rows);
  /* runs at level topk and full route identically (same model, same inputs) */
  CHECK(q1("SELECT COUNT(*) FROM routing a JOIN routing b ON a.seq_id=b.seq_id AND a.pos=b.pos AND a.layer=b.layer "
           "AND a.slot=b.slot WHERE a.run_id=1 AND b.run_id=3 AND a.expert != b.expert") == 0);
  sqlite3_close(db);
  return tst_done();
}
