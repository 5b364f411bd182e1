/* prb_sink.c — the SQLite trace writer (contract in prb_sink.h, schema in prb_schema.c).
 *
 * Engine-thread side: the probe callbacks serialise events into records of the ring
 * (prb_ring.c) and return; big batches are split into records of at most rec_max bytes so
 * a small ring still works (it only means more waits). expert_load is aggregated here, on
 * the engine thread (one pass over n_tokens*k slots), and only experts that received
 * tokens or dropped some get a row (a collapsed layer with E=256 would otherwise write
 * 256 rows per decode step); consumers get E from runs.n_experts.
 * Writer-thread side: drains whatever the ring holds, inserts it with prepared statements
 * inside one transaction (BEGIN ... COMMIT per drained chunk) and gives the space back.
 * The first writer error is latched (message kept, later rows discarded); nothing aborts.
 *
 * Column conventions: ops.layer / ops.expert keep the engine's -1 for "not
 * layer/expert-specific" (a NULL would read as 0 through sqlite3_column_int). router_probs
 * blobs hold E float32 in host byte order (little-endian on every supported target); a
 * missing array (probs or logits NULL) is SQL NULL. vocab.piece is TEXT holding the
 * token's exact bytes: SQLite does not validate UTF-8, so byte-level pieces (invalid UTF-8,
 * even NUL bytes) round-trip bit-exact through sqlite3_column_blob()/CAST(piece AS BLOB);
 * only SQL text functions (length(), printing) may see them differently.
 * sequences rows are upserted (a sequence may be reported when it starts and again with its
 * final n_tokens); a repeated tokens (seq_id, pos) is a constraint error and gets latched.
 * Events arriving before prb_sink_begin_run() have no run to belong to and are dropped.
 * Each routing record is also stored once as a routing_packed row (its arrays as blobs,
 * same transaction as its routing rows): analysis loads 10^7 routing rows from those few
 * thousand blobs instead of stepping SQLite once per row (analysis/ana_trace.c).
 */
#include "probes/prb_sink.h"
#include "probes/prb_ring.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef MOESCOPE_VERSION
#define MOESCOPE_VERSION "unknown"
#endif

enum { REC_ROUTE = 1, REC_LOAD, REC_OP, REC_SEQ, REC_TOK, REC_VOCAB, REC_BIAS, REC_LOGITS };

/* Record payload headers (arrays follow; all 4- or 8-byte fields, 8-aligned in the ring). */
typedef struct { int64_t batch_id; int32_t layer, n, k, e, has_probs, has_logits; } rec_route;
typedef struct { int64_t batch_id; int32_t layer, n; } rec_load;
typedef struct { int32_t expert, tokens, dropped, pad; double wsum; } rec_load_ent;
typedef struct { int64_t batch_id; uint64_t start_ns, end_ns; int32_t layer, op, expert, thread; } rec_op;
typedef struct { int32_t seq_id, n_tokens, label_len, source_len; } rec_seq;  /* len -1 = NULL */
typedef struct { int32_t seq_id, n, phase, has_nll; } rec_tok;
typedef struct { int32_t first_id, n; } rec_vocab;  /* then uint32 lens[n] (UINT32_MAX = NULL), bytes */
typedef struct { int64_t batch_id; int32_t layer, n; } rec_bias;  /* then float32 values[n] (router_bias) */
typedef struct { int32_t seq_id, pos, n, pad; } rec_logits;  /* then float32 logits[n] (logits_sample) */

enum { ST_ROUTING, ST_PROBS, ST_LOAD, ST_OP, ST_SEQ, ST_TOK, ST_VOCAB, ST_PACKED, ST_BIAS, ST_LOGITS, ST_COUNT };
static const char *const st_sql[ST_COUNT] = {
  "INSERT INTO routing(run_id,seq_id,pos,layer,slot,expert,weight) VALUES(?,?,?,?,?,?,?)",
  "INSERT INTO router_probs(run_id,seq_id,pos,layer,probs,logits) VALUES(?,?,?,?,?,?)",
  "INSERT INTO expert_load(run_id,batch_id,layer,expert,tokens,weight_sum,dropped) VALUES(?,?,?,?,?,?,?)",
  "INSERT INTO ops(run_id,batch_id,layer,op,expert,device,start_ns,end_ns,thread) VALUES(?1,?2,?3,?4,?5,"
  " (SELECT COALESCE(device,'cpu') FROM runs WHERE run_id=?1),?6,?7,?8)",
  "INSERT OR REPLACE INTO sequences(run_id,seq_id,label,source,n_tokens) VALUES(?,?,?,?,?)",
  "INSERT INTO tokens(run_id,seq_id,pos,token_id,phase,nll) VALUES(?,?,?,?,?,?)",
  "INSERT OR REPLACE INTO vocab(run_id,token_id,piece) VALUES(?,?,?)",
  "INSERT INTO routing_packed(run_id,batch_id,layer,n,k,e,n_rows,seq,pos,expert,weight) VALUES(?,?,?,?,?,?,?,?,?,?,?)",
  "INSERT INTO router_bias(run_id,batch_id,layer,expert,bias) VALUES(?,?,?,?,?)",
  "INSERT INTO logits_sample(run_id,seq_id,pos,logits) VALUES(?,?,?,?)",
};
static const char *const st_table[ST_COUNT] = {
  "routing", "router_probs", "expert_load", "ops", "sequences", "tokens", "vocab", "routing_packed", "router_bias", "logits_sample" };

typedef struct lvl_ctx { struct prb_sink *s; int level; } lvl_ctx;

struct prb_sink {
  char *path;
  sqlite3 *db;
  sqlite3_stmt *st[ST_COUNT];
  pthread_mutex_t db_mu;        /* the connection: writer chunk vs begin_run/close */
  pthread_t writer;
  int writer_started;
  prb_ring ring;
  size_t rec_max;               /* split events into records of at most this many bytes */
  _Atomic int64_t run_id;       /* 0: no run yet */
  int run_level;                /* record_level of the current run (vocab gating) */
  lvl_ctx lv[4];
  pthread_mutex_t agg_mu;       /* expert_load scratch */
  int agg_cap;
  int32_t *agg_tok;
  double *agg_w;
  _Atomic int has_err;
  char err[512];
  _Atomic uint64_t rows_written, commits;
};

static void set_err(char *err, size_t n, const char *fmt, ...) {
  if (!err || !n) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, n, fmt, ap);
  va_end(ap);
}

/* Latches the first writer-side error (one line). */
static void latch(prb_sink *s, const char *fmt, ...) {
  if (atomic_load(&s->has_err)) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->err, sizeof s->err, fmt, ap);
  va_end(ap);
  atomic_store(&s->has_err, 1);
}

/* SQLite's message plus the OS error behind it when there is one ("File too large"). */
static const char *db_errmsg(prb_sink *s, char *buf, size_t n) {
  int se = sqlite3_system_errno(s->db);
  if (se) snprintf(buf, n, "%s (%s)", sqlite3_errmsg(s->db), strerror(se));
  else snprintf(buf, n, "%s", sqlite3_errmsg(s->db));
  return buf;
}

static void iso_now(char *buf, size_t n) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  char base[32];
  strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf, n, "%s.%03ldZ", base, ts.tv_nsec / 1000000L);
}

/* ---- writer thread ------------------------------------------------------------------ */

/* Steps a bound statement; on failure latches "<path>: writing <table> failed: ...". */
static int step(prb_sink *s, int which) {
  sqlite3_stmt *st = s->st[which];
  int rc = sqlite3_step(st);
  char m[256];
  if (rc != SQLITE_DONE)
    latch(s, "trace DB '%s': writing %s failed: %s", s->path, st_table[which], db_errmsg(s, m, sizeof m));
  sqlite3_reset(st);
  return rc == SQLITE_DONE ? 0 : -1;
}

static int32_t rd_i32(const unsigned char *p, size_t i) { int32_t v; memcpy(&v, p + 4 * i, 4); return v; }
static float rd_f32(const unsigned char *p, size_t i) { float v; memcpy(&v, p + 4 * i, 4); return v; }

/* Inserts the rows of one record; returns the number of rows or -1 (error latched). */
static long write_record(prb_sink *s, const prb_rec_hdr *h) {
  const unsigned char *p = (const unsigned char *)(h + 1);
  int64_t run = atomic_load(&s->run_id);
  long rows = 0;
  switch (h->type) {
  case REC_ROUTE: {
    rec_route r;
    memcpy(&r, p, sizeof r);
    const unsigned char *seq = p + sizeof r, *pos = seq + 4 * (size_t)r.n;
    const unsigned char *ex = pos + 4 * (size_t)r.n, *w = ex + 4 * (size_t)r.n * r.k;
    const unsigned char *pr = w + 4 * (size_t)r.n * r.k;
    const unsigned char *lg = pr + (r.has_probs ? 4 * (size_t)r.n * r.e : 0);
    sqlite3_stmt *st = s->st[ST_ROUTING];
    for (int t = 0; t < r.n; t++) {
      for (int j = 0; j < r.k; j++) {
        int e = rd_i32(ex, (size_t)t * r.k + j);
        if (e < 0 || e >= r.e) continue;
        sqlite3_bind_int64(st, 1, run);
        sqlite3_bind_int(st, 2, rd_i32(seq, t));
        sqlite3_bind_int(st, 3, rd_i32(pos, t));
        sqlite3_bind_int(st, 4, r.layer);
        sqlite3_bind_int(st, 5, j);
        sqlite3_bind_int(st, 6, e);
        sqlite3_bind_double(st, 7, rd_f32(w, (size_t)t * r.k + j));
        if (step(s, ST_ROUTING)) return -1;
        rows++;
      }
      if (r.has_probs || r.has_logits) {
        sqlite3_stmt *sp = s->st[ST_PROBS];
        int nb = 4 * r.e;
        sqlite3_bind_int64(sp, 1, run);
        sqlite3_bind_int(sp, 2, rd_i32(seq, t));
        sqlite3_bind_int(sp, 3, rd_i32(pos, t));
        sqlite3_bind_int(sp, 4, r.layer);
        if (r.has_probs) sqlite3_bind_blob(sp, 5, pr + (size_t)t * nb, nb, SQLITE_STATIC);
        else sqlite3_bind_null(sp, 5);
        if (r.has_logits) sqlite3_bind_blob(sp, 6, lg + (size_t)t * nb, nb, SQLITE_STATIC);
        else sqlite3_bind_null(sp, 6);
        if (step(s, ST_PROBS)) return -1;
        rows++;
      }
    }
    if (r.n > 0) {   /* the same routing as one packed row (analysis reads it in one go) */
      long n_rows = 0;
      for (size_t i = 0; i < (size_t)r.n * r.k; i++) { int e = rd_i32(ex, i); n_rows += e >= 0 && e < r.e; }
      sqlite3_stmt *sp = s->st[ST_PACKED];
      sqlite3_bind_int64(sp, 1, run);
      sqlite3_bind_int64(sp, 2, r.batch_id);
      sqlite3_bind_int(sp, 3, r.layer);
      sqlite3_bind_int(sp, 4, r.n);
      sqlite3_bind_int(sp, 5, r.k);
      sqlite3_bind_int(sp, 6, r.e);
      sqlite3_bind_int64(sp, 7, n_rows);
      sqlite3_bind_blob(sp, 8, seq, 4 * r.n, SQLITE_STATIC);
      sqlite3_bind_blob(sp, 9, pos, 4 * r.n, SQLITE_STATIC);
      sqlite3_bind_blob(sp, 10, ex, 4 * r.n * r.k, SQLITE_STATIC);
      sqlite3_bind_blob(sp, 11, w, 4 * r.n * r.k, SQLITE_STATIC);
      if (step(s, ST_PACKED)) return -1;
    }
    break;
  }
  case REC_LOAD: {
    rec_load r;
    memcpy(&r, p, sizeof r);
    sqlite3_stmt *st = s->st[ST_LOAD];
    for (int i = 0; i < r.n; i++) {
      rec_load_ent e;
      memcpy(&e, p + sizeof r + (size_t)i * sizeof e, sizeof e);
      sqlite3_bind_int64(st, 1, run);
      sqlite3_bind_int64(st, 2, r.batch_id);
      sqlite3_bind_int(st, 3, r.layer);
      sqlite3_bind_int(st, 4, e.expert);
      sqlite3_bind_int(st, 5, e.tokens);
      sqlite3_bind_double(st, 6, e.wsum);
      sqlite3_bind_int(st, 7, e.dropped);
      if (step(s, ST_LOAD)) return -1;
      rows++;
    }
    break;
  }
  case REC_OP: {
    rec_op r;
    memcpy(&r, p, sizeof r);
    sqlite3_stmt *st = s->st[ST_OP];
    sqlite3_bind_int64(st, 1, run);
    sqlite3_bind_int64(st, 2, r.batch_id);
    sqlite3_bind_int(st, 3, r.layer);
    sqlite3_bind_text(st, 4, prb_op_name(r.op), -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 5, r.expert);
    sqlite3_bind_int64(st, 6, (int64_t)r.start_ns);
    sqlite3_bind_int64(st, 7, (int64_t)r.end_ns);
    sqlite3_bind_int(st, 8, r.thread);
    if (step(s, ST_OP)) return -1;
    rows = 1;
    break;
  }
  case REC_SEQ: {
    rec_seq r;
    memcpy(&r, p, sizeof r);
    const char *label = (const char *)p + sizeof r;
    const char *source = label + (r.label_len > 0 ? r.label_len : 0);
    sqlite3_stmt *st = s->st[ST_SEQ];
    sqlite3_bind_int64(st, 1, run);
    sqlite3_bind_int(st, 2, r.seq_id);
    if (r.label_len < 0) sqlite3_bind_null(st, 3);
    else sqlite3_bind_text(st, 3, label, r.label_len, SQLITE_STATIC);
    if (r.source_len < 0) sqlite3_bind_null(st, 4);
    else sqlite3_bind_text(st, 4, source, r.source_len, SQLITE_STATIC);
    sqlite3_bind_int(st, 5, r.n_tokens);
    if (step(s, ST_SEQ)) return -1;
    rows = 1;
    break;
  }
  case REC_TOK: {
    rec_tok r;
    memcpy(&r, p, sizeof r);
    const unsigned char *pos = p + sizeof r, *ids = pos + 4 * (size_t)r.n, *nll = ids + 4 * (size_t)r.n;
    sqlite3_stmt *st = s->st[ST_TOK];
    for (int i = 0; i < r.n; i++) {
      sqlite3_bind_int64(st, 1, run);
      sqlite3_bind_int(st, 2, r.seq_id);
      sqlite3_bind_int(st, 3, rd_i32(pos, i));
      sqlite3_bind_int(st, 4, rd_i32(ids, i));
      sqlite3_bind_text(st, 5, prb_phase_name(r.phase), -1, SQLITE_STATIC);
      float v = r.has_nll ? rd_f32(nll, i) : NAN;
      if (isnan(v)) sqlite3_bind_null(st, 6);
      else sqlite3_bind_double(st, 6, v);
      if (step(s, ST_TOK)) return -1;
      rows++;
    }
    break;
  }
  case REC_VOCAB: {
    rec_vocab r;
    memcpy(&r, p, sizeof r);
    const unsigned char *lens = p + sizeof r;
    const char *bytes = (const char *)lens + 4 * (size_t)r.n;
    sqlite3_stmt *st = s->st[ST_VOCAB];
    for (int i = 0; i < r.n; i++) {
      uint32_t len;
      memcpy(&len, lens + 4 * (size_t)i, 4);
      sqlite3_bind_int64(st, 1, run);
      sqlite3_bind_int(st, 2, r.first_id + i);
      if (len == UINT32_MAX) sqlite3_bind_null(st, 3);
      else { sqlite3_bind_text(st, 3, bytes, (int)len, SQLITE_STATIC); bytes += len; }
      if (step(s, ST_VOCAB)) return -1;
      rows++;
    }
    break;
  }
  case REC_BIAS: {   /* a router policy's per-expert state (bias policy) at one batch and layer */
    rec_bias r;
    memcpy(&r, p, sizeof r);
    sqlite3_stmt *st = s->st[ST_BIAS];
    for (int i = 0; i < r.n; i++) {
      sqlite3_bind_int64(st, 1, run);
      sqlite3_bind_int64(st, 2, r.batch_id);
      sqlite3_bind_int(st, 3, r.layer);
      sqlite3_bind_int(st, 4, i);
      sqlite3_bind_double(st, 5, rd_f32(p + sizeof r, (size_t)i));
      if (step(s, ST_BIAS)) return -1;
      rows++;
    }
    break;
  }
  case REC_LOGITS: {   /* one sampled position's next-token logits */
    rec_logits r;
    memcpy(&r, p, sizeof r);
    sqlite3_stmt *st = s->st[ST_LOGITS];
    sqlite3_bind_int64(st, 1, run);
    sqlite3_bind_int(st, 2, r.seq_id);
    sqlite3_bind_int(st, 3, r.pos);
    sqlite3_bind_blob(st, 4, p + sizeof r, 4 * r.n, SQLITE_TRANSIENT);
    if (step(s, ST_LOGITS)) return -1;
    rows++;
    break;
  }
  default: break;
  }
  return rows;
}

static int exec_sql(sqlite3 *db, const char *sql) { return sqlite3_exec(db, sql, NULL, NULL, NULL); }

/* Writes one drained chunk in one transaction. With an error already latched the chunk
 * is discarded. On a failing row, the rows before it are still committed if SQLite kept
 * the transaction open (constraint errors), else everything of the chunk is rolled back. */
static void write_chunk(prb_sink *s, size_t pos, size_t len, size_t *end) {
  long rows = 0;
  int ok = !atomic_load(&s->has_err);
  pthread_mutex_lock(&s->db_mu);
  if (ok && exec_sql(s->db, "BEGIN IMMEDIATE") != SQLITE_OK) {  /* waits on busy_timeout */
    char m[256];
    latch(s, "trace DB '%s': BEGIN failed: %s", s->path, db_errmsg(s, m, sizeof m));
    ok = 0;
  }
  size_t left = len;
  while (left > 0) {
    const prb_rec_hdr *h = prb_ring_next(&s->ring, &pos, &left);
    if (!ok || h->type == PRB_REC_PAD) continue;
    long n = write_record(s, h);
    if (n < 0) ok = 0;
    else rows += n;
  }
  if (!sqlite3_get_autocommit(s->db)) {
    if (exec_sql(s->db, "COMMIT") == SQLITE_OK) {
      atomic_fetch_add(&s->rows_written, (uint64_t)rows);
      atomic_fetch_add(&s->commits, 1);
    } else {
      char m[256];
      latch(s, "trace DB '%s': COMMIT failed: %s", s->path, db_errmsg(s, m, sizeof m));
      exec_sql(s->db, "ROLLBACK");
    }
  }
  pthread_mutex_unlock(&s->db_mu);
  *end = pos;
}

static void *writer_main(void *arg) {
  prb_sink *s = arg;
  size_t pos, len, end;
  while (prb_ring_take(&s->ring, &pos, &len) == 0) {
    write_chunk(s, pos, len, &end);
    prb_ring_release(&s->ring, end, len);
  }
  return NULL;
}

/* ---- engine-thread side: callbacks ----------------------------------------------------- */

static void emit_load(prb_sink *s, const prb_route_batch *rb) {
  int E = rb->n_experts;
  pthread_mutex_lock(&s->agg_mu);
  if (E > s->agg_cap) {
    int32_t *t = realloc(s->agg_tok, (size_t)E * sizeof *t);
    if (t) s->agg_tok = t;
    double *w = realloc(s->agg_w, (size_t)E * sizeof *w);
    if (w) s->agg_w = w;
    if (!t || !w) { pthread_mutex_unlock(&s->agg_mu); return; }
    s->agg_cap = E;
  }
  memset(s->agg_tok, 0, (size_t)E * sizeof *s->agg_tok);
  memset(s->agg_w, 0, (size_t)E * sizeof *s->agg_w);
  size_t nslots = (size_t)rb->n_tokens * rb->k;
  for (size_t i = 0; i < nslots; i++) {
    int e = rb->experts[i];
    if (e < 0 || e >= E) continue;
    s->agg_tok[e]++;
    s->agg_w[e] += rb->weights ? rb->weights[i] : 0.0;
  }
  size_t per_rec = (s->rec_max - sizeof(rec_load)) / sizeof(rec_load_ent);
  if (per_rec < 1) per_rec = 1;
  int e = 0;
  while (e < E) {
    /* count the non-empty experts of the next record */
    int n = 0, stop = e;
    while (stop < E && (size_t)n < per_rec) {
      if (s->agg_tok[stop] || (rb->dropped && rb->dropped[stop])) n++;
      stop++;
    }
    if (n > 0) {
      unsigned char *p = prb_ring_reserve(&s->ring, REC_LOAD, sizeof(rec_load) + (size_t)n * sizeof(rec_load_ent));
      if (!p) break;
      rec_load r = { rb->batch_id, rb->layer, n };
      memcpy(p, &r, sizeof r);
      p += sizeof r;
      for (int x = e; x < stop; x++) {
        int dr = rb->dropped ? rb->dropped[x] : 0;
        if (!s->agg_tok[x] && !dr) continue;
        rec_load_ent ent = { x, s->agg_tok[x], dr, 0, s->agg_w[x] };
        memcpy(p, &ent, sizeof ent);
        p += sizeof ent;
      }
      prb_ring_commit(&s->ring);
    }
    e = stop;
  }
  pthread_mutex_unlock(&s->agg_mu);
}

static void cb_route(void *ctx, const prb_route_batch *rb) {
  lvl_ctx *c = ctx;
  prb_sink *s = c->s;
  if (!rb || atomic_load(&s->run_id) == 0 || rb->n_tokens <= 0 || rb->k <= 0 || rb->n_experts <= 0 ||
      !rb->experts)
    return;
  emit_load(s, rb);
  if (c->level < PRB_LEVEL_TOPK || !rb->seq_ids || !rb->pos || !rb->weights) return;
  int full = c->level >= PRB_LEVEL_FULL;
  int hp = full && rb->probs, hl = full && rb->logits;
  size_t k = (size_t)rb->k, E = (size_t)rb->n_experts;
  size_t per_tok = 8 + 8 * k + 4 * E * (size_t)(hp + hl);
  size_t per_rec = s->rec_max > sizeof(rec_route) + per_tok ? (s->rec_max - sizeof(rec_route)) / per_tok : 1;
  for (int t0 = 0; t0 < rb->n_tokens; t0 += (int)per_rec) {
    size_t n = (size_t)rb->n_tokens - (size_t)t0;
    if (n > per_rec) n = per_rec;
    unsigned char *p = prb_ring_reserve(&s->ring, REC_ROUTE, sizeof(rec_route) + n * per_tok);
    if (!p) return;
    rec_route r = { rb->batch_id, rb->layer, (int32_t)n, (int32_t)k, (int32_t)E, hp, hl };
    memcpy(p, &r, sizeof r);
    p += sizeof r;
    memcpy(p, rb->seq_ids + t0, 4 * n); p += 4 * n;
    memcpy(p, rb->pos + t0, 4 * n); p += 4 * n;
    memcpy(p, rb->experts + t0 * k, 4 * n * k); p += 4 * n * k;
    memcpy(p, rb->weights + t0 * k, 4 * n * k); p += 4 * n * k;
    if (hp) { memcpy(p, rb->probs + t0 * E, 4 * n * E); p += 4 * n * E; }
    if (hl) memcpy(p, rb->logits + t0 * E, 4 * n * E);
    prb_ring_commit(&s->ring);
  }
}

static void cb_op(void *ctx, int64_t batch_id, int layer, int op, int expert,
                  uint64_t start_ns, uint64_t end_ns, int thread) {
  prb_sink *s = ((lvl_ctx *)ctx)->s;
  if (atomic_load(&s->run_id) == 0) return;
  unsigned char *p = prb_ring_reserve(&s->ring, REC_OP, sizeof(rec_op));
  if (!p) return;
  rec_op r = { batch_id, start_ns, end_ns, layer, op, expert, thread };
  memcpy(p, &r, sizeof r);
  prb_ring_commit(&s->ring);
}

static void cb_sequence(void *ctx, int seq_id, const char *label, const char *source, int n_tokens) {
  prb_sink *s = ((lvl_ctx *)ctx)->s;
  if (atomic_load(&s->run_id) == 0) return;
  size_t ll = label ? strlen(label) : 0, sl = source ? strlen(source) : 0;
  if (ll > INT32_MAX / 2 || sl > INT32_MAX / 2) return;
  unsigned char *p = prb_ring_reserve(&s->ring, REC_SEQ, sizeof(rec_seq) + ll + sl);
  if (!p) return;
  rec_seq r = { seq_id, n_tokens, label ? (int32_t)ll : -1, source ? (int32_t)sl : -1 };
  memcpy(p, &r, sizeof r);
  if (ll) memcpy(p + sizeof r, label, ll);
  if (sl) memcpy(p + sizeof r + ll, source, sl);
  prb_ring_commit(&s->ring);
}

static void cb_tokens(void *ctx, int seq_id, int n, const int *pos, const int *token_ids,
                      int phase, const float *nll) {
  prb_sink *s = ((lvl_ctx *)ctx)->s;
  if (atomic_load(&s->run_id) == 0 || n <= 0 || !pos || !token_ids) return;
  size_t per_tok = nll ? 12 : 8;
  size_t per_rec = (s->rec_max - sizeof(rec_tok)) / per_tok;
  for (int i0 = 0; i0 < n; i0 += (int)per_rec) {
    size_t m = (size_t)n - (size_t)i0;
    if (m > per_rec) m = per_rec;
    unsigned char *p = prb_ring_reserve(&s->ring, REC_TOK, sizeof(rec_tok) + m * per_tok);
    if (!p) return;
    rec_tok r = { seq_id, (int32_t)m, phase, nll != NULL };
    memcpy(p, &r, sizeof r);
    p += sizeof r;
    memcpy(p, pos + i0, 4 * m); p += 4 * m;
    memcpy(p, token_ids + i0, 4 * m); p += 4 * m;
    if (nll) memcpy(p, nll + i0, 4 * m);
    prb_ring_commit(&s->ring);
  }
}

/* A stateful policy's per-expert values (the bias policy's selection bias) -> router_bias;
 * small (E floats per batch and layer), so recorded at every level from counts on. */
static void cb_policy_state(void *ctx, int64_t batch_id, int layer, int n, const float *values) {
  prb_sink *s = ((lvl_ctx *)ctx)->s;
  size_t bytes = sizeof(rec_bias) + 4 * (size_t)(n > 0 ? n : 0);
  if (atomic_load(&s->run_id) == 0 || n <= 0 || !values || bytes > s->rec_max) return;
  unsigned char *p = prb_ring_reserve(&s->ring, REC_BIAS, bytes);
  if (!p) return;
  rec_bias r = { batch_id, layer, n };
  memcpy(p, &r, sizeof r);
  memcpy(p + sizeof r, values, 4 * (size_t)n);
  prb_ring_commit(&s->ring);
}

/* Next-token logits of a sampled position -> logits_sample (level full only). */
static void cb_logits(void *ctx, int seq_id, int pos, int vocab, const float *z) {
  prb_sink *s = ((lvl_ctx *)ctx)->s;
  size_t bytes = sizeof(rec_logits) + 4 * (size_t)(vocab > 0 ? vocab : 0);
  if (atomic_load(&s->run_id) == 0 || vocab <= 0 || !z || bytes > s->rec_max) return;
  unsigned char *p = prb_ring_reserve(&s->ring, REC_LOGITS, bytes);
  if (!p) return;
  rec_logits r = { seq_id, pos, vocab, 0 };
  memcpy(p, &r, sizeof r);
  memcpy(p + sizeof r, z, 4 * (size_t)vocab);
  prb_ring_commit(&s->ring);
}

prb_probe prb_sink_probe(prb_sink *s, int level) {
  prb_probe p = prb_probe_none();
  if (!s || level <= PRB_LEVEL_OFF) return p;
  if (level > PRB_LEVEL_FULL) level = PRB_LEVEL_FULL;
  p.ctx = &s->lv[level];
  p.level = level;
  p.route = cb_route;
  p.op = cb_op;
  p.sequence = cb_sequence;
  p.tokens = cb_tokens;
  p.policy_state = cb_policy_state;
  if (level >= PRB_LEVEL_FULL) p.logits = cb_logits;
  return p;
}

int prb_sink_vocab(prb_sink *s, int n, const char *const *pieces, const size_t *lens) {
  if (!s || n < 0 || (n > 0 && !pieces)) return -1;
  if (atomic_load(&s->run_id) == 0) return -1;
  if (s->run_level == PRB_LEVEL_OFF) return 0;
  int i = 0;
  while (i < n) {
    /* take pieces while the record stays under rec_max (at least one) */
    size_t bytes = 0;
    int j = i;
    while (j < n) {
      size_t l = pieces[j] ? (lens ? lens[j] : strlen(pieces[j])) : 0;
      if (l >= UINT32_MAX) return -1;
      if (j > i && sizeof(rec_vocab) + 4 * (size_t)(j - i + 1) + bytes + l > s->rec_max) break;
      bytes += l;
      j++;
    }
    int m = j - i;
    unsigned char *p = prb_ring_reserve(&s->ring, REC_VOCAB, sizeof(rec_vocab) + 4 * (size_t)m + bytes);
    if (!p) return -1;
    rec_vocab r = { i, m };
    memcpy(p, &r, sizeof r);
    unsigned char *lp = p + sizeof r, *bp = lp + 4 * (size_t)m;
    for (int x = i; x < j; x++) {
      uint32_t l = pieces[x] ? (uint32_t)(lens ? lens[x] : strlen(pieces[x])) : UINT32_MAX;
      memcpy(lp, &l, 4);
      lp += 4;
      if (l != UINT32_MAX && l) { memcpy(bp, pieces[x], l); bp += l; }
    }
    prb_ring_commit(&s->ring);
    i = j;
  }
  return 0;
}

/* ---- open / runs / close ---------------------------------------------------------------- */

/* Runs a one-row query returning an integer; -1 with the SQLite code in *rc on failure. */
static long long query_int(sqlite3 *db, const char *sql, int *rc) {
  sqlite3_stmt *st = NULL;
  long long v = -1;
  *rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (*rc == SQLITE_OK) {
    *rc = sqlite3_step(st);
    if (*rc == SQLITE_ROW) { v = sqlite3_column_int64(st, 0); *rc = SQLITE_OK; }
  }
  sqlite3_finalize(st);
  return v;
}

/* Why a path cannot hold a database, in words, before SQLite gives its generic message. */
static const char *path_problem(const char *path) {
  struct stat sb;
  if (stat(path, &sb) == 0) return S_ISDIR(sb.st_mode) ? "it is a directory" : NULL;
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (!slash) return NULL;
  if (slash == dir) slash[1] = 0; else *slash = 0;
  if (stat(dir, &sb) != 0) return "its directory does not exist";
  if (!S_ISDIR(sb.st_mode)) return "its parent is not a directory";
  if (access(dir, W_OK) != 0) return "its directory is not writable";
  return NULL;
}

static int init_db(prb_sink *s, char *err, size_t errlen) {
  const char *path = s->path;
  int rc;
  sqlite3_busy_timeout(s->db, 5000);
  /* Read-only checks first: nothing may be written to a file that is not ours. */
  long long uv = query_int(s->db, "PRAGMA user_version", &rc);
  if (rc != SQLITE_OK) {
    if (rc == SQLITE_NOTADB)
      set_err(err, errlen, "trace DB '%s' is not a SQLite database; refusing to touch it", path);
    else
      set_err(err, errlen, "cannot read trace DB '%s': %s", path, sqlite3_errmsg(s->db));
    return -1;
  }
  if (uv > PRB_SCHEMA_VERSION) {
    set_err(err, errlen, "trace DB '%s' has schema version %lld, newer than this moescope supports (%d)",
            path, uv, PRB_SCHEMA_VERSION);
    return -1;
  }
  long long ntab = query_int(s->db, "SELECT count(*) FROM sqlite_master", &rc);
  if (rc != SQLITE_OK) {
    set_err(err, errlen, "cannot read trace DB '%s': %s", path, sqlite3_errmsg(s->db));
    return -1;
  }
  if (uv == 0 && ntab > 0) {
    set_err(err, errlen, "'%s' is a SQLite database but not a moescope trace DB (user_version 0, %lld schema objects); refusing to modify it",
            path, ntab);
    return -1;
  }
  if (sqlite3_db_readonly(s->db, "main") == 1) {
    set_err(err, errlen, "trace DB '%s' is read-only", path);
    return -1;
  }
  if (exec_sql(s->db, "PRAGMA journal_mode=WAL") != SQLITE_OK ||
      exec_sql(s->db, "PRAGMA synchronous=NORMAL") != SQLITE_OK ||
      exec_sql(s->db, "PRAGMA cache_size=-32768") != SQLITE_OK ||
      exec_sql(s->db, "PRAGMA wal_autocheckpoint=8192") != SQLITE_OK ||
      exec_sql(s->db, "BEGIN IMMEDIATE") != SQLITE_OK) {
    set_err(err, errlen, "cannot write trace DB '%s': %s", path, sqlite3_errmsg(s->db));
    return -1;
  }
  uv = query_int(s->db, "PRAGMA user_version", &rc);  /* again, now under the write lock */
  if (rc == SQLITE_OK && exec_sql(s->db, prb_schema_sql) == SQLITE_OK && uv == 0) {
    char now[64], host[256] = "unknown";
    iso_now(now, sizeof now);
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "unknown");
    host[sizeof host - 1] = 0;
    char *q = sqlite3_mprintf(
        "PRAGMA user_version=%d;"
        "INSERT OR REPLACE INTO meta(key,value) VALUES('schema_version','%d'),"
        "('moescope_version',%Q),('created_at',%Q),('host',%Q);",
        PRB_SCHEMA_VERSION, PRB_SCHEMA_VERSION, MOESCOPE_VERSION, now, host);
    rc = q ? exec_sql(s->db, q) : SQLITE_NOMEM;
    sqlite3_free(q);
  }
  if (rc != SQLITE_OK || exec_sql(s->db, "COMMIT") != SQLITE_OK) {
    set_err(err, errlen, "cannot write trace DB '%s': %s", path, sqlite3_errmsg(s->db));
    exec_sql(s->db, "ROLLBACK");
    return -1;
  }
  for (int i = 0; i < ST_COUNT; i++) {
    if (sqlite3_prepare_v3(s->db, st_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL) != SQLITE_OK) {
      set_err(err, errlen, "trace DB '%s': cannot prepare insert into %s: %s", path, st_table[i],
              sqlite3_errmsg(s->db));
      return -1;
    }
  }
  return 0;
}

static void sink_free(prb_sink *s) {
  for (int i = 0; i < ST_COUNT; i++) sqlite3_finalize(s->st[i]);
  if (s->db) sqlite3_close(s->db);
  prb_ring_destroy(&s->ring);
  pthread_mutex_destroy(&s->db_mu);
  pthread_mutex_destroy(&s->agg_mu);
  free(s->agg_tok);
  free(s->agg_w);
  free(s->path);
  free(s);
}

int prb_sink_open(prb_sink **out, const char *db_path, size_t ring_bytes, char *err, size_t errlen) {
  if (out) *out = NULL;
  if (!out || !db_path || !*db_path) { set_err(err, errlen, "trace DB: no path given"); return -1; }
  const char *why = path_problem(db_path);
  if (why) { set_err(err, errlen, "cannot open trace DB '%s': %s", db_path, why); return -1; }
  prb_sink *s = calloc(1, sizeof *s);
  if (!s) { set_err(err, errlen, "trace DB '%s': out of memory", db_path); return -1; }
  pthread_mutex_init(&s->db_mu, NULL);
  pthread_mutex_init(&s->agg_mu, NULL);
  s->path = strdup(db_path);
  if (!s->path || prb_ring_init(&s->ring, ring_bytes ? ring_bytes : ((size_t)64 << 20)) != 0) {
    set_err(err, errlen, "trace DB '%s': out of memory for the ring buffer", db_path);
    sink_free(s);
    return -1;
  }
  /* Records of at most a quarter of the ring, so producers and the writer overlap. */
  s->rec_max = s->ring.cap / 4;
  if (s->rec_max > ((size_t)4 << 20)) s->rec_max = (size_t)4 << 20;
  for (int i = 0; i < 4; i++) { s->lv[i].s = s; s->lv[i].level = i; }
  int rc = sqlite3_open_v2(db_path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
  if (rc != SQLITE_OK) {
    set_err(err, errlen, "cannot open trace DB '%s': %s", db_path,
            s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
    sink_free(s);
    return -1;
  }
  if (init_db(s, err, errlen) != 0) { sink_free(s); return -1; }
  if (pthread_create(&s->writer, NULL, writer_main, s) != 0) {
    set_err(err, errlen, "trace DB '%s': cannot start the writer thread: %s", db_path, strerror(errno));
    sink_free(s);
    return -1;
  }
  s->writer_started = 1;
  *out = s;
  return 0;
}

/* With db_mu held and the ring drained: closes the current run's row. */
static void finish_run(prb_sink *s) {
  int64_t run = atomic_load(&s->run_id);
  if (run == 0) return;
  char now[64];
  iso_now(now, sizeof now);
  char *q = sqlite3_mprintf("UPDATE runs SET finished_at=%Q, status=%Q WHERE run_id=%lld", now,
                            atomic_load(&s->has_err) ? "error" : "ok", (long long)run);
  if (q && exec_sql(s->db, q) != SQLITE_OK)
    latch(s, "trace DB '%s': finishing run %lld failed: %s", s->path, (long long)run, sqlite3_errmsg(s->db));
  sqlite3_free(q);
}

int prb_sink_begin_run(prb_sink *s, const prb_run_info *ri, int64_t *run_id, char *err, size_t errlen) {
  if (!s || !ri) { set_err(err, errlen, "trace DB: begin_run without sink or run info"); return -1; }
  prb_ring_flush(&s->ring);
  pthread_mutex_lock(&s->db_mu);
  if (atomic_load(&s->has_err)) {
    set_err(err, errlen, "%s", s->err);
    pthread_mutex_unlock(&s->db_mu);
    return -1;
  }
  finish_run(s);
  char now[64];
  iso_now(now, sizeof now);
  const char *sql =
      "INSERT INTO runs(started_at,status,model_path,model_sha256,family,n_layers,n_experts,top_k,"
      "n_shared_experts,policy,record_level,device,dtype,threads,command_line)"
      " VALUES(?,'running',?,?,?,?,?,?,?,?,?,?,?,?,?)";
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
  if (rc == SQLITE_OK) {
    const char *txt[] = { now, ri->model_path, ri->model_sha256, ri->family };
    for (int i = 0; i < 4; i++) sqlite3_bind_text(st, i + 1, txt[i], -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 5, ri->n_layers);
    sqlite3_bind_int(st, 6, ri->n_experts);
    sqlite3_bind_int(st, 7, ri->top_k);
    sqlite3_bind_int(st, 8, ri->n_shared_experts);
    sqlite3_bind_text(st, 9, ri->policy, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 10, prb_level_name(ri->record_level), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 11, ri->device, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 12, ri->dtype, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 13, ri->threads);
    sqlite3_bind_text(st, 14, ri->command_line, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(st);
  }
  if (rc != SQLITE_DONE) {
    set_err(err, errlen, "trace DB '%s': cannot insert the run: %s", s->path, sqlite3_errmsg(s->db));
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->db_mu);
    return -1;
  }
  sqlite3_finalize(st);
  int64_t id = sqlite3_last_insert_rowid(s->db);
  s->run_level = ri->record_level;
  atomic_store(&s->run_id, id);
  pthread_mutex_unlock(&s->db_mu);
  if (run_id) *run_id = id;
  return 0;
}

int prb_sink_flush(prb_sink *s, char *err, size_t errlen) {
  if (!s) return -1;
  prb_ring_flush(&s->ring);
  if (atomic_load(&s->has_err)) { set_err(err, errlen, "%s", s->err); return -1; }
  return 0;
}

const char *prb_sink_error(prb_sink *s) {
  return s && atomic_load(&s->has_err) ? s->err : NULL;
}

int prb_sink_close(prb_sink *s, char *err, size_t errlen) {
  if (!s) return 0;
  prb_ring_stop(&s->ring);  /* the writer drains everything queued, then exits */
  if (s->writer_started) pthread_join(s->writer, NULL);
  pthread_mutex_lock(&s->db_mu);
  finish_run(s);
  pthread_mutex_unlock(&s->db_mu);
  for (int i = 0; i < ST_COUNT; i++) { sqlite3_finalize(s->st[i]); s->st[i] = NULL; }
  int rc = 0;
  if (sqlite3_close(s->db) != SQLITE_OK)
    latch(s, "trace DB '%s': close failed: %s", s->path, sqlite3_errmsg(s->db));
  else
    s->db = NULL;
  if (atomic_load(&s->has_err)) { set_err(err, errlen, "%s", s->err); rc = -1; }
  sink_free(s);
  return rc;
}

void prb_sink_get_stats(prb_sink *s, prb_sink_stats *st) {
  if (!st) return;
  memset(st, 0, sizeof *st);
  if (!s) return;
  pthread_mutex_lock(&s->ring.mu);
  st->bytes_queued = s->ring.payload_bytes;
  st->waits = s->ring.waits;
  pthread_mutex_unlock(&s->ring.mu);
  st->rows_written = atomic_load(&s->rows_written);
  st->commits = atomic_load(&s->commits);
}
