/* ana_balance.c — balance metrics (CV, MaxVio, normalised entropy, Gini, min/max, dead
 * experts) and router losses (Switch/HF aux loss, ST-MoE z-loss) from a trace DB.
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
  b->mean = b->cv = b->maxvio = b->h_norm = b->gini = b->min_max = NAN;
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
  double mean = (double)total / E, var = 0, h = 0;
  for (int e = 0; e < E; e++) {
    double dv = (double)c[e] - mean;
    var += dv * dv;
    if (c[e] > 0) { double p = (double)c[e] / (double)total; h -= p * log(p); }
  }
  var /= E;
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
  double *psum = calloc((size_t)L * E + 1, sizeof *psum);     /* sum of probs per (layer, e) */
  double *zsum = calloc((size_t)L + 1, sizeof *zsum);
  long long *n_logit = calloc((size_t)L + 1, sizeof *n_logit);
  long long *cnt = calloc((size_t)L * E + 1, sizeof *cnt);
  sqlite3_stmt *s = NULL;
  int rc = -1;
  if (!out->n_tokens || !out->aux || !out->z || !psum || !zsum || !n_logit || !cnt) {
    snprintf(err, errlen, "out of memory");
    goto done;
  }
  for (int i = 0; i < L; i++) out->aux[i] = out->z[i] = NAN;
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
      for (int e = 0; e < E; e++) ps[e] += buf[e];
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
  free(psum); free(zsum); free(n_logit); free(cnt);
  if (rc != 0) ana_router_loss_free(out);
  return rc;
}

void ana_router_loss_free(ana_router_loss *rl) {
  if (!rl) return;
  free(rl->n_tokens); free(rl->aux); free(rl->z);
  memset(rl, 0, sizeof *rl);
}

int ana_summary_get(ana_db *d, long long run_id, ana_summary *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  if (ana_run_get(d, run_id, &out->run, err, errlen) != 0) return -1;
  if (ana_load_get(d, &out->run, &out->load, err, errlen) != 0) return -1;
  int L = out->load.n_layers, E = out->load.n_experts;
  out->layer = calloc((size_t)L, sizeof *out->layer);
  out->dead = calloc((size_t)L * E, sizeof *out->dead);
  if (!out->layer || !out->dead) {
    snprintf(err, errlen, "out of memory");
    ana_summary_free(out);
    return -1;
  }
  ana_balance *o = &out->overall;
  memset(o, 0, sizeof *o);
  o->n_experts = E;
  double acc[6] = {0};
  int nacc[6] = {0};
  for (int l = 0; l < L; l++) {
    ana_balance *b = &out->layer[l];
    ana_balance_compute(out->load.tokens + (size_t)l * E, E, b, out->dead + (size_t)l * E);
    o->total += b->total;
    o->n_dead += b->n_dead;
    double v[6] = {b->mean, b->cv, b->maxvio, b->h_norm, b->gini, b->min_max};
    for (int k = 0; k < 6; k++) if (!isnan(v[k])) { acc[k] += v[k]; nacc[k]++; }
  }
  double *dst[6] = {&o->mean, &o->cv, &o->maxvio, &o->h_norm, &o->gini, &o->min_max};
  for (int k = 0; k < 6; k++) *dst[k] = nacc[k] ? acc[k] / nacc[k] : NAN;
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
  free(s->layer); free(s->dead);
  memset(s, 0, sizeof *s);
}
