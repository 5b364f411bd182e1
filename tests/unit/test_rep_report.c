/* test_rep_report.c — reports/ entry points on a hand-built trace DB: `stats` text table
 * ('-' for unrecorded losses, one row per layer + overall), `stats --json` parsed back with
 * cJSON and checked against known counts and metrics, run selection and error lines, and
 * `report`: every figure exists, PNG signature + IHDR size, SVG header, index.html embeds
 * every figure, report.md carries the balance table with one row per layer. */
#include "tests/tst.h"
#include "tests/util/tst_files.h"

#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <stdint.h>

#include "probes/prb_sink.h"
#include "reports/rep_commands.h"
#include "reports/rep_internal.h"

static void exec(sqlite3 *db, const char *sql) {
  char *msg = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
    fprintf(stderr, "SQL error: %s\n  in: %.200s\n", msg, sql);
    exit(1);
  }
}

enum { L = 4, E = 8, K = 2, NSEQ = 4, NPOS = 30 };
static const char *labels[NSEQ] = {"code", "math", "prose", "code"};

/* Run 1: counts level, layer0 = [10]*8, layer1 = [80,0,...]. Run 2: full level with labels;
 * sequence s prefers expert 2*label. */
static void build(const char *path) {
  unlink(path);
  sqlite3 *db;
  REQUIRE(sqlite3_open(path, &db) == SQLITE_OK);
  exec(db, prb_schema_sql);
  exec(db, "PRAGMA user_version = 1");
  exec(db, "BEGIN");
  exec(db, "INSERT INTO runs(run_id, family, n_layers, n_experts, top_k, policy, record_level,"
           " model_path, command_line) VALUES (1, 'switch', 2, 8, 1, 'topk', 'counts', 'm', 'x'),"
           " (2, 'mixtral', 4, 8, 2, 'topk', 'full', 'models/<tiny>', 'moescope run | x')");
  for (int e = 0; e < E; e++) {
    char q[256];
    snprintf(q, sizeof q, "INSERT INTO expert_load VALUES (1,0,0,%d,10,5,0),(1,0,1,%d,%d,1,0)",
             e, e, e == 0 ? 80 : 0);
    exec(db, q);
  }
  sqlite3_stmt *sq, *rt, *rp, *el;
  REQUIRE(sqlite3_prepare_v2(db, "INSERT INTO sequences VALUES (2,?,?,'t',?)", -1, &sq, NULL) == 0);
  REQUIRE(sqlite3_prepare_v2(db, "INSERT INTO routing VALUES (2,?,?,?,?,?,0.5)", -1, &rt, NULL) == 0);
  REQUIRE(sqlite3_prepare_v2(db, "INSERT INTO router_probs VALUES (2,?,?,?,?,?)", -1, &rp, NULL) == 0);
  REQUIRE(sqlite3_prepare_v2(db, "INSERT INTO expert_load VALUES (2,?,?,?,?,?,0)", -1, &el, NULL) == 0);
  uint32_t r = 12345;
  for (int s = 0; s < NSEQ; s++) {
    sqlite3_bind_int(sq, 1, s); sqlite3_bind_text(sq, 2, labels[s], -1, SQLITE_STATIC);
    sqlite3_bind_int(sq, 3, NPOS); sqlite3_step(sq); sqlite3_reset(sq);
    int pref = 2 * (s % 3);
    for (int l = 0; l < L; l++) {
      long long cnt[E] = {0};
      for (int p = 0; p < NPOS; p++) {
        r = r * 1103515245u + 12345u;
        int a = pref, b = (int)((r >> 16) % (E - 1));
        if (b >= a) b++;
        if (l == 3) a = 0;            /* layer 3: expert 0 always (collapse-ish) */
        if (b == a) b = (a + 1) % E;
        int ex[2] = {a, b};
        for (int k = 0; k < K; k++) {
          sqlite3_bind_int(rt, 1, s); sqlite3_bind_int(rt, 2, p); sqlite3_bind_int(rt, 3, l);
          sqlite3_bind_int(rt, 4, k); sqlite3_bind_int(rt, 5, ex[k]);
          sqlite3_step(rt); sqlite3_reset(rt);
          cnt[ex[k]]++;
        }
        float pr[E], lg[E];
        for (int e = 0; e < E; e++) { lg[e] = (e == a) ? 2.0f : 0.0f; }
        float z = 0;
        for (int e = 0; e < E; e++) z += expf(lg[e]);
        for (int e = 0; e < E; e++) pr[e] = expf(lg[e]) / z;
        sqlite3_bind_int(rp, 1, s); sqlite3_bind_int(rp, 2, p); sqlite3_bind_int(rp, 3, l);
        sqlite3_bind_blob(rp, 4, pr, (int)sizeof pr, SQLITE_TRANSIENT);
        sqlite3_bind_blob(rp, 5, lg, (int)sizeof lg, SQLITE_TRANSIENT);
        sqlite3_step(rp); sqlite3_reset(rp);
      }
      for (int e = 0; e < E; e++) {
        sqlite3_bind_int(el, 1, s); sqlite3_bind_int(el, 2, l); sqlite3_bind_int(el, 3, e);
        sqlite3_bind_int64(el, 4, cnt[e]); sqlite3_bind_double(el, 5, 0.5 * cnt[e]);
        sqlite3_step(el); sqlite3_reset(el);
      }
    }
  }
  sqlite3_finalize(sq); sqlite3_finalize(rt); sqlite3_finalize(rp); sqlite3_finalize(el);
  exec(db, "COMMIT");
  sqlite3_close(db);
}

/* Checks the PNG signature and returns IHDR width/height (0 on failure). */
static int png_size(const char *path, unsigned *w, unsigned *h) {
  size_t n;
  unsigned char *b = (unsigned char *)tst_slurp(path, &n);
  *w = *h = 0;
  if (!b) return 0;
  static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  int ok = n > 33 && memcmp(b, sig, 8) == 0 && memcmp(b + 12, "IHDR", 4) == 0;
  if (ok) {
    *w = (unsigned)b[16] << 24 | (unsigned)b[17] << 16 | (unsigned)b[18] << 8 | b[19];
    *h = (unsigned)b[20] << 24 | (unsigned)b[21] << 16 | (unsigned)b[22] << 8 | b[23];
  }
  free(b);
  return ok;
}

static char *capture(int (*fn)(FILE *, void *), void *arg, int *rc) {
  char *buf = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&buf, &n);
  *rc = fn(f, arg);
  fclose(f);
  return buf;
}

typedef struct sargs { const char *db; long long run; int json; char err[512]; } sargs;
static int do_stats(FILE *f, void *a) {
  sargs *s = a;
  return rep_stats_cmd(s->db, s->run, s->json, f, s->err, sizeof s->err);
}

static void test_stats(const char *db, const char *tmp) {
  int rc;
  sargs a = {db, 1, 0, ""};
  char *txt = capture(do_stats, &a, &rc);
  CHECKF(rc == 0, "%s", a.err);
  CHECK(strstr(txt, "run 1") && strstr(txt, "layer") && strstr(txt, "aux_loss"));
  CHECK(strstr(txt, "dead experts, layer 1: 1 2 3 4 5 6 7"));
  /* layer 1 row: 80 slots, MaxVio 7, Gini 7/8, dead 7, losses '-' */
  CHECKF(strstr(txt, "    1            80") && strstr(txt, "7.0000") && strstr(txt, "0.8750"), "%s", txt);
  CHECK(strstr(txt, "      -          -   "));
  /* Jain and capacity overflow, run 1 layer 1 = [80, 0 x 7] in one batch: Jain = 80^2/(8*80^2)
   * = 0.125; capacity ceil(CF*80/8) = 10, 13, 20 -> 70, 67, 60 slots over capacity */
  CHECKF(strstr(txt, "0.1250    0.8750     0.8375    0.7500"), "%s", txt);
  free(txt);

  a.run = -1; a.json = 1;
  txt = capture(do_stats, &a, &rc);
  CHECKF(rc == 0, "%s", a.err);
  cJSON *j = cJSON_Parse(txt);
  REQUIRE(j);
  cJSON *run = cJSON_GetObjectItem(j, "run");
  CHECK(cJSON_GetObjectItem(run, "run_id")->valuedouble == 2);          /* latest */
  CHECK(strcmp(cJSON_GetObjectItem(run, "family")->valuestring, "mixtral") == 0);
  cJSON *layers = cJSON_GetObjectItem(j, "layers");
  CHECK(cJSON_GetArraySize(layers) == L);
  double total = 0;
  for (int l = 0; l < L; l++) {
    cJSON *o = cJSON_GetArrayItem(layers, l);
    cJSON *c = cJSON_GetObjectItem(o, "counts");
    CHECK(cJSON_GetArraySize(c) == E);
    double sum = 0;
    for (int e = 0; e < E; e++) sum += cJSON_GetArrayItem(c, e)->valuedouble;
    CHECK(sum == NSEQ * NPOS * K);
    CHECK(cJSON_GetObjectItem(o, "slots")->valuedouble == sum);
    CHECK(cJSON_IsNumber(cJSON_GetObjectItem(o, "aux_loss")));
    CHECK(cJSON_IsNumber(cJSON_GetObjectItem(o, "z_loss")));
    total += sum;
  }
  /* layer 3: expert 0 takes one slot of every token: count = NSEQ*NPOS = 120 of 240 */
  cJSON *l3 = cJSON_GetArrayItem(layers, 3);
  CHECK(cJSON_GetArrayItem(cJSON_GetObjectItem(l3, "counts"), 0)->valuedouble == NSEQ * NPOS);
  CHECK_NEAR(cJSON_GetObjectItem(l3, "maxvio")->valuedouble, (120.0 - 30.0) / 30.0, 1e-9);
  /* z-loss: logits = one 2 and seven 0 -> lse = log(e^2 + 7), every row identical */
  double lse = log(exp(2.0) + 7.0);
  CHECK_NEAR(cJSON_GetObjectItem(l3, "z_loss")->valuedouble, lse * lse, 1e-5);
  cJSON *ov = cJSON_GetObjectItem(j, "overall");
  CHECK(cJSON_GetObjectItem(ov, "slots")->valuedouble == total);
  CHECK_NEAR(cJSON_GetObjectItem(ov, "z_loss")->valuedouble, lse * lse, 1e-5);
  cJSON_Delete(j);
  free(txt);

  /* run 1 in JSON: losses are null, dead list of layer 1 */
  a.run = 1;
  txt = capture(do_stats, &a, &rc);
  j = cJSON_Parse(txt);
  REQUIRE(j);
  cJSON *l1 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "layers"), 1);
  CHECK(cJSON_IsNull(cJSON_GetObjectItem(l1, "aux_loss")));
  CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(l1, "dead")) == 7);
  CHECK_NEAR(cJSON_GetObjectItem(l1, "gini")->valuedouble, 0.875, 1e-12);
  cJSON_Delete(j);
  free(txt);

  /* errors: unknown run, missing DB */
  a.run = 9;
  txt = capture(do_stats, &a, &rc);
  CHECK(rc == -1 && strstr(a.err, "no run 9"));
  free(txt);
  char missing[4096];
  snprintf(missing, sizeof missing, "%s/rep_missing.db", tmp);
  unlink(missing);
  sargs m = {missing, -1, 0, ""};
  txt = capture(do_stats, &m, &rc);
  CHECKF(rc == -1 && strstr(m.err, "cannot open trace DB") && !strchr(m.err, '\n'), "%s", m.err);
  free(txt);
}

static int count_occ(const char *s, const char *needle) {
  int n = 0;
  for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle)) n++;
  return n;
}

/* Data rows of LaTeX table tab:name (lines ending in \\ between \midrule and \bottomrule). */
static int tex_rows(const char *tex, const char *name) {
  char lab[96];
  snprintf(lab, sizeof lab, "\\label{tab:%s}", name);
  const char *p = strstr(tex, lab);
  if (!p || !(p = strstr(p, "\\midrule\n"))) return -1;
  const char *end = strstr(p, "\\bottomrule");
  if (!end) return -1;
  int n = 0;
  for (const char *q = p; (q = strstr(q, " \\\\\n")) && q < end; q++) n++;
  return n;
}

static int csv_rows(const char *path) {
  char *b = tst_slurp(path, NULL);
  if (!b) return -1;
  int n = count_occ(b, "\r\n");
  free(b);
  return n - 1;
}

static void test_report(const char *db, const char *tmp) {
  char out[4096], p[4600], err[512];
  snprintf(out, sizeof out, "%s/rep_report_out/nested", tmp);
  CHECKF(rep_report_cmd(db, -1, out, err, sizeof err) == 0, "%s", err);
  enum { NF = 20 };
  const char *stems[NF] = {"heatmap_load", "balance_layers", "balance_cv", "label_pref_layer0", "label_pref_layer1",
                           "label_pref_layer2", "label_pref_layer3", "coact_layer0", "coact_layer1", "coact_layer2",
                           "coact_layer3", "trans_layer0", "trans_layer1", "trans_layer2", "position_layer0",
                           "position_layer1", "position_layer2", "position_layer3", "gate_weights",
                           "transitions_sankey"};
  snprintf(p, sizeof p, "%s/index.html", out);
  char *html = tst_slurp(p, NULL);
  snprintf(p, sizeof p, "%s/report.md", out);
  char *md = tst_slurp(p, NULL);
  snprintf(p, sizeof p, "%s/report.tex", out);
  char *tex = tst_slurp(p, NULL);
  REQUIRE(html && md && tex);
  for (int i = 0; i < NF; i++) {
    unsigned w, h;
    snprintf(p, sizeof p, "%s/%s.png", out, stems[i]);
    CHECKF(png_size(p, &w, &h), "%s", p);
    CHECKF(w >= 400 && w <= 2000 && h >= 250 && h <= 1500, "%s %ux%u", p, w, h);
    snprintf(p, sizeof p, "%s/%s.svg", out, stems[i]);
    char *svg = tst_slurp(p, NULL);
    CHECKF(svg && (strncmp(svg, "<?xml", 5) == 0 || strncmp(svg, "<svg", 4) == 0), "%s", p);
    free(svg);
    snprintf(p, sizeof p, "%s/%s.pdf", out, stems[i]);
    char *pdf = tst_slurp(p, NULL);
    CHECKF(pdf && strncmp(pdf, "%PDF-", 5) == 0, "%s", p);
    free(pdf);
    char needle[128];
    snprintf(needle, sizeof needle, "id=\"%s\"><img", stems[i]);
    CHECKF(strstr(html, needle), "html lacks %s", stems[i]);
    snprintf(needle, sizeof needle, "(%s.png)", stems[i]);
    CHECKF(strstr(md, needle), "md lacks %s", stems[i]);
    snprintf(needle, sizeof needle, "keepaspectratio]{%s.pdf}", stems[i]);
    CHECKF(strstr(tex, needle), "tex lacks %s", stems[i]);
  }
  CHECK(count_occ(html, "src=\"data:image/png;base64,iVBORw0KGgo") == NF);
  CHECK(count_occ(tex, "\\includegraphics") == NF);
  CHECK(strstr(html, "models/&lt;tiny&gt;"));                   /* escaped */
  CHECK(strstr(md, "moescope run \\| x"));                       /* pipe escaped in table */
  CHECK(strstr(tex, "models/\\textless{}tiny\\textgreater{}"));  /* LaTeX specials escaped */
  /* balance table: header + one row per layer + overall row */
  CHECK(strstr(md, "| layer | slots | CV | MaxVio | H_norm | Gini | min/max | dead | aux_loss | z_loss | Jain | drop@1.0 | drop@1.25 | drop@2.0 |"));
  int rows = 0;
  for (int l = 0; l < L; l++) {
    char needle[32];
    snprintf(needle, sizeof needle, "\n| %d | %d |", l, NSEQ * NPOS * K);
    rows += strstr(md, needle) != NULL;
  }
  CHECK(rows == L);
  CHECK(strstr(md, "| all |"));
  /* every table: CSV rows == LaTeX rows == expected; HTML has the table */
  struct { const char *name; int rows; } tabs[] = {{"run", 12}, {"diagnosis", L}, {"balance", L + 1}, {"structure", L},
                                                   {"labels", L * 3}};
  for (size_t i = 0; i < sizeof tabs / sizeof tabs[0]; i++) {
    snprintf(p, sizeof p, "%s/tables/%s.csv", out, tabs[i].name);
    CHECKF(csv_rows(p) == tabs[i].rows, "%s: %d rows, want %d", p, csv_rows(p), tabs[i].rows);
    CHECKF(tex_rows(tex, tabs[i].name) == tabs[i].rows, "tex %s: %d rows", tabs[i].name, tex_rows(tex, tabs[i].name));
    char needle[64];
    snprintf(needle, sizeof needle, "id=\"tab-%s\"", tabs[i].name);
    CHECKF(strstr(html, needle), "html lacks table %s", tabs[i].name);
  }
  snprintf(p, sizeof p, "%s/tables/top_tokens.csv", out);
  CHECK(access(p, F_OK) != 0);                                   /* no token ids in this DB */
  CHECK(count_occ(tex, "\\toprule") == 5 && count_occ(tex, "\\begin{table}") == 5);
  free(html); free(md); free(tex);

  /* --format tex: report.tex + PDF figures + CSV, no HTML/MD/PNG */
  snprintf(out, sizeof out, "%s/rep_report_tex", tmp);
  CHECKF(rep_report_cmd_fmt(db, -1, out, REP_DOC_TEX, err, sizeof err) == 0, "%s", err);
  snprintf(p, sizeof p, "%s/report.tex", out); CHECK(access(p, F_OK) == 0);
  snprintf(p, sizeof p, "%s/coact_layer1.pdf", out); CHECK(access(p, F_OK) == 0);
  snprintf(p, sizeof p, "%s/tables/balance.csv", out); CHECK(access(p, F_OK) == 0);
  snprintf(p, sizeof p, "%s/index.html", out); CHECK(access(p, F_OK) != 0);
  snprintf(p, sizeof p, "%s/coact_layer1.png", out); CHECK(access(p, F_OK) != 0);
  CHECK(rep_parse_formats("html,md", err, sizeof err) == (REP_DOC_HTML | REP_DOC_MD));
  CHECK(rep_parse_formats("html,docx", err, sizeof err) == 0 && strstr(err, "docx"));

  /* counts-only run: load heatmap only, a note instead of label figures */
  snprintf(out, sizeof out, "%s/rep_report_counts", tmp);
  CHECKF(rep_report_cmd(db, 1, out, err, sizeof err) == 0, "%s", err);
  snprintf(p, sizeof p, "%s/label_pref_layer0.png", out);
  CHECK(access(p, F_OK) != 0);
  snprintf(p, sizeof p, "%s/report.md", out);
  md = tst_slurp(p, NULL);
  CHECK(md && strstr(md, "no routing rows") && strstr(md, "heatmap_load.png"));
  free(md);

  /* outdir that is a file -> error line */
  snprintf(p, sizeof p, "%s/rep_report_counts/report.md", tmp);
  CHECK(rep_report_cmd(db, 1, p, err, sizeof err) == -1 && strstr(err, "cannot create directory"));

  /* renderer: IHDR matches the reported size and the grid grows with E */
  double v[2 * 64];
  for (int i = 0; i < 2 * 64; i++) v[i] = (i % 7) * 0.5;
  const char *rl[2] = {"L0", "L1"};
  rep_heatmap hm = {"t", NULL, "expert", "layer", "x", 2, 8, rl, v};
  int w8, h8, w64, h64;
  unsigned pw, ph;
  snprintf(p, sizeof p, "%s/rep_hm8.png", tmp);
  CHECK(rep_heatmap_write(&hm, p, NULL, &w8, &h8, err, sizeof err) == 0);
  CHECK(png_size(p, &pw, &ph) && (int)pw == w8 && (int)ph == h8);
  hm.cols = 64;
  snprintf(p, sizeof p, "%s/rep_hm64.png", tmp);
  CHECK(rep_heatmap_write(&hm, p, NULL, &w64, &h64, err, sizeof err) == 0);
  CHECK(png_size(p, &pw, &ph) && (int)pw == w64 && w64 > w8);
}

int main(void) {
  const char *tmp = getenv("MOESCOPE_TMP");
  if (!tmp) tmp = "/tmp";
  char db[4096];
  snprintf(db, sizeof db, "%s/rep_report.db", tmp);
  build(db);
  test_stats(db, tmp);
  test_report(db, tmp);
  return tst_done();
}
