/* test_report_bias.c — the flow figures of `moescope report` on a real run: the shipped
 * tiny-mixtral scores 256 tokens of demo/texts/code.txt with `--route bias:gamma=0.01` in
 * forward batches of 32 tokens (8 batches) through the CLI, then `report`:
 *  - bias_trajectory and transitions_sankey exist as valid PNG (signature + IHDR) and SVG
 *    and are referenced by index.html / report.md;
 *  - ana_bias_trajectory on that DB: 8 batches x 4 MoE layers x 8 experts, the last
 *    batch's bias equals the router_bias rows value for value, the first batch's bias is 0
 *    (the policy starts unbiased), and the MaxVio of the last batch equals the one computed
 *    here from expert_load in SQL;
 *  - a native run appended to the DB reports without bias_trajectory and says so. */
#include <sqlite3.h>

#include "analysis/ana_bias.h"
#include "tests/tst.h"
#include "tests/util/tst_files.h"
#include "tests/util/tst_run.h"

static int valid_png(const char *path, unsigned *w, unsigned *h) {
  unsigned char b[32];
  FILE *f = fopen(path, "rb");
  size_t n = f ? fread(b, 1, sizeof b, f) : 0;
  if (f) fclose(f);
  static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (n < 24 || memcmp(b, sig, 8) || memcmp(b + 12, "IHDR", 4)) return 0;
  *w = (unsigned)b[16] << 24 | (unsigned)b[17] << 16 | (unsigned)b[18] << 8 | b[19];
  *h = (unsigned)b[20] << 24 | (unsigned)b[21] << 16 | (unsigned)b[22] << 8 | b[23];
  return 1;
}

static int valid_svg(const char *path) {
  char b[8] = "";
  FILE *f = fopen(path, "rb");
  size_t n = f ? fread(b, 1, 5, f) : 0;
  if (f) fclose(f);
  return n == 5 && (!strncmp(b, "<?xml", 5) || !strncmp(b, "<svg", 4));
}

int main(void) {
  const char *tmp = tst_tmp_dir(), *src = getenv("MOESCOPE_SRC");
  if (!src) src = ".";
  char db[2048], out[2048], p[4200];
  tst_out o;
  snprintf(db, sizeof db, "%s/report_bias_e2e.db", tmp);
  remove(db);
  tst_sh(&o, "%s run --model %s/models/tiny-mixtral --file %s/demo/texts/code.txt --max-tokens 256 --batch 32"
             " --route bias:gamma=0.01 --db %s --quiet", tst_bin(), src, src, db);
  REQUIRE(o.status == 0);
  snprintf(out, sizeof out, "%s/report_bias_e2e", tmp);
  tst_sh(&o, "rm -rf %s && %s report %s -o %s", out, tst_bin(), db, out);
  CHECKF(o.status == 0, "%s", o.err);
  static const char *figs[2] = {"bias_trajectory", "transitions_sankey"};
  snprintf(p, sizeof p, "%s/index.html", out);
  char *html = tst_slurp(p, NULL);
  snprintf(p, sizeof p, "%s/report.md", out);
  char *md = tst_slurp(p, NULL);
  REQUIRE(html && md);
  for (int i = 0; i < 2; i++) {
    unsigned w = 0, h = 0;
    snprintf(p, sizeof p, "%s/%s.png", out, figs[i]);
    CHECKF(valid_png(p, &w, &h) && w >= 600 && w <= 2000 && h >= 300 && h <= 1500, "%s %ux%u", p, w, h);
    snprintf(p, sizeof p, "%s/%s.svg", out, figs[i]);
    CHECKF(valid_svg(p), "%s", p);
    char needle[96];
    snprintf(needle, sizeof needle, "id=\"%s\"><img", figs[i]);
    CHECKF(strstr(html, needle), "html lacks %s", figs[i]);
    snprintf(needle, sizeof needle, "(%s.png)", figs[i]);
    CHECKF(strstr(md, needle), "md lacks %s", figs[i]);
  }
  CHECK(!strstr(md, "no bias_trajectory figure"));
  free(html); free(md);

  /* the data function against the DB rows */
  ana_db *d;
  char err[512];
  REQUIRE(ana_db_open(&d, db, err, sizeof err) == 0);
  ana_bias_traj t;
  REQUIRE(ana_bias_trajectory(d, -1, &t, err, sizeof err) == 0);
  CHECKF(t.B == 8 && t.L == 4 && t.E == 8, "B %d L %d E %d", t.B, t.L, t.E);
  sqlite3 *db3;
  REQUIRE(sqlite3_open_v2(db, &db3, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
  sqlite3_stmt *st;
  REQUIRE(sqlite3_prepare_v2(db3, "SELECT layer, expert, bias FROM router_bias WHERE batch_id ="
                             " (SELECT MAX(batch_id) FROM router_bias) ORDER BY layer, expert", -1, &st, NULL) == 0);
  int rows = 0, nonzero = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    int layer = sqlite3_column_int(st, 0), e = sqlite3_column_int(st, 1), li = -1;
    for (int i = 0; i < t.L; i++) if (t.layer_ids[i] == layer) li = i;
    REQUIRE(li >= 0 && e >= 0 && e < t.E);
    double v = sqlite3_column_double(st, 2);
    CHECKF(t.bias[ana_bias_cell(&t, li, t.B - 1, e)] == v, "layer %d expert %d: %g vs %g", layer, e,
           t.bias[ana_bias_cell(&t, li, t.B - 1, e)], v);
    nonzero += v != 0;
    rows++;
  }
  sqlite3_finalize(st);
  CHECK(rows == t.L * t.E && nonzero > 0);
  for (int li = 0; li < t.L; li++)
    for (int e = 0; e < t.E; e++) CHECK(t.bias[ana_bias_cell(&t, li, 0, e)] == 0);
  /* MaxVio of the last batch from expert_load in SQL */
  REQUIRE(sqlite3_prepare_v2(db3, "SELECT layer, MAX(tokens) * 8.0 / SUM(tokens) - 1 FROM expert_load WHERE batch_id ="
                             " (SELECT MAX(batch_id) FROM router_bias) GROUP BY layer ORDER BY layer", -1, &st, NULL) == 0);
  rows = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    CHECK_NEAR(t.maxvio[(size_t)rows * t.B + t.B - 1], sqlite3_column_double(st, 1), 1e-12);
    rows++;
  }
  sqlite3_finalize(st);
  CHECK(rows == t.L);
  printf("MaxVio first -> last batch:");
  for (int li = 0; li < t.L; li++)
    printf(" L%d %.3f -> %.3f;", t.layer_ids[li], t.maxvio[(size_t)li * t.B], t.maxvio[(size_t)li * t.B + t.B - 1]);
  printf("\n");
  sqlite3_close(db3);
  ana_bias_free(&t);
  ana_db_close(d);

  /* a native run: no bias figure, a note saying why */
  tst_sh(&o, "%s run --model %s/models/tiny-mixtral --file %s/demo/texts/code.txt --max-tokens 64 --db %s --quiet",
         tst_bin(), src, src, db);
  REQUIRE(o.status == 0);
  tst_sh(&o, "rm -rf %s && %s report %s -o %s --format md", out, tst_bin(), db, out);
  CHECKF(o.status == 0, "%s", o.err);
  snprintf(p, sizeof p, "%s/bias_trajectory.png", out);
  CHECK(access(p, F_OK) != 0);
  snprintf(p, sizeof p, "%s/transitions_sankey.png", out);
  CHECK(access(p, F_OK) == 0);
  snprintf(p, sizeof p, "%s/report.md", out);
  md = tst_slurp(p, NULL);
  CHECK(md && strstr(md, "no bias_trajectory figure"));
  free(md);
  return tst_done();
}
