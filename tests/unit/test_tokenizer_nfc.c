/* test_tokenizer_nfc.c — Unicode normalizers of tokenizer.json (NFC, NFD, NFKC, NFKD, Sequence)
 * applied by eng_tok_encode through libutf8proc:
 *  - tests/fixtures/tokenizer_nfc (byte-level BPE, normalizer NFC): ids produced by HF
 *    `tokenizers` 0.23.3 (see its README) for precomposed / decomposed Latin, Hangul jamo,
 *    the Angstrom sign singleton, canonical reordering, added tokens, and the same file
 *    with NFKC / NFD / NFKD / Sequence normalizers written to a temp copy;
 *  - invalid UTF-8 passes through unnormalised (no crash, bytes kept, valid runs normalised);
 *  - unsupported normalizers are refused with a clear error;
 *  - tests/fixtures/tokenizer_spm with a Sequence [NFC] normalizer (SentencePiece-style path);
 *  - shared data ($MOESCOPE_SHARED/data/tokenizers, skipped when absent): every OLMoE and
 *    Qwen2 vector, its text turned into NFD first, must still give HF's ids (HF NFC-normalises,
 *    and every vector text is NFC), and the round trip gives the NFC text back. */
#include <cjson/cJSON.h>

#include "engine/eng_tokenizer.h"
#include "tests/tst.h"

#define QWEN2_PATTERN "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*" \
                      "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

static void ids_are(const eng_tokenizer *t, const char *text, size_t len, const int *want, size_t nw, const char *what) {
  int *ids = NULL;
  size_t n = 0;
  char err[256] = "";
  int rc = eng_tok_encode(t, text, len, &ids, &n, err, sizeof err);
  CHECKF(rc == 0, "%s: %s", what, err);
  int same = rc == 0 && n == nw && !memcmp(ids, want, nw * sizeof *ids);
  if (!same && rc == 0) {
    fprintf(stderr, "  %s got:", what);
    for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
  }
  CHECKF(same, "%s: ids differ", what);
  free(ids);
}
#define IDS(t, text, ...) do { static const int w_[] = {__VA_ARGS__}; \
  ids_are(t, text, sizeof text - 1, w_, sizeof w_ / sizeof *w_, #text); } while (0)

/* decode(encode(text)) == want */
static void round_trip(const eng_tokenizer *t, const char *text, size_t len, const char *want, size_t wlen) {
  int *ids = NULL;
  size_t n = 0, blen = 0;
  char *back = NULL;
  REQUIRE(eng_tok_encode(t, text, len, &ids, &n, NULL, 0) == 0);
  CHECK(eng_tok_decode(t, ids, n, &back, &blen) == 0);
  CHECKF(back && blen == wlen && !memcmp(back, want, wlen), "round trip of \"%s\"", text);
  free(back);
  free(ids);
}

/* Writes `src` with its "normalizer" replaced by the JSON `norm` to a temp file; loads it. */
static int load_with_norm(eng_tokenizer **t, const char *src, const char *norm, char *err, size_t errlen) {
  size_t n = 0;
  FILE *f = fopen(src, "rb");
  REQUIRE(f);
  fseek(f, 0, SEEK_END);
  long sz = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)sz + 1);
  REQUIRE(buf && fread(buf, 1, (size_t)sz, f) == (size_t)sz);
  buf[sz] = 0;
  fclose(f);
  cJSON *j = cJSON_Parse(buf);
  free(buf);
  REQUIRE(j);
  cJSON_DeleteItemFromObjectCaseSensitive(j, "normalizer");
  cJSON_AddItemToObject(j, "normalizer", cJSON_Parse(norm));
  char *txt = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s/tok_nfc_%d.json", tst_tmp_dir(), (int)getpid());
  f = fopen(tmp, "wb");
  REQUIRE(f && txt);
  n = strlen(txt);
  REQUIRE(fwrite(txt, 1, n, f) == n);
  fclose(f);
  free(txt);
  int rc = eng_tok_load(t, tmp, NULL, err, errlen);
  remove(tmp);
  return rc;
}

/* Every vector of a tests.jsonl with its text put into NFD first must give the expected ids. */
static int nfd_vectors(const eng_tokenizer *t, const char *jsonl, const char *name) {
  FILE *f = fopen(jsonl, "rb");
  REQUIRE(f);
  char *line = NULL;
  size_t cap = 0;
  int nvec = 0, nchanged = 0;
  while (getline(&line, &cap, f) > 0) {
    cJSON *o = cJSON_Parse(line);
    if (!o) continue;
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(o, "text"), *want = cJSON_GetObjectItemCaseSensitive(o, "ids");
    REQUIRE(cJSON_IsString(text) && cJSON_IsArray(want) && !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "bos")));
    size_t len = strlen(text->valuestring), dlen = 0, n = 0;
    char *d = NULL;
    REQUIRE(eng_tok_normalize(ENG_TOK_NORM_NFD, text->valuestring, len, &d, &dlen) == 0);
    nchanged += dlen != len || memcmp(d, text->valuestring, len);
    int *ids = NULL;
    char err[256] = "";
    int rc = eng_tok_encode(t, d, dlen, &ids, &n, err, sizeof err);
    CHECKF(rc == 0, "%s vector %d: %s", name, nvec, err);
    size_t i = 0;
    int same = rc == 0;
    for (const cJSON *e = want->child; same && e; e = e->next, i++) same = i < n && ids[i] == e->valueint;
    same = same && i == n;
    CHECKF(same, "%s vector %d (NFD input): ids differ for \"%.60s\"", name, nvec, text->valuestring);
    char *back = NULL;
    size_t blen = 0;
    if (rc == 0) {
      CHECK(eng_tok_decode(t, ids, n, &back, &blen) == 0);
      CHECKF(back && blen == len && !memcmp(back, text->valuestring, len), "%s vector %d: decode is not the NFC text",
             name, nvec);
    }
    free(back);
    free(ids);
    free(d);
    cJSON_Delete(o);
    nvec++;
  }
  free(line);
  fclose(f);
  printf("%s: %d vectors with NFD input (%d texts changed by NFD)\n", name, nvec, nchanged);
  CHECK(nchanged >= 3); /* café..., Äpfel, Cửa Việt */
  return nvec;
}

int main(void) {
  char src[4096], err[512] = "";
  eng_tokenizer *t = NULL;

  /* eng_tok_normalize itself */
  char *o = NULL;
  size_t on = 0;
  REQUIRE(eng_tok_normalize(ENG_TOK_NORM_NFC, "cafe\xcc\x81", 6, &o, &on) == 0);
  CHECK(on == 5 && !memcmp(o, "caf\xc3\xa9", 5));
  free(o);
  REQUIRE(eng_tok_normalize(ENG_TOK_NORM_NFD, "\xc3\xa9", 2, &o, &on) == 0);
  CHECK(on == 3 && !memcmp(o, "e\xcc\x81", 3));
  free(o);
  REQUIRE(eng_tok_normalize(ENG_TOK_NORM_NFKC, "\xef\xac\x81", 3, &o, &on) == 0); /* U+FB01 ligature -> fi */
  CHECK(on == 2 && !memcmp(o, "fi", 2));
  free(o);
  REQUIRE(eng_tok_normalize(ENG_TOK_NORM_NFC, "\xe1\x84\x92\xe1\x85\xa1\xe1\x86\xab", 9, &o, &on) == 0); /* jamo -> 한 */
  CHECK(on == 3 && !memcmp(o, "\xed\x95\x9c", 3));
  free(o);
  /* invalid UTF-8: ill-formed bytes kept, each valid run normalised on its own */
  REQUIRE(eng_tok_normalize(ENG_TOK_NORM_NFC, "e\xcc\x81\xff" "e\xcc\x81\xed\xa0\x80\xc0\xaf\xf4\x90\x80\x80", 16, &o, &on) == 0);
  CHECK(on == 14 && !memcmp(o, "\xc3\xa9\xff\xc3\xa9\xed\xa0\x80\xc0\xaf\xf4\x90\x80\x80", 14));
  free(o);
  REQUIRE(eng_tok_normalize(ENG_TOK_NORM_NFC, "e\xcc", 2, &o, &on) == 0); /* truncated sequence at the end */
  CHECK(on == 2 && !memcmp(o, "e\xcc", 2));
  free(o);
  REQUIRE(eng_tok_normalize(ENG_TOK_NORM_NFC, "a\0\xcc\x81", 4, &o, &on) == 0); /* NUL is a character, not an end */
  CHECK(on == 4 && !memcmp(o, "a\0\xcc\x81", 4));
  free(o);
  REQUIRE(eng_tok_normalize(ENG_TOK_NORM_NFKC, "\xcd\xb8\xef\xbf\xbf\xf3\xb0\x80\x80", 9, &o, &on) == 0);
  CHECK(on == 9 && !memcmp(o, "\xcd\xb8\xef\xbf\xbf\xf3\xb0\x80\x80", 9)); /* unassigned, noncharacter, private use */
  free(o);
  REQUIRE(eng_tok_normalize(ENG_TOK_NORM_NFC, "", 0, &o, &on) == 0);
  CHECK(o && on == 0 && o[0] == 0);
  free(o);
  CHECK(!strcmp(eng_tok_norm_name(ENG_TOK_NORM_NFKD), "NFKD") && !strcmp(eng_tok_norm_name(ENG_TOK_NORM_NONE), "none"));

  /* the NFC fixture: HF's ids (README) */
  tst_path(src, sizeof src, "MOESCOPE_SRC", "tests/fixtures/tokenizer_nfc/tokenizer.json");
  int rc = eng_tok_load(&t, src, NULL, err, sizeof err);
  REQUIRE(rc == 0 || (fprintf(stderr, "%s\n", err), 0));
  CHECK(eng_tok_norm(t) == ENG_TOK_NORM_NFC && eng_tok_kind(t) == ENG_TOK_BYTE_BPE && eng_tok_vocab_size(t) == 264);
  IDS(t, "caf\xc3\xa9", 259);
  IDS(t, "cafe\xcc\x81", 259);
  IDS(t, "caf\xc3\xa9 caf\xc3\xa9", 259, 262);
  IDS(t, "cafe\xcc\x81 cafe\xcc\x81", 259, 262);
  IDS(t, "cafe\xcc\x81 cafe\xcc\x81 cafe\xcc\x81 caf\xc3\xa9", 259, 262, 262, 262); /* per-call word cache on normalised text */
  IDS(t, "\xed\x95\x9c", 261);                                     /* U+D55C */
  IDS(t, "\xe1\x84\x92\xe1\x85\xa1\xe1\x86\xab", 261);             /* U+1112 U+1161 U+11AB */
  IDS(t, " \xe1\x84\x92\xe1\x85\xa1\xe1\x86\xab", 32, 261);
  IDS(t, "\xe2\x84\xab", 195, 133);                                /* U+212B ANGSTROM SIGN -> U+00C5 */
  IDS(t, "\xc3\x85", 195, 133);
  IDS(t, "\xef\xac\x81", 239, 172, 129);                           /* NFC keeps U+FB01 */
  IDS(t, "e<|x|>\xcc\x81", 101, 263, 204, 129);                    /* no composition across an added token */
  IDS(t, "e\xcc\x81<|x|>cafe\xcc\x81", 256, 263, 259);
  IDS(t, "a\xcc\xa3\xcc\x87", 225, 186, 161, 204, 135);            /* a + dot below + dot above -> U+1EA1 U+0307 */
  IDS(t, "\xe1\xb8\x8b\xcc\xa3", 225, 184, 141, 204, 135);         /* U+1E0B U+0323 -> U+1E0D U+0307 */
  /* invalid UTF-8: passes through unnormalised, no crash */
  IDS(t, "e\xff\xcc\x81", 101, 255, 204, 129);
  IDS(t, "e\xcc\x81\xff", 256, 255);
  IDS(t, "\xc3", 195);
  round_trip(t, "cafe\xcc\x81 \xe1\x84\x92\xe1\x85\xa1\xe1\x86\xab!", 17, "caf\xc3\xa9 \xed\x95\x9c!", 10);
  round_trip(t, "e\xff\xcc\x81<|x|>\xed\xa0\x80", 12, "e\xff\xcc\x81<|x|>\xed\xa0\x80", 12);
  int *ids = NULL;
  size_t n = 0;
  CHECK(eng_tok_encode(t, "", 0, &ids, &n, NULL, 0) == 0 && ids && n == 0);
  free(ids);
  eng_tok_free(t);

  /* other forms and Sequences (same vocabulary) */
  REQUIRE(load_with_norm(&t, src, "{\"type\":\"NFKC\"}", err, sizeof err) == 0);
  CHECK(eng_tok_norm(t) == ENG_TOK_NORM_NFKC);
  IDS(t, "\xef\xac\x81", 102, 105);
  IDS(t, "caf\xc3\xa9", 259);
  IDS(t, "\xe2\x84\xab", 195, 133);
  eng_tok_free(t);
  REQUIRE(load_with_norm(&t, src, "{\"type\":\"NFD\"}", err, sizeof err) == 0);
  CHECK(eng_tok_norm(t) == ENG_TOK_NORM_NFD);
  IDS(t, "\xef\xac\x81", 239, 172, 129);
  IDS(t, "caf\xc3\xa9", 258, 101, 204, 129);
  IDS(t, "\xe2\x84\xab", 65, 204, 138);
  eng_tok_free(t);
  REQUIRE(load_with_norm(&t, src, "{\"type\":\"NFKD\"}", err, sizeof err) == 0);
  CHECK(eng_tok_norm(t) == ENG_TOK_NORM_NFKD);
  IDS(t, "\xef\xac\x81", 102, 105);
  IDS(t, "caf\xc3\xa9", 258, 101, 204, 129);
  IDS(t, "\xe2\x84\xab", 65, 204, 138);
  eng_tok_free(t);
  REQUIRE(load_with_norm(&t, src, "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFKD\"},{\"type\":\"NFC\"}]}", err,
                         sizeof err) == 0);
  CHECK(eng_tok_norm(t) == ENG_TOK_NORM_NFKC);
  IDS(t, "\xef\xac\x81", 102, 105);
  IDS(t, "cafe\xcc\x81", 259);
  eng_tok_free(t);
  REQUIRE(load_with_norm(&t, src, "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"}]}", err, sizeof err) == 0);
  CHECK(eng_tok_norm(t) == ENG_TOK_NORM_NFC);
  IDS(t, "cafe\xcc\x81", 259);
  eng_tok_free(t);
  REQUIRE(load_with_norm(&t, src, "null", err, sizeof err) == 0); /* no normalizer: decomposed stays decomposed */
  CHECK(eng_tok_norm(t) == ENG_TOK_NORM_NONE);
  IDS(t, "cafe\xcc\x81", 258, 101, 204, 129);
  eng_tok_set_norm(t, ENG_TOK_NORM_NFC); /* set by hand (e.g. Qwen2 vocab.json + merges.txt) */
  IDS(t, "cafe\xcc\x81", 259);
  eng_tok_free(t);
  t = NULL;
  rc = load_with_norm(&t, src, "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"},{\"type\":\"Lowercase\"}]}", err,
                      sizeof err);
  CHECKF(rc == -1 && t == NULL && strstr(err, "unsupported normalizer 'Lowercase'") && strstr(err, "tok_nfc_"), "%s", err);
  rc = load_with_norm(&t, src, "{\"type\":\"Replace\",\"pattern\":{\"String\":\"a\"},\"content\":\"b\"}", err,
                      sizeof err);
  CHECKF(rc == -1 && strstr(err, "unsupported normalizer 'Replace'"), "%s", err); /* byte-level: no Replace */

  /* SentencePiece-style tokenizer.json with a Sequence [NFC] normalizer (HF ids, README) */
  tst_path(src, sizeof src, "MOESCOPE_SRC", "tests/fixtures/tokenizer_spm/tokenizer.json");
  REQUIRE(load_with_norm(&t, src, "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"}]}", err, sizeof err) == 0);
  CHECK(eng_tok_kind(t) == ENG_TOK_SPM && eng_tok_norm(t) == ENG_TOK_NORM_NFC);
  IDS(t, "e\xcc\x81", 259, 198, 172);
  IDS(t, "\xc3\xa9", 259, 198, 172);
  IDS(t, "ab e\xcc\x81", 265, 259, 198, 172);
  IDS(t, " ab", 265);
  eng_tok_free(t);
  REQUIRE(eng_tok_load(&t, src, NULL, err, sizeof err) == 0); /* as shipped: no normalizer */
  CHECK(eng_tok_norm(t) == ENG_TOK_NORM_NONE);
  IDS(t, "e\xcc\x81", 259, 104, 207, 132);
  eng_tok_free(t);
  rc = load_with_norm(&t, src, "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Strip\",\"left\":true}]}", err,
                      sizeof err);
  CHECKF(rc == -1 && strstr(err, "unsupported normalizer 'Strip'"), "%s", err);

  /* real tokenizers with HF vectors, NFD input */
  if (tst_shared()) {
    char a[4096], b[4096], c[4096];
    tst_path(a, sizeof a, "MOESCOPE_SHARED", "data/tokenizers/olmoe_gpt_neox_bpe/tokenizer.json");
    tst_path(b, sizeof b, "MOESCOPE_SHARED", "data/tokenizers/olmoe_gpt_neox_bpe/tests.jsonl");
    if (access(a, R_OK) == 0) {
      REQUIRE(eng_tok_load(&t, a, NULL, err, sizeof err) == 0);
      CHECK(eng_tok_norm(t) == ENG_TOK_NORM_NFC);
      CHECK(nfd_vectors(t, b, "olmoe_gpt_neox_bpe") == 50);
      eng_tok_free(t);
    }
    tst_path(a, sizeof a, "MOESCOPE_SHARED", "data/tokenizers/qwen2_bpe/vocab.json");
    tst_path(b, sizeof b, "MOESCOPE_SHARED", "data/tokenizers/qwen2_bpe/merges.txt");
    tst_path(c, sizeof c, "MOESCOPE_SHARED", "data/tokenizers/qwen2_bpe/tokenizer_config.json");
    if (access(a, R_OK) == 0) {
      REQUIRE(eng_tok_load_vocab_merges(&t, a, b, c, QWEN2_PATTERN, err, sizeof err) == 0);
      CHECK(eng_tok_norm(t) == ENG_TOK_NORM_NONE);
      eng_tok_set_norm(t, ENG_TOK_NORM_NFC); /* Qwen2TokenizerFast's normalizer */
      tst_path(a, sizeof a, "MOESCOPE_SHARED", "data/tokenizers/qwen2_bpe/tests.jsonl");
      CHECK(nfd_vectors(t, a, "qwen2_bpe") == 50);
      eng_tok_free(t);
    }
  } else {
    printf("shared data absent: real-tokenizer part skipped\n");
  }
  return tst_done();
}
