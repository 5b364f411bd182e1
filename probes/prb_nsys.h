/* prb_nsys.h — the Nsight Systems-compatible profiler tables of the trace DB and the pure
 * translation of profiler records into them.
 *
 * The tables (PRB_NSYS_SCHEMA_SQL, part of prb_schema_sql) carry the names and columns
 * that `nsys export --type sqlite` writes — StringIds, CUPTI_ACTIVITY_KIND_KERNEL / RUNTIME
 * / MEMCPY / MEMSET / SYNCHRONIZATION, NVTX_EVENTS, TARGET_INFO_GPU — so nsys SQL (its
 * stats reports included) runs unchanged on moescope traces. Timestamps are nanoseconds;
 * globalPid = pid << 24 and globalTid = globalPid | tid, the serialized GlobalId that nsys
 * decodes as `globalTid / 0x1000000 % 0x1000000` (pid) and `globalTid % 0x1000000` (tid).
 * Added by moescope: kernel_scope (CUDA correlationId -> run, batch, layer, op, expert,
 * filled from CUPTI external correlation records) joined by v_kernel_time_by_layer.
 *
 * The CUPTI collector (prb_cupti.c) and the NVTX scope tracker (prb_nvtx.c) fill the
 * small intermediate records below; prb_nsys_write() turns them into rows. It never
 * touches CUPTI, so it is unit-tested with hand-built records on any machine.
 */
#ifndef MOESCOPE_PRB_NSYS_H
#define MOESCOPE_PRB_NSYS_H

#include <stddef.h>
#include <stdint.h>

typedef struct sqlite3 sqlite3;

/* One GPU kernel execution (from CUpti_ActivityKernel10). name = mangled (or plain C)
 * symbol as CUPTI reports it; the writer derives demangledName / shortName from it. */
typedef struct prb_kernel_rec {
  uint64_t start, end;
  uint32_t device_id, context_id, stream_id, correlation_id;
  int32_t grid[3], block[3];
  int32_t registers_per_thread, static_smem, dynamic_smem;
  uint32_t local_mem_per_thread;
  uint64_t local_mem_total;
  int64_t grid_id;
  uint32_t shared_mem_executed;
  uint64_t graph_node_id;
  uint8_t launch_type, cache_config;
  const char *name;
} prb_kernel_rec;

typedef struct prb_memcpy_rec {
  uint64_t start, end, bytes, graph_node_id;
  uint32_t device_id, context_id, stream_id, correlation_id;
  uint8_t copy_kind, src_kind, dst_kind;
} prb_memcpy_rec;

typedef struct prb_memset_rec {
  uint64_t start, end, bytes, graph_node_id;
  uint32_t device_id, context_id, stream_id, correlation_id, value;
  uint16_t mem_kind;
} prb_memset_rec;

/* A CUDA runtime or driver API call. name = the function ("cudaLaunchKernel"). */
enum { PRB_API_RUNTIME = 0, PRB_API_DRIVER = 1 };
typedef struct prb_api_rec {
  uint64_t start, end;
  uint32_t thread_id, correlation_id, return_value;
  int api;                   /* PRB_API_RUNTIME / PRB_API_DRIVER (nsys eventClass 0 / 1) */
  const char *name;
} prb_api_rec;

typedef struct prb_sync_rec {
  uint64_t start, end;
  uint32_t correlation_id, context_id, stream_id, event_id, sync_type;
} prb_sync_rec;

/* CUDA correlationId -> the external id pushed around an engine op. */
typedef struct prb_extcorr_rec { uint32_t correlation_id; uint64_t external_id; } prb_extcorr_rec;

/* Engine scope of an external correlation id (external ids are 1 + index into scopes). */
typedef struct prb_scope_rec { int64_t batch_id; int layer, op, expert; } prb_scope_rec;

/* One NVTX push/pop range recorded by the scope tracker. scope = enum prb_scope_kind. */
typedef struct prb_range_rec {
  uint64_t start, end;
  uint32_t tid;
  int scope, layer, op, expert;
  int64_t batch_id, payload;
} prb_range_rec;

typedef struct prb_gpu_info {
  int id, sm_count, compute_major, compute_minor;
  uint64_t total_memory, clock_rate_hz, l2_cache;
  char name[256], bus_location[64], uuid[64];
} prb_gpu_info;

/* Everything one run contributes. Arrays may be NULL when their count is 0. */
typedef struct prb_nsys_data {
  int64_t run_id;
  uint32_t pid;
  const prb_kernel_rec *kernels; size_t n_kernels;
  const prb_memcpy_rec *memcpys; size_t n_memcpys;
  const prb_memset_rec *memsets; size_t n_memsets;
  const prb_api_rec *apis; size_t n_apis;
  const prb_sync_rec *syncs; size_t n_syncs;
  const prb_extcorr_rec *extcorr; size_t n_extcorr;
  const prb_scope_rec *scopes; size_t n_scopes;
  const prb_range_rec *ranges; size_t n_ranges;
  const prb_gpu_info *gpus; size_t n_gpus;
} prb_nsys_data;

/* nsys GlobalId serialisation. */
static inline int64_t prb_nsys_global_pid(uint32_t pid) { return (int64_t)(pid & 0xffffffu) << 24; }
static inline int64_t prb_nsys_global_tid(uint32_t pid, uint32_t tid) {
  return prb_nsys_global_pid(pid) | (int64_t)(tid & 0xffffffu);
}

/* NVTX_EVENTS.eventType values nsys uses. */
enum { PRB_NVTX_CATEGORY = 33, PRB_NVTX_MARK = 34, PRB_NVTX_PUSHPOP = 59, PRB_NVTX_STARTEND = 60,
       PRB_NVTX_DOMAIN_CREATE = 75 };
#define PRB_NVTX_DOMAIN "moescope"

/* Writes d in one transaction (the tables must exist: prb_schema_sql). 0, or -1 with a
 * message. Strings are interned into StringIds (shared by all runs of the DB). */
int prb_nsys_write(sqlite3 *db, const prb_nsys_data *d, char *err, size_t errlen);

/* Opens db_path, applies the schema, writes d, closes. 0 or -1. */
int prb_nsys_write_path(const char *db_path, const prb_nsys_data *d, char *err, size_t errlen);

/* nsys's base kernel name: "void ns::k<int>(float*)" -> "k". Writes at most cap bytes. */
void prb_nsys_short_name(const char *demangled, char *out, size_t cap);

/* Demangled C++ name via the C++ runtime when present (malloc'd), else NULL. */
char *prb_nsys_demangle(const char *mangled);

/* API function name without CUPTI's version suffix: "cudaLaunchKernel_v7000" -> "cudaLaunchKernel". */
void prb_nsys_api_name(const char *cupti_name, char *out, size_t cap);

/* Registers the SQL functions nsys's stats scripts add to SQLite: median(x), stdev(x),
 * lower_quartile(x), upper_quartile(x) (aggregates). 0 or -1. */
int prb_nsys_register_sql(sqlite3 *db);

/* The profiler DDL, spliced into prb_schema_sql (prb_schema.c). */
#define PRB_NSYS_SCHEMA_SQL \
  "CREATE TABLE IF NOT EXISTS StringIds(id INTEGER NOT NULL PRIMARY KEY, value TEXT NOT NULL);\n" \
  "CREATE INDEX IF NOT EXISTS StringIds_value ON StringIds(value);\n" \
  "CREATE TABLE IF NOT EXISTS TARGET_INFO_GPU(vmId INTEGER NOT NULL DEFAULT 0, id INTEGER NOT NULL," \
  " name TEXT, busLocation TEXT, isDiscrete INTEGER, l2CacheSize INTEGER, totalMemory INTEGER," \
  " memoryBandwidth INTEGER, clockRate INTEGER, smCount INTEGER, pwGpuId INTEGER, uuid TEXT," \
  " luid INTEGER, chipName TEXT, cuDevice INTEGER, computeMajor INTEGER, computeMinor INTEGER," \
  " globalPid INTEGER, run_id INTEGER);\n" \
  "CREATE TABLE IF NOT EXISTS CUPTI_ACTIVITY_KIND_KERNEL(start INTEGER NOT NULL, end INTEGER NOT NULL," \
  " deviceId INTEGER NOT NULL, contextId INTEGER NOT NULL, greenContextId INTEGER," \
  " streamId INTEGER NOT NULL, correlationId INTEGER, globalPid INTEGER," \
  " demangledName INTEGER NOT NULL, shortName INTEGER NOT NULL, mangledName INTEGER," \
  " launchType INTEGER, cacheConfig INTEGER, registersPerThread INTEGER NOT NULL," \
  " gridX INTEGER NOT NULL, gridY INTEGER NOT NULL, gridZ INTEGER NOT NULL," \
  " blockX INTEGER NOT NULL, blockY INTEGER NOT NULL, blockZ INTEGER NOT NULL," \
  " staticSharedMemory INTEGER NOT NULL, dynamicSharedMemory INTEGER NOT NULL," \
  " localMemoryPerThread INTEGER NOT NULL, localMemoryTotal INTEGER NOT NULL, gridId INTEGER NOT NULL," \
  " sharedMemoryExecuted INTEGER, graphNodeId INTEGER, sharedMemoryLimitConfig INTEGER);\n" \
  "CREATE TABLE IF NOT EXISTS CUPTI_ACTIVITY_KIND_RUNTIME(start INTEGER NOT NULL, end INTEGER NOT NULL," \
  " eventClass INTEGER NOT NULL, globalTid INTEGER, correlationId INTEGER," \
  " nameId INTEGER NOT NULL REFERENCES StringIds(id), returnValue INTEGER NOT NULL, callchainId INTEGER);\n" \
  "CREATE TABLE IF NOT EXISTS CUPTI_ACTIVITY_KIND_MEMCPY(start INTEGER NOT NULL, end INTEGER NOT NULL," \
  " deviceId INTEGER NOT NULL, contextId INTEGER NOT NULL, greenContextId INTEGER, streamId INTEGER NOT NULL," \
  " correlationId INTEGER, globalPid INTEGER, bytes INTEGER NOT NULL, copyKind INTEGER NOT NULL," \
  " deprecatedSrcId INTEGER, srcKind INTEGER, dstKind INTEGER, srcDeviceId INTEGER, srcContextId INTEGER," \
  " dstDeviceId INTEGER, dstContextId INTEGER, migrationCause INTEGER, graphNodeId INTEGER," \
  " virtualAddress INTEGER);\n" \
  "CREATE TABLE IF NOT EXISTS CUPTI_ACTIVITY_KIND_MEMSET(start INTEGER NOT NULL, end INTEGER NOT NULL," \
  " deviceId INTEGER NOT NULL, contextId INTEGER NOT NULL, greenContextId INTEGER, streamId INTEGER NOT NULL," \
  " correlationId INTEGER, globalPid INTEGER, value INTEGER NOT NULL, bytes INTEGER NOT NULL," \
  " graphNodeId INTEGER, memKind INTEGER);\n" \
  "CREATE TABLE IF NOT EXISTS CUPTI_ACTIVITY_KIND_SYNCHRONIZATION(start INTEGER NOT NULL, end INTEGER NOT NULL," \
  " deviceId INTEGER, contextId INTEGER, streamId INTEGER, correlationId INTEGER, globalPid INTEGER," \
  " syncType INTEGER NOT NULL, eventId INTEGER);\n" \
  "CREATE TABLE IF NOT EXISTS NVTX_EVENTS(start INTEGER NOT NULL, end INTEGER, eventType INTEGER NOT NULL," \
  " rangeId INTEGER, category INTEGER, color INTEGER, text TEXT, globalTid INTEGER, endGlobalTid INTEGER," \
  " textId INTEGER REFERENCES StringIds(id), domainId INTEGER, uint64Value INTEGER, int64Value INTEGER," \
  " doubleValue REAL, uint32Value INTEGER, int32Value INTEGER, floatValue REAL, jsonTextId INTEGER," \
  " jsonText TEXT);\n" \
  "CREATE TABLE IF NOT EXISTS kernel_scope(correlationId INTEGER NOT NULL, run_id INTEGER NOT NULL," \
  " batch_id INTEGER, layer INTEGER, op TEXT, expert INTEGER, globalPid INTEGER, externalId INTEGER);\n" \
  "CREATE INDEX IF NOT EXISTS kernel_scope_corr ON kernel_scope(globalPid, correlationId);\n"

/* v_kernel_time_by_layer: GPU kernel time per (run, layer, op) through kernel_scope
 * (source 'kernels'), and the engine's CPU op timers (source 'ops'). */
#define PRB_NSYS_VIEW_SQL \
  "CREATE VIEW IF NOT EXISTS v_kernel_time_by_layer AS" \
  " SELECT s.run_id AS run_id, s.layer AS layer, s.op AS op, 'cuda' AS device, 'kernels' AS source," \
  " COUNT(*) AS calls, SUM(k.end - k.start) AS total_ns" \
  " FROM CUPTI_ACTIVITY_KIND_KERNEL AS k JOIN kernel_scope AS s" \
  " ON s.correlationId = k.correlationId AND s.globalPid IS k.globalPid" \
  " GROUP BY s.run_id, s.layer, s.op" \
  " UNION ALL SELECT run_id, layer, op, device, 'ops', COUNT(*), SUM(end_ns - start_ns)" \
  " FROM ops GROUP BY run_id, layer, op, device;\n"

#endif
