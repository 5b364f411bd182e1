/* test_tokenizer_corpus.c — the tokenizer over the whole corpus ($MOESCOPE_SHARED/data/
 * corpus/<name>.txt): decode(encode(x)) == x for every file, and the token count of every
 * <domain>.eval.txt equals tiny-mixtral reference.json eval_perplexity.first4096.<domain>
 * .file_tokens (identical encoding of the full eval files). Prints tokens and MB/s.
 * Skips (77) without ../shared. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <time.h>

#include "engine/eng_tokenizer.h"
#include "tests/tst.h"
#include "tests/util/tst_files.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(void) {
  tst_need_shared("data/corpus/arxiv.eval.txt");
  char tj[4096], ref[4096], dir[4096], path[8192], err[1024] = "";
  tst_path(tj, sizeof tj, "MOESCOPE_SRC", "tests/fixtures/tokenizer/tokenizer.json");
  tst_path(ref, sizeof ref, "MOESCOPE_SRC", "tests/fixtures/tiny-mixtral-reference.json");
  tst_path(dir, sizeof dir, "MOESCOPE_SHARED", "data/corpus");
  eng_tokenizer *t = NULL;
  int rc = eng_tok_load(&t, tj, NULL, err, sizeof err);
  if (rc) fprintf(stderr, "%s\n", err);
  REQUIRE(rc == 0);

  size_t rlen = 0;
  char *rtext = tst_slurp(ref, &rlen);
  REQUIRE(rtext);
  cJSON *r = cJSON_Parse(rtext);
  free(rtext);
  REQUIRE(r);
  const cJSON *first = cJSON_GetObjectItemCaseSensitive(
      cJSON_GetObjectItemCaseSensitive(r, "eval_perplexity"), "first4096");
  REQUIRE(first);

  DIR *d = opendir(dir);
  REQUIRE(d);
  char *names[256];
  int nn = 0;
  for (struct dirent *e; (e = readdir(d)) && nn < 256;) {
    size_t l = strlen(e->d_name);
    if (l > 4 && !strcmp(e->d_name + l - 4, ".txt")) names[nn++] = strdup(e->d_name);
  }
  closedir(d);
  qsort(names, (size_t)nn, sizeof *names, cmp_str);
  CHECK(nn >= 12);

  double total_s = 0, total_mb = 0;
  size_t total_tokens = 0;
  int n_eval_checked = 0;
  for (int i = 0; i < nn; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    size_t len = 0;
    char *text = tst_slurp(path, &len);
    REQUIRE(text);
    int *ids = NULL;
    size_t n = 0;
    double t0 = now();
    rc = eng_tok_encode(t, text, len, &ids, &n, err, sizeof err);
    double dt = now() - t0;
    CHECKF(rc == 0, "%s: %s", names[i], err);
    char *back = NULL;
    size_t blen = 0;
    CHECK(rc == 0 && eng_tok_decode(t, ids, n, &back, &blen) == 0);
    CHECKF(back && blen == len && memcmp(back, text, len) == 0, "%s: decode(encode(x)) != x", names[i]);
    printf("%-24s %9zu bytes %8zu tokens %7.1f MB/s\n", names[i], len, n, len / 1e6 / (dt > 0 ? dt : 1e-9));
    total_s += dt;
    total_mb += len / 1e6;
    total_tokens += n;
    char *dot = strstr(names[i], ".eval.txt");
    if (dot) {
      *dot = 0;
      const cJSON *ft = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(first, names[i]),
                                                         "file_tokens");
      CHECKF(cJSON_IsNumber(ft) && (size_t)ft->valuedouble == n, "%s.eval.txt: %zu tokens, reference %g",
             names[i], n, cJSON_IsNumber(ft) ? ft->valuedouble : -1.0);
      n_eval_checked++;
    }
    free(back);
    free(ids);
    free(text);
    free(names[i]);
  }
  CHECK(n_eval_checked == 6);
  printf("total: %d files, %.2f MB, %zu tokens, %.2f s, %.1f MB/s\n", nn, total_mb, total_tokens, total_s,
         total_mb / (total_s > 0 ? total_s : 1e-9));
  cJSON_Delete(r);
  eng_tok_free(t);
  return tst_done();
}
