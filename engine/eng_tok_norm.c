/* eng_tok_norm.c — Unicode normalizers of the tokenizers (contract: eng_tokenizer.h,
 * eng_tok_set_norm / eng_tok_normalize; eng_tokenizer_int.h for the loader and encoder):
 * parsing Hugging Face "normalizer" nodes (NFC, NFD, NFKC, NFKD and Sequences of them, which
 * collapse into one form) and applying the form with libutf8proc (utf8proc_map with
 * COMPOSE/DECOMPOSE [+COMPAT] | STABLE).
 *
 * Details: invalid UTF-8 is passed through unnormalised, byte for byte (HF
 * cannot even take it: its input is a Rust String), and each maximal valid run around it is
 * normalised on its own; an all-ASCII segment is copied as is (ASCII is invariant under all
 * four forms). Added tokens are matched on the raw text, as HF does for special
 * (normalized: false) tokens; HF matches normalized: true added tokens after normalising,
 * which differs only when a combining mark touches an added token's edge. utf8proc's Unicode
 * version may be newer than the one HF's normalizer crate was built with (new characters only).
 */
#include "engine/eng_tokenizer_int.h"

#include <utf8proc.h>

/* comp: -1 no form seen yet, 0 the last form decomposes, 1 it composes; compat: any K form.
 * The forms compose that way: NFD∘NFKC = NFKD, NFC∘NFKD = NFKC, NFC∘NFD = NFC, ... */
static int norm_walk(const cJSON *n, int spm, int *compat, int *comp, int depth, const char *path, char *err,
                     size_t errlen) {
  if (!n || cJSON_IsNull(n)) return 0;
  const cJSON *ty = cJSON_GetObjectItemCaseSensitive(n, "type");
  const char *type = cJSON_IsString(ty) ? ty->valuestring : "?";
  if (!strcmp(type, "Sequence") && depth < 8) {
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
    if (!cJSON_IsArray(l)) return eng_errf(err, errlen, "%s: normalizer Sequence without \"normalizers\"", path);
    for (const cJSON *e = l->child; e; e = e->next)
      if (norm_walk(e, spm, compat, comp, depth + 1, path, err, errlen)) return -1;
    return 0;
  }
  if (!strcmp(type, "NFC") || !strcmp(type, "NFD") || !strcmp(type, "NFKC") || !strcmp(type, "NFKD")) {
    if (type[2] == 'K') *compat = 1;
    *comp = type[strlen(type) - 1] == 'C';
    return 0;
  }
  if (spm && !strcmp(type, "Prepend")) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(n, "prepend");
    if (cJSON_IsString(c) && !strcmp(c->valuestring, META)) return 0;
  }
  if (spm && !strcmp(type, "Replace")) {
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(n, "pattern"), "String");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(n, "content");
    if (cJSON_IsString(pat) && !strcmp(pat->valuestring, " ") && cJSON_IsString(c) && !strcmp(c->valuestring, META))
      return 0;
  }
  return eng_errf(err, errlen, "%s: unsupported normalizer '%s' (NFC, NFD, NFKC, NFKD%s, Sequence)", path, type,
                  spm ? ", Prepend/Replace of \"\u2581\"" : "");
}

int eng_tki_parse_norm(const cJSON *norm, int spm, int *form, const char *path, char *err, size_t errlen) {
  int compat = 0, comp = -1;
  *form = ENG_TOK_NORM_NONE;
  if (norm_walk(norm, spm, &compat, &comp, 0, path, err, errlen)) return -1;
  if (comp >= 0) *form = compat ? (comp ? ENG_TOK_NORM_NFKC : ENG_TOK_NORM_NFKD) : (comp ? ENG_TOK_NORM_NFC : ENG_TOK_NORM_NFD);
  return 0;
}

void eng_tok_set_norm(eng_tokenizer *t, int form) {
  t->norm = form >= ENG_TOK_NORM_NONE && form <= ENG_TOK_NORM_NFKD ? form : ENG_TOK_NORM_NONE;
}
int eng_tok_norm(const eng_tokenizer *t) { return t->norm; }
const char *eng_tok_norm_name(int form) {
  static const char *const names[] = {"none", "NFC", "NFD", "NFKC", "NFKD"};
  return form >= 0 && form <= ENG_TOK_NORM_NFKD ? names[form] : "?";
}

int eng_tki_nbuf_put(eng_tki_nbuf *b, const char *s, size_t n) {
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
  }
  if (n) memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
  return 0;
}

/* Length of the well-formed UTF-8 sequence at p (Unicode Table 3-7: no overlongs, no
 * surrogates, nothing above U+10FFFF), 0 when ill-formed. */
static size_t utf8_seq(const unsigned char *p, size_t n) {
  unsigned char b = p[0];
  if (b < 0x80) return 1;
  size_t k = b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
  if (!k || k > n) return 0;
  unsigned char lo = 0x80, hi = 0xbf;
  if (b == 0xe0) lo = 0xa0;
  else if (b == 0xed) hi = 0x9f;
  else if (b == 0xf0) lo = 0x90;
  else if (b == 0xf4) hi = 0x8f;
  if (p[1] < lo || p[1] > hi) return 0;
  for (size_t i = 2; i < k; i++) if ((p[i] & 0xc0) != 0x80) return 0;
  return k;
}

static int norm_run(eng_tki_nbuf *b, const char *s, size_t n, utf8proc_option_t opt) {
  if (n == 0) return 0;
  utf8proc_uint8_t *dst = NULL;
  utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst, opt);
  int rc = r >= 0 ? eng_tki_nbuf_put(b, (const char *)dst, (size_t)r) : r == UTF8PROC_ERROR_NOMEM ? -1 : eng_tki_nbuf_put(b, s, n);
  free(dst);
  return rc;
}

int eng_tki_norm_append(eng_tki_nbuf *b, int form, const char *s, size_t n) {
  static const utf8proc_option_t opts[] = {
      0, UTF8PROC_STABLE | UTF8PROC_COMPOSE, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE,
      UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT};
  size_t i = 0;
  while (i < n && !((unsigned char)s[i] & 0x80)) i++;
  if (i == n || form <= ENG_TOK_NORM_NONE || form > ENG_TOK_NORM_NFKD) return eng_tki_nbuf_put(b, s, n);
  size_t run = 0;
  for (i = 0; i < n;) {
    size_t k = utf8_seq((const unsigned char *)s + i, n - i);
    if (k) { i += k; continue; }
    if (norm_run(b, s + run, i - run, opts[form]) || eng_tki_nbuf_put(b, s + i, 1)) return -1; /* ill-formed byte */
    run = ++i;
  }
  return norm_run(b, s + run, n - run, opts[form]);
}

int eng_tok_normalize(int form, const char *text, size_t len, char **out, size_t *outlen) {
  eng_tki_nbuf b = {0};
  *out = NULL;
  if (outlen) *outlen = 0;
  if (eng_tki_nbuf_put(&b, NULL, 0) || eng_tki_norm_append(&b, form, text, len)) { free(b.p); return -1; }
  *out = b.p;
  if (outlen) *outlen = b.n;
  return 0;
}

