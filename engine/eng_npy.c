/* eng_npy.c — streaming float32 .npy writer (see header). */
#include "engine/eng_npy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NPY_HEADER 128

static int write_header(eng_npy *w) {
  char h[NPY_HEADER];
  memset(h, ' ', sizeof h);
  memcpy(h, "\x93NUMPY\x01\x00", 8);
  h[8] = (char)((NPY_HEADER - 10) & 0xff);
  h[9] = (char)((NPY_HEADER - 10) >> 8);
  char dict[NPY_HEADER];
  int n = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu, %zu), }",
                   w->rows, w->cols);
  if (n < 0 || n > NPY_HEADER - 11) return -1;
  memcpy(h + 10, dict, (size_t)n);
  h[NPY_HEADER - 1] = '\n';
  if (fseek(w->f, 0, SEEK_SET) || fwrite(h, 1, sizeof h, w->f) != sizeof h) return -1;
  return fseek(w->f, 0, SEEK_END);
}

int eng_npy_open(eng_npy *w, const char *path, size_t cols, char *err, size_t errlen) {
  memset(w, 0, sizeof *w);
  w->f = fopen(path, "wb");
  if (!w->f) { snprintf(err, errlen, "%s: cannot create: %s", path, strerror(errno)); return -1; }
  w->path = strdup(path);
  w->cols = cols;
  if (write_header(w)) { snprintf(err, errlen, "%s: write failed: %s", path, strerror(errno)); eng_npy_close(w, NULL, 0); return -1; }
  return 0;
}

int eng_npy_append(eng_npy *w, const float *rows, size_t n, char *err, size_t errlen) {
  if (w->failed) return -1;
  if (fwrite(rows, sizeof(float) * w->cols, n, w->f) != n) {
    w->failed = 1;
    snprintf(err, errlen, "%s: write failed: %s", w->path, strerror(errno));
    return -1;
  }
  w->rows += n;
  return 0;
}

int eng_npy_close(eng_npy *w, char *err, size_t errlen) {
  int rc = w->failed ? -1 : 0;
  if (w->f) {
    if (rc == 0 && (write_header(w) || fflush(w->f))) rc = -1;
    if (fclose(w->f)) rc = -1;
    if (rc && err && !w->failed) snprintf(err, errlen, "%s: write failed: %s", w->path, strerror(errno));
    struct stat st; /* only a regular file we wrote is removed: never /dev/full or a FIFO */
    if (rc && stat(w->path, &st) == 0 && S_ISREG(st.st_mode)) remove(w->path);
  }
  free(w->path);
  memset(w, 0, sizeof *w);
  return rc;
}
