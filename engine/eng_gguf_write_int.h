/* eng_gguf_write_int.h — internal to the GGUF writer (eng_gguf_write.c: tensor plan and
 * file; eng_gguf_meta.c: key/value section): the growable buffers the header is built in,
 * the key/value appenders, and the two metadata writers; also the moescope.tokenizer.* keys
 * and the tokenizer.ggml.pre table shared with the GGUF tokenizer reader (eng_gguf_tok.c). */
#ifndef MOESCOPE_ENG_GGUF_WRITE_INT_H
#define MOESCOPE_ENG_GGUF_WRITE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "engine/eng_model.h"

typedef struct cJSON cJSON;

typedef struct { uint8_t *p; size_t n, cap; int oom; } ggw_buf;    /* oom: sticky */
typedef struct { ggw_buf b; uint64_t n; } ggw_kv;                  /* n: pairs so far */

void ggw_put(ggw_buf *b, const void *d, size_t n);
void ggw_put_u32(ggw_buf *b, uint32_t v);
void ggw_put_u64(ggw_buf *b, uint64_t v);
void ggw_put_str(ggw_buf *b, const char *s, size_t n);
void ggw_kv_key(ggw_kv *k, const char *key, uint32_t type);
void ggw_kv_u32(ggw_kv *k, const char *key, uint32_t v);
void ggw_kv_f32(ggw_kv *k, const char *key, float v);
void ggw_kv_bool(ggw_kv *k, const char *key, int v);
void ggw_kv_str(ggw_kv *k, const char *key, const char *s);
void ggw_kv_arr(ggw_kv *k, const char *key, uint32_t elem_type, uint64_t n);

/* config.json helpers: a number (bool -> 0/1, array -> first element) or 0 when absent. */
int ggw_cfg_num(const cJSON *c, const char *k, double *v);
cJSON *ggw_load_json(const char *path);

/* <arch>.* hyperparameters as llama.cpp's convert_hf_to_gguf.py writes them (from the
 * effective eng_config c, so defaults are the engine's), plus moescope.* keys only where
 * those cannot reproduce c. flags: ENG_GGUF_CONVERT_*. -1 (+err) when metadata-only mode
 * cannot express the model. */
int ggw_write_hparams(ggw_kv *k, const cJSON *cfg, const eng_config *c, const char *arch, int flags, const char *dir,
                      char *err, size_t errlen);
/* tokenizer.ggml.* from tokenizer.json / tokenizer_config.json (or only bos/eos ids), plus the
 * moescope.tokenizer.* keys below where those cannot say what tokenizer.json does. */
int ggw_write_tokenizer(ggw_kv *k, const char *dir, const cJSON *cfg, int64_t n_vocab, char *err, size_t errlen);

/* moescope.tokenizer.* keys: written by ggw_write_tokenizer, read by eng_tok_load_gguf
 * (eng_gguf_tok.c); llama.cpp ignores them. */
#define GGW_TOK_PATTERN "moescope.tokenizer.pattern"           /* string, or array of strings: the exact
                                                                * split regexes in order (byte-level) when
                                                                * no tokenizer.ggml.pre name gives them */
#define GGW_TOK_NORMALIZER "moescope.tokenizer.normalizer"     /* "NFC", "NFD", "NFKC" or "NFKD" */
#define GGW_TOK_PREFIX_STAGE "moescope.tokenizer.prefix_stage" /* u32: the regex stage ByteLevel's
                                                                * add_prefix_space applies at (absent: 0) */
#define GGW_TOK_IGNORE_MERGES "moescope.tokenizer.ignore_merges" /* bool, when not what the pre name implies */
#define GGW_TOK_PREPEND_SCHEME "moescope.tokenizer.prepend_scheme" /* SPM: "first" (HF Metaspace: the dummy
                                                                    * prefix only when the text does not
                                                                    * start with a space) */

/* The split regexes (tokenizer.json spelling) that llama.cpp associates with a
 * tokenizer.ggml.pre name, and whether that name implies ignore_merges (eng_gguf_tok.c).
 * Returns the number of regexes, -1 for an unknown name. */
int ggw_pre_regexes(const char *pre, size_t len, const char *const **re, int *ignore_merges);
/* The pre name whose regexes are re[0..n) (raw CR/LF/TAB and their escapes compare equal),
 * preferring one whose ignore_merges matches (*im_ok = 1 then); NULL when none. */
const char *ggw_pre_name(const char *const *re, int n, int ignore_merges, int *im_ok);

#endif
