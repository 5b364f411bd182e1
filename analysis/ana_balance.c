/* ana_balance.c — balance metrics (CV, MaxVio, normalised entropy, Gini, min/max, Jain,
 * dead experts, capacity overflow at CF 1/1.25/2 per batch) and router losses (Switch/HF aux loss, ST-MoE z-loss) from a trace DB.
 * Definitions and conventions are documented in ana_balance.h. */
#include "analysis/ana_balance.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_ll(const void *a, const void *b) {
  long long x = *(const long long *)a, y = *(const long long *)b;
  return (x > y) - (x < y);
}

void ana_balance_compute(const long long *c, int E, ana_balance *b, int *dead) {
  memset(b, 0, sizeof *b);
  b->n_experts = E;
  b->mean = b->cv = b->maxvio = b->h_norm = b->gini = b->min_max = b->jain = NAN;
  if (E <= 0) return;
  long long total = 0, mx = c[0], mn = c[0];
  for (int e = 0; e < E; e++) {
    total += c[e];
    if (c[e] > mx) mx = c[e];
    if (c[e] < mn) mn = c[e];
    if (c[e] == 0) { if (dead) dead[b->n_dead] = e; b->n_dead++; }
  }
  b->total = total;
  if (total <= 0) return;
  double mean = (double)total / E, var = 0, h = 0, sq = 0;
  for (int e = 0; e < E; e++) {
    double dv = (double)c[e] - mean;
    sq += (double)c[e] * (double)c[e];
    var += dv * dv;
    if (c[e] > 0) { double p = (double)c[e] / (double)total; h -= p * log(p); }
  }
  var /= E;
  b->jain = (double)total * (double)total / ((double)E * sq);
  b->mean = mean;
  b->cv = sqrt(var) / mean;
  b->maxvio = ((double)mx - mean) / mean;
  b->h_norm = E > 1 ? h / log((double)E) : NAN;
  b->min_max = mx > 0 ? (double)mn / (double)mx : NAN;
  /* Gini from the sorted vector: G = 2 sum_i i x_(i) / (E sum x) - (E + 1) / E, i = 1..E. */
  long long *s = malloc((size_t)E * sizeof *s);
  if (s) {
    memcpy(s, c, (size_t)E * sizeof *s);
    qsort(s, (size_t)E, sizeof *s, cmp_ll);
    double acc = 0;
    for (int i = 0; i < E; i++) acc += (double)(i + 1) * (double)s[i];
    b->gini = 2.0 * acc / ((double)E * (double)total) - (double)(E + 1) / E;
    if (b->gini < 0 && b->gini > -1e-12) b->gini = 0;
    free(s);
  }
}

static int layer_pos(const ana_load *ld, int layer) {
  for (int i = 0; i < ld->n_layers; i++)
    if (ld->layer_ids[i] == layer) return i;
  return -1;
}

int ana_router_losses(ana_db *d, const ana_run *run, const ana_load *ld, ana_router_loss *out,
                      char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  int L = ld->n_layers, E = ld->n_experts;
  out->aux_overall = out->z_overall = NAN;
  out->n_tokens = calloc((size_t)L + 1, sizeof *out->n_tokens);
  out->aux = malloc(((size_t)L + 1) * sizeof *out->aux);
  out->z = malloc(((size_t)L + 1) * sizeof *out->z);
  out->margin_hist = calloc((size_t)L * ANA_MBINS + 1, sizeof *out->margin_hist);
  out->prob_hnorm = malloc(((size_t)L + 1) * sizeof *out->prob_hnorm);
  double *hsum = calloc((size_t)L + 1, sizeof *hsum);
  int K = run->top_k > 0 && run->top_k < E ? run->top_k : (E > 1 ? 1 : 0);
  double *psum = calloc((size_t)L * E + 1, sizeof *psum);     /* sum of probs per (layer, e) */
  double *zsum = calloc((size_t)L + 1, sizeof *zsum);
  long long *n_logit = calloc((size_t)L + 1, sizeof *n_logit);
  long long *cnt = calloc((size_t)L * E + 1, sizeof *cnt);
  sqlite3_stmt *s = NULL;
  int rc = -1;
  if (!out->n_tokens || !out->aux || !out->z || !psum || !zsum || !n_logit || !cnt ||
      !out->margin_hist || !out->prob_hnorm || !hsum) {
    snprintf(err, errlen, "out of memory");
    goto done;
  }
  for (int i = 0; i < L; i++) out->aux[i] = out->z[i] = out->prob_hnorm[i] = NAN;
  if (!ana_run_has_rows(d, run->run_id, "router_probs")) { rc = 0; goto done; }

  if (sqlite3_prepare_v2(d->db, "SELECT layer, probs, logits FROM router_probs WHERE run_id = ?",
                         -1, &s, NULL) != SQLITE_OK) {
    snprintf(err, errlen, "trace DB: cannot read router_probs: %s", sqlite3_errmsg(d->db));
    goto done;
  }
  sqlite3_bind_int64(s, 1, run->run_id);
  int step, last_layer = -1, li = -1;
  size_t want = (size_t)E * sizeof(float);
  float *buf = malloc(want + 1);
  if (!buf) { snprintf(err, errlen, "out of memory"); goto done; }
  while ((step = sqlite3_step(s)) == SQLITE_ROW) {
    int layer = sqlite3_column_int(s, 0);
    if (layer != last_layer) { li = layer_pos(ld, layer); last_layer = layer; }
    if (li < 0) continue;
    const void *pb = sqlite3_column_blob(s, 1);
    if (pb && (size_t)sqlite3_column_bytes(s, 1) == want) {
      memcpy(buf, pb, want);                    /* blobs need not be aligned */
      double *ps = psum + (size_t)li * E;
      double h = 0, top[2] = {0, 0};   /* top[0] = k-th largest, top[1] = (k+1)-th */
      for (int e = 0; e < E; e++) {
        ps[e] += buf[e];
        if (buf[e] > 0) h -= buf[e] * log(buf[e]);
      }
      if (E > 1) hsum[li] += h / log((double)E);
      if (K > 0) {   /* k-th and (k+1)-th largest by partial selection (E is small) */
        int above = 0;
        float kth = -1, nxt = -1;
        for (int e = 0; e < E; e++) {
          int gt = 0;
          for (int f = 0; f < E; f++) gt += buf[f] > buf[e] || (buf[f] == buf[e] && f < e);
          if (gt == K - 1) kth = buf[e];
          if (gt == K) nxt = buf[e];
        }
        (void)above;
        top[0] = kth; top[1] = nxt;
        double m = top[0] - top[1];
        int b = m > 0 ? (int)floor((log10(m) - ANA_MARGIN_LO) * 4) : 0;
        out->margin_hist[(size_t)li * ANA_MBINS + (b < 0 ? 0 : b >= ANA_MBINS ? ANA_MBINS - 1 : b)]++;
      }
      out->n_tokens[li]++;
      out->have_probs = 1;
    }
    const void *lb = sqlite3_column_blob(s, 2);
    if (lb && (size_t)sqlite3_column_bytes(s, 2) == want) {
      memcpy(buf, lb, want);
      double m = -INFINITY, acc = 0;
      for (int e = 0; e < E; e++) if (buf[e] > m) m = buf[e];
      for (int e = 0; e < E; e++) acc += exp((double)buf[e] - m);
      double lse = m + log(acc);
      zsum[li] += lse * lse;
      n_logit[li]++;
      out->have_logits = 1;
    }
  }
  free(buf);
  if (step != SQLITE_DONE) {
    snprintf(err, errlen, "trace DB: cannot read router_probs: %s", sqlite3_errmsg(d->db));
    goto done;
  }
  sqlite3_finalize(s);
  s = NULL;

  /* f_e numerators: slots per (layer, expert) from expert_load (already summed in SQL by
   * ana_load_get); at record level full they equal COUNT(*) of routing, without a scan. */
  memcpy(cnt, ld->tokens, (size_t)L * E * sizeof *cnt);

  long long t_all = 0, zn_all = 0;
  double z_all = 0;
  for (int l = 0; l < L; l++) { t_all += out->n_tokens[l]; z_all += zsum[l]; zn_all += n_logit[l]; }
  double aux_all = 0;
  for (int l = 0; l < L; l++) {
    long long T = out->n_tokens[l];
    if (T > 0) {
      double a = 0;
      for (int e = 0; e < E; e++)
        a += ((double)cnt[(size_t)l * E + e] / T) * (psum[(size_t)l * E + e] / T);
      out->aux[l] = 1.0 * E * a;               /* a = 1 */
    }
    if (n_logit[l] > 0) out->z[l] = zsum[l] / n_logit[l];
    if (T > 0 && E > 1) out->prob_hnorm[l] = hsum[l] / T;
  }
  if (t_all > 0) {
    /* HF concatenation: f_e and P_e over all (layer, token) rows of layers with probs. */
    for (int e = 0; e < E; e++) {
      double c = 0, p = 0;
      for (int l = 0; l < L; l++)
        if (out->n_tokens[l] > 0) { c += cnt[(size_t)l * E + e]; p += psum[(size_t)l * E + e]; }
      aux_all += (c / t_all) * (p / t_all);
    }
    out->aux_overall = 1.0 * E * aux_all;
  }
  if (zn_all > 0) out->z_overall = z_all / zn_all;
  rc = 0;
done:
  sqlite3_finalize(s);
  free(psum); free(zsum); free(n_logit); free(cnt); free(hsum);
  if (rc != 0) ana_router_loss_free(out);
  return rc;
}

void ana_router_loss_free(ana_router_loss *rl) {
  if (!rl) return;
  free(rl->n_tokens); free(rl->aux); free(rl->z); free(rl->margin_hist); free(rl->prob_hnorm);
  memset(rl, 0, sizeof *rl);
}

double ana_margin_frac_below(const ana_router_loss *rl, int li, double thr) {
  if (!rl->margin_hist || !rl->n_tokens || rl->n_tokens[li] <= 0) return NAN;
  long long n = 0, below = 0;
  for (int b = 0; b < ANA_MBINS; b++) {
    long long c = rl->margin_hist[(size_t)li * ANA_MBINS + b];
    n += c;
    double hi = pow(10.0, ANA_MARGIN_LO + (b + 1) / 4.0);
    if (hi <= thr * (1 + 1e-9)) below += c;
  }
  return n ? (double)below / n : NAN;
}

double ana_margin_median(const ana_router_loss *rl, int li) {
  if (!rl->margin_hist || !rl->n_tokens || rl->n_tokens[li] <= 0) return NAN;
  long long n = 0, acc = 0;
  for (int b = 0; b < ANA_MBINS; b++) n += rl->margin_hist[(size_t)li * ANA_MBINS + b];
  for (int b = 0; b < ANA_MBINS; b++) {
    acc += rl->margin_hist[(size_t)li * ANA_MBINS + b];
    if (2 * acc >= n) return pow(10.0, ANA_MARGIN_LO + (b + 0.5) / 4.0);
  }
  return NAN;
}

const double ana_cf[ANA_NCF] = {1.0, 1.25, 2.0};

/* Adds the overflow of one (batch, layer) group of loads to o[ANA_NCF]. */
static void overflow_group(const long long *ld, int n, int E, long long *o) {
  long long S = 0;
  for (int i = 0; i < n; i++) S += ld[i];
  for (int c = 0; c < ANA_NCF; c++) {
    long long cap = (long long)ceil(ana_cf[c] * (double)S / E - 1e-9);
    for (int i = 0; i < n; i++) if (ld[i] > cap) o[c] += ld[i] - cap;
  }
}

typedef struct lbt { int layer; long long batch, tokens; } lbt;
static int cmp_lbt(const void *a, const void *b) {
  const lbt *x = a, *y = b;
  if (x->layer != y->layer) return (x->layer > y->layer) - (x->layer < y->layer);
  return (x->batch > y->batch) - (x->batch < y->batch);
}

int ana_capacity_overflow(ana_db *d, const ana_run *run, const ana_load *ld, long long *out,
                          char *err, size_t errlen) {
  int L = ld->n_layers, E = ld->n_experts;
  memset(out, 0, (size_t)L * ANA_NCF * sizeof *out);
  sqlite3_stmt *s = NULL;
  /* one sequential scan (see ana_load_get), grouped by (layer, batch) with a sort in C */
  if (sqlite3_prepare_v2(d->db, "SELECT layer, batch_id, tokens FROM expert_load NOT INDEXED WHERE run_id = ?1",
                         -1, &s, NULL) != SQLITE_OK) {
    snprintf(err, errlen, "trace DB: %s", sqlite3_errmsg(d->db));
    return -1;
  }
  sqlite3_bind_int64(s, 1, run->run_id);
  lbt *v = NULL;
  size_t n = 0, cap = 0;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    if (n == cap) {
      size_t nc = cap ? cap * 2 : 4096;
      lbt *nv = realloc(v, nc * sizeof *nv);
      if (!nv) { rc = SQLITE_NOMEM; break; }
      v = nv; cap = nc;
    }
    v[n++] = (lbt){sqlite3_column_int(s, 0), sqlite3_column_int64(s, 1), sqlite3_column_int64(s, 2)};
  }
  sqlite3_finalize(s);
  if (rc != SQLITE_DONE) {
    free(v);
    snprintf(err, errlen, "trace DB: %s", rc == SQLITE_NOMEM ? "out of memory" : sqlite3_errmsg(d->db));
    return -1;
  }
  qsort(v, n, sizeof *v, cmp_lbt);
  long long *grp = malloc(((size_t)E + 1) * sizeof *grp);
  if (!grp) { free(v); snprintf(err, errlen, "out of memory"); return -1; }
  for (size_t i = 0; i < n;) {
    size_t j = i;
    int g = 0;
    while (j < n && v[j].layer == v[i].layer && v[j].batch == v[i].batch) {
      if (g < E) grp[g++] = v[j].tokens;   /* rows only for experts with load */
      j++;
    }
    int li = layer_pos(ld, v[i].layer);
    if (li >= 0) overflow_group(grp, g, E, out + (size_t)li * ANA_NCF);
    i = j;
  }
  free(grp);
  free(v);
  return 0;
}

int ana_summary_get(ana_db *d, long long run_id, ana_summary *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  if (ana_run_get(d, run_id, &out->run, err, errlen) != 0) return -1;
  if (ana_load_get(d, &out->run, &out->load, err, errlen) != 0) return -1;
  int L = out->load.n_layers, E = out->load.n_experts;
  out->layer = calloc((size_t)L, sizeof *out->layer);
  out->dead = calloc((size_t)L * E, sizeof *out->dead);
  out->overflow = calloc((size_t)L * ANA_NCF + 1, sizeof *out->overflow);
  if (!out->layer || !out->dead || !out->overflow) {
    snprintf(err, errlen, "out of memory");
    ana_summary_free(out);
    return -1;
  }
  ana_balance *o = &out->overall;
  memset(o, 0, sizeof *o);
  o->n_experts = E;
  double acc[7] = {0};
  int nacc[7] = {0};
  for (int l = 0; l < L; l++) {
    ana_balance *b = &out->layer[l];
    ana_balance_compute(out->load.tokens + (size_t)l * E, E, b, out->dead + (size_t)l * E);
    o->total += b->total;
    o->n_dead += b->n_dead;
    double v[7] = {b->mean, b->cv, b->maxvio, b->h_norm, b->gini, b->min_max, b->jain};
    for (int k = 0; k < 7; k++) if (!isnan(v[k])) { acc[k] += v[k]; nacc[k]++; }
  }
  double *dst[7] = {&o->mean, &o->cv, &o->maxvio, &o->h_norm, &o->gini, &o->min_max, &o->jain};
  for (int k = 0; k < 7; k++) *dst[k] = nacc[k] ? acc[k] / nacc[k] : NAN;
  if (ana_capacity_overflow(d, &out->run, &out->load, out->overflow, err, errlen) != 0) {
    ana_summary_free(out);
    return -1;
  }
  for (int l = 0; l < L; l++)
    for (int c = 0; c < ANA_NCF; c++) out->overflow_all[c] += out->overflow[(size_t)l * ANA_NCF + c];
  out->has_routing = ana_run_has_rows(d, out->run.run_id, "routing");
  if (ana_router_losses(d, &out->run, &out->load, &out->loss, err, errlen) != 0) {
    ana_summary_free(out);
    return -1;
  }
  out->has_probs = out->loss.have_probs || out->loss.have_logits;
  return 0;
}

void ana_summary_free(ana_summary *s) {
  if (!s) return;
  ana_load_free(&s->load);
  ana_router_loss_free(&s->loss);
  free(s->layer); free(s->dead); free(s->overflow);
  memset(s, 0, sizeof *s);
}
