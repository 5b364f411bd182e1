/* test_nvtx.c — NVTX ranges of a CPU run, seen by a tool: `moescope run` on tiny-mixtral
 * with NVTX_INJECTION64_PATH = the test injection library (tests/util/nvtx_inject), which
 * logs every push/pop. Checks: the `moescope` domain and its categories, balanced pushes
 * and pops, nesting run > batch > layer > op > expert, layer payloads 0..3 in every batch,
 * op names (registered strings) attention/router/experts/lm_head, expert payloads in 0..7
 * only inside `experts`; and the run/batch/layer ranges in the trace's NVTX_EVENTS. */
#include <sqlite3.h>

#include "tests/tst.h"
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
  const char *inj = getenv("MOESCOPE_NVTX_INJECT");
  if (!inj || access(inj, R_OK)) { fprintf(stderr, "SKIP: NVTX not built (no nvtx3 headers)\n"); return 77; }
  char db[4096], logp[4096], model[4096];
  snprintf(db, sizeof db, "%s/nvtx_test.db", tst_tmp());
  snprintf(logp, sizeof logp, "%s/nvtx_test.log", tst_tmp());
  remove(db);
  remove(logp);
  tst_path(model, sizeof model, "MOESCOPE_SRC", "models/tiny-mixtral");
  tst_out o;
  /* 20 prompt tokens in batches of 8 (3 prefill batches), then 3 generated tokens (decode) */
  tst_sh(&o, "NVTX_INJECTION64_PATH='%s' MOESCOPE_NVTX_LOG='%s' %s run --model %s --ids "
             "1,5,9,13,17,21,25,29,33,37,41,45,49,53,57,61,65,69,73,77 --generate 3 --ignore-eos --batch 8 --db %s",
         inj, logp, tst_bin(), model, db);
  REQUIRE(o.status == 0);
  FILE *f = fopen(logp, "r");
  REQUIRE(f);
  char line[512];
  int stack[32], depth = 0, max_depth = 0, pushes = 0, pops = 0, bad = 0, init = 0, domain = 0, cats = 0;
  int batches = 0, layers_in_batch = 0, bad_layers = 0, experts = 0, bad_expert = 0, ops_seen[4] = {0};
  long long layer_mask = 0;
  while (fgets(line, sizeof line, f)) {
    char dom[64], msg[128];
    unsigned cat;
    int ptype;
    long long pl;
    if (!strncmp(line, "init", 4)) init++;
    else if (sscanf(line, "domain %63s", dom) == 1) domain += !strcmp(dom, "moescope");
    else if (sscanf(line, "category %63s %u %127s", dom, &cat, msg) == 3) cats++;
    else if (sscanf(line, "push %63s %u %d %lld %127[^\n]", dom, &cat, &ptype, &pl, msg) == 5) {
      pushes++;
      if (strcmp(dom, "moescope") || ptype != 2) bad++;
      int parent = depth ? stack[depth - 1] : 0;
      /* category = scope + 1: run 1, batch 2, layer 3, op 4, expert 5 */
      if (cat == 1 && depth != 0) bad++;
      if (cat == 2 && parent != 1) bad++;
      if (cat == 3 && parent != 2) bad++;
      if (cat == 4 && parent != 3 && !(parent == 2 && !strcmp(msg, "@lm_head"))) bad++;
      if (cat == 5 && parent != 4) bad++;
      if (cat == 2) {
        if (batches && (layers_in_batch != 4 || layer_mask != 0xf)) bad_layers++;
        batches++; layers_in_batch = 0; layer_mask = 0;
        char want[64];
        snprintf(want, sizeof want, "batch %lld", pl);
        if (strcmp(msg, want)) bad++;
      }
      if (cat == 3) {
        layers_in_batch++;
        if (pl < 0 || pl > 3) bad_layers++; else layer_mask |= 1LL << pl;
        char want[64];
        snprintf(want, sizeof want, "layer %lld", pl);
        if (strcmp(msg, want)) bad++;
      }
      if (cat == 4) {
        if (!strcmp(msg, "@attention")) ops_seen[0]++;
        else if (!strcmp(msg, "@router")) ops_seen[1]++;
        else if (!strcmp(msg, "@experts")) ops_seen[2]++;
        else if (!strcmp(msg, "@lm_head")) ops_seen[3]++;
        else bad++;
      }
      if (cat == 5) {
        experts++;
        char want[64];
        snprintf(want, sizeof want, "expert %lld", pl);
        if (pl < 0 || pl > 7 || strcmp(msg, want)) bad_expert++;
      }
      if (depth < 32) stack[depth] = (int)cat;
      depth++;
      if (depth > max_depth) max_depth = depth;
    } else if (sscanf(line, "pop %63s", dom) == 1) {
      pops++;
      if (depth == 0) bad++; else depth--;
    }
  }
  fclose(f);
  if (batches && (layers_in_batch != 4 || layer_mask != 0xf)) bad_layers++;
  CHECK(init == 1 && domain == 1 && cats == 5);
  CHECKF(pushes == pops && depth == 0, "pushes %d pops %d", pushes, pops);
  CHECK(max_depth == 5);
  CHECKF(bad == 0, "%d badly nested or named ranges", bad);
  CHECK(bad_layers == 0);
  CHECK(bad_expert == 0 && experts > 0);
  /* 3 prefill batches (8+8+4) + 2 decode steps (the third token needs no forward) */
  CHECKF(batches == 5, "batches %d", batches);
  CHECK(ops_seen[0] == 4 * batches && ops_seen[1] == 4 * batches && ops_seen[2] == 4 * batches);
  CHECK(ops_seen[3] >= 1);
  /* every (token, slot) of a batch lands on an expert once: per layer and batch at most 8 */
  CHECK(experts <= 8 * 4 * batches && experts >= 2 * 4 * batches / 2);

  sqlite3 *d;
  REQUIRE(sqlite3_open_v2(db, &d, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
  long long nb = qi(d, "SELECT COUNT(DISTINCT batch_id) FROM expert_load");
  CHECK(nb == batches);
  CHECK(qi(d, "SELECT COUNT(*) FROM NVTX_EVENTS WHERE eventType = 59 AND category = 1 AND int64Value = 1") == 1);
  CHECK(qi(d, "SELECT COUNT(*) FROM NVTX_EVENTS WHERE eventType = 59 AND category = 2") == nb);
  CHECK(qi(d, "SELECT COUNT(*) FROM NVTX_EVENTS WHERE eventType = 59 AND category = 3") == 4 * nb);
  CHECK(qi(d, "SELECT COUNT(*) FROM NVTX_EVENTS WHERE eventType = 59 AND category = 3 AND text = 'layer ' || int64Value") == 4 * nb);
  /* layers nest inside their batch, batches inside the run */
  CHECK(qi(d, "SELECT COUNT(*) FROM NVTX_EVENTS l WHERE l.eventType = 59 AND l.category = 3 AND NOT EXISTS"
              " (SELECT 1 FROM NVTX_EVENTS b WHERE b.eventType = 59 AND b.category = 2 AND b.start <= l.start AND b.end >= l.end)") == 0);
  CHECK(qi(d, "SELECT COUNT(*) FROM NVTX_EVENTS b, NVTX_EVENTS r WHERE b.eventType = 59 AND b.category = 2 AND r.category = 1"
              " AND r.eventType = 59 AND (b.start < r.start OR b.end > r.end)") == 0);
  sqlite3_close(d);
  remove(logp);
  return tst_done();
}
