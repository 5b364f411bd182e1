/* test_tokenizer.c — eng_tokenizer against the project's own fixtures (no ../shared needed):
 * every vector of tokenizer_tests.json (ids and round trip), the GPT-2 byte table facts of
 * models/README.md, the ids of the tiny-mixtral reference prompts, special tokens, BOS/EOS,
 * invalid UTF-8 round trips and the load errors (missing, broken, truncated, unsupported). */
#include <cjson/cJSON.h>

#include "engine/eng_tokenizer.h"
#include "tests/tst.h"
#include "tests/util/tst_files.h"

static cJSON *load_json(const char *path) {
  char *s = tst_slurp(path, NULL);
  if (!s) return NULL;
  cJSON *j = cJSON_Parse(s);
  free(s);
  return j;
}

/* encode(text) == expected (a cJSON array of numbers) and decode(ids) == text. */
static void check_vector(const eng_tokenizer *t, const char *text, size_t len, const cJSON *expected,
                         const char *what) {
  int *ids = NULL;
  size_t n = 0;
  char err[512] = "";
  int rc = eng_tok_encode(t, text, len, &ids, &n, err, sizeof err);
  CHECKF(rc == 0, "%s: %s", what, err);
  if (rc) return;
  int same = (int)n == cJSON_GetArraySize(expected);
  size_t i = 0;
  for (const cJSON *e = expected->child; same && e; e = e->next, i++) same = ids[i] == e->valueint;
  CHECKF(same, "%s: ids differ (got %zu tokens, want %d)", what, n, cJSON_GetArraySize(expected));
  char *back = NULL;
  size_t blen = 0;
  CHECK(eng_tok_decode(t, ids, n, &back, &blen) == 0);
  CHECKF(back && blen == len && memcmp(back, text, len) == 0, "%s: decode(encode(x)) != x", what);
  free(back);
  free(ids);
}

static void check_one(const eng_tokenizer *t, const char *text, size_t len, int want) {
  int *ids = NULL;
  size_t n = 0;
  CHECK(eng_tok_encode(t, text, len, &ids, &n, NULL, 0) == 0);
  CHECKF(n == 1 && ids[0] == want, "byte 0x%02x -> %d tokens, first %d, want %d", (unsigned char)text[0],
         (int)n, n ? ids[0] : -1, want);
  size_t plen = 0;
  const char *p = eng_tok_piece(t, want, &plen);
  CHECK(p && plen == len && memcmp(p, text, len) == 0);
  free(ids);
}

static void write_file(const char *path, const char *data, size_t n) {
  FILE *f = fopen(path, "wb");
  REQUIRE(f);
  REQUIRE(fwrite(data, 1, n, f) == n);
  fclose(f);
}

static void expect_load_error(const char *path, const char *why) {
  eng_tokenizer *t = (eng_tokenizer *)1;
  char err[1024] = "";
  int rc = eng_tok_load(&t, path, NULL, err, sizeof err);
  CHECKF(rc == -1 && t == NULL, "%s: load should fail", why);
  CHECKF(strstr(err, path) != NULL, "%s: message '%s' does not name %s", why, err, path);
  CHECKF(strchr(err, '\n') == NULL, "%s: message is not one line", why);
  if (rc == 0) eng_tok_free(t);
}

int main(void) {
  char tj[4096], cfg[4096], vec[4096], ref[4096], tmp[4096], err[1024] = "";
  tst_path(tj, sizeof tj, "MOESCOPE_SRC", "tests/fixtures/tokenizer/tokenizer.json");
  tst_path(cfg, sizeof cfg, "MOESCOPE_SRC", "tests/fixtures/tokenizer/tokenizer_config.json");
  tst_path(vec, sizeof vec, "MOESCOPE_SRC", "tests/fixtures/tokenizer/tokenizer_tests.json");
  tst_path(ref, sizeof ref, "MOESCOPE_SRC", "tests/fixtures/tiny-mixtral-reference.json");

  eng_tokenizer *t = NULL;
  int rc = eng_tok_load(&t, tj, cfg, err, sizeof err);
  if (rc) fprintf(stderr, "load: %s\n", err);
  REQUIRE(rc == 0 && t);
  CHECK(eng_tok_vocab_size(t) == 8192);
  CHECK(eng_tok_bos(t) == 8191);
  CHECK(eng_tok_eos(t) == 8191);

  /* the test vectors */
  cJSON *v = load_json(vec);
  REQUIRE(v);
  const cJSON *cases = cJSON_GetObjectItemCaseSensitive(v, "cases");
  int ncases = 0;
  for (const cJSON *c = cases ? cases->child : NULL; c; c = c->next, ncases++) {
    const char *text = cJSON_GetObjectItemCaseSensitive(c, "text")->valuestring;
    char what[96];
    snprintf(what, sizeof what, "tokenizer_tests case %d", ncases);
    check_vector(t, text, strlen(text), cJSON_GetObjectItemCaseSensitive(c, "ids"), what);
  }
  CHECK(ncases == 28);
  cJSON_Delete(v);

  /* byte table facts (models/README.md "Tokenizer") */
  check_one(t, "!", 1, 0);
  check_one(t, "A", 1, 32);
  check_one(t, "\0", 1, 188);
  check_one(t, "\n", 1, 198);
  check_one(t, " ", 1, 220);
  check_one(t, "\xff", 1, 187);
  for (int b = 0; b < 256; b++) { /* every single byte is one token and decodes back */
    char c = (char)b;
    int *ids = NULL;
    size_t n = 0, plen = 0;
    CHECK(eng_tok_encode(t, &c, 1, &ids, &n, NULL, 0) == 0 && n == 1 && ids[0] < 256);
    const char *p = n == 1 ? eng_tok_piece(t, ids[0], &plen) : NULL;
    CHECK(p && plen == 1 && *p == c);
    free(ids);
  }

  /* special token and pieces */
  size_t plen = 0;
  const char *p = eng_tok_piece(t, 8191, &plen);
  CHECK(p && plen == 13 && memcmp(p, "<|endoftext|>", 13) == 0);
  CHECK(eng_tok_piece(t, 8192, &plen) == NULL && eng_tok_piece(t, -1, &plen) == NULL);
  {
    const cJSON *exp;
    cJSON *arr = cJSON_Parse("[8191, 8191, 64, 8191]");
    exp = arr;
    check_vector(t, "<|endoftext|><|endoftext|>a<|endoftext|>", 40, exp, "specials");
    cJSON_Delete(arr);
  }

  /* invalid UTF-8 and NUL bytes still round-trip byte for byte */
  {
    const char bad[] = "ab\xff\xfe cd \xc3 \xe2\x82 e\0f \xf0\x9f\x99\x82\xed\xa0\x80 z";
    int *ids = NULL;
    size_t n = 0, blen = 0;
    char *back = NULL;
    CHECK(eng_tok_encode(t, bad, sizeof bad - 1, &ids, &n, err, sizeof err) == 0);
    CHECK(eng_tok_decode(t, ids, n, &back, &blen) == 0);
    CHECK(back && blen == sizeof bad - 1 && memcmp(back, bad, blen) == 0);
    free(back);
    free(ids);
  }
  {
    int bad_ids[] = {5, 8192};
    char *back = (char *)1;
    size_t blen = 7;
    CHECK(eng_tok_decode(t, bad_ids, 2, &back, &blen) == -1 && back == NULL);
    CHECK(eng_tok_decode(t, bad_ids, 0, &back, &blen) == 0 && back && blen == 0 && back[0] == 0);
    free(back);
  }

  /* reference prompts of tiny-mixtral */
  cJSON *r = load_json(ref);
  REQUIRE(r);
  const cJSON *prompts = cJSON_GetObjectItemCaseSensitive(r, "prompts");
  int nprompts = 0;
  for (const cJSON *c = prompts ? prompts->child : NULL; c; c = c->next, nprompts++) {
    const char *text = cJSON_GetObjectItemCaseSensitive(c, "text")->valuestring;
    char what[96];
    snprintf(what, sizeof what, "reference prompt %d", nprompts);
    check_vector(t, text, strlen(text), cJSON_GetObjectItemCaseSensitive(c, "ids"), what);
  }
  CHECK(nprompts == 6);
  cJSON_Delete(r);
  eng_tok_free(t);

  /* without a config there is no BOS/EOS */
  REQUIRE(eng_tok_load(&t, tj, NULL, err, sizeof err) == 0);
  CHECK(eng_tok_bos(t) == -1 && eng_tok_eos(t) == -1);
  eng_tok_free(t);

  /* errors: one line naming the file, -1, *out NULL */
  tst_path(tmp, sizeof tmp, "MOESCOPE_TMP", "tok_missing_dir/none.json");
  expect_load_error(tmp, "missing file");
  tst_path(tmp, sizeof tmp, "MOESCOPE_TMP", "tok_broken.json");
  write_file(tmp, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0,}}", 45);
  expect_load_error(tmp, "broken JSON");
  size_t full = 0;
  char *whole = tst_slurp(tj, &full);
  REQUIRE(whole);
  tst_path(tmp, sizeof tmp, "MOESCOPE_TMP", "tok_truncated.json");
  write_file(tmp, whole, full / 2);
  expect_load_error(tmp, "truncated file");
  free(whole);
  tst_path(tmp, sizeof tmp, "MOESCOPE_TMP", "tok_wordpiece.json");
  const char *wp = "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}";
  write_file(tmp, wp, strlen(wp));
  expect_load_error(tmp, "unsupported model type");
  CHECK(eng_tok_load(&t, tmp, NULL, err, sizeof err) == -1 && strstr(err, "WordPiece"));
  tst_path(tmp, sizeof tmp, "MOESCOPE_TMP", "tok_badmerge.json");
  const char *bm = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1},"
                   " \"merges\": [\"a b\"]}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}";
  write_file(tmp, bm, strlen(bm));
  expect_load_error(tmp, "merge piece not in vocab");
  CHECK(eng_tok_load(&t, tmp, NULL, err, sizeof err) == -1 && strstr(err, "not in vocab"));
  tst_path(tmp, sizeof tmp, "MOESCOPE_TMP", "tok_nopre.json");
  const char *np = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}";
  write_file(tmp, np, strlen(np));
  expect_load_error(tmp, "no pre-tokenizer");
  CHECK(eng_tok_load(&t, tj, "/nonexistent/tokenizer_config.json", err, sizeof err) == -1 &&
        strstr(err, "/nonexistent/tokenizer_config.json") && t == NULL);

  /* a tiny byte-level tokenizer with merges given as pairs and a Split + ByteLevel sequence:
   * a byte with no token is an encode error, not a crash */
  tst_path(tmp, sizeof tmp, "MOESCOPE_TMP", "tok_pairs.json");
  const char *pj = "{\"added_tokens\": [{\"id\": 5, \"content\": \"<s>\", \"special\": true}],"
                   " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"\xc4\xa0\": 3,"
                   " \"\xc4\xa0" "ab\": 4}, \"merges\": [[\"a\", \"b\"], [\"\xc4\xa0\", \"ab\"]]},"
                   " \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\","
                   " \"pattern\": {\"Regex\": \" ?[a-z]+|\\\\s+\"}, \"behavior\": \"Isolated\", \"invert\": false},"
                   " {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}]}}";
  write_file(tmp, pj, strlen(pj));
  rc = eng_tok_load(&t, tmp, NULL, err, sizeof err);
  CHECKF(rc == 0, "%s", err);
  if (rc == 0) {
    cJSON *exp = cJSON_Parse("[2, 4, 5, 3, 0]");
    check_vector(t, "ab ab<s> a", 10, exp, "pairs + Split");
    cJSON_Delete(exp);
    CHECK(eng_tok_vocab_size(t) == 6);
    int *ids = NULL;
    size_t n = 0;
    err[0] = 0;
    CHECK(eng_tok_encode(t, "abc", 3, &ids, &n, err, sizeof err) == -1 && strstr(err, "0x63"));
    free(ids);
    eng_tok_free(t);
  }
  return tst_done();
}
