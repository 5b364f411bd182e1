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

enum eng_dtype { ENG_DT_F32 = 0, ENG_DT_F16, ENG_DT_BF16, ENG_DT_F64, ENG_DT_I64, ENG_DT_I32,
                 ENG_DT_I8, ENG_DT_U8, ENG_DT_BOOL, ENG_DT_COUNT };
const char *eng_dtype_name(int dt);      /* safetensors spelling: "F32", "BF16", ... */
size_t eng_dtype_size(int dt);

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
} eng_st_set;

/* Opens dir/model.safetensors, or the shards listed by dir/model.safetensors.index.json. */
int eng_st_open_dir(eng_st_set *set, const char *dir, char *err, size_t errlen);
/* Opens one file. */
int eng_st_open_file(eng_st_set *set, const char *path, char *err, size_t errlen);
void eng_st_close(eng_st_set *set);
const eng_st_tensor *eng_st_find(const eng_st_set *set, const char *name);
int64_t eng_st_numel(const eng_st_tensor *t);

/* Converts n elements of F32/F16/BF16 (or F64) data to float32 (BF16 widened exactly). */
int eng_st_to_f32(float *dst, const eng_st_tensor *t);

float eng_bf16_to_f32(uint16_t h);
float eng_f16_to_f32(uint16_t h);

#endif
