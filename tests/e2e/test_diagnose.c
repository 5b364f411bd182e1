/* test_diagnose.c — `moescope diagnose` end to end:
 * 1. synth --plant collapse (odd layers planted): exit 3, layers 1 and 3 collapsed (and
 *    pinned), 0 and 2 healthy; --plant none: exit 0, every layer healthy (no false alarm);
 *    --plant specialization: exit 3, every layer router saturation (the planted +12 logit
 *    pins the gate), none collapsed.
 * 2. the trained models over 512 tokens of each eval domain at level full (../shared):
 *    tiny-mixtral healthy (exit 0); tiny-mixtral-collapsed: layers 1-3 collapsed, layer 0
 *    imbalanced (mildly skewed, models/README.md), exit 3.
 * 3. --json is one parseable object; threshold overrides change verdicts; usage and
 *    missing-DB errors are one line with exit 2 / 1. */
#include <cjson/cJSON.h>

#include "tests/tst.h"
#include "tests/util/tst_run.h"

static const char *random_ids(int n, int vocab, unsigned seed) {
  static char buf[65536];
  size_t o = 0;
  for (int i = 0; i < n; i++) {
    seed = seed * 1103515245u + 12345u;
    o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%u", i ? "," : "", (seed >> 8) % (unsigned)vocab);
  }
  return buf;
}

static cJSON *diag_json(const char *db, const char *extra, int *status) {
  tst_out o;
  tst_sh(&o, "%s diagnose %s --json %s", tst_bin(), db, extra);
  *status = o.status;
  cJSON *j = cJSON_Parse(o.out);
  CHECKF(j != NULL, "diagnose --json not JSON: %.300s / %s", o.out, o.err);
  if (!j) exit(1);
  return j;
}

static const char *verdict(cJSON *j, int l) {
  cJSON *L = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "layers"), l);
  return L ? cJSON_GetObjectItem(L, "verdict")->valuestring : "?";
}

static int has_finding(cJSON *j, int l, const char *name) {
  cJSON *L = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "layers"), l), *x;
  cJSON_ArrayForEach(x, cJSON_GetObjectItem(L, "findings")) if (!strcmp(x->valuestring, name)) return 1;
  return 0;
}

int main(void) {
  const char *tmp = tst_tmp_dir();
  char dir[2048], db[2048];
  tst_out o;
  int st;
  const char *plants[3] = {"collapse", "none", "specialization"};
  for (int p = 0; p < 3; p++) {
    snprintf(dir, sizeof dir, "%s/diag_synth_%s", tmp, plants[p]);
    snprintf(db, sizeof db, "%s/diag_synth_%s.db", tmp, plants[p]);
    remove(db);
    tst_sh(&o, "%s synth --family mixtral --layers 4 --experts 8 --top-k 2 --hidden 64 --vocab 512 --plant %s "
               "--seed 7 -o %s", tst_bin(), plants[p], dir);
    REQUIRE(o.status == 0);
    tst_sh(&o, "%s run --model %s --ids %s --db %s --record full --quiet", tst_bin(), dir, random_ids(400, 512, 11), db);
    REQUIRE(o.status == 0);
    cJSON *j = diag_json(db, "", &st);
    for (int l = 0; l < 4; l++) {
      const char *v = verdict(j, l);
      printf("synth %s layer %d: %s\n", plants[p], l, v);
      if (p == 0) {
        CHECKF(!strcmp(v, l % 2 ? "collapsed" : "healthy"), "collapse plant layer %d: %s", l, v);
        if (l % 2) CHECK(has_finding(j, l, "saturation_pinned"));
      } else if (p == 1) {
        CHECKF(!strcmp(v, "healthy"), "no plant layer %d: %s", l, v);
      } else {
        CHECKF(!strcmp(v, "router saturation"), "specialization plant layer %d: %s", l, v);
        CHECK(has_finding(j, l, "saturation_pinned") && !has_finding(j, l, "collapsed"));
      }
    }
    CHECK(st == (p == 1 ? 0 : 3));
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "healthy")) == (p == 1));
    cJSON_Delete(j);
    if (p == 0) {
      /* text output: verdict lines and the thresholds line; collapse threshold override */
      tst_sh(&o, "%s diagnose %s", tst_bin(), db);
      CHECK(o.status == 3 && strstr(o.out, "layer 1: collapsed") && strstr(o.out, "layer 0: healthy"));
      CHECK(strstr(o.out, "thresholds:") && strstr(o.out, "--collapse-share"));
      /* overrides: a CV threshold below layer 0's CV (0.09) and alpha 1 make layer 0 imbalanced */
      j = diag_json(db, "--imb-cv 0.05 --alpha 1 --drift-js 0.3", &st);
      CHECK(st == 3 && !strcmp(verdict(j, 0), "imbalanced") && !strcmp(verdict(j, 1), "collapsed"));
      CHECK_NEAR(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "thresholds"), "drift_js")->valuedouble, 0.3, 1e-12);
      cJSON_Delete(j);
      tst_sh(&o, "%s diagnose %s --collapse-tok 1.5", tst_bin(), db);
      CHECK(o.status == 2 && strstr(o.err, "--collapse-tok"));
    }
  }
  /* errors */
  tst_sh(&o, "%s diagnose %s/nonexistent.db", tst_bin(), tmp);
  CHECK(o.status == 1 && tst_count_lines(o.err) == 1 && strstr(o.err, "cannot open trace DB"));
  tst_sh(&o, "%s diagnose %s --drift-js abc", tst_bin(), db);
  CHECK(o.status == 2 && tst_count_lines(o.err) == 1);

  if (!tst_shared()) { printf("note: ../shared absent, trained-model diagnosis skipped\n"); return tst_done(); }
  const char *models[2] = {"tiny-mixtral", "tiny-mixtral-collapsed"};
  for (int m = 0; m < 2; m++) {
    snprintf(db, sizeof db, "%s/diag_trained_%d.db", tmp, m);
    remove(db);
    tst_sh(&o, "%s run --model %s/models/%s --dir %s/data/corpus --split eval --max-tokens 512 --window 256 --score "
               "--record full --db %s --quiet", tst_bin(), tst_shared(), models[m], tst_shared(), db);
    REQUIRE(o.status == 0);
    cJSON *j = diag_json(db, "", &st);
    for (int l = 0; l < 4; l++) {
      const char *v = verdict(j, l);
      printf("%s layer %d: %s\n", models[m], l, v);
      if (m == 0) CHECKF(!strcmp(v, "healthy"), "%s layer %d: %s", models[m], l, v);
      else CHECKF(!strcmp(v, l == 0 ? "imbalanced" : "collapsed"), "%s layer %d: %s", models[m], l, v);
    }
    CHECK(st == (m == 0 ? 0 : 3));
    if (m == 1) {   /* evidence: responsible tokens and label of layer 3, dead experts 1 and 7 */
      cJSON *ev = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "layers"), 3), "evidence");
      CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(ev, "responsible_tokens")) == 5);
      CHECK(cJSON_IsString(cJSON_GetObjectItem(ev, "responsible_label")));
      cJSON *dead = cJSON_GetObjectItem(ev, "dead");
      CHECK(cJSON_GetArraySize(dead) == 2 && cJSON_GetArrayItem(dead, 0)->valueint == 1 &&
            cJSON_GetArrayItem(dead, 1)->valueint == 7);
      CHECK(cJSON_GetArrayItem(cJSON_GetObjectItem(ev, "busiest"), 0) &&
            cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(ev, "busiest"), 0), "expert")->valueint == 3);
    }
    cJSON_Delete(j);
  }
  return tst_done();
}
