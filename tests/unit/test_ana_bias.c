/* test_ana_bias.c — the router-bias trajectory (analysis/ana_bias.c) and its report figure
 * (reports/rep_bias.c) on a hand-built trace DB:
 *  - run 1 (bias policy, counts level): router_bias rows for MoE layers 1 and 3, batches
 *    0, 1, 2 of 4 experts, inserted in scrambled order; expert_load rows per batch with one
 *    missing expert (0 tokens), one layer-batch with no rows at all (MaxVio NaN) and one
 *    batch (7) without bias rows (ignored). Checked: layers, batch order, every bias value,
 *    loads, slots and MaxVio = max/mean - 1 per batch computed by hand;
 *  - run 2 (native, no router_bias rows) -> 1 with a message; a DB without the router_bias
 *    table -> 1 as well; unknown run -> -1;
 *  - `report` of run 1 draws bias_trajectory (PNG signature + IHDR, SVG, PDF, referenced by
 *    index.html, report.md and report.tex); `report` of run 2 has no such figure and says
 *    why in the Skipped note. */
#include "tests/tst.h"
#include "tests/util/tst_files.h"

#include <sqlite3.h>

#include "analysis/ana_bias.h"
#include "probes/prb_sink.h"
#include "reports/rep_commands.h"

static void exec(sqlite3 *db, const char *sql) {
  char *msg = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
    fprintf(stderr, "SQL error: %s\n  in: %.200s\n", msg, sql);
    exit(1);
  }
}

enum { E = 4, NB = 3 };
static const int lays[2] = {1, 3};
/* bias of (layer index, batch, expert): distinct, exactly representable */
static double bias_of(int li, int b, int e) { return (li + 1) * 0.5 - b * 0.125 + e * 0.0625 - 0.25; }
/* loads[li][b][e]; -1 = no expert_load row */
static const long long loads[2][NB][E] = {
  {{4, 2, 1, 1}, {3, 2, 2, 1}, {2, 2, 2, 2}},
  {{8, 0, 0, 0}, {5, 3, -1, -1}, {-1, -1, -1, -1}}};
/* MaxVio by hand: mean = total / 4 */
static const double maxvio[2][NB] = {{4.0 / 2 - 1, 3.0 / 2 - 1, 0.0}, {8.0 / 2 - 1, 5.0 / 2 - 1, NAN}};
static const long long slots[2][NB] = {{8, 8, 8}, {8, 8, 0}};

static void build(const char *path, int drop_table) {
  unlink(path);
  sqlite3 *db;
  REQUIRE(sqlite3_open(path, &db) == SQLITE_OK);
  exec(db, prb_schema_sql);
  exec(db, "PRAGMA user_version = 1");
  if (drop_table) exec(db, "DROP TABLE router_bias");
  exec(db, "BEGIN");
  exec(db, "INSERT INTO runs(run_id, family, n_layers, n_experts, top_k, policy, record_level, model_path, command_line)"
           " VALUES (1, 'mixtral', 4, 4, 2, 'bias:gamma=0.125,k=2,score=softmax,renorm=1', 'counts', 'm', 'x'),"
           " (2, 'mixtral', 4, 4, 2, 'native', 'counts', 'm', 'y')");
  char q[512];
  /* scrambled insertion order: batch 2, 0, 1; experts descending */
  static const int border[NB] = {2, 0, 1};
  for (int bi = 0; bi < NB && !drop_table; bi++)
    for (int li = 1; li >= 0; li--)
      for (int e = E - 1; e >= 0; e--) {
        int b = border[bi];
        snprintf(q, sizeof q, "INSERT INTO router_bias VALUES (1, %d, %d, %d, %.17g)", b, lays[li], e, bias_of(li, b, e));
        exec(db, q);
      }
  for (int li = 0; li < 2; li++)
    for (int b = 0; b < NB; b++)
      for (int e = 0; e < E; e++) {
        if (loads[li][b][e] < 0) continue;
        for (int run = 1; run <= 2; run++) {
          snprintf(q, sizeof q, "INSERT INTO expert_load VALUES (%d, %d, %d, %d, %lld, %lld, 0)", run, b, lays[li], e,
                   loads[li][b][e], loads[li][b][e]);
          exec(db, q);
        }
      }
  /* batch 7 has loads but no bias rows: not part of the trajectory */
  exec(db, "INSERT INTO expert_load VALUES (1, 7, 1, 0, 100, 1, 0), (1, 7, 3, 2, 100, 1, 0)");
  exec(db, "COMMIT");
  sqlite3_close(db);
}

static void test_data(const char *db) {
  ana_db *d;
  char err[512];
  REQUIRE(ana_db_open(&d, db, err, sizeof err) == 0);
  ana_bias_traj t;
  int rc = ana_bias_trajectory(d, 1, &t, err, sizeof err);
  REQUIRE(rc == 0);
  CHECK(t.run_id == 1 && t.L == 2 && t.E == E && t.B == NB);
  CHECK(t.layer_ids[0] == 1 && t.layer_ids[1] == 3);
  for (int b = 0; b < NB; b++) CHECK(t.batch_ids[b] == b);
  for (int li = 0; li < 2; li++)
    for (int b = 0; b < NB; b++) {
      for (int e = 0; e < E; e++) {
        CHECKF(t.bias[ana_bias_cell(&t, li, b, e)] == bias_of(li, b, e), "bias l%d b%d e%d", li, b, e);
        long long want = loads[li][b][e] < 0 ? 0 : loads[li][b][e];
        CHECK(t.load[ana_bias_cell(&t, li, b, e)] == want);
      }
      CHECK(t.slots[(size_t)li * NB + b] == slots[li][b]);
      double m = t.maxvio[(size_t)li * NB + b];
      if (isnan(maxvio[li][b])) CHECKF(isnan(m), "maxvio l%d b%d = %g", li, b, m);
      else CHECKF(m == maxvio[li][b], "maxvio l%d b%d = %g want %g", li, b, m, maxvio[li][b]);
    }
  ana_bias_free(&t);
  /* latest run (2) has no bias rows */
  rc = ana_bias_trajectory(d, -1, &t, err, sizeof err);
  CHECKF(rc == 1 && strstr(err, "no router_bias rows") && t.L == 0 && t.bias == NULL, "%d %s", rc, err);
  ana_bias_free(&t);
  CHECK(ana_bias_trajectory(d, 9, &t, err, sizeof err) == -1 && strstr(err, "9"));
  ana_db_close(d);
}

static void test_report(const char *db, const char *tmp) {
  char out[4096], p[4600], err[512];
  snprintf(out, sizeof out, "%s/ana_bias_report", tmp);
  CHECKF(rep_report_cmd(db, 1, out, err, sizeof err) == 0, "%s", err);
  snprintf(p, sizeof p, "%s/bias_trajectory.png", out);
  CHECKF(tst_png_ok(p, 600, 2000, 300, 1500), "%s", p);
  snprintf(p, sizeof p, "%s/bias_trajectory.svg", out);
  CHECKF(tst_svg_ok(p), "%s", p);
  snprintf(p, sizeof p, "%s/bias_trajectory.pdf", out);
  CHECKF(tst_pdf_ok(p), "%s", p);
  snprintf(p, sizeof p, "%s/index.html", out);
  char *html = tst_slurp(p, NULL);
  snprintf(p, sizeof p, "%s/report.md", out);
  char *md = tst_slurp(p, NULL);
  snprintf(p, sizeof p, "%s/report.tex", out);
  char *tex = tst_slurp(p, NULL);
  REQUIRE(html && md && tex);
  CHECK(strstr(html, "id=\"bias_trajectory\"><img"));
  CHECK(strstr(md, "(bias_trajectory.png)"));
  CHECK(strstr(tex, "{bias_trajectory.pdf}"));
  CHECK(!strstr(md, "no bias_trajectory figure"));
  free(html); free(md); free(tex);

  snprintf(out, sizeof out, "%s/ana_bias_report2", tmp);
  CHECKF(rep_report_cmd(db, 2, out, err, sizeof err) == 0, "%s", err);
  snprintf(p, sizeof p, "%s/bias_trajectory.png", out);
  CHECK(access(p, F_OK) != 0);
  snprintf(p, sizeof p, "%s/report.md", out);
  md = tst_slurp(p, NULL);
  CHECK(md && strstr(md, "Skipped:") && strstr(md, "run 2 has no router_bias rows") && strstr(md, "no bias_trajectory figure"));
  free(md);
}

int main(void) {
  const char *tmp = tst_tmp_dir();
  char db[4096];
  snprintf(db, sizeof db, "%s/ana_bias.db", tmp);
  build(db, 0);
  test_data(db);
  test_report(db, tmp);
  /* a DB without the router_bias table (older or foreign trace) */
  snprintf(db, sizeof db, "%s/ana_bias_notable.db", tmp);
  build(db, 1);
  ana_db *d;
  char err[512];
  REQUIRE(ana_db_open(&d, db, err, sizeof err) == 0);
  ana_bias_traj t;
  CHECKF(ana_bias_trajectory(d, 1, &t, err, sizeof err) == 1, "%s", err);
  ana_bias_free(&t);
  ana_db_close(d);
  return tst_done();
}
