/* tst_files.h — reading whole files in tests (fixtures, generated reports, figures).
 * Header-only. */
#ifndef MOESCOPE_TST_FILES_H
#define MOESCOPE_TST_FILES_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Figure files: 1 when path is a PNG (signature + IHDR) whose size lies within
 * [wmin, wmax] x [hmin, hmax]; an SVG document; a PDF. 0 otherwise. */
static inline int tst_png_ok(const char *path, unsigned wmin, unsigned wmax, unsigned hmin, unsigned hmax) {
  size_t n = 0;
  unsigned char *u = (unsigned char *)tst_slurp(path, &n);
  static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  int ok = u && n >= 24 && memcmp(u, sig, 8) == 0 && memcmp(u + 12, "IHDR", 4) == 0;
  if (ok) {
    unsigned w = (unsigned)u[16] << 24 | (unsigned)u[17] << 16 | (unsigned)u[18] << 8 | u[19];
    unsigned h = (unsigned)u[20] << 24 | (unsigned)u[21] << 16 | (unsigned)u[22] << 8 | u[23];
    ok = w >= wmin && w <= wmax && h >= hmin && h <= hmax;
    if (!ok) fprintf(stderr, "%s: %ux%u outside [%u,%u]x[%u,%u]\n", path, w, h, wmin, wmax, hmin, hmax);
  }
  free(u);
  return ok;
}
static inline int tst_svg_ok(const char *path) {
  char *s = tst_slurp(path, NULL);
  int ok = s && (strncmp(s, "<?xml", 5) == 0 || strncmp(s, "<svg", 4) == 0);
  free(s);
  return ok;
}
static inline int tst_pdf_ok(const char *path) {
  char *s = tst_slurp(path, NULL);
  int ok = s && strncmp(s, "%PDF-", 5) == 0;
  free(s);
  return ok;
}

#endif
