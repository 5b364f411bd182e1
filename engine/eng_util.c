/* eng_util.c — error formatting and whole-file reading for the engine (see header). */
#include "engine/eng_util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int eng_errf(char *err, size_t errlen, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return -1;
}

char *eng_read_file(const char *path, size_t *len, size_t max_bytes, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) { eng_errf(err, errlen, "%s: cannot open: %s", path, strerror(errno)); return NULL; }
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap + 1);
  while (buf) {
    size_t r = fread(buf + n, 1, cap - n, f);
    n += r;
    if (n > max_bytes) { free(buf); fclose(f); eng_errf(err, errlen, "%s: file larger than %zu bytes", path, max_bytes); return NULL; }
    if (r == 0) break;
    if (n == cap) {
      char *nb = realloc(buf, cap * 2 + 1);
      if (!nb) { free(buf); buf = NULL; break; }
      buf = nb;
      cap *= 2;
    }
  }
  int bad = ferror(f);
  fclose(f);
  if (!buf) { eng_errf(err, errlen, "%s: out of memory reading the file", path); return NULL; }
  if (bad) { free(buf); eng_errf(err, errlen, "%s: read error", path); return NULL; }
  buf[n] = 0;
  if (len) *len = n;
  return buf;
}
