/* test_report.c — `moescope stats` / `moescope report` end to end on a real trace: the
 * shipped tiny-mixtral scores the three demo texts (labels code, math, prose) at level
 * full through the CLI, then
 *  - stats --csv has one row per MoE layer + overall with Jain and drop@CF columns;
 *    stats --structure --json parses and carries top tokens as text pieces;
 *  - report --format html,md,tex,pdf writes every figure kind (PNG + SVG + PDF), the CSV of
 *    every table, index.html referencing every figure, report.tex including every PDF;
 *  - report --format tex writes no index.html; --format bogus is a usage error (exit 2). */
#include <cjson/cJSON.h>

#include "tests/tst.h"
#include "tests/util/tst_run.h"

static int exists(const char *dir, const char *name) {
  char p[4096];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  return access(p, F_OK) == 0;
}

int main(void) {
  const char *tmp = tst_tmp_dir(), *src = getenv("MOESCOPE_SRC");
  if (!src) src = ".";
  char db[2048], out[2048], name[256];
  tst_out o;
  snprintf(db, sizeof db, "%s/report_e2e.db", tmp);
  remove(db);
  tst_sh(&o, "%s run --model %s/models/tiny-mixtral --file %s/demo/texts/code.txt --label code --file "
             "%s/demo/texts/math.txt --label math --file %s/demo/texts/prose.txt --label prose --max-tokens 160 "
             "--record full --db %s --quiet", tst_bin(), src, src, src, src, db);
  REQUIRE(o.status == 0);
  tst_sh(&o, "%s stats %s --csv", tst_bin(), db);
  CHECK(o.status == 0 && strstr(o.out, ",jain,drop_cf1,drop_cf1_25,drop_cf2"));
  int lines = 0;
  for (const char *p = o.out; *p; p++) lines += *p == '\n';
  CHECKF(lines == 1 + 4 + 1, "%d lines: %s", lines, o.out);   /* header + 4 MoE layers + overall */
  tst_sh(&o, "%s stats %s --structure --json", tst_bin(), db);
  cJSON *j = cJSON_Parse(o.out);
  CHECKF(j != NULL, "stats --structure --json: %.200s", o.out);
  cJSON *ly = j ? cJSON_GetObjectItem(cJSON_GetObjectItem(j, "structure"), "layers") : NULL;
  CHECK(cJSON_GetArraySize(ly) == 4);
  cJSON *tt = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetArrayItem(ly, 0), "top_tokens"), 0);
  cJSON *t0 = cJSON_GetArrayItem(tt, 0);
  CHECK(t0 && cJSON_IsString(cJSON_GetObjectItem(t0, "piece")) && cJSON_GetObjectItem(t0, "share")->valuedouble > 0);
  cJSON_Delete(j);

  snprintf(out, sizeof out, "%s/report_e2e_all", tmp);
  tst_sh(&o, "rm -rf %s && %s report %s -o %s --format html,md,tex,pdf", out, tst_bin(), db, out);
  REQUIRE(o.status == 0);
  static const char *figs[] = {"heatmap_load", "balance_layers", "balance_cv", "label_pref_layer2", "coact_layer0",
                               "trans_layer0", "trans_layer2", "position_layer3", "gate_weights", "top_tokens_layer1"};
  char *html = NULL, *tex = NULL;
  {
    char p[4096];
    FILE *f;
    size_t n;
    snprintf(p, sizeof p, "%s/index.html", out);
    if ((f = fopen(p, "rb"))) { fseek(f, 0, SEEK_END); n = (size_t)ftell(f); rewind(f); html = calloc(n + 1, 1); if (fread(html, 1, n, f) != n) html[0] = 0; fclose(f); }
    snprintf(p, sizeof p, "%s/report.tex", out);
    if ((f = fopen(p, "rb"))) { fseek(f, 0, SEEK_END); n = (size_t)ftell(f); rewind(f); tex = calloc(n + 1, 1); if (fread(tex, 1, n, f) != n) tex[0] = 0; fclose(f); }
  }
  REQUIRE(html && tex);
  for (size_t i = 0; i < sizeof figs / sizeof figs[0]; i++) {
    for (int k = 0; k < 3; k++) {
      snprintf(name, sizeof name, "%s.%s", figs[i], k == 0 ? "png" : k == 1 ? "svg" : "pdf");
      CHECKF(exists(out, name), "missing %s", name);
    }
    snprintf(name, sizeof name, "id=\"%s\"><img", figs[i]);
    CHECKF(strstr(html, name), "html lacks %s", figs[i]);
    snprintf(name, sizeof name, "{%s.pdf}", figs[i]);
    CHECKF(strstr(tex, name), "tex lacks %s", figs[i]);
  }
  static const char *tabs[] = {"run", "diagnosis", "balance", "structure", "labels", "top_tokens"};
  for (size_t i = 0; i < sizeof tabs / sizeof tabs[0]; i++) {
    snprintf(name, sizeof name, "tables/%s.csv", tabs[i]);
    CHECKF(exists(out, name), "missing %s", name);
  }
  CHECK(exists(out, "report.md"));
  free(html); free(tex);

  snprintf(out, sizeof out, "%s/report_e2e_tex", tmp);
  tst_sh(&o, "rm -rf %s && %s report %s -o %s --format tex", out, tst_bin(), db, out);
  CHECK(o.status == 0 && exists(out, "report.tex") && exists(out, "coact_layer1.pdf") && !exists(out, "index.html") &&
        !exists(out, "coact_layer1.png"));
  tst_sh(&o, "%s report %s -o %s --format bogus", tst_bin(), db, out);
  CHECK(o.status == 2 && strstr(o.err, "bogus"));
  return tst_done();
}
