/* test_rep_timeline.c — the GPU side of the report and of compare without a GPU: a trace
 * DB whose profiler rows come from hand-built kernel / external-correlation / NVTX range
 * records written by the real translation code (prb_nsys_write, as test_nsys.c does),
 * plus routing-side rows (runs, tokens, expert_load, ops) inserted directly. Runs 1 and 2
 * are "GPU" runs (3 batches x 2 layers: attention + router on GPU 0 stream 7, experts on
 * GPU 0 stream 8, shared expert on GPU 1 stream 7, an embed kernel per batch and one
 * kernel without a scope); run 3 is a CPU run (ops only). Checked:
 *  - rep_timeline_collect: source, tracks, one box per kernel row in the window (counted
 *    independently in SQL), op category of every box from its kernel_scope row, time order
 *    and relative times, layer bands (NVTX + kernel extent), busy time per category, the
 *    batch window (FIRST:N, box budget) and its errors; the CPU run from ops (nested lane);
 *  - the figure files (PNG signature + IHDR size, SVG, PDF) and the report: gpu_timeline in
 *    index.html / report.md / report.tex, time tables from kernels;
 *  - compare's cost: GPU kernel time per token with the exact sums of the records when both
 *    runs have kernels, "cpu ops" + mixed when one does not. */
#include "tests/tst.h"
#include "tests/util/tst_files.h"

#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <stdint.h>

#include "probes/prb_nsys.h"
#include "probes/prb_probe.h"
#include "probes/prb_sink.h"
#include "reports/rep_commands.h"
#include "reports/rep_compare.h"
#include "reports/rep_export.h"
#include "reports/rep_internal.h"
#include "reports/rep_timeline.h"

enum { NB = 3, NL = 2, NTOK = 8, NE = 4, MAXK = 64 };

typedef struct gen {
  prb_kernel_rec k[MAXK];
  prb_scope_rec sc[MAXK];
  prb_extcorr_rec xc[MAXK];
  prb_range_rec rr[MAXK];
  int nk, ns, nx, nr;
  uint64_t t;
} gen;

static void add_k(gen *g, uint64_t dur, uint32_t dev, uint32_t stream, const char *name, int scoped, int64_t bid,
                  int layer, int op) {
  uint32_t corr = (uint32_t)(100 + g->nk);
  g->k[g->nk++] = (prb_kernel_rec){ .start = g->t, .end = g->t + dur, .device_id = dev, .context_id = 1,
                                    .stream_id = stream, .correlation_id = corr, .grid = {8, 1, 1}, .block = {128, 1, 1},
                                    .registers_per_thread = 32, .grid_id = corr, .name = name };
  if (scoped) {
    g->sc[g->ns++] = (prb_scope_rec){ .batch_id = bid, .layer = layer, .op = op, .expert = -1 };
    g->xc[g->nx++] = (prb_extcorr_rec){ corr, (uint64_t)g->ns };   /* external id = scope index + 1 */
  }
  g->t += dur + 10;
}

static prb_range_rec *range(gen *g, int scope, int64_t bid, int layer, int64_t payload, uint64_t start) {
  prb_range_rec *r = &g->rr[g->nr++];
  *r = (prb_range_rec){ .start = start, .tid = 77, .scope = scope, .layer = layer, .op = -1, .expert = -1,
                        .batch_id = bid, .payload = payload };
  return r;
}

/* One GPU run: experts kernels of `experts_ns`, times from base. */
static void gpu_run(sqlite3 *db, int64_t run, uint32_t pid, uint64_t base, uint64_t experts_ns) {
  gen *g = calloc(1, sizeof *g);
  g->t = base + 1000;
  prb_range_rec *rr = range(g, PRB_SCOPE_RUN, -1, -1, run, base + 500);
  for (int b = 0; b < NB; b++) {
    prb_range_rec *br = range(g, PRB_SCOPE_BATCH, b, -1, b, g->t - 50);
    add_k(g, 10, 0, 7, "embed_kernel", 1, b, -1, PRB_OP_EMBED);
    if (b == 0) add_k(g, 5, 0, 7, "memset_kernel", 0, 0, 0, 0);
    for (int l = 0; l < NL; l++) {
      prb_range_rec *lr = range(g, PRB_SCOPE_LAYER, b, l, l, g->t - 20);
      add_k(g, 100 + 10 * (uint64_t)l, 0, 7, "flash_attn", 1, b, l, PRB_OP_ATTENTION);
      add_k(g, 20, 0, 7, "router_topk", 1, b, l, PRB_OP_ROUTER);
      add_k(g, experts_ns, 0, 8, "_Z11expert_gemmILi128EEvPKfi", 1, b, l, PRB_OP_EXPERTS);
      add_k(g, 50, 1, 7, "shared_ffn", 1, b, l, PRB_OP_SHARED_EXPERT);
      lr->end = g->t;
    }
    br->end = g->t;
  }
  rr->end = g->t + 500;
  prb_gpu_info gpus[2] = {{ .id = 0, .sm_count = 132 }, { .id = 1, .sm_count = 132 }};
  prb_nsys_data d = { .run_id = run, .pid = pid, .kernels = g->k, .n_kernels = (size_t)g->nk, .extcorr = g->xc,
                      .n_extcorr = (size_t)g->nx, .scopes = g->sc, .n_scopes = (size_t)g->ns, .ranges = g->rr,
                      .n_ranges = (size_t)g->nr, .gpus = gpus, .n_gpus = 2 };
  char err[256] = "";
  CHECKF(prb_nsys_write(db, &d, err, sizeof err) == 0, "prb_nsys_write: %s", err);
  free(g);
}

static void exec(sqlite3 *db, const char *sql) {
  char *msg = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) { fprintf(stderr, "SQL: %s\n  in %.200s\n", msg, sql); exit(1); }
}

/* runs, tokens, expert_load and ops rows of run (device dev; ops per (batch, layer):
 * attention 7000 ns, experts 9000 ns containing expert 0 and 1 of 4000 ns each) */
static void engine_rows(sqlite3 *db, int run, const char *dev, const char *policy) {
  char q[512];
  snprintf(q, sizeof q, "INSERT INTO runs(run_id, family, n_layers, n_experts, top_k, policy, record_level, device,"
                        " model_path, command_line) VALUES (%d, 'mixtral', %d, %d, 2, '%s', 'counts', '%s', 'm', 'x')",
           run, NL, NE, policy, dev);
  exec(db, q);
  snprintf(q, sizeof q, "INSERT INTO sequences(run_id, seq_id, label, source, n_tokens) VALUES (%d, 0, 'code', 't', %d)", run, NTOK);
  exec(db, q);
  for (int p = 0; p < NTOK; p++) {
    snprintf(q, sizeof q, "INSERT INTO tokens(run_id, seq_id, pos, token_id, phase, nll) VALUES (%d, 0, %d, %d, 0, %g)",
             run, p, 10 + p, 1.0 + 0.1 * p + 0.05 * run);
    exec(db, q);
  }
  static const int load[NE] = {6, 4, 3, 3};
  for (int b = 0; b < NB; b++)
    for (int l = 0; l < NL; l++) {
      for (int e = 0; e < NE; e++) {
        snprintf(q, sizeof q, "INSERT INTO expert_load(run_id, batch_id, layer, expert, tokens, weight_sum, dropped)"
                              " VALUES (%d, %d, %d, %d, %d, %g, 0)", run, b, l, e, load[(e + run) % NE], 0.5 * load[e]);
        exec(db, q);
      }
      long long t = 5000000LL * run + 100000LL * (b * NL + l);
      snprintf(q, sizeof q, "INSERT INTO ops(run_id, batch_id, layer, op, expert, device, start_ns, end_ns, thread) VALUES"
                            " (%d,%d,%d,'attention',-1,'%s',%lld,%lld,0), (%d,%d,%d,'experts',-1,'%s',%lld,%lld,0),"
                            " (%d,%d,%d,'expert',0,'%s',%lld,%lld,0), (%d,%d,%d,'expert',1,'%s',%lld,%lld,0)",
               run, b, l, dev, t, t + 7000, run, b, l, dev, t + 7000, t + 16000, run, b, l, dev, t + 7500, t + 11500,
               run, b, l, dev, t + 11600, t + 15600);
      exec(db, q);
    }
}

static sqlite3 *g_db;
static long long qi(const char *sql) {
  sqlite3_stmt *st;
  long long v = -999;
  if (sqlite3_prepare_v2(g_db, sql, -1, &st, NULL) != SQLITE_OK) { fprintf(stderr, "SQL: %s\n", sqlite3_errmsg(g_db)); return v; }
  if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}
static const char *scope_op(long long corr, char *buf, size_t n) {
  char q[256];
  sqlite3_stmt *st;
  snprintf(q, sizeof q, "SELECT op FROM kernel_scope WHERE correlationId = %lld AND run_id = 1", corr);
  buf[0] = 0;
  if (sqlite3_prepare_v2(g_db, q, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
    snprintf(buf, n, "%s", (const char *)sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  return buf[0] ? buf : NULL;
}

static void check_png(const char *path, int want_w) {
  size_t n = 0;
  unsigned char *b = (unsigned char *)tst_slurp(path, &n);
  CHECKF(b && n > 24 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8) && !memcmp(b + 12, "IHDR", 4), "%s: not a PNG", path);
  if (b && n > 24) {
    int w = b[16] << 24 | b[17] << 16 | b[18] << 8 | b[19], h = b[20] << 24 | b[21] << 16 | b[22] << 8 | b[23];
    CHECKF(w == want_w && h > 150 && h < 1000, "%s: %d x %d", path, w, h);
  }
  free(b);
}

static void test_timeline(ana_db *d, const char *tmp) {
  rep_timeline t;
  char err[512] = "", buf[64];
  /* all batches (3 <= default 4) */
  REQUIRE(rep_timeline_collect(d, 1, -1, REP_TL_DEFAULT_BATCHES, 0, &t, err, sizeof err) == 0);
  CHECK(t.source == REP_TL_SRC_KERNELS && t.run_id == 1);
  CHECK(t.n_batches_run == 3 && t.n_batches_shown == 3 && t.batch_first == 0 && t.batch_last == 2 && !t.truncated);
  REQUIRE(t.n_tracks == 3);
  CHECK(!strcmp(t.tracks[0].label, "GPU 0 stream 7") && !strcmp(t.tracks[1].label, "GPU 0 stream 8") &&
        !strcmp(t.tracks[2].label, "GPU 1 stream 7"));
  CHECK(t.tracks[0].lanes == 1 && t.tracks[1].lanes == 1 && t.tracks[2].lanes == 1);
  long long n_run = qi("SELECT COUNT(*) FROM CUPTI_ACTIVITY_KIND_KERNEL WHERE globalPid = 1111 << 24");
  CHECK(n_run == 3 * (1 + NL * 4) + 1);
  CHECKF(t.n_boxes == n_run && t.rows_run == n_run, "%d boxes, %lld rows", t.n_boxes, n_run);
  CHECK(t.origin_ns == 1000000 + 500);   /* the NVTX run range */
  int per_track[3] = {0}, unscoped = 0, bad_cat = 0, bad_order = 0;
  for (int i = 0; i < t.n_boxes; i++) {
    const rep_tl_box *b = &t.boxes[i];
    per_track[b->track]++;
    const char *op = scope_op(b->corr, buf, sizeof buf);
    if (b->cat != rep_tl_op_category(op)) bad_cat++;
    if (!op) { unscoped++; CHECK(b->batch == -1 && b->cat == REP_TL_OTHER && !strcmp(b->name, "memset_kernel")); }
    if (i > 0 && b->track == t.boxes[i - 1].track && b->t0 < t.boxes[i - 1].t1) bad_order++;
    if (i > 0 && b->track < t.boxes[i - 1].track) bad_order++;
    if (b->lane != 0 || b->t1 <= b->t0) bad_order++;
  }
  CHECK(bad_cat == 0 && bad_order == 0 && unscoped == 1);
  CHECK(per_track[0] == 3 * (1 + 2 * NL) + 1 && per_track[1] == 3 * NL && per_track[2] == 3 * NL);
  CHECK(t.boxes[0].t0 == 500 && t.boxes[0].t1 == 510 && !strcmp(t.boxes[0].name, "embed_kernel"));
  CHECK(t.boxes[0].cat == REP_TL_OTHER && t.boxes[1].cat == REP_TL_OTHER && t.boxes[2].cat == REP_TL_ATTENTION);
  CHECK(t.boxes[per_track[0]].cat == REP_TL_EXPERTS && !strcmp(t.boxes[per_track[0]].name, "expert_gemm"));
  CHECK(t.cat_ns[REP_TL_EXPERTS] == 3 * NL * (300 + 50) && t.cat_ns[REP_TL_ATTENTION] == 3 * (100 + 110) &&
        t.cat_ns[REP_TL_ROUTER] == 3 * NL * 20 && t.cat_ns[REP_TL_OTHER] == 3 * 10 + 5 && t.cat_ns[REP_TL_DISPATCH] == 0);
  REQUIRE(t.n_band_rows == 2);
  CHECK(!strcmp(t.band_row[0], "NVTX layers (CPU)") && !strcmp(t.band_row[1], "layers (GPU)"));
  int rows[2] = {0};
  for (int i = 0; i < t.n_bands; i++) rows[t.bands[i].row]++;
  CHECK(rows[0] == NB * NL && rows[1] == NB * NL);
  /* first GPU band: batch 0 layer 0 = attention start .. shared-expert end */
  const rep_tl_band *b1 = NULL;
  for (int i = 0; i < t.n_bands && !b1; i++) if (t.bands[i].row == 1) b1 = &t.bands[i];
  REQUIRE(b1);
  long long l0_start = 500 + 10 + 10 + 5 + 10;   /* after embed and memset (+ gaps) */
  CHECKF(b1->layer == 0 && b1->batch == 0 && b1->t0 == l0_start && b1->t1 == l0_start + 100 + 10 + 20 + 10 + 300 + 10 + 50,
         "band %lld..%lld", b1->t0, b1->t1);
  CHECK(t.bands[0].row == 0 && t.bands[0].layer == 0 && t.bands[0].t0 == l0_start - 20);
  CHECK(t.t0 == 500 && t.t1 >= b1->t1);
  /* figure files */
  char stem[2048], p[2100];
  snprintf(stem, sizeof stem, "%s/tl_unit", tmp);
  CHECKF(rep_timeline_render(&t, stem, REP_FMT_PNG | REP_FMT_SVG | REP_FMT_PDF, err, sizeof err) == 0, "%s", err);
  snprintf(p, sizeof p, "%s.png", stem);
  check_png(p, 1400);
  snprintf(p, sizeof p, "%s.svg", stem);
  char *svg = tst_slurp(p, NULL);
  CHECK(svg && strstr(svg, "<svg") && strstr(svg, "</svg>"));
  free(svg);
  snprintf(p, sizeof p, "%s.pdf", stem);
  char *pdf = tst_slurp(p, NULL);
  CHECK(pdf && !strncmp(pdf, "%PDF-", 5));
  free(pdf);
  rep_timeline_free(&t);

  /* window FIRST:N = batch 1 only: its 9 kernels, no unscoped kernel (it lies in batch 0) */
  REQUIRE(rep_timeline_collect(d, 1, 1, 1, 0, &t, err, sizeof err) == 0);
  CHECK(t.n_batches_shown == 1 && t.batch_first == 1 && t.batch_last == 1 && t.n_boxes == 1 + NL * 4);
  int all_b1 = 1;
  for (int i = 0; i < t.n_boxes; i++) all_b1 &= t.boxes[i].batch == 1;
  CHECK(all_b1);
  rows[0] = rows[1] = 0;
  for (int i = 0; i < t.n_bands; i++) rows[t.bands[i].row]++;
  CHECK(rows[0] == NL && rows[1] == NL);
  rep_timeline_free(&t);
  /* box budget: 20 boxes -> 2 batches (18 scoped) + the unscoped one */
  REQUIRE(rep_timeline_collect(d, 1, -1, 0, 20, &t, err, sizeof err) == 0);
  CHECK(t.n_batches_shown == 2 && t.batch_last == 1 && t.n_boxes == 2 * 9 + 1);
  rep_timeline_free(&t);
  /* a single batch over the budget keeps its first boxes */
  REQUIRE(rep_timeline_collect(d, 1, -1, 0, 4, &t, err, sizeof err) == 0);
  CHECK(t.n_batches_shown == 1 && t.truncated && t.n_boxes == 4);
  rep_timeline_free(&t);
  CHECK(rep_timeline_collect(d, 1, 5, 1, 0, &t, err, sizeof err) == -1 && strstr(err, "no batch >= 5"));
  /* run 3: CPU ops, one track, expert rows nested on lane 1 */
  REQUIRE(rep_timeline_collect(d, 3, -1, 2, 0, &t, err, sizeof err) == 0);
  CHECK(t.source == REP_TL_SRC_OPS && t.n_tracks == 1 && !strcmp(t.tracks[0].label, "cpu thread 0") && t.tracks[0].lanes == 2);
  CHECK(t.n_batches_shown == 2 && t.n_boxes == 2 * NL * 4 && t.rows_run == NB * NL * 4);
  int lane1 = 0;
  for (int i = 0; i < t.n_boxes; i++) lane1 += t.boxes[i].lane == 1 && !strncmp(t.boxes[i].name, "expert ", 7);
  CHECK(lane1 == 2 * NL * 2);
  CHECK(t.n_band_rows == 1 && !strcmp(t.band_row[0], "layers (ops)") && t.n_bands == 2 * NL);
  CHECK(t.cat_ns[REP_TL_EXPERTS] == 2 * NL * 9000 && t.cat_ns[REP_TL_ATTENTION] == 2 * NL * 7000);
  rep_timeline_free(&t);
  /* window parsing */
  long long f;
  int n;
  CHECK(rep_tl_parse_window("8", &f, &n, err, sizeof err) == 0 && f == -1 && n == 8);
  CHECK(rep_tl_parse_window("3:2", &f, &n, err, sizeof err) == 0 && f == 3 && n == 2);
  CHECK(rep_tl_parse_window("all", &f, &n, err, sizeof err) == 0 && n == 0);
  CHECK(rep_tl_parse_window("0", &f, &n, err, sizeof err) == -1 && rep_tl_parse_window("x:2", &f, &n, err, sizeof err) == -1);
}

static void test_report(const char *db, const char *tmp) {
  char out[2048], p[2200], err[512] = "";
  snprintf(out, sizeof out, "%s/tl_unit_report", tmp);
  CHECKF(rep_report_cmd(db, 1, out, err, sizeof err) == 0, "%s", err);
  static const char *ext[3] = {"png", "svg", "pdf"};
  for (int k = 0; k < 3; k++) {
    snprintf(p, sizeof p, "%s/gpu_timeline.%s", out, ext[k]);
    CHECKF(access(p, F_OK) == 0, "missing %s", p);
  }
  snprintf(p, sizeof p, "%s/gpu_timeline.png", out);
  check_png(p, 1400);
  snprintf(p, sizeof p, "%s/index.html", out);
  char *html = tst_slurp(p, NULL);
  CHECK(html && strstr(html, "id=\"gpu_timeline\"><img") && strstr(html, "GPU timeline: kernels per stream"));
  CHECK(html && strstr(html, "Time by op (GPU kernels via kernel_scope)"));
  free(html);
  snprintf(p, sizeof p, "%s/report.md", out);
  char *md = tst_slurp(p, NULL);
  CHECK(md && strstr(md, "(gpu_timeline.png)") && strstr(md, "Time by layer (GPU kernels"));
  free(md);
  snprintf(p, sizeof p, "%s/report.tex", out);
  char *tex = tst_slurp(p, NULL);
  CHECK(tex && strstr(tex, "{gpu_timeline.pdf}"));
  free(tex);
  snprintf(p, sizeof p, "%s/tables/time_op.csv", out);
  char *csv = tst_slurp(p, NULL);
  CHECKF(csv && strstr(csv, "op,calls,ms,share %\r\n") && strstr(csv, "\r\nexperts,6,0.002,62.5\r\n") &&
         strstr(csv, "\r\nembed,3,0.000,1.0\r\n") && strstr(csv, "\r\nshared_expert,6,0.000,10.4\r\n"), "time_op.csv: %s", csv);
  free(csv);
  snprintf(p, sizeof p, "%s/tables/time_layer.csv", out);
  csv = tst_slurp(p, NULL);
  CHECKF(csv && strstr(csv, "\r\noutside,0.000,1.0\r\n0,0.001,49.0\r\n1,0.001,50.0\r\n"), "time_layer.csv: %s", csv);
  free(csv);
  /* export --time reads kernels too: every kernel counts once (2880 ns) */
  char *txt = NULL;
  size_t tn = 0;
  FILE *m = open_memstream(&txt, &tn);
  CHECK(rep_time_cmd(db, 1, 1, m, err, sizeof err) == 0);
  fclose(m);
  CHECKF(txt && strstr(txt, "# run 1 source kernels") && strstr(txt, "\nexperts,6,0.001800,0.625000\n") &&
         strstr(txt, "\n0,0.001410,0.489583\n"), "%s", txt);
  free(txt);
}

static cJSON *compare_json(const char *db, long long a, long long b) {
  rep_run_ref refs[2] = {{db, a}, {db, b}};
  char *txt = NULL, err[512] = "";
  size_t n = 0;
  FILE *m = open_memstream(&txt, &n);
  int rc = rep_compare_cmd(refs, 2, 1, NULL, m, err, sizeof err);
  fclose(m);
  CHECKF(rc == 0, "compare: %s", err);
  cJSON *j = cJSON_Parse(txt);
  free(txt);
  return j;
}

static void test_compare(const char *db, const char *tmp) {
  /* both GPU: per token (8 tokens) 2880 / 8 = 360 ns (A) and 4680 / 8 = 585 ns (B) */
  cJSON *j = compare_json(db, 1, 2), *p = cJSON_GetArrayItem(j, 0);
  REQUIRE(p);
  CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(p, "cost_source")), "gpu kernels"));
  CHECK(cJSON_IsFalse(cJSON_GetObjectItem(p, "cost_mixed")));
  CHECK_NEAR(cJSON_GetObjectItem(p, "ns_per_token_a")->valuedouble, 2880.0 / NTOK, 1e-9);
  CHECK_NEAR(cJSON_GetObjectItem(p, "ns_per_token_b")->valuedouble, 4680.0 / NTOK, 1e-9);
  cJSON *lc = cJSON_GetObjectItem(cJSON_GetObjectItem(p, "layer_ns_per_token"), "a");
  CHECK_NEAR(cJSON_GetArrayItem(lc, 0)->valuedouble, 3 * 470.0 / NTOK, 1e-9);
  CHECK_NEAR(cJSON_GetArrayItem(lc, 1)->valuedouble, 3 * 480.0 / NTOK, 1e-9);
  cJSON_Delete(j);
  /* GPU vs CPU: mixed, both from ops (16000 ns per (batch, layer) x 6 / 8 tokens) */
  j = compare_json(db, 1, 3);
  p = cJSON_GetArrayItem(j, 0);
  REQUIRE(p);
  CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(p, "cost_source")), "cpu ops"));
  CHECK(cJSON_IsTrue(cJSON_GetObjectItem(p, "cost_mixed")) && cJSON_IsTrue(cJSON_GetObjectItem(p, "gpu_kernels_a")) &&
        cJSON_IsFalse(cJSON_GetObjectItem(p, "gpu_kernels_b")));
  CHECK_NEAR(cJSON_GetObjectItem(p, "ns_per_token_a")->valuedouble, 16000.0 * NB * NL / NTOK, 1e-9);
  CHECK_NEAR(cJSON_GetObjectItem(p, "ns_per_token_b")->valuedouble, 16000.0 * NB * NL / NTOK, 1e-9);
  cJSON_Delete(j);
  /* text and folder: the column names its source; three runs with one CPU run -> mixed */
  rep_run_ref refs[3] = {{db, 1}, {db, 2}, {db, 3}};
  char *txt = NULL, err[512] = "", out[2048], path[2200];
  size_t n = 0;
  FILE *m = open_memstream(&txt, &n);
  CHECK(rep_compare_cmd(refs, 2, 0, NULL, m, err, sizeof err) == 0);
  fclose(m);
  CHECKF(txt && strstr(txt, "cost (gpu kernels): GPU kernel time 0.360 us/token (A) vs 0.585 us/token (B)") &&
         strstr(txt, "us/tok = GPU kernel time per token"), "%s", txt);
  free(txt);
  snprintf(out, sizeof out, "%s/tl_unit_compare", tmp);
  m = open_memstream(&txt, &n);
  CHECK(rep_compare_cmd(refs, 3, 0, out, m, err, sizeof err) == 0);
  fclose(m);
  CHECK(txt && strstr(txt, "cost (cpu ops; mixed: only run A has GPU kernel rows") && strstr(txt, "mixed: only some runs"));
  free(txt);
  snprintf(path, sizeof path, "%s/compare.csv", out);
  char *csv = tst_slurp(path, NULL);
  CHECK(csv && strstr(csv, ",us_per_token,cost_source\n") && strstr(csv, ",12.000,cpu ops (mixed)\n"));
  free(csv);
  snprintf(path, sizeof path, "%s/compare.md", out);
  char *md = tst_slurp(path, NULL);
  CHECK(md && strstr(md, "µs/token (cpu ops (mixed))"));
  free(md);
}

int main(void) {
  const char *tmp = tst_tmp_dir();
  char db[2048], err[512] = "";
  snprintf(db, sizeof db, "%s/tl_unit.db", tmp);
  unlink(db);
  REQUIRE(sqlite3_open(db, &g_db) == SQLITE_OK);
  exec(g_db, prb_schema_sql);
  exec(g_db, "PRAGMA user_version = 1");
  engine_rows(g_db, 1, "cuda", "topk");
  engine_rows(g_db, 2, "cuda", "hash");
  engine_rows(g_db, 3, "cpu", "topk");
  gpu_run(g_db, 1, 1111, 1000000, 300);
  gpu_run(g_db, 2, 2222, 2000000, 600);
  CHECK(qi("SELECT SUM(k.end - k.start) FROM CUPTI_ACTIVITY_KIND_KERNEL k JOIN kernel_scope s"
           " ON s.correlationId = k.correlationId AND s.globalPid IS k.globalPid WHERE s.run_id = 1") == 2880);
  ana_db *d = NULL;
  REQUIRE(ana_db_open(&d, db, err, sizeof err) == 0);
  test_timeline(d, tmp);
  ana_db_close(d);
  test_report(db, tmp);
  test_compare(db, tmp);
  sqlite3_close(g_db);
  return tst_done();
}
