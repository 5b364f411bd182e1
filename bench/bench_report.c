/* bench_report.c — how long `stats` and `report` take on a large trace DB. Generates a
 * synthetic trace through the sink (L=8 layers, E=32 experts, k=2, 512-token sequences with
 * 4 labels, skewed routing, token ids + vocab) with N routing rows (default 1e6; e.g. 1e7 as
 * the first argument), optionally router_probs too (--full), then times rep_stats_cmd,
 * stats --structure and rep_report_cmd. --scan times the fallback that reads `routing` row by
 * row (as for DBs from other tools without routing_packed).
 * Usage: bench_report [N] [--full] [--dir DIR] [--reuse] [--scan]  (prints seconds; not a test) */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "probes/prb_sink.h"
#include "reports/rep_commands.h"

enum { L = 8, E = 32, K = 2, SEQ_LEN = 512, NLAB = 4 };

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double urand(void) {
  rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}

/* Writes the trace through the real sink (probes/prb_sink.c), as `moescope run` does: one
 * route event per (sequence, layer) of SEQ_LEN tokens, token ids and a vocab, so the report
 * reads what the engine would have written (routing rows + routing_packed). */
static int generate(const char *path, long long n_rows, int full) {
  unlink(path);
  char wal[4200];
  snprintf(wal, sizeof wal, "%s-wal", path); unlink(wal);
  snprintf(wal, sizeof wal, "%s-shm", path); unlink(wal);
  char err[512];
  prb_sink *sk;
  if (prb_sink_open(&sk, path, 0, err, sizeof err)) { fprintf(stderr, "bench_report: %s\n", err); return -1; }
  prb_run_info ri = {0};
  ri.family = "mixtral"; ri.policy = "topk"; ri.n_layers = L; ri.n_experts = E; ri.top_k = K;
  ri.record_level = full ? PRB_LEVEL_FULL : PRB_LEVEL_TOPK; ri.model_path = "bench"; ri.device = "cpu";
  int64_t run;
  if (prb_sink_begin_run(sk, &ri, &run, err, sizeof err)) { fprintf(stderr, "bench_report: %s\n", err); prb_sink_close(sk, err, sizeof err); return -1; }
  enum { V = 512 };
  char pieces[V][16];
  const char *pp[V];
  size_t pl[V];
  for (int i = 0; i < V; i++) { snprintf(pieces[i], sizeof pieces[i], "tok%d", i); pp[i] = pieces[i]; pl[i] = strlen(pieces[i]); }
  prb_sink_vocab(sk, V, pp, pl);
  prb_probe pr = prb_sink_probe(sk, ri.record_level);
  static const char *labs[NLAB] = {"code", "math", "prose", "chat"};
  static int seqs[SEQ_LEN], pos[SEQ_LEN], ids[SEQ_LEN], ex[SEQ_LEN * K];
  static float w[SEQ_LEN * K], probs[SEQ_LEN * E], logits[SEQ_LEN * E];
  long long tokens = n_rows / (L * K), done = 0;
  int64_t batch = 0;
  for (int seq = 0; done < tokens; seq++) {
    int len = tokens - done < SEQ_LEN ? (int)(tokens - done) : SEQ_LEN;
    int lab = seq % NLAB;
    pr.sequence(pr.ctx, seq, labs[lab], "bench", len);
    for (int p = 0; p < len; p++) { seqs[p] = seq; pos[p] = p; ids[p] = (int)(V * pow(urand(), 3.0)); }
    pr.tokens(pr.ctx, seq, len, pos, ids, PRB_PHASE_PREFILL, NULL);
    for (int l = 0; l < L; l++) {
      for (int p = 0; p < len; p++) {
        /* skew: expert (lab*4 + l) preferred, a power-law over the rest */
        int a = (lab * 4 + l) % E, b = (int)(E * pow(urand(), 2.0));
        if (urand() < 0.5) a = (int)(E * urand());
        if (b == a) b = (a + 1) % E;
        ex[p * K] = a; ex[p * K + 1] = b; w[p * K] = 0.6f; w[p * K + 1] = 0.4f;
        if (full) {
          double z = 0;
          for (int e = 0; e < E; e++) { logits[p * E + e] = (float)(urand() * 2 + (e == a || e == b ? 2 : 0)); z += exp(logits[p * E + e]); }
          for (int e = 0; e < E; e++) probs[p * E + e] = (float)(exp(logits[p * E + e]) / z);
        }
      }
      prb_route_batch rb = {batch, l, len, K, E, seqs, pos, ex, w, full ? probs : NULL, full ? logits : NULL, NULL};
      pr.route(pr.ctx, &rb);
    }
    batch++;
    done += len;
  }
  if (prb_sink_close(sk, err, sizeof err)) { fprintf(stderr, "bench_report: %s\n", err); return -1; }
  return 0;
}

int main(int argc, char **argv) {
  long long n = 1000000;
  int full = 0, reuse = 0;
  const char *dir = getenv("MOESCOPE_TMP") ? getenv("MOESCOPE_TMP") : "/tmp";
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--full")) full = 1;
    else if (!strcmp(argv[i], "--reuse")) reuse = 1;
    else if (!strcmp(argv[i], "--scan")) setenv("MOESCOPE_NO_PACKED", "1", 1);
    else if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
    else if (!strcmp(argv[i], "--help")) {
      printf("usage: bench_report [N_ROUTING_ROWS (1e6)] [--full] [--dir DIR] [--reuse] [--scan]\n"
             "  --scan: read `routing` row by row (fallback path) instead of routing_packed\n"
             "  --reuse: time an existing DIR/bench_report.db instead of generating one\n");
      return 0;
    } else n = (long long)strtod(argv[i], NULL);
  }
  if (n < L * K) { fprintf(stderr, "bench_report: N must be >= %d\n", L * K); return 2; }
  char db[4096], out[4200], err[512];
  snprintf(db, sizeof db, "%s/bench_report.db", dir);
  snprintf(out, sizeof out, "%s/bench_report_out", dir);
  double t0 = now_s();
  double t1;
  if (!reuse || access(db, R_OK) != 0) {
    if (generate(db, n, full) != 0) return 1;
    t1 = now_s();
    printf("generate:  %lld routing rows%s: %.2f s\n", n, full ? " + router_probs" : "", t1 - t0);
  }
  FILE *devnull = fopen("/dev/null", "w");
  t0 = now_s();
  if (rep_stats_cmd(db, -1, 0, devnull, err, sizeof err) != 0) { fprintf(stderr, "stats: %s\n", err); return 1; }
  t1 = now_s();
  printf("stats:     %.3f s\n", t1 - t0);
  t0 = now_s();
  if (rep_stats_cmd(db, -1, 1, devnull, err, sizeof err) != 0) { fprintf(stderr, "stats --json: %s\n", err); return 1; }
  t1 = now_s();
  printf("stats json: %.3f s\n", t1 - t0);
  t0 = now_s();
  if (rep_stats_cmd(db, -1, REP_STATS_STRUCTURE, devnull, err, sizeof err) != 0) { fprintf(stderr, "stats --structure: %s\n", err); return 1; }
  t1 = now_s();
  printf("stats structure: %.3f s\n", t1 - t0);
  fclose(devnull);
  t0 = now_s();
  if (rep_report_cmd(db, -1, out, err, sizeof err) != 0) { fprintf(stderr, "report: %s\n", err); return 1; }
  t1 = now_s();
  printf("report:    %.3f s (%s)\n", t1 - t0, out);
  return 0;
}
