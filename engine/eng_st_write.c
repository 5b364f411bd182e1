/* eng_st_write.c — safetensors writer and atomic file writes (see eng_st_write.h).
 * Tensors are converted when added and kept in memory until the file is written, which is
 * fine for the synthetic models this serves (the file is as large as the memory it takes). */
#include "engine/eng_st_write.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

typedef struct {
  char *name;
  eng_stw_dtype dt;
  int ndim;
  int64_t shape[ENG_STW_MAX_DIMS];
  unsigned char *bytes;
  size_t nbytes;
} st_tensor;

struct eng_stw {
  st_tensor *t;
  size_t n, cap;
};

/* ---- conversions ------------------------------------------------------------------- */
static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

uint16_t eng_stw_f32_to_bf16(float f) {
  uint32_t u = f2u(f);
  if ((u & 0x7F800000u) == 0x7F800000u && (u & 0x007FFFFFu))
    return (uint16_t)((u >> 16) | 0x0040u);            /* quiet NaN, keep sign */
  u += 0x7FFFu + ((u >> 16) & 1u);                      /* RNE; overflow carries to inf */
  return (uint16_t)(u >> 16);
}

uint16_t eng_stw_f32_to_f16(float f) {
  uint32_t u = f2u(f);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7FFFFFFFu;
  if (a >= 0x7F800000u)                                 /* inf or NaN */
    return (uint16_t)(sign | 0x7C00u | (a > 0x7F800000u ? 0x0200u : 0u));
  if (a >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u); /* >= 65520: rounds to inf */
  if (a >= 0x38800000u) {                               /* normal half (>= 2^-14) */
    uint32_t m = a - 0x38000000u;                       /* rebias exponent 127 -> 15 */
    m += 0x0FFFu + ((m >> 13) & 1u);
    return (uint16_t)(sign | (m >> 13));
  }
  if (a < 0x33000000u) return sign;                     /* < 2^-25: rounds to 0 */
  /* subnormal half: value = mant * 2^-24 */
  uint32_t e = a >> 23;                                 /* 102..112 */
  uint32_t mant = (a & 0x007FFFFFu) | 0x00800000u;      /* 24-bit significand */
  uint32_t shift = 126u - e;                            /* 14..24 */
  uint32_t q = mant >> shift;
  uint32_t rem = mant & ((1u << shift) - 1u);
  uint32_t half = 1u << (shift - 1u);
  if (rem > half || (rem == half && (q & 1u))) q++;
  return (uint16_t)(sign | q);
}

float eng_stw_bf16_to_f32(uint16_t h) { return u2f((uint32_t)h << 16); }

float eng_stw_f16_to_f32(uint16_t h) {
  uint32_t sign = ((uint32_t)h & 0x8000u) << 16;
  uint32_t e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
  if (e == 0x1F) return u2f(sign | 0x7F800000u | (m << 13));
  if (e == 0) {
    if (m == 0) return u2f(sign);
    float v = (float)m * (1.0f / 16777216.0f);          /* m * 2^-24, exact */
    return sign ? -v : v;
  }
  return u2f(sign | ((e + 112u) << 23) | (m << 13));
}

size_t eng_stw_dtype_size(eng_stw_dtype dt) { return dt == ENG_STW_F32 ? 4 : 2; }
const char *eng_stw_dtype_name(eng_stw_dtype dt) {
  return dt == ENG_STW_F32 ? "F32" : dt == ENG_STW_BF16 ? "BF16" : "F16";
}

/* ---- tensor collection --------------------------------------------------------------- */
eng_stw *eng_stw_new(void) { return calloc(1, sizeof(eng_stw)); }

void eng_stw_free(eng_stw *w) {
  if (!w) return;
  for (size_t i = 0; i < w->n; i++) { free(w->t[i].name); free(w->t[i].bytes); }
  free(w->t);
  free(w);
}

int eng_stw_add(eng_stw *w, const char *name, eng_stw_dtype dt, int ndim,
               const int64_t *shape, const float *data, char *err, size_t errlen) {
  if (!w || !name || !*name || strcmp(name, "__metadata__") == 0) {
    snprintf(err, errlen, "safetensors: bad tensor name '%s'", name ? name : "");
    return -1;
  }
  if (dt != ENG_STW_F32 && dt != ENG_STW_BF16 && dt != ENG_STW_F16) {
    snprintf(err, errlen, "safetensors: tensor %s: unknown dtype %d", name, (int)dt);
    return -1;
  }
  if (ndim < 0 || ndim > ENG_STW_MAX_DIMS || (ndim > 0 && !shape)) {
    snprintf(err, errlen, "safetensors: tensor %s: %d dims (at most %d)", name, ndim,
             ENG_STW_MAX_DIMS);
    return -1;
  }
  uint64_t numel = 1;
  for (int d = 0; d < ndim; d++) {
    if (shape[d] < 0 || (shape[d] > 0 && numel > (UINT64_MAX / 8) / (uint64_t)shape[d])) {
      snprintf(err, errlen, "safetensors: tensor %s: bad dimension %" PRId64, name, shape[d]);
      return -1;
    }
    numel *= (uint64_t)shape[d];
  }
  if (numel > SIZE_MAX / 4) {
    snprintf(err, errlen, "safetensors: tensor %s: too large", name);
    return -1;
  }
  if (numel && !data) { snprintf(err, errlen, "safetensors: tensor %s: no data", name); return -1; }
  for (size_t i = 0; i < w->n; i++)
    if (strcmp(w->t[i].name, name) == 0) {
      snprintf(err, errlen, "safetensors: duplicate tensor name %s", name);
      return -1;
    }
  if (w->n == w->cap) {
    size_t nc = w->cap ? w->cap * 2 : 64;
    st_tensor *nt = realloc(w->t, nc * sizeof *nt);
    if (!nt) goto oom;
    w->t = nt; w->cap = nc;
  }
  st_tensor *t = &w->t[w->n];
  memset(t, 0, sizeof *t);
  t->dt = dt;
  t->ndim = ndim;
  for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
  t->nbytes = (size_t)numel * eng_stw_dtype_size(dt);
  t->name = strdup(name);
  t->bytes = malloc(t->nbytes ? t->nbytes : 1);
  if (!t->name || !t->bytes) { free(t->name); free(t->bytes); goto oom; }
  unsigned char *b = t->bytes;
  for (size_t i = 0; i < (size_t)numel; i++) {
    if (dt == ENG_STW_F32) {
      uint32_t u = f2u(data[i]);
      b[4 * i] = (unsigned char)u; b[4 * i + 1] = (unsigned char)(u >> 8);
      b[4 * i + 2] = (unsigned char)(u >> 16); b[4 * i + 3] = (unsigned char)(u >> 24);
    } else {
      uint16_t h = dt == ENG_STW_BF16 ? eng_stw_f32_to_bf16(data[i]) : eng_stw_f32_to_f16(data[i]);
      b[2 * i] = (unsigned char)h; b[2 * i + 1] = (unsigned char)(h >> 8);
    }
  }
  w->n++;
  return 0;
oom:
  snprintf(err, errlen, "safetensors: out of memory adding tensor %s", name);
  return -1;
}

/* ---- atomic file writing ------------------------------------------------------------- */
typedef struct { const void *p; size_t n; } chunk;

static int write_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n) {
    ssize_t k = write(fd, c, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
    if (k < 0) { if (errno == EINTR) continue; return -1; }
    if (k == 0) { errno = EIO; return -1; }
    c += k; n -= (size_t)k;
  }
  return 0;
}

static int write_chunks_atomic(const char *path, const chunk *ch, size_t nch, char *err,
                               size_t errlen) {
  size_t pl = strlen(path);
  char *tmp = malloc(pl + 32);
  if (!tmp) { snprintf(err, errlen, "cannot write %s: out of memory", path); return -1; }
  snprintf(tmp, pl + 32, "%s.tmp.%ld", path, (long)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
    free(tmp);
    return -1;
  }
  int e = 0;
  for (size_t i = 0; i < nch && !e; i++)
    if (write_all(fd, ch[i].p, ch[i].n) != 0) e = errno;
  if (!e && fsync(fd) != 0 && errno != EINVAL && errno != EROFS) e = errno;
  if (close(fd) != 0 && !e) e = errno;
  if (!e && rename(tmp, path) != 0) e = errno;
  if (e) {
    unlink(tmp);
    snprintf(err, errlen, "cannot write %s: %s", path, strerror(e));
    free(tmp);
    return -1;
  }
  free(tmp);
  return 0;
}

int eng_stw_write_file_atomic(const char *path, const void *data, size_t len, char *err,
                          size_t errlen) {
  chunk c = {data, len};
  return write_chunks_atomic(path, &c, 1, err, errlen);
}

static int cmp_name(const void *a, const void *b) {
  const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
  return strcmp(x->name, y->name);
}

int eng_stw_write_path(const eng_stw *w, const char *path, char *err, size_t errlen) {
  if (!w || !path) { snprintf(err, errlen, "safetensors: no writer or path"); return -1; }
  int rc = -1;
  const st_tensor **order = malloc((w->n ? w->n : 1) * sizeof *order);
  chunk *ch = malloc((w->n + 2) * sizeof *ch);
  cJSON *root = cJSON_CreateObject();
  char *json = NULL, *hdr = NULL;
  if (!order || !ch || !root) goto oom;
  for (size_t i = 0; i < w->n; i++) order[i] = &w->t[i];
  qsort(order, w->n, sizeof *order, cmp_name);

  cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
  if (!meta || !cJSON_AddStringToObject(meta, "format", "pt")) goto oom;
  uint64_t off = 0;
  for (size_t i = 0; i < w->n; i++) {
    const st_tensor *t = order[i];
    cJSON *o = cJSON_AddObjectToObject(root, t->name);
    if (!o || !cJSON_AddStringToObject(o, "dtype", eng_stw_dtype_name(t->dt))) goto oom;
    cJSON *sh = cJSON_AddArrayToObject(o, "shape");
    if (!sh) goto oom;
    for (int d = 0; d < t->ndim; d++) {
      cJSON *v = cJSON_CreateNumber((double)t->shape[d]);
      if (!v) goto oom;
      cJSON_AddItemToArray(sh, v);
    }
    cJSON *of = cJSON_AddArrayToObject(o, "data_offsets");
    cJSON *b0 = cJSON_CreateNumber((double)off), *b1 = cJSON_CreateNumber((double)(off + t->nbytes));
    if (!of || !b0 || !b1) { cJSON_Delete(b0); cJSON_Delete(b1); goto oom; }
    cJSON_AddItemToArray(of, b0);
    cJSON_AddItemToArray(of, b1);
    off += t->nbytes;
  }
  if (off > ((uint64_t)1 << 53)) {
    snprintf(err, errlen, "cannot write %s: tensors too large for a safetensors header", path);
    goto done;
  }
  json = cJSON_PrintUnformatted(root);
  if (!json) goto oom;
  size_t jl = strlen(json), padded = (jl + 7) & ~(size_t)7;
  hdr = malloc(8 + padded);
  if (!hdr) goto oom;
  uint64_t n = padded;
  for (int i = 0; i < 8; i++) hdr[i] = (char)(unsigned char)(n >> (8 * i));
  memcpy(hdr + 8, json, jl);
  memset(hdr + 8 + jl, ' ', padded - jl);
  ch[0].p = hdr; ch[0].n = 8 + padded;
  for (size_t i = 0; i < w->n; i++) { ch[i + 1].p = order[i]->bytes; ch[i + 1].n = order[i]->nbytes; }
  rc = write_chunks_atomic(path, ch, w->n + 1, err, errlen);
  goto done;
oom:
  snprintf(err, errlen, "cannot write %s: out of memory", path);
done:
  free(hdr);
  free(json);
  cJSON_Delete(root);
  free(ch);
  free(order);
  return rc;
}

int eng_stw_write_dir(const eng_stw *w, const char *dir, char *err, size_t errlen) {
  if (!dir) { snprintf(err, errlen, "safetensors: no output folder"); return -1; }
  size_t l = strlen(dir) + sizeof "/model.safetensors";
  char *p = malloc(l);
  if (!p) { snprintf(err, errlen, "safetensors: out of memory"); return -1; }
  snprintf(p, l, "%s/model.safetensors", dir);
  int rc = eng_stw_write_path(w, p, err, errlen);
  free(p);
  return rc;
}
