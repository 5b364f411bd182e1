/* test_ana_balance.c — analysis/ against hand-built trace DBs with known answers:
 * balance metrics (hand values and an independent brute force), Switch/HF aux loss and
 * z-loss against a brute force over random routing/probs, SQL-aggregated loads, per-label
 * counts, latest-run and explicit-run selection, and the one-line open errors. */
#include "tests/tst.h"

#include <math.h>
#include <sqlite3.h>
#include <stdint.h>

#include "analysis/ana_balance.h"
#include "analysis/ana_db.h"
#include "probes/prb_sink.h"

static uint64_t rng = 88172645463325252ull;
static double urand(void) {
  rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}

static void exec(sqlite3 *db, const char *sql) {
  char *msg = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
    fprintf(stderr, "SQL error: %s\n  in: %.200s\n", msg, sql);
    exit(1);
  }
}

/* ---- brute-force reference metrics (independent of ana_balance.c) ------------------ */
static void brute(const long long *c, int E, double *cv, double *maxvio, double *h, double *gini,
                  double *mm, int *dead) {
  double tot = 0, mx = -1, mn = 1e300;
  *dead = 0;
  for (int i = 0; i < E; i++) { tot += c[i]; if (c[i] > mx) mx = c[i]; if (c[i] < mn) mn = c[i]; if (!c[i]) ++*dead; }
  double mean = tot / E, ss = 0, ent = 0, pair = 0;
  for (int i = 0; i < E; i++) {
    ss += (c[i] - mean) * (c[i] - mean);
    if (c[i]) ent += -(c[i] / tot) * log(c[i] / tot);
    for (int j = 0; j < E; j++) pair += fabs((double)c[i] - (double)c[j]);
  }
  *cv = sqrt(ss / E) / mean;
  *maxvio = (mx - mean) / mean;
  *h = ent / log(E);
  *gini = pair / (2.0 * E * E * mean);
  *mm = mn / mx;
}

static void test_metrics(void) {
  ana_balance b;
  int dead[16];
  long long even[4] = {10, 10, 10, 10};
  ana_balance_compute(even, 4, &b, dead);
  CHECK_NEAR(b.cv, 0, 1e-12);
  CHECK_NEAR(b.maxvio, 0, 1e-12);
  CHECK_NEAR(b.h_norm, 1, 1e-12);
  CHECK_NEAR(b.gini, 0, 1e-12);
  CHECK_NEAR(b.min_max, 1, 1e-12);
  CHECK(b.n_dead == 0 && b.total == 40);

  long long one[4] = {40, 0, 0, 0};
  ana_balance_compute(one, 4, &b, dead);
  CHECK(b.n_dead == 3 && dead[0] == 1 && dead[1] == 2 && dead[2] == 3);
  CHECK_NEAR(b.maxvio, 3, 1e-12);
  CHECK_NEAR(b.gini, 0.75, 1e-12);
  CHECK_NEAR(b.h_norm, 0, 1e-12);
  CHECK_NEAR(b.cv, sqrt(3.0), 1e-12);          /* std = sqrt((900+3*100)/4) = sqrt(300), mean 10 */
  CHECK_NEAR(b.min_max, 0, 1e-12);

  long long odd[8] = {3, 1, 4, 1, 5, 9, 2, 6};
  double cv, mv, h, g, mm;
  int nd;
  brute(odd, 8, &cv, &mv, &h, &g, &mm, &nd);
  ana_balance_compute(odd, 8, &b, dead);
  CHECK_NEAR(b.cv, cv, 1e-12);
  CHECK_NEAR(b.maxvio, mv, 1e-12);
  CHECK_NEAR(b.h_norm, h, 1e-12);
  CHECK_NEAR(b.gini, g, 1e-12);
  CHECK_NEAR(b.min_max, mm, 1e-12);
  CHECK_NEAR(b.maxvio, (9 - 31.0 / 8) / (31.0 / 8), 1e-12);   /* by hand: mean 3.875 */
  CHECK(b.n_dead == nd && nd == 0);

  long long zero[3] = {0, 0, 0};
  ana_balance_compute(zero, 3, &b, dead);
  CHECK(b.n_dead == 3 && isnan(b.cv) && isnan(b.gini));
}

/* ---- a random full-level run with a brute-force reference ------------------------- */
enum { L = 3, E = 6, K = 2, NSEQ = 3, NPOS = 40 };
static int sel[NSEQ][NPOS][L][K];
static float prob[NSEQ][NPOS][L][E], logit[NSEQ][NPOS][L][E];
static const char *labels[NSEQ] = {"code", "math", NULL};

static sqlite3 *make_db(const char *path) {
  unlink(path);
  char wal[4200];
  snprintf(wal, sizeof wal, "%s-wal", path); unlink(wal);
  sqlite3 *db;
  REQUIRE(sqlite3_open(path, &db) == SQLITE_OK);
  exec(db, prb_schema_sql);
  exec(db, "PRAGMA user_version = 1");
  return db;
}

/* Run 1 (counts level, 2 layers), run 2 (full level, random), run 3 (topk, tiny). */
static void fill_db(sqlite3 *db) {
  exec(db, "BEGIN");
  exec(db, "INSERT INTO runs(run_id, family, n_layers, n_experts, top_k, policy, record_level)"
           " VALUES (1, 'mixtral', 2, 4, 1, 'topk', 'counts'),"
           " (2, 'mixtral', 3, 6, 2, 'topk', 'full'), (3, 'qwen2_moe', 1, 4, 1, 'topk', 'topk')");
  /* run 1: layer 0 = [10,10,10,10] split over 2 batches; layer 1 = [40,0,0,0] */
  exec(db, "INSERT INTO expert_load VALUES (1,0,0,0,5,2.5,0),(1,1,0,0,5,2.5,0),(1,0,0,1,10,5,0),"
           "(1,0,0,2,10,5,0),(1,0,0,3,4,2,0),(1,1,0,3,6,3,0),"
           "(1,0,1,0,40,40,1),(1,0,1,1,0,0,0),(1,0,1,2,0,0,0),(1,0,1,3,0,0,0)");
  /* run 3: only one layer, routing rows for label tests */
  exec(db, "INSERT INTO sequences VALUES (3,0,'a','x',2),(3,1,'b','y',1)");
  exec(db, "INSERT INTO routing VALUES (3,0,0,0,0,1,1.0),(3,0,1,0,0,1,1.0),(3,1,0,0,0,2,1.0)");
  exec(db, "INSERT INTO expert_load VALUES (3,0,0,1,2,2,0),(3,0,0,2,1,1,0)");
  /* run 2 */
  sqlite3_stmt *sq, *rt, *rp, *el;
  REQUIRE(sqlite3_prepare_v2(db, "INSERT INTO sequences VALUES (2,?,?,'t',?)", -1, &sq, NULL) == 0);
  REQUIRE(sqlite3_prepare_v2(db, "INSERT INTO routing VALUES (2,?,?,?,?,?,?)", -1, &rt, NULL) == 0);
  REQUIRE(sqlite3_prepare_v2(db, "INSERT INTO router_probs VALUES (2,?,?,?,?,?)", -1, &rp, NULL) == 0);
  REQUIRE(sqlite3_prepare_v2(db, "INSERT INTO expert_load VALUES (2,?,?,?,?,?,0)", -1, &el, NULL) == 0);
  for (int s = 0; s < NSEQ; s++) {
    sqlite3_bind_int(sq, 1, s);
    if (labels[s]) sqlite3_bind_text(sq, 2, labels[s], -1, SQLITE_STATIC); else sqlite3_bind_null(sq, 2);
    sqlite3_bind_int(sq, 3, NPOS);
    sqlite3_step(sq); sqlite3_reset(sq);
    for (int l = 0; l < L; l++) {
      long long cnt[E] = {0};
      double ws[E] = {0};
      for (int p = 0; p < NPOS; p++) {
        float mx = -1e30f, z = 0;
        for (int e = 0; e < E; e++) {
          logit[s][p][l][e] = (float)(3 * urand() - 1.5 + (e == s ? 1.0 : 0.0));
          if (logit[s][p][l][e] > mx) mx = logit[s][p][l][e];
        }
        for (int e = 0; e < E; e++) z += expf(logit[s][p][l][e] - mx);
        for (int e = 0; e < E; e++) prob[s][p][l][e] = expf(logit[s][p][l][e] - mx) / z;
        /* choose K distinct experts; layer 2 never uses expert E-1 (planted dead expert) */
        int lim = l == 2 ? E - 1 : E;
        int a = (int)(urand() * lim), b2;
        do b2 = (int)(urand() * lim); while (b2 == a);
        sel[s][p][l][0] = a; sel[s][p][l][1] = b2;
        for (int k = 0; k < K; k++) {
          int e = sel[s][p][l][k];
          sqlite3_bind_int(rt, 1, s); sqlite3_bind_int(rt, 2, p); sqlite3_bind_int(rt, 3, l);
          sqlite3_bind_int(rt, 4, k); sqlite3_bind_int(rt, 5, e);
          sqlite3_bind_double(rt, 6, prob[s][p][l][e]);
          sqlite3_step(rt); sqlite3_reset(rt);
          cnt[e]++; ws[e] += prob[s][p][l][e];
        }
        sqlite3_bind_int(rp, 1, s); sqlite3_bind_int(rp, 2, p); sqlite3_bind_int(rp, 3, l);
        sqlite3_bind_blob(rp, 4, prob[s][p][l], (int)sizeof prob[s][p][l], SQLITE_STATIC);
        sqlite3_bind_blob(rp, 5, logit[s][p][l], (int)sizeof logit[s][p][l], SQLITE_STATIC);
        sqlite3_step(rp); sqlite3_reset(rp);
      }
      for (int e = 0; e < E; e++) {   /* batch = sequence */
        sqlite3_bind_int(el, 1, s); sqlite3_bind_int(el, 2, l); sqlite3_bind_int(el, 3, e);
        sqlite3_bind_int64(el, 4, cnt[e]); sqlite3_bind_double(el, 5, ws[e]);
        sqlite3_step(el); sqlite3_reset(el);
      }
    }
  }
  sqlite3_finalize(sq); sqlite3_finalize(rt); sqlite3_finalize(rp); sqlite3_finalize(el);
  exec(db, "COMMIT");
}

static void test_db(const char *path) {
  char err[512];
  ana_db *d = NULL;
  REQUIRE(ana_db_open(&d, path, err, sizeof err) == 0);
  ana_run run;
  CHECK(ana_run_get(d, -1, &run, err, sizeof err) == 0 && run.run_id == 3);   /* latest */
  CHECK(strcmp(run.family, "qwen2_moe") == 0);
  CHECK(ana_run_get(d, 1, &run, err, sizeof err) == 0 && run.run_id == 1 && run.top_k == 1);
  CHECK(strcmp(run.record_level, "counts") == 0);
  CHECK(ana_run_get(d, 42, &run, err, sizeof err) == -1);
  CHECKF(strstr(err, "no run 42") && strstr(err, "1..3") && !strchr(err, '\n'), "%s", err);

  /* run 1: SQL SUM over batches */
  ana_summary s;
  REQUIRE(ana_summary_get(d, 1, &s, err, sizeof err) == 0);
  CHECK(s.load.n_layers == 2 && s.load.n_experts == 4);
  CHECK(s.load.tokens[0] == 10 && s.load.tokens[3] == 10 && s.load.tokens[4] == 40);
  CHECK_NEAR(s.load.weight_sum[0], 5.0, 1e-12);
  CHECK(s.load.dropped[4] == 1);
  CHECK_NEAR(s.layer[0].cv, 0, 1e-12);
  CHECK_NEAR(s.layer[1].gini, 0.75, 1e-12);
  CHECK(s.overall.n_dead == 3 && s.overall.total == 80);
  CHECK_NEAR(s.overall.maxvio, 1.5, 1e-12);           /* mean of 0 and 3 */
  CHECK(isnan(s.loss.aux[0]) && isnan(s.loss.aux_overall) && isnan(s.loss.z_overall));
  CHECK(!s.has_routing && !s.has_probs);
  ana_labels lb;
  CHECK(ana_label_counts(d, &s.run, -1, &lb, err, sizeof err) == 1);
  CHECKF(strstr(err, "no routing rows") && strstr(err, "counts"), "%s", err);
  ana_summary_free(&s);

  /* run 2: aux and z-loss against a brute force over the arrays */
  REQUIRE(ana_summary_get(d, 2, &s, err, sizeof err) == 0);
  CHECK(s.load.n_layers == 3 && s.load.n_experts == E && s.has_routing && s.has_probs);
  double aux_all_f[E] = {0}, aux_all_p[E] = {0}, zs = 0;
  for (int l = 0; l < L; l++) {
    double f[E] = {0}, P[E] = {0}, zl = 0;
    long long cnt[E] = {0};
    for (int sq = 0; sq < NSEQ; sq++)
      for (int p = 0; p < NPOS; p++) {
        double ex = 0;
        for (int e = 0; e < E; e++) {
          P[e] += prob[sq][p][l][e];
          ex += exp((double)logit[sq][p][l][e]);
          double onehot = 0;
          for (int k = 0; k < K; k++) onehot += sel[sq][p][l][k] == e;
          f[e] += onehot;
          cnt[e] += (long long)onehot;
        }
        zl += log(ex) * log(ex);
      }
    double T = NSEQ * NPOS, aux = 0;
    for (int e = 0; e < E; e++) {
      aux += (f[e] / T) * (P[e] / T);
      aux_all_f[e] += f[e]; aux_all_p[e] += P[e];
      CHECK(s.load.tokens[(size_t)l * E + e] == cnt[e]);
    }
    CHECK_NEAR(s.loss.aux[l], E * aux, 1e-6);
    CHECK_NEAR(s.loss.z[l], zl / T, 1e-6);
    CHECK(s.loss.n_tokens[l] == NSEQ * NPOS);
    zs += zl;
    double cv, mv, h, g, mm;
    int nd;
    brute(cnt, E, &cv, &mv, &h, &g, &mm, &nd);
    CHECK_NEAR(s.layer[l].cv, cv, 1e-12);
    CHECK_NEAR(s.layer[l].gini, g, 1e-12);
    CHECK_NEAR(s.layer[l].h_norm, h, 1e-12);
    CHECK(s.layer[l].n_dead == nd);
  }
  double Tall = (double)L * NSEQ * NPOS, aux_all = 0;
  for (int e = 0; e < E; e++) aux_all += (aux_all_f[e] / Tall) * (aux_all_p[e] / Tall);
  CHECK_NEAR(s.loss.aux_overall, E * aux_all, 1e-6);
  CHECK_NEAR(s.loss.z_overall, zs / Tall, 1e-6);
  CHECK(s.layer[2].n_dead == 1 && s.dead[2 * E] == E - 1);
  /* aux loss is >= k-ish scale: sanity, balanced would be exactly K */
  CHECK(s.loss.aux[0] > 0.5 * K && s.loss.aux[0] < 2.0 * K);

  /* labels: all layers, then one layer, against direct counts */
  REQUIRE(ana_label_counts(d, &s.run, -1, &lb, err, sizeof err) == 0);
  CHECK(lb.n_layers == 3 && lb.n_labels == 3 && lb.n_experts == E && lb.has_real_label);
  CHECK(strcmp(lb.labels[0], "(unlabelled)") == 0 && strcmp(lb.labels[1], "code") == 0 &&
        strcmp(lb.labels[2], "math") == 0);
  static const int lab_of_seq[NSEQ] = {1, 2, 0};
  int ok = 1;
  for (int l = 0; l < L; l++)
    for (int sq = 0; sq < NSEQ; sq++)
      for (int e = 0; e < E; e++) {
        long long want = 0;
        for (int p = 0; p < NPOS; p++)
          for (int k = 0; k < K; k++) want += sel[sq][p][l][k] == e;
        if (lb.counts[((size_t)l * 3 + lab_of_seq[sq]) * E + e] != want) ok = 0;
      }
  CHECK(ok);
  ana_labels_free(&lb);
  REQUIRE(ana_label_counts(d, &s.run, 1, &lb, err, sizeof err) == 0);
  CHECK(lb.n_layers == 1 && lb.layer_ids[0] == 1);
  ana_labels_free(&lb);
  ana_summary_free(&s);

  /* run 3: tiny label case by hand */
  REQUIRE(ana_run_get(d, 3, &run, err, sizeof err) == 0);
  REQUIRE(ana_label_counts(d, &run, -1, &lb, err, sizeof err) == 0);
  CHECK(lb.n_labels == 2 && lb.n_experts == 4);
  CHECK(lb.counts[0 * 4 + 1] == 2 && lb.counts[1 * 4 + 2] == 1 && lb.counts[0 * 4 + 2] == 0);
  ana_labels_free(&lb);
  ana_db_close(d);
}

static void test_open_errors(const char *tmp) {
  char err[512], p[4096];
  ana_db *d = NULL;
  snprintf(p, sizeof p, "%s/ana_no_such.db", tmp);
  unlink(p);
  CHECK(ana_db_open(&d, p, err, sizeof err) == -1 && d == NULL);
  CHECKF(strstr(err, "cannot open trace DB") && strstr(err, "No such file") && !strchr(err, '\n'), "%s", err);

  snprintf(p, sizeof p, "%s/ana_text.db", tmp);
  FILE *f = fopen(p, "w");
  REQUIRE(f);
  fputs("this is not a database, just some text that is long enough to fill a header.....\n", f);
  fclose(f);
  CHECK(ana_db_open(&d, p, err, sizeof err) == -1);
  CHECKF(strstr(err, "not a moescope trace DB") && strstr(err, "ana_text.db"), "%s", err);

  snprintf(p, sizeof p, "%s/ana_other.db", tmp);
  unlink(p);
  sqlite3 *db;
  REQUIRE(sqlite3_open(p, &db) == SQLITE_OK);
  exec(db, "CREATE TABLE t(x)");
  sqlite3_close(db);
  CHECK(ana_db_open(&d, p, err, sizeof err) == -1);
  CHECKF(strstr(err, "no runs table"), "%s", err);

  snprintf(p, sizeof p, "%s/ana_v9.db", tmp);
  db = make_db(p);
  exec(db, "PRAGMA user_version = 9");
  sqlite3_close(db);
  CHECK(ana_db_open(&d, p, err, sizeof err) == -1);
  CHECKF(strstr(err, "unsupported schema version 9"), "%s", err);

  snprintf(p, sizeof p, "%s/ana_empty.db", tmp);
  db = make_db(p);
  sqlite3_close(db);
  REQUIRE(ana_db_open(&d, p, err, sizeof err) == 0);
  ana_run run;
  CHECK(ana_run_get(d, -1, &run, err, sizeof err) == -1);
  CHECKF(strstr(err, "has no runs"), "%s", err);
  ana_db_close(d);
}

int main(void) {
  const char *tmp = getenv("MOESCOPE_TMP");
  if (!tmp) tmp = "/tmp";
  test_metrics();
  char path[4096];
  snprintf(path, sizeof path, "%s/ana_balance.db", tmp);
  sqlite3 *db = make_db(path);
  fill_db(db);
  sqlite3_close(db);
  test_db(path);
  test_open_errors(tmp);
  return tst_done();
}
