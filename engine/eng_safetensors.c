/* eng_safetensors.c — validating, mmap-based safetensors reader (see header). */
#include "engine/eng_util.h"
#include "engine/eng_safetensors.h"
#include "engine/eng_st_write.h"
#include "kernels/krn_backend.h"
#include "kernels/krn_kquant.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *dt_names[ENG_DT_COUNT] = {"F32", "F16", "BF16", "F64", "I64", "I32", "I8", "U8", "BOOL",
                                              "Q8_0", "Q4_0", "Q4_K", "Q5_K", "Q6_K"};
static const size_t dt_sizes[ENG_DT_COUNT] = {4, 2, 2, 8, 8, 4, 1, 1, 1, 0, 0, 0, 0, 0};

const char *eng_dtype_name(int dt) { return dt >= 0 && dt < ENG_DT_COUNT ? dt_names[dt] : "?"; }
size_t eng_dtype_size(int dt) { return dt >= 0 && dt < ENG_DT_COUNT ? dt_sizes[dt] : 0; }

int eng_dtype_block(int dt, size_t *block_bytes) {
  size_t kq = krn_kq_block_bytes(dt);
  size_t bb = dt == ENG_DT_Q8_0 ? 34 : dt == ENG_DT_Q4_0 ? 18 : kq ? kq : eng_dtype_size(dt);
  if (block_bytes) *block_bytes = bb;
  return dt == ENG_DT_Q8_0 || dt == ENG_DT_Q4_0 ? 32 : kq ? KRN_QK_K : 1;
}

size_t eng_dtype_nbytes(int dt, int64_t numel) {
  size_t bb;
  int blk = eng_dtype_block(dt, &bb);
  if (numel < 0 || numel % blk) return 0;
  return (size_t)(numel / blk) * bb;
}

int eng_dtype_is_float(int dt) {
  return dt == ENG_DT_F32 || dt == ENG_DT_F16 || dt == ENG_DT_BF16 || dt == ENG_DT_F64 || dt == ENG_DT_Q8_0 ||
         dt == ENG_DT_Q4_0 || dt == ENG_DT_Q4_K || dt == ENG_DT_Q5_K || dt == ENG_DT_Q6_K;
}

int eng_st_own(eng_st_set *set, void *buf) {
  void **o = realloc(set->owned, sizeof(void *) * (size_t)(set->n_owned + 1));
  if (!o) { free(buf); return -1; }
  set->owned = o;
  set->owned[set->n_owned++] = buf;
  return 0;
}

float eng_bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* The kernels' converter is the one definition of F16 widening (the in-place matmul uses it
 * too), so loaded tensors and in-place reads agree bit for bit. */
float eng_f16_to_f32(uint16_t h) { return krn_f16_to_f32(h); }

static int cmp_tensor(const void *a, const void *b) {
  return strcmp(((const eng_st_tensor *)a)->name, ((const eng_st_tensor *)b)->name);
}

typedef struct { size_t b, e; int idx; } span;
static int cmp_span(const void *a, const void *b) {
  const span *x = a, *y = b;
  return x->b < y->b ? -1 : x->b > y->b ? 1 : 0;
}

/* Parses and validates one mapped file; appends tensors to set. */
static int parse_file(eng_st_set *set, int fi, char *err, size_t errlen) {
  const char *path = set->paths[fi];
  const uint8_t *base = set->maps[fi];
  size_t size = set->map_sizes[fi];
  if (size < 8) return eng_errf(err, errlen, "%s: truncated safetensors file (%zu bytes, no header)", path, size);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | base[i];
  if (hlen == 0 || hlen > size - 8)
    return eng_errf(err, errlen, "%s: header length %llu exceeds the file size %zu (truncated or not safetensors)",
                path, (unsigned long long)hlen, size);
  if (hlen > (100u << 20)) return eng_errf(err, errlen, "%s: header length %llu is implausibly large", path,
                                       (unsigned long long)hlen);
  char *json = malloc(hlen + 1);
  if (!json) return eng_errf(err, errlen, "%s: out of memory reading header", path);
  memcpy(json, base + 8, hlen);
  json[hlen] = 0;
  cJSON *root = cJSON_Parse(json);
  free(json);
  if (!root || !cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return eng_errf(err, errlen, "%s: header is not a valid JSON object", path);
  }
  size_t data_size = size - 8 - hlen;
  const uint8_t *data = base + 8 + hlen;
  int count = 0;
  for (cJSON *it = root->child; it; it = it->next) if (strcmp(it->string, "__metadata__")) count++;
  eng_st_tensor *nt = realloc(set->tensors, sizeof(eng_st_tensor) * (size_t)(set->n_tensors + count + 1));
  span *spans = malloc(sizeof(span) * (size_t)(count + 1));
  if (!nt || !spans) { free(spans); cJSON_Delete(root); if (nt) set->tensors = nt; return eng_errf(err, errlen, "%s: out of memory", path); }
  set->tensors = nt;
  int ns = 0, rc = 0;
  for (cJSON *it = root->child; it && rc == 0; it = it->next) {
    const char *name = it->string;
    if (!strcmp(name, "__metadata__")) continue;
    if (!cJSON_IsObject(it)) { rc = eng_errf(err, errlen, "%s: tensor '%s': entry is not an object", path, name); break; }
    cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
    cJSON *sh = cJSON_GetObjectItemCaseSensitive(it, "shape");
    cJSON *of = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
    if (!cJSON_IsString(dt)) { rc = eng_errf(err, errlen, "%s: tensor '%s': missing dtype", path, name); break; }
    int d = -1;
    for (int k = 0; k < ENG_DT_ST_COUNT; k++) if (!strcmp(dt->valuestring, dt_names[k])) d = k;
    if (d < 0) { rc = eng_errf(err, errlen, "%s: tensor '%s': unknown dtype '%s'", path, name, dt->valuestring); break; }
    if (!cJSON_IsArray(sh) || cJSON_GetArraySize(sh) > ENG_ST_MAXDIM) {
      rc = eng_errf(err, errlen, "%s: tensor '%s': shape missing or has too many dimensions", path, name); break;
    }
    eng_st_tensor *t = &set->tensors[set->n_tensors];
    memset(t, 0, sizeof *t);
    t->dtype = d;
    t->file = fi;
    t->ndim = cJSON_GetArraySize(sh);
    double numel = 1;
    for (int k = 0; k < t->ndim; k++) {
      cJSON *v = cJSON_GetArrayItem(sh, k);
      if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9.0e15 || v->valuedouble != (double)(int64_t)v->valuedouble) {
        rc = eng_errf(err, errlen, "%s: tensor '%s': invalid shape entry %d", path, name, k); break;
      }
      t->shape[k] = (int64_t)v->valuedouble;
      numel *= (double)t->shape[k];
    }
    if (rc) break;
    if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2 || !cJSON_IsNumber(cJSON_GetArrayItem(of, 0)) ||
        !cJSON_IsNumber(cJSON_GetArrayItem(of, 1))) {
      rc = eng_errf(err, errlen, "%s: tensor '%s': data_offsets missing or malformed", path, name); break;
    }
    double b = cJSON_GetArrayItem(of, 0)->valuedouble, e = cJSON_GetArrayItem(of, 1)->valuedouble;
    if (b < 0 || e < b || e > (double)data_size) {
      rc = eng_errf(err, errlen, "%s: tensor '%s': data_offsets [%.0f, %.0f] outside the data section (%zu bytes)",
                path, name, b, e, data_size); break;
    }
    double want = numel * (double)dt_sizes[d];
    if (e - b != want) {
      rc = eng_errf(err, errlen, "%s: tensor '%s': %.0f bytes for shape of %.0f elements of %s (expected %.0f)",
                path, name, e - b, numel, dt_names[d], want); break;
    }
    t->name = strdup(name);
    t->data = data + (size_t)b;
    t->nbytes = (size_t)(e - b);
    spans[ns].b = (size_t)b; spans[ns].e = (size_t)e; spans[ns].idx = set->n_tensors; ns++;
    set->n_tensors++;
  }
  cJSON_Delete(root);
  if (rc == 0) {
    qsort(spans, (size_t)ns, sizeof(span), cmp_span);
    for (int i = 1; i < ns; i++)
      if (spans[i].b < spans[i - 1].e && spans[i].e > spans[i].b) {
        rc = eng_errf(err, errlen, "%s: tensors '%s' and '%s' overlap in the data section", path,
                  set->tensors[spans[i - 1].idx].name, set->tensors[spans[i].idx].name);
        break;
      }
  }
  free(spans);
  return rc;
}

static int map_file(eng_st_set *set, const char *path, char *err, size_t errlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return eng_errf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) { close(fd); return eng_errf(err, errlen, "%s: not a regular file", path); }
  void *m = NULL;
  if (st.st_size > 0) {
    m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) { close(fd); return eng_errf(err, errlen, "%s: mmap failed: %s", path, strerror(errno)); }
  }
  close(fd);
  int i = set->n_files;
  char **p = realloc(set->paths, sizeof(char *) * (size_t)(i + 1));
  if (p) set->paths = p;
  void **mp = realloc(set->maps, sizeof(void *) * (size_t)(i + 1));
  if (mp) set->maps = mp;
  size_t *ms = realloc(set->map_sizes, sizeof(size_t) * (size_t)(i + 1));
  if (ms) set->map_sizes = ms;
  if (!p || !mp || !ms) { if (m) munmap(m, (size_t)st.st_size); return eng_errf(err, errlen, "%s: out of memory", path); }
  set->paths[i] = strdup(path);
  set->maps[i] = m;
  set->map_sizes[i] = (size_t)st.st_size;
  set->n_files++;
  return parse_file(set, i, err, errlen);
}

static int finish(eng_st_set *set, char *err, size_t errlen) {
  qsort(set->tensors, (size_t)set->n_tensors, sizeof(eng_st_tensor), cmp_tensor);
  for (int i = 1; i < set->n_tensors; i++)
    if (!strcmp(set->tensors[i].name, set->tensors[i - 1].name))
      return eng_errf(err, errlen, "%s: tensor '%s' appears twice", set->paths[set->tensors[i].file], set->tensors[i].name);
  return 0;
}

int eng_st_open_file(eng_st_set *set, const char *path, char *err, size_t errlen) {
  memset(set, 0, sizeof *set);
  if (map_file(set, path, err, errlen) || finish(set, err, errlen)) { eng_st_close(set); return -1; }
  return 0;
}

int eng_st_open_dir(eng_st_set *set, const char *dir, char *err, size_t errlen) {
  memset(set, 0, sizeof *set);
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  if (access(path, F_OK) == 0) return eng_st_open_file(set, path, err, errlen);
  snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
  if (access(path, F_OK) != 0) return eng_errf(err, errlen, "%s: no model.safetensors or model.safetensors.index.json", dir);
  char *txt = eng_read_file(path, NULL, (size_t)64 << 20, err, errlen);
  if (!txt) return -1;
  cJSON *root = cJSON_Parse(txt);
  free(txt);
  cJSON *wm = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
  if (!cJSON_IsObject(wm)) { cJSON_Delete(root); return eng_errf(err, errlen, "%s: invalid JSON or no weight_map", path); }
  int rc = 0;
  for (cJSON *it = wm->child; it && rc == 0; it = it->next) {
    if (!cJSON_IsString(it) || strchr(it->valuestring, '/')) {
      rc = eng_errf(err, errlen, "%s: weight_map entry '%s' is not a plain file name", path, it->string); break;
    }
    char sp[PATH_MAX];
    snprintf(sp, sizeof sp, "%s/%s", dir, it->valuestring);
    int seen = 0;
    for (int i = 0; i < set->n_files; i++) if (!strcmp(set->paths[i], sp)) seen = 1;
    if (!seen) rc = map_file(set, sp, err, errlen);
  }
  /* every name in the index must exist in the shard it names */
  for (cJSON *it = wm->child; it && rc == 0; it = it->next) {
    int found = 0;
    for (int i = 0; i < set->n_tensors && !found; i++)
      if (!strcmp(set->tensors[i].name, it->string)) found = 1;
    if (!found) rc = eng_errf(err, errlen, "%s: tensor '%s' listed in the index is missing from %s", path, it->string,
                          it->valuestring);
  }
  cJSON_Delete(root);
  if (rc == 0) rc = finish(set, err, errlen);
  if (rc) eng_st_close(set);
  return rc;
}

void eng_st_close(eng_st_set *set) {
  for (int i = 0; i < set->n_tensors; i++) free(set->tensors[i].name);
  free(set->tensors);
  for (int i = 0; i < set->n_files; i++) {
    if (set->maps[i]) munmap(set->maps[i], set->map_sizes[i]);
    free(set->paths[i]);
  }
  free(set->paths); free(set->maps); free(set->map_sizes);
  for (int i = 0; i < set->n_owned; i++) free(set->owned[i]);
  free(set->owned);
  memset(set, 0, sizeof *set);
}

const eng_st_tensor *eng_st_find(const eng_st_set *set, const char *name) {
  int lo = 0, hi = set->n_tensors - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2, c = strcmp(set->tensors[mid].name, name);
    if (c == 0) return &set->tensors[mid];
    if (c < 0) lo = mid + 1; else hi = mid - 1;
  }
  return NULL;
}

int64_t eng_st_numel(const eng_st_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
  return n;
}

/* ggml's GGML_FP32_TO_FP16 rounds to nearest even, as eng_st_write's converter does. */
#define f32_to_f16 eng_stw_f32_to_f16

void eng_quant_q8_0(void *dst, const float *x, int64_t n) {
  uint8_t *y = dst;
  for (int64_t i = 0; i < n / 32; i++, x += 32, y += 34) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) { float v = fabsf(x[j]); if (v > amax) amax = v; }
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    uint16_t h = f32_to_f16(d);
    memcpy(y, &h, 2);
    for (int j = 0; j < 32; j++) y[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
  }
}

void eng_quant_q4_0(void *dst, const float *x, int64_t n) {
  uint8_t *y = dst;
  for (int64_t i = 0; i < n / 32; i++, x += 32, y += 18) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; j++) if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
    const float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    uint16_t h = f32_to_f16(d);
    memcpy(y, &h, 2);
    for (int j = 0; j < 16; j++) {
      const float x0 = x[j] * id, x1 = x[16 + j] * id;
      int8_t a = (int8_t)(x0 + 8.5f), b = (int8_t)(x1 + 8.5f);
      uint8_t q0 = (uint8_t)(a < 15 ? a : 15), q1 = (uint8_t)(b < 15 ? b : 15);
      y[2 + j] = (uint8_t)(q0 | (q1 << 4));
    }
  }
}

int eng_dt_to_f32(float *dst, const void *src, int dt, int64_t n) {
  const uint8_t *p = src;
  switch (dt) {
  case ENG_DT_F32: memcpy(dst, p, (size_t)n * 4); return 0;
  case ENG_DT_BF16:
    for (int64_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, p + 2 * i, 2); dst[i] = eng_bf16_to_f32(h); }
    return 0;
  case ENG_DT_F16:
    for (int64_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, p + 2 * i, 2); dst[i] = eng_f16_to_f32(h); }
    return 0;
  case ENG_DT_F64:
    for (int64_t i = 0; i < n; i++) { double d; memcpy(&d, p + 8 * i, 8); dst[i] = (float)d; }
    return 0;
  case ENG_DT_Q8_0:
    if (n % 32) return -1;
    for (int64_t b = 0; b < n / 32; b++, p += 34) {
      uint16_t h;
      memcpy(&h, p, 2);
      const float d = eng_f16_to_f32(h);
      for (int j = 0; j < 32; j++) dst[b * 32 + j] = (float)(int8_t)p[2 + j] * d;
    }
    return 0;
  case ENG_DT_Q4_0:
    if (n % 32) return -1;
    for (int64_t b = 0; b < n / 32; b++, p += 18) {
      uint16_t h;
      memcpy(&h, p, 2);
      const float d = eng_f16_to_f32(h);
      for (int j = 0; j < 16; j++) {
        dst[b * 32 + j] = (float)((p[2 + j] & 0x0f) - 8) * d;
        dst[b * 32 + 16 + j] = (float)((p[2 + j] >> 4) - 8) * d;
      }
    }
    return 0;
  case ENG_DT_Q4_K: case ENG_DT_Q5_K: case ENG_DT_Q6_K:
    if (n % KRN_QK_K) return -1;
    krn_kq_dequant(dt, p, n, dst);
    return 0;
  default: return -1;
  }
}

int eng_st_to_f32(float *dst, const eng_st_tensor *t) {
  return eng_dt_to_f32(dst, t->data, t->dtype, eng_st_numel(t));
}
