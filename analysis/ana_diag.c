/* ana_diag.c — the per-layer diagnosis rules of ana_diag.h over the balance summary
 * (expert_load; works at every record level), the routing structure (routing rows) and
 * the router confidence (router_probs, level full). */
#include "analysis/ana_diag.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/ana_math.h"

void ana_diag_thr_default(ana_diag_thr *t) {
  t->min_slots = 10;
  t->collapse_frac = 0.25;
  t->collapse_share = 0.55;
  t->collapse_tok = 2.0 / 3.0;
  t->imb_cv = 0.5;
  t->imb_maxvio = 1.0;
  t->dead_frac = 0.1;
  t->sat_frac = 0.5;
  t->pinned_w = 0.99;
  t->uniform_tol = 0.05;
  t->margin = 1e-3;
  t->drift_js = 0.5;
  t->alpha = 1e-3;
}

const char *ana_diag_flag_names(unsigned f, char *buf, size_t n) {
  static const struct { unsigned bit; const char *name; } names[] = {
    {ANA_F_COLLAPSED, "collapsed"}, {ANA_F_DEAD, "dead experts"}, {ANA_F_IMBALANCED, "imbalanced"},
    {ANA_F_PINNED, "saturation: pinned gate weights"}, {ANA_F_UNIFORM, "saturation: uniform gate weights"},
    {ANA_F_LOW_MARGIN, "saturation: low top-k margin"}, {ANA_F_DRIFT_POS, "drift along position"},
    {ANA_F_DRIFT_LABEL, "drift between labels"}, {ANA_F_LOWDATA, "insufficient data"}};
  size_t o = 0;
  buf[0] = 0;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (f & names[i].bit) o += (size_t)snprintf(buf + o, o < n ? n - o : 0, "%s%s", o ? ", " : "", names[i].name);
  if (!o) snprintf(buf, n, "none");
  return buf;
}

static int trace_layer(const ana_trace *t, int layer) {
  for (int i = 0; i < t->L; i++) if (t->layer_ids[i] == layer) return i;
  return -1;
}

static void judge_balance(const ana_diag_thr *th, const long long *c, int E, int K, ana_diag_layer *g, int *dead) {
  long long tot = 0;
  for (int e = 0; e < E; e++) tot += c[e];
  /* busiest experts and n_half */
  int *ord = malloc((size_t)E * sizeof *ord);
  if (!ord) return;
  for (int e = 0; e < E; e++) ord[e] = e;
  for (int i = 1; i < E; i++) {   /* insertion sort, descending */
    int x = ord[i], j = i - 1;
    while (j >= 0 && c[ord[j]] < c[x]) { ord[j + 1] = ord[j]; j--; }
    ord[j + 1] = x;
  }
  long long acc = 0;
  g->n_half = E;
  for (int i = 0; i < E; i++) { acc += c[ord[i]]; if (2 * acc >= tot) { g->n_half = i + 1; break; } }
  g->n_few = (int)ceil(th->collapse_frac * E - 1e-9);
  if (g->n_few < 1) g->n_few = 1;
  long long few = 0;
  for (int i = 0; i < g->n_few && i < E; i++) few += c[ord[i]];
  g->few_share = tot ? (double)few / tot : NAN;
  g->top_tok = tot && E ? (double)K * c[ord[0]] / tot : NAN;
  for (int i = 0; i < ANA_DIAG_TOP; i++) {
    g->top_e[i] = i < E ? ord[i] : -1;
    g->top_share[i] = i < E && tot ? (double)c[ord[i]] / tot : NAN;
  }
  free(ord);
  double fair = (double)tot / E, x2 = 0;
  for (int e = 0; e < E; e++) x2 += fair > 0 ? ((double)c[e] - fair) * ((double)c[e] - fair) / fair : 0;
  g->chi2_p = E > 1 && fair > 0 ? ana_chi2_sf(x2, E - 1) : NAN;
  if (fair < th->min_slots) { g->flags |= ANA_F_LOWDATA; return; }
  if (g->few_share >= th->collapse_share || g->top_tok >= th->collapse_tok) g->flags |= ANA_F_COLLAPSED;
  else if ((g->cv >= th->imb_cv || g->maxvio >= th->imb_maxvio) && g->chi2_p < th->alpha) g->flags |= ANA_F_IMBALANCED;
  if (fair >= 30) {
    for (int e = 0; e < E; e++)
      if ((double)c[e] < th->dead_frac * fair) dead[g->n_dead++] = e;
    if (g->n_dead) g->flags |= ANA_F_DEAD;
  }
}

int ana_diagnose(ana_db *d, long long run_id, const ana_diag_thr *thr, ana_diag *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  if (thr) out->thr = *thr; else ana_diag_thr_default(&out->thr);
  const ana_diag_thr *th = &out->thr;
  if (ana_summary_get(d, run_id, &out->sum, err, errlen) != 0) return -1;
  ana_summary *s = &out->sum;
  int L = s->load.n_layers, E = s->load.n_experts;
  int rc = ana_trace_load(d, &s->run, &out->trace, err, errlen);
  if (rc < 0) { ana_diag_free(out); return -1; }
  if (rc == 0) {
    ana_struct_opts so;
    ana_struct_opts_default(&so);
    so.pinned_w = th->pinned_w;
    so.uniform_tol = th->uniform_tol;
    if (ana_struct_compute(&out->trace, &so, &out->st, err, errlen) != 0) { ana_diag_free(out); return -1; }
    out->has_trace = 1;
  }
  err[0] = 0;
  out->n = L;
  out->layers = calloc((size_t)L + 1, sizeof *out->layers);
  out->dead_store = calloc((size_t)L * E + 1, sizeof *out->dead_store);
  if (!out->layers || !out->dead_store) { snprintf(err, errlen, "out of memory"); ana_diag_free(out); return -1; }
  const ana_trace *t = &out->trace;
  const ana_struct *st = &out->st;
  for (int l = 0; l < L; l++) {
    ana_diag_layer *g = &out->layers[l];
    const ana_balance *b = &s->layer[l];
    g->layer = s->load.layer_ids[l];
    g->slots = b->total; g->cv = b->cv; g->maxvio = b->maxvio; g->h_norm = b->h_norm;
    g->dead = out->dead_store + (size_t)l * E;
    g->w1_pinned = g->w1_uniform = g->low_margin = g->margin_med = g->prob_hnorm = NAN;
    g->pos_js = g->pos_p = g->label_js = g->label_p = NAN;
    g->drift_label = g->resp_label = -1;
    g->resp_label_share = NAN;
    judge_balance(th, s->load.tokens + (size_t)l * E, E, s->run.top_k > 0 ? s->run.top_k : 1, g, g->dead);
    if (s->loss.n_tokens && s->loss.n_tokens[l] > 0) {
      g->low_margin = ana_margin_frac_below(&s->loss, l, th->margin);
      g->margin_med = ana_margin_median(&s->loss, l);
      g->prob_hnorm = s->loss.prob_hnorm[l];
    }
    int lowdata = g->flags & ANA_F_LOWDATA;
    if (!lowdata && g->low_margin >= th->sat_frac) g->flags |= ANA_F_LOW_MARGIN;
    int li = out->has_trace ? trace_layer(t, g->layer) : -1;
    if (li >= 0) {
      g->w1_pinned = st->w1_pinned[li];
      g->w1_uniform = st->w1_uniform[li];
      int trivial = st->renorm && t->K == 1;
      if (!lowdata && !trivial && g->w1_pinned >= th->sat_frac) g->flags |= ANA_F_PINNED;
      if (!lowdata && !trivial && g->w1_uniform >= th->sat_frac) g->flags |= ANA_F_UNIFORM;
      g->pos_js = st->pos_js[li];
      g->pos_p = st->pos_p[li];
      if (!lowdata && g->pos_js >= th->drift_js && g->pos_p < th->alpha) g->flags |= ANA_F_DRIFT_POS;
      int NL = st->n_labels;
      if (t->has_real_label && NL > 1) {
        for (int j = 0; j < NL; j++) {
          double js = st->lab_js[(size_t)li * NL + j];
          long long n = 0;
          for (int e = 0; e < st->E; e++) n += st->lab[((size_t)li * NL + j) * st->E + e];
          if (n < th->min_slots * st->E) continue;   /* too few slots to judge this label */
          if (g->drift_label < 0 || js > g->label_js) { g->drift_label = j; g->label_js = js; }
        }
        g->label_p = st->lab_p[li];
        if (!lowdata && g->drift_label >= 0 && g->label_js >= th->drift_js && g->label_p < th->alpha)
          g->flags |= ANA_F_DRIFT_LABEL;
      }
      /* responsible tokens / label for the busiest expert */
      int e0 = g->top_e[0];
      if (e0 >= 0 && e0 < st->E) {
        for (int i = 0; i < st->M; i++) {
          long long n = st->tok_exp[((size_t)li * st->M + i) * st->E + e0];
          int pos = g->n_resp_tok;
          while (pos > 0 && g->resp_tok_n[pos - 1] < n) pos--;
          if (pos >= 5) continue;
          int last = g->n_resp_tok < 5 ? g->n_resp_tok : 4;
          for (int k = last; k > pos; k--) { g->resp_tok[k] = g->resp_tok[k - 1]; g->resp_tok_n[k] = g->resp_tok_n[k - 1]; }
          g->resp_tok[pos] = st->tok[i]; g->resp_tok_n[pos] = n;
          if (g->n_resp_tok < 5) g->n_resp_tok++;
        }
        if (t->has_real_label)
          for (int j = 0; j < NL; j++) {
            long long n = 0;
            for (int e = 0; e < st->E; e++) n += st->lab[((size_t)li * NL + j) * st->E + e];
            double sh = n ? (double)st->lab[((size_t)li * NL + j) * st->E + e0] / n : NAN;
            if (n && (g->resp_label < 0 || sh > g->resp_label_share)) { g->resp_label = j; g->resp_label_share = sh; }
          }
      }
    }
    unsigned f = g->flags;
    g->verdict = f & ANA_F_COLLAPSED ? "collapsed" : f & ANA_F_DEAD ? "dead experts" :
                 f & ANA_F_IMBALANCED ? "imbalanced" : f & (ANA_F_PINNED | ANA_F_UNIFORM | ANA_F_LOW_MARGIN) ?
                 "router saturation" : f & (ANA_F_DRIFT_POS | ANA_F_DRIFT_LABEL) ? "drift" :
                 f & ANA_F_LOWDATA ? "insufficient data" : "healthy";
    if (f & ~(unsigned)ANA_F_LOWDATA) out->n_findings++;
  }
  return 0;
}

void ana_diag_free(ana_diag *g) {
  if (!g) return;
  ana_summary_free(&g->sum);
  ana_struct_free(&g->st);
  ana_trace_free(&g->trace);
  free(g->layers); free(g->dead_store);
  memset(g, 0, sizeof *g);
}
