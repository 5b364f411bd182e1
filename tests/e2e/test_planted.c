/* test_planted.c — planted and learned structure found by `moescope stats`:
 * 1. `synth --plant collapse` (collapse in odd layers by default): after `run`, stats
 *    flags exactly the planted layers (normalised entropy < 0.85 and MaxVio > 1.0) and
 *    none of the others; `--plant none` flags no layer.
 * 2. `synth --plant specialization`: each token-id range goes to its planted expert
 *    (checked from routing rows in the trace).
 * 3. The really collapsed model (tiny-mixtral-collapsed, ../shared) scores clearly worse
 *    balance than tiny-mixtral on the same text (512 tokens of each eval domain) in every
 *    layer (CV, H_norm, MaxVio); layers 1-3, where the collapse is, by a wide margin. */
#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "tests/tst.h"
#include "tests/util/tst_run.h"

static cJSON *stats_json(const char *db) {
  tst_out o;
  tst_sh(&o, "%s stats %s --json", tst_bin(), db);
  CHECKF(o.status == 0, "stats failed: %s", o.err);
  cJSON *j = cJSON_Parse(o.out);
  REQUIRE(j);
  return j;
}
static double layer_metric(cJSON *j, int l, const char *k) {
  cJSON *L = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "layers"), l);
  return L ? cJSON_GetObjectItem(L, k)->valuedouble : NAN;
}

static const char *random_ids(int n, int vocab, unsigned seed) {
  static char buf[65536];
  size_t o = 0;
  for (int i = 0; i < n; i++) {
    seed = seed * 1103515245u + 12345u;
    o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%u", i ? "," : "", (seed >> 8) % (unsigned)vocab);
  }
  return buf;
}

int main(void) {
  const char *tmp = tst_tmp_dir();
  char dir[2048], db[2048];
  tst_out o;
  const char *plants[2] = {"collapse", "none"};
  for (int p = 0; p < 2; p++) {
    snprintf(dir, sizeof dir, "%s/planted_%s", tmp, plants[p]);
    snprintf(db, sizeof db, "%s/planted_%s.db", tmp, plants[p]);
    remove(db);
    tst_sh(&o, "%s synth --family mixtral --layers 4 --experts 8 --top-k 2 --hidden 64 --vocab 512 --plant %s "
               "--seed 7 -o %s", tst_bin(), plants[p], dir);
    REQUIRE(o.status == 0);
    tst_sh(&o, "%s run --model %s --ids %s --db %s --quiet", tst_bin(), dir, random_ids(400, 512, 11), db);
    CHECKF(o.status == 0, "run on synth model failed: %s", o.err);
    cJSON *j = stats_json(db);
    for (int l = 0; l < 4; l++) {
      double h = layer_metric(j, l, "h_norm"), mv = layer_metric(j, l, "maxvio");
      int flagged = h < 0.85 && mv > 1.0;
      int planted = p == 0 && (l % 2 == 1);
      printf("%s layer %d: H_norm %.3f MaxVio %.3f -> %s (planted: %s)\n", plants[p], l, h, mv,
             flagged ? "collapsed" : "healthy", planted ? "yes" : "no");
      CHECKF(flagged == planted, "%s layer %d: flagged %d planted %d", plants[p], l, flagged, planted);
    }
    cJSON_Delete(j);
  }
  /* specialization: token range r -> expert r in every layer */
  snprintf(dir, sizeof dir, "%s/planted_spec", tmp);
  snprintf(db, sizeof db, "%s/planted_spec.db", tmp);
  remove(db);
  tst_sh(&o, "%s synth --layers 2 --experts 4 --top-k 2 --hidden 64 --vocab 512 --plant specialization --seed 3 -o %s",
         tst_bin(), dir);
  REQUIRE(o.status == 0);
  tst_sh(&o, "%s run --model %s --ids %s --db %s --quiet", tst_bin(), dir, random_ids(300, 512, 5), db);
  REQUIRE(o.status == 0);
  sqlite3 *s;
  REQUIRE(sqlite3_open(db, &s) == SQLITE_OK);
  sqlite3_stmt *st;
  /* share of tokens of range r (ids [128r, 128r+128)) whose top-k contains expert r */
  REQUIRE(sqlite3_prepare_v2(s, "SELECT t.token_id / 128 AS r, AVG(EXISTS(SELECT 1 FROM routing x WHERE x.run_id=t.run_id "
          "AND x.seq_id=t.seq_id AND x.pos=t.pos AND x.layer=l.layer AND x.expert=t.token_id / 128)) "
          "FROM tokens t, (SELECT 0 AS layer UNION SELECT 1) l GROUP BY r", -1, &st, NULL) == SQLITE_OK);
  int ranges = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    double share = sqlite3_column_double(st, 1);
    printf("specialization: range %d -> expert %d in top-k of %.1f%% of its tokens\n", sqlite3_column_int(st, 0),
           sqlite3_column_int(st, 0), 100 * share);
    CHECK(share >= 0.9);
    ranges++;
  }
  sqlite3_finalize(st);
  sqlite3_close(s);
  CHECK(ranges == 4);

  /* trained healthy vs collapsed on the same text */
  if (!tst_shared()) { printf("note: ../shared absent, collapsed-model comparison skipped\n"); return tst_done(); }
  const char *models[2] = {"tiny-mixtral", "tiny-mixtral-collapsed"};
  cJSON *js[2];
  for (int m = 0; m < 2; m++) {
    snprintf(db, sizeof db, "%s/trained_%d.db", tmp, m);
    remove(db);
    tst_sh(&o, "%s run --model %s/models/%s --dir %s/data/corpus --split eval --max-tokens 512 --window 256 --score "
               "--record counts --db %s --quiet", tst_bin(), tst_shared(), models[m], tst_shared(), db);
    REQUIRE(o.status == 0);
    js[m] = stats_json(db);
  }
  for (int l = 0; l < 4; l++) {
    double cv0 = layer_metric(js[0], l, "cv"), cv1 = layer_metric(js[1], l, "cv");
    double h0 = layer_metric(js[0], l, "h_norm"), h1 = layer_metric(js[1], l, "h_norm");
    double m0 = layer_metric(js[0], l, "maxvio"), m1 = layer_metric(js[1], l, "maxvio");
    printf("layer %d: CV %.3f vs %.3f, H_norm %.3f vs %.3f, MaxVio %.3f vs %.3f (healthy vs collapsed)\n", l, cv0,
           cv1, h0, h1, m0, m1);
    /* layer 0 is only mildly skewed in the collapsed model (models/README.md); 1-3 strongly */
    CHECK(cv1 > (l == 0 ? 1.2 : 2.0) * cv0);
    CHECK(h1 < h0 - (l == 0 ? 0.03 : 0.1));
    CHECK(m1 > m0 + (l == 0 ? 0.2 : 0.5));
  }
  cJSON_Delete(js[0]);
  cJSON_Delete(js[1]);
  return tst_done();
}
