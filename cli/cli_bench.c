/* cli_bench.c — `moescope bench`: prefill and decode throughput with the probe off and
 * at each record level (overhead in % against off, measured in the same run), plus the
 * decode memory-bandwidth roofline: bytes of weights a decode step must read (at their
 * stored size: weights are read in place from the mapping) divided by the time, as a
 * share of the read bandwidth the bench measures on this machine. */
#include "cli/cli.h"
#include "engine/eng_forward.h"
#include "probes/prb_sink.h"

#include <limits.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static double now_s(void) { return (double)prb_now_ns() * 1e-9; }

/* Read bandwidth: each thread sums 8 interleaved streams of a 1 GiB buffer (far beyond
 * the last-level cache; several streams per core, as a matmul reads 4+ weight rows at
 * once), best of several passes. */
static double measure_bw(void) {
  size_t n = (size_t)1 << 30 >> 2, S = 8; /* 1 GiB of floats */
  float *b = malloc(n * sizeof(float));
  if (!b) return 0;
  #pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) b[i] = (float)(i & 7);
  double best = 0;
  volatile float sink = 0;
  for (int r = 0; r < 4; r++) {
    double t0 = now_s();
    float tot = 0;
    #pragma omp parallel reduction(+:tot)
    {
      int nt = omp_get_num_threads(), id = omp_get_thread_num();
      size_t per = n / (size_t)nt / S / 16 * 16, base = per * S * (size_t)id;
      float acc[8][16] = {{0}};
      for (size_t i = 0; i < per; i += 16)
        for (size_t s = 0; s < S; s++) {
          const float *p = b + base + s * per + i;
          #pragma omp simd
          for (int j = 0; j < 16; j++) acc[s][j] += p[j];
        }
      for (size_t s = 0; s < S; s++) for (int j = 0; j < 16; j++) tot += acc[s][j];
    }
    double t = now_s() - t0;
    sink += tot;
    double bw = (double)n * sizeof(float) / t;
    if (bw > best) best = bw;
  }
  (void)sink;
  free(b);
  return best;
}

typedef struct { double prefill_tps, decode_tps; } bench_res;

static int bench_level(const eng_model *m, int level, const char *db, int n_prefill, int n_decode, int reps,
                       bench_res *r, char *err, size_t errlen) {
  prb_sink *sink = NULL;
  prb_probe probe = prb_probe_none();
  eng_policy *pol = NULL;
  if (eng_policy_create_cfg(&pol, "native", &m->cfg.router, err, errlen)) return -1;
  if (level > PRB_LEVEL_OFF) {
    if (prb_sink_open(&sink, db, 0, err, errlen)) { eng_policy_free(pol); return -1; }
    prb_run_info ri = {m->dir, m->sha256, m->cfg.model_type, pol->spec, "cpu", m->dtype, "moescope bench",
                       m->cfg.n_layers, m->cfg.n_experts, m->cfg.top_k, m->cfg.n_shared_experts, krn_get_threads(), level};
    int64_t run_id;
    if (prb_sink_begin_run(sink, &ri, &run_id, err, errlen)) { prb_sink_close(sink, NULL, 0); eng_policy_free(pol); return -1; }
    probe = prb_sink_probe(sink, level);
  }
  eng_ctx c;
  int ctx = n_prefill + n_decode + 1;
  if (eng_ctx_init(&c, m, krn_cpu_backend(), pol, probe, ctx, n_prefill, err, errlen)) {
    if (sink) prb_sink_close(sink, NULL, 0);
    eng_policy_free(pol);
    return -1;
  }
  int *ids = malloc(sizeof(int) * (size_t)n_prefill);
  float *logits = malloc(sizeof(float) * (size_t)m->cfg.vocab);
  uint64_t s = 12345;
  for (int i = 0; i < n_prefill; i++) { s = s * 6364136223846793005ull + 1442695040888963407ull; ids[i] = (int)((s >> 33) % (uint64_t)m->cfg.vocab); }
  double best_p = 1e30, best_d = 1e30;
  int rc = 0;
  for (int rep = 0; rep < reps && rc == 0; rep++) {
    eng_ctx_reset(&c);
    double t0 = now_s();
    if (eng_forward(&c, ids, n_prefill, ENG_LOGITS_LAST, logits, rep, 0, err, errlen) < 0) { rc = -1; break; }
    double t1 = now_s();
    for (int i = 0; i < n_decode; i++) {
      int id = ids[i % n_prefill];
      if (eng_forward(&c, &id, 1, ENG_LOGITS_LAST, logits, rep, n_prefill + i, err, errlen) < 0) { rc = -1; break; }
    }
    double t2 = now_s();
    if (t1 - t0 < best_p) best_p = t1 - t0;
    if (t2 - t1 < best_d) best_d = t2 - t1;
  }
  if (sink && prb_sink_close(sink, err, errlen)) rc = -1;
  r->prefill_tps = n_prefill / best_p;
  r->decode_tps = n_decode / best_d;
  free(ids); free(logits);
  eng_ctx_free(&c);
  eng_policy_free(pol);
  return rc;
}

int cli_bench(int argc, char **argv) {
  const char *C = "bench", *dir = NULL, *v;
  long n_prefill = 256, n_decode = 128, reps = 3, threads = 0;
  int roofline = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) {
      printf("usage: moescope bench [--model DIR|FILE.gguf] [--prefill N] [--decode N] [--reps R] [--threads N]\n"
             "                      [--no-roofline]\n"
             "Prints prefill and decode tokens/s with the probe off and at each record level\n"
             "(overhead %% vs off), and decode throughput as %% of the measured read-bandwidth roofline\n"
             "(--no-roofline skips the 1 GiB bandwidth measurement, e.g. for quick smoke runs).\n");
      return CLI_OK;
    }
    long *dst = NULL, lo = 1, hi = 1 << 20;
    if (!strcmp(a, "--model")) { if (!(dir = cli_value(argc, argv, &i, C))) return CLI_USAGE; continue; }
    else if (!strcmp(a, "--no-roofline")) { roofline = 0; continue; }
    else if (!strcmp(a, "--prefill")) dst = &n_prefill;
    else if (!strcmp(a, "--decode")) dst = &n_decode;
    else if (!strcmp(a, "--reps")) { dst = &reps; hi = 1000; }
    else if (!strcmp(a, "--threads")) { dst = &threads; hi = 1024; }
    else return cli_fail(CLI_USAGE, C, "unknown option '%s' (see moescope bench --help)", a);
    if (!(v = cli_value(argc, argv, &i, C))) return CLI_USAGE;
    if (cli_int(v, lo, hi, dst)) return cli_fail(CLI_USAGE, C, "%s: invalid value '%s'", a, v);
  }
  if (!dir) dir = cli_default_model();
  if (threads > 0) krn_set_threads((int)threads);
  char err[1024];
  eng_model m;
  if (eng_model_load(&m, dir, err, sizeof err)) return cli_fail(CLI_ERR, C, "%s", err);
  if (n_prefill + n_decode + 1 > m.cfg.max_pos) n_decode = m.cfg.max_pos - n_prefill - 1;
  if (n_decode < 1) { eng_model_free(&m); return cli_fail(CLI_USAGE, C, "--prefill %ld leaves no room to decode in a context of %d", n_prefill, m.cfg.max_pos); }
  char db[PATH_MAX];
  snprintf(db, sizeof db, "/tmp/moescope-bench-%d.db", (int)getpid());
  printf("model %s: %d layers, %d experts top-%d, hidden %d, %s weights read in place (float32 compute; "
         "%.1f MB mapped, %.1f MB copied), %d threads, cpu [%s]\n",
         dir, m.cfg.n_layers, m.cfg.n_experts, m.cfg.top_k, m.cfg.hidden, m.dtype,
         (double)(m.weight_bytes - m.copied_weight_bytes) / 1e6, (double)m.copied_weight_bytes / 1e6, krn_get_threads(),
         krn_cpu_features());
  double bw = roofline ? measure_bw() : 0;
  if (roofline) printf("measured read bandwidth: %.1f GB/s\n\n", bw / 1e9);
  else printf("read bandwidth: not measured (--no-roofline)\n\n");
  printf("%-8s %14s %10s %14s %10s\n", "record", "prefill tok/s", "overhead", "decode tok/s", "overhead");
  bench_res base = {0, 0};
  int rc = CLI_OK;
  for (int level = PRB_LEVEL_OFF; level <= PRB_LEVEL_FULL; level++) {
    bench_res r;
    remove(db);
    if (bench_level(&m, level, db, (int)n_prefill, (int)n_decode, (int)reps, &r, err, sizeof err)) {
      rc = cli_fail(CLI_ERR, C, "%s", err);
      break;
    }
    if (level == PRB_LEVEL_OFF) base = r;
    printf("%-8s %14.1f %9.1f%% %14.1f %9.1f%%\n", prb_level_name(level), r.prefill_tps,
           level ? 100.0 * (base.prefill_tps / r.prefill_tps - 1) : 0.0, r.decode_tps,
           level ? 100.0 * (base.decode_tps / r.decode_tps - 1) : 0.0);
  }
  /* decode roofline: the bytes of weights a decode token reads, at their stored size (the
   * kernels read BF16 / F16 / Q8_0 in place): dense matrices, router, k experts, one
   * embedding row, the output head */
  double bytes = eng_model_decode_bytes(&m);
  if (rc == CLI_OK && bw > 0)
    printf("\ndecode (probe off): %.2f MB of weights per token -> %.1f GB/s effective = %.1f%% of the measured "
           "bandwidth roofline (%.0f tok/s at 100%%)\n", bytes / 1e6, bytes * base.decode_tps / 1e9,
           100.0 * bytes * base.decode_tps / bw, bw / bytes);
  char wal[PATH_MAX + 8];
  remove(db);
  snprintf(wal, sizeof wal, "%s-wal", db); remove(wal);
  snprintf(wal, sizeof wal, "%s-shm", db); remove(wal);
  eng_model_free(&m);
  return rc;
}
