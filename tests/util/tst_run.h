/* tst_run.h — end-to-end test helper: runs a shell command line (usually the moescope
 * binary, $MOESCOPE_BIN), captures stdout and stderr, returns the exit status
 * (128 + signal when killed). Header-only. */
#ifndef MOESCOPE_TST_RUN_H
#define MOESCOPE_TST_RUN_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct tst_out { char out[65536]; char err[16384]; int status; } tst_out;

static inline void tst_read_file(const char *path, char *buf, size_t cap) {
  FILE *f = fopen(path, "rb");
  size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
  buf[n] = 0;
  if (f) fclose(f);
}

static inline int tst_sh(tst_out *o, const char *fmt, ...) {
  char cmd[8192], full[8192 + 2 * 1024 + 16], po[1024], pe[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  const char *tmp = getenv("MOESCOPE_TMP") ? getenv("MOESCOPE_TMP") : "/tmp";
  snprintf(po, sizeof po, "%s/tst_out.%d", tmp, (int)getpid());
  snprintf(pe, sizeof pe, "%s/tst_err.%d", tmp, (int)getpid());
  snprintf(full, sizeof full, "%s >'%s' 2>'%s'", cmd, po, pe);
  int st = system(full);
  o->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  tst_read_file(po, o->out, sizeof o->out);
  tst_read_file(pe, o->err, sizeof o->err);
  remove(po);
  remove(pe);
  return o->status;
}

static inline int tst_count_lines(const char *s) {
  int n = 0;
  for (; *s; s++) if (*s == '\n') n++;
  return n;
}

static inline const char *tst_bin(void) {
  const char *b = getenv("MOESCOPE_BIN");
  return b ? b : "moescope";
}
static inline const char *tst_tmp(void) {
  const char *t = getenv("MOESCOPE_TMP");
  return t ? t : "/tmp";
}
#endif
