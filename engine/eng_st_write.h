/* eng_st_write.h — a small safetensors writer (used by `moescope synth` and tests).
 *
 * Collect named tensors (given as float, stored as F32, BF16 or F16 with round-to-nearest-
 * even), then write one file: u64 little-endian header length N, N bytes of JSON padded with
 * spaces to a multiple of 8 ({"__metadata__":{"format":"pt"}, name: {"dtype","shape",
 * "data_offsets":[begin,end]}} with tensors in name order, offsets relative to the first byte
 * after the header), then the raw little-endian data in the same order.
 * Files are written to a temporary name in the same folder and renamed into place, so a
 * failure (ENOSPC, permissions, ...) never leaves a half-written file; the error is one line.
 */
#ifndef MOESCOPE_ENG_ST_WRITE_H
#define MOESCOPE_ENG_ST_WRITE_H

#include <stddef.h>
#include <stdint.h>

typedef enum { ENG_STW_F32 = 0, ENG_STW_BF16 = 1, ENG_STW_F16 = 2 } eng_stw_dtype;

#define ENG_STW_MAX_DIMS 4

typedef struct eng_stw eng_stw;

/* float -> bfloat16 / IEEE half bits, round to nearest, ties to even; NaN stays NaN (quiet),
 * overflow goes to +-inf, f16 handles subnormals. */
uint16_t eng_stw_f32_to_bf16(float f);
uint16_t eng_stw_f32_to_f16(float f);
/* Exact widening back to float. */
float eng_stw_bf16_to_f32(uint16_t h);
float eng_stw_f16_to_f32(uint16_t h);

size_t eng_stw_dtype_size(eng_stw_dtype dt);          /* 4 or 2 */
const char *eng_stw_dtype_name(eng_stw_dtype dt);     /* "F32", "BF16", "F16" */

eng_stw *eng_stw_new(void);             /* NULL on out of memory */
void eng_stw_free(eng_stw *w);

/* Adds a tensor: data holds prod(shape) floats (row-major), converted and copied now.
 * ndim 0..4 (0 = scalar, one element). Names must be unique and non-empty.
 * Returns 0, or -1 with one line in err (duplicate name, bad shape, out of memory). */
int eng_stw_add(eng_stw *w, const char *name, eng_stw_dtype dt, int ndim,
               const int64_t *shape, const float *data, char *err, size_t errlen);

/* Writes the file at path (temp file + rename). 0, or -1 with one line in err. */
int eng_stw_write_path(const eng_stw *w, const char *path, char *err, size_t errlen);
/* Writes <dir>/model.safetensors. */
int eng_stw_write_dir(const eng_stw *w, const char *dir, char *err, size_t errlen);

/* Writes len bytes to path atomically (temp file in the same folder, fsync, rename).
 * 0, or -1 with one line in err naming the path and the system error. */
int eng_stw_write_file_atomic(const char *path, const void *data, size_t len, char *err,
                          size_t errlen);

#endif
