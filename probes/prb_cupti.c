/* prb_cupti.c — the CUPTI Activity API collector (see prb_cupti.h).
 *
 * Two halves: the record store (CUPTI record -> intermediate prb_*_rec, a pure function
 * unit-tested with hand-built CUpti_ActivityKernel10 & co. when the headers exist), and
 * the live collector (buffer callbacks, enable/flush/finalize, external correlation ids),
 * compiled only with CUPTI (MOESCOPE_HAVE_CUPTI) and degrading to "unavailable" otherwise. */
#include "probes/prb_cupti.h"
#include "probes/prb_probe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef MOESCOPE_HAVE_CUPTI
#include <cupti.h>
#endif

/* ---- store ----------------------------------------------------------------------------- */

void prb_cupti_store_init(prb_cupti_store *s) {
  memset(s, 0, sizeof *s);
  pthread_mutex_init(&s->mu, NULL);
}

void prb_cupti_store_free(prb_cupti_store *s) {
  free(s->kernels); free(s->memcpys); free(s->memsets); free(s->apis); free(s->syncs); free(s->extcorr);
  for (size_t i = 0; i < s->n_names; i++) free(s->names[i]);
  free(s->names);
  pthread_mutex_destroy(&s->mu);
  memset(s, 0, sizeof *s);
}

void prb_cupti_store_data(const prb_cupti_store *s, prb_nsys_data *d) {
  d->kernels = s->kernels; d->n_kernels = s->n_kernels;
  d->memcpys = s->memcpys; d->n_memcpys = s->n_memcpys;
  d->memsets = s->memsets; d->n_memsets = s->n_memsets;
  d->apis = s->apis; d->n_apis = s->n_apis;
  d->syncs = s->syncs; d->n_syncs = s->n_syncs;
  d->extcorr = s->extcorr; d->n_extcorr = s->n_extcorr;
}


int prb_cupti_built(void) {
#ifdef MOESCOPE_HAVE_CUPTI
  return 1;
#else
  return 0;
#endif
}

#ifdef MOESCOPE_HAVE_CUPTI

/* grows *arr (elements of size sz) to hold one more; returns the new slot or NULL */
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
#define PUSH(s, f) ((void)sizeof((s)->f[0]), grow((void **)&(s)->f, &(s)->n_##f, &(s)->cap_##f, sizeof((s)->f[0])))

static const char *keep_name(prb_cupti_store *s, const char *name) {
  if (!name) return NULL;
  if (s->n_names && !strcmp(s->names[s->n_names - 1], name)) return s->names[s->n_names - 1];
  char **slot = grow((void **)&s->names, &s->n_names, &s->cap_names, sizeof(char *));
  if (!slot) return NULL;
  *slot = strdup(name);
  if (!*slot) s->n_names--;
  return *slot;
}

#define TS(s, x) ((uint64_t)((int64_t)(x) + (s)->ts_offset))

static const char *cupti_api_name(int api, uint32_t cbid) {
  const char *name = NULL;
  if (cuptiGetCallbackName(api == PRB_API_DRIVER ? CUPTI_CB_DOMAIN_DRIVER_API : CUPTI_CB_DOMAIN_RUNTIME_API,
                           cbid, &name) != CUPTI_SUCCESS)
    return NULL;
  return name;
}

int prb_cupti_store_add(prb_cupti_store *s, const void *rec) {
  const CUpti_Activity *a = rec;
  switch (a->kind) {
    case CUPTI_ACTIVITY_KIND_KERNEL:
    case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: {
      const CUpti_ActivityKernel10 *k = rec;
      prb_kernel_rec *r = PUSH(s, kernels);
      if (!r) return -1;
      *r = (prb_kernel_rec){ .start = TS(s, k->start), .end = TS(s, k->end), .device_id = k->deviceId,
        .context_id = k->contextId, .stream_id = k->streamId, .correlation_id = k->correlationId,
        .grid = {k->gridX, k->gridY, k->gridZ}, .block = {k->blockX, k->blockY, k->blockZ},
        .registers_per_thread = k->registersPerThread, .static_smem = k->staticSharedMemory,
        .dynamic_smem = k->dynamicSharedMemory, .local_mem_per_thread = k->localMemoryPerThread,
        .local_mem_total = k->localMemoryTotal_v2 ? k->localMemoryTotal_v2 : k->localMemoryTotal,
        .grid_id = k->gridId, .shared_mem_executed = k->sharedMemoryExecuted, .graph_node_id = k->graphNodeId,
        .launch_type = k->launchType, .cache_config = k->cacheConfig.both, .name = keep_name(s, k->name) };
      return 1;
    }
    case CUPTI_ACTIVITY_KIND_MEMCPY: {
      const CUpti_ActivityMemcpy6 *m = rec;
      prb_memcpy_rec *r = PUSH(s, memcpys);
      if (!r) return -1;
      *r = (prb_memcpy_rec){ .start = TS(s, m->start), .end = TS(s, m->end), .bytes = m->bytes,
        .graph_node_id = m->graphNodeId, .device_id = m->deviceId, .context_id = m->contextId,
        .stream_id = m->streamId, .correlation_id = m->correlationId, .copy_kind = m->copyKind,
        .src_kind = m->srcKind, .dst_kind = m->dstKind };
      return 1;
    }
    case CUPTI_ACTIVITY_KIND_MEMSET: {
      const CUpti_ActivityMemset4 *m = rec;
      prb_memset_rec *r = PUSH(s, memsets);
      if (!r) return -1;
      *r = (prb_memset_rec){ .start = TS(s, m->start), .end = TS(s, m->end), .bytes = m->bytes,
        .graph_node_id = m->graphNodeId, .device_id = m->deviceId, .context_id = m->contextId,
        .stream_id = m->streamId, .correlation_id = m->correlationId, .value = m->value,
        .mem_kind = m->memoryKind };
      return 1;
    }
    case CUPTI_ACTIVITY_KIND_RUNTIME:
    case CUPTI_ACTIVITY_KIND_DRIVER: {
      const CUpti_ActivityAPI *p = rec;
      int api = a->kind == CUPTI_ACTIVITY_KIND_DRIVER ? PRB_API_DRIVER : PRB_API_RUNTIME;
      const char *nm = s->api_name ? s->api_name(api, p->cbid) : cupti_api_name(api, p->cbid);
      prb_api_rec *r = PUSH(s, apis);
      if (!r) return -1;
      *r = (prb_api_rec){ .start = TS(s, p->start), .end = TS(s, p->end), .thread_id = p->threadId,
        .correlation_id = p->correlationId, .return_value = p->returnValue, .api = api,
        .name = keep_name(s, nm ? nm : "unknown") };
      return 1;
    }
    case CUPTI_ACTIVITY_KIND_SYNCHRONIZATION: {
      const CUpti_ActivitySynchronization2 *y = rec;
      prb_sync_rec *r = PUSH(s, syncs);
      if (!r) return -1;
      *r = (prb_sync_rec){ .start = TS(s, y->start), .end = TS(s, y->end), .correlation_id = y->correlationId,
        .context_id = y->contextId, .stream_id = y->streamId, .event_id = y->cudaEventId,
        .sync_type = (uint32_t)y->type };
      return 1;
    }
    case CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION: {
      const CUpti_ActivityExternalCorrelation *x = rec;
      if (x->externalKind != CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0) return 0;
      prb_extcorr_rec *r = PUSH(s, extcorr);
      if (!r) return -1;
      *r = (prb_extcorr_rec){ .correlation_id = x->correlationId, .external_id = x->externalId };
      return 1;
    }
    default:
      s->unknown++;
      return 0;
  }
}

/* ---- live collector ------------------------------------------------------------------------ */

struct prb_cupti {
  prb_cupti_store store;
  int active;
};

/* CUPTI's callbacks carry no user pointer: one collector per process. */
static prb_cupti *g_cupti;

#define BUF_SIZE (8u << 20)

static void CUPTIAPI buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records) {
  *buffer = aligned_alloc(8, BUF_SIZE);
  *size = *buffer ? BUF_SIZE : 0;
  *max_records = 0;
}

static void CUPTIAPI buffer_completed(CUcontext ctx, uint32_t stream, uint8_t *buffer, size_t size, size_t valid) {
  (void)size;
  prb_cupti *c = g_cupti;
  if (c) {
    pthread_mutex_lock(&c->store.mu);
    CUpti_Activity *rec = NULL;
    while (cuptiActivityGetNextRecord(buffer, valid, &rec) == CUPTI_SUCCESS)
      if (prb_cupti_store_add(&c->store, rec) < 0) c->store.oom = 1;
    size_t dropped = 0;
    if (cuptiActivityGetNumDroppedRecords(ctx, stream, &dropped) == CUPTI_SUCCESS) c->store.dropped += dropped;
    pthread_mutex_unlock(&c->store.mu);
  }
  free(buffer);
}

static uint64_t CUPTIAPI monotonic_ts(void) { return prb_now_ns(); }

static const CUpti_ActivityKind k_kinds[] = {
  CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, CUPTI_ACTIVITY_KIND_MEMCPY, CUPTI_ACTIVITY_KIND_MEMSET,
  CUPTI_ACTIVITY_KIND_RUNTIME, CUPTI_ACTIVITY_KIND_DRIVER, CUPTI_ACTIVITY_KIND_SYNCHRONIZATION,
  CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION,
};
#define N_KINDS (sizeof k_kinds / sizeof k_kinds[0])

static void why_cupti(char *why, size_t n, const char *what, CUptiResult r) {
  const char *s = NULL;
  cuptiGetResultString(r, &s);
  const char *hint = r == CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED ? " (another profiler, e.g. nsys, holds CUPTI)"
                   : r == CUPTI_ERROR_INSUFFICIENT_PRIVILEGES ? " (GPU performance counters need permission)" : "";
  snprintf(why, n, "CUPTI unavailable: %s: %s%s; NVTX ranges only", what, s ? s : "error", hint);
}

prb_cupti *prb_cupti_start(char *why, size_t whylen) {
  if (g_cupti) { snprintf(why, whylen, "CUPTI collector already running; NVTX ranges only"); return NULL; }
  prb_cupti *c = calloc(1, sizeof *c);
  if (!c) { snprintf(why, whylen, "CUPTI unavailable: out of memory"); return NULL; }
  prb_cupti_store_init(&c->store);
  g_cupti = c;
  CUptiResult r = cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed);
  if (r != CUPTI_SUCCESS) { why_cupti(why, whylen, "register callbacks", r); goto fail; }
  if (cuptiActivityRegisterTimestampCallback(monotonic_ts) != CUPTI_SUCCESS) {
    uint64_t t = 0;   /* older drivers: align CUPTI's clock to CLOCK_MONOTONIC once */
    if (cuptiGetTimestamp(&t) == CUPTI_SUCCESS) c->store.ts_offset = (int64_t)prb_now_ns() - (int64_t)t;
  }
  for (size_t i = 0; i < N_KINDS; i++) {
    r = cuptiActivityEnable(k_kinds[i]);
    if (r != CUPTI_SUCCESS) {
      why_cupti(why, whylen, "enable activity", r);
      for (size_t j = 0; j < i; j++) cuptiActivityDisable(k_kinds[j]);
      goto fail;
    }
  }
  c->active = 1;
  return c;
fail:
  cuptiFinalize();
  g_cupti = NULL;
  prb_cupti_store_free(&c->store);
  free(c);
  return NULL;
}

void prb_cupti_push(prb_cupti *c, uint64_t id) {
  if (c && c->active) cuptiActivityPushExternalCorrelationId(CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0, id);
}

void prb_cupti_pop(prb_cupti *c) {
  uint64_t id;
  if (c && c->active) cuptiActivityPopExternalCorrelationId(CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0, &id);
}

void prb_cupti_flush(prb_cupti *c) {
  if (c && c->active) cuptiActivityFlushAll(0);
}

void prb_cupti_stop(prb_cupti *c) {
  if (!c || !c->active) return;
  cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
  for (size_t i = 0; i < N_KINDS; i++) cuptiActivityDisable(k_kinds[i]);
  cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
  cuptiFinalize();
  c->active = 0;
  g_cupti = NULL;
}

#else /* no CUPTI in this build */

int prb_cupti_store_add(prb_cupti_store *s, const void *rec) { (void)s; (void)rec; return 0; }

struct prb_cupti { prb_cupti_store store; };

prb_cupti *prb_cupti_start(char *why, size_t whylen) {
  snprintf(why, whylen, "CUPTI not built in (no CUDA toolkit with CUPTI at configure time); NVTX ranges only");
  return NULL;
}
void prb_cupti_push(prb_cupti *c, uint64_t id) { (void)c; (void)id; }
void prb_cupti_pop(prb_cupti *c) { (void)c; }
void prb_cupti_flush(prb_cupti *c) { (void)c; }
void prb_cupti_stop(prb_cupti *c) { (void)c; }

#endif

prb_cupti_store *prb_cupti_records(prb_cupti *c) { return c ? &c->store : NULL; }

void prb_cupti_free(prb_cupti *c) {
  if (!c) return;
  prb_cupti_stop(c);
  prb_cupti_store_free(&c->store);
  free(c);
}
