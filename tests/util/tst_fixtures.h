/* tst_fixtures.h — lists the Hugging Face family fixtures under tests/fixtures (folders
 * named hf_* that hold a given file, e.g. config.json or reference.json), sorted by name, so
 * every per-family test walks the same set in the same order. Header-only. */
#ifndef MOESCOPE_TST_FIXTURES_H
#define MOESCOPE_TST_FIXTURES_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TST_MAX_FIXTURES 64

static int tst_fixture_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Fills names[] (strdup'ed folder names, e.g. "hf_olmoe") of base/hf_* folders holding
 * `must_have`; returns the count, or -1 when base cannot be read. Free with tst_fixtures_free. */
static inline int tst_hf_fixtures(const char *base, const char *must_have, char *names[TST_MAX_FIXTURES]) {
  DIR *d = opendir(base);
  if (!d) return -1;
  int n = 0;
  for (struct dirent *e; (e = readdir(d)) && n < TST_MAX_FIXTURES;) {
    if (strncmp(e->d_name, "hf_", 3)) continue;
    char p[4096];
    int len = snprintf(p, sizeof p, "%s/%s/%s", base, e->d_name, must_have);
    if (len > 0 && (size_t)len < sizeof p && access(p, R_OK) == 0) names[n++] = strdup(e->d_name);
  }
  closedir(d);
  qsort(names, (size_t)n, sizeof *names, tst_fixture_cmp);
  return n;
}

static inline void tst_fixtures_free(char **names, int n) {
  for (int i = 0; i < n; i++) free(names[i]);
}

/* Calls fn(dir, family) for each fixture folder under $MOESCOPE_SRC/tests/fixtures holding
 * must_have, in name order (family = the folder name without "hf_"); returns how many, or -1. */
static inline int tst_each_hf_fixture(const char *must_have, void (*fn)(const char *dir, const char *family)) {
  const char *src = getenv("MOESCOPE_SRC");
  char root[4096], *names[TST_MAX_FIXTURES];
  snprintf(root, sizeof root, "%s/tests/fixtures", src ? src : ".");
  int n = tst_hf_fixtures(root, must_have, names);
  for (int i = 0; i < n; i++) {
    char dir[4400];
    snprintf(dir, sizeof dir, "%s/%s", root, names[i]);
    fn(dir, names[i] + 3);
  }
  if (n > 0) tst_fixtures_free(names, n);
  return n;
}

#endif
