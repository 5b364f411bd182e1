/* prb_nvtx.c — the scope tracker (prb_nvtx.h): the engine's scope hooks become NVTX3
 * push/pop ranges in the `moescope` domain, CUPTI external correlation ids (one per op
 * scope), and recorded ranges/correlations written to the trace DB at the end of the run
 * through prb_nsys_write() (NVTX_EVENTS, kernel_scope, CUPTI_ACTIVITY_KIND_*). */
#include "probes/prb_nvtx.h"
#include "probes/prb_cupti.h"
#include "probes/prb_nsys.h"
#include "kernels/krn_cuda.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifdef MOESCOPE_HAVE_NVTX
#include <nvtx3/nvToolsExt.h>
#endif

#define MAX_DEPTH 16

typedef struct frame {
  uint64_t start;
  int scope, layer, op, expert;
  int64_t batch_id, payload;
  int cupti_pushed;
} frame;

struct prb_scope {
  prb_scope_opts o;
  uint32_t pid, tid;
  frame stack[MAX_DEPTH];
  int depth, overflow, mismatched;
  prb_range_rec *ranges; size_t n_ranges, cap_ranges;
  prb_scope_rec *scopes; size_t n_scopes, cap_scopes;
  int oom;
  prb_cupti *cupti;
#ifdef MOESCOPE_HAVE_NVTX
  nvtxDomainHandle_t domain;
  nvtxStringHandle_t op_str[PRB_OP_COUNT];
#endif
};

int prb_nvtx_built(void) {
#ifdef MOESCOPE_HAVE_NVTX
  return 1;
#else
  return 0;
#endif
}

prb_scope_opts prb_scope_defaults(int64_t run_id) {
  prb_scope_opts o = { .run_id = run_id, .nvtx = 1, .cupti = 0, .record_depth = PRB_SCOPE_LAYER };
  return o;
}

static void *grow(void **arr, size_t *n, size_t *cap, size_t sz) {
  if (*n == *cap) {
    size_t nc = *cap ? *cap * 2 : 256;
    void *na = realloc(*arr, nc * sz);
    if (!na) return NULL;
    *arr = na;
    *cap = nc;
  }
  return (char *)*arr + (*n)++ * sz;
}

/* payload of a range: what the scope is about */
static int64_t payload_of(const prb_scope *s, int scope, int64_t bid, int layer, int expert) {
  switch (scope) {
    case PRB_SCOPE_RUN: return s->o.run_id;
    case PRB_SCOPE_BATCH: return bid;
    case PRB_SCOPE_EXPERT: return expert;
    default: return layer;
  }
}

#ifdef MOESCOPE_HAVE_NVTX
static const uint32_t k_colors[PRB_SCOPE_COUNT] = { 0xff4e79a7u, 0xfff28e2bu, 0xff59a14fu, 0xffe15759u, 0xff76b7b2u };

static void nvtx_push(prb_scope *s, int scope, int64_t bid, int layer, int op, int expert, int64_t payload) {
  nvtxEventAttributes_t a;
  memset(&a, 0, sizeof a);
  a.version = NVTX_VERSION;
  a.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
  a.category = (uint32_t)scope + 1;
  a.colorType = NVTX_COLOR_ARGB;
  a.color = k_colors[scope];
  a.payloadType = NVTX_PAYLOAD_TYPE_INT64;
  a.payload.llValue = payload;
  char msg[64];
  if (scope == PRB_SCOPE_OP && op >= 0 && op < PRB_OP_COUNT) {
    if (!s->op_str[op]) s->op_str[op] = nvtxDomainRegisterStringA(s->domain, prb_op_name(op));
    a.messageType = NVTX_MESSAGE_TYPE_REGISTERED;
    a.message.registered = s->op_str[op];
  } else {
    switch (scope) {
      case PRB_SCOPE_RUN: snprintf(msg, sizeof msg, "run %lld", (long long)s->o.run_id); break;
      case PRB_SCOPE_BATCH: snprintf(msg, sizeof msg, "batch %lld", (long long)bid); break;
      case PRB_SCOPE_LAYER: snprintf(msg, sizeof msg, "layer %d", layer); break;
      case PRB_SCOPE_EXPERT: snprintf(msg, sizeof msg, "expert %d", expert); break;
      default: snprintf(msg, sizeof msg, "%s", prb_op_name(op)); break;
    }
    a.messageType = NVTX_MESSAGE_TYPE_ASCII;
    a.message.ascii = msg;
  }
  nvtxDomainRangePushEx(s->domain, &a);
}
#endif

static void scope_begin(void *ctx, int scope, int64_t bid, int layer, int op, int expert) {
  prb_scope *s = ctx;
  if (scope < 0 || scope >= PRB_SCOPE_COUNT) return;
  int64_t payload = payload_of(s, scope, bid, layer, expert);
#ifdef MOESCOPE_HAVE_NVTX
  if (s->o.nvtx) nvtx_push(s, scope, bid, layer, op, expert, payload);
#endif
  if (s->depth >= MAX_DEPTH) { s->overflow++; return; }
  frame *f = &s->stack[s->depth++];
  *f = (frame){ .start = prb_now_ns(), .scope = scope, .layer = layer, .op = op, .expert = expert,
                .batch_id = bid, .payload = payload, .cupti_pushed = 0 };
  if (s->cupti && (scope == PRB_SCOPE_OP || scope == PRB_SCOPE_EXPERT)) {
    prb_scope_rec *r = grow((void **)&s->scopes, &s->n_scopes, &s->cap_scopes, sizeof *r);
    if (!r) { s->oom = 1; return; }
    *r = (prb_scope_rec){ .batch_id = bid, .layer = layer, .op = op, .expert = expert };
    prb_cupti_push(s->cupti, (uint64_t)s->n_scopes);   /* external id = index + 1 */
    f->cupti_pushed = 1;
  }
}

static void scope_end(void *ctx, int scope, int64_t bid, int layer, int op, int expert) {
  prb_scope *s = ctx;
  (void)op; (void)expert; (void)layer; (void)bid;
  if (scope < 0 || scope >= PRB_SCOPE_COUNT) return;
  uint64_t now = prb_now_ns();
#ifdef MOESCOPE_HAVE_NVTX
  if (s->o.nvtx) nvtxDomainRangePop(s->domain);
#endif
  if (s->overflow) { s->overflow--; return; }
  if (s->depth == 0) { s->mismatched++; return; }
  frame *f = &s->stack[--s->depth];
  if (f->scope != scope) s->mismatched++;
  if (f->cupti_pushed) prb_cupti_pop(s->cupti);
  if (scope == PRB_SCOPE_BATCH) prb_cupti_flush(s->cupti);
  if (f->scope <= s->o.record_depth) {
    prb_range_rec *r = grow((void **)&s->ranges, &s->n_ranges, &s->cap_ranges, sizeof *r);
    if (!r) { s->oom = 1; return; }
    *r = (prb_range_rec){ .start = f->start, .end = now, .tid = s->tid, .scope = f->scope, .layer = f->layer,
                          .op = f->op, .expert = f->expert, .batch_id = f->batch_id, .payload = f->payload };
  }
}

prb_scope *prb_scope_open(prb_probe *probe, const prb_scope_opts *o, char *warn, size_t warnlen) {
  if (warn && warnlen) warn[0] = 0;
  prb_scope *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->o = o ? *o : prb_scope_defaults(0);
  s->pid = (uint32_t)getpid();
  s->tid = (uint32_t)syscall(SYS_gettid);
#ifdef MOESCOPE_HAVE_NVTX
  if (s->o.nvtx) {
    s->domain = nvtxDomainCreateA(PRB_NVTX_DOMAIN);
    for (int c = 0; c < PRB_SCOPE_COUNT; c++) nvtxDomainNameCategoryA(s->domain, (uint32_t)c + 1, prb_scope_name(c));
  }
#endif
  if (s->o.cupti) {
    char why[512];
    s->cupti = prb_cupti_start(why, sizeof why);
    if (!s->cupti && warn && warnlen) snprintf(warn, warnlen, "%s", why);
  }
  probe->scope_ctx = s;
  probe->scope_begin = scope_begin;
  probe->scope_end = scope_end;
  scope_begin(s, PRB_SCOPE_RUN, -1, -1, -1, -1);
  return s;
}

int prb_scope_close(prb_scope *s, const char *db_path, char *err, size_t errlen, char *warn, size_t warnlen) {
  if (warn && warnlen) warn[0] = 0;
  if (!s) return 0;
  /* close whatever is still open (an error path left scopes open), the run range last */
  while (s->depth > 0) scope_end(s, s->stack[s->depth - 1].scope, -1, -1, -1, -1);
  prb_cupti_stop(s->cupti);
  int rc = 0;
  prb_nsys_data d = { .run_id = s->o.run_id, .pid = s->pid, .scopes = s->scopes, .n_scopes = s->n_scopes,
                      .ranges = s->ranges, .n_ranges = s->n_ranges };
  prb_gpu_info gpu;
  prb_cupti_store *st = prb_cupti_records(s->cupti);
  if (st) {
    prb_cupti_store_data(st, &d);
    memset(&gpu, 0, sizeof gpu);
    if (krn_cuda_device_count(gpu.name, sizeof gpu.name, &gpu.compute_major, &gpu.compute_minor) > 0) {
      d.gpus = &gpu;
      d.n_gpus = 1;
    }
    if (warn && warnlen && (st->dropped || st->oom))
      snprintf(warn, warnlen, "CUPTI dropped %llu activity records%s (larger buffers or shorter runs keep them)",
               (unsigned long long)st->dropped, st->oom ? " and some were lost to memory" : "");
  }
  if (warn && warnlen && !warn[0] && (s->mismatched || s->oom))
    snprintf(warn, warnlen, "scope ranges: %d mismatched begin/end%s", s->mismatched, s->oom ? ", out of memory" : "");
  if (db_path && (d.n_ranges || d.n_kernels || d.n_apis || d.n_memcpys || d.n_memsets || d.n_syncs))
    rc = prb_nsys_write_path(db_path, &d, err, errlen);
  prb_cupti_free(s->cupti);
  free(s->ranges);
  free(s->scopes);
  free(s);
  return rc;
}
