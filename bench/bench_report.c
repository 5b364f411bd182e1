/* bench_report.c — how long `stats` and `report` take on a large trace DB. Generates a
 * synthetic trace (L=8 layers, E=32 experts, k=2, 512-token sequences with 4 labels,
 * skewed routing) with N routing rows (default 1e6; e.g. 1e7 as the first argument),
 * optionally router_probs too (--full), then times rep_stats_cmd and rep_report_cmd.
 * Usage: bench_report [N] [--full] [--dir DIR] [--reuse]   (prints seconds; not a test) */
#include <math.h>
#include <sqlite3.h>
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

static int exec(sqlite3 *db, const char *sql) {
  char *msg = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
    fprintf(stderr, "bench_report: SQL error: %s\n", msg);
    sqlite3_free(msg);
    return -1;
  }
  return 0;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double urand(void) {
  rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}

static int generate(const char *path, long long n_rows, int full) {
  unlink(path);
  sqlite3 *db;
  if (sqlite3_open(path, &db) != SQLITE_OK) { fprintf(stderr, "bench_report: cannot create %s\n", path); return -1; }
  if (exec(db, prb_schema_sql) || exec(db, "PRAGMA user_version = 1") ||
      exec(db, "PRAGMA journal_mode = OFF") || exec(db, "PRAGMA synchronous = OFF") ||
      exec(db, "BEGIN")) { sqlite3_close(db); return -1; }
  char q[512];
  snprintf(q, sizeof q, "INSERT INTO runs(run_id, family, n_layers, n_experts, top_k, policy,"
           " record_level) VALUES (1, 'mixtral', %d, %d, %d, 'topk', '%s')", L, E, K,
           full ? "full" : "topk");
  exec(db, q);
  static const char *labs[NLAB] = {"code", "math", "prose", "chat"};
  sqlite3_stmt *sq, *rt, *rp = NULL, *el;
  sqlite3_prepare_v2(db, "INSERT INTO sequences VALUES (1,?,?,'bench',?)", -1, &sq, NULL);
  sqlite3_prepare_v2(db, "INSERT INTO routing VALUES (1,?,?,?,?,?,?)", -1, &rt, NULL);
  sqlite3_prepare_v2(db, "INSERT INTO expert_load VALUES (1,?,?,?,?,?,0)", -1, &el, NULL);
  if (full) sqlite3_prepare_v2(db, "INSERT INTO router_probs VALUES (1,?,?,?,?,?)", -1, &rp, NULL);
  long long tokens = n_rows / (L * K), done = 0;
  float probs[E], logits[E];
  for (int seq = 0; done < tokens; seq++) {
    int len = tokens - done < SEQ_LEN ? (int)(tokens - done) : SEQ_LEN;
    int lab = seq % NLAB;
    sqlite3_bind_int(sq, 1, seq); sqlite3_bind_text(sq, 2, labs[lab], -1, SQLITE_STATIC);
    sqlite3_bind_int(sq, 3, len); sqlite3_step(sq); sqlite3_reset(sq);
    for (int l = 0; l < L; l++) {
      long long cnt[E] = {0};
      double ws[E] = {0};
      for (int p = 0; p < len; p++) {
        /* skew: expert (lab*4 + l) preferred, a power-law over the rest */
        int a = (lab * 4 + l) % E, b = (int)(E * pow(urand(), 2.0));
        if (urand() < 0.5) a = (int)(E * urand());
        if (b == a) b = (a + 1) % E;
        int ex[K] = {a, b};
        for (int k = 0; k < K; k++) {
          sqlite3_bind_int(rt, 1, seq); sqlite3_bind_int(rt, 2, p); sqlite3_bind_int(rt, 3, l);
          sqlite3_bind_int(rt, 4, k); sqlite3_bind_int(rt, 5, ex[k]);
          sqlite3_bind_double(rt, 6, k ? 0.4 : 0.6);
          sqlite3_step(rt); sqlite3_reset(rt);
          cnt[ex[k]]++; ws[ex[k]] += k ? 0.4 : 0.6;
        }
        if (rp) {
          double z = 0;
          for (int e = 0; e < E; e++) { logits[e] = (float)(urand() * 2 + (e == a || e == b ? 2 : 0)); z += exp(logits[e]); }
          for (int e = 0; e < E; e++) probs[e] = (float)(exp(logits[e]) / z);
          sqlite3_bind_int(rp, 1, seq); sqlite3_bind_int(rp, 2, p); sqlite3_bind_int(rp, 3, l);
          sqlite3_bind_blob(rp, 4, probs, sizeof probs, SQLITE_STATIC);
          sqlite3_bind_blob(rp, 5, logits, sizeof logits, SQLITE_STATIC);
          sqlite3_step(rp); sqlite3_reset(rp);
        }
      }
      for (int e = 0; e < E; e++) {
        sqlite3_bind_int(el, 1, seq); sqlite3_bind_int(el, 2, l); sqlite3_bind_int(el, 3, e);
        sqlite3_bind_int64(el, 4, cnt[e]); sqlite3_bind_double(el, 5, ws[e]);
        sqlite3_step(el); sqlite3_reset(el);
      }
    }
    done += len;
  }
  sqlite3_finalize(sq); sqlite3_finalize(rt); sqlite3_finalize(el); sqlite3_finalize(rp);
  int rc = exec(db, "COMMIT");
  sqlite3_close(db);
  return rc;
}

int main(int argc, char **argv) {
  long long n = 1000000;
  int full = 0, reuse = 0;
  const char *dir = getenv("MOESCOPE_TMP") ? getenv("MOESCOPE_TMP") : "/tmp";
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--full")) full = 1;
    else if (!strcmp(argv[i], "--reuse")) reuse = 1;
    else if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
    else if (!strcmp(argv[i], "--help")) {
      printf("usage: bench_report [N_ROUTING_ROWS (1e6)] [--full] [--dir DIR] [--reuse]\n"
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
  fclose(devnull);
  t0 = now_s();
  if (rep_report_cmd(db, -1, out, err, sizeof err) != 0) { fprintf(stderr, "report: %s\n", err); return 1; }
  t1 = now_s();
  printf("report:    %.3f s (%s)\n", t1 - t0, out);
  return 0;
}
