/* prb_nvtx.h — the scope tracker: NVTX3 ranges in the `moescope` domain around the run,
 * each forward batch, each layer and each op (attention, router, experts > expert e,
 * shared_expert, lm_head), CUPTI external correlation ids around ops, and the record of
 * those ranges and correlations for the trace DB (NVTX_EVENTS, kernel_scope).
 *
 * It plugs into a prb_probe's scope hooks (prb_probe.scope_begin/end), which the engine
 * calls on CPU and GPU runs alike. NVTX ranges: category = scope + 1 (named "run",
 * "batch", "layer", "op", "expert"), INT64 payload = run_id (run), batch_id (batch),
 * layer (layer and op) or expert id (expert); messages "run N", "batch N", "layer N",
 * "expert N", and the op name as an NVTX registered string. Without an NVTX tool attached
 * (nsys, or NVTX_INJECTION64_PATH) the NVTX calls cost a branch each. NVTX is compiled in
 * when CMake finds nvtx3/nvToolsExt.h (MOESCOPE_HAVE_NVTX).
 */
#ifndef MOESCOPE_PRB_NVTX_H
#define MOESCOPE_PRB_NVTX_H

#include <stddef.h>
#include <stdint.h>

#include "probes/prb_probe.h"

typedef struct prb_scope prb_scope;

typedef struct prb_scope_opts {
  int64_t run_id;
  int nvtx;          /* emit NVTX ranges */
  int cupti;         /* start the CUPTI collector (GPU runs) */
  int record_depth;  /* keep ranges of scopes <= this (enum prb_scope_kind) for NVTX_EVENTS rows; -1 none */
} prb_scope_opts;

/* Defaults: NVTX on, CUPTI off, record run/batch/layer ranges. */
prb_scope_opts prb_scope_defaults(int64_t run_id);

/* Attaches the scope hooks to *probe and opens the run range. Returns NULL only when out
 * of memory. When CUPTI was asked for but is unavailable, warn gets one line (else ""). */
prb_scope *prb_scope_open(prb_probe *probe, const prb_scope_opts *o, char *warn, size_t warnlen);

/* Closes the run range, stops CUPTI (flush + finalize), and when db_path is not NULL
 * writes NVTX_EVENTS / CUPTI_* / kernel_scope / TARGET_INFO_GPU rows for the run. Frees s.
 * Returns 0, or -1 with a message (the DB write failed). Dropped CUPTI records and
 * unclosed scopes are reported in warn (may be NULL). */
int prb_scope_close(prb_scope *s, const char *db_path, char *err, size_t errlen, char *warn, size_t warnlen);

/* 1 when NVTX is compiled in. */
int prb_nvtx_built(void);

#endif
