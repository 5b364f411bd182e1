/* test_cupti.c — the CUPTI collector without a GPU (probes/prb_cupti.c): when CUPTI is
 * built in, hand-built CUpti_ActivityKernel10 / Memcpy6 / Memset4 / API / Synchronization2
 * / ExternalCorrelation records go through the store (field by field, CUPTI clock offset
 * applied) and then through prb_nsys_write into a trace DB; starting the collector on a
 * machine without a GPU/driver degrades to NULL with one reason, never a crash. Without
 * CUPTI: the stubs report "not built" and the store is empty. */
#include <sqlite3.h>
#include <string.h>

#include "probes/prb_cupti.h"
#include "probes/prb_probe.h"
#include "probes/prb_sink.h"
#include "tests/tst.h"

#ifdef MOESCOPE_HAVE_CUPTI
#include <cupti.h>

static const char *fake_api_name(int api, uint32_t cbid) {
  return api == PRB_API_RUNTIME && cbid == 211 ? "cudaLaunchKernel_v7000" : "cuLaunchKernel";
}

static void test_store(void) {
  prb_cupti_store s;
  prb_cupti_store_init(&s);
  s.api_name = fake_api_name;
  s.ts_offset = 1000;
  CUpti_ActivityKernel10 k;
  memset(&k, 0, sizeof k);
  k.kind = CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL;
  k.start = 5000; k.end = 7500; k.deviceId = 0; k.contextId = 1; k.streamId = 13; k.correlationId = 42;
  k.gridX = 8; k.gridY = 4; k.gridZ = 1; k.blockX = 256; k.blockY = 1; k.blockZ = 1;
  k.registersPerThread = 32; k.staticSharedMemory = 2048; k.dynamicSharedMemory = 0; k.gridId = 77;
  k.localMemoryTotal_v2 = 1 << 20; k.launchType = 0;
  char name[] = "_Z13moe_topk_gateILi8EEvPKfPii";
  k.name = name;
  CHECK(prb_cupti_store_add(&s, &k) == 1);
  CUpti_ActivityMemcpy6 m;
  memset(&m, 0, sizeof m);
  m.kind = CUPTI_ACTIVITY_KIND_MEMCPY; m.copyKind = CUPTI_ACTIVITY_MEMCPY_KIND_DTOH; m.bytes = 8192;
  m.start = 8000; m.end = 8100; m.streamId = 13; m.correlationId = 43;
  CHECK(prb_cupti_store_add(&s, &m) == 1);
  CUpti_ActivityMemset4 z;
  memset(&z, 0, sizeof z);
  z.kind = CUPTI_ACTIVITY_KIND_MEMSET; z.bytes = 64; z.value = 0; z.start = 100; z.end = 110; z.correlationId = 41;
  CHECK(prb_cupti_store_add(&s, &z) == 1);
  CUpti_ActivityAPI a;
  memset(&a, 0, sizeof a);
  a.kind = CUPTI_ACTIVITY_KIND_RUNTIME; a.cbid = 211; a.start = 4000; a.end = 4100; a.threadId = 99;
  a.correlationId = 42;
  CHECK(prb_cupti_store_add(&s, &a) == 1);
  CUpti_ActivitySynchronization2 y;
  memset(&y, 0, sizeof y);
  y.kind = CUPTI_ACTIVITY_KIND_SYNCHRONIZATION; y.type = CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_STREAM_SYNCHRONIZE;
  y.start = 9000; y.end = 9500; y.streamId = 13; y.correlationId = 44;
  CHECK(prb_cupti_store_add(&s, &y) == 1);
  CUpti_ActivityExternalCorrelation x;
  memset(&x, 0, sizeof x);
  x.kind = CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION; x.externalKind = CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0;
  x.externalId = 2; x.correlationId = 42;
  CHECK(prb_cupti_store_add(&s, &x) == 1);
  x.externalKind = CUPTI_EXTERNAL_CORRELATION_KIND_OPENACC;   /* not ours: ignored */
  CHECK(prb_cupti_store_add(&s, &x) == 0);
  CUpti_Activity other = { .kind = CUPTI_ACTIVITY_KIND_OVERHEAD };
  CHECK(prb_cupti_store_add(&s, &other) == 0);
  CHECK(s.unknown == 1);

  REQUIRE(s.n_kernels == 1 && s.n_memcpys == 1 && s.n_memsets == 1 && s.n_apis == 1 && s.n_syncs == 1 && s.n_extcorr == 1);
  const prb_kernel_rec *r = &s.kernels[0];
  CHECK(r->start == 6000 && r->end == 8500);   /* + ts_offset */
  CHECK(r->stream_id == 13 && r->correlation_id == 42 && r->grid_id == 77);
  CHECK(r->grid[0] == 8 && r->grid[1] == 4 && r->block[0] == 256 && r->registers_per_thread == 32);
  CHECK(r->static_smem == 2048 && r->local_mem_total == 1u << 20);
  CHECK(r->name && !strcmp(r->name, name) && r->name != name);   /* copied */
  CHECK(s.memcpys[0].copy_kind == CUPTI_ACTIVITY_MEMCPY_KIND_DTOH && s.memcpys[0].bytes == 8192);
  CHECK(s.apis[0].api == PRB_API_RUNTIME && !strcmp(s.apis[0].name, "cudaLaunchKernel_v7000"));
  CHECK(s.apis[0].thread_id == 99 && s.apis[0].start == 5000);
  CHECK(s.syncs[0].sync_type == CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_STREAM_SYNCHRONIZE);
  CHECK(s.extcorr[0].external_id == 2 && s.extcorr[0].correlation_id == 42);

  /* through the writer */
  sqlite3 *db;
  REQUIRE(sqlite3_open(":memory:", &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db, prb_schema_sql, NULL, NULL, NULL) == SQLITE_OK);
  prb_scope_rec sc[2] = {{ .batch_id = 3, .layer = 0, .op = PRB_OP_ROUTER, .expert = -1 },
                         { .batch_id = 3, .layer = 2, .op = PRB_OP_EXPERT, .expert = 6 }};
  prb_nsys_data d = { .run_id = 1, .pid = 1234, .scopes = sc, .n_scopes = 2 };
  prb_cupti_store_data(&s, &d);
  char err[256];
  CHECKF(prb_nsys_write(db, &d, err, sizeof err) == 0, "%s", err);
  sqlite3_stmt *st;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT k.end - k.start, s.layer, s.op, s.expert, s.batch_id, r.value"
                                 " FROM CUPTI_ACTIVITY_KIND_KERNEL k JOIN kernel_scope s USING (correlationId)"
                                 " JOIN StringIds r ON r.id = k.shortName", -1, &st, NULL) == SQLITE_OK);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  CHECK(sqlite3_column_int(st, 0) == 2500 && sqlite3_column_int(st, 1) == 2 && sqlite3_column_int(st, 3) == 6);
  CHECK(!strcmp((const char *)sqlite3_column_text(st, 2), "expert") && sqlite3_column_int(st, 4) == 3);
  const char *sn = (const char *)sqlite3_column_text(st, 5);
  CHECKF(sn && (!strcmp(sn, "moe_topk_gate") || !strcmp(sn, name)), "short name %s", sn ? sn : "(null)");
  sqlite3_finalize(st);
  sqlite3_close(db);
  prb_cupti_store_free(&s);
}
#endif

int main(void) {
  char why[512] = "";
#ifdef MOESCOPE_HAVE_CUPTI
  CHECK(prb_cupti_built() == 1);
  test_store();
#else
  CHECK(prb_cupti_built() == 0);
  prb_cupti_store s;
  prb_cupti_store_init(&s);
  CHECK(prb_cupti_store_add(&s, "x") == 0 && s.n_kernels == 0);
  prb_cupti_store_free(&s);
#endif
  /* graceful degradation: without a GPU (here) start returns NULL with one reason; on a GPU
   * machine it starts and stops cleanly */
  prb_cupti *c = prb_cupti_start(why, sizeof why);
  if (!c) {
    CHECK(why[0] != 0 && strstr(why, "NVTX ranges only"));
    printf("collector unavailable (expected without a GPU): %s\n", why);
  } else {
    prb_cupti_push(c, 1);
    prb_cupti_pop(c);
    prb_cupti_flush(c);
    prb_cupti_stop(c);
    CHECK(prb_cupti_records(c) != NULL);
    prb_cupti_free(c);
  }
  prb_cupti_push(NULL, 1);   /* NULL collector: no-ops */
  prb_cupti_pop(NULL);
  prb_cupti_flush(NULL);
  prb_cupti_free(NULL);
  return tst_done();
}
