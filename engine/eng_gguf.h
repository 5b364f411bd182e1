/* eng_gguf.h — GGUF v3 (llama.cpp's model file format): a validating, mmap-based reader,
 * the bridge that presents a GGUF model to the rest of the engine as an eng_st_set with
 * Hugging Face tensor names plus a config.json text, and the writer behind
 * `moescope convert`.
 *
 * File layout (little-endian): "GGUF", u32 version (3), u64 n_tensors, u64 n_kv; n_kv
 * key/value pairs (gguf string key = u64 length + bytes, u32 value type, value; arrays =
 * u32 element type + u64 count + elements); n_tensors tensor infos (name, u32 n_dims,
 * u64 ne[n_dims] innermost first, u32 ggml type, u64 offset relative to the data
 * section); padding to general.alignment (default 32); the data section.
 *
 * Everything is validated before use and before anything is sized from the file:
 * counts and lengths are bounded by the bytes that remain, dims by 4 and non-negative
 * with a product that cannot overflow, types known (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K,
 * Q6_K and the other common ggml types by block size), offsets aligned and inside the file, no two
 * tensors overlapping, no duplicate tensor names or keys. Errors are one line naming the
 * file and the offending key or tensor.
 */
#ifndef MOESCOPE_ENG_GGUF_H
#define MOESCOPE_ENG_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "engine/eng_safetensors.h"

/* GGUF metadata value types. */
enum { GGUF_T_U8 = 0, GGUF_T_I8, GGUF_T_U16, GGUF_T_I16, GGUF_T_U32, GGUF_T_I32, GGUF_T_F32, GGUF_T_BOOL,
       GGUF_T_STRING, GGUF_T_ARRAY, GGUF_T_U64, GGUF_T_I64, GGUF_T_F64, GGUF_T_COUNT };

/* ggml tensor types used here (ggml.h numbering). */
enum { GGML_T_F32 = 0, GGML_T_F16 = 1, GGML_T_Q4_0 = 2, GGML_T_Q8_0 = 8, GGML_T_Q4_K = 12, GGML_T_Q5_K = 13,
       GGML_T_Q6_K = 14, GGML_T_BF16 = 30 };

#define ENG_GGUF_MAX_DIMS 4

typedef struct eng_gguf_kv {
  char *key;               /* NUL-terminated copy */
  int type;                /* GGUF_T_* */
  int arr_type;            /* element type when type == GGUF_T_ARRAY */
  uint64_t n;              /* array length (1 for a scalar) */
  const uint8_t *data;     /* scalar value / first array element (strings: at their u64 length) */
  uint64_t *str_off;       /* string arrays: offset of each element from data (malloc'd) */
} eng_gguf_kv;

typedef struct eng_gguf_tensor {
  char *name;
  int ggml_type;
  int n_dims;
  int64_t ne[ENG_GGUF_MAX_DIMS]; /* ne[0] innermost */
  uint64_t offset;               /* from the data section */
  size_t nbytes;
  const uint8_t *data;           /* into the mapping */
} eng_gguf_tensor;

typedef struct eng_gguf {
  char *path;
  const uint8_t *base;     /* the mapping (or the caller's buffer) */
  size_t size;
  int mapped;              /* base is an mmap this struct owns */
  uint32_t version;
  uint64_t n_kv, n_tensors;
  eng_gguf_kv *kv;
  eng_gguf_tensor *tensors;
  size_t alignment;
  size_t data_offset;
} eng_gguf;

/* Maps and validates a GGUF file. 0, or -1 with one line in err. */
int eng_gguf_open(eng_gguf *g, const char *path, char *err, size_t errlen);
/* Validates a GGUF image in memory (not copied: buf must outlive g). name labels errors. */
int eng_gguf_parse(eng_gguf *g, const void *buf, size_t size, const char *name, char *err, size_t errlen);
void eng_gguf_close(eng_gguf *g);

const eng_gguf_kv *eng_gguf_find(const eng_gguf *g, const char *key);
const eng_gguf_tensor *eng_gguf_find_tensor(const eng_gguf *g, const char *name);
/* Scalar accessors (any integer / any numeric type). 0, or -1 when absent or of another type. */
int eng_gguf_get_int(const eng_gguf *g, const char *key, int64_t *out);
int eng_gguf_get_float(const eng_gguf *g, const char *key, double *out);
/* String value (not NUL-terminated) or NULL. */
const char *eng_gguf_get_str(const eng_gguf *g, const char *key, size_t *len);
/* Array elements: i < kv->n is the caller's duty. */
const char *eng_gguf_arr_str(const eng_gguf_kv *kv, uint64_t i, size_t *len);
int64_t eng_gguf_arr_int(const eng_gguf_kv *kv, uint64_t i);
double eng_gguf_arr_float(const eng_gguf_kv *kv, uint64_t i);

const char *eng_ggml_type_name(int ggml_type);
/* ggml type -> eng_dtype (F32, F16, BF16, F64, I8, I32, I64, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K) or -1. */
int eng_ggml_to_dtype(int ggml_type);

/* Opens a GGUF model for the engine: set receives the weights under Hugging Face names
 * (the mapping becomes the set's file 0; Q/K rows of llama-architecture files are
 * un-permuted back to HF order into heap buffers the set owns; stacked experts
 * ffn_{gate,up,down}_exps [E, ...] become per-expert slices pointing into the mapping),
 * *config_json_text a malloc'd config.json for it built from the GGUF metadata.
 * Unknown tensor names are kept under their GGUF name. 0, or -1 (+err). */
int eng_gguf_model_source(const char *path, eng_st_set *set, char **config_json_text, char *err, size_t errlen);

/* Builds the config.json text of an opened GGUF (malloc'd) or NULL (+err). */
char *eng_gguf_config_json(const eng_gguf *g, char *err, size_t errlen);

/* moescope-specific metadata key: the source model's config.json text, written by
 * eng_gguf_convert and preferred by eng_gguf_config_json when present. */
#define ENG_GGUF_KEY_HF_CONFIG "moescope.hf_config"

/* Output tensor types of eng_gguf_convert. */
enum { ENG_GGUF_OUT_F32 = 0, ENG_GGUF_OUT_F16, ENG_GGUF_OUT_BF16, ENG_GGUF_OUT_Q8_0, ENG_GGUF_OUT_Q4_0,
       ENG_GGUF_OUT_Q4_K, ENG_GGUF_OUT_Q5_K, ENG_GGUF_OUT_Q6_K, ENG_GGUF_OUT_COUNT };
/* "f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q5_k", "q6_k" (any case) -> ENG_GGUF_OUT_*, or -1. */
int eng_gguf_out_type(const char *s);

typedef void (*eng_gguf_progress)(void *user, double done, double total);

/* Writes a GGUF v3 file from a Hugging Face model folder (config.json, safetensors, and
 * tokenizer.json / tokenizer_config.json when present) with llama.cpp's tensor names and
 * metadata. 1-D tensors (norms, biases) and the router (ffn_gate_inp) stay F32 as
 * llama.cpp's converter does; Q8_0/Q4_0 fall back to F16 for rows not a multiple of 32;
 * Q4_K/Q5_K/Q6_K (moescope's own quantizer, kernels/krn_kquant.h) fall back to Q8_0 for
 * rows a multiple of 32 but not of 256, else to F16.
 * Written to a temporary file in the same folder and renamed into place. 0 or -1 (+err). */
int eng_gguf_convert(const char *model_dir, const char *out_path, int out_type, eng_gguf_progress progress,
                     void *progress_user, char *err, size_t errlen);

/* eng_gguf_convert with flags:
 *  ENG_GGUF_CONVERT_NO_HF_CONFIG: no moescope.hf_config key, only llama.cpp's metadata (plus
 *    the few moescope.* keys eng_gguf_meta.c adds where llama.cpp's keys cannot say what the
 *    engine runs), as a GGUF from another tool would be; for testing the metadata reader.
 *  ENG_GGUF_CONVERT_SPLIT_KV_B: DeepSeek kv_b_proj as attn_k_b + attn_v_b with the MLA
 *    metadata of newer llama.cpp (head_count_kv 1, key_length_mla, value_length_mla). */
enum { ENG_GGUF_CONVERT_NO_HF_CONFIG = 1, ENG_GGUF_CONVERT_SPLIT_KV_B = 2 };
int eng_gguf_convert_ex(const char *model_dir, const char *out_path, int out_type, int flags,
                        eng_gguf_progress progress, void *progress_user, char *err, size_t errlen);

#endif
