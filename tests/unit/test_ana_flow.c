/* test_ana_flow.c — the cross-layer expert flow (analysis/ana_flow.c) behind the Sankey
 * figure, and the figure itself (reports/rep_sankey.c), on hand-built routing rows:
 * 3 MoE layers (model layers 0, 2, 4), 8 experts, k = 2, 300 tokens in 3 sequences. The
 * primary expert (slot 0, weight 0.7) follows a planted rule: every token on expert 2 at
 * layer 0 goes to expert 5 at layer 2; other tokens move pseudo-randomly; the secondary
 * slot (weight 0.3) is noise and must not count. Checked:
 *  - ribbon 2 -> 5 of pair 0 carries exactly the tokens with primary 2 at layer 0, and
 *    expert 2 has no other outgoing ribbon;
 *  - every transition count equals the count made here by hand, all ribbons of a pair sum
 *    to the token count, every node column sums to it, nodes = primary counts;
 *  - thresholds: kept ribbons are sorted, >= min_share x tokens, at most max_ribbons; the
 *    first dropped one is below the share or beyond the limit;
 *  - `report` writes transitions_sankey (PNG signature + IHDR, SVG) and lists it in
 *    index.html / report.md / report.tex. */
#include "tests/tst.h"
#include "tests/util/tst_files.h"

#include <sqlite3.h>
#include <stdint.h>

#include "analysis/ana_flow.h"
#include "probes/prb_sink.h"
#include "reports/rep_commands.h"

enum { L = 3, E = 8, K = 2, NSEQ = 3, NPOS = 100, NTOK = NSEQ * NPOS };
static const int lay_ids[L] = {0, 2, 4};
static int prim[NTOK][L];

static void exec(sqlite3 *db, const char *sql) {
  char *msg = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
    fprintf(stderr, "SQL error: %s\n  in: %.200s\n", msg, sql);
    exit(1);
  }
}

static void build(const char *path) {
  unlink(path);
  sqlite3 *db;
  REQUIRE(sqlite3_open(path, &db) == SQLITE_OK);
  exec(db, prb_schema_sql);
  exec(db, "PRAGMA user_version = 1");
  exec(db, "BEGIN");
  exec(db, "INSERT INTO runs(run_id, family, n_layers, n_experts, top_k, policy, record_level, model_path, command_line)"
           " VALUES (1, 'mixtral', 5, 8, 2, 'native', 'topk', 'm', 'x')");
  sqlite3_stmt *sq, *rt, *el;
  REQUIRE(sqlite3_prepare_v2(db, "INSERT INTO sequences VALUES (1,?,'t','t',?)", -1, &sq, NULL) == 0);
  REQUIRE(sqlite3_prepare_v2(db, "INSERT INTO routing VALUES (1,?,?,?,?,?,?)", -1, &rt, NULL) == 0);
  REQUIRE(sqlite3_prepare_v2(db, "INSERT INTO expert_load VALUES (1,0,?,?,?,0,0)", -1, &el, NULL) == 0);
  long long cnt[L][E] = {{0}};
  uint32_t r = 777;
  for (int s = 0; s < NSEQ; s++) {
    sqlite3_bind_int(sq, 1, s); sqlite3_bind_int(sq, 2, NPOS); sqlite3_step(sq); sqlite3_reset(sq);
    for (int p = 0; p < NPOS; p++) {
      int tok = s * NPOS + p;
      for (int l = 0; l < L; l++) {
        r = r * 1103515245u + 12345u;
        int a = (int)((r >> 16) % E);
        /* skewed so that some flows are small: expert 7 rare */
        if (a == 7 && ((r >> 8) & 3)) a = 6;
        if (l == 1 && prim[tok][0] == 2) a = 5;   /* the planted flow */
        prim[tok][l] = a;
        int b = (a + 1 + (int)((r >> 24) % (E - 1))) % E;
        int ex[K] = {a, b};
        double w[K] = {0.7, 0.3};
        for (int k = 0; k < K; k++) {
          sqlite3_bind_int(rt, 1, s); sqlite3_bind_int(rt, 2, p); sqlite3_bind_int(rt, 3, lay_ids[l]);
          sqlite3_bind_int(rt, 4, k); sqlite3_bind_int(rt, 5, ex[k]); sqlite3_bind_double(rt, 6, w[k]);
          sqlite3_step(rt); sqlite3_reset(rt);
          cnt[l][ex[k]]++;
        }
      }
    }
  }
  for (int l = 0; l < L; l++)
    for (int e = 0; e < E; e++) {
      sqlite3_bind_int(el, 1, lay_ids[l]); sqlite3_bind_int(el, 2, e); sqlite3_bind_int64(el, 3, cnt[l][e]);
      sqlite3_step(el); sqlite3_reset(el);
    }
  sqlite3_finalize(sq); sqlite3_finalize(rt); sqlite3_finalize(el);
  exec(db, "COMMIT");
  sqlite3_close(db);
}

static void check_thresholds(const ana_flow *f, int max_r, double share) {
  for (int l = 0; l + 1 < L; l++) {
    const ana_ribbon *r = f->rib + (size_t)l * E * E;
    long long thr_n = f->pair_n[l];
    long long shown = 0;
    CHECK(f->n_rib[l] <= f->n_all[l]);
    if (max_r > 0) CHECK(f->n_rib[l] <= max_r);
    for (int i = 0; i < f->n_all[l]; i++) {
      if (i > 0) CHECK(r[i - 1].n >= r[i].n);
      if (i < f->n_rib[l]) { CHECK((double)r[i].n >= share * thr_n); shown += r[i].n; }
    }
    if (f->n_rib[l] < f->n_all[l]) {
      const ana_ribbon *x = &r[f->n_rib[l]];
      CHECK((double)x->n < share * thr_n || (max_r > 0 && f->n_rib[l] == max_r));
    }
    CHECK(shown == f->shown[l]);
  }
}

static void test_flow(const char *path) {
  ana_db *d;
  char err[512];
  REQUIRE(ana_db_open(&d, path, err, sizeof err) == 0);
  ana_run run;
  REQUIRE(ana_run_get(d, -1, &run, err, sizeof err) == 0);
  ana_trace t;
  REQUIRE(ana_trace_load(d, &run, &t, err, sizeof err) == 0);
  ana_struct st;
  REQUIRE(ana_struct_compute(&t, NULL, &st, err, sizeof err) == 0);
  REQUIRE(st.L == L && st.E == E);

  long long want[L - 1][E][E] = {{{0}}}, nodes[L][E] = {{0}}, n2 = 0;
  for (int tok = 0; tok < NTOK; tok++) {
    for (int l = 0; l < L; l++) nodes[l][prim[tok][l]]++;
    for (int l = 0; l + 1 < L; l++) want[l][prim[tok][l]][prim[tok][l + 1]]++;
    n2 += prim[tok][0] == 2;
  }
  REQUIRE(n2 > 10);

  /* everything kept */
  ana_flow f;
  REQUIRE(ana_flow_compute(&st, 0, 0, &f, err, sizeof err) == 0);
  CHECK(f.L == L && f.E == E);
  for (int l = 0; l + 1 < L; l++) {
    CHECK(f.pair_n[l] == NTOK);
    CHECK(f.n_rib[l] == f.n_all[l] && f.shown[l] == NTOK);
    long long sum = 0;
    int nz = 0;
    for (int a = 0; a < E; a++) for (int b = 0; b < E; b++) nz += want[l][a][b] > 0;
    CHECK(f.n_all[l] == nz);
    for (int i = 0; i < f.n_all[l]; i++) {
      const ana_ribbon *r = &f.rib[(size_t)l * E * E + i];
      CHECKF(r->n == want[l][r->src][r->dst], "pair %d %d->%d: %lld want %lld", l, r->src, r->dst, r->n,
             want[l][r->src][r->dst]);
      sum += r->n;
      if (l == 0 && r->src == 2) CHECKF(r->dst == 5 && r->n == n2, "2->%d carries %lld (n2 %lld)", r->dst, r->n, n2);
    }
    CHECK(sum == NTOK);
  }
  for (int l = 0; l < L; l++) {
    long long sum = 0;
    for (int e = 0; e < E; e++) { CHECK(f.node[(size_t)l * E + e] == nodes[l][e]); sum += f.node[(size_t)l * E + e]; }
    CHECK(sum == NTOK);
  }
  check_thresholds(&f, 0, 0);
  ana_flow_free(&f);

  /* the report's thresholds, a tight count limit, a high share */
  struct { int max_r; double share; } cases[3] = {{40, 0.01}, {3, 0.0}, {0, 0.03}};
  for (int c = 0; c < 3; c++) {
    REQUIRE(ana_flow_compute(&st, cases[c].max_r, cases[c].share, &f, err, sizeof err) == 0);
    check_thresholds(&f, cases[c].max_r, cases[c].share);
    if (c == 1) for (int l = 0; l + 1 < L; l++) CHECK(f.n_rib[l] == 3);
    /* the planted ribbon is the largest of pair 0 and survives every threshold */
    CHECK(f.n_rib[0] >= 1 && f.rib[0].src == 2 && f.rib[0].dst == 5 && f.rib[0].n == n2);
    if (c == 2) {   /* some flows fall under 3% of 300 = 9 tokens */
      int under = 0;
      for (int a = 0; a < E; a++) for (int b = 0; b < E; b++) under += want[1][a][b] > 0 && want[1][a][b] < 9;
      CHECK(under > 0 && f.n_all[1] - f.n_rib[1] == under);
    }
    ana_flow_free(&f);
  }
  ana_struct_free(&st);
  ana_trace_free(&t);
  ana_db_close(d);
}

static void test_report(const char *db, const char *tmp) {
  char out[4096], p[4600], err[512];
  snprintf(out, sizeof out, "%s/ana_flow_report", tmp);
  CHECKF(rep_report_cmd(db, -1, out, err, sizeof err) == 0, "%s", err);
  snprintf(p, sizeof p, "%s/transitions_sankey.png", out);
  CHECKF(tst_png_ok(p, 600, 2000, 300, 1500), "%s", p);
  snprintf(p, sizeof p, "%s/transitions_sankey.svg", out);
  CHECKF(tst_svg_ok(p), "%s", p);
  snprintf(p, sizeof p, "%s/index.html", out);
  char *html = tst_slurp(p, NULL);
  snprintf(p, sizeof p, "%s/report.md", out);
  char *md = tst_slurp(p, NULL);
  snprintf(p, sizeof p, "%s/report.tex", out);
  char *tex = tst_slurp(p, NULL);
  REQUIRE(html && md && tex);
  CHECK(strstr(html, "id=\"transitions_sankey\"><img"));
  CHECK(strstr(md, "(transitions_sankey.png)"));
  CHECK(strstr(tex, "{transitions_sankey.pdf}"));
  free(html); free(md); free(tex);
}

int main(void) {
  const char *tmp = tst_tmp_dir();
  char db[4096];
  snprintf(db, sizeof db, "%s/ana_flow.db", tmp);
  build(db);
  test_flow(db);
  test_report(db, tmp);
  return tst_done();
}
