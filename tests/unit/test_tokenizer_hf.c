/* test_tokenizer_hf.c — eng_tokenizer on real tokenizers with vectors produced by Hugging
 * Face's own code ($MOESCOPE_SHARED/data/tokenizers, see its README): OLMoE/GPT-NeoX
 * (tokenizer.json with NFC normalizer and non-special added tokens for runs of spaces) and
 * Qwen2 (vocab.json + merges.txt, the Qwen2 split regex). Skips (77) without ../shared.
 * A vector with "bos": true expects the bos id first; the encoder never adds it. */
#include <cjson/cJSON.h>

#include "engine/eng_tokenizer.h"
#include "tests/tst.h"

#define QWEN2_PATTERN "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*" \
                      "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/* Runs every line of tests.jsonl; returns the number of vectors checked. */
static int run_vectors(const eng_tokenizer *t, const char *jsonl, const char *name) {
  FILE *f = fopen(jsonl, "rb");
  REQUIRE(f);
  char *line = NULL;
  size_t cap = 0;
  ssize_t got;
  int nvec = 0, nfail = 0;
  while ((got = getline(&line, &cap, f)) > 0) {
    cJSON *o = cJSON_Parse(line);
    if (!o) continue;
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(o, "text");
    const cJSON *want = cJSON_GetObjectItemCaseSensitive(o, "ids");
    int bos = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "bos"));
    REQUIRE(cJSON_IsString(text) && cJSON_IsArray(want));
    int *ids = NULL;
    size_t n = 0, len = strlen(text->valuestring);
    char err[512] = "";
    int rc = eng_tok_encode(t, text->valuestring, len, &ids, &n, err, sizeof err);
    CHECKF(rc == 0, "%s vector %d: %s", name, nvec, err);
    const cJSON *e = want->child;
    int same = rc == 0;
    if (same && bos) { /* expected ids start with BOS: compare it, then the rest */
      same = e && e->valueint == eng_tok_bos(t);
      if (e) e = e->next;
    }
    size_t i = 0;
    for (; same && e; e = e->next, i++) same = i < n && ids[i] == e->valueint;
    same = same && i == n;
    CHECKF(same, "%s vector %d: ids differ for \"%.60s\"", name, nvec, text->valuestring);
    nfail += !same;
    char *back = NULL;
    size_t blen = 0;
    if (rc == 0) {
      CHECK(eng_tok_decode(t, ids, n, &back, &blen) == 0);
      CHECKF(back && blen == len && memcmp(back, text->valuestring, len) == 0, "%s vector %d: round trip", name,
             nvec);
    }
    free(back);
    free(ids);
    cJSON_Delete(o);
    nvec++;
  }
  free(line);
  fclose(f);
  printf("%s: %d vectors, %d differ\n", name, nvec, nfail);
  return nvec;
}

int main(void) {
  tst_need_shared("data/tokenizers/olmoe_gpt_neox_bpe/tokenizer.json");
  char a[4096], b[4096], c[4096], err[1024] = "";
  eng_tokenizer *t = NULL;

  tst_path(a, sizeof a, "MOESCOPE_SHARED", "data/tokenizers/olmoe_gpt_neox_bpe/tokenizer.json");
  int rc = eng_tok_load(&t, a, NULL, err, sizeof err);
  CHECKF(rc == 0, "%s", err);
  if (rc == 0) {
    CHECK(eng_tok_vocab_size(t) == 50280);
    tst_path(b, sizeof b, "MOESCOPE_SHARED", "data/tokenizers/olmoe_gpt_neox_bpe/tests.jsonl");
    CHECK(run_vectors(t, b, "olmoe_gpt_neox_bpe") == 50);
    size_t len = 0;
    const char *p = eng_tok_piece(t, 50276, &len); /* added token: two spaces */
    CHECK(p && len == 2 && memcmp(p, "  ", 2) == 0);
    eng_tok_free(t);
  }

  tst_path(a, sizeof a, "MOESCOPE_SHARED", "data/tokenizers/qwen2_bpe/vocab.json");
  tst_path(b, sizeof b, "MOESCOPE_SHARED", "data/tokenizers/qwen2_bpe/merges.txt");
  tst_path(c, sizeof c, "MOESCOPE_SHARED", "data/tokenizers/qwen2_bpe/tokenizer_config.json");
  if (access(a, R_OK) == 0) {
    rc = eng_tok_load_vocab_merges(&t, a, b, c, QWEN2_PATTERN, err, sizeof err);
    CHECKF(rc == 0, "%s", err);
    if (rc == 0) {
      CHECK(eng_tok_vocab_size(t) == 151646);
      CHECK(eng_tok_bos(t) == -1);
      CHECK(eng_tok_eos(t) == 151645);
      tst_path(a, sizeof a, "MOESCOPE_SHARED", "data/tokenizers/qwen2_bpe/tests.jsonl");
      CHECK(run_vectors(t, a, "qwen2_bpe") == 50);
      int *ids = NULL;
      size_t n = 0;
      CHECK(eng_tok_encode(t, "<|im_start|>hi<|im_end|>", 24, &ids, &n, NULL, 0) == 0 && n >= 3 &&
            ids[0] == 151644 && ids[n - 1] == 151645);
      free(ids);
      eng_tok_free(t);
    }
    CHECK(eng_tok_load_vocab_merges(&t, c, "/nonexistent/merges.txt", NULL, NULL, err, sizeof err) == -1 &&
          strstr(err, "/nonexistent/merges.txt") && t == NULL);
  }
  return tst_done();
}
