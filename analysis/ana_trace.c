/* ana_trace.c — one scan of `routing` into per-(token, layer, slot) arrays; sequence
 * lengths, labels and token ids from sequences/tokens. See ana_trace.h. */
#include "analysis/ana_trace.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct seqent { long long seq; long long len; char *label; int real; } seqent;
typedef struct seqlist { seqent *v; int n, cap; } seqlist;

static int seq_add(seqlist *l, long long seq, long long len, const char *label, int real) {
  if (l->n == l->cap) {
    int nc = l->cap ? l->cap * 2 : 256;
    seqent *nv = realloc(l->v, (size_t)nc * sizeof *nv);
    if (!nv) return -1;
    l->v = nv; l->cap = nc;
  }
  seqent *e = &l->v[l->n++];
  e->seq = seq; e->len = len < 0 ? 0 : len; e->real = real;
  e->label = label ? strdup(label) : NULL;
  return label && !e->label ? -1 : 0;
}

static int cmp_seqent(const void *a, const void *b) {
  const seqent *x = a, *y = b;
  if (x->seq != y->seq) return (x->seq > y->seq) - (x->seq < y->seq);
  return (y->label != NULL) - (x->label != NULL);   /* labelled entry first */
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Runs sql (bound ?1 = run_id) returning (seq_id, len[, label, real]) rows into l. */
static int seq_query(ana_db *d, long long run_id, const char *sql, int with_label, seqlist *l,
                     char *err, size_t errlen) {
  sqlite3_stmt *s = NULL;
  if (sqlite3_prepare_v2(d->db, sql, -1, &s, NULL) != SQLITE_OK) {
    snprintf(err, errlen, "trace DB: %s", sqlite3_errmsg(d->db));
    return -1;
  }
  sqlite3_bind_int64(s, 1, run_id);
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    const char *lab = with_label ? (const char *)sqlite3_column_text(s, 2) : NULL;
    if (seq_add(l, sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 1), lab,
                with_label ? sqlite3_column_int(s, 3) : 0) != 0) { rc = SQLITE_NOMEM; break; }
  }
  sqlite3_finalize(s);
  if (rc != SQLITE_DONE) {
    snprintf(err, errlen, "trace DB: %s", rc == SQLITE_NOMEM ? "out of memory" : sqlite3_errmsg(d->db));
    return -1;
  }
  return 0;
}

/* Builds seq arrays and labels of t from the entries (sorted, merged). */
static int seq_build(ana_trace *t, seqlist *l, char *err, size_t errlen) {
  qsort(l->v, (size_t)l->n, sizeof *l->v, cmp_seqent);
  int n = 0;
  for (int i = 0; i < l->n; i++) {
    if (n > 0 && l->v[n - 1].seq == l->v[i].seq) {
      if (l->v[i].len > l->v[n - 1].len) l->v[n - 1].len = l->v[i].len;
      free(l->v[i].label);
      continue;
    }
    l->v[n++] = l->v[i];
  }
  l->n = n;
  t->n_seqs = n;
  t->seq_id = malloc(((size_t)n + 1) * sizeof *t->seq_id);
  t->seq_off = malloc(((size_t)n + 1) * sizeof *t->seq_off);
  t->seq_label = malloc(((size_t)n + 1) * sizeof *t->seq_label);
  t->labels = malloc(((size_t)n + 1) * sizeof *t->labels);
  if (!t->seq_id || !t->seq_off || !t->seq_label || !t->labels) goto oom;
  /* distinct labels, sorted */
  int nl = 0, has_unl = 0;
  for (int i = 0; i < n; i++) {
    if (!l->v[i].label || !l->v[i].label[0] || !l->v[i].real) { has_unl = 1; continue; }
    t->has_real_label = 1;
    t->labels[nl++] = l->v[i].label;
  }
  qsort(t->labels, (size_t)nl, sizeof *t->labels, cmp_str);
  int u = 0;
  for (int i = 0; i < nl; i++) if (u == 0 || strcmp(t->labels[u - 1], t->labels[i])) t->labels[u++] = t->labels[i];
  nl = u;
  for (int i = 0; i < nl; i++) if (!(t->labels[i] = strdup(t->labels[i]))) { t->n_labels = i; goto oom; }
  if (has_unl) {
    if (!(t->labels[nl] = strdup("(unlabelled)"))) { t->n_labels = nl; goto oom; }
    nl++;
  }
  t->n_labels = nl;
  long long off = 0;
  for (int i = 0; i < n; i++) {
    t->seq_id[i] = l->v[i].seq;
    t->seq_off[i] = off;
    off += l->v[i].len;
    int li = nl - 1;
    if (l->v[i].label && l->v[i].label[0] && l->v[i].real) {
      int lo = 0, hi = nl - (has_unl ? 2 : 1);
      while (lo <= hi) {
        int mid = (lo + hi) / 2, c = strcmp(t->labels[mid], l->v[i].label);
        if (!c) { li = mid; break; }
        if (c < 0) lo = mid + 1; else hi = mid - 1;
      }
    }
    t->seq_label[i] = li;
  }
  t->seq_off[n] = off;
  t->n_tok = off;
  return 0;
oom:
  snprintf(err, errlen, "out of memory");
  return -1;
}

static void seqlist_free(seqlist *l) {
  for (int i = 0; i < l->n; i++) free(l->v[i].label);
  free(l->v);
  memset(l, 0, sizeof *l);
}

/* ---- the scan ------------------------------------------------------------------------ */
typedef struct scan_arg {
  const char *path;
  long long run_id, lo, hi;       /* rowid range; lo > hi = no rowid filter */
  ana_trace *t;
  const int *lmap; int lmap_n;
  long long rows, skipped;
  int max_layer, max_expert, max_slot, seq_miss;
  int rc; char err[256];
} scan_arg;

static long long seq_find(const ana_trace *t, long long seq, long long *cache) {
  if (*cache >= 0 && t->seq_id[*cache] == seq) return *cache;
  int lo = 0, hi = t->n_seqs - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    if (t->seq_id[mid] == seq) { *cache = mid; return mid; }
    if (t->seq_id[mid] < seq) lo = mid + 1; else hi = mid - 1;
  }
  return -1;
}

/* Stores one routing row into the arrays (shared by the row scan and the packed read). */
static void put_row(scan_arg *a, long long seq, long long pos, int layer, int slot, int e, float w, long long *cache) {
  ana_trace *t = a->t;
  if (layer > a->max_layer) a->max_layer = layer;
  if (e > a->max_expert) a->max_expert = e;
  if (slot > a->max_slot) a->max_slot = slot;
  long long si = seq_find(t, seq, cache);
  int li = layer >= 0 && layer < a->lmap_n ? a->lmap[layer] : -1;
  if (si < 0 || pos < 0 || pos >= t->seq_off[si + 1] - t->seq_off[si]) { a->seq_miss = 1; a->skipped++; return; }
  if (li < 0 || slot < 0 || slot >= t->K || e < 0 || e >= t->E) { a->skipped++; return; }
  size_t c = ana_cell(t, t->seq_off[si] + pos, li, slot);
  t->ex[c] = (uint16_t)e;
  t->w[c] = w;
  a->rows++;
}

/* Reads routing_packed (one blob row per batch x layer record, see probes/prb_schema.c):
 * the same rows as `routing` without a SQLite step per row. */
static void scan_packed(ana_db *d, scan_arg *a) {
  sqlite3_stmt *s = NULL;
  a->rc = -1;
  if (sqlite3_prepare_v2(d->db, "SELECT layer, n, k, e, seq, pos, expert, weight FROM routing_packed WHERE run_id = ?1",
                         -1, &s, NULL) != SQLITE_OK) {
    snprintf(a->err, sizeof a->err, "cannot read routing_packed: %s", sqlite3_errmsg(d->db));
    return;
  }
  sqlite3_bind_int64(s, 1, a->run_id);
  long long cache = -1;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    int layer = sqlite3_column_int(s, 0), n = sqlite3_column_int(s, 1), k = sqlite3_column_int(s, 2);
    int ne = sqlite3_column_int(s, 3);
    const unsigned char *sq = sqlite3_column_blob(s, 4), *ps = sqlite3_column_blob(s, 5);
    const unsigned char *ex = sqlite3_column_blob(s, 6), *wt = sqlite3_column_blob(s, 7);
    if (n <= 0 || k <= 0 || !sq || !ps || !ex || !wt || sqlite3_column_bytes(s, 4) != 4 * n ||
        sqlite3_column_bytes(s, 5) != 4 * n || sqlite3_column_bytes(s, 6) != 4 * n * k ||
        sqlite3_column_bytes(s, 7) != 4 * n * k) {
      snprintf(a->err, sizeof a->err, "routing_packed: malformed row (layer %d, n %d, k %d)", layer, n, k);
      sqlite3_finalize(s);
      return;
    }
    for (int i = 0; i < n; i++) {
      int32_t seq, pos;
      memcpy(&seq, sq + 4 * (size_t)i, 4);
      memcpy(&pos, ps + 4 * (size_t)i, 4);
      for (int j = 0; j < k; j++) {
        int32_t e;
        float w;
        memcpy(&e, ex + 4 * ((size_t)i * k + j), 4);
        if (e < 0 || e >= ne) continue;   /* not a routing row (empty slot) */
        memcpy(&w, wt + 4 * ((size_t)i * k + j), 4);
        put_row(a, seq, pos, layer, j, e, w, &cache);
      }
    }
  }
  if (rc != SQLITE_DONE) snprintf(a->err, sizeof a->err, "cannot read routing_packed: %s", sqlite3_errmsg(d->db));
  else a->rc = 0;
  sqlite3_finalize(s);
}

static void *scan_thread(void *p) {
  scan_arg *a = p;
  sqlite3 *db = NULL;
  sqlite3_stmt *s = NULL;
  a->rc = -1;
  if (sqlite3_open_v2(a->path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
    snprintf(a->err, sizeof a->err, "cannot reopen trace DB: %s", sqlite3_errmsg(db));
    sqlite3_close(db);
    return NULL;
  }
  sqlite3_busy_timeout(db, 5000);
  sqlite3_exec(db, "PRAGMA mmap_size = 1073741824; PRAGMA cache_size = -32768", NULL, NULL, NULL);
  const char *sql = a->lo <= a->hi
    ? "SELECT seq_id, pos, layer, slot, expert, weight FROM routing WHERE rowid BETWEEN ?2 AND ?3 AND run_id = ?1"
    : "SELECT seq_id, pos, layer, slot, expert, weight FROM routing WHERE run_id = ?1";
  if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
    snprintf(a->err, sizeof a->err, "cannot read routing: %s", sqlite3_errmsg(db));
    sqlite3_close(db);
    return NULL;
  }
  sqlite3_bind_int64(s, 1, a->run_id);
  if (a->lo <= a->hi) { sqlite3_bind_int64(s, 2, a->lo); sqlite3_bind_int64(s, 3, a->hi); }
  long long cache = -1;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW)
    put_row(a, sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 1), sqlite3_column_int(s, 2),
            sqlite3_column_int(s, 3), sqlite3_column_int(s, 4),
            sqlite3_column_type(s, 5) == SQLITE_NULL ? NAN : (float)sqlite3_column_double(s, 5), &cache);
  if (rc != SQLITE_DONE) snprintf(a->err, sizeof a->err, "cannot read routing: %s", sqlite3_errmsg(db));
  else a->rc = 0;
  sqlite3_finalize(s);
  sqlite3_close(db);
  return NULL;
}

static int query2(ana_db *d, const char *sql, long long run_id, long long *a, long long *b) {
  sqlite3_stmt *s = NULL;
  int ok = 0;
  if (sqlite3_prepare_v2(d->db, sql, -1, &s, NULL) == SQLITE_OK) {
    sqlite3_bind_int64(s, 1, run_id);
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL) {
      *a = sqlite3_column_int64(s, 0);
      *b = sqlite3_column_int64(s, 1);
      ok = 1;
    }
  }
  sqlite3_finalize(s);
  return ok;
}

/* Layer ids: from expert_load (indexed) unless widen: then from routing itself. */
static int load_layers(ana_db *d, ana_trace *t, int from_routing, int max_layer, char *err, size_t errlen) {
  free(t->layer_ids);
  t->layer_ids = NULL;
  t->L = 0;
  const char *sql = from_routing
    ? "SELECT DISTINCT layer FROM routing WHERE run_id = ?1 AND layer >= 0 AND layer < 32768 ORDER BY layer"
    : "SELECT DISTINCT layer FROM expert_load WHERE run_id = ?1 AND layer >= 0 AND layer < 32768 ORDER BY layer";
  (void)max_layer;
  sqlite3_stmt *s = NULL;
  if (sqlite3_prepare_v2(d->db, sql, -1, &s, NULL) != SQLITE_OK) {
    snprintf(err, errlen, "trace DB: %s", sqlite3_errmsg(d->db));
    return -1;
  }
  sqlite3_bind_int64(s, 1, t->run_id);
  int cap = 0;
  while (sqlite3_step(s) == SQLITE_ROW) {
    if (t->L == cap) {
      cap = cap ? cap * 2 : 16;
      int *nb = realloc(t->layer_ids, (size_t)cap * sizeof *nb);
      if (!nb) { sqlite3_finalize(s); snprintf(err, errlen, "out of memory"); return -1; }
      t->layer_ids = nb;
    }
    t->layer_ids[t->L++] = sqlite3_column_int(s, 0);
  }
  sqlite3_finalize(s);
  return 0;
}

static int scan(ana_db *d, ana_trace *t, int *widen, char *err, size_t errlen) {
  size_t cells = (size_t)t->n_tok * (size_t)t->L * (size_t)t->K;
  free(t->ex); free(t->w);
  t->ex = malloc(cells * sizeof *t->ex + 2);
  t->w = malloc(cells * sizeof *t->w + 4);
  int lmap_n = t->L ? t->layer_ids[t->L - 1] + 1 : 0;
  int *lmap = malloc(((size_t)lmap_n + 1) * sizeof *lmap);
  if (!t->ex || !t->w || !lmap) { free(lmap); snprintf(err, errlen, "out of memory"); return -1; }
  memset(t->ex, 0xFF, cells * sizeof *t->ex);
  for (size_t i = 0; i < cells; i++) t->w[i] = NAN;
  for (int i = 0; i < lmap_n; i++) lmap[i] = -1;
  for (int i = 0; i < t->L; i++) lmap[t->layer_ids[i]] = i;
  long long lo = 1, hi = 0;
  int nth = 1;
  if (t->packed) nth = 1;
  else if (query2(d, "SELECT (SELECT MIN(rowid) FROM routing), (SELECT MAX(rowid) FROM routing)", t->run_id, &lo, &hi)) {
    long nc = sysconf(_SC_NPROCESSORS_ONLN);
    nth = nc >= 4 ? 4 : nc >= 2 ? (int)nc : 1;
    if (hi - lo < 100000) nth = 1;
  } else { lo = 1; hi = 0; }
  scan_arg a[4];
  pthread_t th[4];
  int started[4] = {0};
  for (int i = 0; i < nth; i++) {
    memset(&a[i], 0, sizeof a[i]);
    a[i].path = d->path; a[i].run_id = t->run_id; a[i].t = t; a[i].lmap = lmap; a[i].lmap_n = lmap_n;
    a[i].max_layer = a[i].max_expert = a[i].max_slot = -1;
    if (lo <= hi) {
      long long span = hi - lo + 1;
      a[i].lo = lo + span * i / nth;
      a[i].hi = lo + span * (i + 1) / nth - 1;
    } else { a[i].lo = 1; a[i].hi = 0; }
    if (t->packed) scan_packed(d, &a[i]);
    else if (nth == 1) scan_thread(&a[i]);
    else started[i] = pthread_create(&th[i], NULL, scan_thread, &a[i]) == 0;
    if (nth > 1 && !started[i]) scan_thread(&a[i]);
  }
  int rc = 0, ml = -1, me = -1, ms = -1, miss = 0;
  t->n_rows = t->n_skipped = 0;
  for (int i = 0; i < nth; i++) {
    if (started[i]) pthread_join(th[i], NULL);
    if (a[i].rc != 0 && rc == 0) { snprintf(err, errlen, "trace DB '%s': %s", d->path, a[i].err); rc = -1; }
    t->n_rows += a[i].rows; t->n_skipped += a[i].skipped;
    if (a[i].max_layer > ml) ml = a[i].max_layer;
    if (a[i].max_expert > me) me = a[i].max_expert;
    if (a[i].max_slot > ms) ms = a[i].max_slot;
    miss |= a[i].seq_miss;
  }
  free(lmap);
  if (rc) return -1;
  *widen = 0;
  if (t->n_skipped > 0) {
    if (me >= t->E && me < 65535) { t->E = me + 1; *widen = 1; }
    if (ms >= t->K && ms < 4096) { t->K = ms + 1; *widen = 1; }
    if (ml >= 0 && (t->L == 0 || ml > t->layer_ids[t->L - 1])) *widen |= 2;
    if (miss) *widen |= 4;
    if (!*widen) *widen = 2;   /* a layer id between known ones: re-derive layers */
  }
  return 0;
}

int ana_trace_load(ana_db *d, const ana_run *run, ana_trace *t, char *err, size_t errlen) {
  memset(t, 0, sizeof *t);
  t->run_id = run->run_id;
  if (!ana_run_has_rows(d, run->run_id, "routing")) {
    snprintf(err, errlen, "no routing rows for run %lld (record level '%s'; needs --record topk or full)",
             run->run_id, run->record_level[0] ? run->record_level : "?");
    return 1;
  }
  t->E = run->n_experts > 0 ? run->n_experts : 1;
  t->K = run->top_k > 0 ? run->top_k : 1;
  long long a, b;
  if (query2(d, "SELECT MAX(expert), 0 FROM expert_load WHERE run_id = ?1", run->run_id, &a, &b) && a + 1 > t->E && a < 65535)
    t->E = (int)a + 1;
  /* routing_packed (written by moescope's sink) holds the same rows in one blob row per
   * batch x layer: used when it accounts for every routing row of the DB (cheap check:
   * COUNT(*) of the whole table walks the b-tree without decoding rows). */
  if (query2(d, "SELECT (SELECT SUM(n_rows) FROM routing_packed), (SELECT COUNT(*) FROM routing)", run->run_id, &a, &b) &&
      a == b && a > 0 && !getenv("MOESCOPE_NO_PACKED"))
    t->packed = 1;
  seqlist sl = {0};
  int rc = -1;
  if (seq_query(d, run->run_id, "SELECT seq_id, COALESCE(n_tokens, 0), label, label IS NOT NULL AND label <> ''"
                " FROM sequences WHERE run_id = ?1", 1, &sl, err, errlen) ||
      seq_query(d, run->run_id, "SELECT seq_id, MAX(pos) + 1 FROM tokens WHERE run_id = ?1 GROUP BY seq_id", 0,
                &sl, err, errlen))
    goto done;
  if (seq_build(t, &sl, err, errlen)) goto done;
  if (load_layers(d, t, 0, -1, err, errlen)) goto done;
  int widen = 0;
  if (t->L == 0 || t->n_tok == 0) widen = 6;
  else if (scan(d, t, &widen, err, errlen)) goto done;
  if (widen) {   /* the DB did not describe its routing fully: derive from routing (slow path) */
    if (widen & 2 && load_layers(d, t, 1, -1, err, errlen)) goto done;
    if (widen & 4) {
      if (seq_query(d, run->run_id, "SELECT seq_id, MAX(pos) + 1 FROM routing WHERE run_id = ?1 GROUP BY seq_id",
                    0, &sl, err, errlen))
        goto done;
      for (int i = 0; i < t->n_labels; i++) free(t->labels[i]);
      free(t->labels); free(t->seq_id); free(t->seq_off); free(t->seq_label);
      t->labels = NULL; t->seq_id = t->seq_off = NULL; t->seq_label = NULL; t->n_labels = 0; t->has_real_label = 0;
      if (seq_build(t, &sl, err, errlen)) goto done;
    }
    if (scan(d, t, &widen, err, errlen)) goto done;
  }
  /* token ids */
  t->tok_id = malloc(((size_t)t->n_tok + 1) * sizeof *t->tok_id);
  if (!t->tok_id) { snprintf(err, errlen, "out of memory"); goto done; }
  for (long long i = 0; i < t->n_tok; i++) t->tok_id[i] = -1;
  sqlite3_stmt *s = NULL;
  if (sqlite3_prepare_v2(d->db, "SELECT seq_id, pos, token_id FROM tokens WHERE run_id = ?1 AND token_id IS NOT NULL",
                         -1, &s, NULL) == SQLITE_OK) {
    sqlite3_bind_int64(s, 1, run->run_id);
    long long cache = -1;
    while (sqlite3_step(s) == SQLITE_ROW) {
      long long si = seq_find(t, sqlite3_column_int64(s, 0), &cache), pos = sqlite3_column_int64(s, 1);
      long long id = sqlite3_column_int64(s, 2);
      if (si < 0 || pos < 0 || pos >= t->seq_off[si + 1] - t->seq_off[si] || id < 0 || id > INT32_MAX) continue;
      t->tok_id[t->seq_off[si] + pos] = (int32_t)id;
      t->has_token_ids = 1;
    }
  }
  sqlite3_finalize(s);
  rc = 0;
done:
  seqlist_free(&sl);
  if (rc) ana_trace_free(t);
  return rc;
}

void ana_trace_free(ana_trace *t) {
  if (!t) return;
  for (int i = 0; i < t->n_labels; i++) free(t->labels[i]);
  free(t->labels); free(t->layer_ids); free(t->seq_id); free(t->seq_off); free(t->seq_label);
  free(t->tok_id); free(t->ex); free(t->w);
  memset(t, 0, sizeof *t);
}

int ana_primary(const ana_trace *t, long long tok, int li) {
  size_t c = ana_cell(t, tok, li, 0);
  int best = -1;
  float bw = 0;
  for (int k = 0; k < t->K; k++) {
    if (t->ex[c + k] == ANA_NONE) continue;
    float w = t->w[c + k];
    if (best < 0 || (!isnan(w) && (isnan(bw) || w > bw))) { best = t->ex[c + k]; bw = w; }
  }
  return best;
}

void ana_token_piece(ana_db *d, long long run_id, int token_id, char *buf, size_t n) {
  snprintf(buf, n, "#%d", token_id);
  sqlite3_stmt *s = NULL;
  if (sqlite3_prepare_v2(d->db, "SELECT piece FROM vocab WHERE run_id = ?1 AND token_id = ?2", -1, &s, NULL) != SQLITE_OK)
    return;
  sqlite3_bind_int64(s, 1, run_id);
  sqlite3_bind_int(s, 2, token_id);
  if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL) {
    const unsigned char *p = sqlite3_column_blob(s, 0);
    int len = sqlite3_column_bytes(s, 0);
    size_t o = 0;
    for (int i = 0; p && i < len && o + 5 < n;) {
      unsigned char c = p[i];
      int ul = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 1;
      if (c >= 0x80 && ul > 1) {   /* a multi-byte UTF-8 sequence: copy when valid */
        int ok = i + ul <= len && o + (size_t)ul + 1 < n;
        for (int j = 1; ok && j < ul; j++) ok = (p[i + j] & 0xC0) == 0x80;
        if (ok && ul == 3) ok = !(c == 0xE0 && p[i + 1] < 0xA0) && !(c == 0xED && p[i + 1] >= 0xA0);
        if (ok && ul == 4) ok = !(c == 0xF0 && p[i + 1] < 0x90) && !(c == 0xF4 && p[i + 1] >= 0x90);
        if (ok) { memcpy(buf + o, p + i, (size_t)ul); o += (size_t)ul; i += ul; continue; }
      }
      if (c == '\n') { buf[o++] = '\\'; buf[o++] = 'n'; }
      else if (c == '\t') { buf[o++] = '\\'; buf[o++] = 't'; }
      else if (c < 0x20 || c == 0x7f || c >= 0x80) o += (size_t)snprintf(buf + o, n - o, "\\x%02x", c);
      else buf[o++] = (char)c;
      i++;
    }
    buf[o] = 0;
  }
  sqlite3_finalize(s);
}
