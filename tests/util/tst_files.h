/* tst_files.h — reading whole files in tests (fixtures, generated reports, figures).
 * Header-only. */
#ifndef MOESCOPE_TST_FILES_H
#define MOESCOPE_TST_FILES_H

#include <stdio.h>
#include <stdlib.h>

/* The whole file, NUL-terminated (malloc'ed; free it), its length in *len when len is not
 * NULL; NULL when it cannot be opened or read. */
static inline char *tst_slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *b = NULL;
  long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
  if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (b = malloc((size_t)n + 1))) {
    size_t got = fread(b, 1, (size_t)n, f);
    if (got != (size_t)n) { free(b); b = NULL; }
    else {
      b[got] = 0;
      if (len) *len = got;
    }
  }
  fclose(f);
  return b;
}

#endif
