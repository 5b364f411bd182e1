/* prb_cupti.h — the CUPTI Activity API collector: GPU kernels (CONCURRENT_KERNEL,
 * CUpti_ActivityKernel10), memcpy, memset, CUDA runtime/driver API calls, synchronization
 * and external correlation records, gathered into a prb_cupti_store of small intermediate
 * records (prb_nsys.h) that prb_nsys_write() turns into Nsight Systems-compatible rows.
 *
 * Built for real when CMake finds CUPTI (MOESCOPE_HAVE_CUPTI); otherwise prb_cupti_start()
 * reports "not built" and everything else is a no-op. Activity buffers are requested and
 * completed asynchronously by CUPTI (its worker thread appends to the store under a
 * mutex); prb_cupti_flush() (at every batch end) forces completed buffers out and
 * prb_cupti_stop() flushes, finalizes CUPTI and reports dropped records. Failures (no
 * driver / device, no profiling permission, another CUPTI subscriber such as nsys) make
 * start return NULL with one line saying why: callers go on NVTX-only, never crash.
 *
 * External correlation: prb_cupti_push(id) / prb_cupti_pop() bracket each engine op with
 * CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0 ids; CUPTI then emits (correlationId, id) pairs
 * that become kernel_scope rows.
 */
#ifndef MOESCOPE_PRB_CUPTI_H
#define MOESCOPE_PRB_CUPTI_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "probes/prb_nsys.h"

/* Intermediate records of one run. All strings are owned by the store. */
typedef struct prb_cupti_store {
  pthread_mutex_t mu;
  prb_kernel_rec *kernels; size_t n_kernels, cap_kernels;
  prb_memcpy_rec *memcpys; size_t n_memcpys, cap_memcpys;
  prb_memset_rec *memsets; size_t n_memsets, cap_memsets;
  prb_api_rec *apis; size_t n_apis, cap_apis;
  prb_sync_rec *syncs; size_t n_syncs, cap_syncs;
  prb_extcorr_rec *extcorr; size_t n_extcorr, cap_extcorr;
  char **names; size_t n_names, cap_names;   /* owned strings */
  int64_t ts_offset;       /* added to every CUPTI timestamp (CUPTI clock -> CLOCK_MONOTONIC) */
  uint64_t dropped;        /* records CUPTI dropped (buffers full) */
  uint64_t unknown;        /* records of kinds not kept */
  int oom;                 /* an allocation failed: records were lost */
  /* API function name of (api, cbid); NULL = CUPTI's cuptiGetCallbackName */
  const char *(*api_name)(int api, uint32_t cbid);
} prb_cupti_store;

void prb_cupti_store_init(prb_cupti_store *s);
void prb_cupti_store_free(prb_cupti_store *s);
/* Points d's record arrays at the store's (d->run_id / pid / scopes are left alone). */
void prb_cupti_store_data(const prb_cupti_store *s, prb_nsys_data *d);

/* Appends one CUPTI activity record (a CUpti_Activity *, typed void * so that this header
 * needs no CUPTI). Returns 1 kept, 0 ignored kind, -1 out of memory. Only with CUPTI. */
int prb_cupti_store_add(prb_cupti_store *s, const void *cupti_activity);

/* 1 when this build has CUPTI. */
int prb_cupti_built(void);

typedef struct prb_cupti prb_cupti;
/* Enables activity collection for this process. NULL with the reason in why when CUPTI is
 * not built, there is no device/driver, no permission, or a subscriber conflict. */
prb_cupti *prb_cupti_start(char *why, size_t whylen);
void prb_cupti_push(prb_cupti *c, uint64_t external_id);
void prb_cupti_pop(prb_cupti *c);
void prb_cupti_flush(prb_cupti *c);
/* Flushes, disables, finalizes CUPTI; the store stays readable until prb_cupti_free. */
void prb_cupti_stop(prb_cupti *c);
prb_cupti_store *prb_cupti_records(prb_cupti *c);
void prb_cupti_free(prb_cupti *c);

#endif
