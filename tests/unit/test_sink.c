/* test_sink.c — unit tests for the SQLite trace sink (probes/prb_sink.c, prb_ring.c).
 *
 * Drives the sink with seeded synthetic routing (k=2, E=8, 3 layers, two sequences per
 * run, a few empty slots and dropped tokens) and checks the database with plain SQL:
 * exact row counts per table and record level, expert_load == aggregate of routing and
 * == the generator's own per-batch aggregate, weights summing to 1 per token-layer,
 * router_probs blobs round-tripping bit-exact, run/meta metadata, byte-exact vocab pieces
 * (invalid UTF-8 and NUL inside TEXT), the tiny-ring backpressure path (and an oversized
 * record growing the ring), refusal of unusable paths / foreign files, latched writer
 * errors (constraint, file-size limit), reopen-appends-a-run, and a SIGKILLed writer
 * process leaving a consistent DB with every flushed row.
 */
#include "probes/prb_sink.h"
#include "tests/tst.h"

#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define L_ 3
#define K_ 2
#define E_ 8
#define MAXB 64
#define MAXPOS 512

static char tmpdir[3000];

static const char *tpath(char *buf, size_t n, const char *name) {
  snprintf(buf, n, "%s/%s", tmpdir, name);
  return buf;
}
static void rm_db(const char *p) {
  char b[4096];
  unlink(p);
  snprintf(b, sizeof b, "%s-wal", p); unlink(b);
  snprintf(b, sizeof b, "%s-shm", p); unlink(b);
}

/* ---- SQL helpers ---- */
static long long qi(sqlite3 *db, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *sql = sqlite3_vmprintf(fmt, ap);
  va_end(ap);
  sqlite3_stmt *st = NULL;
  long long v = -999;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
    v = sqlite3_column_int64(st, 0);
  else fprintf(stderr, "query failed: %s: %s\n", sql, sqlite3_errmsg(db));
  sqlite3_finalize(st);
  sqlite3_free(sql);
  return v;
}
static double qd(sqlite3 *db, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *sql = sqlite3_vmprintf(fmt, ap);
  va_end(ap);
  sqlite3_stmt *st = NULL;
  double v = NAN;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
    v = sqlite3_column_double(st, 0);
  sqlite3_finalize(st);
  sqlite3_free(sql);
  return v;
}
static int qs(sqlite3 *db, char *out, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *sql = sqlite3_vmprintf(fmt, ap);
  va_end(ap);
  sqlite3_stmt *st = NULL;
  int ok = 0;
  out[0] = 0;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
    const unsigned char *t = sqlite3_column_text(st, 0);
    snprintf(out, n, "%s", t ? (const char *)t : "(null)");
    ok = 1;
  }
  sqlite3_finalize(st);
  sqlite3_free(sql);
  return ok;
}
static sqlite3 *db_open(const char *p) {
  sqlite3 *db = NULL;
  REQUIRE(sqlite3_open_v2(p, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK);
  return db;
}

/* ---- the synthetic stream ---- */
static uint64_t rng;
static uint32_t rnd(void) {
  rng = rng * 6364136223846793005ull + 1442695040888963407ull;
  return (uint32_t)(rng >> 33);
}
static float rndf(void) { return (float)(rnd() & 0xffffff) / (float)0x1000000; }

typedef struct expect {
  long long tokens, routing, n_probs, load_rows, ops, nll_null;
  int exp_tok[MAXB][L_][E_];
  double exp_w[MAXB][L_][E_];
  int dropped[MAXB][E_];
  float probs[2][MAXPOS][L_][E_], logits[2][MAXPOS][L_][E_];
} expect;
static expect X;

/* One run: n_batches batches of 5..11 tokens from sequences 0 and 1, L_ layers each. */
static void drive(prb_probe *p, int n_batches, uint64_t seed, expect *x) {
  memset(x, 0, sizeof *x);
  rng = seed;
  int next_pos[2] = { 0, 0 };
  if (p->sequence) p->sequence(p->ctx, 0, "code", "early", 0);  /* replaced below */
  for (int b = 0; b < n_batches; b++) {
    int n = 5 + (int)(rnd() % 7);
    int seq[16], pos[16], ex[16 * K_], ids[16], dropped[E_];
    float w[16 * K_], pr[16 * E_], lg[16 * E_], nll[16];
    for (int t = 0; t < n; t++) { seq[t] = t % 2; pos[t] = next_pos[t % 2]++; ids[t] = (int)(rnd() % 1000); }
    for (int e = 0; e < E_; e++) x->dropped[b][e] = dropped[e] = (b % 4 == 0) ? e % 3 : 0;
    for (int l = 0; l < L_; l++) {
      for (int t = 0; t < n; t++) {
        float mx = -1e30f, sum = 0;
        for (int e = 0; e < E_; e++) { lg[t * E_ + e] = 4 * rndf() - 2; if (lg[t * E_ + e] > mx) mx = lg[t * E_ + e]; }
        for (int e = 0; e < E_; e++) { pr[t * E_ + e] = expf(lg[t * E_ + e] - mx); sum += pr[t * E_ + e]; }
        int b0 = 0, b1 = 1;
        for (int e = 0; e < E_; e++) pr[t * E_ + e] /= sum;
        if (pr[t * E_ + b1] > pr[t * E_ + b0]) { b0 = 1; b1 = 0; }
        for (int e = 2; e < E_; e++) {
          if (pr[t * E_ + e] > pr[t * E_ + b0]) { b1 = b0; b0 = e; }
          else if (pr[t * E_ + e] > pr[t * E_ + b1]) b1 = e;
        }
        float s2 = pr[t * E_ + b0] + pr[t * E_ + b1];
        ex[t * K_] = b0; w[t * K_] = pr[t * E_ + b0] / s2;
        ex[t * K_ + 1] = b1; w[t * K_ + 1] = pr[t * E_ + b1] / s2;
        if (rnd() % 10 == 0) { ex[t * K_ + 1] = -1; w[t * K_ + 1] = 0; w[t * K_] = 1; }  /* empty slot */
        for (int j = 0; j < K_; j++) {
          int e = ex[t * K_ + j];
          if (e < 0) continue;
          x->routing++;
          x->exp_tok[b][l][e]++;
          x->exp_w[b][l][e] += w[t * K_ + j];
        }
        memcpy(x->probs[seq[t]][pos[t]][l], pr + t * E_, sizeof(float) * E_);
        memcpy(x->logits[seq[t]][pos[t]][l], lg + t * E_, sizeof(float) * E_);
      }
      for (int e = 0; e < E_; e++) if (x->exp_tok[b][l][e] || dropped[e]) x->load_rows++;
      x->n_probs += n;
      prb_route_batch rb = { b, l, n, K_, E_, seq, pos, ex, w, pr, lg, (b % 4 == 0) ? dropped : NULL };
      if (p->route) p->route(p->ctx, &rb);
      if (p->op) {
        p->op(p->ctx, b, l, PRB_OP_ATTENTION, -1, 100, 200, 0);
        p->op(p->ctx, b, l, PRB_OP_ROUTER, -1, 200, 250, 0);
        p->op(p->ctx, b, l, PRB_OP_EXPERT, ex[0], 250, 400, 1);
        x->ops += 3;
      }
    }
    if (p->op) { p->op(p->ctx, b, -1, PRB_OP_LM_HEAD, -1, 400, 500, 0); x->ops++; }
    if (p->tokens) {
      for (int s = 0; s < 2; s++) {
        int m = 0, ps[16], is[16];
        for (int t = 0; t < n; t++) if (seq[t] == s) {
          ps[m] = pos[t]; is[m] = ids[t];
          nll[m] = pos[t] == 0 ? NAN : 0.5f + (float)pos[t];
          if (pos[t] == 0) x->nll_null++;
          m++;
        }
        p->tokens(p->ctx, s, m, ps, is, b < n_batches / 2 ? PRB_PHASE_PREFILL : PRB_PHASE_DECODE, nll);
        x->tokens += m;
      }
    }
  }
  if (p->sequence) {
    p->sequence(p->ctx, 0, "code", "file.c", next_pos[0]);
    p->sequence(p->ctx, 1, NULL, "prompt", next_pos[1]);
  }
}

static prb_run_info run_info(int level, const char *model) {
  prb_run_info ri = { .model_path = model, .model_sha256 = "abc123", .family = "mixtral",
                      .policy = "topk", .device = "cpu", .dtype = "f32", .command_line = "moescope run",
                      .n_layers = L_, .n_experts = E_, .top_k = K_, .n_shared_experts = 0, .threads = 2,
                      .record_level = level };
  return ri;
}

/* Checks one run's rows against the generator's expectation x. */
static void check_run(sqlite3 *db, long long run, int level, int n_batches, const expect *x) {
  CHECK(qi(db, "SELECT count(*) FROM tokens WHERE run_id=%lld", run) == x->tokens);
  CHECK(qi(db, "SELECT count(*) FROM tokens WHERE run_id=%lld AND nll IS NULL", run) == x->nll_null);
  CHECK(qi(db, "SELECT count(*) FROM tokens WHERE run_id=%lld AND phase NOT IN ('prefill','decode')", run) == 0);
  CHECK(qi(db, "SELECT count(*) FROM tokens WHERE run_id=%lld AND phase='decode'", run) > 0);
  CHECK(qi(db, "SELECT count(*) FROM sequences WHERE run_id=%lld", run) == 2);
  char buf[256];
  qs(db, buf, sizeof buf, "SELECT label||'|'||source FROM sequences WHERE run_id=%lld AND seq_id=0", run);
  CHECK(strcmp(buf, "code|file.c") == 0);
  CHECK(qi(db, "SELECT label IS NULL FROM sequences WHERE run_id=%lld AND seq_id=1", run) == 1);
  CHECK(qi(db, "SELECT sum(n_tokens) FROM sequences WHERE run_id=%lld", run) == x->tokens);
  CHECK(qi(db, "SELECT count(*) FROM ops WHERE run_id=%lld", run) == x->ops);
  CHECK(qi(db, "SELECT count(*) FROM ops WHERE run_id=%lld AND device='cpu'", run) == x->ops);
  CHECK(qi(db, "SELECT count(*) FROM ops WHERE run_id=%lld AND op='attention'", run) == n_batches * L_);
  CHECK(qi(db, "SELECT count(*) FROM ops WHERE run_id=%lld AND op='lm_head' AND layer=-1", run) == n_batches);
  CHECK(qi(db, "SELECT count(*) FROM ops WHERE run_id=%lld AND op='expert' AND expert>=0", run) == n_batches * L_);
  CHECK(qi(db, "SELECT sum(end_ns-start_ns) FROM ops WHERE run_id=%lld AND op='router'", run) == 50LL * n_batches * L_);

  /* expert_load == the generator's per-(batch, layer, expert) aggregate, row for row */
  CHECK(qi(db, "SELECT count(*) FROM expert_load WHERE run_id=%lld", run) == x->load_rows);
  sqlite3_stmt *st;
  char *sql = sqlite3_mprintf("SELECT batch_id,layer,expert,tokens,weight_sum,dropped FROM expert_load WHERE run_id=%lld", run);
  REQUIRE(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK);
  sqlite3_free(sql);
  int bad = 0, rows = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    int b = sqlite3_column_int(st, 0), l = sqlite3_column_int(st, 1), e = sqlite3_column_int(st, 2);
    rows++;
    if (b < 0 || b >= n_batches || l < 0 || l >= L_ || e < 0 || e >= E_) { bad++; continue; }
    if (sqlite3_column_int(st, 3) != x->exp_tok[b][l][e]) bad++;
    if (fabs(sqlite3_column_double(st, 4) - x->exp_w[b][l][e]) > 1e-12) bad++;
    if (sqlite3_column_int(st, 5) != x->dropped[b][e]) bad++;
  }
  sqlite3_finalize(st);
  CHECKF(bad == 0 && rows == x->load_rows, "%d bad of %d expert_load rows", bad, rows);

  long long want_routing = level >= PRB_LEVEL_TOPK ? x->routing : 0;
  CHECK(qi(db, "SELECT count(*) FROM routing WHERE run_id=%lld", run) == want_routing);
  CHECK(qi(db, "SELECT count(*) FROM router_probs WHERE run_id=%lld", run) ==
        (level == PRB_LEVEL_FULL ? x->n_probs : 0));
  if (level >= PRB_LEVEL_TOPK) {
    CHECK(x->routing < (long long)x->tokens * L_ * K_);  /* some slots were empty */
    /* routing aggregated == expert_load aggregated, exactly, both directions */
    const char *r = "SELECT layer,expert,count(*) FROM routing WHERE run_id=%lld GROUP BY 1,2";
    const char *e = "SELECT layer,expert,sum(tokens) FROM expert_load WHERE run_id=%lld AND tokens>0 GROUP BY 1,2";
    char q1[1024], q2[1024];
    snprintf(q1, sizeof q1, "SELECT count(*) FROM (%s EXCEPT %s)", r, e);
    snprintf(q2, sizeof q2, "SELECT count(*) FROM (%s EXCEPT %s)", e, r);
    CHECK(qi(db, q1, run, run) == 0);
    CHECK(qi(db, q2, run, run) == 0);
    CHECK(qd(db, "SELECT max(abs(a.w-b.w)) FROM (SELECT layer,expert,sum(weight) w FROM routing WHERE run_id=%lld"
                 " GROUP BY 1,2) a JOIN (SELECT layer,expert,sum(weight_sum) w FROM expert_load WHERE run_id=%lld"
                 " GROUP BY 1,2) b USING(layer,expert)", run, run) < 1e-9);
    CHECK(qi(db, "SELECT count(*) FROM (SELECT 1 FROM routing WHERE run_id=%lld GROUP BY seq_id,pos,layer)", run) ==
          x->tokens * L_);
    CHECK(qd(db, "SELECT max(abs(s-1)) FROM (SELECT sum(weight) s FROM routing WHERE run_id=%lld"
                 " GROUP BY seq_id,pos,layer)", run) < 1e-6);
    CHECK(qi(db, "SELECT count(*) FROM routing WHERE run_id=%lld AND (slot<0 OR slot>=%d OR expert<0 OR expert>=%d)",
             run, K_, E_) == 0);
  }
  if (level == PRB_LEVEL_FULL) {
    CHECK(qi(db, "SELECT count(*) FROM router_probs WHERE run_id=%lld AND length(probs)=%d AND length(logits)=%d",
             run, 4 * E_, 4 * E_) == x->n_probs);
    sql = sqlite3_mprintf("SELECT seq_id,pos,layer,probs,logits FROM router_probs WHERE run_id=%lld", run);
    REQUIRE(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK);
    sqlite3_free(sql);
    bad = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
      int s = sqlite3_column_int(st, 0), p = sqlite3_column_int(st, 1), l = sqlite3_column_int(st, 2);
      if (s < 0 || s > 1 || p < 0 || p >= MAXPOS || l < 0 || l >= L_ || sqlite3_column_bytes(st, 3) != 4 * E_ ||
          sqlite3_column_bytes(st, 4) != 4 * E_) { bad++; continue; }
      if (memcmp(sqlite3_column_blob(st, 3), x->probs[s][p][l], 4 * E_)) bad++;
      if (memcmp(sqlite3_column_blob(st, 4), x->logits[s][p][l], 4 * E_)) bad++;
    }
    sqlite3_finalize(st);
    CHECKF(bad == 0, "%d router_probs rows differ", bad);
  }
}

/* Three runs (counts, topk, full) in one DB, checked after each flush while the sink is open. */
static void test_levels(const char *path) {
  char err[512];
  prb_sink *s = NULL;
  rm_db(path);
  REQUIRE(prb_sink_open(&s, path, 0, err, sizeof err) == 0);
  int64_t ids[3];
  const int nb = 20;
  for (int level = PRB_LEVEL_COUNTS; level <= PRB_LEVEL_FULL; level++) {
    char model[64];
    snprintf(model, sizeof model, "models/m-%s", prb_level_name(level));
    prb_run_info ri = run_info(level, model);
    REQUIRE(prb_sink_begin_run(s, &ri, &ids[level - 1], err, sizeof err) == 0);
    prb_probe p = prb_sink_probe(s, level);
    CHECK(p.level == level && p.route && p.op && p.sequence && p.tokens);
    drive(&p, nb, 1000 + (uint64_t)level, &X);
    CHECK(prb_sink_flush(s, err, sizeof err) == 0);
    sqlite3 *db = db_open(path);
    char buf[64];
    qs(db, buf, sizeof buf, "SELECT status FROM runs WHERE run_id=%lld", (long long)ids[level - 1]);
    CHECK(strcmp(buf, "running") == 0);
    check_run(db, ids[level - 1], level, nb, &X);
    sqlite3_close(db);
  }
  prb_sink_stats st;
  prb_sink_get_stats(s, &st);
  CHECK(st.rows_written > 0 && st.commits > 0 && st.bytes_queued > 0);
  CHECK(prb_sink_error(s) == NULL);
  CHECK(prb_sink_close(s, err, sizeof err) == 0);

  sqlite3 *db = db_open(path);
  CHECK(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
  CHECK(qi(db, "SELECT count(DISTINCT run_id) FROM runs") == 3);
  CHECK(qi(db, "PRAGMA user_version") == 1);
  char buf[256];
  qs(db, buf, sizeof buf, "PRAGMA journal_mode");
  CHECK(strcmp(buf, "wal") == 0);
  for (int level = PRB_LEVEL_COUNTS; level <= PRB_LEVEL_FULL; level++) {
    long long id = ids[level - 1];
    qs(db, buf, sizeof buf, "SELECT record_level||'|'||status||'|'||model_path||'|'||family||'|'||n_layers||'|'||"
       "n_experts||'|'||top_k||'|'||threads||'|'||device FROM runs WHERE run_id=%lld", id);
    char want[256];
    snprintf(want, sizeof want, "%s|ok|models/m-%s|mixtral|3|8|2|2|cpu", prb_level_name(level), prb_level_name(level));
    CHECKF(strcmp(buf, want) == 0, "run %lld: '%s' want '%s'", id, buf, want);
    CHECK(qi(db, "SELECT finished_at >= started_at AND length(started_at)=24 FROM runs WHERE run_id=%lld", id) == 1);
  }
  CHECK(qi(db, "SELECT count(*) FROM meta") == 4);
  qs(db, buf, sizeof buf, "SELECT value FROM meta WHERE key='schema_version'");
  CHECK(strcmp(buf, "1") == 0);
  qs(db, buf, sizeof buf, "SELECT value FROM meta WHERE key='moescope_version'");
  CHECK(strcmp(buf, MOESCOPE_VERSION) == 0);
  qs(db, buf, sizeof buf, "SELECT value FROM meta WHERE key='created_at'");
  CHECKF(strlen(buf) == 24 && buf[4] == '-' && buf[10] == 'T' && buf[19] == '.' && buf[23] == 'Z', "created_at '%s'", buf);
  qs(db, buf, sizeof buf, "SELECT value FROM meta WHERE key='host'");
  CHECK(buf[0] != 0);
  CHECK(qi(db, "SELECT count(*) FROM v_expert_load WHERE run_id=%lld", (long long)ids[2]) > 0);
  CHECK(qi(db, "SELECT sum(tokens) FROM v_expert_load WHERE run_id=%lld", (long long)ids[1]) ==
        qi(db, "SELECT count(*) FROM routing WHERE run_id=%lld", (long long)ids[1]));
  CHECK(qi(db, "SELECT count(*) FROM v_op_time_by_layer") > 0);
  sqlite3_close(db);
}

/* Vocab pieces are TEXT holding the exact bytes: invalid UTF-8 and NULs round-trip. */
static void test_vocab(const char *path) {
  char err[512];
  prb_sink *s = NULL;
  rm_db(path);
  REQUIRE(prb_sink_open(&s, path, 0, err, sizeof err) == 0);
  prb_probe p = prb_sink_probe(s, PRB_LEVEL_TOPK);
  int seq = 0, pos = 0, ex[2] = { 1, 2 };
  float w[2] = { .5f, .5f };
  prb_route_batch rb = { 0, 0, 1, 2, E_, &seq, &pos, ex, w, NULL, NULL, NULL };
  p.route(p.ctx, &rb);  /* before any run: dropped */
  CHECK(prb_sink_vocab(s, 0, NULL, NULL) == -1);
  prb_run_info ri = run_info(PRB_LEVEL_TOPK, "vocab-model");
  int64_t run = 0;
  REQUIRE(prb_sink_begin_run(s, &ri, &run, err, sizeof err) == 0);
  const char *pieces[] = { "hello", "\xff\xfe", "a\0b", "h\xc3\xa9llo", "", NULL, "\xc3(", " \xe2\x96\x81x" };
  size_t lens[] = { 5, 2, 3, 6, 0, 0, 2, 5 };
  int n = (int)(sizeof lens / sizeof lens[0]);
  CHECK(prb_sink_vocab(s, n, pieces, lens) == 0);
  /* a big vocab split over many records */
  enum { NBIG = 5000 };
  static char bigbuf[NBIG][8];
  static const char *bp[NBIG];
  for (int i = 0; i < NBIG; i++) { snprintf(bigbuf[i], 8, "t%d", i); bp[i] = bigbuf[i]; }
  prb_run_info ri2 = run_info(PRB_LEVEL_TOPK, "vocab-model-2");
  int64_t run2 = 0;
  CHECK(prb_sink_flush(s, err, sizeof err) == 0);
  REQUIRE(prb_sink_begin_run(s, &ri2, &run2, err, sizeof err) == 0);
  CHECK(prb_sink_vocab(s, NBIG, bp, NULL) == 0);  /* lens NULL: NUL-terminated */
  prb_run_info ri3 = run_info(PRB_LEVEL_OFF, "vocab-model-off");
  int64_t run3 = 0;
  REQUIRE(prb_sink_begin_run(s, &ri3, &run3, err, sizeof err) == 0);
  CHECK(prb_sink_vocab(s, n, pieces, lens) == 0);  /* level off: nothing recorded */
  prb_probe off = prb_sink_probe(s, PRB_LEVEL_OFF);
  CHECK(off.route == NULL && off.op == NULL && off.tokens == NULL && off.sequence == NULL);
  CHECK(prb_sink_close(s, err, sizeof err) == 0);

  sqlite3 *db = db_open(path);
  CHECK(qi(db, "SELECT count(*) FROM routing") == 0);
  CHECK(qi(db, "SELECT count(*) FROM vocab WHERE run_id=%lld", (long long)run) == n);
  CHECK(qi(db, "SELECT count(*) FROM vocab WHERE run_id=%lld AND typeof(piece)='text'", (long long)run) == n - 1);
  CHECK(qi(db, "SELECT piece IS NULL FROM vocab WHERE run_id=%lld AND token_id=5", (long long)run) == 1);
  sqlite3_stmt *st;
  char *sql = sqlite3_mprintf("SELECT token_id, piece FROM vocab WHERE run_id=%lld ORDER BY token_id", (long long)run);
  REQUIRE(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK);
  sqlite3_free(sql);
  int seen = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    int id = sqlite3_column_int(st, 0);
    if (id < 0 || id >= n || !pieces[id]) continue;
    const void *b = sqlite3_column_blob(st, 1);
    int nb = sqlite3_column_bytes(st, 1);
    CHECKF(nb == (int)lens[id] && (nb == 0 || memcmp(b, pieces[id], lens[id]) == 0), "piece %d", id);
    seen++;
  }
  sqlite3_finalize(st);
  CHECK(seen == n - 1);
  CHECK(qi(db, "SELECT CAST(piece AS BLOB)=X'FFFE' FROM vocab WHERE run_id=%lld AND token_id=1", (long long)run) == 1);
  CHECK(qi(db, "SELECT CAST(piece AS BLOB)=X'610062' FROM vocab WHERE run_id=%lld AND token_id=2", (long long)run) == 1);
  CHECK(qi(db, "SELECT count(*) FROM vocab WHERE run_id=%lld", (long long)run2) == NBIG);
  CHECK(qi(db, "SELECT count(*) FROM vocab WHERE run_id=%lld AND piece='t'||token_id", (long long)run2) == NBIG);
  CHECK(qi(db, "SELECT count(*) FROM vocab WHERE run_id=%lld", (long long)run3) == 0);
  char buf[32];
  qs(db, buf, sizeof buf, "SELECT record_level FROM runs WHERE run_id=%lld", (long long)run3);
  CHECK(strcmp(buf, "off") == 0);
  sqlite3_close(db);
}

/* A 4 KiB ring: everything is still written (producers wait), an oversized record grows it. */
static void test_tiny_ring(const char *path) {
  char err[512];
  prb_sink *s = NULL;
  rm_db(path);
  REQUIRE(prb_sink_open(&s, path, 4096, err, sizeof err) == 0);
  prb_run_info ri = run_info(PRB_LEVEL_FULL, "tiny");
  int64_t run = 0;
  REQUIRE(prb_sink_begin_run(s, &ri, &run, err, sizeof err) == 0);
  prb_probe p = prb_sink_probe(s, PRB_LEVEL_FULL);
  drive(&p, MAXB, 77, &X);
  CHECK(prb_sink_flush(s, err, sizeof err) == 0);
  sqlite3 *db = db_open(path);
  check_run(db, run, PRB_LEVEL_FULL, MAXB, &X);
  sqlite3_close(db);

  /* many small topk events */
  prb_run_info ri2 = run_info(PRB_LEVEL_TOPK, "tiny-2");
  int64_t run2 = 0;
  REQUIRE(prb_sink_begin_run(s, &ri2, &run2, err, sizeof err) == 0);
  prb_probe p2 = prb_sink_probe(s, PRB_LEVEL_TOPK);
  enum { NB = 3000, NT = 16 };
  int seq[NT], pos[NT], ex[NT * 2];
  float w[NT * 2];
  for (int b = 0; b < NB; b++) {
    for (int t = 0; t < NT; t++) {
      seq[t] = b; pos[t] = t;
      ex[2 * t] = (b + t) % E_; ex[2 * t + 1] = (b + t + 3) % E_;
      w[2 * t] = .75f; w[2 * t + 1] = .25f;
    }
    for (int l = 0; l < 2; l++) {
      prb_route_batch rb = { b, l, NT, 2, E_, seq, pos, ex, w, NULL, NULL, NULL };
      p2.route(p2.ctx, &rb);
    }
  }
  /* one token with E = 2048 at level full: 16 KiB of probs+logits, bigger than the ring */
  enum { EBIG = 2048 };
  static float prb[EBIG], lgt[EBIG];
  for (int e = 0; e < EBIG; e++) { prb[e] = (float)e / EBIG; lgt[e] = -(float)e; }
  int bex[2] = { 7, 2047 };
  float bw[2] = { .5f, .5f };
  int bseq = 99999, bpos = 0;
  prb_route_batch big = { NB, 0, 1, 2, EBIG, &bseq, &bpos, bex, bw, prb, lgt, NULL };
  p.route(p.ctx, &big);
  CHECK(prb_sink_flush(s, err, sizeof err) == 0);
  prb_sink_stats st;
  prb_sink_get_stats(s, &st);
  CHECKF(st.waits > 0, "waits=%llu", (unsigned long long)st.waits);
  CHECK(st.commits > 1);
  CHECK(prb_sink_close(s, err, sizeof err) == 0);

  db = db_open(path);
  CHECK(qi(db, "SELECT count(*) FROM routing WHERE run_id=%lld", (long long)run2) == (long long)NB * NT * 2 * 2 + 2);
  CHECK(qi(db, "SELECT count(*) FROM expert_load WHERE run_id=%lld AND batch_id<%d", (long long)run2, NB) ==
        (long long)NB * 2 * E_);  /* (b+t)%8 over 16 tokens hits every expert */
  CHECK(qi(db, "SELECT sum(tokens) FROM expert_load WHERE run_id=%lld", (long long)run2) == (long long)NB * NT * 2 * 2 + 2);
  CHECK(qd(db, "SELECT sum(weight) FROM routing WHERE run_id=%lld", (long long)run2) == (double)NB * NT * 2 + 1);
  sqlite3_stmt *q;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT probs, logits FROM router_probs WHERE seq_id=99999", -1, &q, NULL) == SQLITE_OK);
  CHECK(sqlite3_step(q) == SQLITE_ROW);
  CHECK(sqlite3_column_bytes(q, 0) == 4 * EBIG && sqlite3_column_bytes(q, 1) == 4 * EBIG);
  if (sqlite3_column_bytes(q, 0) == 4 * EBIG && sqlite3_column_bytes(q, 1) == 4 * EBIG) {
    CHECK(memcmp(sqlite3_column_blob(q, 0), prb, sizeof prb) == 0);
    CHECK(memcmp(sqlite3_column_blob(q, 1), lgt, sizeof lgt) == 0);
  }
  sqlite3_finalize(q);
  char buf[32];
  qs(db, buf, sizeof buf, "PRAGMA integrity_check");
  CHECK(strcmp(buf, "ok") == 0);
  sqlite3_close(db);
}

static int read_file(const char *p, unsigned char *buf, size_t cap) {
  FILE *f = fopen(p, "rb");
  if (!f) return -1;
  int n = (int)fread(buf, 1, cap, f);
  fclose(f);
  return n;
}

/* Unusable paths and foreign files: -1 and a message naming the path; nothing modified. */
static void test_refusals(void) {
  char err[512], path[4096];
  prb_sink *s = (prb_sink *)&s;
  tpath(path, sizeof path, "no/such/dir/x.db");
  CHECK(prb_sink_open(&s, path, 0, err, sizeof err) == -1);
  CHECK(s == NULL);
  CHECKF(strstr(err, path) != NULL, "err '%s'", err);
  CHECK(prb_sink_open(&s, tmpdir, 0, err, sizeof err) == -1);  /* a directory */
  CHECKF(strstr(err, tmpdir) != NULL && strstr(err, "directory"), "err '%s'", err);
  CHECK(prb_sink_open(&s, "", 0, err, sizeof err) == -1);

  /* not a SQLite file: refused, bytes unchanged, no -wal/-shm created */
  tpath(path, sizeof path, "notadb.db");
  rm_db(path);
  static unsigned char before[8192], after[8192];
  for (int i = 0; i < 6000; i++) before[i] = (unsigned char)("not a database, just text\n"[i % 26]);
  FILE *f = fopen(path, "wb");
  REQUIRE(f);
  fwrite(before, 1, 6000, f);
  fclose(f);
  CHECK(prb_sink_open(&s, path, 0, err, sizeof err) == -1);
  CHECKF(strstr(err, path) && strstr(err, "not a SQLite database"), "err '%s'", err);
  CHECK(read_file(path, after, sizeof after) == 6000 && memcmp(before, after, 6000) == 0);
  char side[4200];
  snprintf(side, sizeof side, "%s-wal", path);
  CHECK(access(side, F_OK) != 0);

  /* a newer schema version: refused */
  tpath(path, sizeof path, "future.db");
  rm_db(path);
  sqlite3 *db = NULL;
  REQUIRE(sqlite3_open(path, &db) == SQLITE_OK);
  sqlite3_exec(db, "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT); PRAGMA user_version=2;", NULL, NULL, NULL);
  sqlite3_close(db);
  CHECK(prb_sink_open(&s, path, 0, err, sizeof err) == -1);
  CHECKF(strstr(err, path) && strstr(err, "version 2"), "err '%s'", err);
  db = db_open(path);
  CHECK(qi(db, "PRAGMA user_version") == 2);
  CHECK(qi(db, "SELECT count(*) FROM sqlite_master") == 2);  /* table + its autoindex */
  sqlite3_close(db);

  /* someone else's SQLite DB (user_version 0 with tables): refused, untouched */
  tpath(path, sizeof path, "foreign.db");
  rm_db(path);
  REQUIRE(sqlite3_open(path, &db) == SQLITE_OK);
  sqlite3_exec(db, "CREATE TABLE foo(x); INSERT INTO foo VALUES(1);", NULL, NULL, NULL);
  sqlite3_close(db);
  CHECK(prb_sink_open(&s, path, 0, err, sizeof err) == -1);
  CHECKF(strstr(err, path) && strstr(err, "not a moescope trace DB"), "err '%s'", err);
  db = db_open(path);
  CHECK(qi(db, "SELECT count(*) FROM sqlite_master") == 1);
  CHECK(qi(db, "PRAGMA user_version") == 0);
  sqlite3_close(db);

  /* read-only file (meaningless as root, who may write anyway) */
  if (geteuid() != 0) {
    tpath(path, sizeof path, "readonly.db");
    rm_db(path);
    REQUIRE(prb_sink_open(&s, path, 0, err, sizeof err) == 0);
    CHECK(prb_sink_close(s, err, sizeof err) == 0);
    chmod(path, 0444);
    CHECK(prb_sink_open(&s, path, 0, err, sizeof err) == -1);
    CHECKF(strstr(err, path) != NULL, "err '%s'", err);
    chmod(path, 0644);
  }
}

/* A writer-side constraint error is latched: first message kept, later rows discarded. */
static void test_latch(const char *path) {
  char err[512];
  prb_sink *s = NULL;
  rm_db(path);
  REQUIRE(prb_sink_open(&s, path, 0, err, sizeof err) == 0);
  prb_run_info ri = run_info(PRB_LEVEL_TOPK, "latch");
  int64_t run = 0;
  REQUIRE(prb_sink_begin_run(s, &ri, &run, err, sizeof err) == 0);
  prb_probe p = prb_sink_probe(s, PRB_LEVEL_TOPK);
  int pos[2] = { 0, 1 }, ids[2] = { 10, 11 }, pos2[2] = { 1, 2 }, pos3[1] = { 0 };
  p.tokens(p.ctx, 0, 2, pos, ids, PRB_PHASE_PREFILL, NULL);
  CHECK(prb_sink_flush(s, err, sizeof err) == 0);
  CHECK(prb_sink_error(s) == NULL);
  p.tokens(p.ctx, 0, 2, pos2, ids, PRB_PHASE_DECODE, NULL);  /* (0, 1) again: PRIMARY KEY */
  err[0] = 0;
  CHECK(prb_sink_flush(s, err, sizeof err) == -1);
  const char *e = prb_sink_error(s);
  CHECK(e != NULL);
  CHECKF(strstr(err, path) && strstr(err, "tokens") && !strchr(err, '\n'), "err '%s'", err);
  char first[512];
  snprintf(first, sizeof first, "%s", err);
  p.tokens(p.ctx, 5, 1, pos3, ids, PRB_PHASE_DECODE, NULL);  /* discarded */
  p.op(p.ctx, 0, 0, PRB_OP_ROUTER, -1, 1, 2, 0);              /* discarded */
  CHECK(prb_sink_flush(s, err, sizeof err) == -1);
  CHECK(strcmp(err, first) == 0);
  CHECK(prb_sink_begin_run(s, &ri, NULL, err, sizeof err) == -1);
  CHECK(prb_sink_close(s, err, sizeof err) == -1);
  CHECK(strcmp(err, first) == 0);
  sqlite3 *db = db_open(path);
  CHECK(qi(db, "SELECT count(*) FROM tokens") == 2);
  CHECK(qi(db, "SELECT count(*) FROM ops") == 0);
  char buf[32];
  qs(db, buf, sizeof buf, "SELECT status FROM runs WHERE run_id=%lld", (long long)run);
  CHECK(strcmp(buf, "error") == 0);
  sqlite3_close(db);
}

/* In a child with a file-size limit: the disk-full path latches an error, nothing aborts. */
static void test_file_limit(const char *path) {
  rm_db(path);
  fflush(NULL);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    char err[512];
    prb_sink *s = NULL;
    signal(SIGXFSZ, SIG_IGN);
    if (prb_sink_open(&s, path, 1 << 20, err, sizeof err) != 0) _exit(10);
    prb_run_info ri = run_info(PRB_LEVEL_FULL, "fsize");
    if (prb_sink_begin_run(s, &ri, NULL, err, sizeof err) != 0) _exit(11);
    struct rlimit rl = { 256 << 10, 256 << 10 };
    setrlimit(RLIMIT_FSIZE, &rl);
    prb_probe p = prb_sink_probe(s, PRB_LEVEL_FULL);
    enum { EE = 64, NT = 32 };
    static float pr[NT * EE];
    int seq[NT], pos[NT], ex[NT * 2];
    float w[NT * 2];
    for (int i = 0; i < NT * EE; i++) pr[i] = (float)i;
    for (int b = 0; b < 200; b++) {
      for (int t = 0; t < NT; t++) { seq[t] = 0; pos[t] = b * NT + t; ex[2 * t] = t % EE; ex[2 * t + 1] = (t + 1) % EE; w[2 * t] = w[2 * t + 1] = .5f; }
      prb_route_batch rb = { b, 0, NT, 2, EE, seq, pos, ex, w, pr, pr, NULL };
      p.route(p.ctx, &rb);
    }
    int fr = prb_sink_flush(s, err, sizeof err);
    if (fr != -1 || !strstr(err, path) || !prb_sink_error(s)) _exit(12);
    char err2[512];
    if (prb_sink_close(s, err2, sizeof err2) != -1 || strcmp(err, err2) != 0) _exit(13);
    printf("  file-size limit error: %s\n", err);
    fflush(stdout);
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
  sqlite3 *db = db_open(path);
  char buf[32];
  qs(db, buf, sizeof buf, "PRAGMA integrity_check");
  CHECK(strcmp(buf, "ok") == 0);
  sqlite3_close(db);
}

/* A child writes and flushes some batches, queues more, then SIGKILLs itself mid-stream. */
static void test_killed(const char *path) {
  enum { FLUSHED = 5, EXTRA = 200, NT = 8 };
  rm_db(path);
  fflush(NULL);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    char err[512];
    prb_sink *s = NULL;
    if (prb_sink_open(&s, path, 0, err, sizeof err) != 0) _exit(10);
    prb_run_info ri = run_info(PRB_LEVEL_TOPK, "killed");
    if (prb_sink_begin_run(s, &ri, NULL, err, sizeof err) != 0) _exit(11);
    prb_probe p = prb_sink_probe(s, PRB_LEVEL_TOPK);
    int seq[NT], pos[NT], ex[NT * 2];
    float w[NT * 2];
    for (int b = 0; b < FLUSHED + EXTRA; b++) {
      for (int t = 0; t < NT; t++) { seq[t] = b; pos[t] = t; ex[2 * t] = t; ex[2 * t + 1] = 7 - t; w[2 * t] = w[2 * t + 1] = .5f; }
      for (int l = 0; l < L_; l++) {
        prb_route_batch rb = { b, l, NT, 2, E_, seq, pos, ex, w, NULL, NULL, NULL };
        p.route(p.ctx, &rb);
      }
      if (b < FLUSHED && prb_sink_flush(s, err, sizeof err) != 0) _exit(12);
    }
    kill(getpid(), SIGKILL);
    _exit(13);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  CHECKF(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child status %d", status);
  sqlite3 *db = db_open(path);
  char buf[64];
  qs(db, buf, sizeof buf, "PRAGMA integrity_check");
  CHECK(strcmp(buf, "ok") == 0);
  long long n = qi(db, "SELECT count(*) FROM routing");
  CHECKF(n >= (long long)FLUSHED * NT * L_ * 2 && n <= (long long)(FLUSHED + EXTRA) * NT * L_ * 2, "routing %lld", n);
  CHECK(qi(db, "SELECT count(*) FROM routing WHERE seq_id<%d", FLUSHED) == (long long)FLUSHED * NT * L_ * 2);
  CHECK(qi(db, "SELECT count(*) FROM expert_load WHERE batch_id<%d", FLUSHED) == (long long)FLUSHED * L_ * E_);
  /* whole batches only: each committed chunk holds whole records */
  CHECK(qi(db, "SELECT count(*) FROM routing") % (NT * 2) == 0);
  qs(db, buf, sizeof buf, "SELECT status FROM runs");
  CHECK(strcmp(buf, "running") == 0);
  sqlite3_close(db);

  /* the crashed DB opens again and takes a new run */
  char err[512];
  prb_sink *s = NULL;
  REQUIRE(prb_sink_open(&s, path, 0, err, sizeof err) == 0);
  prb_run_info ri = run_info(PRB_LEVEL_COUNTS, "after-crash");
  int64_t run = 0;
  CHECK(prb_sink_begin_run(s, &ri, &run, err, sizeof err) == 0);
  CHECK(run == 2);
  CHECK(prb_sink_close(s, err, sizeof err) == 0);
}

typedef struct { prb_probe p; int id; } thr_arg;
static void *op_thread(void *a) {
  thr_arg *t = a;
  for (int i = 0; i < 2000; i++) t->p.op(t->p.ctx, i, i % L_, PRB_OP_EXPERT, i % E_, (uint64_t)i, (uint64_t)i + 10, t->id);
  return NULL;
}

/* Reopening an existing DB appends a run; ops from several threads all land. */
static void test_reopen(const char *path) {
  char err[512];
  prb_sink *s = NULL;
  sqlite3 *db = db_open(path);
  long long runs_before = qi(db, "SELECT count(*) FROM runs"), max_before = qi(db, "SELECT max(run_id) FROM runs");
  long long routing_before = qi(db, "SELECT count(*) FROM routing");
  char created[64];
  qs(db, created, sizeof created, "SELECT value FROM meta WHERE key='created_at'");
  sqlite3_close(db);
  REQUIRE(prb_sink_open(&s, path, 1 << 16, err, sizeof err) == 0);
  prb_run_info ri = run_info(PRB_LEVEL_COUNTS, "reopen");
  int64_t run = 0;
  REQUIRE(prb_sink_begin_run(s, &ri, &run, err, sizeof err) == 0);
  CHECK(run == max_before + 1);
  prb_probe p = prb_sink_probe(s, PRB_LEVEL_COUNTS);
  pthread_t th[4];
  thr_arg ta[4];
  for (int i = 0; i < 4; i++) { ta[i].p = p; ta[i].id = i; pthread_create(&th[i], NULL, op_thread, &ta[i]); }
  for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
  CHECK(prb_sink_close(s, err, sizeof err) == 0);
  db = db_open(path);
  CHECK(qi(db, "SELECT count(*) FROM runs") == runs_before + 1);
  CHECK(qi(db, "SELECT count(*) FROM routing") == routing_before);
  CHECK(qi(db, "SELECT count(*) FROM ops WHERE run_id=%lld", (long long)run) == 8000);
  CHECK(qi(db, "SELECT count(DISTINCT thread) FROM ops WHERE run_id=%lld", (long long)run) == 4);
  CHECK(qi(db, "SELECT count(*) FROM meta") == 4);
  char buf[64];
  qs(db, buf, sizeof buf, "SELECT value FROM meta WHERE key='created_at'");
  CHECK(strcmp(buf, created) == 0);
  sqlite3_close(db);
}

int main(void) {
  const char *t = getenv("MOESCOPE_TMP");
  snprintf(tmpdir, sizeof tmpdir, "%s/sink", t && *t ? t : "/tmp");
  mkdir(tmpdir, 0755);
  char p[4096];
  test_levels(tpath(p, sizeof p, "levels.db"));
  test_reopen(tpath(p, sizeof p, "levels.db"));
  test_vocab(tpath(p, sizeof p, "vocab.db"));
  test_tiny_ring(tpath(p, sizeof p, "tiny.db"));
  test_refusals();
  test_latch(tpath(p, sizeof p, "latch.db"));
  test_file_limit(tpath(p, sizeof p, "fsize.db"));
  test_killed(tpath(p, sizeof p, "killed.db"));
  return tst_done();
}
