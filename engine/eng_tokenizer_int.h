/* eng_tokenizer_int.h — internals shared by the tokenizer's files (eng_tokenizer.c: loading
 * tokenizer.json / vocab+merges, encoding, decoding; eng_tok_spm.c: building from arrays,
 * SentencePiece models and SPM-style tokenizer.json). Not part of the engine's API. */
#ifndef MOESCOPE_ENG_TOKENIZER_INT_H
#define MOESCOPE_ENG_TOKENIZER_INT_H
#define PCRE2_CODE_UNIT_WIDTH 8
#include "engine/eng_util.h"
#include "engine/eng_tokenizer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/eng_bpe.h"

#define GPT2_PATTERN "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
/* Unicode White_Space (as Oniguruma's \s), for use inside a character class. */
#define WS_CLASS "\\t\\n\\x0B\\f\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}" \
                 "\\x{202F}\\x{205F}\\x{3000}"
#define MAX_STAGES 8
#define NO_PIECE UINT32_MAX

typedef struct {
  uint32_t off, len; /* content bytes in arena */
  int id;
  unsigned char first;
} added_tok;

struct eng_tokenizer {
  int nids;                 /* max id + 1 */
  uint32_t *poff, *plen;    /* raw bytes of each id in arena; plen NO_PIECE: no token */
  char *arena;
  size_t arena_n, arena_cap;
  eng_pmap merges;
  int byte_id[256];         /* token of each single byte, -1 when none */
  added_tok *added;         /* sorted by first byte, then longest first */
  int nadded;
  int added_lo[257];        /* added[added_lo[b] .. added_lo[b+1]) start with byte b */
  pcre2_code *re[MAX_STAGES];
  int nre;
  int prefix_stage, add_prefix_space; /* ByteLevel's add_prefix_space and where it sits */
  int ignore_merges;
  eng_smap whole;           /* raw piece -> id (only with ignore_merges) */
  int bos, eos, unk;
  int b2u[256], u2b[512];   /* GPT-2 byte <-> code point table */
  /* SentencePiece-style BPE (spm != 0): symbols are characters looked up in `sym` (piece
   * text with U+2581 for space -> id), merged by `merges`; a character that is no piece is
   * emitted as its <0xXX> byte tokens (byte_tok) or unk. */
  int spm, spm_prefix, byte_fallback;
  eng_smap sym;
  char *sym_arena;
  int byte_tok[256];
  int norm;                 /* ENG_TOK_NORM_*: applied to the text between added tokens (utf8proc) */
};

#define TOK_MAX_FILE ((size_t)1 << 30)
#define META "\xe2\x96\x81" /* U+2581, SentencePiece's space */


int eng_tki_vocab_id(const cJSON *e);
int eng_tki_set_piece(eng_tokenizer *t, int id, const char *s, size_t n, int raw);
int eng_tki_config_token(const eng_tokenizer *t, const cJSON *cfg, const char *key);
eng_tokenizer *eng_tki_tok_new(void);
cJSON *eng_tki_parse_json_file(const char *path, char *err, size_t errlen);
int eng_tki_max_id_of(const cJSON *obj, int maxid);
void eng_tki_index_added(eng_tokenizer *t);
int eng_tki_finish(eng_tokenizer *t, const eng_smap *map, const char *config_json, const char *path,
                  char *err, size_t errlen);
int eng_tki_alloc_ids(eng_tokenizer *t, int maxid);
int eng_tki_add_stage(eng_tokenizer *t, const char *pattern, const char *path, char *err, size_t errlen);
int eng_tki_add_merge(eng_tokenizer *t, const eng_smap *map, const char *a, size_t an, const char *b,
                     size_t bn, int rank, const char *path, char *err, size_t errlen);
int eng_tki_add_added(eng_tokenizer *t, int id, const char *s, size_t n);
/* The HF "normalizer" node (may be NULL / JSON null) -> *form (ENG_TOK_NORM_*). NFC, NFD, NFKC,
 * NFKD and Sequences of them; with spm also Prepend("\u2581") and Replace(" " -> "\u2581"),
 * which the SentencePiece-style loader applies itself. Anything else: -1 (+err). */
int eng_tki_parse_norm(const cJSON *norm, int spm, int *form, const char *path, char *err, size_t errlen);
/* A growable NUL-terminated byte buffer (eng_tok_norm.c) and form(s[0..n)) appended to it:
 * ASCII and invalid UTF-8 bytes pass through, each valid run is normalised. 0 or -1 (no memory). */
typedef struct { char *p; size_t n, cap; } eng_tki_nbuf;
int eng_tki_nbuf_put(eng_tki_nbuf *b, const char *s, size_t n);
int eng_tki_norm_append(eng_tki_nbuf *b, int form, const char *s, size_t n);
int eng_tki_is_spm_json(const cJSON *j);
/* The SentencePiece dummy prefix of an SPM-style tokenizer.json (ENG_SPM_PREFIX_*): ALWAYS with a
 * Prepend("\u2581") normalizer, else from Metaspace prepend_scheme / add_prefix_space. */
int eng_tki_spm_json_prefix(const cJSON *j);
int eng_tki_load_spm_json(eng_tokenizer **out, const cJSON *j, const char *path, const char *config_json, char *err,
                         size_t errlen);

#endif
