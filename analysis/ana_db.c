/* ana_db.c — opening a trace DB read-only, run selection and the SQL-aggregated loads
 * (expert_load per layer x expert, routing per label x expert). See ana_db.h. */
#include "analysis/ana_db.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void set_err(char *err, size_t errlen, const char *fmt, const char *a, const char *b) {
  if (err && errlen) snprintf(err, errlen, fmt, a, b);
}

int ana_db_open(ana_db **out, const char *path, char *err, size_t errlen) {
  *out = NULL;
  struct stat st;
  if (!path || !*path) { set_err(err, errlen, "no trace DB path given%s%s", "", ""); return -1; }
  if (stat(path, &st) != 0) {
    set_err(err, errlen, "cannot open trace DB '%s': %s", path, strerror(errno));
    return -1;
  }
  if (S_ISDIR(st.st_mode)) {
    set_err(err, errlen, "cannot open trace DB '%s': %s", path, "is a directory");
    return -1;
  }
  ana_db *d = calloc(1, sizeof *d);
  if (!d) { set_err(err, errlen, "out of memory%s%s", "", ""); return -1; }
  snprintf(d->path, sizeof d->path, "%s", path);
  if (sqlite3_open_v2(path, &d->db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
    set_err(err, errlen, "cannot open trace DB '%s': %s", path, sqlite3_errmsg(d->db));
    ana_db_close(d);
    return -1;
  }
  sqlite3_busy_timeout(d->db, 5000);
  /* Read-only scans of large traces: memory-map the file (fewer read() syscalls on the
   * scattered expert_load/routing pages) and give the page cache 64 MiB. Failure is harmless. */
  sqlite3_exec(d->db, "PRAGMA mmap_size = 1073741824; PRAGMA cache_size = -65536", NULL, NULL, NULL);
  sqlite3_stmt *st_uv = NULL;
  if (sqlite3_prepare_v2(d->db, "PRAGMA user_version", -1, &st_uv, NULL) != SQLITE_OK ||
      sqlite3_step(st_uv) != SQLITE_ROW) {
    /* SQLITE_NOTADB lands here: "file is not a database" */
    set_err(err, errlen, "'%s' is not a moescope trace DB (%s)", path, sqlite3_errmsg(d->db));
    sqlite3_finalize(st_uv);
    ana_db_close(d);
    return -1;
  }
  d->user_version = sqlite3_column_int(st_uv, 0);
  sqlite3_finalize(st_uv);
  int has_runs = 0;
  sqlite3_stmt *q = NULL;
  if (sqlite3_prepare_v2(d->db, "SELECT 1 FROM sqlite_master WHERE type='table' AND name='runs'",
                         -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
    has_runs = 1;
  sqlite3_finalize(q);
  if (!has_runs) {
    set_err(err, errlen, "'%s' is not a moescope trace DB (no runs table)%s", path, "");
    ana_db_close(d);
    return -1;
  }
  if (d->user_version != ANA_SCHEMA_VERSION) {
    char msg[64];
    snprintf(msg, sizeof msg, "%d (this build reads %d)", d->user_version, ANA_SCHEMA_VERSION);
    set_err(err, errlen, "trace DB '%s' has unsupported schema version %s", path, msg);
    ana_db_close(d);
    return -1;
  }
  *out = d;
  return 0;
}

void ana_db_close(ana_db *d) {
  if (!d) return;
  if (d->db) sqlite3_close(d->db);
  free(d);
}

static void col_text(sqlite3_stmt *s, int i, char *dst, size_t n) {
  const unsigned char *t = sqlite3_column_text(s, i);
  snprintf(dst, n, "%s", t ? (const char *)t : "");
}

int ana_run_get(ana_db *d, long long run_id, ana_run *run, char *err, size_t errlen) {
  memset(run, 0, sizeof *run);
  sqlite3_stmt *s = NULL;
  /* Select every column we know by name so extra/missing-order columns do not matter. */
  const char *sql =
    "SELECT run_id, started_at, finished_at, status, model_path, model_sha256, family,"
    " n_layers, n_experts, top_k, n_shared_experts, policy, record_level, device, dtype,"
    " threads, command_line FROM runs WHERE (?1 < 0 OR run_id = ?1) ORDER BY run_id DESC LIMIT 1";
  if (sqlite3_prepare_v2(d->db, sql, -1, &s, NULL) != SQLITE_OK) {
    set_err(err, errlen, "trace DB '%s': cannot read runs: %s", d->path, sqlite3_errmsg(d->db));
    return -1;
  }
  sqlite3_bind_int64(s, 1, run_id);
  int rc = sqlite3_step(s);
  if (rc != SQLITE_ROW) {
    if (rc != SQLITE_DONE) {
      set_err(err, errlen, "trace DB '%s': cannot read runs: %s", d->path, sqlite3_errmsg(d->db));
    } else if (run_id < 0) {
      set_err(err, errlen, "trace DB '%s' has no runs%s", d->path, "");
    } else {
      sqlite3_stmt *r = NULL;
      long long lo = 0, hi = 0;
      if (sqlite3_prepare_v2(d->db, "SELECT MIN(run_id), MAX(run_id) FROM runs", -1, &r, NULL) ==
          SQLITE_OK && sqlite3_step(r) == SQLITE_ROW) {
        lo = sqlite3_column_int64(r, 0); hi = sqlite3_column_int64(r, 1);
      }
      sqlite3_finalize(r);
      char id[128];
      snprintf(id, sizeof id, "%lld (runs in DB: %lld..%lld)", run_id, lo, hi);
      set_err(err, errlen, "trace DB '%s' has no run %s", d->path, id);
    }
    sqlite3_finalize(s);
    return -1;
  }
  run->run_id = sqlite3_column_int64(s, 0);
  col_text(s, 1, run->started_at, sizeof run->started_at);
  col_text(s, 2, run->finished_at, sizeof run->finished_at);
  col_text(s, 3, run->status, sizeof run->status);
  col_text(s, 4, run->model_path, sizeof run->model_path);
  col_text(s, 5, run->model_sha256, sizeof run->model_sha256);
  col_text(s, 6, run->family, sizeof run->family);
  run->n_layers = sqlite3_column_int(s, 7);
  run->n_experts = sqlite3_column_int(s, 8);
  run->top_k = sqlite3_column_int(s, 9);
  run->n_shared_experts = sqlite3_column_int(s, 10);
  col_text(s, 11, run->policy, sizeof run->policy);
  if (sqlite3_column_type(s, 12) == SQLITE_INTEGER) {   /* tolerate the enum stored as int */
    static const char *names[] = {"off", "counts", "topk", "full"};
    int lv = sqlite3_column_int(s, 12);
    snprintf(run->record_level, sizeof run->record_level, "%s",
             lv >= 0 && lv <= 3 ? names[lv] : "?");
  } else {
    col_text(s, 12, run->record_level, sizeof run->record_level);
  }
  col_text(s, 13, run->device, sizeof run->device);
  col_text(s, 14, run->dtype, sizeof run->dtype);
  run->threads = sqlite3_column_int(s, 15);
  col_text(s, 16, run->command_line, sizeof run->command_line);
  sqlite3_finalize(s);
  return 0;
}

int ana_run_has_rows(ana_db *d, long long run_id, const char *table) {
  char sql[160];
  snprintf(sql, sizeof sql, "SELECT 1 FROM \"%s\" WHERE run_id = ? LIMIT 1", table);
  sqlite3_stmt *s = NULL;
  int has = 0;
  if (sqlite3_prepare_v2(d->db, sql, -1, &s, NULL) == SQLITE_OK) {
    sqlite3_bind_int64(s, 1, run_id);
    has = sqlite3_step(s) == SQLITE_ROW;
  }
  sqlite3_finalize(s);
  return has;
}

/* Index of layer in a sorted id list (binary search), -1 when absent. */
static int layer_index(const int *ids, int n, int layer) {
  int lo = 0, hi = n - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    if (ids[mid] == layer) return mid;
    if (ids[mid] < layer) lo = mid + 1; else hi = mid - 1;
  }
  return -1;
}

/* Distinct layers and max expert id of a table for a run: fills ids (malloc), n, max_e. */
static int layer_list(ana_db *d, long long run_id, const char *table, int layer_filter,
                      int **ids, int *n, int *max_e, char *err, size_t errlen) {
  char sql[256];
  snprintf(sql, sizeof sql, "SELECT layer, MAX(expert) FROM \"%s\" WHERE run_id = ?1 AND expert >= 0"
           " AND (?2 < 0 OR layer = ?2) GROUP BY layer ORDER BY layer", table);
  sqlite3_stmt *s = NULL;
  *ids = NULL; *n = 0; *max_e = -1;
  if (sqlite3_prepare_v2(d->db, sql, -1, &s, NULL) != SQLITE_OK) {
    set_err(err, errlen, "trace DB: cannot read %s: %s", table, sqlite3_errmsg(d->db));
    return -1;
  }
  sqlite3_bind_int64(s, 1, run_id);
  sqlite3_bind_int(s, 2, layer_filter);
  int cap = 0, rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    if (*n == cap) {
      cap = cap ? cap * 2 : 16;
      int *nb = realloc(*ids, (size_t)cap * sizeof **ids);
      if (!nb) { sqlite3_finalize(s); free(*ids); *ids = NULL; return -1; }
      *ids = nb;
    }
    (*ids)[(*n)++] = sqlite3_column_int(s, 0);
    int me = sqlite3_column_int(s, 1);
    if (me > *max_e) *max_e = me;
  }
  sqlite3_finalize(s);
  if (rc != SQLITE_DONE) {
    set_err(err, errlen, "trace DB: cannot read %s: %s", table, sqlite3_errmsg(d->db));
    free(*ids); *ids = NULL; *n = 0;
    return -1;
  }
  return 0;
}

int ana_load_get(ana_db *d, const ana_run *run, ana_load *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  int max_e;
  if (layer_list(d, run->run_id, "expert_load", -1, &out->layer_ids, &out->n_layers, &max_e,
                 err, errlen) != 0)
    return -1;
  if (out->n_layers == 0) {
    char id[32];
    snprintf(id, sizeof id, "%lld", run->run_id);
    set_err(err, errlen, "run %s has no expert_load rows (nothing was recorded%s)", id,
            run->status[0] ? "; was the run interrupted?" : "");
    ana_load_free(out);
    return -1;
  }
  out->n_experts = run->n_experts > max_e + 1 ? run->n_experts : max_e + 1;
  size_t cells = (size_t)out->n_layers * (size_t)out->n_experts;
  out->tokens = calloc(cells, sizeof *out->tokens);
  out->weight_sum = calloc(cells, sizeof *out->weight_sum);
  out->dropped = calloc(cells, sizeof *out->dropped);
  if (!out->tokens || !out->weight_sum || !out->dropped) {
    set_err(err, errlen, "out of memory%s%s", "", "");
    ana_load_free(out);
    return -1;
  }
  sqlite3_stmt *s = NULL;
  /* Summed in C over one sequential scan: through the (run_id, layer, expert) index SQLite
   * would fetch every row by rowid from pages all over the file (0.8 s vs 0.03 s for 3e5 rows). */
  const char *sql = "SELECT layer, expert, tokens, weight_sum, dropped"
                    " FROM expert_load NOT INDEXED WHERE run_id = ? AND expert >= 0";
  if (sqlite3_prepare_v2(d->db, sql, -1, &s, NULL) != SQLITE_OK) {
    set_err(err, errlen, "trace DB: cannot read expert_load: %s%s", sqlite3_errmsg(d->db), "");
    ana_load_free(out);
    return -1;
  }
  sqlite3_bind_int64(s, 1, run->run_id);
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    int li = layer_index(out->layer_ids, out->n_layers, sqlite3_column_int(s, 0));
    int e = sqlite3_column_int(s, 1);
    if (li < 0 || e < 0 || e >= out->n_experts) continue;
    size_t c = (size_t)li * (size_t)out->n_experts + (size_t)e;
    out->tokens[c] += sqlite3_column_int64(s, 2);
    out->weight_sum[c] += sqlite3_column_double(s, 3);
    out->dropped[c] += sqlite3_column_int64(s, 4);
  }
  sqlite3_finalize(s);
  if (rc != SQLITE_DONE) {
    set_err(err, errlen, "trace DB: cannot read expert_load: %s%s", sqlite3_errmsg(d->db), "");
    ana_load_free(out);
    return -1;
  }
  return 0;
}

void ana_load_free(ana_load *ld) {
  if (!ld) return;
  free(ld->layer_ids); free(ld->tokens); free(ld->weight_sum); free(ld->dropped);
  memset(ld, 0, sizeof *ld);
}

static int label_index(char ***labels, int *n, int *cap, const char *lab) {
  for (int i = 0; i < *n; i++)
    if (strcmp((*labels)[i], lab) == 0) return i;
  if (*n == *cap) {
    int nc = *cap ? *cap * 2 : 8;
    char **nb = realloc(*labels, (size_t)nc * sizeof *nb);
    if (!nb) return -1;
    *labels = nb; *cap = nc;
  }
  (*labels)[*n] = strdup(lab);
  if (!(*labels)[*n]) return -1;
  return (*n)++;
}

static int cmp_ll(const void *a, const void *b) {
  long long x = *(const long long *)a, y = *(const long long *)b;
  return (x > y) - (x < y);
}

static int cmp_int(const void *a, const void *b) {
  int x = *(const int *)a, y = *(const int *)b;
  return (x > y) - (x < y);
}

/* seq_id -> label index map (sorted seq ids, binary search). */
typedef struct seqmap { int *seq, *lab; int n; } seqmap;

static int seqmap_find(const seqmap *m, int seq) {
  int lo = 0, hi = m->n - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    if (m->seq[mid] == seq) return m->lab[mid];
    if (m->seq[mid] < seq) lo = mid + 1; else hi = mid - 1;
  }
  return -1;
}

/* Labels of the run: sorted by name; "(unlabelled)" for NULL/empty labels and for seq ids
 * that have no sequences row (added on demand as the unlabelled index). */
static int load_seqmap(ana_db *d, long long run_id, ana_labels *out, seqmap *m, int *unl,
                       char *err, size_t errlen) {
  sqlite3_stmt *s = NULL;
  const char *sql = "SELECT seq_id, COALESCE(NULLIF(label, ''), '(unlabelled)'),"
                    " label IS NOT NULL AND label <> '' FROM sequences WHERE run_id = ?"
                    " AND seq_id BETWEEN 0 AND 2147483647 ORDER BY 2, seq_id";
  if (sqlite3_prepare_v2(d->db, sql, -1, &s, NULL) != SQLITE_OK) {
    set_err(err, errlen, "trace DB: cannot read sequences: %s%s", sqlite3_errmsg(d->db), "");
    return -1;
  }
  sqlite3_bind_int64(s, 1, run_id);
  int cap = 0, lcap = 0, rc;
  *unl = -1;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    if (m->n == cap) {
      cap = cap ? cap * 2 : 64;
      int *a = realloc(m->seq, (size_t)cap * sizeof *a), *b;
      if (a) m->seq = a;
      b = realloc(m->lab, (size_t)cap * sizeof *b);
      if (b) m->lab = b;
      if (!a || !b) { rc = SQLITE_NOMEM; break; }
    }
    const char *lab = (const char *)sqlite3_column_text(s, 1);
    int li = label_index(&out->labels, &out->n_labels, &lcap, lab);   /* rows come sorted */
    if (li < 0) { rc = SQLITE_NOMEM; break; }
    if (sqlite3_column_int(s, 2)) out->has_real_label = 1;
    else *unl = li;
    m->seq[m->n] = sqlite3_column_int(s, 0);
    m->lab[m->n++] = li;
  }
  sqlite3_finalize(s);
  if (rc != SQLITE_DONE) {
    set_err(err, errlen, "trace DB: cannot read sequences: %s%s",
            rc == SQLITE_NOMEM ? "out of memory" : sqlite3_errmsg(d->db), "");
    return -1;
  }
  /* sort (seq, lab) pairs by seq for the lookup; labels < 2^20 */
  long long *pairs = malloc(((size_t)m->n + 1) * sizeof *pairs);
  if (!pairs) { set_err(err, errlen, "out of memory%s%s", "", ""); return -1; }
  for (int i = 0; i < m->n; i++) pairs[i] = (long long)m->seq[i] * 1048576 + m->lab[i];
  qsort(pairs, (size_t)m->n, sizeof *pairs, cmp_ll);
  for (int i = 0; i < m->n; i++) {
    m->seq[i] = (int)(pairs[i] / 1048576);
    m->lab[i] = (int)(pairs[i] % 1048576);
  }
  free(pairs);
  return 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int ana_label_counts(ana_db *d, const ana_run *run, int layer, ana_labels *out,
                     char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  if (!ana_run_has_rows(d, run->run_id, "routing")) {
    char what[160];
    if (layer >= 0) snprintf(what, sizeof what, "layer %d of run %lld", layer, run->run_id);
    else snprintf(what, sizeof what, "run %lld", run->run_id);
    set_err(err, errlen, "no routing rows for %s (record level '%s'; per-label analysis needs"
            " --record topk or full)", what, run->record_level[0] ? run->record_level : "?");
    return 1;
  }
  seqmap m = {0};
  int unl = -1;
  if (load_seqmap(d, run->run_id, out, &m, &unl, err, errlen) != 0) goto fail;
  /* One SQL aggregate per (layer, seq, expert). The GROUP BY uses a single packed integer
   * key (SQLite sorts to group; one int key sorts ~2x faster than three columns, and range
   * filters in WHERE cost ~40% more). seq_id is a 32-bit int in the probe contract; the key
   * is injective for 0 <= expert < 65536 and 0 <= layer < 32768, which is checked in C
   * below (rows outside are rejected as a corrupt DB, never silently merged). */
  sqlite3_stmt *s = NULL;
  const char *sql =
    "SELECT layer, seq_id, expert, COUNT(*) FROM routing WHERE run_id = ?1 AND expert >= 0"
    " AND (?2 < 0 OR layer = ?2)"
    " GROUP BY (layer << 48) | ((seq_id & 4294967295) << 16) | (expert & 65535)";
  if (sqlite3_prepare_v2(d->db, sql, -1, &s, NULL) != SQLITE_OK) {
    set_err(err, errlen, "trace DB: cannot read routing: %s%s", sqlite3_errmsg(d->db), "");
    goto fail;
  }
  sqlite3_bind_int64(s, 1, run->run_id);
  sqlite3_bind_int(s, 2, layer);
  typedef struct { int layer, lab, e; long long n; } row_t;
  row_t *rows = NULL;
  size_t nrows = 0, rcap = 0;
  int rc, max_e = -1, lcap = out->n_labels;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    if (nrows == rcap) {
      rcap = rcap ? rcap * 2 : 1024;
      row_t *nb = realloc(rows, rcap * sizeof *rows);
      if (!nb) { rc = SQLITE_NOMEM; break; }
      rows = nb;
    }
    row_t *r = &rows[nrows++];
    r->layer = sqlite3_column_int(s, 0);
    r->lab = seqmap_find(&m, sqlite3_column_int(s, 1));
    if (r->lab < 0) {           /* routing for a sequence without a sequences row */
      if (unl < 0) {
        unl = label_index(&out->labels, &out->n_labels, &lcap, "(unlabelled)");
        if (unl < 0) { rc = SQLITE_NOMEM; break; }
      }
      r->lab = unl;
    }
    r->e = sqlite3_column_int(s, 2);
    r->n = sqlite3_column_int64(s, 3);
    if (r->e > 65535 || r->layer < 0 || r->layer > 32767) { rc = SQLITE_CORRUPT; break; }
    if (r->e > max_e) max_e = r->e;
  }
  sqlite3_finalize(s);
  if (rc != SQLITE_DONE) {
    set_err(err, errlen, "trace DB: cannot read routing: %s%s",
            rc == SQLITE_NOMEM ? "out of memory" : rc == SQLITE_CORRUPT ?
            "layer or expert id out of range (layer 0..32767, expert 0..65535)" :
            sqlite3_errmsg(d->db), "");
    free(rows);
    goto fail;
  }
  free(m.seq); free(m.lab);
  m.seq = m.lab = NULL;
  if (nrows == 0) {
    snprintf(err, errlen, "no routing rows for layer %d of run %lld", layer, run->run_id);
    free(rows);
    ana_labels_free(out);
    return 1;
  }
  /* layers present */
  int *ids = malloc(nrows * sizeof *ids);
  if (!ids) { free(rows); set_err(err, errlen, "out of memory%s%s", "", ""); goto fail; }
  for (size_t i = 0; i < nrows; i++) ids[i] = rows[i].layer;
  qsort(ids, nrows, sizeof *ids, cmp_int);
  int nl = 0;
  for (size_t i = 0; i < nrows; i++) if (i == 0 || ids[i] != ids[i - 1]) ids[nl++] = ids[i];
  out->layer_ids = ids;
  out->n_layers = nl;
  out->n_experts = run->n_experts > max_e + 1 ? run->n_experts : max_e + 1;
  /* the on-demand "(unlabelled)" may be out of order: sort labels, remap */
  int NL = out->n_labels;
  int *remap = malloc(((size_t)NL + 1) * sizeof *remap);
  char **sorted = malloc(((size_t)NL + 1) * sizeof *sorted);
  size_t per_layer = (size_t)NL * (size_t)out->n_experts;
  out->counts = calloc((size_t)nl * per_layer + 1, sizeof *out->counts);
  if (!remap || !sorted || !out->counts) {
    free(remap); free(sorted); free(rows);
    set_err(err, errlen, "out of memory%s%s", "", "");
    goto fail;
  }
  memcpy(sorted, out->labels, (size_t)NL * sizeof *sorted);
  qsort(sorted, (size_t)NL, sizeof *sorted, cmp_str);
  for (int i = 0; i < NL; i++)
    for (int j = 0; j < NL; j++)
      if (out->labels[i] == sorted[j]) { remap[i] = j; break; }
  free(out->labels);
  out->labels = sorted;
  for (size_t i = 0; i < nrows; i++) {
    int li = layer_index(ids, nl, rows[i].layer);
    out->counts[(size_t)li * per_layer + (size_t)remap[rows[i].lab] * out->n_experts +
                (size_t)rows[i].e] += rows[i].n;
  }
  free(remap);
  free(rows);
  return 0;
fail:
  free(m.seq); free(m.lab);
  ana_labels_free(out);
  return -1;
}

void ana_labels_free(ana_labels *lb) {
  if (!lb) return;
  for (int i = 0; i < lb->n_labels; i++) free(lb->labels[i]);
  free(lb->labels); free(lb->layer_ids); free(lb->counts);
  memset(lb, 0, sizeof *lb);
}
