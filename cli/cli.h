/* cli.h — shared pieces of the command-line front end: each subcommand's entry point,
 * argument helpers that turn bad values into one error line, and a stderr progress bar
 * (hidden when stderr is not a terminal). cli/ parses and dispatches; the work happens
 * in engine/, probes/, analysis/ and reports/. */
#ifndef MOESCOPE_CLI_H
#define MOESCOPE_CLI_H

#include <stddef.h>

/* Exit codes: 0 ok, 1 runtime error, 2 usage error, 3 findings (diagnose). */
enum { CLI_OK = 0, CLI_ERR = 1, CLI_USAGE = 2 };

int cli_run(int argc, char **argv);
int cli_bench(int argc, char **argv);
int cli_synth(int argc, char **argv);
int cli_stats(int argc, char **argv);
int cli_report(int argc, char **argv);
int cli_info(int argc, char **argv);
int cli_convert(int argc, char **argv);
int cli_placement(int argc, char **argv);
int cli_compare(int argc, char **argv);
int cli_export(int argc, char **argv);

/* Prints "moescope <cmd>: <message>" to stderr and returns code. */
int cli_fail(int code, const char *cmd, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Strict numeric parsing: the whole string must be a number within [lo, hi]. 0 or -1. */
int cli_int(const char *s, long lo, long hi, long *out);
int cli_double(const char *s, double lo, double hi, double *out);

/* Wants a value after argv[*i]; returns it and advances, or NULL (after an error line). */
const char *cli_value(int argc, char **argv, int *i, const char *cmd);

/* Is this --help / -h ? */
int cli_is_help(const char *a);

/* Joins argv into one malloc'd string (for runs.command_line). */
char *cli_join(int argc, char **argv);

/* Progress bar on stderr when it is a terminal. */
void cli_progress(const char *what, double done, double total);
void cli_progress_end(void);

/* The default model folder: $MOESCOPE_MODEL, else models/tiny-mixtral next to the
 * executable's source tree or the current directory. */
const char *cli_default_model(void);

#endif
