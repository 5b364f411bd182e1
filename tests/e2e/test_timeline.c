/* test_timeline.c — the report's timeline on a real CPU run (no GPU): the shipped
 * tiny-mixtral scores 40 tokens of a demo text in forward batches of 8 (5 batches) at level
 * full through the CLI, then
 *  - rep_timeline_collect draws from the CPU op timers: one box per `ops` row of the first
 *    two batches (counted in SQL), one track per (device, thread), `expert e` rows nested on
 *    lane 1 inside their `experts` box, categories from the op names, boxes in time order,
 *    one NVTX layer band per (batch, layer);
 *  - `moescope report --timeline-batches 2` writes gpu_timeline.{png,svg,pdf} (valid PNG /
 *    SVG / PDF), references it from index.html, report.md and report.tex, says "CPU op
 *    timers" in its caption, and writes the time tables (time_layer, time_op, time_expert,
 *    time_imbalance) into every document and tables/;
 *  - --timeline-batches with a bad value is a usage error (exit 2, one line). */
#include <sqlite3.h>

#include "analysis/ana_db.h"
#include "reports/rep_timeline.h"
#include "tests/tst.h"
#include "tests/util/tst_files.h"
#include "tests/util/tst_run.h"

static long long qi(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st;
  long long v = -999;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) { fprintf(stderr, "SQL: %s\n", sqlite3_errmsg(db)); return v; }
  if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

int main(void) {
  const char *tmp = tst_tmp_dir(), *src = getenv("MOESCOPE_SRC");
  if (!src) src = ".";
  char db[2048], out[2048], p[2300], err[512] = "";
  tst_out o;
  snprintf(db, sizeof db, "%s/timeline_e2e.db", tmp);
  remove(db);
  tst_sh(&o, "%s run --model %s/models/tiny-mixtral --file %s/demo/texts/code.txt --label code --max-tokens 40"
             " --batch 8 --record full --db %s --quiet", tst_bin(), src, src, db);
  REQUIRE(o.status == 0);

  /* the data */
  ana_db *d = NULL;
  REQUIRE(ana_db_open(&d, db, err, sizeof err) == 0);
  rep_timeline t;
  REQUIRE(rep_timeline_collect(d, -1, -1, 2, 0, &t, err, sizeof err) == 0);
  sqlite3 *s = d->db;
  CHECK(t.source == REP_TL_SRC_OPS && t.run_id == 1);
  CHECKF(t.n_batches_run == 5 && t.n_batches_shown == 2 && t.batch_first == 0 && t.batch_last == 1, "%d batches, %d shown",
         t.n_batches_run, t.n_batches_shown);
  CHECK(t.rows_run == qi(s, "SELECT COUNT(*) FROM ops WHERE run_id = 1"));
  long long in_win = qi(s, "SELECT COUNT(*) FROM ops WHERE run_id = 1 AND batch_id IN (0, 1)");
  CHECKF(in_win > 0 && t.n_boxes == in_win && !t.truncated, "%d boxes, %lld ops rows", t.n_boxes, in_win);
  CHECK(t.n_tracks == qi(s, "SELECT COUNT(DISTINCT device || ':' || thread) FROM ops WHERE run_id = 1 AND batch_id IN (0, 1)"));
  CHECK(t.n_tracks == 1 && !strcmp(t.tracks[0].label, "cpu thread 0") && t.tracks[0].lanes == 2);
  long long n_expert = qi(s, "SELECT COUNT(*) FROM ops WHERE run_id = 1 AND batch_id IN (0, 1) AND op = 'expert'");
  int lane1 = 0, bad = 0, attn = 0;
  long long attn_ns = 0;
  for (int i = 0; i < t.n_boxes; i++) {
    const rep_tl_box *b = &t.boxes[i];
    if (i && b->t0 < t.boxes[i - 1].t0) bad++;                       /* time order */
    if (b->batch < 0 || b->batch > 1 || b->t1 < b->t0) bad++;
    if (b->lane == 1) {
      lane1++;
      if (strncmp(b->name, "expert ", 7) || b->cat != REP_TL_EXPERTS) bad++;
      int inside = 0;   /* nested in an experts box of the same layer */
      for (int j = i - 1; j >= 0 && !inside; j--)
        inside = t.boxes[j].lane == 0 && !strcmp(t.boxes[j].name, "experts") && t.boxes[j].layer == b->layer &&
                 t.boxes[j].t0 <= b->t0 && t.boxes[j].t1 >= b->t1;
      if (!inside) bad++;
    } else if (b->lane != 0) bad++;
    if (!strcmp(b->name, "attention")) { attn++; if (b->cat != REP_TL_ATTENTION) bad++; attn_ns += b->t1 - b->t0; }
    if (!strcmp(b->name, "router") && b->cat != REP_TL_ROUTER) bad++;
    if (!strcmp(b->name, "lm_head") && b->cat != REP_TL_OTHER) bad++;
  }
  CHECKF(bad == 0, "%d inconsistent boxes", bad);
  CHECK(lane1 == n_expert && n_expert > 0 && attn == 2 * 4);
  CHECK(attn_ns == qi(s, "SELECT SUM(end_ns - start_ns) FROM ops WHERE run_id = 1 AND batch_id IN (0, 1) AND op = 'attention'"));
  long long nvtx_layers = qi(s, "SELECT COUNT(*) FROM NVTX_EVENTS WHERE eventType = 59 AND category = 3");
  if (nvtx_layers > 0) {   /* the NVTX layer ranges of the two batches */
    CHECK(t.n_band_rows == 1 && !strcmp(t.band_row[0], "NVTX layers") && t.n_bands == 2 * 4);
  } else {
    CHECK(t.n_band_rows == 1 && !strcmp(t.band_row[0], "layers (ops)") && t.n_bands == 2 * 4);
  }
  CHECK(t.t0 >= 0 && t.t1 > t.t0);
  rep_timeline_free(&t);
  ana_db_close(d);

  /* the report */
  snprintf(out, sizeof out, "%s/timeline_e2e_report", tmp);
  tst_sh(&o, "rm -rf %s && %s report %s -o %s --timeline-batches 2", out, tst_bin(), db, out);
  REQUIRE(o.status == 0);
  snprintf(p, sizeof p, "%s/gpu_timeline.png", out);
  char *png = tst_slurp(p, NULL);
  CHECK(png && !memcmp(png, "\x89PNG\r\n\x1a\n", 8));
  free(png);
  snprintf(p, sizeof p, "%s/gpu_timeline.svg", out);
  char *svg = tst_slurp(p, NULL);
  CHECK(svg && strstr(svg, "<svg") && strstr(svg, "</svg>"));
  free(svg);
  snprintf(p, sizeof p, "%s/gpu_timeline.pdf", out);
  char *pdf = tst_slurp(p, NULL);
  CHECK(pdf && !strncmp(pdf, "%PDF-", 5));
  free(pdf);
  snprintf(p, sizeof p, "%s/index.html", out);
  char *html = tst_slurp(p, NULL);
  CHECK(html && strstr(html, "id=\"gpu_timeline\"><img") && strstr(html, "Timeline from CPU op timers (no GPU kernels"));
  snprintf(p, sizeof p, "%s/report.md", out);
  char *md = tst_slurp(p, NULL);
  CHECK(md && strstr(md, "![Timeline from CPU op timers") && strstr(md, "(gpu_timeline.png)"));
  snprintf(p, sizeof p, "%s/report.tex", out);
  char *tex = tst_slurp(p, NULL);
  CHECK(tex && strstr(tex, "{gpu_timeline.pdf}"));
  static const char *tabs[4] = {"time_layer", "time_op", "time_expert", "time_imbalance"};
  for (int i = 0; i < 4; i++) {
    snprintf(p, sizeof p, "%s/tables/%s.csv", out, tabs[i]);
    CHECKF(access(p, F_OK) == 0, "missing %s", p);
    char cap[64];
    snprintf(cap, sizeof cap, "tables/%s.csv", tabs[i]);
    CHECKF(html && md && strstr(html, cap) && strstr(md, cap), "%s not in the documents", tabs[i]);
    snprintf(cap, sizeof cap, "\\label{tab:%s}", tabs[i]);
    CHECKF(tex && strstr(tex, cap), "%s not in report.tex", tabs[i]);
  }
  CHECK(md && strstr(md, "Time by op (CPU op timers)") && strstr(md, "Cost of imbalance per layer (CPU op timers)"));
  free(html); free(md); free(tex);
  /* time_op: 4 attention calls per batch x 5 batches, per-expert rows marked as nested */
  snprintf(p, sizeof p, "%s/tables/time_op.csv", out);
  char *csv = tst_slurp(p, NULL);
  CHECKF(csv && strstr(csv, "\r\nattention,20,") && strstr(csv, ",(within experts)\r\n"), "%s", csv);
  free(csv);

  tst_sh(&o, "%s report %s -o %s --timeline-batches 0", tst_bin(), db, out);
  CHECK(o.status == 2 && tst_count_lines(o.err) == 1 && strstr(o.err, "--timeline-batches"));
  tst_sh(&o, "%s report %s -o %s --timeline-batches 9:1", tst_bin(), db, out);
  CHECK(o.status == 1 && tst_count_lines(o.err) == 1 && strstr(o.err, "no batch >= 9"));
  return tst_done();
}
