/* rep_diag.c — `moescope diagnose`: prints the per-layer verdicts of analysis/ana_diag
 * with their evidence (figures, thresholds, the tokens and labels most responsible) as a
 * text report or one JSON object, and the thresholds used. Also used by `report` for
 * its "Diagnosis" section (rep_diag_md/html). */
#include "reports/rep_commands.h"
#include "reports/rep_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "analysis/ana_diag.h"

static cJSON *jnum_(double v) { return (isnan(v) || isinf(v)) ? cJSON_CreateNull() : cJSON_CreateNumber(v); }

void rep_diag_thresholds_text(FILE *f, const ana_diag_thr *t) {
  fprintf(f, "thresholds: collapsed if the busiest ceil(%.3g E) experts (--collapse-frac) hold >= %.3g of the slots"
             " (--collapse-share) or the busiest expert is in the top-k of >= %.3g of the tokens (--collapse-tok); imbalanced if CV >= %.3g (--imb-cv) or"
             " MaxVio >= %.3g (--imb-maxvio), chi2 p < %.3g (--alpha); dead if slots < %.3g x fair share (--dead-frac,"
             " judged when fair share >= 30); saturation if >= %.3g of tokens (--sat-frac) have top-1 weight >= %.3g"
             " (--pinned-w) or within %.3g of uniform (--uniform-tol) or top-k margin < %.3g (--margin); drift if JS >="
             " %.3g bits (--drift-js), p < alpha; no judgement below %.3g slots per expert (--min-slots)\n",
          t->collapse_frac, t->collapse_share, t->collapse_tok, t->imb_cv, t->imb_maxvio, t->alpha, t->dead_frac, t->sat_frac, t->pinned_w, t->uniform_tol,
          t->margin, t->drift_js, t->min_slots);
}

/* One line of evidence per finding of layer g. */
void rep_diag_evidence(FILE *f, ana_db *d, const ana_diag *dg, const ana_diag_layer *g, const char *indent) {
  const ana_diag_thr *t = &dg->thr;
  const ana_trace *tr = &dg->trace;
  int E = dg->sum.load.n_experts;
  fprintf(f, "%sbalance: %lld slots, CV %.3f, MaxVio %.3f, H_norm %.3f, n_half %d of %d (uniform %d), busiest",
          indent, g->slots, g->cv, g->maxvio, g->h_norm, g->n_half, E, (E + 1) / 2);
  for (int i = 0; i < ANA_DIAG_TOP && g->top_e[i] >= 0; i++) fprintf(f, " e%d %.1f%%", g->top_e[i], 100 * g->top_share[i]);
  fprintf(f, " (fair %.1f%%)\n", 100.0 / E);
  if (g->flags & ANA_F_COLLAPSED)
    fprintf(f, "%scollapsed: the busiest %d expert(s) hold %.1f%% of the slots (>= %.0f%%?); the busiest is in the top-k of"
               " %.1f%% of the tokens (>= %.0f%%?)\n", indent, g->n_few, 100 * g->few_share, 100 * t->collapse_share,
            100 * g->top_tok, 100 * t->collapse_tok);
  if (g->flags & ANA_F_IMBALANCED)
    fprintf(f, "%simbalanced: CV %.3f (>= %.3g?) MaxVio %.3f (>= %.3g?), chi2 p = %.2g\n", indent, g->cv, t->imb_cv, g->maxvio, t->imb_maxvio, g->chi2_p);
  if (g->flags & ANA_F_DEAD) {
    fprintf(f, "%sdead experts (< %.3g x fair share):", indent, t->dead_frac);
    for (int i = 0; i < g->n_dead; i++) fprintf(f, " %d", g->dead[i]);
    fputc('\n', f);
  }
  if (g->flags & ANA_F_PINNED) fprintf(f, "%spinned: %.1f%% of tokens have top-1 gate weight >= %.3g\n", indent, 100 * g->w1_pinned, t->pinned_w);
  if (g->flags & ANA_F_UNIFORM) fprintf(f, "%suniform: %.1f%% of tokens have top-1 weight within %.0f%% of uniform\n", indent, 100 * g->w1_uniform, 100 * t->uniform_tol);
  if (g->flags & ANA_F_LOW_MARGIN) fprintf(f, "%slow margin: %.1f%% of tokens have p_(k) - p_(k+1) < %.3g (median %.2g)\n", indent, 100 * g->low_margin, t->margin, g->margin_med);
  if (g->flags & ANA_F_DRIFT_POS) fprintf(f, "%sdrift along position: JS(first half, second half) = %.3f bits, p = %.2g\n", indent, g->pos_js, g->pos_p);
  if (g->flags & ANA_F_DRIFT_LABEL)
    fprintf(f, "%sdrift between labels: '%s' JS = %.3f bits from the other labels, G-test p = %.2g\n", indent, tr->labels[g->drift_label], g->label_js, g->label_p);
  if (g->flags & (ANA_F_COLLAPSED | ANA_F_IMBALANCED) && (g->n_resp_tok || g->resp_label >= 0)) {
    fprintf(f, "%smost responsible for e%d:", indent, g->top_e[0]);
    for (int i = 0; i < g->n_resp_tok; i++) {
      char piece[96];
      ana_token_piece(d, dg->sum.run.run_id, g->resp_tok[i], piece, sizeof piece);
      fprintf(f, " '%s' (%lld)", piece, g->resp_tok_n[i]);
    }
    if (g->resp_label >= 0) fprintf(f, "; label '%s' sends %.1f%% of its slots there", tr->labels[g->resp_label], 100 * g->resp_label_share);
    fputc('\n', f);
  }
}

static char *diag_json(ana_db *d, const ana_diag *dg) {
  cJSON *root = cJSON_CreateObject();
  const ana_run *r = &dg->sum.run;
  cJSON_AddNumberToObject(root, "run_id", (double)r->run_id);
  cJSON_AddStringToObject(root, "family", r->family);
  cJSON_AddStringToObject(root, "record_level", r->record_level);
  cJSON_AddNumberToObject(root, "n_experts", dg->sum.load.n_experts);
  cJSON_AddNumberToObject(root, "top_k", r->top_k);
  cJSON_AddBoolToObject(root, "healthy", dg->n_findings == 0);
  cJSON_AddNumberToObject(root, "n_findings", dg->n_findings);
  cJSON_AddBoolToObject(root, "has_routing", dg->has_trace);
  cJSON *th = cJSON_AddObjectToObject(root, "thresholds");
  const ana_diag_thr *t = &dg->thr;
  cJSON_AddNumberToObject(th, "min_slots", t->min_slots); cJSON_AddNumberToObject(th, "collapse_frac", t->collapse_frac);
  cJSON_AddNumberToObject(th, "collapse_share", t->collapse_share); cJSON_AddNumberToObject(th, "collapse_tok", t->collapse_tok);
  cJSON_AddNumberToObject(th, "imb_cv", t->imb_cv); cJSON_AddNumberToObject(th, "imb_maxvio", t->imb_maxvio);
  cJSON_AddNumberToObject(th, "dead_frac", t->dead_frac); cJSON_AddNumberToObject(th, "sat_frac", t->sat_frac);
  cJSON_AddNumberToObject(th, "pinned_w", t->pinned_w); cJSON_AddNumberToObject(th, "uniform_tol", t->uniform_tol);
  cJSON_AddNumberToObject(th, "margin", t->margin); cJSON_AddNumberToObject(th, "drift_js", t->drift_js);
  cJSON_AddNumberToObject(th, "alpha", t->alpha);
  cJSON *ls = cJSON_AddArrayToObject(root, "layers");
  char buf[512];
  for (int l = 0; l < dg->n; l++) {
    const ana_diag_layer *g = &dg->layers[l];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "layer", g->layer);
    cJSON_AddStringToObject(o, "verdict", g->verdict);
    cJSON *fl = cJSON_AddArrayToObject(o, "findings");
    static const unsigned bits[] = {ANA_F_COLLAPSED, ANA_F_DEAD, ANA_F_IMBALANCED, ANA_F_PINNED, ANA_F_UNIFORM,
                                    ANA_F_LOW_MARGIN, ANA_F_DRIFT_POS, ANA_F_DRIFT_LABEL};
    static const char *const names[] = {"collapsed", "dead_experts", "imbalanced", "saturation_pinned",
                                        "saturation_uniform", "saturation_low_margin", "drift_position", "drift_label"};
    for (int i = 0; i < 8; i++) if (g->flags & bits[i]) cJSON_AddItemToArray(fl, cJSON_CreateString(names[i]));
    cJSON_AddBoolToObject(o, "insufficient_data", (g->flags & ANA_F_LOWDATA) != 0);
    cJSON *ev = cJSON_AddObjectToObject(o, "evidence");
    cJSON_AddNumberToObject(ev, "slots", (double)g->slots);
    cJSON_AddItemToObject(ev, "cv", jnum_(g->cv)); cJSON_AddItemToObject(ev, "maxvio", jnum_(g->maxvio));
    cJSON_AddItemToObject(ev, "h_norm", jnum_(g->h_norm)); cJSON_AddItemToObject(ev, "chi2_p", jnum_(g->chi2_p));
    cJSON_AddNumberToObject(ev, "n_half", g->n_half);
    cJSON_AddNumberToObject(ev, "n_few", g->n_few);
    cJSON_AddItemToObject(ev, "few_share", jnum_(g->few_share));
    cJSON_AddItemToObject(ev, "busiest_token_share", jnum_(g->top_tok));
    cJSON *top = cJSON_AddArrayToObject(ev, "busiest");
    for (int i = 0; i < ANA_DIAG_TOP && g->top_e[i] >= 0; i++) {
      cJSON *x = cJSON_CreateObject();
      cJSON_AddNumberToObject(x, "expert", g->top_e[i]);
      cJSON_AddItemToObject(x, "share", jnum_(g->top_share[i]));
      cJSON_AddItemToArray(top, x);
    }
    cJSON *dd = cJSON_AddArrayToObject(ev, "dead");
    for (int i = 0; i < g->n_dead; i++) cJSON_AddItemToArray(dd, cJSON_CreateNumber(g->dead[i]));
    cJSON_AddItemToObject(ev, "pinned_share", jnum_(g->w1_pinned));
    cJSON_AddItemToObject(ev, "uniform_share", jnum_(g->w1_uniform));
    cJSON_AddItemToObject(ev, "low_margin_share", jnum_(g->low_margin));
    cJSON_AddItemToObject(ev, "margin_median", jnum_(g->margin_med));
    cJSON_AddItemToObject(ev, "prob_entropy_norm", jnum_(g->prob_hnorm));
    cJSON_AddItemToObject(ev, "position_js_bits", jnum_(g->pos_js));
    cJSON_AddItemToObject(ev, "position_p", jnum_(g->pos_p));
    if (g->drift_label >= 0) cJSON_AddStringToObject(ev, "max_js_label", dg->trace.labels[g->drift_label]);
    cJSON_AddItemToObject(ev, "label_js_bits", jnum_(g->label_js));
    cJSON_AddItemToObject(ev, "label_p", jnum_(g->label_p));
    cJSON *rt = cJSON_AddArrayToObject(ev, "responsible_tokens");
    for (int i = 0; i < g->n_resp_tok; i++) {
      cJSON *x = cJSON_CreateObject();
      ana_token_piece(d, r->run_id, g->resp_tok[i], buf, sizeof buf);
      cJSON_AddNumberToObject(x, "token_id", g->resp_tok[i]);
      cJSON_AddStringToObject(x, "piece", buf);
      cJSON_AddNumberToObject(x, "slots_on_busiest", (double)g->resp_tok_n[i]);
      cJSON_AddItemToArray(rt, x);
    }
    if (g->resp_label >= 0) {
      cJSON_AddStringToObject(ev, "responsible_label", dg->trace.labels[g->resp_label]);
      cJSON_AddItemToObject(ev, "responsible_label_share", jnum_(g->resp_label_share));
    }
    cJSON_AddItemToArray(ls, o);
  }
  char *txt = cJSON_Print(root);
  cJSON_Delete(root);
  return txt;
}

int rep_diagnose_cmd(const char *db_path, long long run_id, const ana_diag_thr *thr, int json, FILE *out,
                     int *findings, char *err, size_t errlen) {
  ana_db *d = NULL;
  *findings = 0;
  if (ana_db_open(&d, db_path, err, errlen) != 0) return -1;
  ana_diag dg;
  if (ana_diagnose(d, run_id, thr, &dg, err, errlen) != 0) { ana_db_close(d); return -1; }
  int rc = 0;
  if (json) {
    char *txt = diag_json(d, &dg);
    if (!txt) { snprintf(err, errlen, "out of memory building JSON"); rc = -1; }
    else { fputs(txt, out); fputc('\n', out); cJSON_free(txt); }
  } else {
    const ana_run *r = &dg.sum.run;
    fprintf(out, "run %lld  family=%s  policy=%s  record=%s  E=%d  k=%d: %s\n", r->run_id, r->family[0] ? r->family : "?",
            r->policy[0] ? r->policy : "?", r->record_level[0] ? r->record_level : "?", dg.sum.load.n_experts, r->top_k,
            dg.n_findings ? "FINDINGS" : "healthy");
    char names[512];
    for (int l = 0; l < dg.n; l++) {
      const ana_diag_layer *g = &dg.layers[l];
      fprintf(out, "layer %d: %s", g->layer, g->verdict);
      if (g->flags & ~(unsigned)ANA_F_LOWDATA) fprintf(out, " (%s)", ana_diag_flag_names(g->flags, names, sizeof names));
      fputc('\n', out);
      rep_diag_evidence(out, d, &dg, g, "  ");
    }
    if (!dg.has_trace) fputs("note: no routing rows (record level counts): saturation and drift not judged\n", out);
    rep_diag_thresholds_text(out, &dg.thr);
  }
  if (ferror(out) && rc == 0) { snprintf(err, errlen, "write error on diagnose output"); rc = -1; }
  *findings = dg.n_findings;
  ana_diag_free(&dg);
  ana_db_close(d);
  return rc;
}
