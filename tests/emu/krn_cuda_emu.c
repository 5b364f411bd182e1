/* krn_cuda_emu.c — a CPU emulation of the CUDA backend's C entry points (kernels/krn_cuda.h,
 * kernels/krn_cuda_ops.h), linked instead of the stubs (krn_cuda_stub.c, the !MOESCOPE_HAVE_CUDA
 * half of krn_cuda_ops_stub.c) into the emu_test_* executables of CUDA-less builds, so that
 * the GPU forward's host code (engine/eng_cuda.c, eng_cuda_mla.c, eng_session.c's runner
 * loops) runs and is checked on every CI machine, under ASan/UBSan in `make test-asan`.
 *
 * What it checks is the host orchestration, not the kernels (tests/gpu/test_cuda_kernels.c
 * does that on a real device): buffer sizes, strides and offsets (every pointer a kernel or
 * copy touches must lie, with its whole extent, inside one live device allocation: a clear
 * error otherwise, and device memory is plain malloc so ASan sees the rest), host / device /
 * pinned pointer confusion, outputs overlapping inputs (a race on the GPU), argument limits
 * the real kernels refuse (GEMV rows, the cuBLAS BF16 scratch size given to ctx_create,
 * router groups, permutation totals), op order (device and pinned memory start as 0xff
 * bytes, NaN / -1, so a read before the first write poisons the logits), caches (KV rows
 * written where they are read), and stream semantics of the recording: an async D2H copy
 * into pinned memory lands only at the next krn_cuda_sync (the pinned bytes read as 0xff
 * until then), and a pinned H2D source changed before that sync is an error.
 *
 * Every op is computed on the host, single-threaded, with the reference kernels of
 * kernels/cpu/krn_ref.c (krn_ref_backend(): double accumulation) where one exists, and the
 * router (krn_cuda_route) with the CPU policy code of engine/eng_policy.c, which the kernel
 * k_route is documented to port exactly (same kinds, ties to the lower index). The cuBLAS
 * linear path rounds its input to BF16 as the real one does; so does the tensor-core grouped
 * expert linear (krn_cuda_grouped_linear_tc: BF16 x and W, float accumulation, its BF16
 * scratch written, host offsets checked to be host memory). Events record host time
 * (CLOCK_MONOTONIC), so op timings are real CPU times of the emulated ops. One device
 * ("emulated"); krn_cuda_built() is 1. Not thread-safe beyond the thread-local error line
 * (the tests drive it from one thread). */
#include "engine/eng_policy.h"
#include "kernels/krn_backend.h"
#include "kernels/krn_cuda.h"
#include "kernels/krn_cuda_ops.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

_Static_assert(KRN_ROUTE_SOFTMAX_TOPK == (int)ENG_ROUTER_SOFTMAX_TOPK && KRN_ROUTE_GROUP_LIMITED == (int)ENG_ROUTER_GROUP_LIMITED &&
                   KRN_ROUTE_SIGMOID_GROUP == (int)ENG_ROUTER_SIGMOID_GROUP &&
                   KRN_ROUTE_TOPK_SOFTMAX == (int)ENG_ROUTER_TOPK_SOFTMAX,
               "krn_cuda_router kinds are eng_router_kind values");

#define ROUTE_MAX_K 64        /* as kernels/cuda/krn_cuda_kernels.cu */
#define ROUTE_MAX_GROUPS 64
#define GEMM_TM 64            /* as kernels/cuda/krn_cuda_gemm.cu */
#define POISON 0xff

/* ---- errors --------------------------------------------------------------------------------- */
static _Thread_local char g_err[512];
static _Thread_local const char *g_op = "";

__attribute__((format(printf, 1, 2))) static int fail(const char *fmt, ...) {
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(g_err, sizeof g_err, "emulated %s: %s", g_op, msg);
  return -1;
}
#define OP(name) g_op = (name)
#define TRY(expr) do { if ((expr) != 0) return -1; } while (0)

const char *krn_cuda_last_error(void) { return g_err; }

/* ---- memory regions: device allocations and pinned host allocations --------------------------
 * Sorted by base address; a pointer belongs to the region with base <= p < base + max(size,1). */
typedef struct region { uintptr_t base; size_t size; } region;
typedef struct region_set { region *r; int n, cap; } region_set;
static region_set g_dev, g_pin;

static int reg_index(const region_set *s, uintptr_t p) {   /* last region with base <= p, or -1 */
  int lo = 0, hi = s->n - 1, best = -1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    if (s->r[mid].base <= p) { best = mid; lo = mid + 1; } else hi = mid - 1;
  }
  return best;
}
static const region *reg_find(const region_set *s, const void *p) {
  uintptr_t u = (uintptr_t)p;
  int i = reg_index(s, u);
  if (i < 0) return NULL;
  size_t sz = s->r[i].size ? s->r[i].size : 1;
  return u - s->r[i].base < sz ? &s->r[i] : NULL;
}
static int reg_add(region_set *s, void *p, size_t size) {
  if (s->n == s->cap) {
    int cap = s->cap ? 2 * s->cap : 256;
    region *nr = realloc(s->r, sizeof(region) * (size_t)cap);
    if (!nr) return -1;
    s->r = nr;
    s->cap = cap;
  }
  int i = reg_index(s, (uintptr_t)p) + 1;
  memmove(s->r + i + 1, s->r + i, sizeof(region) * (size_t)(s->n - i));
  s->r[i] = (region){(uintptr_t)p, size};
  s->n++;
  return 0;
}
static int reg_del(region_set *s, const void *p) {   /* 0, or -1 when p is not a region's base */
  int i = reg_index(s, (uintptr_t)p);
  if (i < 0 || s->r[i].base != (uintptr_t)p) return -1;
  memmove(s->r + i, s->r + i + 1, sizeof(region) * (size_t)(s->n - i - 1));
  s->n--;
  if (s->n == 0) { free(s->r); s->r = NULL; s->cap = 0; }
  return 0;
}

/* p .. p+bytes must lie in one live device allocation. */
static int dev(const void *p, size_t bytes, const char *what) {
  if (!p) return fail("%s is NULL", what);
  const region *r = reg_find(&g_dev, p);
  if (!r) return fail("%s (%p) is not device memory%s", what, p, reg_find(&g_pin, p) ? " (pinned host memory)" : "");
  size_t off = (size_t)((uintptr_t)p - r->base);
  if (bytes > r->size - off)
    return fail("%s: %zu bytes at offset %zu overrun its %zu-byte device allocation", what, bytes, off, r->size);
  return 0;
}
static int dev_opt(const void *p, size_t bytes, const char *what) { return p ? dev(p, bytes, what) : 0; }
#define DEVF(p, count, what) dev((p), sizeof(float) * (size_t)(count), (what))
#define DEVI(p, count, what) dev((p), sizeof(int) * (size_t)(count), (what))

/* Partial or total overlap of an output with an input: a data race in a real kernel. */
static int no_overlap(const void *out, size_t ob, const void *in, size_t ib, const char *o, const char *i) {
  uintptr_t a = (uintptr_t)out, b = (uintptr_t)in;
  if (!ob || !ib || a + ob <= b || b + ib <= a) return 0;
  return fail("output %s overlaps input %s", o, i);
}

/* ---- context, stream semantics ---------------------------------------------------------------- */
typedef struct pending { void *dst; const void *src; unsigned char *data; size_t bytes; } pending;

struct krn_cuda_ctx {
  size_t scratch_elems;
  pending *d2h;       /* D2H copies into pinned memory, applied at the next sync */
  int n_d2h, cap_d2h;
  pending *h2d;       /* pinned H2D sources with a snapshot, verified at the next sync */
  int n_h2d, cap_h2d;
  krn_cuda_ctx *next;
};
static krn_cuda_ctx *g_ctxs;   /* live contexts (cudaFree/cudaFreeHost synchronise the device) */

static int push(pending **q, int *n, int *cap, void *dst, const void *src, size_t bytes) {
  if (*n == *cap) {
    int nc = *cap ? 2 * *cap : 16;
    pending *nq = realloc(*q, sizeof(pending) * (size_t)nc);
    if (!nq) return fail("out of host memory");
    *q = nq;
    *cap = nc;
  }
  unsigned char *data = malloc(bytes);
  if (!data) return fail("out of host memory");
  memcpy(data, src, bytes);
  (*q)[(*n)++] = (pending){dst, src, data, bytes};
  return 0;
}

static void flush_d2h(krn_cuda_ctx *c) {
  for (int i = 0; i < c->n_d2h; i++) {
    memcpy(c->d2h[i].dst, c->d2h[i].data, c->d2h[i].bytes);
    free(c->d2h[i].data);
  }
  c->n_d2h = 0;
}

static int ctx_sync(krn_cuda_ctx *c) {
  int rc = 0;
  flush_d2h(c);
  for (int i = 0; i < c->n_h2d; i++) {
    if (rc == 0 && memcmp(c->h2d[i].src, c->h2d[i].data, c->h2d[i].bytes))
      rc = fail("the pinned source (%p, %zu bytes) of an asynchronous H2D copy changed before the stream sync",
                c->h2d[i].src, c->h2d[i].bytes);
    free(c->h2d[i].data);
  }
  c->n_h2d = 0;
  return rc;
}

/* Implicit device-wide synchronisation (cudaFree, cudaFreeHost): an error here is a race
 * in the caller that no return value can report. */
static void sync_all(const char *why) {
  for (krn_cuda_ctx *c = g_ctxs; c; c = c->next)
    if (ctx_sync(c)) { fprintf(stderr, "krn_cuda_emu: %s: %s\n", why, g_err); abort(); }
}

int krn_cuda_built(void) { return 1; }
int krn_cuda_device_count(char *name, size_t namelen, int *cc_major, int *cc_minor) {
  if (name && namelen) snprintf(name, namelen, "emulated");
  if (cc_major) *cc_major = 9;
  if (cc_minor) *cc_minor = 0;
  return 1;
}

int krn_cuda_ctx_create(krn_cuda_ctx **out, int device, size_t scratch_elems) {
  OP("ctx_create");
  *out = NULL;
  if (device != 0) return fail("no device %d (one emulated device)", device);
  krn_cuda_ctx *c = calloc(1, sizeof *c);
  if (!c) return fail("out of host memory");
  c->scratch_elems = scratch_elems;
  c->next = g_ctxs;
  g_ctxs = c;
  *out = c;
  return 0;
}
void krn_cuda_ctx_destroy(krn_cuda_ctx *c) {
  if (!c) return;
  OP("ctx_destroy");
  if (ctx_sync(c)) { fprintf(stderr, "krn_cuda_emu: context destroy: %s\n", g_err); abort(); }
  for (krn_cuda_ctx **pp = &g_ctxs; *pp; pp = &(*pp)->next)
    if (*pp == c) { *pp = c->next; break; }
  free(c->d2h);
  free(c->h2d);
  free(c);
}
int krn_cuda_sync(krn_cuda_ctx *c) { OP("stream sync"); return ctx_sync(c); }
int krn_cuda_device_info(int device, char *name, size_t namelen, size_t *total_mem, double *peak_bw) {
  OP("device_info");
  if (device != 0) return fail("no device %d", device);
  if (name && namelen) snprintf(name, namelen, "emulated");
  if (total_mem) *total_mem = 0;
  if (peak_bw) *peak_bw = 0;
  return 0;
}

/* ---- memory and copies --------------------------------------------------------------------- */
int krn_cuda_malloc(void **p, size_t bytes) {
  OP("malloc");
  *p = malloc(bytes ? bytes : 1);
  if (!*p) return fail("out of memory (%zu bytes)", bytes);
  memset(*p, POISON, bytes);   /* cudaMalloc does not zero: unwritten floats read as NaN */
  if (reg_add(&g_dev, *p, bytes)) { free(*p); *p = NULL; return fail("out of host memory"); }
  return 0;
}
void krn_cuda_free(void *p) {
  if (!p) return;
  sync_all("cudaFree");
  if (reg_del(&g_dev, p)) { fprintf(stderr, "krn_cuda_emu: krn_cuda_free(%p): not a device allocation\n", p); abort(); }
  free(p);
}
int krn_cuda_host_alloc(void **p, size_t bytes) {
  OP("host_alloc");
  *p = malloc(bytes ? bytes : 1);
  if (!*p) return fail("out of memory (%zu bytes)", bytes);
  memset(*p, POISON, bytes);
  if (reg_add(&g_pin, *p, bytes)) { free(*p); *p = NULL; return fail("out of host memory"); }
  return 0;
}
void krn_cuda_host_free(void *p) {
  if (!p) return;
  sync_all("cudaFreeHost");
  if (reg_del(&g_pin, p)) { fprintf(stderr, "krn_cuda_emu: krn_cuda_host_free(%p): not a pinned allocation\n", p); abort(); }
  free(p);
}

/* host memory = anything that is not device memory, whole range */
static int host(const void *p, size_t bytes, const char *what) {
  if (!p) return fail("%s is NULL", what);
  if (reg_find(&g_dev, p) || (bytes && reg_find(&g_dev, (const char *)p + bytes - 1)))
    return fail("%s (%p) is device memory, a host buffer was expected", what, p);
  const region *r = reg_find(&g_pin, p);
  if (r && bytes > r->size - (size_t)((uintptr_t)p - r->base))
    return fail("%s: %zu bytes overrun its pinned allocation", what, bytes);
  return 0;
}

int krn_cuda_h2d(krn_cuda_ctx *c, void *dst, const void *src, size_t bytes) {
  OP("memcpy H2D");
  if (bytes == 0) return 0;
  TRY(dev(dst, bytes, "dst"));
  TRY(host(src, bytes, "src"));
  if (reg_find(&g_pin, src)) {
    flush_d2h(c);   /* stream order: earlier D2H copies into pinned memory have landed */
    TRY(push(&c->h2d, &c->n_h2d, &c->cap_h2d, NULL, src, bytes));
  }
  memcpy(dst, src, bytes);
  return 0;
}
int krn_cuda_d2h(krn_cuda_ctx *c, void *dst, const void *src, size_t bytes) {
  OP("memcpy D2H");
  if (bytes == 0) return 0;
  TRY(dev(src, bytes, "src"));
  TRY(host(dst, bytes, "dst"));
  if (!reg_find(&g_pin, dst)) { memcpy(dst, src, bytes); return 0; }   /* pageable: synchronous */
  TRY(push(&c->d2h, &c->n_d2h, &c->cap_d2h, dst, src, bytes));
  memset(dst, POISON, bytes);   /* not there before the sync */
  return 0;
}
int krn_cuda_d2d(krn_cuda_ctx *c, void *dst, const void *src, size_t bytes) {
  (void)c;
  OP("memcpy D2D");
  if (bytes == 0) return 0;
  TRY(dev(dst, bytes, "dst"));
  TRY(dev(src, bytes, "src"));
  memmove(dst, src, bytes);
  return 0;
}
int krn_cuda_memset(krn_cuda_ctx *c, void *dst, int value, size_t bytes) {
  (void)c;
  OP("memset");
  if (bytes == 0) return 0;
  TRY(dev(dst, bytes, "dst"));
  memset(dst, value, bytes);
  return 0;
}

/* ---- events: host time of the record call (ops run synchronously here) ------------------------ */
typedef struct emu_event { int recorded; double ms; } emu_event;
int krn_cuda_event_create(void **ev) {
  OP("event_create");
  *ev = calloc(1, sizeof(emu_event));
  return *ev ? 0 : fail("out of host memory");
}
void krn_cuda_event_destroy(void *ev) { free(ev); }
int krn_cuda_event_record(krn_cuda_ctx *c, void *ev) {
  (void)c;
  OP("event_record");
  if (!ev) return fail("NULL event");
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  emu_event *e = ev;
  e->recorded = 1;
  e->ms = (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
  return 0;
}
int krn_cuda_event_elapsed_ms(void *ev0, void *ev1, float *ms) {
  OP("event_elapsed");
  *ms = 0;
  const emu_event *a = ev0, *b = ev1;
  if (!a || !b || !a->recorded || !b->recorded) return fail("event never recorded");
  *ms = (float)(b->ms - a->ms);
  return 0;
}

/* ---- kernels ---------------------------------------------------------------------------------- */
static const krn_backend *ref(void) { return krn_ref_backend(); }

int krn_cuda_embed(krn_cuda_ctx *c, float *x, const uint16_t *emb, const int *ids, int n, int dim) {
  (void)c;
  OP("embed");
  if (n <= 0) return 0;
  TRY(DEVF(x, (size_t)n * dim, "x"));
  TRY(DEVI(ids, n, "ids"));
  for (int t = 0; t < n; t++) {
    if (ids[t] < 0) return fail("token %d: id %d", t, ids[t]);
    const uint16_t *row = emb + (size_t)ids[t] * dim;
    TRY(dev(row, sizeof(uint16_t) * (size_t)dim, "emb row"));
    for (int d = 0; d < dim; d++) x[(size_t)t * dim + d] = krn_bf16_to_f32(row[d]);
  }
  return 0;
}

int krn_cuda_rmsnorm_strided(krn_cuda_ctx *c, float *y, int y_stride, const float *x, int x_stride, const float *w,
                             int n, int dim, float eps) {
  (void)c;
  OP("rmsnorm");
  if (n <= 0) return 0;
  if (dim <= 0 || y_stride < dim || x_stride < dim) return fail("dim %d, strides %d/%d", dim, y_stride, x_stride);
  if (y == x && y_stride != x_stride) return fail("in place with different strides");
  size_t ye = (size_t)(n - 1) * y_stride + dim, xe = (size_t)(n - 1) * x_stride + dim;
  TRY(DEVF(y, ye, "y"));
  TRY(DEVF(x, xe, "x"));
  TRY(DEVF(w, dim, "w"));
  if (y != x) TRY(no_overlap(y, ye * 4, x, xe * 4, "y", "x"));
  for (int r = 0; r < n; r++) ref()->rmsnorm(y + (size_t)r * y_stride, x + (size_t)r * x_stride, w, 1, dim, eps);
  return 0;
}
int krn_cuda_rmsnorm(krn_cuda_ctx *c, float *y, const float *x, const float *w, int n, int dim, float eps) {
  return krn_cuda_rmsnorm_strided(c, y, dim, x, dim, w, n, dim, eps);
}

int krn_cuda_rope_cs(krn_cuda_ctx *c, float *x, int n, int n_heads, int row_stride, int head_stride, int rot_dim,
                     const float *cs, const float *sn, int interleaved) {
  (void)c;
  OP("rope");
  int half = rot_dim / 2;
  if (n <= 0 || n_heads <= 0 || half <= 0) return 0;
  if (row_stride < 0 || head_stride < 0) return fail("strides %d/%d", row_stride, head_stride);
  TRY(DEVF(x, (size_t)(n - 1) * row_stride + (size_t)(n_heads - 1) * head_stride + 2 * (size_t)half, "x"));
  TRY(DEVF(cs, (size_t)n * half, "cos table"));
  TRY(DEVF(sn, (size_t)n * half, "sin table"));
  ref()->rope_cs(x, n, n_heads, row_stride, head_stride, rot_dim, cs, sn, interleaved);
  return 0;
}

int krn_cuda_attention(krn_cuda_ctx *c, float *out, const float *q, const float *kc, const float *vc, int n,
                       int start, int n_heads, int n_kv, int qk_dim, int v_dim, float scale, int window,
                       const float *sinks, int kind) {
  (void)c;
  OP("attention");
  if (n <= 0) return 0;
  if (n_heads <= 0 || n_kv <= 0 || n_heads % n_kv) return fail("%d heads not a multiple of %d kv heads", n_heads, n_kv);
  if (qk_dim <= 0 || v_dim <= 0 || qk_dim > KRN_CUDA_MAX_HEAD_DIM || v_dim > KRN_CUDA_MAX_HEAD_DIM)
    return fail("head dims %d/%d outside 1..%d", qk_dim, v_dim, KRN_CUDA_MAX_HEAD_DIM);
  if (n > 65535) return fail("%d tokens in one launch (max 65535)", n);
  if (start < 0) return fail("start %d", start);
  if (kind < 0 || kind > 2) return fail("kind %d", kind);
  size_t rows = (size_t)start + n, oe = (size_t)n * n_heads * v_dim, qe = (size_t)n * n_heads * qk_dim;
  TRY(DEVF(out, oe, "out"));
  TRY(DEVF(q, qe, "q"));
  TRY(DEVF(kc, rows * n_kv * qk_dim, "key cache"));
  TRY(DEVF(vc, rows * n_kv * v_dim, "value cache"));
  TRY(dev_opt(sinks, sizeof(float) * (size_t)n_heads, "sinks"));
  TRY(no_overlap(out, oe * 4, q, qe * 4, "out", "q"));
  TRY(no_overlap(out, oe * 4, kc, rows * n_kv * qk_dim * 4, "out", "key cache"));
  TRY(no_overlap(out, oe * 4, vc, rows * n_kv * v_dim * 4, "out", "value cache"));
  ref()->attention_ex(out, q, kc, vc, n, start, n_heads, n_kv, qk_dim, v_dim, scale, window, sinks);
  return 0;
}

int krn_cuda_add_bias(krn_cuda_ctx *c, float *y, const float *bias, int n, int dim) {
  (void)c;
  OP("add_bias");
  size_t total = (size_t)(n > 0 ? n : 0) * (dim > 0 ? dim : 0);
  if (total == 0 || !bias) return 0;
  TRY(DEVF(y, total, "y"));
  TRY(DEVF(bias, dim, "bias"));
  for (size_t i = 0; i < total; i++) y[i] += bias[i % (size_t)dim];
  return 0;
}

int krn_cuda_clamp(krn_cuda_ctx *c, float *x, size_t count, float lim) {
  (void)c;
  OP("clamp");
  if (count == 0) return 0;
  TRY(DEVF(x, count, "x"));
  for (size_t i = 0; i < count; i++) x[i] = fminf(fmaxf(x[i], -lim), lim);
  return 0;
}

int krn_cuda_add_rows(krn_cuda_ctx *c, float *x, const float *y, const float *s, int n, int dim) {
  (void)c;
  OP("add_rows");
  size_t total = (size_t)(n > 0 ? n : 0) * (dim > 0 ? dim : 0);
  if (total == 0) return 0;
  TRY(DEVF(x, total, "x"));
  TRY(DEVF(y, total, "y"));
  TRY(dev_opt(s, sizeof(float) * (size_t)n, "s"));
  if (x != y) TRY(no_overlap(x, total * 4, y, total * 4, "x", "y"));
  for (size_t i = 0; i < total; i++) x[i] += (s ? s[i / (size_t)dim] : 1.0f) * y[i];
  return 0;
}

int krn_cuda_rowdot_sigmoid(krn_cuda_ctx *c, float *s, const float *h, const float *w, int n, int dim) {
  (void)c;
  OP("rowdot_sigmoid");
  if (n <= 0) return 0;
  TRY(DEVF(s, n, "s"));
  TRY(DEVF(h, (size_t)n * dim, "h"));
  TRY(DEVF(w, dim, "w"));
  for (int t = 0; t < n; t++) {
    double a = 0;
    for (int d = 0; d < dim; d++) a += (double)h[(size_t)t * dim + d] * w[d];
    s[t] = (float)(1.0 / (1.0 + exp(-a)));
  }
  return 0;
}

static int swiglu_any(float *h, const float *gu, int rows, const int *rows_dev, int inter, int oai, float alpha,
                      float limit) {
  if (rows <= 0 || inter <= 0) return 0;
  int nr = rows;
  if (rows_dev) {
    TRY(DEVI(rows_dev, 1, "rows_dev"));
    if (*rows_dev < nr) nr = *rows_dev;
  }
  if (nr <= 0) return 0;
  TRY(DEVF(h, (size_t)nr * inter, "h"));
  TRY(DEVF(gu, (size_t)nr * 2 * inter, "gate_up"));
  TRY(no_overlap(h, (size_t)nr * inter * 4, gu, (size_t)nr * 2 * inter * 4, "h", "gate_up"));
  for (int r = 0; r < nr; r++) {
    const float *g = gu + (size_t)r * 2 * inter, *u = g + inter;
    if (oai) ref()->swiglu_oai(h + (size_t)r * inter, g, u, (size_t)inter, alpha, limit);
    else ref()->swiglu(h + (size_t)r * inter, g, u, (size_t)inter);
  }
  return 0;
}
int krn_cuda_swiglu(krn_cuda_ctx *c, float *h, const float *gu, int rows, const int *rows_dev, int inter) {
  (void)c;
  OP("swiglu");
  return swiglu_any(h, gu, rows, rows_dev, inter, 0, 0.0f, 0.0f);
}
int krn_cuda_swiglu_oai(krn_cuda_ctx *c, float *h, const float *gu, int rows, const int *rows_dev, int inter,
                        float alpha, float limit) {
  (void)c;
  OP("swiglu_oai");
  return swiglu_any(h, gu, rows, rows_dev, inter, 1, alpha, limit);
}

int krn_cuda_mla_kv(krn_cuda_ctx *c, float *kc, float *vc, const float *kvb, const float *kva, int n, int nh, int nope,
                    int rd, int vh, int kvr) {
  (void)c;
  OP("mla_kv");
  if (n <= 0) return 0;
  if (nh <= 0 || nope < 0 || rd < 0 || vh <= 0 || kvr < 0 || nope + rd <= 0)
    return fail("nh=%d nope=%d rope=%d v=%d kv_lora=%d", nh, nope, rd, vh, kvr);
  int qk = nope + rd, bw = nope + vh, aw = kvr + rd;
  size_t ke = (size_t)n * nh * qk, ve = (size_t)n * nh * vh, be = (size_t)n * nh * bw, ae = (size_t)n * aw;
  TRY(DEVF(kc, ke, "key cache rows"));
  TRY(DEVF(vc, ve, "value cache rows"));
  TRY(DEVF(kvb, be, "kv_b output"));
  TRY(DEVF(kva, ae, "kv_a output"));
  TRY(no_overlap(kc, ke * 4, kvb, be * 4, "key cache rows", "kv_b output"));
  TRY(no_overlap(kc, ke * 4, kva, ae * 4, "key cache rows", "kv_a output"));
  TRY(no_overlap(vc, ve * 4, kvb, be * 4, "value cache rows", "kv_b output"));
  TRY(no_overlap(vc, ve * 4, kva, ae * 4, "value cache rows", "kv_a output"));
  TRY(no_overlap(kc, ke * 4, vc, ve * 4, "key cache rows", "value cache rows"));
  for (int t = 0; t < n; t++)
    for (int h = 0; h < nh; h++) {
      const float *src = kvb + (size_t)t * nh * bw + (size_t)h * bw;
      float *k = kc + (size_t)t * nh * qk + (size_t)h * qk, *v = vc + (size_t)t * nh * vh + (size_t)h * vh;
      for (int d = 0; d < qk; d++) k[d] = d < nope ? src[d] : kva[(size_t)t * aw + kvr + (d - nope)];
      for (int d = 0; d < vh; d++) v[d] = src[nope + d];
    }
  return 0;
}

/* y[rows, out] = x . W^T (+ bias) with krn_ref's matmul_w on the BF16 view; round_x: the
 * input rounded to BF16 first (cuBLAS path). */
static int lin_bf16(float *y, const float *x, const uint16_t *w, const float *bias, int rows, int in, int out,
                    int round_x) {
  krn_w v = krn_w_view(KRN_DT_BF16, w, out, in);
  float *xr = NULL;
  if (round_x) {
    size_t nx = (size_t)rows * in;
    xr = malloc(sizeof(float) * nx);
    if (!xr) return fail("out of host memory");
    for (size_t i = 0; i < nx; i++) xr[i] = krn_bf16_to_f32(krn_f32_to_bf16(x[i]));
  }
  ref()->matmul_w(y, xr ? xr : x, &v, bias, rows, in, out);
  free(xr);
  return 0;
}

int krn_cuda_linear(krn_cuda_ctx *c, float *y, const float *x, const uint16_t *w, const float *bias, int rows,
                    int in, int out, int mode) {
  OP("linear");
  if (rows <= 0) return 0;
  if (in <= 0 || out <= 0) return fail("in=%d out=%d", in, out);
  if (mode == KRN_LIN_AUTO) mode = rows <= KRN_CUDA_GEMV_MAX_ROWS ? KRN_LIN_GEMV : KRN_LIN_CUBLAS;
  if (mode == KRN_LIN_GEMV && rows > KRN_CUDA_GEMV_MAX_ROWS)
    return fail("GEMV takes at most %d rows (%d)", KRN_CUDA_GEMV_MAX_ROWS, rows);
  if (mode == KRN_LIN_TILED && (size_t)rows > 65535u * GEMM_TM) return fail("%d rows", rows);
  if (mode != KRN_LIN_GEMV && mode != KRN_LIN_TILED && mode != KRN_LIN_CUBLAS) return fail("unknown mode %d", mode);
  if (mode == KRN_LIN_CUBLAS && (size_t)rows * in > c->scratch_elems)
    return fail("%zu input values exceed the BF16 scratch (%zu)", (size_t)rows * in, c->scratch_elems);
  size_t ye = (size_t)rows * out, xe = (size_t)rows * in;
  TRY(DEVF(y, ye, "y"));
  TRY(DEVF(x, xe, "x"));
  TRY(dev(w, sizeof(uint16_t) * (size_t)out * in, "W"));
  TRY(dev_opt(bias, sizeof(float) * (size_t)out, "bias"));
  TRY(no_overlap(y, ye * 4, x, xe * 4, "y", "x"));
  return lin_bf16(y, x, w, bias, rows, in, out, mode == KRN_LIN_CUBLAS);
}

int krn_cuda_linear_f32w(krn_cuda_ctx *c, float *y, const float *x, const float *w, const float *bias, int rows,
                         int in, int out) {
  (void)c;
  OP("linear_f32w");
  if (rows <= 0) return 0;
  if (in <= 0 || out <= 0 || rows > 65535) return fail("rows=%d in=%d out=%d", rows, in, out);
  size_t ye = (size_t)rows * out, xe = (size_t)rows * in;
  TRY(DEVF(y, ye, "y"));
  TRY(DEVF(x, xe, "x"));
  TRY(DEVF(w, (size_t)out * in, "W"));
  TRY(dev_opt(bias, sizeof(float) * (size_t)out, "bias"));
  TRY(no_overlap(y, ye * 4, x, xe * 4, "y", "x"));
  ref()->matmul(y, x, w, bias, rows, in, out);
  return 0;
}

int krn_cuda_grouped_linear(krn_cuda_ctx *c, float *y, const float *x, const uint16_t *w, size_t w_stride,
                            const float *bias, const int *offsets, const int *row_exp, int n_groups,
                            int max_rows, int in, int out, int mode) {
  (void)c;
  OP("grouped linear");
  if (max_rows <= 0) return 0;
  if (in <= 0 || out <= 0 || n_groups <= 0) return fail("in=%d out=%d groups=%d", in, out, n_groups);
  if (n_groups > 65535) return fail("%d groups (max 65535)", n_groups);
  if (mode == KRN_LIN_AUTO) mode = max_rows <= KRN_CUDA_GEMV_MAX_ROWS * 8 ? KRN_LIN_GEMV : KRN_LIN_TILED;
  if (mode != KRN_LIN_GEMV && mode != KRN_LIN_TILED) return fail("unknown mode %d", mode);
  if (mode == KRN_LIN_GEMV && max_rows > 65535) return fail("%d rows for the GEMV path", max_rows);
  if (mode == KRN_LIN_TILED && (size_t)max_rows > 65535u * GEMM_TM) return fail("%d rows", max_rows);
  if (w_stride < (size_t)out * in) return fail("weight stride %zu < %d x %d", w_stride, out, in);
  TRY(DEVI(offsets, n_groups + 1, "offsets"));
  TRY(dev(w, sizeof(uint16_t) * ((size_t)(n_groups - 1) * w_stride + (size_t)out * in), "W"));
  TRY(dev_opt(bias, sizeof(float) * (size_t)n_groups * out, "bias"));
  for (int g = 0; g < n_groups; g++)
    if (offsets[g] < 0 || offsets[g + 1] < offsets[g]) return fail("offsets[%d..%d] = %d, %d", g, g + 1, offsets[g], offsets[g + 1]);
  int total = offsets[n_groups];
  if (total > max_rows) return fail("%d rows in the groups, max_rows %d", total, max_rows);
  if (total == 0) return 0;
  TRY(DEVF(y, (size_t)total * out, "y"));
  TRY(DEVF(x, (size_t)total * in, "x"));
  TRY(no_overlap(y, (size_t)total * out * 4, x, (size_t)total * in * 4, "y", "x"));
  if (mode == KRN_LIN_GEMV) {   /* one row at a time, its group from row_exp (offsets only give the total) */
    TRY(DEVI(row_exp, total, "row_exp"));
    for (int r = 0; r < total; r++) {
      int e = row_exp[r];
      if (e < 0 || e >= n_groups) return fail("row %d: group %d of %d", r, e, n_groups);
      TRY(lin_bf16(y + (size_t)r * out, x + (size_t)r * in, w + (size_t)e * w_stride, bias ? bias + (size_t)e * out : NULL,
                   1, in, out, 0));
    }
    return 0;
  }
  for (int g = 0; g < n_groups; g++) {   /* tiled: groups from offsets */
    int r0 = offsets[g], nr = offsets[g + 1] - r0;
    if (nr > 0)
      TRY(lin_bf16(y + (size_t)r0 * out, x + (size_t)r0 * in, w + (size_t)g * w_stride, bias ? bias + (size_t)g * out : NULL,
                   nr, in, out, 0));
  }
  return 0;
}

/* Tensor-core grouped linear (kernels/cuda/krn_cuda_gemm_tc.cu): host offsets, x rounded to
 * BF16 into xbf (written, as on the device), then per group BF16 x . BF16 W^T with float
 * accumulation (cuBLAS COMPUTE_32F), bias added after. */
int krn_cuda_grouped_linear_tc(krn_cuda_ctx *c, float *y, const float *x, uint16_t *xbf, const uint16_t *w,
                               size_t w_stride, const float *bias, const int *h_offsets, int n_groups, int in,
                               int out, int mode) {
  (void)c;
  OP("grouped linear tc");
  if (in <= 0 || out <= 0 || n_groups <= 0) return fail("in=%d out=%d groups=%d", in, out, n_groups);
  if (mode != KRN_TC_AUTO && mode != KRN_TC_GROUPED && mode != KRN_TC_PER_GROUP) return fail("unknown mode %d", mode);
  if (w_stride < (size_t)out * in) return fail("weight stride %zu < %d x %d", w_stride, out, in);
  TRY(host(h_offsets, sizeof(int) * (size_t)(n_groups + 1), "offsets (host)"));
  if (h_offsets[0] != 0) return fail("offsets must start at 0 (%d)", h_offsets[0]);
  for (int g = 0; g < n_groups; g++)
    if (h_offsets[g + 1] < h_offsets[g]) return fail("offsets[%d..%d] = %d, %d", g, g + 1, h_offsets[g], h_offsets[g + 1]);
  int total = h_offsets[n_groups];
  if (total == 0) return 0;
  size_t ye = (size_t)total * out, xe = (size_t)total * in;
  TRY(DEVF(y, ye, "y"));
  TRY(DEVF(x, xe, "x"));
  TRY(dev(xbf, sizeof(uint16_t) * xe, "xbf (BF16 scratch)"));
  TRY(dev(w, sizeof(uint16_t) * ((size_t)(n_groups - 1) * w_stride + (size_t)out * in), "W"));
  TRY(dev_opt(bias, sizeof(float) * (size_t)n_groups * out, "bias"));
  TRY(no_overlap(y, ye * 4, x, xe * 4, "y", "x"));
  TRY(no_overlap(y, ye * 4, xbf, xe * 2, "y", "xbf"));
  TRY(no_overlap(xbf, xe * 2, x, xe * 4, "xbf", "x"));
  for (size_t i = 0; i < xe; i++) xbf[i] = krn_f32_to_bf16(x[i]);
  for (int g = 0; g < n_groups; g++) {
    const uint16_t *wg = w + (size_t)g * w_stride;
    for (int r = h_offsets[g]; r < h_offsets[g + 1]; r++) {
      const uint16_t *xr = xbf + (size_t)r * in;
      for (int o = 0; o < out; o++) {
        const uint16_t *wr = wg + (size_t)o * in;
        float acc = 0.0f;
        for (int i = 0; i < in; i++) acc += krn_bf16_to_f32(xr[i]) * krn_bf16_to_f32(wr[i]);
        y[(size_t)r * out + o] = acc + (bias ? bias[(size_t)g * out + o] : 0.0f);
      }
    }
  }
  return 0;
}

/* The router: eng_policy.c's native policy of the same kind (k_route is its port). */
int krn_cuda_route(krn_cuda_ctx *c, const krn_cuda_router *r, const float *logits, const float *sel_bias, int n,
                   float *probs, int *experts, float *weights, float *scratch) {
  (void)c;
  OP("router");
  if (n <= 0) return 0;
  int E = r->n_experts, k = r->k, G = r->n_group > 0 ? r->n_group : 1;
  int grouped = r->kind == KRN_ROUTE_GROUP_LIMITED || r->kind == KRN_ROUTE_SIGMOID_GROUP;
  if (r->kind < 0 || r->kind > KRN_ROUTE_TOPK_SOFTMAX) return fail("unknown kind %d", r->kind);
  if (E <= 0 || k < 1 || k > E || k > ROUTE_MAX_K) return fail("k=%d with %d experts", k, E);
  if (r->stride < E) return fail("logit stride %d < %d experts", r->stride, E);
  if (grouped && (G > ROUTE_MAX_GROUPS || E % G || r->topk_group < 1 || r->topk_group > G))
    return fail("%d groups (top %d) of %d experts unsupported", G, r->topk_group, E);
  TRY(DEVF(logits, (size_t)(n - 1) * r->stride + E, "logits"));
  if (r->kind == KRN_ROUTE_SIGMOID_GROUP) TRY(dev_opt(sel_bias, sizeof(float) * (size_t)E, "sel_bias"));
  TRY(DEVF(probs, (size_t)n * E, "probs"));
  TRY(DEVI(experts, (size_t)n * k, "experts"));
  TRY(DEVF(weights, (size_t)n * k, "weights"));
  TRY(DEVF(scratch, (size_t)n * (E + G), "scratch"));
  memset(scratch, POISON, sizeof(float) * (size_t)n * (E + G));   /* the kernel's working memory */
  eng_router_cfg rc = {(eng_router_kind)r->kind, E, k, r->renorm, grouped ? G : 1, grouped ? r->topk_group : 1,
                       r->scale, 0.0f};
  eng_policy *p = NULL;
  char err[256];
  if (eng_policy_create_cfg(&p, "native", &rc, err, sizeof err)) return fail("%s", err);
  p->rc.scale = r->scale;          /* exactly the kernel's factor (the policy maps 0 to 1) */
  p->logit_stride = r->stride;
  p->sel_bias = r->kind == KRN_ROUTE_SIGMOID_GROUP ? sel_bias : NULL;
  int *dropped = calloc((size_t)E, sizeof(int));
  eng_route_out o = {experts, weights, probs, dropped, NULL, 0};
  int rc2 = dropped ? p->route(p, logits, NULL, n, 0, &o) : -1;
  free(dropped);
  eng_policy_free(p);
  return rc2 ? fail("the CPU policy failed") : 0;
}

int krn_cuda_moe_permute(krn_cuda_ctx *c, const int *experts, int n, int k, int n_experts, int *counts,
                         int *offsets, int *row_tok, int *row_exp, int *slot_row) {
  (void)c;
  OP("moe_permute");
  if (n <= 0 || k <= 0 || n_experts <= 0) return fail("n=%d k=%d E=%d", n, k, n_experts);
  int nk = n * k, E = n_experts;
  TRY(DEVI(experts, nk, "experts"));
  TRY(DEVI(counts, E, "counts"));
  TRY(DEVI(offsets, E + 1, "offsets"));
  TRY(DEVI(row_tok, nk, "row_tok"));
  TRY(DEVI(row_exp, nk, "row_exp"));
  TRY(DEVI(slot_row, nk, "slot_row"));
  for (int s = 0; s < nk; s++) slot_row[s] = -1;
  for (int e = 0; e < E; e++) {
    int cnt = 0;
    for (int s = 0; s < nk; s++) cnt += experts[s] == e;
    counts[e] = cnt;
  }
  int acc = 0;
  for (int e = 0; e < E; e++) { offsets[e] = acc; acc += counts[e]; }
  offsets[E] = acc;
  for (int e = 0; e < E; e++) {
    int r = offsets[e];
    for (int s = 0; s < nk; s++)
      if (experts[s] == e) { row_tok[r] = s / k; row_exp[r] = e; slot_row[s] = r; r++; }
  }
  return 0;
}

int krn_cuda_gather_rows(krn_cuda_ctx *c, float *dst, const float *src, const int *row_tok, const int *total,
                         int max_rows, int dim) {
  (void)c;
  OP("gather_rows");
  if (max_rows <= 0) return 0;
  TRY(DEVI(total, 1, "total"));
  int nr = *total;
  if (nr < 0 || nr > max_rows) return fail("*total = %d rows, %d launched", nr, max_rows);
  if (nr == 0) return 0;
  TRY(DEVF(dst, (size_t)nr * dim, "dst"));
  TRY(DEVI(row_tok, nr, "row_tok"));
  for (int r = 0; r < nr; r++) {
    const float *s = src + (size_t)row_tok[r] * dim;
    if (row_tok[r] < 0) return fail("row %d: token %d", r, row_tok[r]);
    TRY(DEVF(s, dim, "src row"));
    TRY(no_overlap(dst, (size_t)nr * dim * 4, s, (size_t)dim * 4, "dst", "src row"));
    memcpy(dst + (size_t)r * dim, s, sizeof(float) * (size_t)dim);
  }
  return 0;
}

int krn_cuda_moe_combine(krn_cuda_ctx *c, float *x, const float *y, const int *slot_row, const float *weights,
                         int n, int k, int dim) {
  (void)c;
  OP("moe_combine");
  if (n <= 0) return 0;
  size_t xe = (size_t)n * dim;
  TRY(DEVF(x, xe, "x"));
  TRY(DEVI(slot_row, (size_t)n * k, "slot_row"));
  TRY(DEVF(weights, (size_t)n * k, "weights"));
  for (int s = 0; s < n * k; s++) {
    if (slot_row[s] < 0) continue;
    const float *yr = y + (size_t)slot_row[s] * dim;
    TRY(DEVF(yr, dim, "y row"));
    TRY(no_overlap(x, xe * 4, yr, (size_t)dim * 4, "x", "y row"));
  }
  for (int t = 0; t < n; t++)
    for (int d = 0; d < dim; d++) {
      float acc = 0.0f;
      for (int j = 0; j < k; j++) {
        int r = slot_row[(size_t)t * k + j];
        if (r >= 0) acc += weights[(size_t)t * k + j] * y[(size_t)r * dim + d];
      }
      x[(size_t)t * dim + d] += acc;
    }
  return 0;
}

int krn_cuda_argmax(krn_cuda_ctx *c, int *out, const float *logits, int n, int vocab) {
  (void)c;
  OP("argmax");
  if (n <= 0 || vocab <= 0) return fail("n=%d vocab=%d", n, vocab);
  TRY(DEVI(out, n, "out"));
  TRY(DEVF(logits, (size_t)n * vocab, "logits"));
  for (int t = 0; t < n; t++) {
    const float *z = logits + (size_t)t * vocab;
    int best = -1;
    for (int i = 0; i < vocab; i++)
      if (best < 0 || z[i] > z[best]) best = i;
    out[t] = best < 0 ? 0 : best;
  }
  return 0;
}

int krn_cuda_sample(krn_cuda_ctx *c, int *out, const float *logits, int vocab, float temperature, float r) {
  OP("sample");
  if (vocab <= 0) return fail("vocab %d", vocab);
  if (!(temperature > 0)) return krn_cuda_argmax(c, out, logits, 1, vocab);
  if (r < 0 || r >= 1) return fail("r=%g outside [0,1)", (double)r);
  TRY(DEVI(out, 1, "out"));
  TRY(DEVF(logits, vocab, "logits"));
  float mx = -INFINITY;
  for (int i = 0; i < vocab; i++) mx = fmaxf(mx, logits[i]);
  double total = 0;
  for (int i = 0; i < vocab; i++) total += exp((double)(logits[i] - mx) / temperature);
  double target = r * total, acc = 0;
  int pick = vocab - 1;
  for (int i = 0; i < vocab; i++) {
    acc += exp((double)(logits[i] - mx) / temperature);
    if (acc > target) { pick = i; break; }
  }
  *out = pick;
  return 0;
}
