/* ana_bias.c — the router-bias trajectory of a `bias`-policy run and the per-batch load
 * imbalance it produced (router_bias + expert_load, see ana_bias.h). Three small SQL reads
 * (distinct layers / batches / max expert id), then one scan of each table into dense
 * [layer][batch][expert] arrays; MaxVio per (layer, batch) is computed in C. */
#include "analysis/ana_bias.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int find_ll(const long long *v, int n, long long x) {
  int lo = 0, hi = n - 1;
  while (lo <= hi) {
    int m = (lo + hi) / 2;
    if (v[m] == x) return m;
    if (v[m] < x) lo = m + 1; else hi = m - 1;
  }
  return -1;
}

/* The ascending distinct values of one integer column of router_bias for run (into a
 * malloc'd array); 0, or -1 (err set). */
static int distinct(ana_db *d, long long run, const char *col, long long **out, int *n, char *err, size_t errlen) {
  char sql[160];
  snprintf(sql, sizeof sql, "SELECT DISTINCT %s FROM router_bias WHERE run_id = ? ORDER BY 1", col);
  sqlite3_stmt *s = NULL;
  *out = NULL; *n = 0;
  if (sqlite3_prepare_v2(d->db, sql, -1, &s, NULL) != SQLITE_OK) {
    snprintf(err, errlen, "trace DB: cannot read router_bias: %s", sqlite3_errmsg(d->db));
    return -1;
  }
  sqlite3_bind_int64(s, 1, run);
  int cap = 0, rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    if (*n == cap) {
      cap = cap ? 2 * cap : 64;
      long long *nv = realloc(*out, (size_t)cap * sizeof *nv);
      if (!nv) { sqlite3_finalize(s); snprintf(err, errlen, "out of memory"); return -1; }
      *out = nv;
    }
    (*out)[(*n)++] = sqlite3_column_int64(s, 0);
  }
  sqlite3_finalize(s);
  if (rc != SQLITE_DONE) { snprintf(err, errlen, "trace DB: cannot read router_bias: %s", sqlite3_errmsg(d->db)); return -1; }
  return 0;
}

static long long max_expert(ana_db *d, long long run, const char *table) {
  char sql[160];
  snprintf(sql, sizeof sql, "SELECT MAX(expert) FROM %s WHERE run_id = ?", table);
  sqlite3_stmt *s = NULL;
  long long v = -1;
  if (sqlite3_prepare_v2(d->db, sql, -1, &s, NULL) == SQLITE_OK) {
    sqlite3_bind_int64(s, 1, run);
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL) v = sqlite3_column_int64(s, 0);
  }
  sqlite3_finalize(s);
  return v;
}

void ana_bias_free(ana_bias_traj *t) {
  if (!t) return;
  free(t->layer_ids); free(t->batch_ids); free(t->bias); free(t->load); free(t->slots); free(t->maxvio);
  memset(t, 0, sizeof *t);
}

int ana_bias_trajectory(ana_db *d, long long run_id, ana_bias_traj *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  ana_run run;
  if (ana_run_get(d, run_id, &run, err, errlen) != 0) return -1;
  out->run_id = run.run_id;
  if (!ana_run_has_rows(d, run.run_id, "router_bias")) {   /* also when the table is absent */
    snprintf(err, errlen, "run %lld has no router_bias rows (not routed by --route bias)", run.run_id);
    return 1;
  }
  long long *lays = NULL;
  int nl = 0;
  if (distinct(d, run.run_id, "layer", &lays, &nl, err, errlen) != 0) { free(lays); return -1; }
  if (distinct(d, run.run_id, "batch_id", &out->batch_ids, &out->B, err, errlen) != 0) { free(lays); goto fail; }
  out->L = nl;
  out->layer_ids = malloc((size_t)nl * sizeof *out->layer_ids + 1);
  if (!out->layer_ids) { free(lays); snprintf(err, errlen, "out of memory"); goto fail; }
  for (int i = 0; i < nl; i++) out->layer_ids[i] = (int)lays[i];
  long long me = max_expert(d, run.run_id, "router_bias"), me2 = max_expert(d, run.run_id, "expert_load");
  if (me2 > me) me = me2;
  out->E = run.n_experts > me + 1 ? run.n_experts : (int)(me + 1);
  if (out->E < 1 || out->E > 1 << 20) { free(lays); snprintf(err, errlen, "router_bias: bad expert count %d", out->E); goto fail; }
  size_t LB = (size_t)out->L * out->B, cells = LB * out->E;
  out->bias = malloc(cells * sizeof *out->bias + 8);
  out->load = calloc(cells + 1, sizeof *out->load);
  out->slots = calloc(LB + 1, sizeof *out->slots);
  out->maxvio = malloc(LB * sizeof *out->maxvio + 8);
  if (!out->bias || !out->load || !out->slots || !out->maxvio) { free(lays); snprintf(err, errlen, "out of memory"); goto fail; }
  for (size_t i = 0; i < cells; i++) out->bias[i] = NAN;

  static const char *const sqls[2] = {
    "SELECT layer, batch_id, expert, bias FROM router_bias WHERE run_id = ? AND expert >= 0",
    "SELECT layer, batch_id, expert, tokens FROM expert_load NOT INDEXED WHERE run_id = ? AND expert >= 0"};
  for (int q = 0; q < 2; q++) {
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(d->db, sqls[q], -1, &s, NULL) != SQLITE_OK) {
      snprintf(err, errlen, "trace DB: cannot read %s: %s", q ? "expert_load" : "router_bias", sqlite3_errmsg(d->db));
      free(lays);
      goto fail;
    }
    sqlite3_bind_int64(s, 1, run.run_id);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      int li = find_ll(lays, nl, sqlite3_column_int64(s, 0));
      int b = find_ll(out->batch_ids, out->B, sqlite3_column_int64(s, 1));
      long long e = sqlite3_column_int64(s, 2);
      if (li < 0 || b < 0 || e >= out->E) continue;   /* layers / batches without a bias row */
      size_t c = ana_bias_cell(out, li, b, (int)e);
      if (q == 0) out->bias[c] = sqlite3_column_double(s, 3);
      else out->load[c] += sqlite3_column_int64(s, 3);
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
      snprintf(err, errlen, "trace DB: cannot read %s: %s", q ? "expert_load" : "router_bias", sqlite3_errmsg(d->db));
      free(lays);
      goto fail;
    }
  }
  free(lays);
  for (int li = 0; li < out->L; li++)
    for (int b = 0; b < out->B; b++) {
      const long long *ld = out->load + ana_bias_cell(out, li, b, 0);
      long long tot = 0, mx = 0;
      for (int e = 0; e < out->E; e++) { tot += ld[e]; if (ld[e] > mx) mx = ld[e]; }
      size_t i = (size_t)li * out->B + b;
      out->slots[i] = tot;
      out->maxvio[i] = tot > 0 ? (double)mx * out->E / (double)tot - 1.0 : NAN;
    }
  return 0;
fail:
  ana_bias_free(out);
  return -1;
}
