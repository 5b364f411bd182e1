/* cli_placement.c — `moescope placement`: option parsing for the expert-placement
 * what-if (reports/rep_placement.c). */
#include "cli/cli.h"
#include "analysis/ana_placement.h"
#include "reports/rep_placement.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

int cli_placement(int argc, char **argv) {
  const char *C = "placement", *db = NULL, *v;
  rep_placement_opts o = {-1, 0, 1, 0, 0, ANA_PLACE_EPLB, 0.5, 0};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    long x;
    double f;
    if (cli_is_help(a)) {
      printf("usage: moescope placement TRACE.db --gpus G [--nodes N] [--replicas R] [--groups K]\n"
             "       [--algo none|greedy|eplb|hierarchical] [--train-frac F] [--run ID] [--json]\n"
             "Places each MoE layer's experts on G GPUs from the recorded load (learned on the first F\n"
             "of the batches, default 0.5, replayed on the rest) and reports per-GPU balance against the\n"
             "contiguous and greedy baselines; --json adds phy2log/log2phy/logcnt for a serving engine.\n");
      return CLI_OK;
    }
    int *ip = NULL;
    long lo = 1, hi = 1 << 20;
    if (!strcmp(a, "--gpus")) ip = &o.gpus;
    else if (!strcmp(a, "--nodes")) ip = &o.nodes;
    else if (!strcmp(a, "--replicas")) { ip = &o.replicas; lo = 0; }
    else if (!strcmp(a, "--groups")) ip = &o.groups;
    if (ip) {
      if (!(v = cli_value(argc, argv, &i, C))) return CLI_USAGE;
      if (cli_int(v, lo, hi, &x)) return cli_fail(CLI_USAGE, C, "%s: invalid value '%s' (expected an integer >= %ld)", a, v, lo);
      *ip = (int)x;
    } else if (!strcmp(a, "--algo")) {
      if (!(v = cli_value(argc, argv, &i, C))) return CLI_USAGE;
      if ((o.algo = ana_place_algo_parse(v)) < 0)
        return cli_fail(CLI_USAGE, C, "--algo: unknown algorithm '%s' (none, greedy, eplb, hierarchical)", v);
    } else if (!strcmp(a, "--train-frac")) {
      if (!(v = cli_value(argc, argv, &i, C))) return CLI_USAGE;
      if (cli_double(v, 0.0, 1.0, &f) || f <= 0) return cli_fail(CLI_USAGE, C, "--train-frac: expected 0 < F <= 1, got '%s'", v);
      o.train_frac = f;
    } else if (!strcmp(a, "--run")) {
      if (!(v = cli_value(argc, argv, &i, C))) return CLI_USAGE;
      if (cli_int(v, 1, LONG_MAX, &x)) return cli_fail(CLI_USAGE, C, "--run: invalid run id '%s'", v);
      o.run_id = x;
    } else if (!strcmp(a, "--json")) o.json = 1;
    else if (!strcmp(a, "--db")) { if (!(db = cli_value(argc, argv, &i, C))) return CLI_USAGE; }
    else if (a[0] == '-') return cli_fail(CLI_USAGE, C, "unknown option '%s' (see moescope placement --help)", a);
    else if (!db) db = a;
    else return cli_fail(CLI_USAGE, C, "unexpected argument '%s'", a);
  }
  if (!db) db = "trace.db";
  if (o.gpus <= 0) return cli_fail(CLI_USAGE, C, "missing --gpus G");
  char err[1024] = "";
  if (rep_placement_cmd(db, &o, stdout, err, sizeof err)) return cli_fail(CLI_ERR, C, "%s", err);
  return CLI_OK;
}
