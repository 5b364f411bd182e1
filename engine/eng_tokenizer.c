/* eng_tokenizer.c — text <-> token ids for the models moescope runs (contract:
 * eng_tokenizer.h). Byte-level BPE as in Hugging Face `tokenizers`:
 *
 *  load:   tokenizer.json (cJSON): model.vocab, model.merges ("a b" strings or ["a","b"]
 *          pairs), added_tokens, the pre-tokenizer (plain ByteLevel = GPT-2 regex, or a
 *          Sequence of Split{Regex, Isolated} + ByteLevel as in Qwen2/Llama-3), BOS/EOS
 *          from tokenizer_config.json. eng_tok_load_vocab_merges() reads the older
 *          vocab.json + merges.txt pair instead (e.g. Qwen2).
 *  encode: split out added tokens (leftmost-longest literal match on the raw text);
 *          normalise each remaining segment when the tokenizer has a normalizer (NFC, NFD,
 *          NFKC, NFKD, or a Sequence of them: utf8proc_map with COMPOSE/DECOMPOSE [+COMPAT]
 *          | STABLE); cut each segment with the regex chain (PCRE2, UTF + UCP, JIT); map
 *          every byte to its GPT-2 byte token; merge by rank (eng_bpe.c); a per-call cache
 *          maps repeated words straight to their ids.
 *  decode: concatenate the raw bytes of the tokens (GPT-2 byte table inverted at load), so
 *          decode(encode(x)) is the normalised text N(x), not x.
 *
 * Normalisation (eng_tok_norm.c) happens per segment between added tokens.
 * `\s` in a pattern is rewritten to an explicit Unicode White_Space class before it is
 * compiled: PCRE2's \s under UCP also matches U+180E, Oniguruma's (what HF uses) does not.
 * Not done: other normalizers (Lowercase, Strip, Replace, ... are refused at load), Split
 * behaviours other than Isolated, dropout, BPE without a ByteLevel pre-tokenizer.
 */
#include "engine/eng_tokenizer_int.h"

cJSON *eng_tki_parse_json_file(const char *path, char *err, size_t errlen) {
  size_t n;
  char *buf = eng_read_file(path, &n, TOK_MAX_FILE, err, errlen);
  if (!buf) return NULL;
  const char *end = NULL;
  cJSON *j = cJSON_ParseWithLengthOpts(buf, n, &end, 0);
  if (!j) eng_errf(err, errlen, "%s: invalid JSON near byte %ld", path, end ? (long)(end - buf) : -1L);
  free(buf);
  return j;
}

/* ---- GPT-2 byte <-> unicode table ----------------------------------------------------- */

static void init_byte_table(eng_tokenizer *t) {
  int n = 0;
  for (int i = 0; i < 512; i++) t->u2b[i] = -1;
  for (int b = 0; b < 256; b++) {
    int keep = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
    t->b2u[b] = keep ? b : 256 + n++;
    t->u2b[t->b2u[b]] = b;
  }
}

static size_t utf8_put(char *o, unsigned cp) {
  if (cp < 0x80) { o[0] = (char)cp; return 1; }
  if (cp < 0x800) { o[0] = (char)(0xc0 | cp >> 6); o[1] = (char)(0x80 | (cp & 63)); return 2; }
  o[0] = (char)(0xe0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 63)); o[2] = (char)(0x80 | (cp & 63));
  return 3;
}

/* Appends the raw bytes of a vocab string (GPT-2 unicode form) to the arena: every code
 * point of the byte table becomes its byte, anything else is kept as UTF-8. */
static int arena_add(eng_tokenizer *t, const char *s, size_t n, int raw) {
  if (t->arena_n + n + 1 > t->arena_cap) {
    size_t cap = t->arena_cap ? t->arena_cap : 1 << 16;
    while (cap < t->arena_n + n + 1) cap *= 2;
    char *a = realloc(t->arena, cap);
    if (!a) return -1;
    t->arena = a;
    t->arena_cap = cap;
  }
  char *o = t->arena + t->arena_n;
  size_t k = 0;
  for (size_t i = 0; i < n;) {
    unsigned char c = (unsigned char)s[i];
    if (!raw && c >= 0xc2 && c <= 0xc7 && i + 1 < n) { /* U+0080..U+01FF: maybe a table char */
      unsigned cp = ((c & 0x1fu) << 6) | ((unsigned char)s[i + 1] & 63u);
      if (t->u2b[cp] >= 0) { o[k++] = (char)t->u2b[cp]; i += 2; continue; }
    } else if (!raw && c < 0x80 && t->u2b[c] >= 0) { o[k++] = (char)c; i++; continue; }
    o[k++] = (char)c;
    i++;
  }
  t->arena_n += k;
  return (int)k;
}

int eng_tki_set_piece(eng_tokenizer *t, int id, const char *s, size_t n, int raw) {
  size_t off = t->arena_n;
  int k = arena_add(t, s, n, raw);
  if (k < 0) return -1;
  t->poff[id] = (uint32_t)off;
  t->plen[id] = (uint32_t)k;
  return 0;
}

/* ---- building ------------------------------------------------------------------------- */

int eng_tki_alloc_ids(eng_tokenizer *t, int maxid) {
  t->nids = maxid + 1;
  t->poff = calloc((size_t)t->nids, sizeof *t->poff);
  t->plen = malloc((size_t)t->nids * sizeof *t->plen);
  if (!t->poff || !t->plen) return -1;
  for (int i = 0; i < t->nids; i++) t->plen[i] = NO_PIECE;
  return 0;
}

int eng_tki_vocab_id(const cJSON *e) {
  if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= (1 << 30) ||
      e->valuedouble != (double)e->valueint)
    return -1;
  return e->valueint;
}

/* Vocab object (unicode-form piece -> id): fills pieces and the lookup map. */
static int add_vocab(eng_tokenizer *t, const cJSON *vocab, eng_smap *map, const char *path,
                     char *err, size_t errlen) {
  for (const cJSON *e = vocab->child; e; e = e->next) {
    int id = eng_tki_vocab_id(e);
    if (id < 0 || id >= t->nids || !e->string) return eng_errf(err, errlen, "%s: bad vocab entry", path);
    size_t n = strlen(e->string);
    if (eng_smap_put(map, e->string, n, id, 0) || eng_tki_set_piece(t, id, e->string, n, 0))
      return eng_errf(err, errlen, "%s: out of memory", path);
  }
  return 0;
}

int eng_tki_add_merge(eng_tokenizer *t, const eng_smap *map, const char *a, size_t an, const char *b,
                     size_t bn, int rank, const char *path, char *err, size_t errlen) {
  char stack[256], *ab = an + bn <= sizeof stack ? stack : malloc(an + bn);
  if (!ab) return eng_errf(err, errlen, "%s: out of memory", path);
  memcpy(ab, a, an);
  memcpy(ab + an, b, bn);
  const eng_smap_ent *ea = eng_smap_get(map, a, an), *eb = eng_smap_get(map, b, bn),
                     *eab = eng_smap_get(map, ab, an + bn);
  int rc = 0;
  if (!ea || !eb || !eab)
    rc = eng_errf(err, errlen, "%s: merge %d '%.*s %.*s': piece '%.*s' not in vocab", path, rank, (int)an, a,
              (int)bn, b, (int)(!ea ? an : !eb ? bn : an + bn), !ea ? a : !eb ? b : ab);
  else if (eng_pmap_put(&t->merges, ea->val, eb->val, rank, eab->val))
    rc = eng_errf(err, errlen, "%s: out of memory", path);
  if (ab != stack) free(ab);
  return rc;
}

int eng_tki_add_added(eng_tokenizer *t, int id, const char *s, size_t n) {
  added_tok *a = realloc(t->added, (size_t)(t->nadded + 1) * sizeof *a);
  if (!a) return -1;
  t->added = a;
  if (eng_tki_set_piece(t, id, s, n, 1)) return -1;
  a[t->nadded++] = (added_tok){t->poff[id], (uint32_t)n, id, n ? (unsigned char)s[0] : 0};
  return 0;
}

static int cmp_added(const void *x, const void *y) {
  const added_tok *a = x, *b = y;
  if (a->first != b->first) return a->first < b->first ? -1 : 1;
  return a->len != b->len ? (a->len > b->len ? -1 : 1) : (a->id > b->id) - (a->id < b->id);
}

void eng_tki_index_added(eng_tokenizer *t) {
  int w = 0; /* drop empty contents */
  for (int i = 0; i < t->nadded; i++) if (t->added[i].len) t->added[w++] = t->added[i];
  t->nadded = w;
  if (t->nadded > 1) qsort(t->added, (size_t)t->nadded, sizeof *t->added, cmp_added);
  int k = 0;
  for (int b = 0; b <= 256; b++) {
    while (k < t->nadded && t->added[k].first < b) k++;
    t->added_lo[b] = k;
  }
}

/* Rewrites \s and \S into explicit White_Space classes. Returns malloc'd text or NULL. */
static char *rewrite_ws(const char *p) {
  size_t n = strlen(p), cap = n * 8 + 64, k = 0;
  char *o = malloc(cap);
  if (!o) return NULL;
  int in_class = 0;
  for (size_t i = 0; i < n; i++) {
    if (k + sizeof WS_CLASS + 8 > cap) {
      char *no = realloc(o, cap *= 2);
      if (!no) { free(o); return NULL; }
      o = no;
    }
    if (p[i] == '\\' && i + 1 < n) {
      char c = p[i + 1];
      if (c == 's' || (c == 'S' && !in_class)) {
        k += (size_t)sprintf(o + k, "%s%s%s", in_class ? "" : c == 'S' ? "[^" : "[", WS_CLASS,
                             in_class ? "" : "]");
        i++;
        continue;
      }
      o[k++] = p[i++];
      o[k++] = p[i];
      continue;
    }
    if (!in_class && p[i] == '[') {
      in_class = 1;
      o[k++] = p[i];
      if (p[i + 1] == '^') o[k++] = p[++i];
      if (p[i + 1] == ']') o[k++] = p[++i]; /* a leading ] is literal */
      continue;
    }
    if (in_class && p[i] == ']') in_class = 0;
    o[k++] = p[i];
  }
  o[k] = 0;
  return o;
}

int eng_tki_add_stage(eng_tokenizer *t, const char *pattern, const char *path, char *err, size_t errlen) {
  if (t->nre == MAX_STAGES) return eng_errf(err, errlen, "%s: too many pre-tokenizer splits", path);
  char *pat = rewrite_ws(pattern);
  if (!pat) return eng_errf(err, errlen, "%s: out of memory", path);
  int ec;
  PCRE2_SIZE eo;
  pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
                                 PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &ec, &eo, NULL);
  free(pat);
  if (!re) {
    PCRE2_UCHAR msg[160];
    pcre2_get_error_message(ec, msg, sizeof msg);
    return eng_errf(err, errlen, "%s: pre-tokenizer regex does not compile: %s", path, (char *)msg);
  }
  pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter on failure */
  t->re[t->nre++] = re;
  return 0;
}

/* Walks the pre_tokenizer node: ByteLevel, Split (Isolated) and Sequence of those. */
static int parse_pretok(eng_tokenizer *t, const cJSON *node, int *byte_level, const char *path,
                        char *err, size_t errlen) {
  const cJSON *ty = cJSON_GetObjectItemCaseSensitive(node, "type");
  const char *type = cJSON_IsString(ty) ? ty->valuestring : "";
  if (!strcmp(type, "Sequence")) {
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(node, "pretokenizers");
    for (const cJSON *e = cJSON_IsArray(l) ? l->child : NULL; e; e = e->next)
      if (parse_pretok(t, e, byte_level, path, err, errlen)) return -1;
    return 0;
  }
  if (!strcmp(type, "ByteLevel")) {
    const cJSON *ur = cJSON_GetObjectItemCaseSensitive(node, "use_regex");
    *byte_level = 1;
    t->add_prefix_space = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(node, "add_prefix_space"));
    t->prefix_stage = t->nre;
    return cJSON_IsFalse(ur) ? 0 : eng_tki_add_stage(t, GPT2_PATTERN, path, err, errlen);
  }
  if (!strcmp(type, "Split")) {
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(node, "pattern");
    const cJSON *rx = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
    const cJSON *lit = cJSON_GetObjectItemCaseSensitive(pat, "String");
    const cJSON *beh = cJSON_GetObjectItemCaseSensitive(node, "behavior");
    if (!cJSON_IsString(beh) || strcmp(beh->valuestring, "Isolated") ||
        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(node, "invert")))
      return eng_errf(err, errlen, "%s: unsupported Split pre-tokenizer (only behavior Isolated, no invert)", path);
    if (cJSON_IsString(rx)) return eng_tki_add_stage(t, rx->valuestring, path, err, errlen);
    if (!cJSON_IsString(lit)) return eng_errf(err, errlen, "%s: Split pre-tokenizer without a pattern", path);
    size_t n = strlen(lit->valuestring);
    char *q = malloc(n + 5);
    if (!q) return eng_errf(err, errlen, "%s: out of memory", path);
    snprintf(q, n + 5, "\\Q%s\\E", lit->valuestring);
    int rc = strstr(lit->valuestring, "\\E") ? eng_errf(err, errlen, "%s: unsupported Split string", path)
                                              : eng_tki_add_stage(t, q, path, err, errlen);
    free(q);
    return rc;
  }
  return eng_errf(err, errlen, "%s: unsupported pre_tokenizer type '%s' (byte-level BPE only)", path, type);
}

static int lookup_piece(const eng_tokenizer *t, const char *s, size_t n) {
  for (int i = 0; i < t->nadded; i++)
    if (t->added[i].len == n && !memcmp(t->arena + t->added[i].off, s, n)) return t->added[i].id;
  for (int id = 0; id < t->nids; id++) /* rare (load time only): a linear scan is fine */
    if (t->plen[id] == n && !memcmp(t->arena + t->poff[id], s, n)) return id;
  return -1;
}

/* bos_token / eos_token: a string or {"content": ...}; -1 when absent or unknown. */
int eng_tki_config_token(const eng_tokenizer *t, const cJSON *cfg, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
  if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
  return cJSON_IsString(v) ? lookup_piece(t, v->valuestring, strlen(v->valuestring)) : -1;
}

/* Common tail of both loaders: byte tokens, added index, whole-word map, BOS/EOS. */
int eng_tki_finish(eng_tokenizer *t, const eng_smap *map, const char *config_json, const char *path,
                  char *err, size_t errlen) {
  for (int b = 0; b < 256; b++) {
    char u[4];
    size_t n = utf8_put(u, (unsigned)t->b2u[b]);
    const eng_smap_ent *e = eng_smap_get(map, u, n);
    t->byte_id[b] = e ? e->val : -1;
  }
  for (int i = 0; i < t->nadded; i++) t->added[i].off = t->poff[t->added[i].id];
  eng_tki_index_added(t);
  if (t->ignore_merges) {
    if (eng_smap_init(&t->whole, (size_t)t->nids)) return eng_errf(err, errlen, "%s: out of memory", path);
    for (int id = 0; id < t->nids; id++)
      if (t->plen[id] != NO_PIECE && eng_smap_put(&t->whole, t->arena + t->poff[id], t->plen[id], id, 0))
        return eng_errf(err, errlen, "%s: out of memory", path);
  }
  t->bos = t->eos = -1;
  if (config_json) {
    cJSON *cfg = eng_tki_parse_json_file(config_json, err, errlen);
    if (!cfg) return -1;
    t->bos = eng_tki_config_token(t, cfg, "bos_token");
    t->eos = eng_tki_config_token(t, cfg, "eos_token");
    cJSON_Delete(cfg);
  }
  return 0;
}

eng_tokenizer *eng_tki_tok_new(void) {
  eng_tokenizer *t = calloc(1, sizeof *t);
  if (t) {
    t->unk = -1;
    init_byte_table(t);
  }
  return t;
}

int eng_tki_max_id_of(const cJSON *obj, int maxid) {
  for (const cJSON *e = obj ? obj->child : NULL; e; e = e->next) {
    int id = eng_tki_vocab_id(e);
    if (id > maxid) maxid = id;
  }
  return maxid;
}


int eng_tok_kind(const eng_tokenizer *t) { return t->spm ? ENG_TOK_SPM : ENG_TOK_BYTE_BPE; }

int eng_tok_load(eng_tokenizer **out, const char *path, const char *config_json, char *err,
                 size_t errlen) {
  *out = NULL;
  cJSON *j = eng_tki_parse_json_file(path, err, errlen);
  if (!j) return -1;
  if (eng_tki_is_spm_json(j)) {
    int r = eng_tki_load_spm_json(out, j, path, config_json, err, errlen);
    cJSON_Delete(j);
    return r;
  }
  eng_tokenizer *t = eng_tki_tok_new();
  eng_smap map = {0};
  int rc = -1;
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
  const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
  const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
  const cJSON *added = cJSON_GetObjectItemCaseSensitive(j, "added_tokens");
  const cJSON *norm = cJSON_GetObjectItemCaseSensitive(j, "normalizer");
  const cJSON *pre = cJSON_GetObjectItemCaseSensitive(j, "pre_tokenizer");
  if (!t) { eng_errf(err, errlen, "%s: out of memory", path); goto done; }
  if (!cJSON_IsObject(model)) { eng_errf(err, errlen, "%s: no \"model\" object", path); goto done; }
  if (type && (!cJSON_IsString(type) || strcmp(type->valuestring, "BPE"))) {
    eng_errf(err, errlen, "%s: unsupported model type '%s' (only BPE)", path,
         cJSON_IsString(type) ? type->valuestring : "?");
    goto done;
  }
  if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges)) {
    eng_errf(err, errlen, "%s: model.vocab or model.merges missing", path);
    goto done;
  }
  const cJSON *cp = cJSON_GetObjectItemCaseSensitive(model, "continuing_subword_prefix");
  const cJSON *sx = cJSON_GetObjectItemCaseSensitive(model, "end_of_word_suffix");
  if ((cJSON_IsString(cp) && *cp->valuestring) || (cJSON_IsString(sx) && *sx->valuestring)) {
    eng_errf(err, errlen, "%s: unsupported BPE option (continuing_subword_prefix/end_of_word_suffix)", path);
    goto done;
  }
  if (eng_tki_parse_norm(norm, 0, &t->norm, path, err, errlen)) goto done;
  t->ignore_merges = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "ignore_merges"));
  int maxid = eng_tki_max_id_of(vocab, -1);
  for (const cJSON *a = cJSON_IsArray(added) ? added->child : NULL; a; a = a->next) {
    int id = eng_tki_vocab_id(cJSON_GetObjectItemCaseSensitive(a, "id"));
    if (id < 0 || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(a, "content"))) {
      eng_errf(err, errlen, "%s: bad added_tokens entry", path);
      goto done;
    }
    if (id > maxid) maxid = id;
  }
  if (maxid < 0) { eng_errf(err, errlen, "%s: empty vocab", path); goto done; }
  if (eng_tki_alloc_ids(t, maxid) || eng_smap_init(&map, (size_t)cJSON_GetArraySize(vocab)) ||
      eng_pmap_init(&t->merges, (size_t)cJSON_GetArraySize(merges))) {
    eng_errf(err, errlen, "%s: out of memory", path);
    goto done;
  }
  if (add_vocab(t, vocab, &map, path, err, errlen)) goto done;
  int rank = 0;
  for (const cJSON *m = merges->child; m; m = m->next, rank++) {
    const char *a, *b;
    size_t an, bn;
    if (cJSON_IsString(m)) {
      const char *sp = strchr(m->valuestring, ' ');
      if (!sp || strchr(sp + 1, ' ')) { eng_errf(err, errlen, "%s: merge %d is not 'a b'", path, rank); goto done; }
      a = m->valuestring, an = (size_t)(sp - a), b = sp + 1, bn = strlen(b);
    } else if (cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) && cJSON_IsString(m->child->next)) {
      a = m->child->valuestring, an = strlen(a), b = m->child->next->valuestring, bn = strlen(b);
    } else {
      eng_errf(err, errlen, "%s: merge %d is neither \"a b\" nor [\"a\", \"b\"]", path, rank);
      goto done;
    }
    if (eng_tki_add_merge(t, &map, a, an, b, bn, rank, path, err, errlen)) goto done;
  }
  for (const cJSON *a = cJSON_IsArray(added) ? added->child : NULL; a; a = a->next) {
    const char *s = cJSON_GetObjectItemCaseSensitive(a, "content")->valuestring;
    if (eng_tki_add_added(t, cJSON_GetObjectItemCaseSensitive(a, "id")->valueint, s, strlen(s))) {
      eng_errf(err, errlen, "%s: out of memory", path);
      goto done;
    }
  }
  int byte_level = 0;
  if (!pre || cJSON_IsNull(pre)) { eng_errf(err, errlen, "%s: no pre_tokenizer (byte-level BPE only)", path); goto done; }
  if (parse_pretok(t, pre, &byte_level, path, err, errlen)) goto done;
  if (!byte_level) { eng_errf(err, errlen, "%s: pre_tokenizer has no ByteLevel step (byte-level BPE only)", path); goto done; }
  const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
  if (cJSON_IsString(unk)) t->unk = lookup_piece(t, unk->valuestring, strlen(unk->valuestring));
  if (eng_tki_finish(t, &map, config_json, path, err, errlen)) goto done;
  rc = 0;
done:
  eng_smap_free(&map);
  cJSON_Delete(j);
  if (rc) eng_tok_free(t);
  else *out = t;
  return rc;
}

int eng_tok_load_vocab_merges(eng_tokenizer **out, const char *vocab_json, const char *merges_txt,
                              const char *config_json, const char *pattern, char *err, size_t errlen) {
  *out = NULL;
  size_t mlen = 0;
  cJSON *vocab = eng_tki_parse_json_file(vocab_json, err, errlen), *cfg = NULL;
  char *mtext = vocab ? eng_read_file(merges_txt, &mlen, TOK_MAX_FILE, err, errlen) : NULL;
  eng_tokenizer *t = NULL;
  eng_smap map = {0};
  int rc = -1;
  if (!mtext) goto done;
  if (config_json && !(cfg = eng_tki_parse_json_file(config_json, err, errlen))) goto done;
  const cJSON *dec = cJSON_GetObjectItemCaseSensitive(cfg, "added_tokens_decoder");
  int maxid = eng_tki_max_id_of(vocab, -1);
  for (const cJSON *a = dec ? dec->child : NULL; a; a = a->next) {
    long id = strtol(a->string, NULL, 10);
    if (id > maxid && id < (1 << 30)) maxid = (int)id;
  }
  t = eng_tki_tok_new();
  if (!t || maxid < 0 || eng_tki_alloc_ids(t, maxid) || eng_smap_init(&map, (size_t)maxid + 1) ||
      eng_pmap_init(&t->merges, mlen / 16 + 16)) {
    eng_errf(err, errlen, "%s: %s", vocab_json, maxid < 0 ? "empty vocab" : "out of memory");
    goto done;
  }
  if (add_vocab(t, vocab, &map, vocab_json, err, errlen)) goto done;
  int rank = 0, lineno = 0;
  for (char *line = mtext, *nl; line < mtext + mlen; line = nl + 1) {
    nl = memchr(line, '\n', (size_t)(mtext + mlen - line));
    if (!nl) nl = mtext + mlen;
    size_t n = (size_t)(nl - line);
    lineno++;
    if (n && line[n - 1] == '\r') n--;
    if (n == 0 || (lineno == 1 && !strncmp(line, "#version", 8))) continue;
    char *sp = memchr(line, ' ', n);
    if (!sp || memchr(sp + 1, ' ', (size_t)(line + n - sp - 1))) {
      eng_errf(err, errlen, "%s: line %d is not 'a b'", merges_txt, lineno);
      goto done;
    }
    if (eng_tki_add_merge(t, &map, line, (size_t)(sp - line), sp + 1, (size_t)(line + n - sp - 1), rank++, merges_txt,
                  err, errlen))
      goto done;
  }
  for (const cJSON *a = dec ? dec->child : NULL; a; a = a->next) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(a, "content");
    long id = strtol(a->string, NULL, 10);
    if (cJSON_IsString(c) && id >= 0 && id <= maxid && eng_tki_add_added(t, (int)id, c->valuestring, strlen(c->valuestring))) {
      eng_errf(err, errlen, "%s: out of memory", config_json);
      goto done;
    }
  }
  t->prefix_stage = 0;
  if (eng_tki_add_stage(t, pattern ? pattern : GPT2_PATTERN, vocab_json, err, errlen)) goto done;
  if (eng_tki_finish(t, &map, config_json, vocab_json, err, errlen)) goto done;
  rc = 0;
done:
  eng_smap_free(&map);
  cJSON_Delete(vocab);
  cJSON_Delete(cfg);
  free(mtext);
  if (rc) eng_tok_free(t);
  else *out = t;
  return rc;
}

void eng_tok_free(eng_tokenizer *t) {
  if (!t) return;
  for (int i = 0; i < t->nre; i++) pcre2_code_free(t->re[i]);
  eng_pmap_free(&t->merges);
  eng_smap_free(&t->whole);
  eng_smap_free(&t->sym);
  free(t->sym_arena);
  free(t->poff);
  free(t->plen);
  free(t->arena);
  free(t->added);
  free(t);
}

int eng_tok_vocab_size(const eng_tokenizer *t) { return t->nids; }
int eng_tok_bos(const eng_tokenizer *t) { return t->bos; }
int eng_tok_eos(const eng_tokenizer *t) { return t->eos; }

const char *eng_tok_piece(const eng_tokenizer *t, int id, size_t *len) {
  if (id < 0 || id >= t->nids || t->plen[id] == NO_PIECE) return NULL;
  if (len) *len = t->plen[id];
  return t->arena + t->poff[id];
}

/* ---- encoding ------------------------------------------------------------------------- */

typedef struct {
  const eng_tokenizer *t;
  int *ids;
  size_t n, cap;
  int *syms;
  size_t symcap;
  eng_bpe_scratch bs;
  eng_smap cache;            /* word (pointer into the caller's text) -> (offset in ids, count) */
  const char *lo, *hi;       /* the caller's text: only words inside it are cached */
  pcre2_match_data *md;
  pcre2_match_context *mc;
  pcre2_jit_stack *js;
  char *err;
  size_t errlen;
} enc_ctx;

static int reserve(enc_ctx *c, size_t n) {
  if (c->n + n > c->cap) {
    size_t cap = c->cap ? c->cap : 1024;
    while (cap < c->n + n) cap *= 2;
    int *p = realloc(c->ids, cap * sizeof *p);
    if (!p) return eng_errf(c->err, c->errlen, "tokenizer: out of memory");
    c->ids = p;
    c->cap = cap;
  }
  return 0;
}

static int push_ids(enc_ctx *c, const int *ids, size_t n) { /* ids must not point into c->ids */
  if (reserve(c, n)) return -1;
  memcpy(c->ids + c->n, ids, n * sizeof *ids);
  c->n += n;
  return 0;
}

static int emit_word(enc_ctx *c, const char *p, size_t len) {
  const eng_tokenizer *t = c->t;
  int cacheable = len <= 256 && (uintptr_t)p >= (uintptr_t)c->lo && (uintptr_t)(p + len) <= (uintptr_t)c->hi;
  if (cacheable) {
    const eng_smap_ent *e = eng_smap_get(&c->cache, p, len);
    if (e) { /* the ids were emitted before at offset val: copy them */
      if (reserve(c, (size_t)e->val2)) return -1;
      memcpy(c->ids + c->n, c->ids + e->val, (size_t)e->val2 * sizeof *c->ids);
      c->n += (size_t)e->val2;
      return 0;
    }
  }
  if (t->ignore_merges) {
    const eng_smap_ent *e = eng_smap_get(&t->whole, p, len);
    if (e) return push_ids(c, &e->val, 1);
  }
  if (len > c->symcap) {
    int *s = realloc(c->syms, len * 2 * sizeof *s);
    if (!s) return eng_errf(c->err, c->errlen, "tokenizer: out of memory");
    c->syms = s;
    c->symcap = len * 2;
  }
  for (size_t i = 0; i < len; i++) {
    int id = t->byte_id[(unsigned char)p[i]];
    if (id < 0 && (id = t->unk) < 0)
      return eng_errf(c->err, c->errlen, "tokenizer: byte 0x%02x has no token in the vocabulary",
                  (unsigned char)p[i]);
    c->syms[i] = id;
  }
  int k = eng_bpe_merge(&t->merges, &c->bs, c->syms, (int)len);
  if (k < 0) return eng_errf(c->err, c->errlen, "tokenizer: out of memory");
  size_t off = c->n;
  if (push_ids(c, c->syms, (size_t)k)) return -1;
  if (cacheable && c->cache.n < (1u << 21)) eng_smap_put(&c->cache, p, len, (int)off, k); /* OOM: no cache */
  return 0;
}

/* Cuts p with regex stage `stage` (matches and the gaps between them are pieces) and
 * passes every piece on to the next stage; past the last stage a piece is a word. */
static int split(enc_ctx *c, const char *p, size_t len, int stage, int prefixed) {
  const eng_tokenizer *t = c->t;
  if (len == 0) return 0;
  if (!prefixed && stage == t->prefix_stage && t->add_prefix_space && p[0] != ' ') {
    char *q = malloc(len + 1); /* ByteLevel add_prefix_space: " " + piece */
    if (!q) return eng_errf(c->err, c->errlen, "tokenizer: out of memory");
    q[0] = ' ';
    memcpy(q + 1, p, len);
    int rc = split(c, q, len + 1, stage, 1);
    free(q);
    return rc;
  }
  if (stage >= t->nre) return emit_word(c, p, len);
  size_t off = 0, gap = 0;
  while (off < len) {
    int rc = pcre2_match(t->re[stage], (PCRE2_SPTR)p, len, off, 0, c->md, c->mc);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[160];
      pcre2_get_error_message(rc, msg, sizeof msg);
      return eng_errf(c->err, c->errlen, "tokenizer: regex match failed: %s", (char *)msg);
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
    size_t s = ov[0], e = ov[1];
    if (e == s) { /* empty match: step over one character, it joins the next gap */
      off = s + 1;
      while (off < len && ((unsigned char)p[off] & 0xc0) == 0x80) off++;
      continue;
    }
    if (s > gap && split(c, p + gap, s - gap, stage + 1, 0)) return -1;
    if (split(c, p + s, e - s, stage + 1, 0)) return -1;
    off = gap = e;
  }
  return gap < len ? split(c, p + gap, len - gap, stage + 1, 0) : 0;
}


/* SentencePiece-style BPE of one segment (between added tokens): spaces -> U+2581, the
 * dummy prefix, characters -> pieces, merges by rank (leftmost among equal ranks), then
 * characters that are no piece -> byte tokens. */
static int spm_segment(enc_ctx *c, const char *p, size_t len, int at_start) {
  const eng_tokenizer *t = c->t;
  if (len == 0) return 0;
  size_t cap = len * 3 + 3, k = 0;
  char *q = malloc(cap);
  if (!q) return eng_errf(c->err, c->errlen, "tokenizer: out of memory");
  int prefix = at_start && (t->spm_prefix == 1 || (t->spm_prefix == 2 && p[0] != ' '));
  if (prefix) { memcpy(q, META, 3); k = 3; }
  for (size_t i = 0; i < len; i++) {
    if (p[i] == ' ') { memcpy(q + k, META, 3); k += 3; }
    else q[k++] = p[i];
  }
  int rc = 0;
  if (k > c->symcap) {
    int *sy = realloc(c->syms, k * 2 * sizeof *sy);
    if (!sy) { free(q); return eng_errf(c->err, c->errlen, "tokenizer: out of memory"); }
    c->syms = sy;
    c->symcap = k * 2;
  }
  uint32_t *coff = malloc(sizeof *coff * (k + 1)); /* char start offsets */
  if (!coff) { free(q); return eng_errf(c->err, c->errlen, "tokenizer: out of memory"); }
  int n = 0;
  for (size_t i = 0; i < k;) {
    size_t cl = 1;
    unsigned char b = (unsigned char)q[i];
    if (b >= 0xf0) cl = 4; else if (b >= 0xe0) cl = 3; else if (b >= 0xc0) cl = 2;
    if (i + cl > k) cl = k - i;
    for (size_t j = 1; j < cl; j++) if (((unsigned char)q[i + j] & 0xc0) != 0x80) { cl = j; break; }
    const eng_smap_ent *e = eng_smap_get(&t->sym, q + i, cl);
    coff[n] = (uint32_t)i;
    c->syms[n] = e ? e->val : t->nids + n; /* >= nids: a character that is no piece */
    n++;
    i += cl;
  }
  coff[n] = (uint32_t)k;
  int m = eng_bpe_merge(&t->merges, &c->bs, c->syms, n);
  if (m < 0) rc = eng_errf(c->err, c->errlen, "tokenizer: out of memory");
  for (int i = 0; i < m && rc == 0; i++) {
    int id = c->syms[i];
    if (id < t->nids) { rc = push_ids(c, &id, 1); continue; }
    int ci = id - t->nids; /* unknown character: its bytes */
    for (uint32_t b = coff[ci]; b < coff[ci + 1] && rc == 0; b++) {
      int bid = t->byte_fallback ? t->byte_tok[(unsigned char)q[b]] : -1;
      if (bid < 0) bid = t->unk;
      if (bid < 0) rc = eng_errf(c->err, c->errlen, "tokenizer: character at byte %u has no token and no byte fallback", b);
      else rc = push_ids(c, &bid, 1);
      if (!t->byte_fallback) break; /* one unk per character */
    }
  }
  free(coff);
  free(q);
  return rc;
}

static int segment(enc_ctx *c, const char *text, const char *p, size_t len) {
  if (c->t->spm) return spm_segment(c, p, len, p == text);
  return split(c, p, len, 0, 0);
}

typedef struct { size_t pos; int a; } added_hit; /* added token a at byte pos of the normalised text */

/* The added token starting at text[pos] (leftmost-longest), -1 when none. */
static int match_added(const eng_tokenizer *t, const char *text, size_t len, size_t pos) {
  unsigned char b = (unsigned char)text[pos];
  for (int i = t->added_lo[b]; i < t->added_lo[b + 1]; i++) {
    const added_tok *a = &t->added[i];
    if (a->len <= len - pos && !memcmp(text + pos, t->arena + a->off, a->len)) return i;
  }
  return -1;
}

int eng_tok_encode(const eng_tokenizer *t, const char *text, size_t len, int **ids, size_t *n,
                   char *err, size_t errlen) {
  enc_ctx c = {.t = t, .lo = text, .hi = text + len, .err = err, .errlen = errlen};
  eng_tki_nbuf nb = {0};
  added_hit *hits = NULL;
  size_t nh = 0, hcap = 0;
  int rc = -1;
  *ids = NULL;
  *n = 0;
  c.md = pcre2_match_data_create(1, NULL);
  c.mc = pcre2_match_context_create(NULL);
  c.js = pcre2_jit_stack_create(32 * 1024, 16 * 1024 * 1024, NULL);
  if (!c.md || !c.mc || !c.js || eng_smap_init(&c.cache, len / 64 + 64)) {
    eng_errf(err, errlen, "tokenizer: out of memory");
    goto done;
  }
  pcre2_jit_stack_assign(c.mc, NULL, c.js);
  if (t->norm) { /* the added tokens of the raw text, the segments between them normalised, into nb */
    size_t pos = 0, seg = 0;
    while (pos < len) {
      int a = match_added(t, text, len, pos);
      if (a < 0) { pos++; continue; }
      if (nh == hcap) {
        hcap = hcap ? 2 * hcap : 64;
        added_hit *h = realloc(hits, hcap * sizeof *h);
        if (!h) { eng_errf(err, errlen, "tokenizer: out of memory"); goto done; }
        hits = h;
      }
      if (eng_tki_norm_append(&nb, t->norm, text + seg, pos - seg)) { eng_errf(err, errlen, "tokenizer: out of memory"); goto done; }
      hits[nh++] = (added_hit){nb.n, a};
      if (eng_tki_nbuf_put(&nb, text + pos, t->added[a].len)) { eng_errf(err, errlen, "tokenizer: out of memory"); goto done; }
      pos += t->added[a].len;
      seg = pos;
    }
    if (eng_tki_norm_append(&nb, t->norm, text + seg, len - seg) || eng_tki_nbuf_put(&nb, NULL, 0)) {
      eng_errf(err, errlen, "tokenizer: out of memory");
      goto done;
    }
    text = nb.p; /* from here on the normalised text; its added tokens are hits[] (not matched again) */
    len = nb.n;
    c.lo = text;
    c.hi = text + len;
  }
  size_t pos = 0, seg = 0, hi = 0;
  while (pos < len) { /* leftmost-longest match of the added tokens */
    int hit;
    if (t->norm) {
      if (hi == nh) break;
      pos = hits[hi].pos;
      hit = hits[hi++].a;
    } else if ((hit = match_added(t, text, len, pos)) < 0) {
      pos++;
      continue;
    }
    if (segment(&c, text, text + seg, pos - seg) || push_ids(&c, &t->added[hit].id, 1)) goto done;
    pos += t->added[hit].len;
    seg = pos;
  }
  if (segment(&c, text, text + seg, len - seg)) goto done;
  if (!c.ids) c.ids = malloc(sizeof *c.ids); /* a valid pointer even for no tokens */
  if (!c.ids) { eng_errf(err, errlen, "tokenizer: out of memory"); goto done; }
  *ids = c.ids;
  *n = c.n;
  c.ids = NULL;
  rc = 0;
done:
  free(nb.p);
  free(hits);
  free(c.ids);
  free(c.syms);
  eng_bpe_scratch_free(&c.bs);
  eng_smap_free(&c.cache);
  pcre2_match_data_free(c.md);
  pcre2_match_context_free(c.mc);
  pcre2_jit_stack_free(c.js);
  return rc;
}

int eng_tok_decode(const eng_tokenizer *t, const int *ids, size_t n, char **text, size_t *len) {
  size_t total = 0;
  *text = NULL;
  if (len) *len = 0;
  for (size_t i = 0; i < n; i++) {
    if (ids[i] < 0 || ids[i] >= t->nids || t->plen[ids[i]] == NO_PIECE) return -1;
    total += t->plen[ids[i]];
  }
  char *o = malloc(total + 1);
  if (!o) return -1;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    memcpy(o + k, t->arena + t->poff[ids[i]], t->plen[ids[i]]);
    k += t->plen[ids[i]];
  }
  o[k] = 0;
  if (t->spm && t->spm_prefix && k && o[0] == ' ') { /* the dummy prefix */
    memmove(o, o + 1, k);
    k--;
  }
  *text = o;
  if (len) *len = k;
  return 0;
}

