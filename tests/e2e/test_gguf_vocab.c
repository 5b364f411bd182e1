/* test_gguf_vocab.c — the vocabulary `moescope convert` embeds in a GGUF (tokenizer.ggml.* +
 * moescope.tokenizer.*), read back with eng_tok_load_gguf, must encode exactly as the
 * tokenizer.json it came from. Each tokenizer is put into a tiny model folder (`moescope synth
 * --vocab N`, N above the tokenizer's size so that [PADn] fillers are written) and converted:
 *  - committed fixtures (always): tests/fixtures/tokenizer (byte-level, its tokenizer_tests.json
 *    ids) and variants of it written here with other pre-tokenizers: Qwen2 / Llama-3 (with and
 *    without ignore_merges) / DeepSeek-V3 split regexes (each must be written as its llama.cpp
 *    tokenizer.ggml.pre name, without moescope.tokenizer.pattern), an unknown regex chain with
 *    ByteLevel add_prefix_space and NFKC (pre "default" + the exact regexes in
 *    moescope.tokenizer.pattern, add_space_prefix, prefix_stage), and ByteLevel without regex;
 *    tests/fixtures/tokenizer_nfc (NFC: its README's HF ids, decomposed input); tests/fixtures/
 *    tokenizer_spm (SentencePiece-style: prepend_scheme first/never, Sequence[NFC]);
 *  - $MOESCOPE_SHARED/data/tokenizers (skipped with a message when absent): every tokenizer
 *    with a tokenizer.json and tests.jsonl (olmoe_gpt_neox_bpe), and qwen2_bpe, whose
 *    tokenizer.json is rebuilt here from vocab.json + merges.txt + tokenizer_config.json the way
 *    HF's Qwen2TokenizerFast is (NFC, Split(regex) + ByteLevel without regex): every vector's
 *    ids exactly, from the json and from the GGUF, and pre "gpt-2" / "qwen2".
 * Every byte-level GGUF: the fillers are token_type 5 (UNUSED), a filler's text is not matched
 * as that token (same ids as the json, which has no such token) but the id still decodes.
 * Needs the moescope binary ($MOESCOPE_BIN); skips (77) without it. MOESCOPE_KEEP_TMP=1 keeps the
 * model folders and GGUFs (m<N>/, m<N>.gguf under $MOESCOPE_TMP/gguf_vocab_<pid>) for a look with
 * other tools (e.g. llama.cpp's tokenizer). */
#include <cjson/cJSON.h>
#include <sys/stat.h>

#include "engine/eng_gguf.h"
#include "engine/eng_tokenizer.h"
#include "tests/tst.h"
#include "tests/util/tst_files.h"
#include "tests/util/tst_run.h"

#define QWEN2_RE "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*" \
                 "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define LLAMA3_RE "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*" \
                  "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define DSV3_CJK_RE "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+"
#define DSV3_RE "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+" \
                "| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"

static char tmp[2048];
static int seq;

static cJSON *load_json(const char *path) {
  char *b = tst_slurp(path, NULL);
  cJSON *j = b ? cJSON_Parse(b) : NULL;
  free(b);
  return j;
}
static void write_json(const cJSON *j, const char *path) {
  char *s = cJSON_PrintUnformatted(j);
  FILE *f = fopen(path, "wb");
  REQUIRE(s && f && fwrite(s, 1, strlen(s), f) == strlen(s));
  fclose(f);
  free(s);
}

/* A tiny model folder with vocab_size `vocab` holding tokenizer.json `tj` (a cJSON written
 * there) and tokenizer_config.json `tc` (copied; synth's own is removed when NULL), converted
 * to GGUF; returns the GGUF path in gguf and the tokenizer.json path in json. */
static void convert_with(const cJSON *tj, const char *tc, int vocab, char *json, size_t jn, char *gguf, size_t gn) {
  char dir[2200], p[2400];
  tst_out o;
  snprintf(dir, sizeof dir, "%s/m%d", tmp, ++seq);
  int st = tst_sh(&o, "'%s' synth -o '%s' --vocab %d --layers 1 --experts 2 --top-k 1 --hidden 16 --intermediate 16 "
                  "--heads 2 --kv-heads 1 --max-pos 64", tst_bin(), dir, vocab);
  REQUIRE(st == 0 || (fprintf(stderr, "synth: %s\n", o.err), 0));
  snprintf(json, jn, "%s/tokenizer.json", dir);
  write_json(tj, json);
  snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
  remove(p);
  if (tc) REQUIRE(tst_sh(&o, "cp '%s' '%s'", tc, p) == 0);
  snprintf(gguf, gn, "%s/m%d.gguf", tmp, seq);
  st = tst_sh(&o, "'%s' convert --model '%s' --to gguf -o '%s'", tst_bin(), dir, gguf);
  REQUIRE(st == 0 || (fprintf(stderr, "convert: %s\n", o.err), 0));
}

static int encode(const eng_tokenizer *t, const char *text, size_t len, int **ids, size_t *n, const char *what) {
  char err[512] = "";
  int rc = eng_tok_encode(t, text, len, ids, n, err, sizeof err);
  CHECKF(rc == 0, "%s: %s", what, err);
  return rc;
}

/* json and gguf tokenizers give the same ids for text; returns 1 when they do. */
static int same_ids(const eng_tokenizer *tj, const eng_tokenizer *tg, const char *text, const char *what) {
  int *a = NULL, *b = NULL;
  size_t na = 0, nb = 0, len = strlen(text);
  int ok = encode(tj, text, len, &a, &na, what) == 0 && encode(tg, text, len, &b, &nb, what) == 0 && na == nb &&
           !memcmp(a, b, na * sizeof *a);
  CHECKF(ok, "%s: \"%.50s\" encodes differently from the GGUF (%zu vs %zu ids)", what, text, na, nb);
  free(a);
  free(b);
  return ok;
}

/* t encodes text to want[0..nw) exactly. */
static int ids_are(const eng_tokenizer *t, const char *text, size_t len, const int *want, size_t nw) {
  int *ids = NULL;
  size_t n = 0;
  if (eng_tok_encode(t, text, len, &ids, &n, NULL, 0)) return 0;
  int ok = n == nw && !memcmp(ids, want, nw * sizeof *want);
  free(ids);
  return ok;
}

/* Every line of a tests.jsonl ({"text", "ids", "bos"}) against both tokenizers; counts. */
static int run_vectors(const eng_tokenizer *tj, const eng_tokenizer *tg, const char *jsonl, const char *name) {
  FILE *f = fopen(jsonl, "rb");
  REQUIRE(f);
  char *line = NULL;
  size_t cap = 0;
  int nvec = 0, okj = 0, okg = 0;
  while (getline(&line, &cap, f) > 0) {
    cJSON *o = cJSON_Parse(line);
    if (!o) continue;
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(o, "text"), *want = cJSON_GetObjectItemCaseSensitive(o, "ids");
    REQUIRE(cJSON_IsString(text) && cJSON_IsArray(want));
    int w[4096], nw = 0;
    const cJSON *e = want->child;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "bos")) && e) e = e->next; /* the encoder adds no BOS */
    for (; e && nw < 4096; e = e->next) w[nw++] = e->valueint;
    size_t len = strlen(text->valuestring);
    int a = ids_are(tj, text->valuestring, len, w, (size_t)nw), b = ids_are(tg, text->valuestring, len, w, (size_t)nw);
    CHECKF(a, "%s vector %d (tokenizer.json): ids differ for \"%.50s\"", name, nvec, text->valuestring);
    CHECKF(b, "%s vector %d (GGUF): ids differ for \"%.50s\"", name, nvec, text->valuestring);
    okj += a;
    okg += b;
    cJSON_Delete(o);
    nvec++;
  }
  free(line);
  fclose(f);
  printf("%s: %d vectors: tokenizer.json %d exact, GGUF %d exact\n", name, nvec, okj, okg);
  return nvec;
}

static const char *gguf_str(const eng_gguf *g, const char *key, char *buf, size_t cap) {
  size_t n = 0;
  const char *s = eng_gguf_get_str(g, key, &n);
  if (!s) return NULL;
  snprintf(buf, cap, "%.*s", (int)n, s);
  return buf;
}

/* What the GGUF says about its tokenizer. */
typedef struct {
  char pre[64], norm[16], scheme[16];
  int has_pattern, n_pattern, add_space, prefix_stage, ignore_merges; /* -1: key absent */
  char pattern0[512];
} gguf_tok_keys;

static void read_keys(const char *gguf, gguf_tok_keys *k, int filler, int *filler_type) {
  eng_gguf g;
  char err[512];
  REQUIRE(eng_gguf_open(&g, gguf, err, sizeof err) == 0 || (fprintf(stderr, "%s\n", err), 0));
  memset(k, 0, sizeof *k);
  if (!gguf_str(&g, "tokenizer.ggml.pre", k->pre, sizeof k->pre)) k->pre[0] = 0;
  if (!gguf_str(&g, "moescope.tokenizer.normalizer", k->norm, sizeof k->norm)) k->norm[0] = 0;
  if (!gguf_str(&g, "moescope.tokenizer.prepend_scheme", k->scheme, sizeof k->scheme)) k->scheme[0] = 0;
  const eng_gguf_kv *p = eng_gguf_find(&g, "moescope.tokenizer.pattern");
  k->has_pattern = p != NULL;
  k->n_pattern = !p ? 0 : p->type == GGUF_T_ARRAY ? (int)p->n : 1;
  if (p && p->type == GGUF_T_STRING) gguf_str(&g, "moescope.tokenizer.pattern", k->pattern0, sizeof k->pattern0);
  else if (p && p->n > 0) {
    size_t n = 0;
    const char *s = eng_gguf_arr_str(p, 0, &n);
    snprintf(k->pattern0, sizeof k->pattern0, "%.*s", (int)n, s ? s : "");
  }
  int64_t v;
  k->add_space = eng_gguf_get_int(&g, "tokenizer.ggml.add_space_prefix", &v) == 0 ? (int)v : -1;
  k->prefix_stage = eng_gguf_get_int(&g, "moescope.tokenizer.prefix_stage", &v) == 0 ? (int)v : -1;
  k->ignore_merges = eng_gguf_get_int(&g, "moescope.tokenizer.ignore_merges", &v) == 0 ? (int)v : -1;
  if (filler_type) {
    const eng_gguf_kv *ty = eng_gguf_find(&g, "tokenizer.ggml.token_type");
    *filler_type = ty && (uint64_t)filler < ty->n ? (int)eng_gguf_arr_int(ty, (uint64_t)filler) : -1;
  }
  eng_gguf_close(&g);
}

/* A [PADn] filler (id n, none in the json): UNUSED in the GGUF, its text not matched as the
 * token (the GGUF encodes it as the json does), the id still decodes to the text. */
static void check_filler(const eng_tokenizer *tj, const eng_tokenizer *tg, const char *gguf, int id, const char *what) {
  gguf_tok_keys k;
  int type = -1;
  read_keys(gguf, &k, id, &type);
  CHECKF(type == 5, "%s: filler %d has token_type %d, want 5 (UNUSED)", what, id, type);
  char text[64];
  snprintf(text, sizeof text, "x [PAD%d] y[PAD%d]", id, id);
  same_ids(tj, tg, text, what);
  int *ids = NULL;
  size_t n = 0;
  if (encode(tg, text, strlen(text), &ids, &n, what) == 0)
    for (size_t i = 0; i < n; i++) CHECKF(ids[i] != id, "%s: \"%s\" produced the filler id %d", what, text, id);
  free(ids);
  char *back = NULL;
  size_t blen = 0;
  snprintf(text, sizeof text, "[PAD%d]", id);
  CHECKF(eng_tok_decode(tg, &id, 1, &back, &blen) == 0 && back && blen == strlen(text) && !memcmp(back, text, blen),
         "%s: filler %d does not decode to %s", what, id, text);
  free(back);
  CHECK(eng_tok_vocab_size(tg) > id);
}

static eng_tokenizer *load_both(const char *json, const char *cfg, const char *gguf, eng_tokenizer **tg) {
  eng_tokenizer *tj = NULL;
  char err[1024] = "";
  REQUIRE(eng_tok_load(&tj, json, cfg, err, sizeof err) == 0 || (fprintf(stderr, "%s\n", err), 0));
  int rc = eng_tok_load_gguf(tg, gguf, err, sizeof err);
  REQUIRE(rc == 0 || (fprintf(stderr, "%s: %s\n", gguf, err), 0));
  return tj;
}

static const char *const texts[] = {
    "Hello world! Don't STOP, it's 2024: 12345 and 1234567890.",
    "  two  spaces\tand tabs\n\nnew lines\r\n  trailing   ",
    "caf\xc3\xa9 cafe\xcc\x81 na\xc3\xafve \xef\xac\x81 \xe2\x84\xab \xc2\xb2",
    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9\xe3\x83\x88" "abc 123",
    "def f(x):\n    return x**2  # code <|endoftext|> after",
    "'s 'S 'LL x'd ?!...??? \xe2\x80\x94 \xf0\x9f\x98\x80\xf0\x9f\x91\x8d",
    "",
    " leading space",
};
#define N_TEXTS (sizeof texts / sizeof texts[0])

/* The fixture tokenizer.json with another pre_tokenizer (JSON text) / normalizer / ignore_merges. */
static cJSON *variant(const char *src, const char *pre, const char *norm, int ignore_merges) {
  cJSON *j = load_json(src);
  REQUIRE(j);
  if (pre) {
    cJSON *p = cJSON_Parse(pre);
    REQUIRE(p);
    cJSON_ReplaceItemInObjectCaseSensitive(j, "pre_tokenizer", p);
  }
  if (norm) {
    cJSON *n = cJSON_Parse(norm);
    REQUIRE(n);
    cJSON_ReplaceItemInObjectCaseSensitive(j, "normalizer", n);
  }
  if (ignore_merges >= 0) {
    cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "model");
    cJSON_ReplaceItemInObjectCaseSensitive(m, "ignore_merges", cJSON_CreateBool(ignore_merges));
  }
  return j;
}

/* A Split(regex) JSON node */
static void split_node(char *out, size_t cap, const char *re) {
  cJSON *s = cJSON_CreateObject(), *p = cJSON_CreateObject();
  cJSON_AddStringToObject(s, "type", "Split");
  cJSON_AddStringToObject(p, "Regex", re);
  cJSON_AddItemToObject(s, "pattern", p);
  cJSON_AddStringToObject(s, "behavior", "Isolated");
  cJSON_AddFalseToObject(s, "invert");
  char *t = cJSON_PrintUnformatted(s);
  snprintf(out, cap, "%s", t);
  free(t);
  cJSON_Delete(s);
}

typedef struct {
  const char *name, *pre_json, *norm_json;
  int ignore_merges;                  /* -1: as the fixture (false) */
  const char *want_pre, *want_norm;   /* want_norm "": no key */
  int want_npat;                      /* -1: no moescope.tokenizer.pattern */
  int want_add_space, want_stage, want_im;
} bl_case;

static void byte_level_fixtures(void) {
  char src[4096], cfg[4096], tests[4096], json[4096], gguf[4096];
  tst_path(src, sizeof src, "MOESCOPE_SRC", "tests/fixtures/tokenizer/tokenizer.json");
  tst_path(cfg, sizeof cfg, "MOESCOPE_SRC", "tests/fixtures/tokenizer/tokenizer_config.json");
  tst_path(tests, sizeof tests, "MOESCOPE_SRC", "tests/fixtures/tokenizer/tokenizer_tests.json");
  char q[1024], l3[1024], d1[256], d2[256], d3[1024], c1[256], *bufs[8];
  split_node(q, sizeof q, QWEN2_RE);
  split_node(l3, sizeof l3, LLAMA3_RE);
  split_node(d1, sizeof d1, "\\p{N}{1,3}");
  split_node(d2, sizeof d2, DSV3_CJK_RE);
  split_node(d3, sizeof d3, DSV3_RE);
  split_node(c1, sizeof c1, "\\p{N}{1,2}");
  static const char bl_off[] = "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":false,\"use_regex\":false}";
  for (int i = 0; i < 8; i++) REQUIRE((bufs[i] = malloc(4096)));
  snprintf(bufs[0], 4096, "{\"type\":\"Sequence\",\"pretokenizers\":[%s,%s]}", q, bl_off);
  snprintf(bufs[1], 4096, "{\"type\":\"Sequence\",\"pretokenizers\":[%s,%s]}", l3, bl_off);
  snprintf(bufs[2], 4096, "{\"type\":\"Sequence\",\"pretokenizers\":[%s,%s,%s,%s]}", d1, d2, d3, bl_off);
  snprintf(bufs[3], 4096, "{\"type\":\"Sequence\",\"pretokenizers\":[%s,"
           "{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":true}]}", c1);
  snprintf(bufs[4], 4096, "%s", bl_off);
  const bl_case cases[] = {
    {"fixture as is (ByteLevel)", NULL, NULL, -1, "gpt-2", "", -1, -1, -1, -1},
    {"Qwen2 Split + NFC", bufs[0], "{\"type\":\"NFC\"}", -1, "qwen2", "NFC", -1, -1, -1, -1},
    {"Llama-3 Split, ignore_merges", bufs[1], NULL, 1, "llama-bpe", "", -1, -1, -1, -1},
    {"Llama-3 Split, merges", bufs[1], NULL, 0, "dbrx", "", -1, -1, -1, -1},
    {"DeepSeek-V3 Splits", bufs[2], NULL, -1, "deepseek-v3", "", -1, -1, -1, -1},
    {"unknown Split + ByteLevel(add_prefix_space) + NFKC", bufs[3],
     "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFKC\"}]}", -1, "default", "NFKC", 2, 1, 1, -1},
    {"ByteLevel without regex, ignore_merges", bufs[4], NULL, 1, "default", "", 0, -1, -1, 1},
  };
  eng_tokenizer *base = NULL;
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    const bl_case *k = &cases[c];
    cJSON *j = variant(src, k->pre_json, k->norm_json, k->ignore_merges);
    convert_with(j, cfg, 8200, json, sizeof json, gguf, sizeof gguf);
    cJSON_Delete(j);
    gguf_tok_keys g;
    read_keys(gguf, &g, 0, NULL);
    CHECKF(!strcmp(g.pre, k->want_pre), "%s: tokenizer.ggml.pre '%s', want '%s'", k->name, g.pre, k->want_pre);
    CHECKF(!strcmp(g.norm, k->want_norm), "%s: normalizer key '%s', want '%s'", k->name, g.norm, k->want_norm);
    CHECKF(k->want_npat < 0 ? !g.has_pattern : g.has_pattern && g.n_pattern == k->want_npat,
           "%s: moescope.tokenizer.pattern present %d with %d regexes, want %d", k->name, g.has_pattern, g.n_pattern,
           k->want_npat);
    CHECKF(g.add_space == k->want_add_space && g.prefix_stage == k->want_stage && g.ignore_merges == k->want_im,
           "%s: add_space_prefix %d prefix_stage %d ignore_merges %d", k->name, g.add_space, g.prefix_stage,
           g.ignore_merges);
    if (k->want_npat == 2) CHECKF(!strcmp(g.pattern0, "\\p{N}{1,2}"), "%s: pattern[0] '%s'", k->name, g.pattern0);
    eng_tokenizer *tg = NULL, *tj = load_both(json, cfg, gguf, &tg);
    for (size_t i = 0; i < N_TEXTS; i++) same_ids(tj, tg, texts[i], k->name);
    check_filler(tj, tg, gguf, 8195, k->name);
    if (c == 0) { /* the fixture's own vectors (GPT-2 regex, HF ids) */
      cJSON *t = load_json(tests);
      REQUIRE(t);
      int nv = 0, okg = 0;
      for (const cJSON *e = cJSON_GetObjectItemCaseSensitive(t, "cases")->child; e; e = e->next, nv++) {
        const char *text = cJSON_GetObjectItemCaseSensitive(e, "text")->valuestring;
        int w[1024], nw = 0;
        for (const cJSON *x = cJSON_GetObjectItemCaseSensitive(e, "ids")->child; x && nw < 1024; x = x->next) w[nw++] = x->valueint;
        int ok = ids_are(tg, text, strlen(text), w, (size_t)nw);
        CHECKF(ok, "fixture vector %d (GGUF): ids differ for \"%.50s\"", nv, text);
        okg += ok;
      }
      printf("tests/fixtures/tokenizer: %d vectors, GGUF %d exact\n", nv, okg);
      CHECK(nv >= 10);
      cJSON_Delete(t);
      base = tg;
      eng_tok_free(tj);
      continue;
    }
    /* the pre-tokenizer really changed the ids (else the comparisons above prove nothing) */
    int differs = 0;
    for (size_t i = 0; i < N_TEXTS && base; i++) {
      int *a = NULL, *b = NULL;
      size_t na = 0, nb = 0;
      if (!eng_tok_encode(base, texts[i], strlen(texts[i]), &a, &na, NULL, 0) &&
          !eng_tok_encode(tg, texts[i], strlen(texts[i]), &b, &nb, NULL, 0))
        differs |= na != nb || memcmp(a, b, na * sizeof *a);
      free(a);
      free(b);
    }
    CHECKF(differs, "%s: encodes every text as the plain fixture does", k->name);
    eng_tok_free(tj);
    eng_tok_free(tg);
  }
  eng_tok_free(base);
  for (int i = 0; i < 8; i++) free(bufs[i]);
}

static void nfc_fixture(void) {
  char src[4096], json[4096], gguf[4096];
  tst_path(src, sizeof src, "MOESCOPE_SRC", "tests/fixtures/tokenizer_nfc/tokenizer.json");
  cJSON *j = load_json(src);
  REQUIRE(j);
  convert_with(j, NULL, 272, json, sizeof json, gguf, sizeof gguf);
  cJSON_Delete(j);
  gguf_tok_keys g;
  read_keys(gguf, &g, 0, NULL);
  CHECKF(!strcmp(g.pre, "gpt-2") && !strcmp(g.norm, "NFC") && !g.has_pattern, "nfc: pre '%s' normalizer '%s'", g.pre, g.norm);
  eng_tokenizer *tg = NULL, *tj = load_both(json, NULL, gguf, &tg);
  CHECK(eng_tok_norm(tg) == ENG_TOK_NORM_NFC);
  static const int w259[] = {259}, w262[] = {259, 262}, w261[] = {261}, wa[] = {195, 133}, wx[] = {101, 263, 204, 129};
  CHECK(ids_are(tg, "cafe\xcc\x81", 6, w259, 1));                     /* README: HF ids */
  CHECK(ids_are(tg, "cafe\xcc\x81 cafe\xcc\x81", 13, w262, 2));
  CHECK(ids_are(tg, "\xe1\x84\x92\xe1\x85\xa1\xe1\x86\xab", 9, w261, 1)); /* Hangul jamo -> 한 */
  CHECK(ids_are(tg, "\xe2\x84\xab", 3, wa, 2));                        /* Angstrom sign -> Å */
  CHECK(ids_are(tg, "e<|x|>\xcc\x81", 8, wx, 4));                       /* no composition across an added token */
  for (size_t i = 0; i < N_TEXTS; i++) same_ids(tj, tg, texts[i], "nfc fixture");
  check_filler(tj, tg, gguf, 270, "nfc fixture");
  eng_tok_free(tj);
  eng_tok_free(tg);
}

static void spm_fixture(void) {
  char src[4096], json[4096], gguf[4096];
  tst_path(src, sizeof src, "MOESCOPE_SRC", "tests/fixtures/tokenizer_spm/tokenizer.json");
  static const char *const spm_texts[] = {"ab", "ab c", "\xc3\xa9", " ab ab", "abc", "ab ab", "cab a", "a\xe2\x82\xac", "  a", ""};
  for (int v = 0; v < 3; v++) {
    cJSON *j = load_json(src);
    REQUIRE(j);
    if (v == 1) cJSON_ReplaceItemInObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "pre_tokenizer"), "prepend_scheme",
                                                       cJSON_CreateString("never"));
    if (v == 2) cJSON_ReplaceItemInObjectCaseSensitive(j, "normalizer", cJSON_Parse("{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"}]}"));
    convert_with(j, NULL, 272, json, sizeof json, gguf, sizeof gguf);
    cJSON_Delete(j);
    gguf_tok_keys g;
    int ft = -1;
    read_keys(gguf, &g, 268, &ft);
    const char *what = v == 0 ? "spm (prepend_scheme first)" : v == 1 ? "spm (never)" : "spm (Sequence[NFC])";
    CHECKF(g.add_space == (v != 1) && !strcmp(g.scheme, v == 1 ? "" : "first") && !strcmp(g.norm, v == 2 ? "NFC" : ""),
           "%s: add_space_prefix %d prepend_scheme '%s' normalizer '%s'", what, g.add_space, g.scheme, g.norm);
    CHECKF(ft == 5, "%s: filler token_type %d", what, ft);
    eng_tokenizer *tg = NULL, *tj = load_both(json, NULL, gguf, &tg);
    CHECK(eng_tok_kind(tg) == ENG_TOK_SPM);
    for (size_t i = 0; i < sizeof spm_texts / sizeof *spm_texts; i++) same_ids(tj, tg, spm_texts[i], what);
    if (v == 0) {
      static const int w[] = {265, 265}; /* README: HF Metaspace "first": no extra ▁ before a leading space */
      CHECK(ids_are(tg, " ab ab", 6, w, 2));
    }
    if (v == 2) {
      static const int w[] = {259, 198, 172}; /* README: e + U+0301 -> NFC é -> ▁ <0xC3> <0xA9> */
      CHECK(ids_are(tg, "e\xcc\x81", 3, w, 3));
    }
    char text[32] = "[PAD268]";
    same_ids(tj, tg, text, what);
    eng_tok_free(tj);
    eng_tok_free(tg);
  }
}

/* Qwen2's tokenizer.json as HF's Qwen2TokenizerFast builds it from vocab.json + merges.txt. */
static cJSON *qwen2_json(const char *dir) {
  char p[4400];
  snprintf(p, sizeof p, "%s/vocab.json", dir);
  cJSON *vocab = load_json(p);
  snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
  cJSON *cfg = load_json(p);
  snprintf(p, sizeof p, "%s/merges.txt", dir);
  char *m = tst_slurp(p, NULL);
  REQUIRE(vocab && cfg && m);
  cJSON *j = cJSON_CreateObject(), *model = cJSON_CreateObject(), *merges = cJSON_CreateArray(), *added = cJSON_CreateArray();
  for (char *line = strtok(m, "\n"); line; line = strtok(NULL, "\n")) {
    size_t n = strlen(line);
    if (n && line[n - 1] == '\r') line[--n] = 0;
    if (!n || !strncmp(line, "#version", 8)) continue;
    cJSON_AddItemToArray(merges, cJSON_CreateString(line));
  }
  free(m);
  const cJSON *dec = cJSON_GetObjectItemCaseSensitive(cfg, "added_tokens_decoder");
  for (const cJSON *e = dec ? dec->child : NULL; e; e = e->next) {
    cJSON *a = cJSON_CreateObject();
    cJSON_AddNumberToObject(a, "id", atoi(e->string));
    cJSON_AddStringToObject(a, "content", cJSON_GetObjectItemCaseSensitive(e, "content")->valuestring);
    cJSON_AddBoolToObject(a, "special", cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "special")));
    cJSON_AddFalseToObject(a, "normalized");
    cJSON_AddItemToArray(added, a);
  }
  cJSON_Delete(cfg);
  cJSON_AddStringToObject(j, "version", "1.0");
  cJSON_AddItemToObject(j, "added_tokens", added);
  cJSON_AddItemToObject(j, "normalizer", cJSON_Parse("{\"type\":\"NFC\"}"));
  char split[1024], pre[2048];
  split_node(split, sizeof split, QWEN2_RE);
  snprintf(pre, sizeof pre, "{\"type\":\"Sequence\",\"pretokenizers\":[%s,{\"type\":\"ByteLevel\",\"add_prefix_space\":false,"
           "\"trim_offsets\":false,\"use_regex\":false}]}", split);
  cJSON_AddItemToObject(j, "pre_tokenizer", cJSON_Parse(pre));
  cJSON_AddStringToObject(model, "type", "BPE");
  cJSON_AddFalseToObject(model, "byte_fallback");
  cJSON_AddFalseToObject(model, "ignore_merges");
  cJSON_AddItemToObject(model, "vocab", vocab);
  cJSON_AddItemToObject(model, "merges", merges);
  cJSON_AddItemToObject(j, "model", model);
  return j;
}

static void shared_tokenizers(const char *sh) {
  char p[4096], json[4096], gguf[4096], tests[4200];
  /* 1. every directory with a tokenizer.json and tests.jsonl */
  static const char *const dirs[] = {"olmoe_gpt_neox_bpe", "qwen2_bpe", "mixtral_spm"};
  int n_json = 0;
  for (size_t d = 0; d < sizeof dirs / sizeof *dirs; d++) {
    snprintf(p, sizeof p, "%s/data/tokenizers/%s/tokenizer.json", sh, dirs[d]);
    snprintf(tests, sizeof tests, "%s/data/tokenizers/%s/tests.jsonl", sh, dirs[d]);
    if (access(p, R_OK) || access(tests, R_OK)) continue;
    cJSON *j = load_json(p);
    REQUIRE(j);
    int maxid = 0;
    for (const cJSON *e = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "model"), "vocab")->child; e; e = e->next)
      if (e->valueint > maxid) maxid = e->valueint;
    for (const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "added_tokens")->child; a; a = a->next)
      if (cJSON_GetObjectItemCaseSensitive(a, "id")->valueint > maxid) maxid = cJSON_GetObjectItemCaseSensitive(a, "id")->valueint;
    int vocab = (maxid + 1 + 63) / 64 * 64 + 64; /* padded like model configs (50304 for OLMoE's 50280) */
    snprintf(p, sizeof p, "%s/data/tokenizers/%s/tokenizer_config.json", sh, dirs[d]);
    const char *cfg = access(p, R_OK) ? NULL : p;
    convert_with(j, cfg, vocab, json, sizeof json, gguf, sizeof gguf);
    cJSON_Delete(j);
    gguf_tok_keys g;
    read_keys(gguf, &g, 0, NULL);
    printf("%s: tokenizer.ggml.pre '%s', normalizer '%s', pattern key %d\n", dirs[d], g.pre, g.norm, g.has_pattern);
    if (!strcmp(dirs[d], "olmoe_gpt_neox_bpe"))
      CHECKF(!strcmp(g.pre, "gpt-2") && !strcmp(g.norm, "NFC") && !g.has_pattern, "olmoe: pre '%s' norm '%s'", g.pre, g.norm);
    eng_tokenizer *tg = NULL, *tj = load_both(json, cfg, gguf, &tg);
    CHECK(run_vectors(tj, tg, tests, dirs[d]) >= 1);
    check_filler(tj, tg, gguf, maxid + 20, dirs[d]);
    eng_tok_free(tj);
    eng_tok_free(tg);
    n_json++;
  }
  CHECKF(n_json >= 1, "no shared tokenizer with tokenizer.json + tests.jsonl");
  /* 2. Qwen2: tokenizer.json rebuilt from vocab.json + merges.txt */
  snprintf(p, sizeof p, "%s/data/tokenizers/qwen2_bpe", sh);
  snprintf(tests, sizeof tests, "%s/tests.jsonl", p);
  if (access(tests, R_OK)) { fprintf(stderr, "SKIP (qwen2 part): %s absent\n", tests); return; }
  cJSON *j = qwen2_json(p);
  char cfg[4200];
  snprintf(cfg, sizeof cfg, "%s/tokenizer_config.json", p);
  convert_with(j, cfg, 151936, json, sizeof json, gguf, sizeof gguf);
  cJSON_Delete(j);
  gguf_tok_keys g;
  read_keys(gguf, &g, 0, NULL);
  printf("qwen2_bpe (rebuilt tokenizer.json): tokenizer.ggml.pre '%s', normalizer '%s', pattern key %d\n", g.pre, g.norm,
         g.has_pattern);
  CHECKF(!strcmp(g.pre, "qwen2") && !strcmp(g.norm, "NFC") && !g.has_pattern, "qwen2: pre '%s' norm '%s'", g.pre, g.norm);
  eng_tokenizer *tg = NULL, *tj = load_both(json, cfg, gguf, &tg);
  CHECK(run_vectors(tj, tg, tests, "qwen2_bpe") == 50);
  CHECK(eng_tok_eos(tj) == 151645);
  check_filler(tj, tg, gguf, 151700, "qwen2_bpe");
  int *ids = NULL;
  size_t n = 0;
  same_ids(tj, tg, "<|im_start|>hi<|im_end|>", "qwen2 specials");
  CHECK(encode(tg, "<|im_start|>hi<|im_end|>", 24, &ids, &n, "qwen2 specials") == 0 && n >= 3 && ids[0] == 151644 &&
        ids[n - 1] == 151645);
  free(ids);
  eng_tok_free(tj);
  eng_tok_free(tg);
}

int main(void) {
  if (strchr(tst_bin(), '/') && access(tst_bin(), X_OK)) {
    fprintf(stderr, "SKIP: %s not built\n", tst_bin());
    return 77;
  }
  snprintf(tmp, sizeof tmp, "%s/gguf_vocab_%d", tst_tmp(), (int)getpid());
  REQUIRE(mkdir(tmp, 0755) == 0);
  byte_level_fixtures();
  nfc_fixture();
  spm_fixture();
  const char *sh = tst_shared();
  char p[4096];
  if (sh) snprintf(p, sizeof p, "%s/data/tokenizers", sh);
  if (!sh || access(p, R_OK)) fprintf(stderr, "SKIP (shared part): data/tokenizers not found (set MOESCOPE_SHARED to ../shared)\n");
  else shared_tokenizers(sh);
  tst_out o;
  if (getenv("MOESCOPE_KEEP_TMP")) printf("kept %s (MOESCOPE_KEEP_TMP)\n", tmp); /* for manual llama.cpp checks */
  else tst_sh(&o, "rm -rf '%s'", tmp);
  return tst_done();
}
