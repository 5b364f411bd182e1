/* eng_gguf_write_int.h — internal to the GGUF writer (eng_gguf_write.c: tensor plan and
 * file; eng_gguf_meta.c: key/value section): the growable buffers the header is built in,
 * the key/value appenders, and the two metadata writers. */
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
/* tokenizer.ggml.* from tokenizer.json / tokenizer_config.json (or only bos/eos ids). */
int ggw_write_tokenizer(ggw_kv *k, const char *dir, const cJSON *cfg, int64_t n_vocab, char *err, size_t errlen);

#endif
