/* ana_compare.c — run-vs-run comparison over the trace DB (see header). Per-token data
 * (token streams, routing rows) is read in key order from both runs and merged with two
 * cursors; everything else is SQL aggregates. */
#include "analysis/ana_compare.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cerr(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -1;
}

static sqlite3_stmt *prep(ana_db *d, const char *sql, long long run, char *err, size_t errlen) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(d->db, sql, -1, &st, NULL) != SQLITE_OK) {
    cerr(err, errlen, "%s: %s", d->path, sqlite3_errmsg(d->db));
    return NULL;
  }
  sqlite3_bind_int64(st, 1, run);
  return st;
}

/* token streams must be identical */
static int check_tokens(ana_db *da, long long ra, ana_db *db, long long rb, long long *n, char *err, size_t errlen) {
  const char *q = "SELECT seq_id, pos, token_id FROM tokens WHERE run_id=? ORDER BY seq_id, pos";
  sqlite3_stmt *a = prep(da, q, ra, err, errlen), *b = a ? prep(db, q, rb, err, errlen) : NULL;
  if (!a || !b) { sqlite3_finalize(a); return -1; }
  int rc = 0;
  *n = 0;
  for (;;) {
    int sa = sqlite3_step(a), sb = sqlite3_step(b);
    if (sa != SQLITE_ROW && sb != SQLITE_ROW) break;
    if (sa != SQLITE_ROW || sb != SQLITE_ROW) {
      rc = cerr(err, errlen, "token streams differ: run %lld has %s tokens than run %lld (compare needs the same inputs)",
                ra, sa == SQLITE_ROW ? "more" : "fewer", rb);
      break;
    }
    for (int c = 0; c < 3; c++)
      if (sqlite3_column_int64(a, c) != sqlite3_column_int64(b, c)) {
        rc = cerr(err, errlen, "token streams differ at seq %lld pos %lld (compare needs the same inputs)",
                  (long long)sqlite3_column_int64(a, 0), (long long)sqlite3_column_int64(a, 1));
        break;
      }
    if (rc) break;
    (*n)++;
  }
  sqlite3_finalize(a);
  sqlite3_finalize(b);
  if (rc == 0 && *n == 0) rc = cerr(err, errlen, "runs %lld and %lld recorded no tokens", ra, rb);
  return rc;
}

static int quality(ana_db *d, long long run, ana_cmp_quality *q, int side, char *err, size_t errlen) {
  const char *sql = "SELECT COALESCE(s.label, '(unlabelled)'), SUM(t.nll), COUNT(t.nll) FROM tokens t "
                    "LEFT JOIN sequences s ON s.run_id=t.run_id AND s.seq_id=t.seq_id WHERE t.run_id=? "
                    "GROUP BY 1 ORDER BY 1";
  sqlite3_stmt *st = prep(d, sql, run, err, errlen);
  if (!st) return -1;
  double tot = 0;
  long long cnt = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    const char *lab = (const char *)sqlite3_column_text(st, 0);
    int i = 0;
    while (i < q->n_labels && strcmp(q->labels[i], lab)) i++;
    if (i == q->n_labels) {
      q->labels = realloc(q->labels, sizeof(char *) * (size_t)(i + 1));
      q->ppl_a = realloc(q->ppl_a, sizeof(double) * (size_t)(i + 1));
      q->ppl_b = realloc(q->ppl_b, sizeof(double) * (size_t)(i + 1));
      q->scored = realloc(q->scored, sizeof(long long) * (size_t)(i + 1));
      q->labels[i] = strdup(lab);
      q->ppl_a[i] = q->ppl_b[i] = NAN;
      q->scored[i] = 0;
      q->n_labels++;
    }
    double s = sqlite3_column_double(st, 1);
    long long c = sqlite3_column_int64(st, 2);
    (side ? q->ppl_b : q->ppl_a)[i] = c ? exp(s / c) : NAN;
    q->scored[i] = c;
    tot += s;
    cnt += c;
  }
  sqlite3_finalize(st);
  if (side) q->ppl_all_b = cnt ? exp(tot / cnt) : NAN;
  else q->ppl_all_a = cnt ? exp(tot / cnt) : NAN;
  return 0;
}

static int layer_index(const ana_compare *c, int layer) {
  for (int i = 0; i < c->n_layers; i++) if (c->layer_ids[i] == layer) return i;
  return -1;
}

/* one (seq, pos, layer) group of routing rows */
typedef struct grp { long long seq, pos; int layer, n, ex[64]; double w[64]; int top; } grp;

static int next_group(sqlite3_stmt *st, int *state, grp *g) {
  /* *state: 0 = need step, 1 = current row pending, 2 = done */
  if (*state == 0) *state = sqlite3_step(st) == SQLITE_ROW ? 1 : 2;
  if (*state == 2) return 0;
  g->seq = sqlite3_column_int64(st, 0);
  g->pos = sqlite3_column_int64(st, 1);
  g->layer = sqlite3_column_int(st, 2);
  g->n = 0;
  g->top = -1;
  while (*state == 1 && sqlite3_column_int64(st, 0) == g->seq && sqlite3_column_int64(st, 1) == g->pos &&
         sqlite3_column_int(st, 2) == g->layer) {
    if (g->n < 64) {
      g->ex[g->n] = sqlite3_column_int(st, 4);
      g->w[g->n] = sqlite3_column_double(st, 5);
      if (sqlite3_column_int(st, 3) == 0) g->top = g->ex[g->n];
      g->n++;
    }
    *state = sqlite3_step(st) == SQLITE_ROW ? 1 : 2;
  }
  return 1;
}

static int cmp_key(const grp *a, const grp *b) {
  if (a->seq != b->seq) return a->seq < b->seq ? -1 : 1;
  if (a->pos != b->pos) return a->pos < b->pos ? -1 : 1;
  return a->layer < b->layer ? -1 : a->layer > b->layer;
}

static int routing_agreement(ana_db *da, long long ra, ana_db *db, long long rb, ana_compare *c, char *err, size_t errlen) {
  const char *q = "SELECT seq_id, pos, layer, slot, expert, weight FROM routing WHERE run_id=? ORDER BY seq_id, pos, layer, slot";
  sqlite3_stmt *a = prep(da, q, ra, err, errlen), *b = a ? prep(db, q, rb, err, errlen) : NULL;
  if (!a || !b) { sqlite3_finalize(a); return -1; }
  int L = c->n_layers;
  double *sx = calloc((size_t)L * 5, sizeof(double)), *cnt = calloc((size_t)L, sizeof(double));
  double *ka = calloc((size_t)L, sizeof(double)), *kb = calloc((size_t)L, sizeof(double)), *n = calloc((size_t)L, sizeof(double));
  double *pairs = calloc((size_t)L, sizeof(double));
  int s1 = 0, s2 = 0, h1, h2;
  grp ga, gb;
  h1 = next_group(a, &s1, &ga);
  h2 = next_group(b, &s2, &gb);
  while (h1 && h2) {
    int k = cmp_key(&ga, &gb);
    if (k < 0) { h1 = next_group(a, &s1, &ga); continue; }
    if (k > 0) { h2 = next_group(b, &s2, &gb); continue; }
    int li = layer_index(c, ga.layer);
    if (li >= 0) {
      int inter = 0;
      for (int i = 0; i < ga.n; i++)
        for (int j = 0; j < gb.n; j++) if (ga.ex[i] == gb.ex[j]) inter++;
      int uni = ga.n + gb.n - inter;
      c->jaccard[li] += uni ? (double)inter / uni : 1.0;
      c->top1[li] += ga.top >= 0 && ga.top == gb.top;
      ka[li] += ga.n;
      kb[li] += gb.n;
      n[li] += 1;
      /* weight pairs over the union */
      double *S = sx + (size_t)li * 5;
      for (int i = 0; i < ga.n; i++) {
        double wb = 0;
        for (int j = 0; j < gb.n; j++) if (gb.ex[j] == ga.ex[i]) wb = gb.w[j];
        S[0] += ga.w[i]; S[1] += wb; S[2] += ga.w[i] * ga.w[i]; S[3] += wb * wb; S[4] += ga.w[i] * wb; pairs[li]++;
      }
      for (int j = 0; j < gb.n; j++) {
        int in_a = 0;
        for (int i = 0; i < ga.n; i++) if (ga.ex[i] == gb.ex[j]) in_a = 1;
        if (!in_a) { S[1] += gb.w[j]; S[3] += gb.w[j] * gb.w[j]; pairs[li]++; }
      }
    }
    h1 = next_group(a, &s1, &ga);
    h2 = next_group(b, &s2, &gb);
  }
  for (int li = 0; li < L; li++) {
    double m = n[li];
    c->jaccard[li] = m ? c->jaccard[li] / m : NAN;
    c->top1[li] = m ? c->top1[li] / m : NAN;
    c->mean_k_a[li] = m ? ka[li] / m : NAN;
    c->mean_k_b[li] = m ? kb[li] / m : NAN;
    double *S = sx + (size_t)li * 5, P = pairs[li];
    double va = S[2] / P - (S[0] / P) * (S[0] / P), vb = S[3] / P - (S[1] / P) * (S[1] / P);
    double cov = S[4] / P - (S[0] / P) * (S[1] / P);
    c->wcorr[li] = P > 1 && va > 0 && vb > 0 ? cov / sqrt(va * vb) : NAN;
  }
  free(sx); free(cnt); free(ka); free(kb); free(n); free(pairs);
  sqlite3_finalize(a);
  sqlite3_finalize(b);
  return 0;
}

/* KL(P_A || P_B) and argmax agreement over positions sampled in both runs (logits_sample). */
static void next_token_agreement(ana_db *da, long long ra, ana_db *db, long long rb, ana_compare *c) {
  c->kl_mean = c->next_top1 = NAN;
  c->n_logit_pos = 0;
  const char *q = "SELECT seq_id, pos, logits FROM logits_sample WHERE run_id=? ORDER BY seq_id, pos";
  sqlite3_stmt *a = prep(da, q, ra, NULL, 0), *b = a ? prep(db, q, rb, NULL, 0) : NULL;
  if (!a || !b) { sqlite3_finalize(a); return; }
  double kl = 0, agree = 0;
  int ha = sqlite3_step(a) == SQLITE_ROW, hb = sqlite3_step(b) == SQLITE_ROW;
  while (ha && hb) {
    long long ka = sqlite3_column_int64(a, 0) * 4294967296LL + sqlite3_column_int64(a, 1);
    long long kb = sqlite3_column_int64(b, 0) * 4294967296LL + sqlite3_column_int64(b, 1);
    if (ka < kb) { ha = sqlite3_step(a) == SQLITE_ROW; continue; }
    if (kb < ka) { hb = sqlite3_step(b) == SQLITE_ROW; continue; }
    int na = sqlite3_column_bytes(a, 2), nb = sqlite3_column_bytes(b, 2);
    const float *za = sqlite3_column_blob(a, 2), *zb = sqlite3_column_blob(b, 2);
    if (na == nb && na >= 4 && za && zb) {
      int V = na / 4, am = 0, bm = 0;
      double mxa = za[0], mxb = zb[0], sa = 0, sb = 0, k = 0;
      for (int i = 1; i < V; i++) {
        if (za[i] > mxa) { mxa = za[i]; am = i; }
        if (zb[i] > mxb) { mxb = zb[i]; bm = i; }
      }
      for (int i = 0; i < V; i++) { sa += exp(za[i] - mxa); sb += exp(zb[i] - mxb); }
      double la = mxa + log(sa), lb = mxb + log(sb);
      for (int i = 0; i < V; i++) {
        double lpa = za[i] - la, lpb = zb[i] - lb;
        k += exp(lpa) * (lpa - lpb);
      }
      kl += k;
      agree += am == bm;
      c->n_logit_pos++;
    }
    ha = sqlite3_step(a) == SQLITE_ROW;
    hb = sqlite3_step(b) == SQLITE_ROW;
  }
  sqlite3_finalize(a);
  sqlite3_finalize(b);
  if (c->n_logit_pos) { c->kl_mean = kl / c->n_logit_pos; c->next_top1 = agree / c->n_logit_pos; }
}

const char *ana_cost_src_name(int src) { return src == ANA_COST_KERNELS ? "gpu kernels" : "cpu ops"; }

static const char k_kernel_join[] =
  " FROM CUPTI_ACTIVITY_KIND_KERNEL AS k JOIN kernel_scope AS s"
  " ON s.correlationId = k.correlationId AND s.globalPid IS k.globalPid WHERE s.run_id = ?";

int ana_run_has_kernels(ana_db *d, long long run) {
  char sql[256];
  snprintf(sql, sizeof sql, "SELECT 1%s LIMIT 1", k_kernel_join);
  sqlite3_stmt *st = prep(d, sql, run, NULL, 0);   /* NULL: a DB without the profiler tables */
  int has = st && sqlite3_step(st) == SQLITE_ROW;
  sqlite3_finalize(st);
  return has;
}

/* Time per token, total and per layer, from GPU kernels (each kernel has one scope: all
 * count) or from the ops timers (expert rows nest inside experts: left out). */
static void cost(ana_db *d, long long run, long long n_tokens, ana_compare *c, int side) {
  double *per_layer = side ? c->layer_ns_b : c->layer_ns_a;
  for (int i = 0; i < c->n_layers; i++) per_layer[i] = NAN;
  double total = NAN;
  char sql[320];
  if (c->cost_src == ANA_COST_KERNELS) snprintf(sql, sizeof sql, "SELECT s.layer, SUM(k.end - k.start)%s GROUP BY s.layer", k_kernel_join);
  else snprintf(sql, sizeof sql, "SELECT layer, SUM(end_ns - start_ns) FROM ops WHERE run_id=? AND op != 'expert' GROUP BY layer");
  sqlite3_stmt *st = prep(d, sql, run, NULL, 0);
  if (st) {
    while (sqlite3_step(st) == SQLITE_ROW) {
      double ns = sqlite3_column_double(st, 1);
      total = isnan(total) ? ns : total + ns;
      int li = sqlite3_column_type(st, 0) == SQLITE_NULL ? -1 : layer_index(c, sqlite3_column_int(st, 0));
      if (li >= 0) per_layer[li] = ns / (double)n_tokens;
    }
    sqlite3_finalize(st);
  }
  if (side) c->ns_per_token_b = total / (double)n_tokens;
  else c->ns_per_token_a = total / (double)n_tokens;
}

int ana_compare_runs(ana_db *da, long long run_a, ana_db *db, long long run_b, ana_compare *c, char *err, size_t errlen) {
  return ana_compare_runs_src(da, run_a, db, run_b, ANA_COST_AUTO, c, err, errlen);
}

int ana_compare_runs_src(ana_db *da, long long run_a, ana_db *db, long long run_b, int cost_src, ana_compare *c,
                         char *err, size_t errlen) {
  memset(c, 0, sizeof *c);
  if (ana_run_get(da, run_a, &c->run_a, err, errlen) || ana_run_get(db, run_b, &c->run_b, err, errlen)) return -1;
  if (da == db && c->run_a.run_id == c->run_b.run_id) return cerr(err, errlen, "compare: both sides are run %lld", c->run_a.run_id);
  if (check_tokens(da, c->run_a.run_id, db, c->run_b.run_id, &c->n_tokens, err, errlen)) return -1;
  ana_load la, lb;
  if (ana_load_get(da, &c->run_a, &la, err, errlen)) return -1;
  if (ana_load_get(db, &c->run_b, &lb, err, errlen)) { ana_load_free(&la); return -1; }
  int rc = 0;
  if (la.n_layers != lb.n_layers || la.n_experts != lb.n_experts) {
    rc = cerr(err, errlen, "compare: the runs have different MoE shapes (%d x %d vs %d x %d layers x experts)",
              la.n_layers, la.n_experts, lb.n_layers, lb.n_experts);
    goto out;
  }
  int L = c->n_layers = la.n_layers, E = c->n_experts = la.n_experts;
  c->layer_ids = malloc(sizeof(int) * (size_t)L);
  memcpy(c->layer_ids, la.layer_ids, sizeof(int) * (size_t)L);
  c->jaccard = calloc((size_t)L, sizeof(double)); c->top1 = calloc((size_t)L, sizeof(double));
  c->wcorr = calloc((size_t)L, sizeof(double)); c->mean_k_a = calloc((size_t)L, sizeof(double));
  c->mean_k_b = calloc((size_t)L, sizeof(double));
  c->layer_ns_a = calloc((size_t)L, sizeof(double)); c->layer_ns_b = calloc((size_t)L, sizeof(double));
  c->bal_a = calloc((size_t)L, sizeof(ana_balance)); c->bal_b = calloc((size_t)L, sizeof(ana_balance));
  c->shift = calloc((size_t)L * E, sizeof(double));
  for (int l = 0; l < L; l++) {
    ana_balance_compute(la.tokens + (size_t)l * E, E, &c->bal_a[l], NULL);
    ana_balance_compute(lb.tokens + (size_t)l * E, E, &c->bal_b[l], NULL);
    for (int e = 0; e < E; e++) {
      double sa = c->bal_a[l].total ? (double)la.tokens[(size_t)l * E + e] / c->bal_a[l].total : 0;
      double sb = c->bal_b[l].total ? (double)lb.tokens[(size_t)l * E + e] / c->bal_b[l].total : 0;
      c->shift[(size_t)l * E + e] = sb - sa;
      c->dropped_a += la.dropped[(size_t)l * E + e];
      c->dropped_b += lb.dropped[(size_t)l * E + e];
    }
  }
  if (quality(da, c->run_a.run_id, &c->q, 0, err, errlen) || quality(db, c->run_b.run_id, &c->q, 1, err, errlen)) { rc = -1; goto out; }
  c->has_routing = ana_run_has_rows(da, c->run_a.run_id, "routing") && ana_run_has_rows(db, c->run_b.run_id, "routing");
  if (c->has_routing && routing_agreement(da, c->run_a.run_id, db, c->run_b.run_id, c, err, errlen)) { rc = -1; goto out; }
  if (!c->has_routing)
    for (int l = 0; l < L; l++) c->jaccard[l] = c->top1[l] = c->wcorr[l] = c->mean_k_a[l] = c->mean_k_b[l] = NAN;
  next_token_agreement(da, c->run_a.run_id, db, c->run_b.run_id, c);
  c->kern_a = ana_run_has_kernels(da, c->run_a.run_id);
  c->kern_b = ana_run_has_kernels(db, c->run_b.run_id);
  c->cost_mixed = c->kern_a != c->kern_b;
  c->cost_src = cost_src != ANA_COST_OPS && c->kern_a && c->kern_b ? ANA_COST_KERNELS : ANA_COST_OPS;
  cost(da, c->run_a.run_id, c->n_tokens, c, 0);
  cost(db, c->run_b.run_id, c->n_tokens, c, 1);
out:
  ana_load_free(&la);
  ana_load_free(&lb);
  if (rc) ana_compare_free(c);
  return rc;
}

void ana_compare_free(ana_compare *c) {
  for (int i = 0; i < c->q.n_labels; i++) free(c->q.labels[i]);
  free(c->q.labels); free(c->q.ppl_a); free(c->q.ppl_b); free(c->q.scored);
  free(c->layer_ids); free(c->jaccard); free(c->top1); free(c->wcorr); free(c->mean_k_a); free(c->mean_k_b);
  free(c->bal_a); free(c->bal_b); free(c->shift); free(c->layer_ns_a); free(c->layer_ns_b);
  memset(c, 0, sizeof *c);
}
