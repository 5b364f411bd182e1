/* test_compare.c — `moescope compare` end to end on the shipped model and demo texts:
 * identical runs agree perfectly; native top-2 vs topk:k=1 agrees exactly on layer 0's
 * top-1 (same input) with Jaccard exactly 1/2 there, and k=1 has worse perplexity;
 * per-layer Jaccard equals an independent SQL computation; runs from two DB files
 * (PATH:ID); at level full the next-token KL divergence and top-1 agreement equal an
 * independent recomputation from logits_sample; different inputs are refused with one
 * error line; -o writes the paper files (LaTeX table with one row per strategy). */
#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "tests/tst.h"
#include "tests/util/tst_run.h"

static double jnum(cJSON *o, const char *k, int i) {
  cJSON *a = cJSON_GetObjectItem(o, k);
  cJSON *v = i >= 0 ? cJSON_GetArrayItem(a, i) : a;
  return v && cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

int main(void) {
  char db[2048], db2[2048], model[2048], texts[2048], out[2048];
  snprintf(db, sizeof db, "%s/compare.db", tst_tmp_dir());
  snprintf(db2, sizeof db2, "%s/compare2.db", tst_tmp_dir());
  snprintf(out, sizeof out, "%s/compare_out", tst_tmp_dir());
  remove(db); remove(db2);
  tst_path(model, sizeof model, "MOESCOPE_SRC", "models/tiny-mixtral");
  tst_path(texts, sizeof texts, "MOESCOPE_SRC", "demo/texts");
  tst_out o;
  const char *routes[3] = {"native", "native", "topk:k=1"};
  for (int i = 0; i < 3; i++) {
    tst_sh(&o, "%s run --model %s --file %s/code.txt --file %s/math.txt --route %s --db %s --quiet", tst_bin(), model,
           texts, texts, routes[i], db);
    REQUIRE(o.status == 0);
  }
  tst_sh(&o, "%s run --model %s --file %s/code.txt --file %s/math.txt --route topk:k=3 --db %s --quiet", tst_bin(), model,
         texts, texts, db2);
  REQUIRE(o.status == 0);
  /* identical runs */
  tst_sh(&o, "%s compare 1 2 --db %s --json", tst_bin(), db);
  REQUIRE(o.status == 0);
  cJSON *j = cJSON_Parse(o.out);
  REQUIRE(j && cJSON_GetArraySize(j) == 1);
  cJSON *p = cJSON_GetArrayItem(j, 0);
  for (int l = 0; l < 4; l++) {
    CHECK(jnum(p, "jaccard", l) == 1.0);
    CHECK(jnum(p, "top1_agreement", l) == 1.0);
    CHECK_NEAR(jnum(p, "weight_corr", l), 1.0, 1e-9);
  }
  CHECK(jnum(p, "ppl_a", -1) == jnum(p, "ppl_b", -1));
  cJSON_Delete(j);
  /* native vs k=1 */
  tst_sh(&o, "%s compare 1 3 --db %s --json", tst_bin(), db);
  REQUIRE(o.status == 0);
  j = cJSON_Parse(o.out);
  p = cJSON_GetArrayItem(j, 0);
  CHECK(jnum(p, "top1_agreement", 0) == 1.0);
  CHECK_NEAR(jnum(p, "jaccard", 0), 0.5, 1e-12);
  CHECK(jnum(p, "jaccard", 3) < 0.5 + 1e-12);
  double ppl2 = jnum(p, "ppl_a", -1), ppl1 = jnum(p, "ppl_b", -1);
  printf("perplexity native top-2 %.3f vs top-1 %.3f\n", ppl2, ppl1);
  CHECK(ppl1 > ppl2);
  /* Jaccard of layer 2 recomputed in SQL */
  sqlite3 *s;
  REQUIRE(sqlite3_open(db, &s) == SQLITE_OK);
  sqlite3_stmt *st;
  REQUIRE(sqlite3_prepare_v2(s,
    "WITH a AS (SELECT seq_id, pos, expert FROM routing WHERE run_id=1 AND layer=2), "
    "b AS (SELECT seq_id, pos, expert FROM routing WHERE run_id=3 AND layer=2), "
    "i AS (SELECT seq_id, pos, COUNT(*) n FROM a JOIN b USING(seq_id, pos, expert) GROUP BY seq_id, pos), "
    "na AS (SELECT seq_id, pos, COUNT(*) n FROM a GROUP BY seq_id, pos), "
    "nb AS (SELECT seq_id, pos, COUNT(*) n FROM b GROUP BY seq_id, pos) "
    "SELECT AVG(COALESCE(i.n, 0) * 1.0 / (na.n + nb.n - COALESCE(i.n, 0))) FROM na JOIN nb USING(seq_id, pos) "
    "LEFT JOIN i USING(seq_id, pos)", -1, &st, NULL) == SQLITE_OK);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  CHECK_NEAR(sqlite3_column_double(st, 0), jnum(p, "jaccard", 2), 1e-12);
  sqlite3_finalize(st);
  sqlite3_close(s);
  cJSON_Delete(j);
  /* across DB files, and the paper folder */
  tst_sh(&o, "%s compare %s:1 %s:1 %s:3 -o %s", tst_bin(), db, db2, db, out);
  CHECKF(o.status == 0, "%s", o.err);
  CHECK(strstr(o.out, "topk:k=3") != NULL);
  char path[2200], buf[16384];
  snprintf(path, sizeof path, "%s/compare.tex", out);
  tst_read_file(path, buf, sizeof buf);
  int rows = 0;
  for (char *q = buf; (q = strstr(q, "\\texttt{")); q++) rows++;
  CHECK(rows == 3);
  CHECK(strstr(buf, "\\toprule") && strstr(buf, "\\bottomrule"));
  snprintf(path, sizeof path, "%s/quality_vs_balance.png", out);
  FILE *f = fopen(path, "rb");
  unsigned char png[8] = {0};
  CHECK(f && fread(png, 1, 8, f) == 8 && memcmp(png, "\x89PNG", 4) == 0);
  if (f) fclose(f);
  snprintf(path, sizeof path, "%s/quality_vs_balance.pdf", out);
  CHECK(access(path, R_OK) == 0);
  /* level full: next-token KL and top-1 agreement from logits_sample, recomputed here */
  {
    char db3[2048];
    snprintf(db3, sizeof db3, "%s/compare_full.db", tst_tmp_dir());
    remove(db3);
    const char *r3[3] = {"native", "native", "topk:k=1"};
    for (int i = 0; i < 3; i++) {
      tst_sh(&o, "%s run --model %s --file %s/code.txt --route %s --record full --db %s --quiet", tst_bin(), model, texts,
             r3[i], db3);
      REQUIRE(o.status == 0);
    }
    tst_sh(&o, "%s compare 1 2 3 --db %s --json", tst_bin(), db3);
    REQUIRE(o.status == 0);
    cJSON *k = cJSON_Parse(o.out);
    REQUIRE(k && cJSON_GetArraySize(k) == 2);
    cJSON *same = cJSON_GetArrayItem(k, 0), *k1 = cJSON_GetArrayItem(k, 1);
    CHECK(jnum(same, "logit_positions", -1) > 50);
    CHECK(jnum(same, "kl_mean", -1) == 0.0 && jnum(same, "next_token_top1", -1) == 1.0);
    double kl = jnum(k1, "kl_mean", -1), t1 = jnum(k1, "next_token_top1", -1);
    printf("native vs top-1 routing: next-token KL %.5f nats, top-1 agreement %.3f\n", kl, t1);
    CHECK(kl > 0 && t1 > 0.5 && t1 < 1.0);
    /* independent recomputation over the same sampled positions */
    sqlite3 *s3;
    REQUIRE(sqlite3_open(db3, &s3) == SQLITE_OK);
    sqlite3_stmt *q;
    REQUIRE(sqlite3_prepare_v2(s3, "SELECT a.logits, b.logits FROM logits_sample a JOIN logits_sample b ON "
            "a.seq_id=b.seq_id AND a.pos=b.pos WHERE a.run_id=1 AND b.run_id=3", -1, &q, NULL) == SQLITE_OK);
    double sum = 0;
    int rows = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
      const float *za = sqlite3_column_blob(q, 0), *zb = sqlite3_column_blob(q, 1);
      int V = sqlite3_column_bytes(q, 0) / 4;
      double la = 0, lb = 0, ma = -1e30, mb = -1e30, d = 0;
      for (int i = 0; i < V; i++) { if (za[i] > ma) ma = za[i]; if (zb[i] > mb) mb = zb[i]; }
      for (int i = 0; i < V; i++) { la += exp(za[i] - ma); lb += exp(zb[i] - mb); }
      la = ma + log(la); lb = mb + log(lb);
      for (int i = 0; i < V; i++) d += exp(za[i] - la) * ((za[i] - la) - (zb[i] - lb));
      sum += d;
      rows++;
    }
    sqlite3_finalize(q);
    sqlite3_close(s3);
    CHECK(rows == (int)jnum(k1, "logit_positions", -1));
    CHECK_NEAR(sum / rows, kl, 1e-9);
    cJSON_Delete(k);
  }
  /* different inputs are refused */
  tst_sh(&o, "%s run --model %s --file %s/prose.txt --db %s --quiet", tst_bin(), model, texts, db);
  REQUIRE(o.status == 0);
  tst_sh(&o, "%s compare 1 4 --db %s", tst_bin(), db);
  CHECK(o.status != 0 && tst_count_lines(o.err) == 1 && strstr(o.err, "token streams differ"));
  tst_sh(&o, "%s compare 1 --db %s", tst_bin(), db);
  CHECK(o.status == 2 && tst_count_lines(o.err) == 1);
  tst_sh(&o, "%s compare 1 99 --db %s", tst_bin(), db);
  CHECK(o.status == 1 && tst_count_lines(o.err) == 1);
  return tst_done();
}
