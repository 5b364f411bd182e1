/* eng_gguf_tok.c — the tokenizer embedded in a GGUF file (contract: eng_tok_load_gguf in
 * eng_tokenizer.h): tokenizer.ggml.model "gpt2" (tokens in GPT-2 byte-unicode form, merges
 * "a b" by rank, token_type 3/4 split out first, 5 (unused, e.g. [PADn] fillers) inert) or
 * "llama" (SentencePiece BPE: tokens with U+2581, scores, token_type, byte fallback through
 * the <0xXX> tokens, add_space_prefix default true; control tokens are not matched in text, as
 * llama.cpp without parse_special).
 *
 * Byte-level split regexes: moescope.tokenizer.pattern (a string or a string array: the exact
 * regexes of the tokenizer.json, written by `moescope convert` when no pre name fits) wins;
 * else tokenizer.ggml.pre through pre_defs below: the regexes llama.cpp's llama-vocab.cpp uses
 * for each name, in their tokenizer.json spelling (llama.cpp rewrites some for its own regex
 * engine, e.g. (?i:'s|...) as '[sS]|...; PCRE2 takes the originals). A missing pre is
 * "default", llama.cpp's fallback list (not GPT-2's regex). ignore_merges follows the name as
 * in llama.cpp (llama-bpe group, tekken), overridden by moescope.tokenizer.ignore_merges.
 * tokenizer.ggml.add_space_prefix: SPM dummy prefix (default true); for gpt2 our extension =
 * HF ByteLevel add_prefix_space (llama.cpp ignores it for BPE), at the regex stage
 * moescope.tokenizer.prefix_stage (default 0). moescope.tokenizer.prepend_scheme "first":
 * the SPM prefix only when the text does not start with a space (HF Metaspace).
 * moescope.tokenizer.normalizer (NFC/NFD/NFKC/NFKD) is applied as tokenizer.json's
 * normalizer is; llama.cpp has no such key and does not normalise, so on non-normalised
 * text llama.cpp and the tokenizer.json can differ where we follow the json.
 * Also eng_tok_load_model: the tokenizer of a model folder or GGUF file (CLI --model). */
#include "engine/eng_util.h"
#include "engine/eng_gguf.h"
#include "engine/eng_gguf_write_int.h"
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
#define O200K_RE "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?" \
                 "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?" \
                 "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define TEKKEN_RE "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+" \
                  "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*" \
                  "|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
/* DeepSeek-V3: digits in threes, CJK + kana runs, then the main pattern (raw CR/LF as in its json) */
#define DSV3_CJK_RE "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+"
#define DSV3_RE "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+" \
                "| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"
#define CJK_HANGUL_RE "[\xe4\xb8\x80-\xe9\xbe\xa5\xe0\xa0\x80-\xe4\xb8\x80\xea\xb0\x80-\xed\x9f\xbf]+"
#define DSLLM_LETTERS_RE \
  "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+"
#define PORO_RE " ?[^(\\s|.,!?…。，、।۔،)]+"

/* names: NUL-separated, the first is the one `moescope convert` writes. */
typedef struct { const char *names; int ignore_merges, n; const char *re[6]; } pre_def;
static const pre_def pre_defs[] = {
  {"gpt-2\0gpt2\0mpt\0olmo\0phi-2\0jais\0trillion\0granite-docling\0exaone4\0jina-es\0jina-de\0gigachat\0"
   "jina-v2-es\0jina-v2-de\0a.x-4.0\0mellum\0jina-v1-en\0jina-v2-code\0roberta-bpe\0", 0, 1, {GPT2_RE}},
  {"qwen2\0deepseek-r1-qwen\0kormo\0stablelm2\0hunyuan\0megrez\0grok-2\0", 0, 1, {QWEN2_RE}},
  {"llama-bpe\0llama3\0llama-v3\0falcon3\0falcon-h1\0pixtral\0midm-2.0\0lfm2\0", 1, 1, {LLAMA3_RE}},
  {"dbrx\0smaug-bpe\0chatglm-bpe\0glm4\0", 0, 1, {LLAMA3_RE}},
  {"deepseek-v3\0hunyuan-dense\0", 0, 3, {"\\p{N}{1,3}", DSV3_CJK_RE, DSV3_RE}},
  {"deepseek-llm\0", 0, 6, {"[\r\n]", DSLLM_LETTERS_RE, "\\s?[!-/:-~！-／：-～‘-‟　-。]+", "\\s+$", CJK_HANGUL_RE, "\\p{N}+"}},
  {"deepseek-coder\0", 0, 5, {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", CJK_HANGUL_RE, "\\p{N}"}},
  {"starcoder\0refact\0command-r\0smollm\0codeshell\0exaone\0minerva-7b\0", 0, 2, {"\\p{N}", GPT2_RE}},
  {"falcon\0", 0, 3, {"[\\p{P}\\$\\+<=>\\^~\\|`]+", GPT2_RE, "[0-9][0-9][0-9]"}},
  {"gpt-4o\0llama4\0minimax-m2\0", 0, 1, {O200K_RE}},
  {"tekken\0", 1, 1, {TEKKEN_RE}},
  {"seed-coder\0", 0, 1, {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\r\n]+|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"}},
  {"poro-chat\0bloom\0gpt3-finnish\0", 0, 1, {PORO_RE}},
  {"viking\0", 0, 2, {PORO_RE, "\\p{N}"}},
  {"default\0", 0, 4, {"[\\p{P}\\$\\+<=>\\^~\\|]+", GPT2_RE, "\\p{N}+", "[0-9][0-9][0-9]"}},
};
#define N_PRE_DEFS (sizeof pre_defs / sizeof pre_defs[0])

int ggw_pre_regexes(const char *pre, size_t len, const char *const **re, int *ignore_merges) {
  for (size_t d = 0; d < N_PRE_DEFS; d++)
    for (const char *nm = pre_defs[d].names; *nm; nm += strlen(nm) + 1)
      if (strlen(nm) == len && !memcmp(nm, pre, len)) {
        *re = pre_defs[d].re;
        *ignore_merges = pre_defs[d].ignore_merges;
        return pre_defs[d].n;
      }
  return -1;
}

/* Next character of a regex with raw CR / LF / TAB read as their escapes ("\r" ...): *s
 * advances; returns the character (a raw one turned into 'r' / 'n' / 't' after a '\\'). */
static int re_next(const char **s, int *pending) {
  if (*pending) { int c = *pending; *pending = 0; return c; }
  int c = (unsigned char)*(*s)++;
  if (c == '\r' || c == '\n' || c == '\t') { *pending = c == '\r' ? 'r' : c == '\n' ? 'n' : 't'; return '\\'; }
  return c;
}
static int re_same(const char *a, const char *b) {
  int pa = 0, pb = 0;
  for (;;) {
    if (!*a && !pa) return !*b && !pb;
    if (!*b && !pb) return 0;
    if (re_next(&a, &pa) != re_next(&b, &pb)) return 0;
  }
}

const char *ggw_pre_name(const char *const *re, int n, int ignore_merges, int *im_ok) {
  const char *any = NULL;
  for (size_t d = 0; d < N_PRE_DEFS; d++) {
    if (pre_defs[d].n != n || !strcmp(pre_defs[d].names, "default")) continue;
    int same = 1;
    for (int i = 0; i < n && same; i++) same = re_same(re[i], pre_defs[d].re[i]);
    if (!same) continue;
    if (pre_defs[d].ignore_merges == (ignore_merges != 0)) { *im_ok = 1; return pre_defs[d].names; }
    if (!any) any = pre_defs[d].names;
  }
  *im_ok = 0;
  return any;
}

/* A GGUF string key as a NUL-terminated copy (NULL when absent or not a string). */
static char *gguf_strdup(const eng_gguf *g, const char *key) {
  size_t n = 0;
  const char *s = eng_gguf_get_str(g, key, &n);
  char *c = s ? malloc(n + 1) : NULL;
  if (c) { memcpy(c, s, n); c[n] = 0; }
  return c;
}

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
  const eng_gguf_kv *pat = eng_gguf_find(&g, GGW_TOK_PATTERN);
  const char **tok = NULL, **mer = NULL;
  const char *const *pats = NULL;
  char **own = NULL, *normname = NULL, *scheme = NULL;
  int npats = 0;
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
  int ignore_merges = 0;
  if (bpe && pat) { /* our exact regexes win over the pre name */
    int arr = pat->type == GGUF_T_ARRAY && pat->arr_type == GGUF_T_STRING && pat->n <= 64;
    if (!arr && pat->type != GGUF_T_STRING) { eng_errf(err, errlen, "%s: %s is not a string or string array", path, GGW_TOK_PATTERN); goto done; }
    npats = arr ? (int)pat->n : 1;
    if (!(own = calloc((size_t)npats + 1, sizeof *own))) { eng_errf(err, errlen, "%s: out of memory", path); goto done; }
    for (int i = 0; i < npats; i++) {
      size_t len = 0;
      const char *s = arr ? eng_gguf_arr_str(pat, (uint64_t)i, &len) : eng_gguf_get_str(&g, GGW_TOK_PATTERN, &len);
      if (!s || !(own[i] = malloc(len + 1))) { eng_errf(err, errlen, "%s: bad %s", path, GGW_TOK_PATTERN); goto done; }
      memcpy(own[i], s, len);
      own[i][len] = 0;
    }
    pats = (const char *const *)own;
  }
  if (bpe) { /* the name still gives ignore_merges (and the regexes when there is no pattern key) */
    const char *const *re = NULL;
    int k = pre ? ggw_pre_regexes(pre, pl, &re, &ignore_merges) : ggw_pre_regexes("default", 7, &re, &ignore_merges);
    if (k < 0 && !pats) { eng_errf(err, errlen, "%s: tokenizer.ggml.pre '%.*s' is not supported", path, (int)pl, pre); goto done; }
    if (k < 0) ignore_merges = 0;
    if (!pats) { pats = re; npats = k; }
    int64_t im = 0;
    if (eng_gguf_get_int(&g, GGW_TOK_IGNORE_MERGES, &im) == 0) ignore_merges = im != 0;
  }
  int64_t bos = -1, eos = -1, unk = -1, add_space = spm, stage = 0;
  eng_gguf_get_int(&g, "tokenizer.ggml.bos_token_id", &bos);
  eng_gguf_get_int(&g, "tokenizer.ggml.eos_token_id", &eos);
  eng_gguf_get_int(&g, "tokenizer.ggml.unknown_token_id", &unk);
  eng_gguf_get_int(&g, "tokenizer.ggml.add_space_prefix", &add_space);
  eng_gguf_get_int(&g, GGW_TOK_PREFIX_STAGE, &stage);
  if (spm && unk < 0) for (int i = 0; i < n && unk < 0; i++) if (ty[i] == 2) unk = i;
  int form = ENG_TOK_NORM_NONE;
  if ((normname = gguf_strdup(&g, GGW_TOK_NORMALIZER))) {
    for (int f = ENG_TOK_NORM_NFC; f <= ENG_TOK_NORM_NFKD && !form; f++) if (!strcmp(normname, eng_tok_norm_name(f))) form = f;
    if (!form && strcmp(normname, "none")) { eng_errf(err, errlen, "%s: %s '%s' is not supported (NFC, NFD, NFKC, NFKD)", path, GGW_TOK_NORMALIZER, normname); goto done; }
  }
  int prefix = spm && add_space ? ENG_SPM_PREFIX_ALWAYS : ENG_SPM_PREFIX_NONE;
  if (prefix && (scheme = gguf_strdup(&g, GGW_TOK_PREPEND_SCHEME)) && !strcmp(scheme, "first")) prefix = ENG_SPM_PREFIX_FIRST;
  eng_tok_spec sp = {.kind = spm ? ENG_TOK_SPM : ENG_TOK_BYTE_BPE, .n = n, .tok = tok, .tok_len = tl, .type = ty,
                     .score = spm ? sc : NULL, .n_merges = nm, .merge = mer, .merge_len = mlen,
                     .patterns = bpe ? pats : NULL, .n_patterns = npats, .add_prefix_space = bpe && add_space,
                     .prefix_stage = stage >= 0 && stage <= npats ? (int)stage : 0, .ignore_merges = bpe && ignore_merges,
                     .spm_prefix = prefix, .byte_fallback = spm,
                     .bos = (int)(bos < n ? bos : -1), .eos = (int)(eos < n ? eos : -1), .unk = (int)(unk < n ? unk : -1)};
  rc = eng_tok_build(out, &sp, path, err, errlen);
  if (rc == 0) eng_tok_set_norm(*out, form);
done:
  for (int i = 0; own && i < npats; i++) free(own[i]);
  free(own); free(normname); free(scheme);
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
