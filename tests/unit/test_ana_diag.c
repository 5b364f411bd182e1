/* test_ana_diag.c — diagnosis rules and structure statistics on a hand-built trace DB
 * with known answers. E = 8, k = 2, two labelled sequences of 200 tokens, one layer per
 * rule: 0 healthy (round robin), 1 collapsed (expert 0 in every token), 2 dead expert 7,
 * 3 imbalanced (expert 0 in 55% of tokens), 4 pinned gate weights (0.995 / 0.005),
 * 5 drift between labels (label a -> experts 0-3, label b -> 4-7). Structure statistics
 * (co-activation, transitions, repetition, label counts) are checked against plain SQL. */
#include "tests/tst.h"

#include <sqlite3.h>

#include "analysis/ana_diag.h"
#include "analysis/ana_math.h"
#include "probes/prb_sink.h"

enum { E = 8, K = 2, L = 6, T = 200 };

static void exec(sqlite3 *db, const char *sql) {
  char *msg = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) { fprintf(stderr, "SQL: %s\n", msg); exit(1); }
}

static void pick(int l, int s, int t, int ex[2], double w[2]) {
  int r = t % 7;
  w[0] = 0.6; w[1] = 0.4;
  switch (l) {
    case 0: ex[0] = (2 * t) % E; ex[1] = (2 * t + 1) % E; break;
    case 1: ex[0] = 0; ex[1] = 1 + t % 7; break;
    case 2: ex[0] = r; ex[1] = (r + 1 + (t / 7) % 6) % 7; break;
    case 3: if (t % 20 < 11) { ex[0] = 0; ex[1] = 1 + t % 7; } else { ex[0] = 1 + t % 7; ex[1] = 1 + (t + 1) % 7; } break;
    case 4: ex[0] = (2 * t) % E; ex[1] = (2 * t + 1) % E; w[0] = 0.995; w[1] = 0.005; break;
    default: ex[0] = 4 * s + (2 * t) % 4; ex[1] = ex[0] + 1; break;
  }
}

static long long sql1(sqlite3 *db, const char *sql) {
  sqlite3_stmt *s;
  REQUIRE(sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK);
  long long v = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
  sqlite3_finalize(s);
  return v;
}

int main(void) {
  char path[4096], err[512], q[512];
  snprintf(path, sizeof path, "%s/ana_diag.db", tst_tmp_dir());
  unlink(path);
  sqlite3 *db;
  REQUIRE(sqlite3_open(path, &db) == SQLITE_OK);
  exec(db, prb_schema_sql);
  exec(db, "PRAGMA user_version = 1; BEGIN");
  exec(db, "INSERT INTO runs(run_id, family, n_layers, n_experts, top_k, record_level) VALUES (1, 'mixtral', 6, 8, 2, 'topk')");
  exec(db, "INSERT INTO sequences VALUES (1, 0, 'a', 'x', 200), (1, 1, 'b', 'y', 200)");
  sqlite3_stmt *rt, *tk;
  REQUIRE(sqlite3_prepare_v2(db, "INSERT INTO routing VALUES (1,?,?,?,?,?,?)", -1, &rt, NULL) == 0);
  REQUIRE(sqlite3_prepare_v2(db, "INSERT INTO tokens VALUES (1,?,?,?,'prefill',0)", -1, &tk, NULL) == 0);
  long long cnt[L][E] = {{0}};
  for (int s = 0; s < 2; s++)
    for (int t = 0; t < T; t++) {
      sqlite3_bind_int(tk, 1, s); sqlite3_bind_int(tk, 2, t); sqlite3_bind_int(tk, 3, t % 10);
      sqlite3_step(tk); sqlite3_reset(tk);
      for (int l = 0; l < L; l++) {
        int ex[2]; double w[2];
        pick(l, s, t, ex, w);
        for (int k = 0; k < K; k++) {
          sqlite3_bind_int(rt, 1, s); sqlite3_bind_int(rt, 2, t); sqlite3_bind_int(rt, 3, l);
          sqlite3_bind_int(rt, 4, k); sqlite3_bind_int(rt, 5, ex[k]); sqlite3_bind_double(rt, 6, w[k]);
          sqlite3_step(rt); sqlite3_reset(rt);
          cnt[l][ex[k]]++;
        }
      }
    }
  sqlite3_finalize(rt); sqlite3_finalize(tk);
  for (int l = 0; l < L; l++)
    for (int e = 0; e < E; e++) {
      snprintf(q, sizeof q, "INSERT INTO expert_load VALUES (1,0,%d,%d,%lld,0,0)", l, e, cnt[l][e]);
      exec(db, q);
    }
  exec(db, "COMMIT");

  ana_db *d;
  REQUIRE(ana_db_open(&d, path, err, sizeof err) == 0);
  ana_diag g;
  REQUIRE(ana_diagnose(d, -1, NULL, &g, err, sizeof err) == 0);
  REQUIRE(g.n == L && g.has_trace);
  static const char *want[L] = {"healthy", "collapsed", "dead experts", "imbalanced", "router saturation", "drift"};
  for (int l = 0; l < L; l++) {
    char names[256];
    printf("layer %d: %s (%s)\n", l, g.layers[l].verdict, ana_diag_flag_names(g.layers[l].flags, names, sizeof names));
    CHECKF(!strcmp(g.layers[l].verdict, want[l]), "layer %d: %s, want %s", l, g.layers[l].verdict, want[l]);
  }
  CHECK(g.layers[0].flags == 0 && g.n_findings == 5);
  CHECK(g.layers[1].top_e[0] == 0 && fabs(g.layers[1].top_tok - 1.0) < 1e-12);
  CHECK(g.layers[2].n_dead == 1 && g.layers[2].dead[0] == 7 && !(g.layers[2].flags & ANA_F_COLLAPSED));
  CHECK_NEAR(g.layers[3].maxvio, 220.0 / 400 * 4 - 1, 1e-9);   /* 220 slots of 800, fair 100 */
  CHECK(g.layers[4].flags == ANA_F_PINNED && fabs(g.layers[4].w1_pinned - 1) < 1e-12);
  CHECK(g.layers[5].flags == ANA_F_DRIFT_LABEL && fabs(g.layers[5].label_js - 1) < 1e-9);   /* disjoint */
  CHECK(!(g.layers[0].flags & ANA_F_DRIFT_POS));

  /* structure statistics vs plain SQL */
  const ana_struct *st = &g.st;
  for (int l = 0; l < L; l++)
    for (int a = 0; a < E; a += 3)
      for (int b = 0; b < E; b += 2) {
        snprintf(q, sizeof q, "SELECT COUNT(*) FROM routing x JOIN routing y USING(run_id, seq_id, pos, layer)"
                 " WHERE layer = %d AND x.expert = %d AND y.expert = %d", l, a, b);
        long long n = sql1(db, q);
        CHECKF(st->co[((size_t)l * E + a) * E + b] == n, "co l%d %d-%d: %lld vs %lld", l, a, b, st->co[((size_t)l * E + a) * E + b], n);
      }
  for (int l = 0; l + 1 < L; l++)
    for (int a = 0; a < E; a += 3) {   /* primary = slot 0 (weight 0.6 / 0.995) */
      snprintf(q, sizeof q, "SELECT COUNT(*) FROM routing x JOIN routing y USING(run_id, seq_id, pos)"
               " WHERE x.layer = %d AND y.layer = %d AND x.slot = 0 AND y.slot = 0 AND x.expert = %d AND y.expert = %d",
               l, l + 1, a, (a + 1) % E);
      CHECK(st->trans[((size_t)l * E + a) * E + (a + 1) % E] == sql1(db, q));
    }
  for (int l = 0; l < L; l++) {
    snprintf(q, sizeof q, "SELECT COUNT(*) FROM routing x JOIN routing y ON x.run_id = y.run_id AND x.seq_id = y.seq_id"
             " AND y.pos = x.pos + 1 AND x.layer = y.layer WHERE x.layer = %d AND x.slot = 0 AND y.slot = 0"
             " AND x.expert = y.expert", l);
    long long same = sql1(db, q);
    CHECK(st->rep_pairs[l] == 2 * (T - 1));
    CHECK_NEAR(st->rep_rate[l], (double)same / (2 * (T - 1)), 1e-12);
    for (int e = 0; e < E; e++) {
      snprintf(q, sizeof q, "SELECT COUNT(*) FROM routing r JOIN sequences s USING(run_id, seq_id) WHERE layer = %d"
               " AND expert = %d AND label = 'b'", l, e);
      CHECK(st->lab[((size_t)l * 2 + 1) * E + e] == sql1(db, q));
    }
  }
  /* token specialization: token id = pos % 10; layer 1 expert 0 always -> spec 1 */
  CHECK(st->M == 10 && st->tok_cnt[0] == 40);
  CHECK_NEAR(st->tok_spec[1], 1.0, 1e-12);
  /* G-test p-value: chi-square survival at known points */
  CHECK_NEAR(ana_chi2_sf(3.841458820694124, 1), 0.05, 1e-9);
  CHECK_NEAR(ana_chi2_sf(18.307038053275146, 10), 0.05, 1e-9);
  CHECK_NEAR(ana_chi2_sf(2.0, 2), exp(-1.0), 1e-12);
  ana_diag_free(&g);

  /* a counts-only run: balance rules still judge, no trace */
  exec(db, "INSERT INTO runs(run_id, family, n_layers, n_experts, top_k, record_level) VALUES (2, 'mixtral', 1, 4, 1, 'counts')");
  exec(db, "INSERT INTO expert_load VALUES (2,0,0,0,1000,0,0),(2,0,0,1,10,0,0),(2,0,0,2,10,0,0),(2,0,0,3,0,0,0)");
  REQUIRE(ana_diagnose(d, 2, NULL, &g, err, sizeof err) == 0);
  CHECK(!g.has_trace && g.n == 1 && !strcmp(g.layers[0].verdict, "collapsed") && (g.layers[0].flags & ANA_F_DEAD));
  ana_diag_free(&g);
  ana_db_close(d);
  sqlite3_close(db);
  return tst_done();
}
