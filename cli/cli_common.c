/* cli_common.c — argument helpers, error lines and the progress bar (see cli.h). */
#include "cli/cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cli_fail(int code, const char *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "moescope %s: ", cmd);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return code;
}

int cli_int(const char *s, long lo, long hi, long *out) {
  if (!s || !*s) return -1;
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *end || v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

int cli_double(const char *s, double lo, double hi, double *out) {
  if (!s || !*s) return -1;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || *end || !isfinite(v) || v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

const char *cli_value(int argc, char **argv, int *i, const char *cmd) {
  if (*i + 1 >= argc) {
    cli_fail(CLI_USAGE, cmd, "option %s needs a value", argv[*i]);
    return NULL;
  }
  return argv[++*i];
}

int cli_is_help(const char *a) { return !strcmp(a, "--help") || !strcmp(a, "-h"); }

char *cli_join(int argc, char **argv) {
  size_t n = 1;
  for (int i = 0; i < argc; i++) n += strlen(argv[i]) + 3;
  char *s = malloc(n);
  if (!s) return NULL;
  s[0] = 0;
  for (int i = 0; i < argc; i++) {
    if (i) strcat(s, " ");
    int q = strchr(argv[i], ' ') != NULL;
    if (q) strcat(s, "'");
    strcat(s, argv[i]);
    if (q) strcat(s, "'");
  }
  return s;
}

static int progress_shown = 0;
void cli_progress(const char *what, double done, double total) {
  if (!isatty(2) || total <= 0) return;
  int w = 30, fill = (int)(w * done / total);
  if (fill > w) fill = w;
  fprintf(stderr, "\r%-12.12s [", what);
  for (int i = 0; i < w; i++) fputc(i < fill ? '#' : '.', stderr);
  fprintf(stderr, "] %5.1f%%", 100.0 * done / total);
  progress_shown = 1;
}
void cli_progress_end(void) {
  if (progress_shown) fprintf(stderr, "\r%60s\r", "");
  progress_shown = 0;
}

const char *cli_default_model(void) {
  const char *e = getenv("MOESCOPE_MODEL");
  if (e && *e) return e;
  static char buf[4096];
  if (access("models/tiny-mixtral/config.json", R_OK) == 0) return "models/tiny-mixtral";
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 64);
  if (n > 0) {
    buf[n] = 0;
    for (int up = 0; up < 3; up++) {
      char *sl = strrchr(buf, '/');
      if (!sl) break;
      *sl = 0;
      size_t len = strlen(buf);
      snprintf(buf + len, sizeof buf - len, "/models/tiny-mixtral");
      if (access(buf, R_OK) == 0) return buf;
      buf[len] = 0;
    }
  }
  return "models/tiny-mixtral";
}
