/* ana_placement.c — expert placement algorithms and the per-batch load they replay
 * (see header). */
#include "analysis/ana_placement.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *algo_names[] = {"none", "greedy", "eplb", "hierarchical"};
const char *ana_place_algo_name(int a) { return a >= 0 && a < 4 ? algo_names[a] : "?"; }
int ana_place_algo_parse(const char *s) {
  for (int i = 0; i < 4; i++) if (!strcmp(s, algo_names[i])) return i;
  return -1;
}

static int perr(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -1;
}

/* Adds R replicas, one at a time, to the expert with the largest load per replica
 * (ties: lower id). cnt[E] starts at 1. */
static void replicate(const double *load, int E, int R, int *cnt) {
  for (int e = 0; e < E; e++) cnt[e] = 1;
  for (int r = 0; r < R; r++) {
    int best = 0;
    for (int e = 1; e < E; e++)
      if (load[e] / cnt[e] > load[best] / cnt[best]) best = e;
    cnt[best]++;
  }
}

typedef struct { double w; int id; } item;
static int cmp_item(const void *a, const void *b) {
  const item *x = a, *y = b;
  if (x->w != y->w) return x->w > y->w ? -1 : 1;
  return x->id - y->id;
}

/* Balanced packing: n items into `packs` packs of exactly n/packs items, heaviest first
 * onto the lightest pack with room that does not already hold a replica of the same
 * logical expert (log[i]; a second copy on one GPU would serve nothing), falling back to
 * the lightest pack with room. pack_of[i] receives each item's pack. */
static void pack(const double *w, const int *log, int n, int packs, int *pack_of) {
  item *it = malloc(sizeof(item) * (size_t)n);
  double *pl = calloc((size_t)packs, sizeof(double));
  int *pc = calloc((size_t)packs, sizeof(int)), cap = n / packs;
  for (int i = 0; i < n; i++) { it[i].w = w[i]; it[i].id = i; }
  qsort(it, (size_t)n, sizeof(item), cmp_item);
  for (int i = 0; i < n; i++) {
    int best = -1, fallback = -1;
    for (int p = 0; p < packs; p++) {
      if (pc[p] >= cap) continue;
      if (fallback < 0 || pl[p] < pl[fallback]) fallback = p;
      int dup = 0;
      for (int j = 0; j < i && log && !dup; j++)
        dup = pack_of[it[j].id] == p && log[it[j].id] == log[it[i].id];
      if (!dup && (best < 0 || pl[p] < pl[best])) best = p;
    }
    if (best < 0) best = fallback;
    pack_of[it[i].id] = best;
    pl[best] += it[i].w;
    pc[best]++;
  }
  free(it); free(pl); free(pc);
}

/* Builds phy2log from items (logical ids) and their GPU, slots ordered by GPU. */
static void lay_out(ana_placement *p, const int *item_log, const int *item_gpu, int n_items) {
  int k = 0;
  for (int g = 0; g < p->n_gpus; g++)
    for (int i = 0; i < n_items; i++)
      if (item_gpu[i] == g) p->phy2log[k++] = item_log[i];
}

static int finish(ana_placement *p) {
  int E = p->n_experts;
  for (int e = 0; e < E; e++) p->logcnt[e] = 0;
  for (int i = 0; i < p->n_phy; i++) p->logcnt[p->phy2log[i]]++;
  p->max_rep = 1;
  for (int e = 0; e < E; e++) if (p->logcnt[e] > p->max_rep) p->max_rep = p->logcnt[e];
  p->log2phy = malloc(sizeof(int) * (size_t)E * p->max_rep);
  if (!p->log2phy) return -1;
  for (int i = 0; i < E * p->max_rep; i++) p->log2phy[i] = -1;
  int *fill = calloc((size_t)E, sizeof(int));
  for (int i = 0; i < p->n_phy; i++) {
    int e = p->phy2log[i];
    p->log2phy[e * p->max_rep + fill[e]++] = i;
  }
  free(fill);
  return 0;
}

/* Replicate experts [lo, lo+n) to `slots` physical experts and pack them onto `gpus`
 * GPUs starting at GPU g0; appends items. */
static void place_block(const double *load, int lo, int n, int slots, int gpus, int g0,
                        int *item_log, int *item_gpu, int *n_items) {
  int *cnt = malloc(sizeof(int) * (size_t)n);
  replicate(load + lo, n, slots - n, cnt);
  double *w = malloc(sizeof(double) * (size_t)slots);
  int *lg = malloc(sizeof(int) * (size_t)slots), *pk = malloc(sizeof(int) * (size_t)slots), k = 0;
  for (int e = 0; e < n; e++)
    for (int c = 0; c < cnt[e]; c++) { w[k] = load[lo + e] / cnt[e]; lg[k] = lo + e; k++; }
  pack(w, lg, slots, gpus, pk);
  for (int i = 0; i < slots; i++) { item_log[*n_items] = lg[i]; item_gpu[*n_items] = g0 + pk[i]; (*n_items)++; }
  free(cnt); free(w); free(lg); free(pk);
}

int ana_place(const double *load, int E, int G, int N, int R, int n_groups, int algo, ana_placement *p,
              char *err, size_t errlen) {
  memset(p, 0, sizeof *p);
  if (E <= 0 || G <= 0 || N <= 0 || R < 0) return perr(err, errlen, "placement: sizes must be positive");
  if (algo == ANA_PLACE_NONE || algo == ANA_PLACE_GREEDY) R = 0;
  if (G % N) return perr(err, errlen, "placement: %d GPUs do not split evenly over %d nodes", G, N);
  if ((E + R) % G)
    return perr(err, errlen, "placement: %d experts + %d replicas = %d physical experts do not split evenly over %d GPUs",
                E, R, E + R, G);
  if (n_groups <= 0) n_groups = N;
  if (algo == ANA_PLACE_HIER && (E % n_groups || n_groups % N))
    return perr(err, errlen, "placement: hierarchical needs experts (%d) divisible by groups (%d) and groups by nodes (%d)",
                E, n_groups, N);
  p->n_experts = E; p->n_gpus = G; p->n_nodes = N; p->n_phy = E + R;
  p->phy2log = malloc(sizeof(int) * (size_t)p->n_phy);
  p->logcnt = malloc(sizeof(int) * (size_t)E);
  int *item_log = malloc(sizeof(int) * (size_t)p->n_phy), *item_gpu = malloc(sizeof(int) * (size_t)p->n_phy);
  int n_items = 0, per_gpu = p->n_phy / G;
  if (algo == ANA_PLACE_NONE) {
    for (int e = 0; e < E; e++) { item_log[n_items] = e; item_gpu[n_items++] = e / per_gpu; }
  } else if (algo == ANA_PLACE_GREEDY || algo == ANA_PLACE_EPLB) {
    place_block(load, 0, E, p->n_phy, G, 0, item_log, item_gpu, &n_items);
  } else {
    /* groups -> nodes (balanced packing of group loads), then per node: replicas + GPUs */
    int gs = E / n_groups, gpn = G / N, spn = p->n_phy / N;
    if (spn % gpn || spn < (n_groups / N) * gs) {
      free(item_log); free(item_gpu); ana_placement_free(p);
      return perr(err, errlen, "placement: %d physical experts per node do not fit the node's experts and GPUs", spn);
    }
    double *gl = calloc((size_t)n_groups, sizeof(double));
    int *gnode = malloc(sizeof(int) * (size_t)n_groups);
    for (int e = 0; e < E; e++) gl[e / gs] += load[e];
    pack(gl, NULL, n_groups, N, gnode);
    /* the experts of each node, remapped contiguously for place_block */
    double *nl = malloc(sizeof(double) * (size_t)E);
    int *nmap = malloc(sizeof(int) * (size_t)E);
    for (int node = 0; node < N; node++) {
      int m = 0;
      for (int g = 0; g < n_groups; g++)
        if (gnode[g] == node)
          for (int e = g * gs; e < (g + 1) * gs; e++) { nl[m] = load[e]; nmap[m] = e; m++; }
      int start = n_items;
      place_block(nl, 0, m, spn, gpn, node * gpn, item_log, item_gpu, &n_items);
      for (int i = start; i < n_items; i++) item_log[i] = nmap[item_log[i]];
    }
    free(gl); free(gnode); free(nl); free(nmap);
  }
  lay_out(p, item_log, item_gpu, n_items);
  free(item_log); free(item_gpu);
  if (finish(p)) { ana_placement_free(p); return perr(err, errlen, "placement: out of memory"); }
  return 0;
}

void ana_placement_free(ana_placement *p) {
  free(p->phy2log); free(p->logcnt); free(p->log2phy);
  memset(p, 0, sizeof *p);
}

void ana_place_gpu_loads(const ana_placement *p, const double *load, double *gl) {
  int per = p->n_phy / p->n_gpus;
  for (int g = 0; g < p->n_gpus; g++) gl[g] = 0;
  for (int i = 0; i < p->n_phy; i++) {
    int e = p->phy2log[i];
    gl[i / per] += load[e] / p->logcnt[e];
  }
}

double ana_place_balancedness(const double *v, int n) {
  double s = 0, mx = 0;
  for (int i = 0; i < n; i++) { s += v[i]; if (v[i] > mx) mx = v[i]; }
  return mx > 0 ? s / n / mx : 1.0;
}

double ana_place_cross_node(const ana_placement *p, const double *load) {
  if (p->n_nodes <= 1) return 0;
  int per = p->n_phy / p->n_gpus, gpn = p->n_gpus / p->n_nodes;
  double tot = 0, cross = 0;
  char *on = malloc((size_t)p->n_nodes);
  for (int e = 0; e < p->n_experts; e++) {
    memset(on, 0, (size_t)p->n_nodes);
    int nodes = 0;
    for (int r = 0; r < p->max_rep; r++) {
      int s = p->log2phy[e * p->max_rep + r];
      if (s < 0) continue;
      int node = s / per / gpn;
      if (!on[node]) { on[node] = 1; nodes++; }
    }
    tot += load[e];
    cross += load[e] * (1.0 - (double)nodes / p->n_nodes);
  }
  free(on);
  return tot > 0 ? cross / tot : 0;
}

int ana_placement_load(ana_db *d, const ana_run *run, ana_batch_load *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  sqlite3_stmt *st;
  const char *q1 = "SELECT COUNT(DISTINCT batch_id), COUNT(DISTINCT layer), MAX(expert) FROM expert_load WHERE run_id=?";
  if (sqlite3_prepare_v2(d->db, q1, -1, &st, NULL) != SQLITE_OK)
    return perr(err, errlen, "%s: %s", d->path, sqlite3_errmsg(d->db));
  sqlite3_bind_int64(st, 1, run->run_id);
  if (sqlite3_step(st) == SQLITE_ROW) {
    out->n_batches = sqlite3_column_int(st, 0);
    out->n_layers = sqlite3_column_int(st, 1);
    out->n_experts = sqlite3_column_int(st, 2) + 1;
  }
  sqlite3_finalize(st);
  if (run->n_experts > out->n_experts) out->n_experts = run->n_experts;
  if (out->n_batches == 0 || out->n_layers == 0)
    return perr(err, errlen, "%s: run %lld has no expert_load rows", d->path, run->run_id);
  if ((double)out->n_batches * out->n_layers * out->n_experts > 5e8)
    return perr(err, errlen, "%s: run %lld: too many batches x layers x experts for the replay", d->path, run->run_id);
  out->layer_ids = malloc(sizeof(int) * (size_t)out->n_layers);
  out->load = calloc((size_t)out->n_batches * out->n_layers * out->n_experts, sizeof(double));
  if (!out->layer_ids || !out->load) { ana_batch_load_free(out); return perr(err, errlen, "out of memory"); }
  const char *q2 = "SELECT DISTINCT layer FROM expert_load WHERE run_id=? ORDER BY layer";
  sqlite3_prepare_v2(d->db, q2, -1, &st, NULL);
  sqlite3_bind_int64(st, 1, run->run_id);
  for (int i = 0; sqlite3_step(st) == SQLITE_ROW && i < out->n_layers; i++) out->layer_ids[i] = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  /* dense batch index via DENSE_RANK over batch_id */
  const char *q3 = "SELECT DENSE_RANK() OVER (ORDER BY batch_id) - 1, layer, expert, SUM(tokens) FROM expert_load "
                   "WHERE run_id=? GROUP BY batch_id, layer, expert";
  if (sqlite3_prepare_v2(d->db, q3, -1, &st, NULL) != SQLITE_OK) {
    ana_batch_load_free(out);
    return perr(err, errlen, "%s: %s", d->path, sqlite3_errmsg(d->db));
  }
  sqlite3_bind_int64(st, 1, run->run_id);
  while (sqlite3_step(st) == SQLITE_ROW) {
    int b = sqlite3_column_int(st, 0), layer = sqlite3_column_int(st, 1), e = sqlite3_column_int(st, 2);
    int li = 0;
    while (li < out->n_layers && out->layer_ids[li] != layer) li++;
    if (b < 0 || b >= out->n_batches || li == out->n_layers || e < 0 || e >= out->n_experts) continue;
    out->load[((size_t)b * out->n_layers + li) * out->n_experts + e] = sqlite3_column_double(st, 3);
  }
  sqlite3_finalize(st);
  return 0;
}

void ana_batch_load_free(ana_batch_load *b) {
  free(b->layer_ids); free(b->load);
  memset(b, 0, sizeof *b);
}
