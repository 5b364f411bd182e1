/* prb_nsys.c — profiler records -> the Nsight Systems-compatible tables (prb_nsys.h).
 *
 * A pure translation: intermediate records (filled by prb_cupti.c from CUPTI activity
 * buffers and by prb_nvtx.c from the engine's scopes) become rows of StringIds,
 * CUPTI_ACTIVITY_KIND_*, NVTX_EVENTS, TARGET_INFO_GPU and kernel_scope, in one
 * transaction, with the column meanings nsys gives them. Also the helpers nsys-side SQL
 * needs: kernel name shortening/demangling and the median/stdev/quartile aggregates that
 * nsys's stats scripts register in SQLite. */
#include "probes/prb_nsys.h"
#include "probes/prb_probe.h"
#include "probes/prb_sink.h"

#include <dlfcn.h>
#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (err && errlen) vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -1;
}

/* ---- names ------------------------------------------------------------------------ */

void prb_nsys_short_name(const char *d, char *out, size_t cap) {
  if (!cap) return;
  out[0] = 0;
  if (!d) return;
  /* end of the qualified name: the '(' of the parameter list at template depth 0 */
  size_t n = strlen(d), end = n;
  int depth = 0;
  static const char anon[] = "(anonymous namespace)";
  for (size_t i = 0; i < n; i++) {
    if (!strncmp(d + i, anon, sizeof anon - 1)) { i += sizeof anon - 2; continue; }
    if (d[i] == '<') depth++;
    else if (d[i] == '>') depth--;
    else if (d[i] == '(' && depth == 0) { end = i; break; }
  }
  /* drop trailing template arguments */
  while (end > 0 && d[end - 1] == '>') {
    int dd = 0;
    size_t j = end;
    while (j > 0) {
      j--;
      if (d[j] == '>') dd++;
      else if (d[j] == '<' && --dd == 0) break;
    }
    if (dd != 0) break;
    end = j;
  }
  /* start after the last "::" or space (return type) at depth 0 */
  size_t start = 0;
  depth = 0;
  for (size_t i = 0; i < end; i++) {
    if (!strncmp(d + i, anon, sizeof anon - 1)) { i += sizeof anon - 2; continue; }
    if (d[i] == '<') depth++;
    else if (d[i] == '>') depth--;
    else if (depth == 0 && d[i] == ' ') start = i + 1;
    else if (depth == 0 && d[i] == ':' && i + 1 < end && d[i + 1] == ':') { start = i + 2; i++; }
  }
  size_t len = end > start ? end - start : 0;
  if (len == 0) { snprintf(out, cap, "%s", d); return; }
  if (len >= cap) len = cap - 1;
  memcpy(out, d + start, len);
  out[len] = 0;
}

/* base name straight from an Itanium-mangled name (_Z3fooi, _ZN2ns3fooILi4EEEvv): the
 * last source name of the (nested) name, template arguments skipped; 0 when not parsed */
static int mangled_base(const char *m, char *out, size_t cap) {
  if (strncmp(m, "_Z", 2)) return 0;
  const char *p = m + 2, *last = NULL;
  size_t last_len = 0;
  int nested = *p == 'N';
  if (nested) p++;
  while (*p == 'r' || *p == 'V' || *p == 'K') p++;   /* cv-qualifiers of member functions */
  for (;;) {
    if (*p >= '1' && *p <= '9') {
      size_t len = 0;
      while (*p >= '0' && *p <= '9') len = len * 10 + (size_t)(*p++ - '0');
      if (strlen(p) < len) return 0;
      last = p; last_len = len; p += len;
    } else if (*p == 'I') {   /* template args: skip to the matching E */
      int depth = 0;
      for (; *p; p++) { if (*p == 'I') depth++; else if (*p == 'E' && --depth == 0) { p++; break; } }
    } else break;
    if (!nested) break;
  }
  if (!last || !last_len) return 0;
  if (last_len >= cap) last_len = cap - 1;
  memcpy(out, last, last_len);
  out[last_len] = 0;
  return 1;
}

typedef char *(*cxa_demangle_fn)(const char *, char *, size_t *, int *);

char *prb_nsys_demangle(const char *mangled) {
  if (!mangled || strncmp(mangled, "_Z", 2) != 0) return NULL;
  cxa_demangle_fn fn = NULL;
  void *sym = dlsym(RTLD_DEFAULT, "__cxa_demangle");
  if (!sym) {   /* the C++ runtime is usually there (CUDA libraries); load it once if not */
    static void *libcxx;
    if (!libcxx) libcxx = dlopen("libstdc++.so.6", RTLD_LAZY | RTLD_LOCAL);
    if (libcxx) sym = dlsym(libcxx, "__cxa_demangle");
  }
  if (!sym) return NULL;
  memcpy(&fn, &sym, sizeof fn);
  int status = -1;
  char *r = fn(mangled, NULL, NULL, &status);
  if (status != 0) { free(r); return NULL; }
  return r;
}

void prb_nsys_api_name(const char *name, char *out, size_t cap) {
  if (!cap) return;
  snprintf(out, cap, "%s", name ? name : "");
  char *v = strrchr(out, '_');
  if (v && v[1] == 'v' && v[2]) {
    char *p = v + 2;
    while (*p >= '0' && *p <= '9') p++;
    if (*p == 0) *v = 0;
  }
}

/* ---- StringIds interning ------------------------------------------------------------ */

typedef struct interner {
  sqlite3 *db;
  sqlite3_stmt *find, *ins;
  int64_t next;
  /* small cache: open addressing on string hash */
  char **keys;
  int64_t *ids;
  size_t cap, n;
} interner;

static uint64_t hash_str(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static int cache_grow(interner *in) {
  size_t nc = in->cap ? in->cap * 2 : 256;
  char **nk = calloc(nc, sizeof *nk);
  int64_t *ni = calloc(nc, sizeof *ni);
  if (!nk || !ni) { free(nk); free(ni); return -1; }
  for (size_t i = 0; i < in->cap; i++)
    if (in->keys[i]) {
      size_t j = hash_str(in->keys[i]) & (nc - 1);
      while (nk[j]) j = (j + 1) & (nc - 1);
      nk[j] = in->keys[i];
      ni[j] = in->ids[i];
    }
  free(in->keys); free(in->ids);
  in->keys = nk; in->ids = ni; in->cap = nc;
  return 0;
}

/* id of s in StringIds (inserted when new), or -1 on error */
static int64_t intern(interner *in, const char *s) {
  if (!s) s = "";
  if (in->n * 2 >= in->cap && cache_grow(in)) return -1;
  size_t j = hash_str(s) & (in->cap - 1);
  while (in->keys[j]) {
    if (!strcmp(in->keys[j], s)) return in->ids[j];
    j = (j + 1) & (in->cap - 1);
  }
  int64_t id = -1;
  sqlite3_reset(in->find);
  sqlite3_bind_text(in->find, 1, s, -1, SQLITE_STATIC);
  if (sqlite3_step(in->find) == SQLITE_ROW) id = sqlite3_column_int64(in->find, 0);
  sqlite3_reset(in->find);
  if (id < 0) {
    id = in->next++;
    sqlite3_reset(in->ins);
    sqlite3_bind_int64(in->ins, 1, id);
    sqlite3_bind_text(in->ins, 2, s, -1, SQLITE_STATIC);
    if (sqlite3_step(in->ins) != SQLITE_DONE) return -1;
    sqlite3_reset(in->ins);
  }
  char *k = strdup(s);
  if (!k) return -1;
  in->keys[j] = k;
  in->ids[j] = id;
  in->n++;
  return id;
}

static void interner_free(interner *in) {
  for (size_t i = 0; i < in->cap; i++) free(in->keys[i]);
  free(in->keys); free(in->ids);
  sqlite3_finalize(in->find);
  sqlite3_finalize(in->ins);
}

/* ---- the writer ----------------------------------------------------------------------- */

/* binds values to a statement: 'i' int64, 'n' NULL, 't' text, 'd' double */
static int exec_row(sqlite3_stmt *st, const char *types, ...) {
  va_list ap;
  va_start(ap, types);
  sqlite3_reset(st);
  for (int i = 0; types[i]; i++) {
    switch (types[i]) {
      case 'i': sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t)); break;
      case 't': { const char *s = va_arg(ap, const char *);
                  if (s) sqlite3_bind_text(st, i + 1, s, -1, SQLITE_TRANSIENT); else sqlite3_bind_null(st, i + 1); break; }
      case 'd': sqlite3_bind_double(st, i + 1, va_arg(ap, double)); break;
      default: sqlite3_bind_null(st, i + 1); break;
    }
  }
  va_end(ap);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  return rc == SQLITE_DONE ? 0 : -1;
}

#define I64(x) ((int64_t)(x))

static const char *const k_sql[] = {
  "INSERT INTO CUPTI_ACTIVITY_KIND_KERNEL(start, end, deviceId, contextId, streamId, correlationId, globalPid,"
  " demangledName, shortName, mangledName, launchType, cacheConfig, registersPerThread, gridX, gridY, gridZ,"
  " blockX, blockY, blockZ, staticSharedMemory, dynamicSharedMemory, localMemoryPerThread, localMemoryTotal,"
  " gridId, sharedMemoryExecuted, graphNodeId) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
  "INSERT INTO CUPTI_ACTIVITY_KIND_MEMCPY(start, end, deviceId, contextId, streamId, correlationId, globalPid,"
  " bytes, copyKind, srcKind, dstKind, graphNodeId) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
  "INSERT INTO CUPTI_ACTIVITY_KIND_MEMSET(start, end, deviceId, contextId, streamId, correlationId, globalPid,"
  " value, bytes, graphNodeId, memKind) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
  "INSERT INTO CUPTI_ACTIVITY_KIND_RUNTIME(start, end, eventClass, globalTid, correlationId, nameId,"
  " returnValue, callchainId) VALUES (?,?,?,?,?,?,?,?)",
  "INSERT INTO CUPTI_ACTIVITY_KIND_SYNCHRONIZATION(start, end, contextId, streamId, correlationId, globalPid,"
  " syncType, eventId) VALUES (?,?,?,?,?,?,?,?)",
  "INSERT INTO kernel_scope(correlationId, run_id, batch_id, layer, op, expert, globalPid, externalId)"
  " VALUES (?,?,?,?,?,?,?,?)",
  "INSERT INTO NVTX_EVENTS(start, end, eventType, rangeId, category, color, text, globalTid, endGlobalTid,"
  " textId, domainId, int64Value) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
  "INSERT INTO TARGET_INFO_GPU(vmId, id, name, busLocation, isDiscrete, l2CacheSize, totalMemory, clockRate,"
  " smCount, uuid, chipName, cuDevice, computeMajor, computeMinor, globalPid, run_id)"
  " VALUES (0,?,?,?,1,?,?,?,?,?,?,?,?,?,?,?)",
};
enum { ST_KERNEL, ST_MEMCPY, ST_MEMSET, ST_API, ST_SYNC, ST_SCOPE, ST_NVTX, ST_GPU, ST_COUNT };

static int write_kernels(interner *in, sqlite3_stmt *st, const prb_nsys_data *d, int64_t gpid) {
  for (size_t i = 0; i < d->n_kernels; i++) {
    const prb_kernel_rec *k = &d->kernels[i];
    const char *mangled = k->name ? k->name : "";
    char *dem = prb_nsys_demangle(mangled);
    const char *full = dem ? dem : mangled;
    char shortn[512];
    if (dem || !mangled_base(mangled, shortn, sizeof shortn)) prb_nsys_short_name(full, shortn, sizeof shortn);
    int64_t idd = intern(in, full), ids = intern(in, shortn), idm = intern(in, mangled);
    free(dem);
    if (idd < 0 || ids < 0 || idm < 0) return -1;
    if (exec_row(st, "iiiiiiiiiiiiiiiiiiiiiiiiii", I64(k->start), I64(k->end), I64(k->device_id), I64(k->context_id),
                 I64(k->stream_id), I64(k->correlation_id), gpid, idd, ids, idm, I64(k->launch_type),
                 I64(k->cache_config), I64(k->registers_per_thread), I64(k->grid[0]), I64(k->grid[1]), I64(k->grid[2]),
                 I64(k->block[0]), I64(k->block[1]), I64(k->block[2]), I64(k->static_smem), I64(k->dynamic_smem),
                 I64(k->local_mem_per_thread), I64(k->local_mem_total), k->grid_id, I64(k->shared_mem_executed),
                 I64(k->graph_node_id)))
      return -1;
  }
  return 0;
}

static int write_copies(interner *in, sqlite3_stmt **st, const prb_nsys_data *d, int64_t gpid) {
  for (size_t i = 0; i < d->n_memcpys; i++) {
    const prb_memcpy_rec *m = &d->memcpys[i];
    if (exec_row(st[ST_MEMCPY], "iiiiiiiiiiii", I64(m->start), I64(m->end), I64(m->device_id), I64(m->context_id),
                 I64(m->stream_id), I64(m->correlation_id), gpid, I64(m->bytes), I64(m->copy_kind), I64(m->src_kind),
                 I64(m->dst_kind), I64(m->graph_node_id)))
      return -1;
  }
  for (size_t i = 0; i < d->n_memsets; i++) {
    const prb_memset_rec *m = &d->memsets[i];
    if (exec_row(st[ST_MEMSET], "iiiiiiiiiii", I64(m->start), I64(m->end), I64(m->device_id), I64(m->context_id),
                 I64(m->stream_id), I64(m->correlation_id), gpid, I64(m->value), I64(m->bytes), I64(m->graph_node_id),
                 I64(m->mem_kind)))
      return -1;
  }
  for (size_t i = 0; i < d->n_apis; i++) {
    const prb_api_rec *a = &d->apis[i];
    char nm[256];
    prb_nsys_api_name(a->name, nm, sizeof nm);
    int64_t id = intern(in, nm);
    if (id < 0 || exec_row(st[ST_API], "iiiiiiin", I64(a->start), I64(a->end), I64(a->api),
                           prb_nsys_global_tid(d->pid, a->thread_id), I64(a->correlation_id), id, I64(a->return_value)))
      return -1;
  }
  for (size_t i = 0; i < d->n_syncs; i++) {
    const prb_sync_rec *s = &d->syncs[i];
    if (exec_row(st[ST_SYNC], "iiiiiiii", I64(s->start), I64(s->end), I64(s->context_id), I64(s->stream_id),
                 I64(s->correlation_id), gpid, I64(s->sync_type), I64(s->event_id)))
      return -1;
  }
  for (size_t i = 0; i < d->n_extcorr; i++) {
    const prb_extcorr_rec *x = &d->extcorr[i];
    if (x->external_id == 0 || x->external_id > d->n_scopes) continue;
    const prb_scope_rec *s = &d->scopes[x->external_id - 1];
    if (exec_row(st[ST_SCOPE], "iiiiti" "ii", I64(x->correlation_id), d->run_id, s->batch_id, I64(s->layer),
                 s->op >= 0 ? prb_op_name(s->op) : NULL, I64(s->expert), gpid, I64(x->external_id)))
      return -1;
  }
  return 0;
}

/* NVTX text of a range: registered strings (op names, scope names) go through textId like
 * nsys writes them; formatted messages ("layer 3") land in text. */
static int write_ranges(interner *in, sqlite3_stmt *st, const prb_nsys_data *d) {
  if (!d->n_ranges) return 0;
  int64_t tid0 = prb_nsys_global_tid(d->pid, d->ranges[0].tid);
  /* domain creation and category names, as nsys records them */
  if (exec_row(st, "inin" "nnti" "nnin", I64(d->ranges[0].start), I64(PRB_NVTX_DOMAIN_CREATE), PRB_NVTX_DOMAIN,
               tid0, I64(1)))
    return -1;
  for (int c = 0; c < PRB_SCOPE_COUNT; c++)
    if (exec_row(st, "inin" "inti" "nnin", I64(d->ranges[0].start), I64(PRB_NVTX_CATEGORY), I64(c + 1),
                 prb_scope_name(c), tid0, I64(1)))
      return -1;
  for (size_t i = 0; i < d->n_ranges; i++) {
    const prb_range_rec *r = &d->ranges[i];
    int64_t gt = prb_nsys_global_tid(d->pid, r->tid);
    char msg[64];
    const char *text = NULL;
    int64_t text_id = -1;
    switch (r->scope) {
      case PRB_SCOPE_RUN: snprintf(msg, sizeof msg, "run %lld", (long long)r->payload); text = msg; break;
      case PRB_SCOPE_BATCH: snprintf(msg, sizeof msg, "batch %lld", (long long)r->batch_id); text = msg; break;
      case PRB_SCOPE_LAYER: snprintf(msg, sizeof msg, "layer %d", r->layer); text = msg; break;
      case PRB_SCOPE_EXPERT: snprintf(msg, sizeof msg, "expert %d", r->expert); text = msg; break;
      default: text_id = intern(in, prb_op_name(r->op)); if (text_id < 0) return -1; break;
    }
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, I64(r->start));
    sqlite3_bind_int64(st, 2, I64(r->end));
    sqlite3_bind_int64(st, 3, PRB_NVTX_PUSHPOP);
    sqlite3_bind_null(st, 4);
    sqlite3_bind_int64(st, 5, r->scope + 1);
    sqlite3_bind_null(st, 6);
    if (text) sqlite3_bind_text(st, 7, text, -1, SQLITE_TRANSIENT); else sqlite3_bind_null(st, 7);
    sqlite3_bind_int64(st, 8, gt);
    sqlite3_bind_int64(st, 9, gt);
    if (text_id >= 0) sqlite3_bind_int64(st, 10, text_id); else sqlite3_bind_null(st, 10);
    sqlite3_bind_int64(st, 11, 1);
    sqlite3_bind_int64(st, 12, r->payload);
    if (sqlite3_step(st) != SQLITE_DONE) return -1;
    sqlite3_reset(st);
  }
  return 0;
}

static int write_gpus(sqlite3_stmt *st, const prb_nsys_data *d) {
  for (size_t i = 0; i < d->n_gpus; i++) {
    const prb_gpu_info *g = &d->gpus[i];
    if (exec_row(st, "ittiiiittiiiii", I64(g->id), g->name, g->bus_location, I64(g->l2_cache), I64(g->total_memory),
                 I64(g->clock_rate_hz), I64(g->sm_count), g->uuid, g->name, I64(g->id), I64(g->compute_major),
                 I64(g->compute_minor), prb_nsys_global_pid(d->pid), d->run_id))
      return -1;
  }
  return 0;
}

int prb_nsys_write(sqlite3 *db, const prb_nsys_data *d, char *err, size_t errlen) {
  sqlite3_stmt *st[ST_COUNT] = {0};
  interner in = {0};
  in.db = db;
  int rc = -1;
  if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
    return fail(err, errlen, "trace DB: %s", sqlite3_errmsg(db));
  for (int i = 0; i < ST_COUNT; i++)
    if (sqlite3_prepare_v2(db, k_sql[i], -1, &st[i], NULL) != SQLITE_OK) goto out;
  if (sqlite3_prepare_v2(db, "SELECT id FROM StringIds WHERE value = ?", -1, &in.find, NULL) != SQLITE_OK ||
      sqlite3_prepare_v2(db, "INSERT INTO StringIds(id, value) VALUES (?, ?)", -1, &in.ins, NULL) != SQLITE_OK)
    goto out;
  sqlite3_stmt *mx;
  if (sqlite3_prepare_v2(db, "SELECT COALESCE(MAX(id) + 1, 0) FROM StringIds", -1, &mx, NULL) != SQLITE_OK) goto out;
  if (sqlite3_step(mx) == SQLITE_ROW) in.next = sqlite3_column_int64(mx, 0);
  sqlite3_finalize(mx);
  int64_t gpid = prb_nsys_global_pid(d->pid);
  if (write_kernels(&in, st[ST_KERNEL], d, gpid) || write_copies(&in, st, d, gpid) ||
      write_ranges(&in, st[ST_NVTX], d) || write_gpus(st[ST_GPU], d))
    goto out;
  rc = 0;
out:
  if (rc) fail(err, errlen, "trace DB: profiler rows: %s", sqlite3_errmsg(db));
  for (int i = 0; i < ST_COUNT; i++) sqlite3_finalize(st[i]);
  interner_free(&in);
  if (sqlite3_exec(db, rc ? "ROLLBACK" : "COMMIT", NULL, NULL, NULL) != SQLITE_OK && !rc)
    rc = fail(err, errlen, "trace DB: commit: %s", sqlite3_errmsg(db));
  return rc;
}

int prb_nsys_write_path(const char *db_path, const prb_nsys_data *d, char *err, size_t errlen) {
  sqlite3 *db = NULL;
  if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
    fail(err, errlen, "%s: %s", db_path, db ? sqlite3_errmsg(db) : "cannot open");
    sqlite3_close(db);
    return -1;
  }
  sqlite3_busy_timeout(db, 30000);
  int rc = 0;
  if (sqlite3_exec(db, prb_schema_sql, NULL, NULL, NULL) != SQLITE_OK)
    rc = fail(err, errlen, "%s: schema: %s", db_path, sqlite3_errmsg(db));
  if (!rc) rc = prb_nsys_write(db, d, err, errlen);
  sqlite3_close(db);
  return rc;
}

/* ---- nsys's SQL aggregates ------------------------------------------------------------- */

typedef struct { double *v; size_t n, cap; } vals;

static void agg_step(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc;
  vals *a = sqlite3_aggregate_context(ctx, sizeof(vals));
  if (!a || sqlite3_value_type(argv[0]) == SQLITE_NULL) return;
  if (a->n == a->cap) {
    size_t nc = a->cap ? a->cap * 2 : 64;
    double *nv = realloc(a->v, nc * sizeof *nv);
    if (!nv) { sqlite3_result_error_nomem(ctx); return; }
    a->v = nv; a->cap = nc;
  }
  a->v[a->n++] = sqlite3_value_double(argv[0]);
}

static int cmp_d(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return a < b ? -1 : a > b;
}

/* quantile q with linear interpolation (numpy's default, which nsys's scripts use) */
static double quantile(vals *a, double q) {
  qsort(a->v, a->n, sizeof(double), cmp_d);
  double pos = q * (double)(a->n - 1);
  size_t lo = (size_t)pos;
  double fr = pos - (double)lo;
  return lo + 1 < a->n ? a->v[lo] + fr * (a->v[lo + 1] - a->v[lo]) : a->v[lo];
}

static void agg_final(sqlite3_context *ctx) {
  vals *a = sqlite3_aggregate_context(ctx, 0);
  intptr_t kind = (intptr_t)sqlite3_user_data(ctx);
  if (!a || a->n == 0) { sqlite3_result_null(ctx); if (a) free(a->v); return; }
  if (kind == 0) sqlite3_result_double(ctx, quantile(a, 0.5));
  else if (kind == 1) {   /* sample standard deviation; 0 for one value */
    double m = 0, s = 0;
    for (size_t i = 0; i < a->n; i++) m += a->v[i];
    m /= (double)a->n;
    for (size_t i = 0; i < a->n; i++) s += (a->v[i] - m) * (a->v[i] - m);
    sqlite3_result_double(ctx, a->n > 1 ? sqrt(s / (double)(a->n - 1)) : 0.0);
  } else sqlite3_result_double(ctx, quantile(a, kind == 2 ? 0.25 : 0.75));
  free(a->v);
}

int prb_nsys_register_sql(sqlite3 *db) {
  static const char *const names[] = {"median", "stdev", "lower_quartile", "upper_quartile"};
  for (intptr_t i = 0; i < 4; i++)
    if (sqlite3_create_function(db, names[i], 1, SQLITE_UTF8, (void *)i, NULL, agg_step, agg_final) != SQLITE_OK)
      return -1;
  return 0;
}
