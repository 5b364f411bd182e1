/* eng_npy.h — streaming writer of float32 2-D NumPy .npy files ([rows, cols], C order).
 * Rows are appended as they come; the header (fixed 128 bytes) is rewritten with the
 * final row count at close. Used by `moescope run --dump-logits`. */
#ifndef MOESCOPE_ENG_NPY_H
#define MOESCOPE_ENG_NPY_H

#include <stddef.h>
#include <stdio.h>

typedef struct eng_npy { FILE *f; char *path; size_t rows, cols; int failed; } eng_npy;

int eng_npy_open(eng_npy *w, const char *path, size_t cols, char *err, size_t errlen);
int eng_npy_append(eng_npy *w, const float *rows, size_t n, char *err, size_t errlen);
/* Finalises the header and closes. 0, or -1 (+err) if anything failed (file removed). */
int eng_npy_close(eng_npy *w, char *err, size_t errlen);

#endif
