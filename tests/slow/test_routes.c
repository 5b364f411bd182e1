/* test_routes.c — `moescope run --route SPEC` end to end.
 * 1. Policies compose with the record levels on the shipped tiny-mixtral (capacity,
 *    expert_choice and bias at all three, the others at one or two): the run
 *    succeeds, runs.policy holds the canonical spec with every parameter, counts writes only
 *    expert_load (+ router_bias), topk adds routing, full adds router_probs; capacity's
 *    expert_load.dropped equals the missing slots; expert choice gives every expert exactly
 *    its capacity per batch; top-p gives a variable number of experts; hash gives a token id
 *    the same experts everywhere; random:seed=3 twice routes identically; bias writes its
 *    trajectory (batches x layers x E rows of router_bias) at every level.
 * 2. Quality: on tiny-mixtral over the corpus eval files (demo/texts without ../shared),
 *    `--route topk:k=1` has a worse perplexity than the native top-2 (`compare --json`).
 * 3. Balance: on tiny-mixtral-collapsed (skip 77 without ../shared), bias:gamma=0.01 lowers
 *    the mean MaxVio (stats --json, mean over layers) to < 0.6x the native router's at a
 *    perplexity cost < 10%; prints the table policy | ppl | mean MaxVio | mean CV. */
#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "tests/tst.h"
#include "tests/util/tst_run.h"

static sqlite3 *g_db;
static long long qi(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static long long qi(const char *fmt, ...) {
  char sql[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(sql, sizeof sql, fmt, ap);
  va_end(ap);
  sqlite3_stmt *st;
  long long v = -1;
  if (sqlite3_prepare_v2(g_db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
  else fprintf(stderr, "query failed: %s: %s\n", sql, sqlite3_errmsg(g_db));
  sqlite3_finalize(st);
  return v;
}
static void qs(char *buf, size_t n, const char *sql) {
  sqlite3_stmt *st;
  buf[0] = 0;
  if (sqlite3_prepare_v2(g_db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
    snprintf(buf, n, "%s", (const char *)sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
}
static double jnum(cJSON *o, const char *k) {
  cJSON *v = cJSON_GetObjectItem(o, k);
  return v && cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* 1: 10 specs at 1-3 record levels on 128 tokens (2 forward batches of 64) */
static void test_matrix(const char *model, const char *texts) {
  char db[2048];
  snprintf(db, sizeof db, "%s/routes_matrix.db", tst_tmp_dir());
  remove(db);
  /* levels: bit 0 counts, 1 topk, 2 full (all three for the policies with level-specific rows) */
  struct { const char *spec, *canon; int levels; } P[] = {
    {"native", "native(softmax,topk:k=2,renorm=1)", 2}, {"topk:score=sigmoid,k=3", "topk:k=3,score=sigmoid,renorm=1", 2},
    {"topp:p=0.6", "topp:p=0.6,max_k=8", 6}, {"capacity:cf=1", "capacity:cf=1,k=2,renorm=1,order=token", 7},
    {"expert_choice", "expert_choice:cf=2", 7}, {"bias:gamma=0.01", "bias:gamma=0.01,k=2,score=softmax,renorm=1", 7},
    {"group:n_group=4,topk_group=2", "group:n_group=4,topk_group=2,score=max,k=2,renorm=1", 2},
    {"noisy:std=0.5", "noisy:std=0.5,k=2,seed=0", 5}, {"hash", "hash:k=2,seed=0", 3}, {"random:seed=3", "random:k=2,seed=3", 6}};
  const char *levels[3] = {"counts", "topk", "full"};
  int np = sizeof P / sizeof P[0], run = 0;
  tst_out o;
  for (int i = 0; i < np; i++)
    for (int l = 0; l < 3; l++) {
      if (!(P[i].levels >> l & 1)) continue;
      tst_sh(&o, "%s run --model %s --file %s/code.txt --max-tokens 128 --batch 64 --route %s --record %s --db %s --quiet",
             tst_bin(), model, texts, P[i].spec, levels[l], db);
      CHECKF(o.status == 0, "%s at %s: %s", P[i].spec, levels[l], o.err);
      run++;
      REQUIRE(sqlite3_open(db, &g_db) == SQLITE_OK);
      char pol[256], sql[256];
      snprintf(sql, sizeof sql, "SELECT policy FROM runs WHERE run_id=%d", run);
      qs(pol, sizeof pol, sql);
      CHECKF(!strcmp(pol, P[i].canon), "runs.policy '%s' (want '%s')", pol, P[i].canon);
      long long n_load = qi("SELECT COUNT(*) FROM expert_load WHERE run_id=%d", run);
      long long n_rout = qi("SELECT COUNT(*) FROM routing WHERE run_id=%d", run);
      long long n_prob = qi("SELECT COUNT(*) FROM router_probs WHERE run_id=%d", run);
      long long n_bias = qi("SELECT COUNT(*) FROM router_bias WHERE run_id=%d", run);
      long long slots = qi("SELECT SUM(tokens) FROM expert_load WHERE run_id=%d", run);
      CHECK(n_load > 0);
      CHECK(l == 0 ? n_rout == 0 : n_rout == slots);
      CHECK(l == 2 ? n_prob == 128 * 4 : n_prob == 0);
      CHECK(n_bias == (strstr(P[i].spec, "bias") ? 2 * 4 * 8 : 0));
      if (strstr(P[i].spec, "capacity")) {   /* every slot is kept or counted as dropped */
        long long dropped = qi("SELECT SUM(dropped) FROM expert_load WHERE run_id=%d", run);
        CHECK(dropped > 0 && slots + dropped == 128 * 4 * 2);
        /* capacity ceil(1*2*64/8) = 16 per expert per batch */
        CHECK(qi("SELECT MAX(tokens) FROM expert_load WHERE run_id=%d", run) == 16);
      }
      if (strstr(P[i].spec, "expert_choice"))   /* ceil(2*64/8) = 16 tokens per expert per batch */
        CHECK(qi("SELECT COUNT(*) FROM expert_load WHERE run_id=%d AND tokens=16", run) == 2 * 4 * 8 && n_load == 2 * 4 * 8);
      if (l >= 1 && strstr(P[i].spec, "topp"))
        CHECK(qi("SELECT COUNT(DISTINCT c) FROM (SELECT COUNT(*) c FROM routing WHERE run_id=%d GROUP BY seq_id, pos, layer)", run) > 1);
      if (l >= 1 && strstr(P[i].spec, "expert_choice"))
        CHECK(qi("SELECT COUNT(DISTINCT c) FROM (SELECT COUNT(*) c FROM routing WHERE run_id=%d GROUP BY seq_id, pos, layer)", run) > 2);
      if (l >= 1 && !strcmp(P[i].spec, "hash")) {
        CHECK(qi("SELECT COUNT(*) FROM (SELECT t.token_id, r.slot, COUNT(DISTINCT r.expert) c FROM routing r JOIN tokens t"
                 " USING(run_id, seq_id, pos) WHERE r.run_id=%d GROUP BY t.token_id, r.slot) WHERE c > 1", run) == 0);
        CHECK(qi("SELECT COUNT(DISTINCT token_id) FROM tokens WHERE run_id=%d", run) < 128);   /* repeats exist */
      }
      if (l >= 1 && !strcmp(P[i].spec, "random:seed=3") && l == 2)   /* topk (run-1) vs full: same routing */
        CHECK(qi("SELECT COUNT(*) FROM routing a LEFT JOIN routing b ON b.run_id=%d AND b.seq_id=a.seq_id AND b.pos=a.pos"
                 " AND b.layer=a.layer AND b.slot=a.slot AND b.expert=a.expert WHERE a.run_id=%d AND b.run_id IS NULL",
                 run - 1, run) == 0);
      sqlite3_close(g_db);
    }
  /* bad specs: one error line naming the parameter, no run left behind */
  tst_sh(&o, "%s run --model %s --ids 1,2,3 --route topp:p=2 --db %s", tst_bin(), model, db);
  CHECK(o.status != 0 && strstr(o.err, "p=2") && tst_count_lines(o.err) == 1);
  tst_sh(&o, "%s run --model %s --ids 1,2,3 --route group:n_group=3,topk_group=1 --db %s", tst_bin(), model, db);
  CHECK(o.status != 0 && strstr(o.err, "n_group=3") && tst_count_lines(o.err) == 1);
  REQUIRE(sqlite3_open(db, &g_db) == SQLITE_OK);
  CHECK(qi("SELECT COUNT(*) FROM runs") == run);
  sqlite3_close(g_db);
}

/* Runs SPEC on MODEL over INPUTS into db; returns nothing (run ids are sequential). */
static void run_one(const char *model, const char *inputs, const char *spec, const char *db) {
  tst_out o;
  tst_sh(&o, "%s run --model %s %s --batch 64 --route %s --record counts --db %s --quiet", tst_bin(), model, inputs, spec, db);
  CHECKF(o.status == 0, "%s: %s", spec, o.err);
}
/* ppl of runs a, b via compare --json */
static void ppl_pair(const char *db, int a, int b, double *pa, double *pb) {
  tst_out o;
  tst_sh(&o, "%s compare %d %d --db %s --json", tst_bin(), a, b, db);
  CHECKF(o.status == 0, "%s", o.err);
  cJSON *j = cJSON_Parse(o.out), *p = cJSON_GetArrayItem(j, 0);
  *pa = jnum(p, "ppl_a");
  *pb = jnum(p, "ppl_b");
  cJSON_Delete(j);
}
static void balance(const char *db, int run, double *maxvio, double *cv) {
  tst_out o;
  tst_sh(&o, "%s stats %s --run %d --json", tst_bin(), db, run);
  CHECKF(o.status == 0, "%s", o.err);
  cJSON *j = cJSON_Parse(o.out), *ov = cJSON_GetObjectItem(j, "overall");
  *maxvio = jnum(ov, "maxvio");
  *cv = jnum(ov, "cv");
  cJSON_Delete(j);
}

int main(void) {
  char model[2048], texts[2048], inputs[4096] = "", db[2048];
  tst_path(model, sizeof model, "MOESCOPE_SRC", "models/tiny-mixtral");
  tst_path(texts, sizeof texts, "MOESCOPE_SRC", "demo/texts");
  test_matrix(model, texts);

  /* inputs: 512 tokens of each corpus eval file, else the demo texts */
  const char *sh = tst_shared();
  const char *doms[6] = {"arxiv", "c4", "github", "gsm8k", "shakespeare", "wikipedia"};
  char p[2048];
  int corpus = 0;
  if (sh) {
    snprintf(p, sizeof p, "%s/data/corpus/arxiv.eval.txt", sh);
    corpus = access(p, R_OK) == 0;
  }
  if (corpus) {
    for (int i = 0; i < 6; i++)
      snprintf(inputs + strlen(inputs), sizeof inputs - strlen(inputs), " --file %s/data/corpus/%s.eval.txt --label %s",
               sh, doms[i], doms[i]);
    strcat(inputs, " --max-tokens 512");
  } else {
    const char *demo[5] = {"code", "math", "prose", "science", "verse"};
    for (int i = 0; i < 5; i++)
      snprintf(inputs + strlen(inputs), sizeof inputs - strlen(inputs), " --file %s/%s.txt --label %s", texts, demo[i], demo[i]);
  }
  printf("inputs: %s\n", corpus ? "../shared corpus eval files, 512 tokens each" : "demo/texts");

  /* 2: top-1 is worse than the native top-2 */
  snprintf(db, sizeof db, "%s/routes_quality.db", tst_tmp_dir());
  remove(db);
  run_one(model, inputs, "native", db);
  run_one(model, inputs, "topk:k=1", db);
  double ppl2, ppl1;
  ppl_pair(db, 1, 2, &ppl2, &ppl1);
  printf("tiny-mixtral: native top-2 ppl %.3f, topk:k=1 ppl %.3f\n", ppl2, ppl1);
  CHECK(ppl1 > ppl2);

  /* 3: bias balancing on the collapsed model */
  if (!sh) { fprintf(stderr, "SKIP: ../shared absent (tiny-mixtral-collapsed)\n"); return tst_failures ? tst_done() : 77; }
  tst_need_shared("models/tiny-mixtral-collapsed/config.json");
  char cmodel[2048];
  snprintf(cmodel, sizeof cmodel, "%s/models/tiny-mixtral-collapsed", sh);
  snprintf(db, sizeof db, "%s/routes_bias.db", tst_tmp_dir());
  remove(db);
  const char *specs[4] = {"native", "bias:gamma=0.01", "bias:gamma=0.03", "random:seed=1"};
  double ppl[4], mv[4], cv[4], dummy;
  for (int i = 0; i < 4; i++) run_one(cmodel, inputs, specs[i], db);
  for (int i = 0; i < 4; i++) {
    ppl_pair(db, 1, i ? i + 1 : 2, i ? &dummy : &ppl[0], i ? &ppl[i] : &dummy);
    balance(db, i + 1, &mv[i], &cv[i]);
  }
  printf("tiny-mixtral-collapsed, %s, forward batches of 64 tokens:\n", corpus ? "6 x 512 eval tokens" : "demo/texts");
  printf("| policy | ppl | mean MaxVio | mean CV |\n|---|---|---|---|\n");
  for (int i = 0; i < 4; i++) printf("| %s | %.2f | %.3f | %.3f |\n", specs[i], ppl[i], mv[i], cv[i]);
  CHECK(mv[1] < 0.6 * mv[0] && cv[1] < 0.6 * cv[0]);
  CHECK(mv[2] < mv[1]);
  CHECK(ppl[1] < 1.10 * ppl[0]);          /* the cost of gamma=0.01: a few percent */
  CHECK(ppl[3] > ppl[1]);                 /* balanced at random costs far more */
  REQUIRE(sqlite3_open(db, &g_db) == SQLITE_OK);
  long long nb = qi("SELECT COUNT(DISTINCT batch_id) FROM expert_load WHERE run_id=2");
  CHECK(qi("SELECT COUNT(*) FROM router_bias WHERE run_id=2") == nb * 4 * 8);
  /* the collapsed layers' favourite expert ends with the most negative bias */
  CHECK(qi("SELECT expert FROM router_bias WHERE run_id=2 AND layer=3 AND batch_id=(SELECT MAX(batch_id) FROM router_bias"
           " WHERE run_id=2) ORDER BY bias LIMIT 1") ==
        qi("SELECT expert FROM expert_load WHERE run_id=1 AND layer=3 GROUP BY expert ORDER BY SUM(tokens) DESC LIMIT 1"));
  sqlite3_close(g_db);
  return tst_done();
}
