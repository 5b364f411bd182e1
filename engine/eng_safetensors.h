/* eng_safetensors.h — read-only access to safetensors checkpoints (single file or
 * sharded via model.safetensors.index.json), memory-mapped, every header field
 * validated before use: header length within the file, JSON well-formed, dtype known,
 * shape non-negative, data_offsets inside the data section, byte size equal to
 * prod(shape) * dtype size, no two tensors overlapping. Errors name the file and tensor.
 */
#ifndef MOESCOPE_ENG_SAFETENSORS_H
#define MOESCOPE_ENG_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

/* The first ENG_DT_ST_COUNT values are the safetensors dtypes. Q8_0 and Q4_0 are GGML block
 * types (only GGUF files hold them): 32 elements per block, Q8_0 = f16 scale + 32 int8
 * (34 bytes), Q4_0 = f16 scale + 16 bytes of nibbles (18 bytes); Q4_K / Q5_K / Q6_K are
 * GGML K-quant super-blocks of 256 elements (144 / 176 / 210 bytes; kernels/krn_kquant.h).
 * The block runs along the innermost (last) dimension, which must be a multiple of the
 * block. The codes equal kernels/krn_backend.h's KRN_DT_* (checked in eng_model.c). */
enum eng_dtype { ENG_DT_F32 = 0, ENG_DT_F16, ENG_DT_BF16, ENG_DT_F64, ENG_DT_I64, ENG_DT_I32,
                 ENG_DT_I8, ENG_DT_U8, ENG_DT_BOOL, ENG_DT_Q8_0, ENG_DT_Q4_0, ENG_DT_Q4_K, ENG_DT_Q5_K,
                 ENG_DT_Q6_K, ENG_DT_COUNT };
#define ENG_DT_ST_COUNT ENG_DT_Q8_0
const char *eng_dtype_name(int dt);      /* safetensors spelling: "F32", "BF16", ...; "Q8_0", "Q4_K", ... */
size_t eng_dtype_size(int dt);           /* bytes per element; 0 for the block types */
/* Bytes of numel elements (0 when a block type's numel is not a multiple of its block). */
size_t eng_dtype_nbytes(int dt, int64_t numel);
/* Elements per block (1 for plain types) and bytes per block. */
int eng_dtype_block(int dt, size_t *block_bytes);
/* Whether eng_st_to_f32 converts this dtype (F32, F16, BF16, F64, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K). */
int eng_dtype_is_float(int dt);

#define ENG_ST_MAXDIM 8

typedef struct eng_st_tensor {
  char *name;
  int dtype;
  int ndim;
  int64_t shape[ENG_ST_MAXDIM];
  const uint8_t *data;     /* into the mapping */
  size_t nbytes;
  int file;                /* index into eng_st_set.paths */
} eng_st_tensor;

typedef struct eng_st_set {
  int n_files;
  char **paths;
  void **maps;
  size_t *map_sizes;
  int n_tensors;
  eng_st_tensor *tensors;  /* sorted by name */
  int n_owned;             /* heap buffers some tensors point into (e.g. GGUF rows */
  void **owned;            /* re-ordered at load); freed by eng_st_close */
} eng_st_set;

/* Opens dir/model.safetensors, or the shards listed by dir/model.safetensors.index.json. */
int eng_st_open_dir(eng_st_set *set, const char *dir, char *err, size_t errlen);
/* Opens one file. */
int eng_st_open_file(eng_st_set *set, const char *path, char *err, size_t errlen);
void eng_st_close(eng_st_set *set);
const eng_st_tensor *eng_st_find(const eng_st_set *set, const char *name);
int64_t eng_st_numel(const eng_st_tensor *t);

/* Converts all elements of F32/F16/BF16/F64 data to float32 (BF16 widened exactly) and
 * dequantises Q8_0 / Q4_0 exactly as ggml does (q * f16 scale, (q - 8) * scale), and the
 * K-quants with the kernels' definition (krn_kquant.c, equal to ggml's).
 * 0, or -1 for a dtype that is not floating point. */
int eng_st_to_f32(float *dst, const eng_st_tensor *t);
/* The same for n elements of raw data of dtype dt (n a multiple of the block size). */
int eng_dt_to_f32(float *dst, const void *src, int dt, int64_t n);

/* Quantises n floats (n a multiple of 32) into dst, bit-exact with ggml's reference
 * quantize_row_q8_0_ref / quantize_row_q4_0_ref (ggml-quants.c). */
void eng_quant_q8_0(void *dst, const float *src, int64_t n);
void eng_quant_q4_0(void *dst, const float *src, int64_t n);
/* Registers a heap buffer the set frees on close. 0 or -1 (OOM; buf is then freed). */
int eng_st_own(eng_st_set *set, void *buf);

float eng_bf16_to_f32(uint16_t h);
float eng_f16_to_f32(uint16_t h);

#endif
