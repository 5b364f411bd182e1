/* cli_export.c — `moescope export TRACE.db [--perfetto OUT.json] [--csv DIR] [--time]
 * [--run ID]`: option parsing only; the work is reports/rep_export.c (Perfetto JSON, CSV)
 * and reports/rep_time.c (time by layer/op/expert and the cost of imbalance). */
#include "cli/cli.h"
#include "reports/rep_export.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

int cli_export(int argc, char **argv) {
  const char *C = "export", *db = NULL, *perfetto = NULL, *csv = NULL;
  long run = -1;
  int time = 0, time_csv = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) {
      printf("usage: moescope export TRACE.db [--perfetto OUT.json] [--csv DIR] [--time [--time-csv]] [--run ID]\n"
             "--perfetto  Chrome/Perfetto trace-event JSON (open in ui.perfetto.dev): engine ops and NVTX ranges on\n"
             "            thread tracks, GPU kernels on one track per stream (with layer/op/expert), per-layer\n"
             "            routing counters (tokens per expert per forward batch). Times in microseconds.\n"
             "--csv DIR   every table of the trace as DIR/<table>.csv (RFC 4180, NULL = empty, BLOB = hex)\n"
             "--time      time by layer, op and expert, and the cost of routing imbalance (stdout; --time-csv: CSV)\n"
             "--run ID    the run to export (default: the latest); --csv always writes every run\n");
      return CLI_OK;
    }
    if (!strcmp(a, "--perfetto")) { if (!(perfetto = cli_value(argc, argv, &i, C))) return CLI_USAGE; }
    else if (!strcmp(a, "--csv")) { if (!(csv = cli_value(argc, argv, &i, C))) return CLI_USAGE; }
    else if (!strcmp(a, "--time")) time = 1;
    else if (!strcmp(a, "--time-csv")) time = time_csv = 1;
    else if (!strcmp(a, "--run")) {
      const char *v = cli_value(argc, argv, &i, C);
      if (!v) return CLI_USAGE;
      if (cli_int(v, 1, LONG_MAX, &run)) return cli_fail(CLI_USAGE, C, "--run: '%s' is not a run id", v);
    } else if (a[0] == '-') return cli_fail(CLI_USAGE, C, "unknown option '%s' (see moescope export --help)", a);
    else if (!db) db = a;
    else return cli_fail(CLI_USAGE, C, "one trace DB at a time ('%s' and '%s')", db, a);
  }
  if (!db) return cli_fail(CLI_USAGE, C, "give a trace DB (moescope export TRACE.db --perfetto OUT.json)");
  if (!perfetto && !csv && !time) return cli_fail(CLI_USAGE, C, "nothing to do: give --perfetto OUT.json, --csv DIR or --time");
  char err[1024] = "";
  if (perfetto) {
    rep_export_counts n;
    if (rep_export_perfetto(db, run, perfetto, &n, err, sizeof err)) return cli_fail(CLI_ERR, C, "%s", err);
    fprintf(stderr, "moescope export: wrote %s (%lld ops, %lld NVTX ranges, %lld kernels, %lld routing counters)\n",
            perfetto, n.ops, n.nvtx, n.kernels, n.counters);
  }
  if (csv) {
    int nt = 0;
    if (rep_export_csv(db, csv, &nt, err, sizeof err)) return cli_fail(CLI_ERR, C, "%s", err);
    fprintf(stderr, "moescope export: wrote %d tables to %s/\n", nt, csv);
  }
  if (time && rep_time_cmd(db, run, time_csv, stdout, err, sizeof err)) return cli_fail(CLI_ERR, C, "%s", err);
  return CLI_OK;
}
