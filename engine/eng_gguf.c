/* eng_gguf.c — the validating GGUF v3 reader (contract: eng_gguf.h). The parser walks
 * the image with a cursor that refuses to read past the end; every count read from the
 * file is bounded by the bytes that remain before anything is allocated from it. */
#include "engine/eng_util.h"
#include "engine/eng_gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_KV ((uint64_t)1 << 20)
#define MAX_TENSORS ((uint64_t)1 << 22)
#define MAX_KEY 65535u
#define MAX_NAME 4096u

/* ---- ggml types -------------------------------------------------------------------- */

typedef struct { int id; const char *name; int blck; int bytes; } ggml_type_info;
static const ggml_type_info ggml_types[] = {
  {0, "F32", 1, 4}, {1, "F16", 1, 2}, {2, "Q4_0", 32, 18}, {3, "Q4_1", 32, 20}, {6, "Q5_0", 32, 22},
  {7, "Q5_1", 32, 24}, {8, "Q8_0", 32, 34}, {9, "Q8_1", 32, 36}, {10, "Q2_K", 256, 84}, {11, "Q3_K", 256, 110},
  {12, "Q4_K", 256, 144}, {13, "Q5_K", 256, 176}, {14, "Q6_K", 256, 210}, {15, "Q8_K", 256, 292},
  {20, "IQ4_NL", 32, 18}, {24, "I8", 1, 1}, {25, "I16", 1, 2}, {26, "I32", 1, 4}, {27, "I64", 1, 8},
  {28, "F64", 1, 8}, {30, "BF16", 1, 2}, {39, "MXFP4", 32, 17},
};
#define N_GGML_TYPES (int)(sizeof ggml_types / sizeof ggml_types[0])

static const ggml_type_info *type_info(int id) {
  for (int i = 0; i < N_GGML_TYPES; i++) if (ggml_types[i].id == id) return &ggml_types[i];
  return NULL;
}

const char *eng_ggml_type_name(int t) {
  const ggml_type_info *ti = type_info(t);
  return ti ? ti->name : "?";
}

int eng_ggml_to_dtype(int t) {
  switch (t) {
  case 0: return ENG_DT_F32;
  case 1: return ENG_DT_F16;
  case 2: return ENG_DT_Q4_0;
  case 8: return ENG_DT_Q8_0;
  case 12: return ENG_DT_Q4_K;
  case 13: return ENG_DT_Q5_K;
  case 14: return ENG_DT_Q6_K;
  case 24: return ENG_DT_I8;
  case 26: return ENG_DT_I32;
  case 27: return ENG_DT_I64;
  case 28: return ENG_DT_F64;
  case 30: return ENG_DT_BF16;
  default: return -1;
  }
}

static const char *vtype_name(int t) {
  static const char *n[GGUF_T_COUNT] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool",
                                        "string", "array", "u64", "i64", "f64"};
  return t >= 0 && t < GGUF_T_COUNT ? n[t] : "?";
}

static size_t vtype_size(int t) {
  switch (t) {
  case GGUF_T_U8: case GGUF_T_I8: case GGUF_T_BOOL: return 1;
  case GGUF_T_U16: case GGUF_T_I16: return 2;
  case GGUF_T_U32: case GGUF_T_I32: case GGUF_T_F32: return 4;
  case GGUF_T_U64: case GGUF_T_I64: case GGUF_T_F64: return 8;
  default: return 0;
  }
}

/* ---- cursor -------------------------------------------------------------------------- */

typedef struct {
  const uint8_t *p;
  size_t size, pos;
  const char *name;
  char *err;
  size_t errlen;
} cur;

static size_t left(const cur *c) { return c->size - c->pos; }

static int rd(cur *c, void *dst, size_t n, const char *what) {
  if (n > left(c))
    return eng_errf(c->err, c->errlen, "%s: truncated GGUF file: %s at byte %zu needs %zu bytes, %zu remain",
                    c->name, what, c->pos, n, left(c));
  memcpy(dst, c->p + c->pos, n);
  c->pos += n;
  return 0;
}
static int rd32(cur *c, uint32_t *v, const char *what) { return rd(c, v, 4, what); }
static int rd64(cur *c, uint64_t *v, const char *what) { return rd(c, v, 8, what); }

/* A gguf string: u64 length + bytes. Returns the pointer (not NUL-terminated). */
static const char *rdstr(cur *c, uint64_t *len, uint64_t max, const char *what) {
  if (rd64(c, len, what)) return NULL;
  if (*len > left(c)) {
    eng_errf(c->err, c->errlen, "%s: truncated GGUF file: %s of %llu bytes at byte %zu, %zu remain", c->name, what,
             (unsigned long long)*len, c->pos, left(c));
    return NULL;
  }
  if (*len > max) {
    eng_errf(c->err, c->errlen, "%s: %s of %llu bytes is implausibly long (limit %llu)", c->name, what,
             (unsigned long long)*len, (unsigned long long)max);
    return NULL;
  }
  const char *s = (const char *)c->p + c->pos;
  c->pos += (size_t)*len;
  return s;
}

static char *dupn(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (d) { memcpy(d, s, n); d[n] = 0; }
  return d;
}

/* ---- parsing ------------------------------------------------------------------------- */

static int cmp_kv(const void *a, const void *b) {
  return strcmp(((const eng_gguf_kv *)a)->key, ((const eng_gguf_kv *)b)->key);
}
static int cmp_tensor(const void *a, const void *b) {
  return strcmp(((const eng_gguf_tensor *)a)->name, ((const eng_gguf_tensor *)b)->name);
}
static int cmp_off(const void *a, const void *b) {
  const eng_gguf_tensor *x = *(eng_gguf_tensor *const *)a, *y = *(eng_gguf_tensor *const *)b;
  return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int parse_value(cur *c, eng_gguf_kv *kv) {
  uint32_t ty = 0;
  if (rd32(c, &ty, "value type")) return -1;
  if (ty >= GGUF_T_COUNT)
    return eng_errf(c->err, c->errlen, "%s: key '%s' has unknown value type %u", c->name, kv->key, ty);
  kv->type = (int)ty;
  kv->n = 1;
  if (ty == GGUF_T_ARRAY) {
    uint32_t at = 0;
    uint64_t n = 0;
    if (rd32(c, &at, "array type") || rd64(c, &n, "array length")) return -1;
    if (at >= GGUF_T_COUNT || at == GGUF_T_ARRAY)
      return eng_errf(c->err, c->errlen, "%s: key '%s': array of %s elements is not supported", c->name, kv->key,
                      at == GGUF_T_ARRAY ? "array" : "unknown-type");
    kv->arr_type = (int)at;
    kv->n = n;
    kv->data = c->p + c->pos;
    if (at == GGUF_T_STRING) {
      if (n > left(c) / 8)
        return eng_errf(c->err, c->errlen, "%s: key '%s': array of %llu strings cannot fit in the %zu bytes left",
                        c->name, kv->key, (unsigned long long)n, left(c));
      kv->str_off = malloc(sizeof(uint64_t) * (size_t)(n ? n : 1));
      if (!kv->str_off) return eng_errf(c->err, c->errlen, "%s: out of memory", c->name);
      size_t start = c->pos;
      for (uint64_t i = 0; i < n; i++) {
        uint64_t len;
        kv->str_off[i] = c->pos - start;
        if (!rdstr(c, &len, UINT32_MAX, "array string")) return -1;
      }
      return 0;
    }
    size_t es = vtype_size((int)at);
    if (n > left(c) / es)
      return eng_errf(c->err, c->errlen, "%s: key '%s': array of %llu %s elements exceeds the %zu bytes left",
                      c->name, kv->key, (unsigned long long)n, vtype_name((int)at), left(c));
    c->pos += (size_t)n * es;
    return 0;
  }
  kv->data = c->p + c->pos;
  if (ty == GGUF_T_STRING) {
    uint64_t len;
    return rdstr(c, &len, UINT32_MAX, "string value") ? 0 : -1;
  }
  size_t es = vtype_size((int)ty);
  if (es > left(c)) return eng_errf(c->err, c->errlen, "%s: truncated GGUF file in the value of '%s'", c->name, kv->key);
  if (ty == GGUF_T_BOOL && c->p[c->pos] > 1)
    return eng_errf(c->err, c->errlen, "%s: key '%s': bool value %u is neither 0 nor 1", c->name, kv->key, c->p[c->pos]);
  c->pos += es;
  return 0;
}

int eng_gguf_parse(eng_gguf *g, const void *buf, size_t size, const char *name, char *err, size_t errlen) {
  memset(g, 0, sizeof *g);
  g->path = strdup(name ? name : "gguf");
  g->base = buf;
  g->size = size;
  cur c = {.p = buf, .size = size, .name = g->path ? g->path : "gguf", .err = err, .errlen = errlen};
  if (!g->path) return eng_errf(err, errlen, "out of memory");
  char magic[4] = {0};
  uint64_t nt = 0, nkv = 0;
  if (rd(&c, magic, 4, "magic")) return -1;
  if (memcmp(magic, "GGUF", 4)) return eng_errf(err, errlen, "%s: not a GGUF file (bad magic)", c.name);
  if (rd32(&c, &g->version, "version") || rd64(&c, &nt, "tensor count") || rd64(&c, &nkv, "metadata count"))
    return -1;
  if (g->version != 3)
    return eng_errf(err, errlen, "%s: GGUF version %u is not supported (only version 3)", c.name, g->version);
  /* the smallest kv is 8 (key length) + 1 + 4 (type) + 1 bytes; the smallest tensor info
   * 8 + 1 + 4 + 8 + 4 + 8 */
  if (nkv > MAX_KV || nkv > left(&c) / 14)
    return eng_errf(err, errlen, "%s: metadata count %llu is absurd for a %zu-byte file", c.name,
                    (unsigned long long)nkv, size);
  if (nt > MAX_TENSORS || nt > left(&c) / 33)
    return eng_errf(err, errlen, "%s: tensor count %llu is absurd for a %zu-byte file", c.name,
                    (unsigned long long)nt, size);
  g->kv = calloc((size_t)(nkv ? nkv : 1), sizeof *g->kv);
  g->tensors = calloc((size_t)(nt ? nt : 1), sizeof *g->tensors);
  if (!g->kv || !g->tensors) return eng_errf(err, errlen, "%s: out of memory", c.name);
  for (uint64_t i = 0; i < nkv; i++) {
    uint64_t kl;
    const char *k = rdstr(&c, &kl, MAX_KEY, "metadata key");
    if (!k) return -1;
    if (kl == 0 || memchr(k, 0, (size_t)kl))
      return eng_errf(err, errlen, "%s: metadata key %llu is empty or contains NUL", c.name, (unsigned long long)i);
    eng_gguf_kv *kv = &g->kv[g->n_kv];
    if (!(kv->key = dupn(k, (size_t)kl))) return eng_errf(err, errlen, "%s: out of memory", c.name);
    g->n_kv++;
    if (parse_value(&c, kv)) return -1;
  }
  qsort(g->kv, (size_t)g->n_kv, sizeof *g->kv, cmp_kv);
  for (uint64_t i = 1; i < g->n_kv; i++)
    if (!strcmp(g->kv[i].key, g->kv[i - 1].key))
      return eng_errf(err, errlen, "%s: metadata key '%s' appears twice", c.name, g->kv[i].key);
  g->alignment = 32;
  const eng_gguf_kv *al = eng_gguf_find(g, "general.alignment");
  if (al) {
    uint32_t a = 0;
    if (al->type != GGUF_T_U32) return eng_errf(err, errlen, "%s: general.alignment must be u32", c.name);
    memcpy(&a, al->data, 4);
    if (a == 0 || (a & (a - 1)) || a > (1u << 20))
      return eng_errf(err, errlen, "%s: general.alignment %u is not a power of two (<= 1 MiB)", c.name, a);
    g->alignment = a;
  }
  for (uint64_t i = 0; i < nt; i++) {
    uint64_t nl;
    const char *nm = rdstr(&c, &nl, MAX_NAME, "tensor name");
    if (!nm) return -1;
    if (nl == 0 || memchr(nm, 0, (size_t)nl))
      return eng_errf(err, errlen, "%s: tensor %llu has an empty name or one containing NUL", c.name,
                      (unsigned long long)i);
    eng_gguf_tensor *t = &g->tensors[g->n_tensors];
    if (!(t->name = dupn(nm, (size_t)nl))) return eng_errf(err, errlen, "%s: out of memory", c.name);
    g->n_tensors++;
    uint32_t nd = 0, ty = 0;
    if (rd32(&c, &nd, "tensor dims")) return -1;
    if (nd == 0 || nd > ENG_GGUF_MAX_DIMS)
      return eng_errf(err, errlen, "%s: tensor '%s' has %u dimensions (1..%d allowed)", c.name, t->name, nd,
                      ENG_GGUF_MAX_DIMS);
    t->n_dims = (int)nd;
    for (int d = 0; d < ENG_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    uint64_t numel = 1;
    for (uint32_t d = 0; d < nd; d++) {
      uint64_t v = 0;
      if (rd64(&c, &v, "tensor dim")) return -1;
      if (v > ((uint64_t)1 << 40) || (v && numel > ((uint64_t)1 << 50) / v))
        return eng_errf(err, errlen, "%s: tensor '%s' dimension %u = %llu is absurd", c.name, t->name, d,
                        (unsigned long long)v);
      t->ne[d] = (int64_t)v;
      numel *= v;
    }
    if (rd32(&c, &ty, "tensor type") || rd64(&c, &t->offset, "tensor offset")) return -1;
    const ggml_type_info *ti = type_info((int)ty);
    if (!ti) return eng_errf(err, errlen, "%s: tensor '%s' has unknown ggml type %u", c.name, t->name, ty);
    t->ggml_type = (int)ty;
    if (t->ne[0] % ti->blck)
      return eng_errf(err, errlen, "%s: tensor '%s': row of %lld elements is not a multiple of the %s block (%d)",
                      c.name, t->name, (long long)t->ne[0], ti->name, ti->blck);
    t->nbytes = (size_t)(numel / (uint64_t)ti->blck * (uint64_t)ti->bytes);
    if (t->offset % g->alignment)
      return eng_errf(err, errlen, "%s: tensor '%s' offset %llu is not a multiple of the alignment %zu", c.name,
                      t->name, (unsigned long long)t->offset, g->alignment);
  }
  size_t pad = (g->alignment - c.pos % g->alignment) % g->alignment;
  g->data_offset = c.pos + pad;
  if (g->n_tensors && g->data_offset > size)
    return eng_errf(err, errlen, "%s: truncated GGUF file: data section starts at %zu, file has %zu bytes", c.name,
                    g->data_offset, size);
  size_t data_size = g->n_tensors ? size - g->data_offset : 0;
  for (uint64_t i = 0; i < g->n_tensors; i++) {
    eng_gguf_tensor *t = &g->tensors[i];
    if (t->offset > data_size || t->nbytes > data_size - t->offset)
      return eng_errf(err, errlen, "%s: tensor '%s' [%llu, +%zu) lies outside the data section (%zu bytes; truncated?)",
                      c.name, t->name, (unsigned long long)t->offset, t->nbytes, data_size);
    t->data = g->base + g->data_offset + t->offset;
  }
  if (g->n_tensors) {
    eng_gguf_tensor **by = malloc(sizeof *by * (size_t)g->n_tensors);
    if (!by) return eng_errf(err, errlen, "%s: out of memory", c.name);
    for (uint64_t i = 0; i < g->n_tensors; i++) by[i] = &g->tensors[i];
    qsort(by, (size_t)g->n_tensors, sizeof *by, cmp_off);
    int rc = 0;
    for (uint64_t i = 1; i < g->n_tensors && !rc; i++)
      if (by[i]->offset < by[i - 1]->offset + by[i - 1]->nbytes)
        rc = eng_errf(err, errlen, "%s: tensors '%s' and '%s' overlap in the data section", c.name, by[i - 1]->name,
                      by[i]->name);
    free(by);
    if (rc) return -1;
    qsort(g->tensors, (size_t)g->n_tensors, sizeof *g->tensors, cmp_tensor);
    for (uint64_t i = 1; i < g->n_tensors; i++)
      if (!strcmp(g->tensors[i].name, g->tensors[i - 1].name))
        return eng_errf(err, errlen, "%s: tensor '%s' appears twice", c.name, g->tensors[i].name);
  }
  return 0;
}

int eng_gguf_open(eng_gguf *g, const char *path, char *err, size_t errlen) {
  memset(g, 0, sizeof *g);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return eng_errf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return eng_errf(err, errlen, "%s: not a regular file", path);
  }
  if (st.st_size < 24) {
    close(fd);
    return eng_errf(err, errlen, "%s: truncated GGUF file (%lld bytes, header needs 24)", path, (long long)st.st_size);
  }
  void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (m == MAP_FAILED) return eng_errf(err, errlen, "%s: mmap failed: %s", path, strerror(errno));
  int rc = eng_gguf_parse(g, m, (size_t)st.st_size, path, err, errlen);
  g->mapped = 1; /* even on failure: close unmaps */
  if (rc) eng_gguf_close(g);
  return rc;
}

void eng_gguf_close(eng_gguf *g) {
  for (uint64_t i = 0; i < g->n_kv; i++) { free(g->kv[i].key); free(g->kv[i].str_off); }
  free(g->kv);
  for (uint64_t i = 0; i < g->n_tensors; i++) free(g->tensors[i].name);
  free(g->tensors);
  if (g->mapped && g->base) munmap((void *)g->base, g->size);
  free(g->path);
  memset(g, 0, sizeof *g);
}

const eng_gguf_kv *eng_gguf_find(const eng_gguf *g, const char *key) {
  size_t lo = 0, hi = (size_t)g->n_kv;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = strcmp(g->kv[mid].key, key);
    if (!c) return &g->kv[mid];
    if (c < 0) lo = mid + 1; else hi = mid;
  }
  return NULL;
}

const eng_gguf_tensor *eng_gguf_find_tensor(const eng_gguf *g, const char *name) {
  size_t lo = 0, hi = (size_t)g->n_tensors;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = strcmp(g->tensors[mid].name, name);
    if (!c) return &g->tensors[mid];
    if (c < 0) lo = mid + 1; else hi = mid;
  }
  return NULL;
}

static int64_t scalar_int(int t, const uint8_t *p, int *ok) {
  *ok = 1;
  switch (t) {
  case GGUF_T_U8: case GGUF_T_BOOL: return p[0];
  case GGUF_T_I8: return (int8_t)p[0];
  case GGUF_T_U16: { uint16_t v; memcpy(&v, p, 2); return v; }
  case GGUF_T_I16: { int16_t v; memcpy(&v, p, 2); return v; }
  case GGUF_T_U32: { uint32_t v; memcpy(&v, p, 4); return v; }
  case GGUF_T_I32: { int32_t v; memcpy(&v, p, 4); return v; }
  case GGUF_T_U64: { uint64_t v; memcpy(&v, p, 8); return v > INT64_MAX ? INT64_MAX : (int64_t)v; }
  case GGUF_T_I64: { int64_t v; memcpy(&v, p, 8); return v; }
  default: *ok = 0; return 0;
  }
}

static double scalar_float(int t, const uint8_t *p, int *ok) {
  if (t == GGUF_T_F32) { float v; memcpy(&v, p, 4); *ok = 1; return v; }
  if (t == GGUF_T_F64) { double v; memcpy(&v, p, 8); *ok = 1; return v; }
  return (double)scalar_int(t, p, ok);
}

int eng_gguf_get_int(const eng_gguf *g, const char *key, int64_t *out) {
  const eng_gguf_kv *kv = eng_gguf_find(g, key);
  int ok = 0;
  if (!kv || kv->type == GGUF_T_ARRAY) return -1;
  int64_t v = scalar_int(kv->type, kv->data, &ok);
  if (!ok) return -1;
  *out = v;
  return 0;
}

int eng_gguf_get_float(const eng_gguf *g, const char *key, double *out) {
  const eng_gguf_kv *kv = eng_gguf_find(g, key);
  int ok = 0;
  if (!kv || kv->type == GGUF_T_ARRAY) return -1;
  double v = scalar_float(kv->type, kv->data, &ok);
  if (!ok) return -1;
  *out = v;
  return 0;
}

const char *eng_gguf_get_str(const eng_gguf *g, const char *key, size_t *len) {
  const eng_gguf_kv *kv = eng_gguf_find(g, key);
  if (!kv || kv->type != GGUF_T_STRING) return NULL;
  uint64_t n;
  memcpy(&n, kv->data, 8);
  if (len) *len = (size_t)n;
  return (const char *)kv->data + 8;
}

const char *eng_gguf_arr_str(const eng_gguf_kv *kv, uint64_t i, size_t *len) {
  if (kv->type != GGUF_T_ARRAY || kv->arr_type != GGUF_T_STRING || i >= kv->n) return NULL;
  const uint8_t *p = kv->data + kv->str_off[i];
  uint64_t n;
  memcpy(&n, p, 8);
  if (len) *len = (size_t)n;
  return (const char *)p + 8;
}

int64_t eng_gguf_arr_int(const eng_gguf_kv *kv, uint64_t i) {
  int ok;
  if (kv->type != GGUF_T_ARRAY || i >= kv->n || kv->arr_type == GGUF_T_STRING) return 0;
  return scalar_int(kv->arr_type, kv->data + i * vtype_size(kv->arr_type), &ok);
}

double eng_gguf_arr_float(const eng_gguf_kv *kv, uint64_t i) {
  int ok;
  if (kv->type != GGUF_T_ARRAY || i >= kv->n || kv->arr_type == GGUF_T_STRING) return 0;
  return scalar_float(kv->arr_type, kv->data + i * vtype_size(kv->arr_type), &ok);
}
