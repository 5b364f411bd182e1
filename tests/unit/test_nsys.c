/* test_nsys.c — the profiler record -> Nsight Systems table translation (probes/prb_nsys.c)
 * without a GPU: hand-built kernel / memcpy / memset / runtime / sync / external-correlation
 * records and NVTX ranges are written into a fresh trace DB, then checked column by column
 * (StringIds interning, globalPid/globalTid encoding, kernel_scope, v_kernel_time_by_layer),
 * and nsys's own cuda_gpu_kern_sum report SQL runs unchanged on it with the values it must
 * give. Also the kernel/API name helpers and nsys's SQL aggregates. */
#include <sqlite3.h>
#include <string.h>

#include "probes/prb_nsys.h"
#include "probes/prb_probe.h"
#include "probes/prb_sink.h"
#include "tests/tst.h"

static sqlite3 *db;

static long long qi(const char *sql) {
  sqlite3_stmt *st;
  long long v = -999;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) { fprintf(stderr, "SQL: %s: %s\n", sql, sqlite3_errmsg(db)); return v; }
  if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}
static const char *qs(const char *sql, char *buf, size_t n) {
  sqlite3_stmt *st;
  buf[0] = 0;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) { fprintf(stderr, "SQL: %s: %s\n", sql, sqlite3_errmsg(db)); return buf; }
  if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0)) snprintf(buf, n, "%s", (const char *)sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  return buf;
}

/* nsys's cuda_gpu_kern_sum (reports/cuda_gpu_kern_sum.py), with the kernel view that its
 * kernel_helper.create_kernel_view() makes for the default (demangled, templated) names. */
static const char *kern_view =
  "CREATE TEMP VIEW CUPTI_ACTIVITY_KIND_KERNEL_NAMED AS SELECT k.*, str.value AS name"
  " FROM CUPTI_ACTIVITY_KIND_KERNEL AS k JOIN StringIds AS str ON str.id = k.demangledName";
static const char *kern_sum =
  "WITH\n    summary AS (\n        SELECT\n            name,\n            sum(end - start) AS total,\n"
  "            count(*) AS num,\n            avg(end - start) AS avg,\n            median(end - start) AS med,\n"
  "            min(end - start) AS min,\n            max(end - start) AS max,\n            stdev(end - start) AS stddev,\n"
  "            lower_quartile(end - start) AS q1,\n            upper_quartile(end - start) AS q3\n        FROM\n"
  "            CUPTI_ACTIVITY_KIND_KERNEL_NAMED\n        GROUP BY 1\n    ),\n    totals AS (\n"
  "        SELECT sum(total) AS total\n        FROM summary\n    )\nSELECT\n"
  "    round(summary.total * 100.0 / (SELECT total FROM totals), 1) AS \"Time:ratio_%\",\n"
  "    summary.total AS \"Total Time:dur_ns\",\n    summary.num AS \"Instances\",\n"
  "    round(summary.avg, 1) AS \"Avg:dur_ns\",\n    round(summary.med, 1) AS \"Med:dur_ns\",\n"
  "    summary.min AS \"Min:dur_ns\",\n    summary.max AS \"Max:dur_ns\",\n"
  "    round(summary.stddev, 1) AS \"StdDev:dur_ns\",\n    summary.name AS \"Name\",\n"
  "    summary.q1 AS \"_Q1\",\n    summary.q3 AS \"_Q3\"\nFROM\n    summary\nORDER BY 2 DESC, 3, \"Name\"\n;";

static prb_kernel_rec kern(uint64_t t0, uint64_t dur, uint32_t corr, const char *name, uint32_t stream) {
  prb_kernel_rec k = { .start = t0, .end = t0 + dur, .device_id = 0, .context_id = 1, .stream_id = stream,
                       .correlation_id = corr, .grid = {64, 2, 1}, .block = {128, 1, 1}, .registers_per_thread = 40,
                       .static_smem = 1024, .dynamic_smem = 49152, .grid_id = corr, .name = name };
  return k;
}

int main(void) {
  char buf[512];
  /* names */
  prb_nsys_short_name("void moe::expert_ffn<128, float>(float const*, int)", buf, sizeof buf);
  CHECK(!strcmp(buf, "expert_ffn"));
  prb_nsys_short_name("rmsnorm_kernel", buf, sizeof buf);
  CHECK(!strcmp(buf, "rmsnorm_kernel"));
  prb_nsys_short_name("ampere_sgemm_128x64_nn", buf, sizeof buf);
  CHECK(!strcmp(buf, "ampere_sgemm_128x64_nn"));
  prb_nsys_short_name("void at::native::(anonymous namespace)::k<(int)4>(int)", buf, sizeof buf);
  CHECK(!strcmp(buf, "k"));
  prb_nsys_api_name("cudaLaunchKernel_v7000", buf, sizeof buf);
  CHECK(!strcmp(buf, "cudaLaunchKernel"));
  prb_nsys_api_name("cuMemcpyHtoD_v2", buf, sizeof buf);
  CHECK(!strcmp(buf, "cuMemcpyHtoD"));
  prb_nsys_api_name("cudaStreamSynchronize", buf, sizeof buf);
  CHECK(!strcmp(buf, "cudaStreamSynchronize"));
  CHECK(prb_nsys_global_tid(4242, 4243) == (4242LL << 24 | 4243));
  CHECK(prb_nsys_global_tid(4242, 4243) / 0x1000000 % 0x1000000 == 4242 && prb_nsys_global_tid(4242, 4243) % 0x1000000 == 4243);

  REQUIRE(sqlite3_open(":memory:", &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db, prb_schema_sql, NULL, NULL, NULL) == SQLITE_OK);
  REQUIRE(prb_nsys_register_sql(db) == 0);

  /* run 7: kernel A x4 (100..400 ns), kernel B x1 (500 ns); A's launches inside layer 1
   * router / experts, B in layer 2 expert 5 */
  prb_kernel_rec ks[5] = { kern(1000, 100, 11, "router_topk", 7), kern(2000, 200, 12, "router_topk", 7),
                           kern(3000, 300, 13, "router_topk", 7), kern(4000, 400, 14, "router_topk", 8),
                           kern(5000, 500, 15, "_Z10expert_ffnILi128EEvPKfi", 7) };
  prb_memcpy_rec mc[1] = {{ .start = 100, .end = 180, .bytes = 4096, .device_id = 0, .context_id = 1, .stream_id = 7,
                            .correlation_id = 10, .copy_kind = 1, .src_kind = 1, .dst_kind = 3 }};
  prb_memset_rec ms[1] = {{ .start = 200, .end = 220, .bytes = 512, .context_id = 1, .stream_id = 7, .correlation_id = 9,
                            .value = 0, .mem_kind = 3 }};
  prb_api_rec api[2] = {{ .start = 900, .end = 950, .thread_id = 4243, .correlation_id = 11, .api = PRB_API_RUNTIME,
                          .name = "cudaLaunchKernel_v7000" },
                        { .start = 5600, .end = 5700, .thread_id = 4243, .correlation_id = 16, .api = PRB_API_RUNTIME,
                          .name = "cudaStreamSynchronize_v3020" }};
  prb_sync_rec sy[1] = {{ .start = 5600, .end = 5690, .correlation_id = 16, .context_id = 1, .stream_id = 7, .sync_type = 3 }};
  prb_scope_rec sc[3] = {{ .batch_id = 0, .layer = 1, .op = PRB_OP_ROUTER, .expert = -1 },
                         { .batch_id = 0, .layer = 1, .op = PRB_OP_EXPERTS, .expert = -1 },
                         { .batch_id = 0, .layer = 2, .op = PRB_OP_EXPERT, .expert = 5 }};
  prb_extcorr_rec xc[5] = {{11, 1}, {12, 1}, {13, 2}, {14, 2}, {15, 3}};
  prb_range_rec rr[3] = {{ .start = 500, .end = 6000, .tid = 4243, .scope = PRB_SCOPE_RUN, .payload = 7, .layer = -1, .op = -1, .expert = -1 },
                         { .start = 600, .end = 5900, .tid = 4243, .scope = PRB_SCOPE_BATCH, .batch_id = 0, .payload = 0, .layer = -1, .op = -1, .expert = -1 },
                         { .start = 700, .end = 3500, .tid = 4243, .scope = PRB_SCOPE_OP, .layer = 1, .op = PRB_OP_ROUTER, .payload = 1, .expert = -1 }};
  prb_gpu_info gpu = { .id = 0, .sm_count = 132, .compute_major = 9, .compute_minor = 0, .total_memory = 150ull << 30 };
  snprintf(gpu.name, sizeof gpu.name, "NVIDIA H200");
  prb_nsys_data d = { .run_id = 7, .pid = 4242, .kernels = ks, .n_kernels = 5, .memcpys = mc, .n_memcpys = 1,
                      .memsets = ms, .n_memsets = 1, .apis = api, .n_apis = 2, .syncs = sy, .n_syncs = 1,
                      .extcorr = xc, .n_extcorr = 5, .scopes = sc, .n_scopes = 3, .ranges = rr, .n_ranges = 3,
                      .gpus = &gpu, .n_gpus = 1 };
  char err[256] = "";
  CHECKF(prb_nsys_write(db, &d, err, sizeof err) == 0, "write: %s", err);

  CHECK(qi("SELECT COUNT(*) FROM CUPTI_ACTIVITY_KIND_KERNEL") == 5);
  CHECK(qi("SELECT COUNT(*) FROM CUPTI_ACTIVITY_KIND_KERNEL WHERE globalPid / 0x1000000 % 0x1000000 = 4242") == 5);
  CHECK(qi("SELECT gridX * 100 + gridY * 10 + gridZ FROM CUPTI_ACTIVITY_KIND_KERNEL WHERE correlationId = 12") == 6421);
  CHECK(qi("SELECT blockX FROM CUPTI_ACTIVITY_KIND_KERNEL WHERE correlationId = 12") == 128);
  CHECK(qi("SELECT registersPerThread + staticSharedMemory + dynamicSharedMemory FROM CUPTI_ACTIVITY_KIND_KERNEL"
           " WHERE correlationId = 14") == 40 + 1024 + 49152);
  CHECK(qi("SELECT streamId FROM CUPTI_ACTIVITY_KIND_KERNEL WHERE correlationId = 14") == 8);
  /* names: demangled through the C++ runtime when the process has one, short name always */
  CHECK(!strcmp(qs("SELECT s.value FROM CUPTI_ACTIVITY_KIND_KERNEL k JOIN StringIds s ON s.id = k.shortName"
                   " WHERE correlationId = 15", buf, sizeof buf), "expert_ffn"));
  CHECK(!strcmp(qs("SELECT s.value FROM CUPTI_ACTIVITY_KIND_KERNEL k JOIN StringIds s ON s.id = k.mangledName"
                   " WHERE correlationId = 15", buf, sizeof buf), "_Z10expert_ffnILi128EEvPKfi"));
  CHECK(qi("SELECT COUNT(DISTINCT demangledName) FROM CUPTI_ACTIVITY_KIND_KERNEL WHERE correlationId <= 14") == 1);
  CHECK(qi("SELECT COUNT(*) FROM StringIds WHERE value = 'router_topk'") == 1);
  /* runtime: nameId -> StringIds, globalTid, eventClass 0 */
  CHECK(!strcmp(qs("SELECT s.value FROM CUPTI_ACTIVITY_KIND_RUNTIME r JOIN StringIds s ON s.id = r.nameId"
                   " WHERE correlationId = 11", buf, sizeof buf), "cudaLaunchKernel"));
  CHECK(qi("SELECT globalTid % 0x1000000 FROM CUPTI_ACTIVITY_KIND_RUNTIME WHERE correlationId = 11") == 4243);
  CHECK(qi("SELECT eventClass FROM CUPTI_ACTIVITY_KIND_RUNTIME WHERE correlationId = 16") == 0);
  /* kernel -> launching API call, the standard nsys join */
  CHECK(qi("SELECT COUNT(*) FROM CUPTI_ACTIVITY_KIND_KERNEL k JOIN CUPTI_ACTIVITY_KIND_RUNTIME r"
           " ON r.correlationId = k.correlationId") == 1);
  CHECK(qi("SELECT bytes * 10 + copyKind FROM CUPTI_ACTIVITY_KIND_MEMCPY") == 40961);
  CHECK(qi("SELECT bytes FROM CUPTI_ACTIVITY_KIND_MEMSET") == 512);
  CHECK(qi("SELECT syncType FROM CUPTI_ACTIVITY_KIND_SYNCHRONIZATION") == 3);
  CHECK(qi("SELECT smCount FROM TARGET_INFO_GPU WHERE run_id = 7") == 132);
  /* kernel_scope and the layer view */
  CHECK(qi("SELECT COUNT(*) FROM kernel_scope WHERE run_id = 7") == 5);
  CHECK(!strcmp(qs("SELECT op FROM kernel_scope WHERE correlationId = 13", buf, sizeof buf), "experts"));
  CHECK(qi("SELECT expert FROM kernel_scope WHERE correlationId = 15") == 5);
  CHECK(qi("SELECT total_ns FROM v_kernel_time_by_layer WHERE source = 'kernels' AND layer = 1 AND op = 'router'") == 300);
  CHECK(qi("SELECT total_ns FROM v_kernel_time_by_layer WHERE source = 'kernels' AND layer = 1 AND op = 'experts'") == 700);
  CHECK(qi("SELECT calls FROM v_kernel_time_by_layer WHERE source = 'kernels' AND layer = 2") == 1);
  /* NVTX: domain, categories, ranges with payloads; op names as registered strings */
  CHECK(qi("SELECT COUNT(*) FROM NVTX_EVENTS WHERE eventType = 75 AND text = 'moescope'") == 1);
  CHECK(qi("SELECT COUNT(*) FROM NVTX_EVENTS WHERE eventType = 33") == PRB_SCOPE_COUNT);
  CHECK(!strcmp(qs("SELECT text FROM NVTX_EVENTS WHERE eventType = 33 AND category = 3", buf, sizeof buf), "layer"));
  CHECK(qi("SELECT int64Value FROM NVTX_EVENTS WHERE eventType = 59 AND text = 'run 7'") == 7);
  CHECK(!strcmp(qs("SELECT s.value FROM NVTX_EVENTS n JOIN StringIds s ON s.id = n.textId WHERE n.category = 4",
                   buf, sizeof buf), "router"));
  CHECK(qi("SELECT end - start FROM NVTX_EVENTS WHERE text = 'batch 0'") == 5300);
  CHECK(qi("SELECT COUNT(*) FROM NVTX_EVENTS WHERE eventType = 59 AND globalTid = endGlobalTid"
           " AND globalTid / 0x1000000 % 0x1000000 = 4242") == 3);

  /* nsys's kernel summary, unchanged */
  REQUIRE(sqlite3_exec(db, kern_view, NULL, NULL, NULL) == SQLITE_OK);
  sqlite3_stmt *st;
  REQUIRE(sqlite3_prepare_v2(db, kern_sum, -1, &st, NULL) == SQLITE_OK);
  int rows = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    const char *name = (const char *)sqlite3_column_text(st, 8);
    if (rows == 0) {   /* router_topk: 1000 ns of 1500 */
      CHECK(name && !strcmp(name, "router_topk"));
      CHECK_NEAR(sqlite3_column_double(st, 0), 66.7, 1e-9);
      CHECK(sqlite3_column_int64(st, 1) == 1000);
      CHECK(sqlite3_column_int64(st, 2) == 4);
      CHECK_NEAR(sqlite3_column_double(st, 3), 250.0, 1e-9);
      CHECK_NEAR(sqlite3_column_double(st, 4), 250.0, 1e-9);
      CHECK(sqlite3_column_int64(st, 5) == 100 && sqlite3_column_int64(st, 6) == 400);
      CHECK_NEAR(sqlite3_column_double(st, 7), 129.1, 1e-9);   /* sample stdev of 100..400 */
      CHECK_NEAR(sqlite3_column_double(st, 9), 175.0, 1e-9);
      CHECK_NEAR(sqlite3_column_double(st, 10), 325.0, 1e-9);
    } else {
      CHECK(sqlite3_column_int64(st, 1) == 500 && sqlite3_column_int64(st, 2) == 1);
      CHECK_NEAR(sqlite3_column_double(st, 0), 33.3, 1e-9);
      CHECK_NEAR(sqlite3_column_double(st, 7), 0.0, 1e-9);
    }
    rows++;
  }
  sqlite3_finalize(st);
  CHECK(rows == 2);

  /* a second run of the same process image shares StringIds, keeps its own rows */
  d.run_id = 8;
  d.pid = 5000;
  d.n_memcpys = d.n_memsets = d.n_syncs = 0;
  d.n_ranges = 0;
  CHECKF(prb_nsys_write(db, &d, err, sizeof err) == 0, "write 2: %s", err);
  CHECK(qi("SELECT COUNT(*) FROM StringIds WHERE value = 'router_topk'") == 1);
  CHECK(qi("SELECT COUNT(*) FROM CUPTI_ACTIVITY_KIND_KERNEL") == 10);
  CHECK(qi("SELECT SUM(total_ns) FROM v_kernel_time_by_layer WHERE source = 'kernels' AND run_id = 8") == 1500);
  CHECK(qi("SELECT SUM(total_ns) FROM v_kernel_time_by_layer WHERE source = 'kernels' AND run_id = 7") == 1500);
  /* an external id without a scope (0 or out of range) makes no kernel_scope row */
  prb_extcorr_rec bad[2] = {{99, 0}, {98, 77}};
  prb_nsys_data d3 = { .run_id = 9, .pid = 6000, .extcorr = bad, .n_extcorr = 2, .scopes = sc, .n_scopes = 3 };
  CHECK(prb_nsys_write(db, &d3, err, sizeof err) == 0);
  CHECK(qi("SELECT COUNT(*) FROM kernel_scope WHERE run_id = 9") == 0);
  sqlite3_close(db);
  return tst_done();
}
