/* eng_tok_spm.c — tokenizers built from arrays (GGUF vocabularies via eng_tok_build),
 * SentencePiece ModelProto files (tokenizer.model, read with a minimal protobuf reader) and
 * SentencePiece-style tokenizer.json (Llama / Mistral / Mixtral: byte fallback, metaspace).
 * Shares the tokenizer internals of eng_tokenizer.c through eng_tokenizer_int.h.
 * tokenizer.json normalizers: Prepend("▁") / Replace(" " -> "▁") (the dummy prefix and
 * space handling of spm_segment) and the Unicode forms NFC/NFD/NFKC/NFKD (eng_tokenizer.c),
 * alone or in a Sequence; a form is applied before the space replacement, whatever its place in
 * the Sequence (differs only for NFKC/NFKD after Replace on text with compatibility spaces such
 * as U+00A0). Other normalizers are refused. tokenizer.model files are not normalised (their
 * normalizer_spec, e.g. nmt_nfkc, is not read). */
#include "engine/eng_tokenizer_int.h"

/* ---- building from arrays (GGUF vocabularies, SentencePiece models, SPM-style json) ------ */

/* Decoded bytes of an SPM piece: U+2581 -> ' ', <0xXX> byte pieces -> that byte. */
static int spm_piece_bytes(const char *s, size_t n, int type, char *o) {
  unsigned b;
  char tail;
  if (type == 6 && n == 6 && sscanf(s, "<0x%2X%c", &b, &tail) == 2 && tail == '>') { o[0] = (char)b; return 1; }
  size_t k = 0;
  for (size_t i = 0; i < n;) {
    if (i + 3 <= n && !memcmp(s + i, META, 3)) { o[k++] = ' '; i += 3; }
    else o[k++] = s[i++];
  }
  return (int)k;
}

static int cmp_float_desc(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return x > y ? -1 : x < y;
}

int eng_tok_build(eng_tokenizer **out, const eng_tok_spec *sp, const char *what, char *err, size_t errlen) {
  *out = NULL;
  if (sp->n <= 0 || sp->n >= (1 << 30)) return eng_errf(err, errlen, "%s: empty or absurd vocabulary (%d)", what, sp->n);
  eng_tokenizer *t = eng_tki_tok_new();
  eng_smap map = {0};
  float *sorted = NULL;
  char *tmp = NULL;
  int rc = -1;
  if (!t || eng_tki_alloc_ids(t, sp->n - 1) || eng_smap_init(&map, (size_t)sp->n) ||
      eng_pmap_init(&t->merges, (size_t)(sp->n_merges > sp->n ? sp->n_merges : sp->n) * 2)) {
    eng_errf(err, errlen, "%s: out of memory", what);
    goto done;
  }
  t->spm = sp->kind == ENG_TOK_SPM;
  t->spm_prefix = sp->spm_prefix;
  t->byte_fallback = sp->byte_fallback;
  for (int b = 0; b < 256; b++) t->byte_tok[b] = -1;
  size_t total = 0;
  for (int i = 0; i < sp->n; i++) total += sp->tok_len[i] + 1;
  if (t->spm && !(t->sym_arena = malloc(total + 1))) { eng_errf(err, errlen, "%s: out of memory", what); goto done; }
  if (t->spm && eng_smap_init(&t->sym, (size_t)sp->n)) { eng_errf(err, errlen, "%s: out of memory", what); goto done; }
  size_t so = 0;
  for (int i = 0; i < sp->n; i++) {
    int ty = sp->type ? sp->type[i] : 1;
    const char *s = sp->tok[i];
    size_t n = sp->tok_len[i];
    if (ty == 3 || ty == 4) { /* control / user-defined: matched literally before anything else */
      if (eng_tki_add_added(t, i, s, n)) { eng_errf(err, errlen, "%s: out of memory", what); goto done; }
      if (!t->spm && eng_smap_put(&map, s, n, i, 0)) { eng_errf(err, errlen, "%s: out of memory", what); goto done; }
      continue;
    }
    if (!t->spm) {
      if (ty == 5) continue; /* unused: decodable only (its piece is set after the whole-word map) */
      if (eng_smap_put(&map, s, n, i, 0) || eng_tki_set_piece(t, i, s, n, 0)) { eng_errf(err, errlen, "%s: out of memory", what); goto done; }
      continue;
    }
    char *o = malloc(n + 1);
    if (!o) { eng_errf(err, errlen, "%s: out of memory", what); goto done; }
    int k = spm_piece_bytes(s, n, ty, o);
    if (ty == 6 && k == 1) t->byte_tok[(unsigned char)o[0]] = i;
    int r = eng_tki_set_piece(t, i, o, (size_t)k, 1);
    free(o);
    if (r) { eng_errf(err, errlen, "%s: out of memory", what); goto done; }
    if (ty == 1 || ty == 5) { /* normal pieces are the symbols (unused ones never merge, see below) */
      memcpy(t->sym_arena + so, s, n);
      if (eng_smap_put(&t->sym, t->sym_arena + so, n, i, ty) || eng_smap_put(&map, t->sym_arena + so, n, i, ty)) {
        eng_errf(err, errlen, "%s: out of memory", what);
        goto done;
      }
      so += n;
    }
  }
  if (sp->n_merges > 0) { /* merges by rank: "a b" */
    for (int r = 0; r < sp->n_merges; r++) {
      const char *m = sp->merge[r], *spc = memchr(m, ' ', sp->merge_len[r]);
      if (!spc) { eng_errf(err, errlen, "%s: merge %d is not 'a b'", what, r); goto done; }
      if (eng_tki_add_merge(t, &map, m, (size_t)(spc - m), spc + 1, sp->merge_len[r] - (size_t)(spc - m) - 1, r, what, err, errlen)) goto done;
    }
  } else if (t->spm && sp->score) { /* SentencePiece: every split of a normal piece into two pieces, ranked by score */
    if (!(sorted = malloc(sizeof(float) * (size_t)sp->n))) { eng_errf(err, errlen, "%s: out of memory", what); goto done; }
    int ns = 0;
    for (int i = 0; i < sp->n; i++) if (!sp->type || sp->type[i] == 1) sorted[ns++] = sp->score[i];
    qsort(sorted, (size_t)ns, sizeof(float), cmp_float_desc);
    int nd = 0;
    for (int i = 0; i < ns; i++) if (nd == 0 || sorted[i] != sorted[nd - 1]) sorted[nd++] = sorted[i];
    for (int i = 0; i < sp->n; i++) {
      if (sp->type && sp->type[i] != 1) continue;
      const char *s = sp->tok[i];
      size_t n = sp->tok_len[i];
      int lo = 0, hi = nd - 1; /* dense rank of the score (descending) */
      while (lo < hi) { int mid = (lo + hi) / 2; if (sorted[mid] > sp->score[i]) lo = mid + 1; else hi = mid; }
      for (size_t k = 1; k < n; k++) {
        if (((unsigned char)s[k] & 0xc0) == 0x80) continue; /* not a character boundary */
        const eng_smap_ent *a = eng_smap_get(&t->sym, s, k), *b = eng_smap_get(&t->sym, s + k, n - k);
        if (a && b && a->val2 == 1 && b->val2 == 1 && eng_pmap_put(&t->merges, a->val, b->val, lo, i)) {
          eng_errf(err, errlen, "%s: out of memory", what);
          goto done;
        }
      }
    }
  }
  if (!t->spm) {
    if (sp->patterns) {
      for (int k = 0; k < sp->n_patterns; k++)
        if (eng_tki_add_stage(t, sp->patterns[k], what, err, errlen)) goto done;
    } else if (eng_tki_add_stage(t, sp->pattern ? sp->pattern : GPT2_PATTERN, what, err, errlen)) goto done;
    t->add_prefix_space = sp->add_prefix_space != 0;
    t->prefix_stage = sp->prefix_stage;
    t->ignore_merges = sp->ignore_merges != 0;
    if (eng_tki_finish(t, &map, NULL, what, err, errlen)) goto done;
    for (int i = 0; i < sp->n; i++) /* unused ids: out of every map, but they decode */
      if (sp->type && sp->type[i] == 5 && eng_tki_set_piece(t, i, sp->tok[i], sp->tok_len[i], 0)) {
        eng_errf(err, errlen, "%s: out of memory", what);
        goto done;
      }
  } else {
    for (int i = 0; i < t->nadded; i++) t->added[i].off = t->poff[t->added[i].id];
    eng_tki_index_added(t);
  }
  t->bos = sp->bos >= 0 && sp->bos < t->nids ? sp->bos : -1;
  t->eos = sp->eos >= 0 && sp->eos < t->nids ? sp->eos : -1;
  t->unk = sp->unk >= 0 && sp->unk < t->nids ? sp->unk : -1;
  rc = 0;
done:
  free(sorted);
  free(tmp);
  eng_smap_free(&map);
  if (rc) eng_tok_free(t);
  else *out = t;
  return rc;
}

/* ---- SentencePiece ModelProto (tokenizer.model) ----------------------------------------- */

typedef struct { const uint8_t *p, *end; } pb;

static int pb_varint(pb *b, uint64_t *v) {
  *v = 0;
  for (int s = 0; s < 64; s += 7) {
    if (b->p >= b->end) return -1;
    uint8_t c = *b->p++;
    *v |= (uint64_t)(c & 0x7f) << s;
    if (!(c & 0x80)) return 0;
  }
  return -1;
}

/* Reads one field: *wire, *field, and for length-delimited *sub; skips others. 0, 1 at end, -1 bad. */
static int pb_field(pb *b, int *field, int *wire, pb *sub, uint64_t *val) {
  if (b->p >= b->end) return 1;
  uint64_t key;
  if (pb_varint(b, &key)) return -1;
  *field = (int)(key >> 3);
  *wire = (int)(key & 7);
  switch (*wire) {
  case 0: return pb_varint(b, val);
  case 1: if (b->end - b->p < 8) return -1; memcpy(val, b->p, 8); b->p += 8; return 0;
  case 5: { if (b->end - b->p < 4) return -1; uint32_t x; memcpy(&x, b->p, 4); *val = x; b->p += 4; return 0; }
  case 2: {
    uint64_t n;
    if (pb_varint(b, &n) || n > (uint64_t)(b->end - b->p)) return -1;
    sub->p = b->p;
    sub->end = b->p + n;
    b->p += n;
    return 0;
  }
  default: return -1;
  }
}

int eng_tok_load_spm(eng_tokenizer **out, const char *path, int prefix_mode, char *err, size_t errlen) {
  *out = NULL;
  size_t len;
  char *data = eng_read_file(path, &len, (size_t)1 << 30, err, errlen);
  if (!data) return -1;
  pb b = {(const uint8_t *)data, (const uint8_t *)data + len}, sub;
  int field, wire, rc = -1, n = 0, cap = 0, model_type = 1, byte_fallback = 0, add_dummy = 1;
  uint64_t val;
  const char **tok = NULL;
  size_t *tlen = NULL;
  float *score = NULL;
  int *type = NULL;
  int r;
  while ((r = pb_field(&b, &field, &wire, &sub, &val)) == 0) {
    if (field == 1 && wire == 2) { /* SentencePiece {1: piece, 2: score, 3: type} */
      if (n == cap) {
        cap = cap ? cap * 2 : 1024;
        const char **t2 = realloc(tok, sizeof *tok * (size_t)cap);
        if (t2) tok = t2;
        size_t *l2 = realloc(tlen, sizeof *tlen * (size_t)cap);
        if (l2) tlen = l2;
        float *s2 = realloc(score, sizeof *score * (size_t)cap);
        if (s2) score = s2;
        int *y2 = realloc(type, sizeof *type * (size_t)cap);
        if (y2) type = y2;
        if (!t2 || !l2 || !s2 || !y2) { eng_errf(err, errlen, "%s: out of memory", path); goto done; }
      }
      tok[n] = "";
      tlen[n] = 0;
      score[n] = 0;
      type[n] = 1;
      pb s = sub, ps;
      int f2, w2, r2;
      uint64_t v2;
      while ((r2 = pb_field(&s, &f2, &w2, &ps, &v2)) == 0) {
        if (f2 == 1 && w2 == 2) { tok[n] = (const char *)ps.p; tlen[n] = (size_t)(ps.end - ps.p); }
        else if (f2 == 2 && w2 == 5) { uint32_t x = (uint32_t)v2; memcpy(&score[n], &x, 4); }
        else if (f2 == 3 && w2 == 0) type[n] = (int)v2;
      }
      if (r2 < 0) { eng_errf(err, errlen, "%s: malformed SentencePiece piece %d", path, n); goto done; }
      n++;
    } else if ((field == 2 || field == 3) && wire == 2) { /* trainer spec / normalizer spec */
      pb s = sub, ps;
      int f2, w2, r2;
      uint64_t v2;
      while ((r2 = pb_field(&s, &f2, &w2, &ps, &v2)) == 0) {
        if (field == 2 && f2 == 3 && w2 == 0) model_type = (int)v2;      /* 1 unigram, 2 bpe */
        if (field == 2 && f2 == 35 && w2 == 0) byte_fallback = v2 != 0;
        if (field == 3 && f2 == 3 && w2 == 0) add_dummy = v2 != 0;        /* add_dummy_prefix */
      }
      if (r2 < 0) { eng_errf(err, errlen, "%s: malformed SentencePiece spec", path); goto done; }
    }
  }
  if (r < 0) { eng_errf(err, errlen, "%s: not a SentencePiece model (malformed protobuf)", path); goto done; }
  if (n == 0) { eng_errf(err, errlen, "%s: no pieces (not a SentencePiece model)", path); goto done; }
  if (model_type != 2) { eng_errf(err, errlen, "%s: SentencePiece model type %d is not BPE (unsupported)", path, model_type); goto done; }
  int unk = -1, bos = -1, eos = -1;
  for (int i = 0; i < n; i++) {
    if (type[i] == 2 && unk < 0) unk = i;
    if (type[i] == 3 && tlen[i] == 3 && !memcmp(tok[i], "<s>", 3)) bos = i;
    if (type[i] == 3 && tlen[i] == 4 && !memcmp(tok[i], "</s>", 4)) eos = i;
    if (type[i] == 3) type[i] = 7; /* control pieces are never produced from text (sentencepiece) */
  }
  eng_tok_spec sp = {.kind = ENG_TOK_SPM, .n = n, .tok = tok, .tok_len = tlen, .type = type, .score = score,
                     .spm_prefix = add_dummy ? (prefix_mode ? prefix_mode : 1) : 0, .byte_fallback = byte_fallback,
                     .bos = bos, .eos = eos, .unk = unk};
  rc = eng_tok_build(out, &sp, path, err, errlen);
done:
  free(tok); free(tlen); free(score); free(type);
  free(data);
  return rc;
}

/* ---- SentencePiece-style tokenizer.json (Llama / Mistral / Mixtral) ---------------------- */

static int json_has_meta_replace(const cJSON *n) { /* a Replace(" " -> "▁") or Prepend("▁") normalizer inside n */
  if (!n) return 0;
  const cJSON *ty = cJSON_GetObjectItemCaseSensitive(n, "type");
  if (cJSON_IsString(ty) && (!strcmp(ty->valuestring, "Prepend") || !strcmp(ty->valuestring, "Replace"))) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(n, !strcmp(ty->valuestring, "Prepend") ? "prepend" : "content");
    if (cJSON_IsString(c) && !strcmp(c->valuestring, META)) return 1;
  }
  const cJSON *l = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
  for (const cJSON *e = cJSON_IsArray(l) ? l->child : NULL; e; e = e->next) if (json_has_meta_replace(e)) return 1;
  return 0;
}

static int json_has_prepend(const cJSON *n) {
  if (!n) return 0;
  const cJSON *ty = cJSON_GetObjectItemCaseSensitive(n, "type");
  if (cJSON_IsString(ty) && !strcmp(ty->valuestring, "Prepend")) return 1;
  const cJSON *l = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
  for (const cJSON *e = cJSON_IsArray(l) ? l->child : NULL; e; e = e->next) if (json_has_prepend(e)) return 1;
  return 0;
}

int eng_tki_spm_json_prefix(const cJSON *j) {
  const cJSON *pre = cJSON_GetObjectItemCaseSensitive(j, "pre_tokenizer");
  const cJSON *pt = cJSON_GetObjectItemCaseSensitive(pre, "type");
  if (json_has_prepend(cJSON_GetObjectItemCaseSensitive(j, "normalizer"))) return ENG_SPM_PREFIX_ALWAYS;
  if (!cJSON_IsString(pt)) return ENG_SPM_PREFIX_NONE;
  const cJSON *ps = cJSON_GetObjectItemCaseSensitive(pre, "prepend_scheme");
  const cJSON *aps = cJSON_GetObjectItemCaseSensitive(pre, "add_prefix_space");
  if (cJSON_IsString(ps)) return strcmp(ps->valuestring, "never") ? ENG_SPM_PREFIX_FIRST : ENG_SPM_PREFIX_NONE;
  return cJSON_IsFalse(aps) ? ENG_SPM_PREFIX_NONE : ENG_SPM_PREFIX_FIRST;
}

int eng_tki_is_spm_json(const cJSON *j) {
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
  const cJSON *pre = cJSON_GetObjectItemCaseSensitive(j, "pre_tokenizer");
  const cJSON *pt = cJSON_GetObjectItemCaseSensitive(pre, "type");
  return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback")) ||
         (cJSON_IsString(pt) && !strcmp(pt->valuestring, "Metaspace")) ||
         json_has_meta_replace(cJSON_GetObjectItemCaseSensitive(j, "normalizer"));
}

int eng_tki_load_spm_json(eng_tokenizer **out, const cJSON *j, const char *path, const char *config_json, char *err,
                         size_t errlen) {
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
  const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
  const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
  const cJSON *added = cJSON_GetObjectItemCaseSensitive(j, "added_tokens");
  const cJSON *pre = cJSON_GetObjectItemCaseSensitive(j, "pre_tokenizer");
  if (!cJSON_IsString(type) || strcmp(type->valuestring, "BPE") || !cJSON_IsObject(vocab) || !cJSON_IsArray(merges))
    return eng_errf(err, errlen, "%s: SentencePiece-style tokenizer must be model.type BPE with vocab and merges", path);
  const cJSON *pt = cJSON_GetObjectItemCaseSensitive(pre, "type");
  if (pre && !cJSON_IsNull(pre) && !(cJSON_IsString(pt) && !strcmp(pt->valuestring, "Metaspace")))
    return eng_errf(err, errlen, "%s: unsupported pre_tokenizer with a SentencePiece-style model (Metaspace only)", path);
  if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pre, "split")))
    return eng_errf(err, errlen, "%s: Metaspace split=true is not supported", path);
  int form = ENG_TOK_NORM_NONE; /* a Unicode form in the normalizer (Sequence): applied before " " -> U+2581 */
  if (eng_tki_parse_norm(cJSON_GetObjectItemCaseSensitive(j, "normalizer"), 1, &form, path, err, errlen)) return -1;
  int prefix = eng_tki_spm_json_prefix(j);
  int n = eng_tki_max_id_of(vocab, -1) + 1;
  for (const cJSON *a = cJSON_IsArray(added) ? added->child : NULL; a; a = a->next) {
    int id = eng_tki_vocab_id(cJSON_GetObjectItemCaseSensitive(a, "id"));
    if (id >= n) n = id + 1;
  }
  if (n <= 0) return eng_errf(err, errlen, "%s: empty vocab", path);
  int nm = cJSON_GetArraySize(merges), rc = -1;
  const char **tok = calloc((size_t)n, sizeof *tok), **mer = calloc((size_t)nm + 1, sizeof *mer);
  size_t *tl = calloc((size_t)n, sizeof *tl), *ml = calloc((size_t)nm + 1, sizeof *ml);
  int *ty = calloc((size_t)n, sizeof *ty);
  char **own = calloc((size_t)nm + 1, sizeof *own);
  if (!tok || !mer || !tl || !ml || !ty || !own) { eng_errf(err, errlen, "%s: out of memory", path); goto done; }
  for (int i = 0; i < n; i++) { tok[i] = ""; ty[i] = 5; }
  for (const cJSON *e = vocab->child; e; e = e->next) {
    int id = eng_tki_vocab_id(e);
    if (id < 0 || !e->string) { eng_errf(err, errlen, "%s: bad vocab entry", path); goto done; }
    tok[id] = e->string;
    tl[id] = strlen(e->string);
    unsigned b;
    char tail;
    ty[id] = tl[id] == 6 && sscanf(e->string, "<0x%2X%c", &b, &tail) == 2 && tail == '>' ? 6 : 1;
  }
  for (const cJSON *a = cJSON_IsArray(added) ? added->child : NULL; a; a = a->next) {
    int id = eng_tki_vocab_id(cJSON_GetObjectItemCaseSensitive(a, "id"));
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(a, "content");
    if (id < 0 || !cJSON_IsString(c)) { eng_errf(err, errlen, "%s: bad added_tokens entry", path); goto done; }
    tok[id] = c->valuestring;
    tl[id] = strlen(c->valuestring);
    ty[id] = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "special")) ? 3 : 4;
  }
  int r = 0;
  for (const cJSON *m = merges->child; m; m = m->next, r++) {
    if (cJSON_IsString(m)) { mer[r] = m->valuestring; ml[r] = strlen(m->valuestring); continue; }
    if (cJSON_GetArraySize(m) != 2 || !cJSON_IsString(m->child) || !cJSON_IsString(m->child->next)) {
      eng_errf(err, errlen, "%s: merge %d is neither \"a b\" nor [\"a\", \"b\"]", path, r);
      goto done;
    }
    size_t la = strlen(m->child->valuestring), lb = strlen(m->child->next->valuestring);
    if (!(own[r] = malloc(la + lb + 2))) { eng_errf(err, errlen, "%s: out of memory", path); goto done; }
    memcpy(own[r], m->child->valuestring, la);
    own[r][la] = ' ';
    memcpy(own[r] + la + 1, m->child->next->valuestring, lb + 1);
    mer[r] = own[r];
    ml[r] = la + lb + 1;
  }
  const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
  int unk_id = -1;
  if (cJSON_IsString(unk))
    for (int i = 0; i < n && unk_id < 0; i++) if (!strcmp(tok[i], unk->valuestring)) unk_id = i;
  eng_tok_spec sp = {.kind = ENG_TOK_SPM, .n = n, .tok = tok, .tok_len = tl, .type = ty, .n_merges = nm, .merge = mer,
                     .merge_len = ml, .spm_prefix = prefix,
                     .byte_fallback = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback")),
                     .bos = -1, .eos = -1, .unk = unk_id};
  if (eng_tok_build(out, &sp, path, err, errlen)) goto done;
  (*out)->norm = form;
  if (config_json) {
    cJSON *cfg = eng_tki_parse_json_file(config_json, err, errlen);
    if (!cfg) { eng_tok_free(*out); *out = NULL; goto done; }
    (*out)->bos = eng_tki_config_token(*out, cfg, "bos_token");
    (*out)->eos = eng_tki_config_token(*out, cfg, "eos_token");
    cJSON_Delete(cfg);
  }
  rc = 0;
done:
  for (int i = 0; own && i < nm; i++) free(own[i]);
  free(own); free(tok); free(mer); free(tl); free(ml); free(ty);
  return rc;
}

