/* moescope.c — the `moescope` executable: dispatches `moescope <command> [options]` to
 * the subcommands in cli/cli_*.c. No logic lives here. */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

int cli_diagnose(int argc, char **argv);   /* cli_misc.c */

typedef struct { const char *name; int (*fn)(int, char **); const char *help; } command;

static const command commands[] = {
  {"run", cli_run, "run a model over prompts / files; score or generate; record a trace"},
  {"stats", cli_stats, "balance statistics per layer of a trace DB"},
  {"diagnose", cli_diagnose, "collapse / imbalance / saturation / drift verdict per layer (exit 3 = findings)"},
  {"report", cli_report, "trace DB -> report folder (index.html, report.md, heatmaps)"},
  {"synth", cli_synth, "write a synthetic model with planted routing structure"},
  {"bench", cli_bench, "prefill/decode throughput, roofline %, probe overhead per level"},
  {"compare", cli_compare, "compare runs: quality, routing agreement, balance, cost"},
  {"placement", cli_placement, "expert-placement what-if over N GPUs (greedy, EPLB, hierarchical)"},
  {"export", cli_export, "trace DB -> Perfetto/Chrome trace JSON, CSV tables, time by layer/op/expert"},
  {"info", cli_info, "describe a model"},
  {"convert", cli_convert, "convert a safetensors model folder to GGUF (f16, bf16, q8_0)"},
};

static void usage(FILE *f) {
  fprintf(f, "moescope %s — an observable Mixture-of-Experts inference engine\n\n"
             "usage: moescope <command> [options]   (moescope <command> --help for details)\n\ncommands:\n",
          MOESCOPE_VERSION);
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv) {
  if (argc < 2) { usage(stderr); return CLI_USAGE; }
  if (cli_is_help(argv[1]) || !strcmp(argv[1], "help")) { usage(stdout); return CLI_OK; }
  if (!strcmp(argv[1], "--version")) { printf("moescope %s\n", MOESCOPE_VERSION); return CLI_OK; }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
  fprintf(stderr, "moescope: unknown command '%s' (try moescope --help)\n", argv[1]);
  return CLI_USAGE;
}
