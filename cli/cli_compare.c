/* cli_compare.c — `moescope compare A B [C ...]`: option parsing; each run is a run id
 * (in --db), a DB path (its latest run) or PATH:ID. The work is reports/rep_compare.c. */
#include "cli/cli.h"
#include "reports/rep_compare.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_compare(int argc, char **argv) {
  const char *C = "compare", *db = "trace.db", *outdir = NULL;
  int json = 0, n = 0;
  const char **specs = calloc((size_t)argc, sizeof(char *));
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) {
      printf("usage: moescope compare A B [C ...] [--db trace.db] [--json] [-o DIR]\n"
             "A run is a run id (in --db), a trace DB path (its latest run) or PATH:ID. The first run is the\n"
             "baseline. Quality (perplexity per label, dropped tokens), routing agreement (expert-set Jaccard,\n"
             "top-1 agreement, gate-weight correlation), balance side by side, load shift per expert, cost per\n"
             "token: GPU kernel time (kernel_scope) when every run has kernel rows, else CPU op time (the\n"
             "output names the source, and says 'mixed' when only some runs have kernels).\n"
             "-o DIR writes compare.md, compare.tex (booktabs), compare.csv, quality_vs_balance.{png,svg,pdf}.\n");
      free(specs);
      return CLI_OK;
    }
    if (!strcmp(a, "--db")) { if (!(db = cli_value(argc, argv, &i, C))) { free(specs); return CLI_USAGE; } }
    else if (!strcmp(a, "-o") || !strcmp(a, "--out")) { if (!(outdir = cli_value(argc, argv, &i, C))) { free(specs); return CLI_USAGE; } }
    else if (!strcmp(a, "--json")) json = 1;
    else if (a[0] == '-') { free(specs); return cli_fail(CLI_USAGE, C, "unknown option '%s' (see moescope compare --help)", a); }
    else specs[n++] = a;
  }
  if (n < 2) { free(specs); return cli_fail(CLI_USAGE, C, "give at least two runs (run ids, DB paths or PATH:ID)"); }
  rep_run_ref *refs = calloc((size_t)n, sizeof(rep_run_ref));
  char **own = calloc((size_t)n, sizeof(char *));
  int rc = CLI_OK;
  for (int i = 0; i < n && rc == CLI_OK; i++) {
    long id;
    const char *colon = strrchr(specs[i], ':');
    if (cli_int(specs[i], 1, LONG_MAX, &id) == 0) { refs[i].db = db; refs[i].run_id = id; }
    else if (colon && cli_int(colon + 1, 1, LONG_MAX, &id) == 0) {
      own[i] = strndup(specs[i], (size_t)(colon - specs[i]));
      refs[i].db = own[i];
      refs[i].run_id = id;
    } else { refs[i].db = specs[i]; refs[i].run_id = -1; }
  }
  char err[1024] = "";
  if (rep_compare_cmd(refs, n, json, outdir, stdout, err, sizeof err)) rc = cli_fail(CLI_ERR, C, "%s", err);
  else if (outdir) fprintf(stderr, "moescope compare: wrote %s/compare.{md,tex,csv} and quality_vs_balance.{png,svg,pdf}\n", outdir);
  for (int i = 0; i < n; i++) free(own[i]);
  free(own); free(refs); free(specs);
  return rc;
}
