/* test_ana_stats2.c — known answers for the statistics and rules added in Step 2b:
 *  1. a trace written through the real sink (probes/prb_sink.c, with empty slots and
 *     NaN-free random weights): the routing_packed fast path loads exactly the arrays of
 *     the row-by-row scan of `routing` (MOESCOPE_NO_PACKED=1);
 *  2. Jain's index vs brute force from SQL counts; capacity overflow at CF 1, 1.25, 2 vs an
 *     independent SQL computation (integer ceil) over expert_load per batch;
 *  3. top tokens per expert vs brute force (routing JOIN tokens in SQL);
 *  4. token pieces that are invalid UTF-8 come out escaped: ana_token_piece, stats JSON,
 *     index.html stay valid UTF-8, report.tex is pure ASCII;
 *  5. diagnose rules "uniform gate weights" and "position drift" on a hand-built DB, with
 *     a healthy control layer that must raise neither. */
#include "tests/tst.h"
#include "tests/util/tst_files.h"

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "analysis/ana_diag.h"
#include "probes/prb_sink.h"
#include "reports/rep_commands.h"
#include "reports/rep_internal.h"

enum { E = 8, K = 2, L = 3, NSEQ = 4, LEN = 40, V = 12 };

static uint32_t rng = 2463534242u;
static uint32_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 17; rng ^= rng << 5; return rng; }

static long long sql1(sqlite3 *db, const char *sql) {
  sqlite3_stmt *s;
  REQUIRE(sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK);
  long long v = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
  sqlite3_finalize(s);
  return v;
}

static int valid_utf8(const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n;) {
    unsigned char c = p[i];
    int ul = c < 0x80 ? 1 : c >= 0xC2 && c < 0xE0 ? 2 : c >= 0xE0 && c < 0xF0 ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (!ul || i + ul > n) return 0;
    for (int j = 1; j < ul; j++) if ((p[i + j] & 0xC0) != 0x80) return 0;
    i += (size_t)ul;
  }
  return 1;
}

static const char *pieces[V] = {"the", " \xc3", "\xc3\xa9t\xc3\xa9", "<&>\"'", "a\nb", "\xff\xfe",
                                "\\_%$#{}", "\xe2\x82", "x", "y", "\xf0\x9f\x98\x80", "z"};

static void write_sink_db(const char *path) {
  char err[512];
  unlink(path);
  prb_sink *sk;
  REQUIRE(prb_sink_open(&sk, path, 1 << 16, err, sizeof err) == 0);   /* small ring: records get split */
  prb_run_info ri = {0};
  ri.family = "mixtral"; ri.n_layers = L; ri.n_experts = E; ri.top_k = K; ri.record_level = PRB_LEVEL_TOPK;
  int64_t run;
  REQUIRE(prb_sink_begin_run(sk, &ri, &run, err, sizeof err) == 0);
  size_t lens[V];
  for (int i = 0; i < V; i++) lens[i] = strlen(pieces[i]);
  prb_sink_vocab(sk, V, pieces, lens);
  prb_probe pr = prb_sink_probe(sk, PRB_LEVEL_TOPK);
  static const char *labs[2] = {"code", "prose"};
  int seqs[LEN], pos[LEN], ids[LEN], ex[LEN * K];
  float w[LEN * K];
  int64_t batch = 0;
  for (int s = 0; s < NSEQ; s++) {
    pr.sequence(pr.ctx, s, labs[s % 2], "t", LEN);
    for (int p = 0; p < LEN; p++) { seqs[p] = s; pos[p] = p; ids[p] = (int)(rnd() % V); }
    pr.tokens(pr.ctx, s, LEN, pos, ids, PRB_PHASE_PREFILL, NULL);
    for (int half = 0; half < 2; half++) {   /* two forward batches per sequence */
      int off = half * LEN / 2, n = LEN / 2;
      for (int l = 0; l < L; l++) {
        for (int p = 0; p < n; p++) {
          int tid = ids[off + p];
          int a = rnd() % 3 ? tid % E : (int)(rnd() % E), b = (int)(rnd() % E);
          if (b == a) b = (a + 1) % E;
          float wa = 0.5f + (float)(rnd() % 1000) / 2000.0f;
          ex[p * K] = a; ex[p * K + 1] = rnd() % 17 == 0 ? -1 : b;   /* some empty slots */
          w[p * K] = wa; w[p * K + 1] = 1 - wa;
        }
        prb_route_batch rb = {batch, l, n, K, E, seqs + off, pos + off, ex, w, NULL, NULL, NULL};
        pr.route(pr.ctx, &rb);
      }
      batch++;
    }
  }
  REQUIRE(prb_sink_close(sk, err, sizeof err) == 0);
}

static void test_packed_and_stats(const char *path, const char *tmp) {
  char err[512], q[1024];
  ana_db *d;
  REQUIRE(ana_db_open(&d, path, err, sizeof err) == 0);
  ana_run run;
  REQUIRE(ana_run_get(d, -1, &run, err, sizeof err) == 0);
  ana_trace a, b;
  unsetenv("MOESCOPE_NO_PACKED");
  REQUIRE(ana_trace_load(d, &run, &a, err, sizeof err) == 0);
  setenv("MOESCOPE_NO_PACKED", "1", 1);
  REQUIRE(ana_trace_load(d, &run, &b, err, sizeof err) == 0);
  unsetenv("MOESCOPE_NO_PACKED");
  CHECK(a.packed == 1 && b.packed == 0);
  CHECK(a.n_rows == b.n_rows && a.n_rows == sql1(d->db, "SELECT COUNT(*) FROM routing") && a.n_skipped == 0);
  REQUIRE(a.n_tok == b.n_tok && a.L == b.L && a.K == b.K && a.E == b.E);
  size_t cells = (size_t)a.n_tok * a.L * a.K;
  CHECK(memcmp(a.ex, b.ex, cells * sizeof *a.ex) == 0);
  int wsame = 1;
  for (size_t i = 0; i < cells; i++) wsame &= (isnan(a.w[i]) && isnan(b.w[i])) || a.w[i] == b.w[i];
  CHECK(wsame);
  CHECK(sql1(d->db, "SELECT SUM(n_rows) FROM routing_packed") == a.n_rows);

  /* top tokens vs brute force */
  ana_struct st;
  REQUIRE(ana_struct_compute(&a, NULL, &st, err, sizeof err) == 0);
  for (int l = 0; l < L; l++)
    for (int e = 0; e < E; e++) {
      int idx[5];
      double sh[5];
      int n = ana_top_tokens(&st, l, e, 5, idx, sh);
      snprintf(q, sizeof q, "SELECT CAST(MAX(1e6 * c.n / t.n) AS INTEGER) FROM (SELECT token_id, COUNT(*) n FROM routing r"
               " JOIN tokens USING(run_id, seq_id, pos) WHERE layer = %d AND expert = %d GROUP BY token_id) c JOIN"
               " (SELECT token_id, COUNT(*) n FROM tokens GROUP BY token_id HAVING COUNT(*) >= 5) t USING(token_id)", l, e);
      long long best = sql1(d->db, q);
      CHECKF(n >= 1 && llround(sh[0] * 1e6 - 0.5) <= best && best <= llround(sh[0] * 1e6 + 0.5), "l%d e%d: %g vs %lld",
             l, e, n ? sh[0] : -1.0, best);
      for (int i = 1; i < n; i++) CHECK(sh[i] <= sh[i - 1]);
      for (int i = 0; i < n; i++) {   /* each listed share equals its brute-force share */
        snprintf(q, sizeof q, "SELECT CAST(1e6 * (SELECT COUNT(*) FROM routing r JOIN tokens USING(run_id, seq_id, pos)"
                 " WHERE layer = %d AND expert = %d AND token_id = %d) / (SELECT COUNT(*) FROM tokens WHERE token_id = %d)"
                 " AS INTEGER)", l, e, st.tok[idx[i]], st.tok[idx[i]]);
        CHECK(llabs(sql1(d->db, q) - (long long)(sh[i] * 1e6)) <= 1);
      }
    }
  /* co-activation lift vs SQL: N_ab T k / (N_a N_b (k - 1)) */
  for (int l = 0; l < L; l++) {
    snprintf(q, sizeof q, "SELECT COUNT(*) FROM (SELECT DISTINCT seq_id, pos FROM routing WHERE layer = %d)", l);
    double T = (double)sql1(d->db, q);
    for (int x = 0; x < E; x++)
      for (int y = x + 1; y < E; y += 3) {
        snprintf(q, sizeof q, "SELECT COUNT(*) FROM routing r1 JOIN routing r2 USING(run_id, seq_id, pos, layer)"
                 " WHERE layer = %d AND r1.expert = %d AND r2.expert = %d", l, x, y);
        double nab = (double)sql1(d->db, q);
        snprintf(q, sizeof q, "SELECT COUNT(DISTINCT seq_id * 100000 + pos) FROM routing WHERE layer = %d AND expert = %d", l, x);
        double na = (double)sql1(d->db, q);
        snprintf(q, sizeof q, "SELECT COUNT(DISTINCT seq_id * 100000 + pos) FROM routing WHERE layer = %d AND expert = %d", l, y);
        double nb = (double)sql1(d->db, q);
        CHECK_NEAR(rep_coact_lift(&st, l, x, y), nab * T * K / (na * nb * (K - 1)), 1e-9);
      }
    CHECK(isnan(rep_coact_lift(&st, l, 2, 2)));
  }
  ana_struct_free(&st);
  ana_trace_free(&a);
  ana_trace_free(&b);

  /* Jain and capacity overflow vs SQL */
  ana_summary s;
  REQUIRE(ana_summary_get(d, -1, &s, err, sizeof err) == 0);
  for (int l = 0; l < s.load.n_layers; l++) {
    double sum = 0, sq = 0;
    for (int e = 0; e < E; e++) {
      snprintf(q, sizeof q, "SELECT COUNT(*) FROM routing WHERE layer = %d AND expert = %d", s.load.layer_ids[l], e);
      double c = (double)sql1(d->db, q);
      sum += c; sq += c * c;
    }
    CHECK_NEAR(s.layer[l].jain, sum * sum / (E * sq), 1e-12);
    static const char *capx[3] = {"(b.S + 8 - 1) / 8", "(5 * b.S + 32 - 1) / 32", "(2 * b.S + 8 - 1) / 8"};
    for (int c = 0; c < ANA_NCF; c++) {
      snprintf(q, sizeof q, "WITH b AS (SELECT layer, batch_id, SUM(tokens) S FROM expert_load GROUP BY 1, 2)"
               " SELECT COALESCE(SUM(MAX(0, e.tokens - %s)), 0) FROM expert_load e JOIN b USING(layer, batch_id)"
               " WHERE e.layer = %d", capx[c], s.load.layer_ids[l]);
      long long want = sql1(d->db, q);
      CHECKF(s.overflow[(size_t)l * ANA_NCF + c] == want, "layer %d cf %g: %lld vs %lld", l, ana_cf[c],
             s.overflow[(size_t)l * ANA_NCF + c], want);
      if (c == 0) CHECK(want > 0);
    }
  }
  ana_summary_free(&s);

  /* pieces: invalid UTF-8 escaped, valid kept */
  char piece[256];
  ana_token_piece(d, run.run_id, 1, piece, sizeof piece);
  CHECKF(!strcmp(piece, " \\xc3"), "%s", piece);
  ana_token_piece(d, run.run_id, 2, piece, sizeof piece);
  CHECK(!strcmp(piece, "\xc3\xa9t\xc3\xa9"));
  ana_token_piece(d, run.run_id, 5, piece, sizeof piece);
  CHECK(!strcmp(piece, "\\xff\\xfe"));
  ana_token_piece(d, run.run_id, 7, piece, sizeof piece);
  CHECK(!strcmp(piece, "\\xe2\\x82"));   /* truncated 3-byte sequence */
  ana_token_piece(d, run.run_id, 4, piece, sizeof piece);
  CHECK(!strcmp(piece, "a\\nb"));
  ana_db_close(d);

  /* stats --structure --json: valid UTF-8, parses, top tokens present */
  char *buf = NULL;
  size_t n = 0;
  FILE *m = open_memstream(&buf, &n);
  CHECKF(rep_stats_cmd(path, -1, 1 | REP_STATS_STRUCTURE, m, err, sizeof err) == 0, "%s", err);
  fclose(m);
  CHECK(valid_utf8((unsigned char *)buf, n));
  cJSON *j = cJSON_Parse(buf);
  CHECK(j && cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "structure"), "layers")) == L);
  CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "overall"), "capacity_overflow")) == ANA_NCF);
  cJSON_Delete(j);
  free(buf);

  /* report: html valid UTF-8, tex ASCII, top tokens table and figures present */
  char out[4096], p[4200];
  snprintf(out, sizeof out, "%s/ana_stats2_report", tmp);
  CHECKF(rep_report_cmd(path, -1, out, err, sizeof err) == 0, "%s", err);
  snprintf(p, sizeof p, "%s/index.html", out);
  char *html = tst_slurp(p, &n);
  CHECK(html && valid_utf8((unsigned char *)html, n) && strstr(html, "\\xc3") && strstr(html, "&lt;&amp;&gt;"));
  free(html);
  snprintf(p, sizeof p, "%s/report.tex", out);
  char *tex = tst_slurp(p, &n);
  int ascii = tex != NULL;
  for (size_t i = 0; tex && i < n; i++) ascii &= (unsigned char)tex[i] < 0x80;
  CHECK(ascii && strstr(tex, "[U+00E9]t[U+00E9]") && strstr(tex, "\\textbackslash{}\\_\\%\\$\\#\\{\\}"));
  free(tex);
  snprintf(p, sizeof p, "%s/tables/top_tokens.csv", out);
  char *csv = tst_slurp(p, NULL);
  CHECK(csv && valid_utf8((unsigned char *)csv, strlen(csv)) && strstr(csv, "\"'<&>\"\"'"));
  free(csv);
  for (int l = 0; l < L; l++) {
    snprintf(p, sizeof p, "%s/top_tokens_layer%d.png", out, l);
    CHECK(access(p, F_OK) == 0);
  }
}

/* Layers: 0 healthy control (round robin, 0.6/0.4), 1 uniform gate weights (0.5/0.5 with
 * renormalised k = 2: top-1 = 1/k), 2 position drift (positions < T/2 -> experts 0-3, the
 * rest -> 4-7; both labels alike). */
static void test_rules(const char *tmp) {
  enum { T = 192, RL = 3 };   /* 16 position bins of 12: the halves split at T/2 exactly */
  char path[4096], err[512];
  snprintf(path, sizeof path, "%s/ana_rules.db", tmp);
  unlink(path);
  sqlite3 *db;
  REQUIRE(sqlite3_open(path, &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db, prb_schema_sql, NULL, NULL, NULL) == SQLITE_OK);
  sqlite3_exec(db, "PRAGMA user_version = 1; BEGIN;"
               "INSERT INTO runs(run_id, family, n_layers, n_experts, top_k, record_level) VALUES (1, 'mixtral', 3, 8, 2, 'topk');"
               "INSERT INTO sequences VALUES (1, 0, 'a', 'x', 192), (1, 1, 'b', 'y', 192)", NULL, NULL, NULL);
  sqlite3_stmt *rt, *el;
  REQUIRE(sqlite3_prepare_v2(db, "INSERT INTO routing VALUES (1,?,?,?,?,?,?)", -1, &rt, NULL) == 0);
  REQUIRE(sqlite3_prepare_v2(db, "INSERT INTO expert_load VALUES (1,0,?,?,?,0,0)", -1, &el, NULL) == 0);
  long long cnt[RL][E] = {{0}};
  for (int s = 0; s < 2; s++)
    for (int t = 0; t < T; t++)
      for (int l = 0; l < RL; l++) {
        int ex[2];
        double w[2] = {0.6, 0.4};
        if (l == 2) { ex[0] = (t < T / 2 ? 0 : 4) + (2 * t) % 4; ex[1] = ex[0] + 1; }
        else { ex[0] = (2 * t) % E; ex[1] = (2 * t + 1) % E; }
        if (l == 1) w[0] = w[1] = 0.5;
        for (int k = 0; k < 2; k++) {
          sqlite3_bind_int(rt, 1, s); sqlite3_bind_int(rt, 2, t); sqlite3_bind_int(rt, 3, l);
          sqlite3_bind_int(rt, 4, k); sqlite3_bind_int(rt, 5, ex[k]); sqlite3_bind_double(rt, 6, w[k]);
          REQUIRE(sqlite3_step(rt) == SQLITE_DONE); sqlite3_reset(rt);
          cnt[l][ex[k]]++;
        }
      }
  for (int l = 0; l < RL; l++)
    for (int e = 0; e < E; e++) {
      sqlite3_bind_int(el, 1, l); sqlite3_bind_int(el, 2, e); sqlite3_bind_int64(el, 3, cnt[l][e]);
      REQUIRE(sqlite3_step(el) == SQLITE_DONE); sqlite3_reset(el);
    }
  sqlite3_finalize(rt); sqlite3_finalize(el);
  sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
  sqlite3_close(db);
  ana_db *d;
  REQUIRE(ana_db_open(&d, path, err, sizeof err) == 0);
  ana_diag g;
  REQUIRE(ana_diagnose(d, -1, NULL, &g, err, sizeof err) == 0);
  REQUIRE(g.n == RL && g.has_trace);
  CHECKF(g.layers[0].flags == 0 && !strcmp(g.layers[0].verdict, "healthy"), "control: %s %u", g.layers[0].verdict,
         g.layers[0].flags);
  CHECK_NEAR(g.layers[0].w1_uniform, 0.0, 1e-12);                    /* 0.6 > 1.05 x 1/2 */
  CHECKF(g.layers[1].flags == ANA_F_UNIFORM, "uniform layer flags %u", g.layers[1].flags);
  CHECK_NEAR(g.layers[1].w1_uniform, 1.0, 1e-12);
  CHECKF(g.layers[2].flags == ANA_F_DRIFT_POS, "drift layer flags %u", g.layers[2].flags);
  CHECK_NEAR(g.layers[2].pos_js, 1.0, 1e-9);                         /* disjoint halves: 1 bit */
  CHECK(g.layers[2].pos_p < 1e-3 && g.layers[0].pos_js < 0.05 && g.layers[2].label_js < 1e-9);
  CHECK(g.n_findings == 2);
  ana_diag_free(&g);
  /* a stricter tolerance turns the uniform finding off (thresholds are honoured) */
  ana_diag_thr thr;
  ana_diag_thr_default(&thr);
  thr.uniform_tol = 0.0;
  thr.drift_js = 1.01;
  REQUIRE(ana_diagnose(d, -1, &thr, &g, err, sizeof err) == 0);
  CHECK(g.layers[1].flags == ANA_F_UNIFORM);                          /* exactly uniform still counts */
  CHECK(g.layers[2].flags == 0 && g.n_findings == 1);
  ana_diag_free(&g);
  ana_db_close(d);
}

int main(void) {
  const char *tmp = tst_tmp_dir();
  char path[4096];
  snprintf(path, sizeof path, "%s/ana_stats2.db", tmp);
  write_sink_db(path);
  test_packed_and_stats(path, tmp);
  test_rules(tmp);
  return tst_done();
}
