/* rep_figs.c — every figure of `moescope report`, built from one diagnosis (balance
 * summary + per-token routing structure, analysis/ana_diag.h) and drawn through
 * rep_heatmap.c / rep_chart.c into PNG, SVG and/or PDF:
 *   heatmap_load            layer x expert load / uniform share
 *   balance_layers          H_norm, Gini, Jain, min/max, drop@1.25 per layer (0..1)
 *   balance_cv              CV and MaxVio per layer
 *   label_pref_layer<L>     label x expert share / uniform share (needs labels)
 *   coact_layer<L>          expert x expert co-activation lift N_ab T k/(N_a N_b (k-1)) (k >= 2)
 *   trans_layer<L>          primary expert in layer L -> next MoE layer, lift over independence
 *   position_layer<L>       position bin x expert, share in the bin / share in the layer
 *   gate_weights            distribution of the top-1 gate weight, one line per layer
 *   top_tokens_layer<L>     per expert the 5 most exclusive tokens as text (needs token ids)
 * (gpu_timeline, kernels or CPU ops over time, is drawn by rep_report.c through
 * rep_timeline.c / rep_tlfig.c since it reads its own window options.)
 * Every figure is appended to the report's figure list with its caption. */
#include "reports/rep_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/ana_diag.h"

int rep_figs_add(rep_figs *f, const char *stem, const char *caption) {
  if (f->n == f->cap) {
    int nc = f->cap ? f->cap * 2 : 16;
    rep_figure *nv = realloc(f->v, (size_t)nc * sizeof *nv);
    if (!nv) return -1;
    f->v = nv; f->cap = nc;
  }
  snprintf(f->v[f->n].stem, sizeof f->v[f->n].stem, "%s", stem);
  snprintf(f->v[f->n].caption, sizeof f->v[f->n].caption, "%s", caption);
  f->n++;
  return 0;
}

typedef struct fctx {
  const ana_diag *dg;
  const char *outdir;
  unsigned fmt;
  rep_figs *fg;
  char *err; size_t errlen;
} fctx;

static int emit_hm(fctx *c, const char *stem, const char *caption, const rep_heatmap *hm) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", c->outdir, stem);
  if (rep_heatmap_render(hm, path, c->fmt, NULL, NULL, c->err, c->errlen)) return -1;
  if (rep_figs_add(c->fg, stem, caption)) { snprintf(c->err, c->errlen, "out of memory"); return -1; }
  return 0;
}

static int emit_chart(fctx *c, const char *stem, const char *caption, const rep_chart *ch) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", c->outdir, stem);
  if (rep_chart_render(ch, path, c->fmt, c->err, c->errlen)) return -1;
  if (rep_figs_add(c->fg, stem, caption)) { snprintf(c->err, c->errlen, "out of memory"); return -1; }
  return 0;
}

static int fig_load(fctx *c) {
  const ana_summary *s = &c->dg->sum;
  int L = s->load.n_layers, E = s->load.n_experts, rc = -1;
  double *ratio = malloc((size_t)L * E * sizeof *ratio + 8);
  char (*lab)[24] = malloc((size_t)L * sizeof *lab + 8);
  const char **labp = malloc((size_t)L * sizeof *labp + 8);
  if (!ratio || !lab || !labp) { snprintf(c->err, c->errlen, "out of memory"); goto done; }
  for (int l = 0; l < L; l++) {
    double uni = (double)s->layer[l].total / E;
    for (int e = 0; e < E; e++)
      ratio[(size_t)l * E + e] = uni > 0 ? (double)s->load.tokens[(size_t)l * E + e] / uni : NAN;
    snprintf(lab[l], sizeof lab[l], "L%d", s->load.layer_ids[l]);
    labp[l] = lab[l];
  }
  char title[160], sub[1024];
  snprintf(title, sizeof title, "Expert load per layer, run %lld", s->run.run_id);
  snprintf(sub, sizeof sub, "%s%s%s  E=%d  k=%d  %lld slots; cell = tokens / (layer total / E)",
           s->run.family[0] ? s->run.family : "", s->run.policy[0] ? "  policy=" : "",
           s->run.policy, E, s->run.top_k, s->overall.total);
  rep_heatmap hm = {title, sub, "expert", "layer", "load / uniform share (log scale)", L, E, labp, ratio};
  rc = emit_hm(c, "heatmap_load", "Expert load per layer (load / uniform share)", &hm);
done:
  free(ratio); free(lab); free(labp);
  return rc;
}

static int fig_balance(fctx *c) {
  const ana_summary *s = &c->dg->sum;
  int L = s->load.n_layers, rc = -1;
  double *y = malloc((size_t)7 * L * sizeof *y + 8);
  char (*tk)[16] = malloc((size_t)L * sizeof *tk + 8);
  const char **tkp = malloc((size_t)L * sizeof *tkp + 8);
  if (!y || !tk || !tkp) { snprintf(c->err, c->errlen, "out of memory"); goto done; }
  for (int l = 0; l < L; l++) {
    const ana_balance *b = &s->layer[l];
    y[l] = b->h_norm; y[L + l] = b->gini; y[2 * L + l] = b->jain; y[3 * L + l] = b->min_max;
    y[4 * L + l] = b->total > 0 ? (double)s->overflow[(size_t)l * ANA_NCF + 1] / (double)b->total : NAN;
    y[5 * L + l] = b->cv; y[6 * L + l] = b->maxvio;
    snprintf(tk[l], sizeof tk[l], "L%d", s->load.layer_ids[l]);
    tkp[l] = tk[l];
  }
  static const char *const n1[5] = {"H_norm", "Gini", "Jain", "min/max", "drop@CF1.25"};
  static const char *const n2[2] = {"CV", "MaxVio"};
  char sub[256];
  snprintf(sub, sizeof sub, "run %lld; 1 = balanced for H_norm, Jain, min/max; 0 = balanced for Gini, drop",
           s->run.run_id);
  rep_chart a = {"Balance metrics per layer", sub, "MoE layer", "metric (0..1)", 5, L, L == 1, n1, tkp, y, 0, 1};
  if (emit_chart(c, "balance_layers", "Balance metrics per layer (H_norm, Gini, Jain, min/max, capacity drop)", &a)) goto done;
  snprintf(sub, sizeof sub, "run %lld; 0 = balanced; MaxVio = (max - mean)/mean of per-expert slots", s->run.run_id);
  rep_chart b = {"Load imbalance per layer", sub, "MoE layer", "CV, MaxVio", 2, L, L == 1, n2, tkp, y + 5 * L, 0, NAN};
  rc = emit_chart(c, "balance_cv", "Load imbalance per layer (CV, MaxVio)", &b);
done:
  free(y); free(tk); free(tkp);
  return rc;
}

/* One E x E (or rows x E) lift/ratio heatmap per layer: build(li, ratio, labels) fills it. */
static int fig_labels(fctx *c) {
  const ana_trace *t = &c->dg->trace;
  const ana_struct *st = &c->dg->st;
  int E = st->E, NL = st->n_labels, rc = -1;
  double *ratio = malloc((size_t)NL * E * sizeof *ratio + 8);
  char (*lab)[96] = malloc((size_t)NL * sizeof *lab + 8);
  const char **labp = malloc((size_t)NL * sizeof *labp + 8);
  if (!ratio || !lab || !labp) { snprintf(c->err, c->errlen, "out of memory"); goto done; }
  for (int l = 0; l < st->L; l++) {
    const long long *cn = st->lab + (size_t)l * NL * E;
    for (int j = 0; j < NL; j++) {
      long long tot = 0;
      for (int e = 0; e < E; e++) tot += cn[(size_t)j * E + e];
      double uni = (double)tot / E;
      for (int e = 0; e < E; e++) ratio[(size_t)j * E + e] = uni > 0 ? (double)cn[(size_t)j * E + e] / uni : NAN;
      snprintf(lab[j], sizeof lab[j], "%.60s (%lld)", t->labels[j], tot);
      labp[j] = lab[j];
    }
    char title[160], stem[64], cap[160], sub[200];
    snprintf(title, sizeof title, "Layer %d: expert preference by label, run %lld", t->layer_ids[l], t->run_id);
    snprintf(sub, sizeof sub, "cell = label's share of slots on expert / (1/E); (n) = slots; G-test p = %.2g,"
             " Cramer's V = %.3f", st->lab_p[l], st->lab_v[l]);
    rep_heatmap hm = {title, sub, "expert", "label", "share / uniform share (log scale)", NL, E, labp, ratio};
    snprintf(stem, sizeof stem, "label_pref_layer%d", t->layer_ids[l]);
    snprintf(cap, sizeof cap, "Layer %d: expert preference by label", t->layer_ids[l]);
    if (emit_hm(c, stem, cap, &hm)) goto done;
  }
  rc = 0;
done:
  free(ratio); free(lab); free(labp);
  return rc;
}

static int fig_pairs(fctx *c) {
  const ana_trace *t = &c->dg->trace;
  const ana_struct *st = &c->dg->st;
  int E = st->E, rc = -1, rows = E > st->n_pos_bins ? E : st->n_pos_bins;
  size_t EE = (size_t)E * E;
  double *ratio = malloc((size_t)rows * E * sizeof *ratio + 8);
  char (*lab)[32] = malloc((size_t)rows * sizeof *lab + 8);
  const char **labp = malloc((size_t)rows * sizeof *labp + 8);
  long long *ra = malloc((size_t)E * sizeof *ra + 8), *cb = malloc((size_t)E * sizeof *cb + 8);
  if (!ratio || !lab || !labp || !ra || !cb) { snprintf(c->err, c->errlen, "out of memory"); goto done; }
  for (int e = 0; e < E; e++) { snprintf(lab[e], sizeof lab[e], "%d", e); labp[e] = lab[e]; }
  char title[160], stem[64], cap[200], sub[256];
  for (int l = 0; l < st->L; l++) {
    int lay = t->layer_ids[l];
    if (st->K >= 2 && st->tok_n[l] > 0) {   /* co-activation lift */
      for (int a = 0; a < E; a++)
        for (int b = 0; b < E; b++) ratio[(size_t)a * E + b] = rep_coact_lift(st, l, a, b);
      snprintf(title, sizeof title, "Layer %d: expert co-activation, run %lld", lay, t->run_id);
      snprintf(sub, sizeof sub, "cell = N_ab T k / (N_a N_b (k-1)): tokens choosing a and b together vs independence;"
               " max lift %.2f; grey = diagonal / unused", rep_max_lift(st, l));
      rep_heatmap hm = {title, sub, "expert b", "expert a", "lift over independence (log scale)", E, E, labp, ratio};
      snprintf(stem, sizeof stem, "coact_layer%d", lay);
      snprintf(cap, sizeof cap, "Layer %d: expert co-activation (lift over independence)", lay);
      if (emit_hm(c, stem, cap, &hm)) goto done;
    }
    if (l + 1 < st->L) {   /* transitions to the next MoE layer */
      const long long *tr = st->trans + (size_t)l * EE;
      long long n = 0;
      memset(ra, 0, (size_t)E * sizeof *ra); memset(cb, 0, (size_t)E * sizeof *cb);
      for (int a = 0; a < E; a++) for (int b = 0; b < E; b++) { ra[a] += tr[(size_t)a * E + b]; cb[b] += tr[(size_t)a * E + b]; n += tr[(size_t)a * E + b]; }
      if (n > 0) {
        for (int a = 0; a < E; a++)
          for (int b = 0; b < E; b++)
            ratio[(size_t)a * E + b] = ra[a] > 0 && cb[b] > 0 ? (double)tr[(size_t)a * E + b] * n / ((double)ra[a] * cb[b]) : NAN;
        snprintf(title, sizeof title, "Layer %d -> %d: primary-expert transitions, run %lld", lay, t->layer_ids[l + 1], t->run_id);
        snprintf(sub, sizeof sub, "cell = N(a->b) T / (N_a N_b) (1 = independent); MI = %.3f bits, NMI = %.3f",
                 st->trans_mi[l], st->trans_nmi[l]);
        char yl[48], xl[48];
        snprintf(yl, sizeof yl, "expert in layer %d", lay);
        snprintf(xl, sizeof xl, "expert in layer %d", t->layer_ids[l + 1]);
        rep_heatmap hm = {title, sub, xl, yl, "transition lift (log scale)", E, E, labp, ratio};
        snprintf(stem, sizeof stem, "trans_layer%d", lay);
        snprintf(cap, sizeof cap, "Layer %d -> %d: cross-layer transitions of the primary expert", lay, t->layer_ids[l + 1]);
        if (emit_hm(c, stem, cap, &hm)) goto done;
      }
    }
    /* load along position */
    int P = st->n_pos_bins;
    const long long *pc = st->pos + (size_t)l * P * E;
    long long tot = 0;
    for (int e = 0; e < E; e++) tot += st->slots[(size_t)l * E + e];
    if (tot <= 0 || P < 1) continue;
    char (*plab)[32] = lab;
    for (int b = 0; b < P; b++) {
      long long bt = 0;
      for (int e = 0; e < E; e++) bt += pc[(size_t)b * E + e];
      for (int e = 0; e < E; e++) {
        double share = (double)st->slots[(size_t)l * E + e] / tot;
        ratio[(size_t)b * E + e] = bt > 0 && share > 0 ? ((double)pc[(size_t)b * E + e] / bt) / share : NAN;
      }
      snprintf(plab[b], 32, "%lld-%lld", (long long)b * st->pos_bin_w, (long long)(b + 1) * st->pos_bin_w - 1);
      labp[b] = plab[b];
    }
    snprintf(title, sizeof title, "Layer %d: expert load along token position, run %lld", lay, t->run_id);
    snprintf(sub, sizeof sub, "cell = expert's share in the position bin / its share in the layer; JS(first half,"
             " second half) = %.4f bits, G-test p = %.2g", st->pos_js[l], st->pos_p[l]);
    rep_heatmap hm = {title, sub, "expert", "token position", "share / layer share (log scale)", P, E, labp, ratio};
    snprintf(stem, sizeof stem, "position_layer%d", lay);
    snprintf(cap, sizeof cap, "Layer %d: expert load along token position", lay);
    if (emit_hm(c, stem, cap, &hm)) goto done;
    for (int e = 0; e < E; e++) { snprintf(lab[e], sizeof lab[e], "%d", e); labp[e] = lab[e]; }
  }
  rc = 0;
done:
  free(ratio); free(lab); free(labp); free(ra); free(cb);
  return rc;
}

static int fig_gate(fctx *c) {
  const ana_trace *t = &c->dg->trace;
  const ana_struct *st = &c->dg->st;
  int L = st->L, rc = -1;
  double *y = malloc((size_t)L * ANA_WBINS * sizeof *y + 8);
  char (*nm)[24] = malloc((size_t)L * sizeof *nm + 8);
  const char **nmp = malloc((size_t)L * sizeof *nmp + 8);
  char tk[ANA_WBINS][16];
  const char *tkp[ANA_WBINS];
  if (!y || !nm || !nmp) { snprintf(c->err, c->errlen, "out of memory"); goto done; }
  int any = 0;
  for (int l = 0; l < L; l++) {
    long long n = 0;
    for (int b = 0; b < ANA_WBINS; b++) n += st->whist[(size_t)l * ANA_WBINS + b];
    for (int b = 0; b < ANA_WBINS; b++) y[(size_t)l * ANA_WBINS + b] = n ? (double)st->whist[(size_t)l * ANA_WBINS + b] / n : NAN;
    any |= n > 0;
    snprintf(nm[l], sizeof nm[l], "L%d (mean %.2f)", t->layer_ids[l], st->w1_mean[l]);
    nmp[l] = nm[l];
  }
  for (int b = 0; b < ANA_WBINS; b++) { snprintf(tk[b], sizeof tk[b], "%.2f", (b + 0.5) / ANA_WBINS); tkp[b] = tk[b]; }
  rc = 0;
  if (!any) goto done;
  char sub[200];
  snprintf(sub, sizeof sub, "run %lld; share of tokens per top-1 weight bin (width %.2f); pinned = >= 0.99%s",
           t->run_id, 1.0 / ANA_WBINS, st->renorm ? "; weights renormalised over the top-k" : "");
  rep_chart ch = {"Top-1 gate weight distribution per layer", sub, "top-1 gate weight (bin centre)",
                  "share of tokens", L, ANA_WBINS, 0, nmp, tkp, y, 0, NAN};
  rc = emit_chart(c, "gate_weights", "Gate-weight distributions (top-1 weight per layer)", &ch);
done:
  free(y); free(nm); free(nmp);
  return rc;
}

static int fig_tokens(fctx *c, ana_db *d) {
  const ana_trace *t = &c->dg->trace;
  const ana_struct *st = &c->dg->st;
  if (!st->M) return 0;
  int E = st->E, cols = 2 + REP_TOPTOK, rc = -1;
  char **cells = calloc((size_t)E * cols + 1, sizeof *cells);
  if (!cells) { snprintf(c->err, c->errlen, "out of memory"); return -1; }
  static const char *const head[2 + REP_TOPTOK] = {"expert", "slots %", "1st", "2nd", "3rd", "4th", "5th"};
  int idx[REP_TOPTOK];
  double sh[REP_TOPTOK];
  char piece[200];
  for (int l = 0; l < st->L; l++) {
    long long tot = 0;
    for (int e = 0; e < E; e++) tot += st->slots[(size_t)l * E + e];
    for (int e = 0; e < E; e++) {
      char **r = cells + (size_t)e * cols;
      for (int k = 0; k < cols; k++) { free(r[k]); r[k] = NULL; }
      if (asprintf(&r[0], "%d", e) < 0) r[0] = NULL;
      if (asprintf(&r[1], "%.1f", tot ? 100.0 * st->slots[(size_t)l * E + e] / tot : 0.0) < 0) r[1] = NULL;
      int n = ana_top_tokens(st, l, e, REP_TOPTOK, idx, sh);
      for (int i = 0; i < n; i++) {
        ana_token_piece(d, t->run_id, st->tok[idx[i]], piece, sizeof piece);
        if (asprintf(&r[2 + i], "'%s' %.2f", piece, sh[i]) < 0) r[2 + i] = NULL;
      }
    }
    char title[160], sub[200], stem[64], fpath[4200], cap[160];
    snprintf(title, sizeof title, "Layer %d: top tokens per expert, run %lld", t->layer_ids[l], t->run_id);
    snprintf(sub, sizeof sub, "token (share of its occurrences routed to the expert), tokens seen >= %d times",
             st->min_count);
    rep_texttab tt = {title, sub, E, cols, head, (const char *const *)cells};
    snprintf(fpath, sizeof fpath, "%s/top_tokens_layer%d", c->outdir, t->layer_ids[l]);
    if (rep_texttab_render(&tt, fpath, c->fmt, c->err, c->errlen)) goto done;
    snprintf(stem, sizeof stem, "top_tokens_layer%d", t->layer_ids[l]);
    snprintf(cap, sizeof cap, "Layer %d: top tokens per expert", t->layer_ids[l]);
    if (rep_figs_add(c->fg, stem, cap)) { snprintf(c->err, c->errlen, "out of memory"); goto done; }
  }
  rc = 0;
done:
  for (size_t i = 0; i < (size_t)E * cols; i++) free(cells[i]);
  free(cells);
  return rc;
}

int rep_figures(ana_db *d, const ana_diag *dg, const char *outdir, unsigned fmt, rep_figs *fg,
                char *note, size_t notelen, char *err, size_t errlen) {
  fctx c = {dg, outdir, fmt, fg, err, errlen};
  note[0] = 0;
  if (fig_load(&c) || fig_balance(&c)) return -1;
  if (!dg->has_trace) {
    snprintf(note, notelen, "no routing rows for run %lld (record level '%s'): per-label, co-activation, transition,"
             " position, gate-weight and token figures need --record topk or full", dg->sum.run.run_id,
             dg->sum.run.record_level);
    return 0;
  }
  if (dg->trace.has_real_label) { if (fig_labels(&c)) return -1; }
  else snprintf(note, notelen, "no sequence labels in run %lld (give --label when running): no per-label figures",
                dg->sum.run.run_id);
  if (fig_pairs(&c) || fig_gate(&c) || fig_tokens(&c, d)) return -1;
  return 0;
}
