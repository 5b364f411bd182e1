/* bench_sink.c — how fast the SQLite trace sink (probes/prb_sink.c) drains a synthetic
 * routing stream at each record level. Not a test: prints a table, asserts nothing.
 *
 * Stream: N tokens (default 200000) in prefill batches of 512, 4 MoE layers, k=2, E=64,
 * probs and logits present (used at level full); plus a decode-style row (batch of 1).
 * Per level: a fresh DB, one run, every batch reported, then flush. Columns:
 *   engine_s  time spent inside the probe callbacks on the "engine" thread
 *   total_s   first event until everything is committed (flush returned)
 *   tok-lay/s token-layer routing decisions per second over total_s
 *   rows/s    DB rows per second, MB/s serialised ring bytes per second
 *   waits     times the engine thread blocked on a full ring
 * usage: bench_sink [n_tokens] [ring_MiB]   (DB files go to $MOESCOPE_TMP or /tmp)
 */
#include "probes/prb_sink.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { LAYERS = 4, K = 2, E = 64 };

static uint64_t rng = 12345;
static uint32_t rnd(void) {
  rng = rng * 6364136223846793005ull + 1442695040888963407ull;
  return (uint32_t)(rng >> 33);
}

static void bench(const char *dir, const char *name, int level, int n_tokens, int batch, size_t ring) {
  char path[4096], side[4200], err[512];
  snprintf(path, sizeof path, "%s/bench_sink_%s.db", dir, name);
  unlink(path);
  snprintf(side, sizeof side, "%s-wal", path); unlink(side);
  snprintf(side, sizeof side, "%s-shm", path); unlink(side);
  prb_sink *s = NULL;
  if (prb_sink_open(&s, path, ring, err, sizeof err) != 0) { fprintf(stderr, "%s\n", err); exit(1); }
  prb_run_info ri = { .model_path = "bench", .family = "synthetic", .n_layers = LAYERS, .n_experts = E,
                      .top_k = K, .record_level = level };
  if (prb_sink_begin_run(s, &ri, NULL, err, sizeof err) != 0) { fprintf(stderr, "%s\n", err); exit(1); }
  prb_probe p = prb_sink_probe(s, level);

  int *seq = malloc(sizeof(int) * batch), *pos = malloc(sizeof(int) * batch), *ids = malloc(sizeof(int) * batch);
  int *ex = malloc(sizeof(int) * batch * K);
  float *w = malloc(sizeof(float) * batch * K), *pr = malloc(sizeof(float) * batch * E);
  float *lg = malloc(sizeof(float) * batch * E), *nll = malloc(sizeof(float) * batch);
  for (int i = 0; i < batch * E; i++) { lg[i] = (float)(rnd() % 1000) / 100.f; pr[i] = 1.f / E; }
  uint64_t engine_ns = 0, t0 = prb_now_ns();
  int64_t b = 0;
  for (int done = 0; done < n_tokens; done += batch, b++) {
    int n = n_tokens - done < batch ? n_tokens - done : batch;
    for (int t = 0; t < n; t++) {
      seq[t] = (done + t) / 2048; pos[t] = (done + t) % 2048; ids[t] = (int)(rnd() % 32000); nll[t] = 2.5f;
    }
    for (int l = 0; l < LAYERS; l++) {
      for (int t = 0; t < n; t++) {
        int e0 = (int)(rnd() % E), e1 = (e0 + 1 + (int)(rnd() % (E - 1))) % E;
        ex[t * K] = e0; ex[t * K + 1] = e1; w[t * K] = .6f; w[t * K + 1] = .4f;
      }
      prb_route_batch rb = { b, l, n, K, E, seq, pos, ex, w, pr, lg, NULL };
      uint64_t a = prb_now_ns();
      if (p.route) p.route(p.ctx, &rb);
      if (p.op) p.op(p.ctx, b, l, PRB_OP_EXPERTS, -1, a, a + 1000, 0);
      engine_ns += prb_now_ns() - a;
    }
    uint64_t a = prb_now_ns();
    /* one tokens call per sequence piece in the batch */
    int start = 0;
    for (int t = 1; t <= n; t++) {
      if (t == n || seq[t] != seq[start]) {
        if (p.tokens) p.tokens(p.ctx, seq[start], t - start, pos + start, ids + start, PRB_PHASE_PREFILL, nll + start);
        start = t;
      }
    }
    engine_ns += prb_now_ns() - a;
  }
  if (prb_sink_flush(s, err, sizeof err) != 0) { fprintf(stderr, "%s\n", err); exit(1); }
  double total = (double)(prb_now_ns() - t0) / 1e9;
  prb_sink_stats st;
  prb_sink_get_stats(s, &st);
  if (prb_sink_close(s, err, sizeof err) != 0) { fprintf(stderr, "%s\n", err); exit(1); }
  struct stat sb;
  double mb = stat(path, &sb) == 0 ? (double)sb.st_size / 1048576.0 : NAN;
  double events = (double)n_tokens * LAYERS;
  printf("%-14s %6d %9.3f %8.3f %11.0f %11.0f %8.1f %7llu %8llu %8.1f\n", name, batch, (double)engine_ns / 1e9,
         total, events / total, (double)st.rows_written / total, (double)st.bytes_queued / 1048576.0 / total,
         (unsigned long long)st.waits, (unsigned long long)st.commits, mb);
  free(seq); free(pos); free(ids); free(ex); free(w); free(pr); free(lg); free(nll);
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 200000;
  size_t ring = argc > 2 ? (size_t)atoi(argv[2]) << 20 : 0;
  const char *dir = getenv("MOESCOPE_TMP");
  if (!dir || !*dir) dir = "/tmp";
  printf("sink throughput: %d tokens x %d layers x k=%d, E=%d, ring %s\n", n, LAYERS, K, E,
         ring ? argv[2] : "default (64 MiB)");
  printf("%-14s %6s %9s %8s %11s %11s %8s %7s %8s %8s\n", "level", "batch", "engine_s", "total_s", "tok-lay/s",
         "rows/s", "MB/s", "waits", "commits", "db_MB");
  bench(dir, "counts", PRB_LEVEL_COUNTS, n, 512, ring);
  bench(dir, "topk", PRB_LEVEL_TOPK, n, 512, ring);
  bench(dir, "full", PRB_LEVEL_FULL, n, 512, ring);
  bench(dir, "topk-decode", PRB_LEVEL_TOPK, n / 10, 1, ring);
  bench(dir, "counts-decode", PRB_LEVEL_COUNTS, n / 10, 1, ring);
  return 0;
}
