/* eng_gguf_tok.c — the tokenizer embedded in a GGUF file (contract: eng_tok_load_gguf in
 * eng_tokenizer.h): tokenizer.ggml.model "gpt2" (tokens in GPT-2 byte-unicode form, merges
 * "a b" by rank, token_type 3/4 split out first, tokenizer.ggml.pre choosing the split
 * regex) or "llama" (SentencePiece BPE: tokens with U+2581, scores, token_type, byte
 * fallback through the <0xXX> tokens, add_space_prefix default true; control tokens are not
 * matched in text, as llama.cpp without parse_special). No Unicode normalizer: GGUF has no
 * key for one and llama.cpp does not normalise, so a GGUF converted from a tokenizer.json with
 * NFC encodes non-NFC text differently from that json (identically for NFC text).
 * Also eng_tok_load_model: the tokenizer of a model folder or GGUF file (CLI --model). */
#include "engine/eng_util.h"
#include "engine/eng_gguf.h"
#include "engine/eng_tokenizer.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define GPT2_RE "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define QWEN2_RE "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*" \
                 "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define LLAMA3_RE "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*" \
                  "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

int eng_tok_load_gguf(eng_tokenizer **out, const char *path, char *err, size_t errlen) {
  *out = NULL;
  eng_gguf g;
  if (eng_gguf_open(&g, path, err, errlen)) return -1;
  int rc = -1;
  size_t ml = 0, pl = 0;
  const char *model = eng_gguf_get_str(&g, "tokenizer.ggml.model", &ml);
  const char *pre = eng_gguf_get_str(&g, "tokenizer.ggml.pre", &pl);
  const eng_gguf_kv *toks = eng_gguf_find(&g, "tokenizer.ggml.tokens");
  const eng_gguf_kv *types = eng_gguf_find(&g, "tokenizer.ggml.token_type");
  const eng_gguf_kv *scores = eng_gguf_find(&g, "tokenizer.ggml.scores");
  const eng_gguf_kv *merges = eng_gguf_find(&g, "tokenizer.ggml.merges");
  const char **tok = NULL, **mer = NULL;
  size_t *tl = NULL, *mlen = NULL;
  int *ty = NULL;
  float *sc = NULL;
  int spm = model && ml == 5 && !memcmp(model, "llama", 5), bpe = model && ml == 4 && !memcmp(model, "gpt2", 4);
  int none = model && ((ml == 4 && !memcmp(model, "none", 4)) || (ml == 8 && !memcmp(model, "no_vocab", 8)));
  if (!model || none) { /* llama.cpp's spelling of "no vocabulary" is model "none" (or "no_vocab") */
    eng_errf(err, errlen, "%s: %s (no embedded tokenizer)", path, model ? "tokenizer.ggml.model is 'none'" : "no tokenizer.ggml.model");
    rc = -2;
    goto done;
  }
  if (!spm && !bpe) { eng_errf(err, errlen, "%s: tokenizer.ggml.model '%.*s' is not supported (gpt2, llama)", path, (int)ml, model); goto done; }
  if (!toks || toks->type != GGUF_T_ARRAY || toks->arr_type != GGUF_T_STRING || toks->n == 0 || toks->n >= (1u << 30)) {
    eng_errf(err, errlen, "%s: tokenizer.ggml.tokens missing or not a string array", path);
    goto done;
  }
  int n = (int)toks->n;
  if (types && (types->type != GGUF_T_ARRAY || types->n != toks->n || types->arr_type == GGUF_T_STRING)) {
    eng_errf(err, errlen, "%s: tokenizer.ggml.token_type does not match the tokens", path);
    goto done;
  }
  if (scores && (scores->type != GGUF_T_ARRAY || scores->n != toks->n || scores->arr_type == GGUF_T_STRING)) {
    eng_errf(err, errlen, "%s: tokenizer.ggml.scores does not match the tokens", path);
    goto done;
  }
  if (bpe && (!merges || merges->type != GGUF_T_ARRAY || merges->arr_type != GGUF_T_STRING)) {
    eng_errf(err, errlen, "%s: gpt2 tokenizer without tokenizer.ggml.merges", path);
    goto done;
  }
  if (spm && !scores) { eng_errf(err, errlen, "%s: llama tokenizer without tokenizer.ggml.scores", path); goto done; }
  tok = malloc(sizeof *tok * (size_t)n);
  tl = malloc(sizeof *tl * (size_t)n);
  ty = malloc(sizeof *ty * (size_t)n);
  sc = malloc(sizeof *sc * (size_t)n);
  if (!tok || !tl || !ty || !sc) { eng_errf(err, errlen, "%s: out of memory", path); goto done; }
  for (int i = 0; i < n; i++) {
    tok[i] = eng_gguf_arr_str(toks, (uint64_t)i, &tl[i]);
    ty[i] = types ? (int)eng_gguf_arr_int(types, (uint64_t)i) : 1;
    if (spm && ty[i] == 3) ty[i] = 7; /* control: inert in text */
    sc[i] = scores ? (float)eng_gguf_arr_float(scores, (uint64_t)i) : 0;
  }
  int nm = 0;
  if (bpe) {
    if (merges->n >= (1u << 30)) { eng_errf(err, errlen, "%s: absurd merge count", path); goto done; }
    nm = (int)merges->n;
    mer = malloc(sizeof *mer * (size_t)(nm ? nm : 1));
    mlen = malloc(sizeof *mlen * (size_t)(nm ? nm : 1));
    if (!mer || !mlen) { eng_errf(err, errlen, "%s: out of memory", path); goto done; }
    for (int i = 0; i < nm; i++) mer[i] = eng_gguf_arr_str(merges, (uint64_t)i, &mlen[i]);
  }
  const char *pattern = GPT2_RE;
  if (bpe && pre) {
    static const char *const gpt2ish[] = {"default", "gpt-2", "gpt2", "mpt", "olmo", "starcoder", "refact", "jais", NULL};
    int known = 0;
    for (int i = 0; gpt2ish[i]; i++) if (pl == strlen(gpt2ish[i]) && !memcmp(pre, gpt2ish[i], pl)) known = 1;
    if (!known && pl == 5 && !memcmp(pre, "qwen2", 5)) { pattern = QWEN2_RE; known = 1; }
    if (!known && ((pl == 9 && !memcmp(pre, "llama-bpe", 9)) || (pl == 6 && !memcmp(pre, "llama3", 6)))) { pattern = LLAMA3_RE; known = 1; }
    if (!known) { eng_errf(err, errlen, "%s: tokenizer.ggml.pre '%.*s' is not supported", path, (int)pl, pre); goto done; }
  }
  int64_t bos = -1, eos = -1, unk = -1, add_space = 1;
  eng_gguf_get_int(&g, "tokenizer.ggml.bos_token_id", &bos);
  eng_gguf_get_int(&g, "tokenizer.ggml.eos_token_id", &eos);
  eng_gguf_get_int(&g, "tokenizer.ggml.unknown_token_id", &unk);
  eng_gguf_get_int(&g, "tokenizer.ggml.add_space_prefix", &add_space);
  if (spm && unk < 0) for (int i = 0; i < n && unk < 0; i++) if (ty[i] == 2) unk = i;
  eng_tok_spec sp = {.kind = spm ? ENG_TOK_SPM : ENG_TOK_BYTE_BPE, .n = n, .tok = tok, .tok_len = tl, .type = ty,
                     .score = spm ? sc : NULL, .n_merges = nm, .merge = mer, .merge_len = mlen, .pattern = pattern,
                     .spm_prefix = spm && add_space ? ENG_SPM_PREFIX_ALWAYS : ENG_SPM_PREFIX_NONE, .byte_fallback = spm,
                     .bos = (int)(bos < n ? bos : -1), .eos = (int)(eos < n ? eos : -1), .unk = (int)(unk < n ? unk : -1)};
  rc = eng_tok_build(out, &sp, path, err, errlen);
done:
  free(tok); free(tl); free(ty); free(sc); free(mer); free(mlen);
  eng_gguf_close(&g);
  return rc;
}

/* folder/tokenizer.json with folder/tokenizer_config.json when that exists. */
static int load_json_in(eng_tokenizer **out, const char *dir, size_t dirlen, char *src, size_t srclen, char *err,
                        size_t errlen) {
  char tj[PATH_MAX], tc[PATH_MAX];
  snprintf(tj, sizeof tj, "%.*s/tokenizer.json", (int)dirlen, dir);
  snprintf(tc, sizeof tc, "%.*s/tokenizer_config.json", (int)dirlen, dir);
  if (src && srclen) snprintf(src, srclen, "%s", tj);
  return eng_tok_load(out, tj, access(tc, R_OK) == 0 ? tc : NULL, err, errlen) ? -1 : 0;
}

int eng_tok_load_model(eng_tokenizer **out, const char *model, char *src, size_t srclen, char *err, size_t errlen) {
  *out = NULL;
  if (src && srclen) src[0] = 0;
  size_t n = strlen(model);
  struct stat st;
  if (n > 5 && !strcasecmp(model + n - 5, ".gguf") && stat(model, &st) == 0 && S_ISREG(st.st_mode)) {
    char gerr[1024] = "";
    int rc = eng_tok_load_gguf(out, model, gerr, sizeof gerr);
    if (rc == 0) {
      if (src && srclen) snprintf(src, srclen, "%s (embedded)", model);
      return 0;
    }
    if (rc != -2) { eng_errf(err, errlen, "%s", gerr); return -1; }
    const char *slash = strrchr(model, '/'); /* no embedded vocabulary: tokenizer.json next to the file */
    if (load_json_in(out, slash ? model : ".", slash ? (size_t)(slash - model) : 1, src, srclen, err, errlen) == 0)
      return 0;
    char jerr[1024];
    snprintf(jerr, sizeof jerr, "%s", err ? err : "");
    eng_errf(err, errlen, "%s: no embedded tokenizer, and %s", model, jerr);
    return -1;
  }
  return load_json_in(out, model, n, src, srclen, err, errlen);
}
