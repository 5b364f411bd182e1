/* tst.h — the tiny test harness every C test uses: CHECK macros that count failures,
 * helpers to find shared data (skip with exit 77 when it is absent) and temp paths.
 * A test's main() ends with `return tst_done();` (exit 1 on any failure). */
#ifndef MOESCOPE_TST_H
#define MOESCOPE_TST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int tst_failures = 0;
static int tst_checks = 0;

#define CHECK(cond) do { tst_checks++; if (!(cond)) { tst_failures++; \
  fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECKF(cond, ...) do { tst_checks++; if (!(cond)) { tst_failures++; \
  fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
  fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)
#define CHECK_NEAR(a, b, tol) do { double tst_a_ = (a), tst_b_ = (b); tst_checks++; \
  if (!(fabs(tst_a_ - tst_b_) <= (tol))) { tst_failures++; \
  fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s=%.9g %s=%.9g tol=%g\n", __FILE__, __LINE__, \
          #a, tst_a_, #b, tst_b_, (double)(tol)); } } while (0)
#define REQUIRE(cond) do { tst_checks++; if (!(cond)) { \
  fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond); exit(1); } } while (0)

/* Directory of ../shared (env MOESCOPE_SHARED), or NULL. */
static inline const char *tst_shared(void) {
  const char *s = getenv("MOESCOPE_SHARED");
  if (s && *s && access(s, R_OK) == 0) return s;
  return NULL;
}
/* Exits 77 (ctest "skipped") with a message when ../shared or a file under it is absent. */
static inline void tst_need_shared(const char *rel) {
  const char *s = tst_shared();
  char p[4096];
  if (s) { snprintf(p, sizeof p, "%s/%s", s, rel); if (access(p, R_OK) == 0) return; }
  fprintf(stderr, "SKIP: shared data %s not found (set MOESCOPE_SHARED to ../shared)\n", rel);
  exit(77);
}
static inline const char *tst_path(char *buf, size_t n, const char *base_env, const char *rel) {
  const char *b = getenv(base_env);
  snprintf(buf, n, "%s/%s", b ? b : ".", rel);
  return buf;
}
/* Writable temp directory (env MOESCOPE_TMP, else /tmp). */
static inline const char *tst_tmp_dir(void) {
  const char *t = getenv("MOESCOPE_TMP");
  return t && *t ? t : "/tmp";
}
static inline int tst_done(void) {
  if (tst_failures) { fprintf(stderr, "FAILED: %d of %d checks\n", tst_failures, tst_checks); return 1; }
  printf("ok: %d checks\n", tst_checks);
  return 0;
}
#endif
