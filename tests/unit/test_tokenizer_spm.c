/* test_tokenizer_spm.c — SentencePiece-style BPE and GGUF-embedded vocabularies against
 * vectors produced by the reference code ($MOESCOPE_SHARED/data/tokenizers, see its READMEs):
 *  - mixtral_spm/tokenizer.model (protobuf) with sentencepiece semantics: tests.jsonl (9);
 *  - the same model with HF tokenizer.json Metaspace semantics (no dummy prefix when the
 *    text starts with a space): tests_hf_tokenizer_json.jsonl (4);
 *  - olmoe_gpt_neox_bpe/ggml-vocab-mpt.gguf (llama.cpp vocab-only GGUF, model gpt2, pre mpt):
 *    tests.jsonl (50);
 *  - a GGUF written by `moescope convert` for models/tiny-mixtral embeds a gpt2 vocabulary
 *    that encodes the fixture texts exactly as the model's tokenizer.json does;
 *  - a small SPM-style tokenizer.json (tests/fixtures/tokenizer_spm: byte_fallback, Metaspace)
 *    gives hand-checked ids.
 * Shared data absent: the shared parts skip (the rest still runs). */
#include <cjson/cJSON.h>

#include "engine/eng_tokenizer.h"
#include "tests/tst.h"
#include "tests/util/tst_run.h"

static int run_vectors(const eng_tokenizer *t, const char *jsonl, const char *name, int roundtrip) {
  FILE *f = fopen(jsonl, "rb");
  REQUIRE(f);
  char *line = NULL;
  size_t cap = 0;
  int nvec = 0, nfail = 0;
  while (getline(&line, &cap, f) > 0) {
    cJSON *o = cJSON_Parse(line);
    if (!o) continue;
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(o, "text"), *want = cJSON_GetObjectItemCaseSensitive(o, "ids");
    int bos = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "bos"));
    REQUIRE(cJSON_IsString(text) && cJSON_IsArray(want));
    int *ids = NULL;
    size_t n = 0, len = strlen(text->valuestring);
    char err[512] = "";
    int rc = eng_tok_encode(t, text->valuestring, len, &ids, &n, err, sizeof err);
    CHECKF(rc == 0, "%s vector %d: %s", name, nvec, err);
    const cJSON *e = want->child;
    int same = rc == 0;
    if (same && bos) { same = e && e->valueint == eng_tok_bos(t); if (e) e = e->next; }
    size_t i = 0;
    for (; same && e; e = e->next, i++) same = i < n && ids[i] == e->valueint;
    same = same && i == n;
    if (!same) {
      fprintf(stderr, "  got:");
      for (size_t k = 0; k < n; k++) fprintf(stderr, " %d", ids[k]);
      fprintf(stderr, "\n");
    }
    CHECKF(same, "%s vector %d: ids differ for \"%.60s\"", name, nvec, text->valuestring);
    nfail += !same;
    if (rc == 0 && roundtrip) {
      char *back = NULL;
      size_t blen = 0;
      CHECK(eng_tok_decode(t, ids, n, &back, &blen) == 0);
      CHECKF(back && blen == len && !memcmp(back, text->valuestring, len), "%s vector %d: round trip", name, nvec);
      free(back);
    }
    free(ids);
    cJSON_Delete(o);
    nvec++;
  }
  free(line);
  fclose(f);
  printf("%s: %d vectors, %d differ\n", name, nvec, nfail);
  return nvec;
}

static void encode_same(const eng_tokenizer *a, const eng_tokenizer *b, const char *text) {
  int *x = NULL, *y = NULL;
  size_t nx = 0, ny = 0;
  char err[256];
  REQUIRE(eng_tok_encode(a, text, strlen(text), &x, &nx, err, sizeof err) == 0);
  REQUIRE(eng_tok_encode(b, text, strlen(text), &y, &ny, err, sizeof err) == 0);
  CHECKF(nx == ny && !memcmp(x, y, nx * sizeof *x), "GGUF vocabulary encodes \"%.40s\" differently", text);
  free(x);
  free(y);
}

static void check_ids(const eng_tokenizer *t, const char *text, const int *want, size_t nw) {
  int *ids = NULL;
  size_t n = 0;
  char err[256] = "";
  int rc = eng_tok_encode(t, text, strlen(text), &ids, &n, err, sizeof err);
  CHECKF(rc == 0, "%s", err);
  int same = rc == 0 && n == nw && !memcmp(ids, want, nw * sizeof *ids);
  CHECKF(same, "\"%s\": ids differ (got %zu ids)", text, n);
  free(ids);
}

int main(void) {
  char err[512], p[4096], src[4096];
  eng_tokenizer *t = NULL;
  /* small SPM-style tokenizer.json (fixture): pieces ▁ a b ab ▁ab c, byte fallback */
  tst_path(src, sizeof src, "MOESCOPE_SRC", "tests/fixtures/tokenizer_spm/tokenizer.json");
  int rc = eng_tok_load(&t, src, NULL, err, sizeof err);
  CHECKF(rc == 0, "%s", err);
  if (rc == 0) {
    int w1[] = {265};
    check_ids(t, "ab", w1, 1);
    int w2[] = {265, 259, 262};      /* "ab c" -> ▁ab ▁ c */
    check_ids(t, "ab c", w2, 3);
    int w3[] = {259, 198, 172};      /* "é" -> ▁ <0xC3> <0xA9> (byte fallback) */
    check_ids(t, "\xc3\xa9", w3, 3);
    int w4[] = {265, 265};           /* HF Metaspace "first": no extra ▁ before a leading space */
    check_ids(t, " ab ab", w4, 2);
    int w5[] = {265, 262};
    check_ids(t, "abc", w5, 2);
    int w6[] = {1, 263};             /* specials are split out first; the ▁ prefix only at the text start */
    check_ids(t, "<s>ab", w6, 2);
    eng_tok_free(t);
  }
  const char *sh = tst_shared();
  if (!sh) { fprintf(stderr, "SKIP (shared parts): MOESCOPE_SHARED not set\n"); return tst_done(); }
  snprintf(p, sizeof p, "%s/data/tokenizers/mixtral_spm/tokenizer.model", sh);
  if (access(p, R_OK) == 0) {
    REQUIRE(eng_tok_load_spm(&t, p, 0, err, sizeof err) == 0 || (fprintf(stderr, "%s\n", err), 0));
    CHECK(eng_tok_vocab_size(t) == 32000 && eng_tok_bos(t) == 1 && eng_tok_eos(t) == 2);
    snprintf(p, sizeof p, "%s/data/tokenizers/mixtral_spm/tests.jsonl", sh);
    CHECK(run_vectors(t, p, "mixtral_spm (sentencepiece)", 1) == 9);
    eng_tok_free(t);
    snprintf(p, sizeof p, "%s/data/tokenizers/mixtral_spm/tokenizer.model", sh);
    REQUIRE(eng_tok_load_spm(&t, p, ENG_SPM_PREFIX_FIRST, err, sizeof err) == 0);
    snprintf(p, sizeof p, "%s/data/tokenizers/mixtral_spm/tests_hf_tokenizer_json.jsonl", sh);
    CHECK(run_vectors(t, p, "mixtral_spm (HF tokenizer.json semantics)", 0) == 4);
    eng_tok_free(t);
  }
  snprintf(p, sizeof p, "%s/data/tokenizers/olmoe_gpt_neox_bpe/ggml-vocab-mpt.gguf", sh);
  if (access(p, R_OK) == 0) {
    rc = eng_tok_load_gguf(&t, p, err, sizeof err);
    CHECKF(rc == 0, "%s", err);
    if (rc == 0) {
      CHECK(eng_tok_vocab_size(t) == 50432);
      snprintf(p, sizeof p, "%s/data/tokenizers/olmoe_gpt_neox_bpe/tests.jsonl", sh);
      CHECK(run_vectors(t, p, "ggml-vocab-mpt.gguf (gpt2)", 1) == 50);
      eng_tok_free(t);
    }
  }
  /* a GGUF written by convert embeds the model's tokenizer */
  char model[4096], gguf[4096], tj[4200], tc[4200];
  tst_path(model, sizeof model, "MOESCOPE_SRC", "models/tiny-mixtral");
  snprintf(gguf, sizeof gguf, "%s/tok_tiny_%d.gguf", tst_tmp(), (int)getpid());
  tst_out o;
  if (access(tst_bin(), X_OK) == 0 || strchr(tst_bin(), '/') == NULL) {
    int st = tst_sh(&o, "'%s' convert --model '%s' --type q8_0 -o '%s'", tst_bin(), model, gguf);
    CHECKF(st == 0, "convert: %s", o.err);
    eng_tokenizer *a = NULL, *b = NULL;
    snprintf(tj, sizeof tj, "%s/tokenizer.json", model);
    snprintf(tc, sizeof tc, "%s/tokenizer_config.json", model);
    REQUIRE(eng_tok_load(&a, tj, tc, err, sizeof err) == 0);
    rc = eng_tok_load_gguf(&b, gguf, err, sizeof err);
    CHECKF(rc == 0, "%s", err);
    if (rc == 0) {
      CHECK(eng_tok_bos(a) == eng_tok_bos(b) && eng_tok_eos(a) == eng_tok_eos(b));
      const char *texts[] = {"The village sat by the river.", "  two  spaces\tand tabs\n\nnew lines",
                             "caf\xc3\xa9 na\xc3\xafve 12345 <|endoftext|> after", "def f(x):\n    return x**2 # code", ""};
      for (int i = 0; i < 5; i++) encode_same(a, b, texts[i]);
      eng_tok_free(b);
    }
    eng_tok_free(a);
    remove(gguf);
  }
  return tst_done();
}
