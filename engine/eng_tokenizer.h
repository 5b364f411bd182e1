/* eng_tokenizer.h — text <-> token ids for the models we run.
 *
 * Loads a Hugging Face tokenizer.json (model.type "BPE") with a byte-level pre-tokenizer
 * (GPT-2 regex via PCRE2 with Unicode properties, GPT-2 byte<->unicode table, merges by
 * rank) and added/special tokens (split out literally before pre-tokenization).
 * BOS/EOS come from tokenizer_config.json when given. Encoding never prepends BOS.
 * A tokenizer.json "normalizer" NFC / NFD / NFKC / NFKD (alone or in a Sequence) is applied
 * (libutf8proc) to the text between added tokens before it is tokenised: what is encoded is
 * N(x), not x. Invalid UTF-8 is never rejected: the bytes of an ill-formed sequence pass
 * through unnormalised, and the valid runs around them are normalised each on its own.
 * Decoding concatenates the raw bytes of the tokens (a token may hold part of a UTF-8
 * character), so decode(encode(x)) == N(x) byte for byte (== x without a normalizer).
 */
#ifndef MOESCOPE_ENG_TOKENIZER_H
#define MOESCOPE_ENG_TOKENIZER_H

#include <stddef.h>

typedef struct eng_tokenizer eng_tokenizer;

/* tokenizer_json: path of tokenizer.json; config_json: tokenizer_config.json or NULL.
 * Returns 0, or -1 with one clear line in err naming the file and the problem. */
int eng_tok_load(eng_tokenizer **out, const char *tokenizer_json, const char *config_json,
                 char *err, size_t errlen);
/* The older pair of files instead of tokenizer.json: vocab.json (piece -> id) and
 * merges.txt (optional "#version" line, then one "a b" merge per line, by rank). Added
 * tokens come from config_json's "added_tokens_decoder" (may be NULL). pattern: the
 * pre-tokenizer regex, NULL for GPT-2's. Byte-level as above. 0 or -1 (+err). */
int eng_tok_load_vocab_merges(eng_tokenizer **out, const char *vocab_json, const char *merges_txt,
                              const char *config_json, const char *pattern, char *err, size_t errlen);
void eng_tok_free(eng_tokenizer *t);

/* A vocabulary given as arrays (GGUF tokenizer.ggml.*, SentencePiece models). */
enum { ENG_TOK_BYTE_BPE = 0, ENG_TOK_SPM = 1 };
/* SPM dummy prefix: none; always (sentencepiece add_dummy_prefix, llama.cpp add_space_prefix);
 * unless the text already starts with a space (HF tokenizer.json Metaspace prepend_scheme first). */
enum { ENG_SPM_PREFIX_NONE = 0, ENG_SPM_PREFIX_ALWAYS = 1, ENG_SPM_PREFIX_FIRST = 2 };
typedef struct eng_tok_spec {
  int kind;                       /* ENG_TOK_* */
  int n;                          /* ids 0..n-1 */
  const char *const *tok;         /* byte-level: GPT-2 unicode form; SPM: pieces with U+2581 */
  const size_t *tok_len;
  const int *type;                /* 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte;
                                   * 3 and 4 are split out literally first; 5 (e.g. [PADn] fillers) is
                                   * never matched nor produced, only decoded; 7+ are inert. NULL: all 1 */
  const float *score;             /* SPM without merges: pieces merge by descending score */
  int n_merges;                   /* "a b" merges by rank (byte-level, or SPM-style tokenizer.json) */
  const char *const *merge;
  const size_t *merge_len;
  const char *pattern;            /* byte-level pre-tokenizer regex; NULL = GPT-2's */
  const char *const *patterns;    /* non-NULL: the byte-level regex stages in order (n_patterns, 0 = none:
                                   * a segment is one word), used instead of pattern */
  int n_patterns;
  int add_prefix_space;           /* byte-level: HF ByteLevel add_prefix_space, applied to each piece */
  int prefix_stage;               /*   entering regex stage prefix_stage (where ByteLevel sits) */
  int ignore_merges;              /* byte-level: a word that is a vocabulary piece is that token (HF) */
  int spm_prefix;                 /* ENG_SPM_PREFIX_* */
  int byte_fallback;              /* SPM: unknown characters -> <0xXX> tokens (else unk) */
  int bos, eos, unk;              /* -1 none */
} eng_tok_spec;
/* Builds a tokenizer from arrays; `what` labels errors. 0 or -1 (+err). */
int eng_tok_build(eng_tokenizer **out, const eng_tok_spec *spec, const char *what, char *err, size_t errlen);
/* SentencePiece tokenizer.model (ModelProto protobuf; BPE models only). prefix_mode 0 = the
 * model's add_dummy_prefix semantics (sentencepiece); ENG_SPM_PREFIX_FIRST = HF tokenizer.json
 * Metaspace semantics. BOS/EOS = the <s> / </s> control pieces. 0 or -1 (+err). */
int eng_tok_load_spm(eng_tokenizer **out, const char *tokenizer_model, int prefix_mode, char *err, size_t errlen);
/* The vocabulary embedded in a GGUF file (tokenizer.ggml.model "gpt2" or "llama"). The
 * split regexes come from moescope.tokenizer.pattern when present, else from the regexes
 * llama.cpp associates with tokenizer.ggml.pre; the normalizer from moescope.tokenizer.normalizer
 * (GGUF has no llama.cpp key for one; llama.cpp does not normalise). 0; -2 (+err) when the
 * file has no tokenizer.ggml.model key (no embedded tokenizer); -1 (+err) else. */
int eng_tok_load_gguf(eng_tokenizer **out, const char *gguf_path, char *err, size_t errlen);
/* The tokenizer of a model given as `moescope --model` takes it: a folder -> its
 * tokenizer.json (+ tokenizer_config.json when present); a *.gguf file -> the embedded
 * vocabulary, or when it has none, tokenizer.json (+ config) in the file's folder.
 * src (may be NULL) receives where it came from ("x.gguf (embedded)", ".../tokenizer.json").
 * 0 or -1 (+err). */
int eng_tok_load_model(eng_tokenizer **out, const char *model, char *src, size_t srclen, char *err, size_t errlen);

/* Unicode normalization forms (HF normalizers NFC, NFD, NFKC, NFKD). */
enum { ENG_TOK_NORM_NONE = 0, ENG_TOK_NORM_NFC, ENG_TOK_NORM_NFD, ENG_TOK_NORM_NFKC, ENG_TOK_NORM_NFKD };
/* Sets the form applied before encoding (e.g. NFC for Qwen2's vocab.json + merges.txt, whose
 * HF tokenizers normalise with NFC). */
void eng_tok_set_norm(eng_tokenizer *t, int form);
int eng_tok_norm(const eng_tokenizer *t);          /* ENG_TOK_NORM_* */
const char *eng_tok_norm_name(int form);           /* "none", "NFC", ... */
int eng_tok_kind(const eng_tokenizer *t);          /* ENG_TOK_BYTE_BPE or ENG_TOK_SPM */
/* Normalises len bytes of text as the encoder does (see above); *out is malloc'd and
 * NUL-terminated, *outlen excludes the NUL. 0, or -1 when out of memory. */
int eng_tok_normalize(int form, const char *text, size_t len, char **out, size_t *outlen);

int eng_tok_vocab_size(const eng_tokenizer *t);   /* max id + 1 */
int eng_tok_bos(const eng_tokenizer *t);          /* -1 when none */
int eng_tok_eos(const eng_tokenizer *t);          /* -1 when none */

/* Encodes len bytes of text. *ids is malloc'd (caller frees). 0 or -1 (+err). */
int eng_tok_encode(const eng_tokenizer *t, const char *text, size_t len, int **ids, size_t *n,
                   char *err, size_t errlen);

/* Decodes to a malloc'd, NUL-terminated byte string (*len excludes the NUL).
 * Returns 0, or -1 when an id is out of range. */
int eng_tok_decode(const eng_tokenizer *t, const int *ids, size_t n, char **text, size_t *len);

/* Raw bytes of one token (not NUL-terminated), NULL when id is out of range. */
const char *eng_tok_piece(const eng_tokenizer *t, int id, size_t *len);

#endif
