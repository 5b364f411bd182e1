/* rep_timeline.c — the data of the report's timeline figure (see rep_timeline.h): picks
 * the source (GPU kernels of the run joined to kernel_scope, else the CPU op timers), the
 * window of whole batches, and turns the rows into tracks (device, stream/thread), boxes
 * (nesting lanes, op category) and layer bands (NVTX layer ranges of the run's process,
 * and the per-(batch, layer) extent of the boxes). Drawing is rep_tlfig.c.
 *
 * Kernels of a run: those joined to a kernel_scope row of the run, plus kernels without a
 * scope from the run's process (globalPid from TARGET_INFO_GPU / the NVTX run range /
 * kernel_scope) that start inside the window — the same rule as `export --perfetto`. */
#include "reports/rep_timeline.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tl_fail(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -1;
}

const char *rep_tl_cat_name(int cat) {
  static const char *const n[REP_TL_NCAT] = {"attention", "router", "dispatch", "experts", "combine", "other"};
  return cat >= 0 && cat < REP_TL_NCAT ? n[cat] : "other";
}

int rep_tl_op_category(const char *op) {
  static const struct { const char *op; int cat; } map[] = {
    {"attn_norm", REP_TL_ATTENTION}, {"qkv", REP_TL_ATTENTION}, {"rope", REP_TL_ATTENTION},
    {"attention", REP_TL_ATTENTION}, {"attn_out", REP_TL_ATTENTION}, {"moe_norm", REP_TL_ROUTER},
    {"router", REP_TL_ROUTER}, {"dispatch", REP_TL_DISPATCH}, {"permute", REP_TL_DISPATCH},
    {"experts", REP_TL_EXPERTS}, {"expert", REP_TL_EXPERTS}, {"shared_expert", REP_TL_EXPERTS},
    {"combine", REP_TL_COMBINE}, {"unpermute", REP_TL_COMBINE}};
  if (!op) return REP_TL_OTHER;
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
    if (!strcmp(op, map[i].op)) return map[i].cat;
  return REP_TL_OTHER;
}

int rep_tl_parse_window(const char *s, long long *first, int *n, char *err, size_t errlen) {
  *first = -1;
  *n = REP_TL_DEFAULT_BATCHES;
  if (!s || !*s) return tl_fail(err, errlen, "--timeline-batches: empty value");
  if (!strcmp(s, "all")) { *n = 0; return 0; }
  char *end;
  const char *colon = strchr(s, ':');
  if (colon) {
    long long f = strtoll(s, &end, 10);
    if (end != colon || f < 0) return tl_fail(err, errlen, "--timeline-batches: invalid first batch in '%s' (FIRST:N)", s);
    *first = f;
    s = colon + 1;
  }
  long v = strtol(s, &end, 10);
  if (*end || end == s || v < 1 || v > 1000000)
    return tl_fail(err, errlen, "--timeline-batches: invalid batch count in '%s' (expected N, FIRST:N or all)", s);
  *n = (int)v;
  return 0;
}

void rep_timeline_free(rep_timeline *t) {
  free(t->tracks);
  free(t->boxes);
  free(t->bands);
  memset(t, 0, sizeof *t);
}

static int has_table(sqlite3 *db, const char *name) {
  sqlite3_stmt *st;
  int ok = 0;
  if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type IN ('table','view') AND name = ?", -1, &st, NULL) ==
      SQLITE_OK) {
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    ok = sqlite3_step(st) == SQLITE_ROW;
  }
  sqlite3_finalize(st);
  return ok;
}

/* First column of the first row, binding ?1 = a, ?2 = b when present; dflt when none/NULL. */
static long long q1(sqlite3 *db, const char *sql, long long a, long long b, long long dflt) {
  sqlite3_stmt *st;
  long long v = dflt;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
    int np = sqlite3_bind_parameter_count(st);
    if (np >= 1) sqlite3_bind_int64(st, 1, a);
    if (np >= 2) sqlite3_bind_int64(st, 2, b);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) v = sqlite3_column_int64(st, 0);
  }
  sqlite3_finalize(st);
  return v;
}

static const char k_join[] =
  " FROM CUPTI_ACTIVITY_KIND_KERNEL AS k JOIN kernel_scope AS s"
  " ON s.correlationId = k.correlationId AND s.globalPid IS k.globalPid WHERE s.run_id = ?1";

typedef struct tl_ctx {
  sqlite3 *db;
  rep_timeline *t;
  int cap_tracks, cap_boxes, cap_bands;
  long long run_s, run_e, gpid;   /* NVTX run range (absolute), process; -1 when unknown */
} tl_ctx;

static int track_of(tl_ctx *c, const char *dev, long long stream) {
  rep_timeline *t = c->t;
  for (int i = 0; i < t->n_tracks; i++)
    if (t->tracks[i].stream == stream && !strcmp(t->tracks[i].device, dev)) return i;
  if (t->n_tracks == c->cap_tracks) {
    int nc = c->cap_tracks ? c->cap_tracks * 2 : 8;
    rep_tl_track *nt = realloc(t->tracks, (size_t)nc * sizeof *nt);
    if (!nt) return -1;
    t->tracks = nt;
    c->cap_tracks = nc;
  }
  rep_tl_track *k = &t->tracks[t->n_tracks];
  memset(k, 0, sizeof *k);
  snprintf(k->device, sizeof k->device, "%s", dev);
  k->stream = stream;
  k->lanes = 1;
  if (t->source == REP_TL_SRC_KERNELS) snprintf(k->label, sizeof k->label, "GPU %s stream %lld", dev, stream);
  else snprintf(k->label, sizeof k->label, "%s thread %lld", dev, stream);
  return t->n_tracks++;
}

static rep_tl_box *new_box(tl_ctx *c) {
  rep_timeline *t = c->t;
  if (t->n_boxes == c->cap_boxes) {
    int nc = c->cap_boxes ? c->cap_boxes * 2 : 256;
    rep_tl_box *nb = realloc(t->boxes, (size_t)nc * sizeof *nb);
    if (!nb) return NULL;
    t->boxes = nb;
    c->cap_boxes = nc;
  }
  rep_tl_box *b = &t->boxes[t->n_boxes++];
  memset(b, 0, sizeof *b);
  return b;
}

static rep_tl_band *new_band(tl_ctx *c) {
  rep_timeline *t = c->t;
  if (t->n_bands == c->cap_bands) {
    int nc = c->cap_bands ? c->cap_bands * 2 : 64;
    rep_tl_band *nb = realloc(t->bands, (size_t)nc * sizeof *nb);
    if (!nb) return NULL;
    t->bands = nb;
    c->cap_bands = nc;
  }
  rep_tl_band *b = &t->bands[t->n_bands++];
  memset(b, 0, sizeof *b);
  return b;
}

/* The run's NVTX "run N" range and process. */
static void run_range(tl_ctx *c) {
  c->run_s = c->run_e = c->gpid = -1;
  if (!has_table(c->db, "NVTX_EVENTS")) return;
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(c->db, "SELECT start, end, (globalTid / 16777216) * 16777216 FROM NVTX_EVENTS"
                                " WHERE eventType = 59 AND category = 1 AND int64Value = ? ORDER BY start DESC LIMIT 1",
                         -1, &st, NULL) != SQLITE_OK)
    return;
  sqlite3_bind_int64(st, 1, c->t->run_id);
  if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 1) != SQLITE_NULL) {
    c->run_s = sqlite3_column_int64(st, 0);
    c->run_e = sqlite3_column_int64(st, 1);
    c->gpid = sqlite3_column_int64(st, 2);
  }
  sqlite3_finalize(st);
}

/* Batches of the source with their row counts, ascending. */
static int load_batches(tl_ctx *c, long long **ids, long long **cnt, int *n) {
  char sql[512];
  if (c->t->source == REP_TL_SRC_KERNELS)
    snprintf(sql, sizeof sql, "SELECT s.batch_id, COUNT(*)%s AND s.batch_id IS NOT NULL GROUP BY 1 ORDER BY 1", k_join);
  else
    snprintf(sql, sizeof sql, "SELECT batch_id, COUNT(*) FROM ops WHERE run_id = ?1 AND batch_id IS NOT NULL"
                              " GROUP BY 1 ORDER BY 1");
  sqlite3_stmt *st;
  *ids = *cnt = NULL;
  *n = 0;
  if (sqlite3_prepare_v2(c->db, sql, -1, &st, NULL) != SQLITE_OK) return -1;
  sqlite3_bind_int64(st, 1, c->t->run_id);
  int cap = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    if (*n == cap) {
      cap = cap ? cap * 2 : 64;
      long long *a = realloc(*ids, (size_t)cap * sizeof *a);
      if (a) *ids = a;
      long long *b = a ? realloc(*cnt, (size_t)cap * sizeof *b) : NULL;
      if (b) *cnt = b;
      if (!a || !b) { sqlite3_finalize(st); return -1; }
    }
    (*ids)[*n] = sqlite3_column_int64(st, 0);
    (*cnt)[*n] = sqlite3_column_int64(st, 1);
    (*n)++;
  }
  sqlite3_finalize(st);
  return 0;
}

/* Reads the window's rows into boxes (absolute times for now). */
static int load_rows(tl_ctx *c, long long lo, long long hi, long long w0, long long w1, int max_boxes) {
  rep_timeline *t = c->t;
  sqlite3_stmt *st;
  const char *sql = t->source == REP_TL_SRC_KERNELS
    ? "SELECT k.start, k.end, k.deviceId, k.streamId, s.batch_id, s.layer, s.op, s.expert, COALESCE(sn.value, '?'), k.correlationId"
      " FROM CUPTI_ACTIVITY_KIND_KERNEL AS k LEFT JOIN kernel_scope AS s"
      " ON s.correlationId = k.correlationId AND s.globalPid IS k.globalPid"
      " LEFT JOIN StringIds AS sn ON sn.id = k.shortName"
      " WHERE (s.run_id = ?1 AND s.batch_id BETWEEN ?2 AND ?3)"
      " OR (s.run_id IS NULL AND k.globalPid = ?4 AND k.start >= ?5 AND k.start < ?6) ORDER BY k.start, k.end DESC"
    : "SELECT start_ns, end_ns, COALESCE(device, 'cpu'), COALESCE(thread, 0), batch_id, layer, op, expert, op, 0"
      " FROM ops WHERE run_id = ?1 AND batch_id BETWEEN ?2 AND ?3 ORDER BY start_ns, end_ns DESC";
  if (sqlite3_prepare_v2(c->db, sql, -1, &st, NULL) != SQLITE_OK) return -1;
  sqlite3_bind_int64(st, 1, t->run_id);
  sqlite3_bind_int64(st, 2, lo);
  sqlite3_bind_int64(st, 3, hi);
  if (t->source == REP_TL_SRC_KERNELS) {
    sqlite3_bind_int64(st, 4, c->gpid);
    sqlite3_bind_int64(st, 5, w0);
    sqlite3_bind_int64(st, 6, w1);
  }
  int rc = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    if (t->n_boxes >= max_boxes) { t->truncated = 1; break; }
    char dev[16];
    snprintf(dev, sizeof dev, "%s", sqlite3_column_text(st, 2) ? (const char *)sqlite3_column_text(st, 2) : "?");
    int tr = track_of(c, dev, sqlite3_column_int64(st, 3));
    rep_tl_box *b = tr < 0 ? NULL : new_box(c);
    if (!b) { rc = -1; break; }
    b->t0 = sqlite3_column_int64(st, 0);
    b->t1 = sqlite3_column_int64(st, 1);
    if (b->t1 < b->t0) b->t1 = b->t0;
    b->track = tr;
    int scoped = sqlite3_column_type(st, 6) != SQLITE_NULL;
    b->batch = sqlite3_column_type(st, 4) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 4);
    b->layer = sqlite3_column_type(st, 5) == SQLITE_NULL ? -1 : sqlite3_column_int(st, 5);
    b->expert = sqlite3_column_type(st, 7) == SQLITE_NULL ? -1 : sqlite3_column_int(st, 7);
    b->cat = rep_tl_op_category(scoped ? (const char *)sqlite3_column_text(st, 6) : NULL);
    b->corr = sqlite3_column_int64(st, 9);
    const char *nm = (const char *)sqlite3_column_text(st, 8);
    if (t->source == REP_TL_SRC_OPS && b->expert >= 0) snprintf(b->name, sizeof b->name, "%.30s %d", nm ? nm : "?", b->expert);
    else snprintf(b->name, sizeof b->name, "%s", nm ? nm : "?");
  }
  sqlite3_finalize(st);
  return rc;
}

static int dev_cmp(const char *a, const char *b) {
  char *ea, *eb;
  long la = strtol(a, &ea, 10), lb = strtol(b, &eb, 10);
  if (*a && *b && !*ea && !*eb) return la < lb ? -1 : la > lb;
  return strcmp(a, b);
}

static int track_cmp(const void *pa, const void *pb) {
  const rep_tl_track *a = pa, *b = pb;
  int d = dev_cmp(a->device, b->device);
  if (d) return d;
  return a->stream < b->stream ? -1 : a->stream > b->stream;
}
static int box_cmp(const void *pa, const void *pb) {
  const rep_tl_box *a = pa, *b = pb;
  if (a->track != b->track) return a->track < b->track ? -1 : 1;
  if (a->t0 != b->t0) return a->t0 < b->t0 ? -1 : 1;
  return a->t1 > b->t1 ? -1 : a->t1 < b->t1;   /* enclosing first */
}
static int band_cmp(const void *pa, const void *pb) {
  const rep_tl_band *a = pa, *b = pb;
  if (a->row != b->row) return a->row < b->row ? -1 : 1;
  return a->t0 < b->t0 ? -1 : a->t0 > b->t0;
}

/* Sorts tracks and boxes, assigns nesting lanes (a stack of open intervals per track). */
static int finish_boxes(rep_timeline *t) {
  int n = t->n_tracks, *map = malloc(sizeof(int) * (size_t)(n + 1));
  rep_tl_track *old = malloc(sizeof *old * (size_t)(n + 1));
  if (!map || !old) { free(map); free(old); return -1; }
  memcpy(old, t->tracks, sizeof *old * (size_t)n);
  qsort(t->tracks, (size_t)n, sizeof *t->tracks, track_cmp);
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++)
      if (t->tracks[j].stream == old[i].stream && !strcmp(t->tracks[j].device, old[i].device)) map[i] = j;
  for (int i = 0; i < t->n_boxes; i++) t->boxes[i].track = map[t->boxes[i].track];
  free(map);
  free(old);
  qsort(t->boxes, (size_t)t->n_boxes, sizeof *t->boxes, box_cmp);
  long long open[4];
  int depth = 0, cur = -1;
  for (int i = 0; i < t->n_boxes; i++) {
    rep_tl_box *b = &t->boxes[i];
    if (b->track != cur) { cur = b->track; depth = 0; }
    while (depth > 0 && open[depth - 1] <= b->t0) depth--;
    b->lane = depth < 3 ? depth : 3;
    if (depth < 4) open[depth++] = b->t1;
    else open[3] = b->t1 > open[3] ? b->t1 : open[3];
    if (b->lane + 1 > t->tracks[b->track].lanes) t->tracks[b->track].lanes = b->lane + 1;
  }
  return 0;
}

/* NVTX layer ranges of the run's process inside [a, b] (absolute) -> bands of row. */
static int nvtx_bands(tl_ctx *c, int row, long long a, long long b) {
  if (c->gpid < 0 || !has_table(c->db, "NVTX_EVENTS")) return 0;
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(c->db, "SELECT start, end, int64Value FROM NVTX_EVENTS WHERE eventType = 59 AND category = 3"
                                " AND globalTid / 16777216 = ?1 / 16777216 AND end IS NOT NULL AND start >= ?2"
                                " AND end <= ?3 ORDER BY start", -1, &st, NULL) != SQLITE_OK)
    return -1;
  sqlite3_bind_int64(st, 1, c->gpid);
  sqlite3_bind_int64(st, 2, a);
  sqlite3_bind_int64(st, 3, b);
  int n = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    rep_tl_band *bd = new_band(c);
    if (!bd) { sqlite3_finalize(st); return -1; }
    bd->t0 = sqlite3_column_int64(st, 0);
    bd->t1 = sqlite3_column_int64(st, 1);
    bd->layer = sqlite3_column_int(st, 2);
    bd->batch = -1;
    bd->row = row;
    n++;
  }
  sqlite3_finalize(st);
  return n;
}

/* Per (batch, layer) extent of the boxes -> bands of row (absolute times). */
static int extent_bands(tl_ctx *c, int row) {
  rep_timeline *t = c->t;
  int first = t->n_bands;
  for (int i = 0; i < t->n_boxes; i++) {
    const rep_tl_box *x = &t->boxes[i];
    if (x->layer < 0 || x->batch < 0) continue;
    rep_tl_band *bd = NULL;
    for (int j = first; j < t->n_bands; j++)
      if (t->bands[j].layer == x->layer && t->bands[j].batch == x->batch) { bd = &t->bands[j]; break; }
    if (!bd) {
      if (!(bd = new_band(c))) return -1;
      *bd = (rep_tl_band){x->t0, x->t1, row, x->layer, x->batch};
    }
    if (x->t0 < bd->t0) bd->t0 = x->t0;
    if (x->t1 > bd->t1) bd->t1 = x->t1;
  }
  return 0;
}

int rep_timeline_collect(ana_db *d, long long run_id, long long first_batch, int n_batches, int max_boxes,
                         rep_timeline *t, char *err, size_t errlen) {
  memset(t, 0, sizeof *t);
  ana_run run;
  if (ana_run_get(d, run_id, &run, err, errlen)) return -1;
  tl_ctx c = {.db = d->db, .t = t};
  t->run_id = run.run_id;
  if (max_boxes <= 0) max_boxes = REP_TL_MAX_BOXES;
  char sql[512];
  long long nk = 0;
  if (has_table(d->db, "CUPTI_ACTIVITY_KIND_KERNEL") && has_table(d->db, "kernel_scope")) {
    snprintf(sql, sizeof sql, "SELECT COUNT(*)%s", k_join);
    nk = q1(d->db, sql, t->run_id, 0, 0);
  }
  if (nk > 0) t->source = REP_TL_SRC_KERNELS;
  else if (q1(d->db, "SELECT COUNT(*) FROM ops WHERE run_id = ?1", t->run_id, 0, 0) > 0) t->source = REP_TL_SRC_OPS;
  else return 0;
  run_range(&c);
  if (t->source == REP_TL_SRC_KERNELS) {
    long long g = q1(d->db, "SELECT globalPid FROM TARGET_INFO_GPU WHERE run_id = ?1 LIMIT 1", t->run_id, 0, -1);
    if (g < 0) g = c.gpid;
    if (g < 0) g = q1(d->db, "SELECT globalPid FROM kernel_scope WHERE run_id = ?1 AND globalPid IS NOT NULL LIMIT 1",
                      t->run_id, 0, -1);
    if (c.gpid < 0) c.gpid = g;
    t->rows_run = q1(d->db, "SELECT COUNT(*) FROM CUPTI_ACTIVITY_KIND_KERNEL AS k LEFT JOIN kernel_scope AS s"
                            " ON s.correlationId = k.correlationId AND s.globalPid IS k.globalPid"
                            " WHERE s.run_id = ?1 OR (s.run_id IS NULL AND k.globalPid = ?2)", t->run_id, g, 0);
    snprintf(sql, sizeof sql, "SELECT MIN(k.start)%s", k_join);
  } else {
    t->rows_run = q1(d->db, "SELECT COUNT(*) FROM ops WHERE run_id = ?1", t->run_id, 0, 0);
    snprintf(sql, sizeof sql, "SELECT MIN(start_ns) FROM ops WHERE run_id = ?1");
  }
  long long first_row = q1(d->db, sql, t->run_id, 0, 0);
  t->origin_ns = c.run_s >= 0 && c.run_s <= first_row ? c.run_s : first_row;

  long long *ids = NULL, *cnt = NULL;
  int nb = 0, rc = -1;
  if (load_batches(&c, &ids, &cnt, &nb)) { tl_fail(err, errlen, "%s: %s", d->path, sqlite3_errmsg(d->db)); goto out; }
  t->n_batches_run = nb;
  if (nb == 0) { rc = 0; goto out; }
  int i0 = 0;
  if (first_batch >= 0) {
    while (i0 < nb && ids[i0] < first_batch) i0++;
    if (i0 == nb) {
      tl_fail(err, errlen, "timeline: run %lld has no batch >= %lld (batches %lld..%lld)", t->run_id, first_batch, ids[0],
              ids[nb - 1]);
      goto out;
    }
  }
  int n = n_batches <= 0 || n_batches > nb - i0 ? nb - i0 : n_batches;
  for (;;) {
    long long s = 0;
    for (int i = i0; i < i0 + n; i++) s += cnt[i];
    if (s <= max_boxes || n == 1) break;
    n--;
  }
  t->n_batches_shown = n;
  t->batch_first = ids[i0];
  t->batch_last = ids[i0 + n - 1];
  long long w0 = 0, w1 = 0;
  if (t->source == REP_TL_SRC_KERNELS) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(d->db, "SELECT MIN(k.start), MAX(k.end) FROM CUPTI_ACTIVITY_KIND_KERNEL AS k JOIN kernel_scope"
                                  " AS s ON s.correlationId = k.correlationId AND s.globalPid IS k.globalPid"
                                  " WHERE s.run_id = ?1 AND s.batch_id BETWEEN ?2 AND ?3", -1, &st, NULL) == SQLITE_OK) {
      sqlite3_bind_int64(st, 1, t->run_id);
      sqlite3_bind_int64(st, 2, t->batch_first);
      sqlite3_bind_int64(st, 3, t->batch_last);
      if (sqlite3_step(st) == SQLITE_ROW) { w0 = sqlite3_column_int64(st, 0); w1 = sqlite3_column_int64(st, 1); }
    }
    sqlite3_finalize(st);
  }
  if (load_rows(&c, t->batch_first, t->batch_last, w0, w1, max_boxes) || finish_boxes(t)) {
    tl_fail(err, errlen, "%s: timeline: %s", d->path, sqlite3_errmsg(d->db));
    goto out;
  }
  /* bands: NVTX layer ranges inside the window's NVTX batch ranges (or the box extent) */
  long long a = -1, b = -1, bmin = 0, bmax = 0;
  for (int i = 0; i < t->n_boxes; i++) {
    if (i == 0 || t->boxes[i].t0 < bmin) bmin = t->boxes[i].t0;
    if (i == 0 || t->boxes[i].t1 > bmax) bmax = t->boxes[i].t1;
  }
  if (c.gpid >= 0 && has_table(d->db, "NVTX_EVENTS")) {
    const char *bq = "SELECT %s FROM NVTX_EVENTS WHERE eventType = 59 AND category = 2 AND int64Value BETWEEN ?1 AND ?2"
                     " AND globalTid / 16777216 = %lld / 16777216";
    char q[512];
    snprintf(q, sizeof q, bq, "MIN(start)", c.gpid);
    a = q1(d->db, q, t->batch_first, t->batch_last, -1);
    snprintf(q, sizeof q, bq, "MAX(end)", c.gpid);
    b = q1(d->db, q, t->batch_first, t->batch_last, -1);
    if (c.run_s >= 0 && a >= 0 && (a < c.run_s || b > c.run_e)) a = b = -1;   /* another run's batches */
  }
  if (a < 0 || b < 0) { a = bmin; b = bmax; }
  int n_nvtx = nvtx_bands(&c, 0, a, b);
  if (n_nvtx < 0) { tl_fail(err, errlen, "%s: timeline: %s", d->path, sqlite3_errmsg(d->db)); goto out; }
  if (n_nvtx > 0) {
    snprintf(t->band_row[0], sizeof t->band_row[0], t->source == REP_TL_SRC_KERNELS ? "NVTX layers (CPU)" : "NVTX layers");
    t->n_band_rows = 1;
  }
  if (t->source == REP_TL_SRC_KERNELS || n_nvtx == 0) {
    snprintf(t->band_row[t->n_band_rows], sizeof t->band_row[0],
             t->source == REP_TL_SRC_KERNELS ? "layers (GPU)" : "layers (ops)");
    if (extent_bands(&c, t->n_band_rows)) { tl_fail(err, errlen, "out of memory"); goto out; }
    t->n_band_rows++;
  }
  qsort(t->bands, (size_t)t->n_bands, sizeof *t->bands, band_cmp);
  /* relative times, window, busy time per category */
  t->t0 = t->t1 = 0;
  for (int i = 0; i < t->n_boxes; i++) {
    rep_tl_box *x = &t->boxes[i];
    x->t0 -= t->origin_ns;
    x->t1 -= t->origin_ns;
    if (x->lane == 0) t->cat_ns[x->cat] += x->t1 - x->t0;
  }
  for (int i = 0; i < t->n_bands; i++) { t->bands[i].t0 -= t->origin_ns; t->bands[i].t1 -= t->origin_ns; }
  for (int i = 0; i < t->n_boxes + t->n_bands; i++) {
    long long lo = i < t->n_boxes ? t->boxes[i].t0 : t->bands[i - t->n_boxes].t0;
    long long hi = i < t->n_boxes ? t->boxes[i].t1 : t->bands[i - t->n_boxes].t1;
    if (i == 0 || lo < t->t0) t->t0 = lo;
    if (i == 0 || hi > t->t1) t->t1 = hi;
  }
  rc = 0;
out:
  free(ids);
  free(cnt);
  if (rc) rep_timeline_free(t);
  return rc;
}
