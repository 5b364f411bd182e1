/* eng_util.h — small helpers every engine module uses: formatting an error line into a
 * caller's buffer (the engine's error convention: return -1 + one line, never exit) and
 * reading a whole file. */
#ifndef MOESCOPE_ENG_UTIL_H
#define MOESCOPE_ENG_UTIL_H

#include <stddef.h>

/* Formats into err (when err and errlen are non-zero) and returns -1. */
int eng_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Reads a whole file into a malloc'd, NUL-terminated buffer (*len excludes the NUL).
 * Files larger than max_bytes are refused. NULL + error line naming the path on failure. */
char *eng_read_file(const char *path, size_t *len, size_t max_bytes, char *err, size_t errlen);

#endif
