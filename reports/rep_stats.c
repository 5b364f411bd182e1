/* rep_stats.c — `moescope stats`: the per-layer balance table (text or JSON via cJSON)
 * of one run, plus the table writers (text, Markdown, HTML) that report.md and
 * index.html reuse. Reads only the trace DB through analysis/. */
#include "reports/rep_commands.h"
#include "reports/rep_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>


const char *rep_num(char *buf, size_t n, const char *fmt, double v) {
  if (isnan(v) || isinf(v)) snprintf(buf, n, "-");
  else snprintf(buf, n, fmt, v);
  return buf;
}

/* The cells of one table row, as strings. li < 0 = the overall row. */
typedef struct row_cells { char c[REP_NCOLS][32]; } row_cells;

static void row_fill(const ana_summary *s, int li, row_cells *r) {
  const ana_balance *b = li < 0 ? &s->overall : &s->layer[li];
  double aux = li < 0 ? s->loss.aux_overall : s->loss.aux[li];
  double z = li < 0 ? s->loss.z_overall : s->loss.z[li];
  if (li < 0) snprintf(r->c[0], 32, "all");
  else snprintf(r->c[0], 32, "%d", s->load.layer_ids[li]);
  snprintf(r->c[1], 32, "%lld", b->total);
  rep_num(r->c[2], 32, "%.4f", b->cv);
  rep_num(r->c[3], 32, "%.4f", b->maxvio);
  rep_num(r->c[4], 32, "%.4f", b->h_norm);
  rep_num(r->c[5], 32, "%.4f", b->gini);
  rep_num(r->c[6], 32, "%.4f", b->min_max);
  snprintf(r->c[7], 32, "%d", b->n_dead);
  rep_num(r->c[8], 32, "%.4f", aux);
  rep_num(r->c[9], 32, "%.4f", z);
  rep_num(r->c[10], 32, "%.4f", b->jain);
  for (int c = 0; c < ANA_NCF; c++) {
    long long o = li < 0 ? s->overflow_all[c] : s->overflow[(size_t)li * ANA_NCF + c];
    rep_num(r->c[11 + c], 32, "%.4f", b->total > 0 ? (double)o / (double)b->total : NAN);
  }
}

void rep_balance_row(const ana_summary *s, int li, char cells[][32]) {
  row_cells r;
  row_fill(s, li, &r);
  memcpy(cells, r.c, sizeof r.c);
}

const char *const rep_balance_heads[REP_NCOLS] = {"layer", "slots", "CV", "MaxVio", "H_norm", "Gini",
                                                 "min/max", "dead", "aux_loss", "z_loss", "Jain",
                                                 "drop@1.0", "drop@1.25", "drop@2.0"};
#define k_heads rep_balance_heads

void rep_balance_table_text(FILE *f, const ana_summary *s) {
  static const int wd[REP_NCOLS] = {5, 12, 8, 8, 8, 8, 8, 5, 9, 9, 7, 8, 9, 8};
  for (int k = 0; k < REP_NCOLS; k++) fprintf(f, "%s%*s", k ? "  " : "", wd[k], k_heads[k]);
  fputc('\n', f);
  row_cells r;
  for (int li = 0; li <= s->load.n_layers; li++) {
    row_fill(s, li == s->load.n_layers ? -1 : li, &r);
    for (int k = 0; k < REP_NCOLS; k++) fprintf(f, "%s%*s", k ? "  " : "", wd[k], r.c[k]);
    fputc('\n', f);
  }
}

void rep_balance_table_md(FILE *f, const ana_summary *s) {
  fputs("|", f);
  for (int k = 0; k < REP_NCOLS; k++) fprintf(f, " %s |", k_heads[k]);
  fputs("\n|", f);
  for (int k = 0; k < REP_NCOLS; k++) fputs(k == 0 ? ":---|" : "---:|", f);
  fputc('\n', f);
  row_cells r;
  for (int li = 0; li <= s->load.n_layers; li++) {
    int last = li == s->load.n_layers;
    row_fill(s, last ? -1 : li, &r);
    fputc('|', f);
    for (int k = 0; k < REP_NCOLS; k++) fprintf(f, last ? " **%s** |" : " %s |", r.c[k]);
    fputc('\n', f);
  }
}

void rep_html_escape(FILE *f, const char *s) {
  for (; s && *s; s++) {
    switch (*s) {
      case '&': fputs("&amp;", f); break;
      case '<': fputs("&lt;", f); break;
      case '>': fputs("&gt;", f); break;
      case '"': fputs("&quot;", f); break;
      case '\'': fputs("&#39;", f); break;
      default: fputc(*s, f);
    }
  }
}

void rep_balance_table_html(FILE *f, const ana_summary *s) {
  fputs("<table class=\"num\">\n<tr>", f);
  for (int k = 0; k < REP_NCOLS; k++) fprintf(f, "<th>%s</th>", k_heads[k]);
  fputs("</tr>\n", f);
  row_cells r;
  for (int li = 0; li <= s->load.n_layers; li++) {
    int last = li == s->load.n_layers;
    row_fill(s, last ? -1 : li, &r);
    fputs(last ? "<tr class=\"total\">" : "<tr>", f);
    for (int k = 0; k < REP_NCOLS; k++) fprintf(f, "<td>%s</td>", r.c[k]);
    fputs("</tr>\n", f);
  }
  fputs("</table>\n", f);
}

/* NaN -> null. */
static cJSON *jnum(double v) {
  return (isnan(v) || isinf(v)) ? cJSON_CreateNull() : cJSON_CreateNumber(v);
}

static void jmetrics(cJSON *o, const ana_balance *b, double aux, double z) {
  cJSON_AddNumberToObject(o, "slots", (double)b->total);
  cJSON_AddItemToObject(o, "cv", jnum(b->cv));
  cJSON_AddItemToObject(o, "maxvio", jnum(b->maxvio));
  cJSON_AddItemToObject(o, "h_norm", jnum(b->h_norm));
  cJSON_AddItemToObject(o, "gini", jnum(b->gini));
  cJSON_AddItemToObject(o, "min_max", jnum(b->min_max));
  cJSON_AddNumberToObject(o, "n_dead", b->n_dead);
  cJSON_AddItemToObject(o, "aux_loss", jnum(aux));
  cJSON_AddItemToObject(o, "z_loss", jnum(z));
  cJSON_AddItemToObject(o, "jain", jnum(b->jain));
}

static void joverflow(cJSON *o, const long long *ov, long long total) {
  cJSON *a = cJSON_AddArrayToObject(o, "capacity_overflow");
  for (int c = 0; c < ANA_NCF; c++) {
    cJSON *x = cJSON_CreateObject();
    cJSON_AddNumberToObject(x, "capacity_factor", ana_cf[c]);
    cJSON_AddNumberToObject(x, "dropped_slots", (double)ov[c]);
    cJSON_AddItemToObject(x, "dropped_frac", jnum(total > 0 ? (double)ov[c] / (double)total : NAN));
    cJSON_AddItemToArray(a, x);
  }
}

static char *stats_json(const ana_summary *s, cJSON *structure) {
  const ana_run *r = &s->run;
  int E = s->load.n_experts;
  cJSON *root = cJSON_CreateObject();
  cJSON *run = cJSON_AddObjectToObject(root, "run");
  cJSON_AddNumberToObject(run, "run_id", (double)r->run_id);
  cJSON_AddStringToObject(run, "started_at", r->started_at);
  cJSON_AddStringToObject(run, "status", r->status);
  cJSON_AddStringToObject(run, "model_path", r->model_path);
  cJSON_AddStringToObject(run, "family", r->family);
  cJSON_AddStringToObject(run, "policy", r->policy);
  cJSON_AddStringToObject(run, "record_level", r->record_level);
  cJSON_AddStringToObject(run, "device", r->device);
  cJSON_AddStringToObject(run, "dtype", r->dtype);
  cJSON_AddNumberToObject(run, "n_layers", r->n_layers);
  cJSON_AddNumberToObject(run, "n_experts", r->n_experts);
  cJSON_AddNumberToObject(run, "top_k", r->top_k);
  cJSON_AddNumberToObject(run, "n_shared_experts", r->n_shared_experts);
  cJSON *conv = cJSON_AddObjectToObject(root, "conventions");
  cJSON_AddStringToObject(conv, "slots", "token->expert assignments (sum of expert_load.tokens)");
  cJSON_AddStringToObject(conv, "aux_loss", "a*E*sum_e f_e*P_e, a=1, f_e=slots_e/T (HF Mixtral "
                          "load_balancing_loss_func; balanced = top_k), P_e = mean router prob");
  cJSON_AddStringToObject(conv, "z_loss", "mean over tokens of logsumexp(logits)^2");
  cJSON_AddStringToObject(conv, "overall", "balance metrics: mean over layers; dead: sum; "
                          "aux_loss: HF concatenation over layers; z_loss: mean over all rows");
  cJSON_AddNumberToObject(root, "n_experts", E);
  cJSON_AddBoolToObject(root, "has_routing", s->has_routing);
  cJSON_AddBoolToObject(root, "has_router_probs", s->has_probs);
  cJSON *layers = cJSON_AddArrayToObject(root, "layers");
  for (int li = 0; li < s->load.n_layers; li++) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "layer", s->load.layer_ids[li]);
    jmetrics(o, &s->layer[li], s->loss.aux[li], s->loss.z[li]);
    joverflow(o, s->overflow + (size_t)li * ANA_NCF, s->layer[li].total);
    cJSON_AddNumberToObject(o, "router_tokens", (double)s->loss.n_tokens[li]);
    cJSON *dead = cJSON_AddArrayToObject(o, "dead");
    for (int k = 0; k < s->layer[li].n_dead; k++)
      cJSON_AddItemToArray(dead, cJSON_CreateNumber(s->dead[(size_t)li * E + k]));
    cJSON *cnt = cJSON_AddArrayToObject(o, "counts");
    cJSON *ws = cJSON_AddArrayToObject(o, "weight_sum");
    cJSON *dr = cJSON_AddArrayToObject(o, "dropped");
    for (int e = 0; e < E; e++) {
      size_t c = (size_t)li * E + e;
      cJSON_AddItemToArray(cnt, cJSON_CreateNumber((double)s->load.tokens[c]));
      cJSON_AddItemToArray(ws, cJSON_CreateNumber(s->load.weight_sum[c]));
      cJSON_AddItemToArray(dr, cJSON_CreateNumber((double)s->load.dropped[c]));
    }
    cJSON_AddItemToArray(layers, o);
  }
  cJSON *ov = cJSON_AddObjectToObject(root, "overall");
  jmetrics(ov, &s->overall, s->loss.aux_overall, s->loss.z_overall);
  joverflow(ov, s->overflow_all, s->overall.total);
  if (structure) cJSON_AddItemToObject(root, "structure", structure);
  char *txt = cJSON_Print(root);
  cJSON_Delete(root);
  return txt;
}

void rep_stats_csv(const ana_summary *s, FILE *out) {
  fputs("layer,slots,cv,maxvio,h_norm,gini,min_max,dead,aux_loss,z_loss,jain,drop_cf1,drop_cf1_25,drop_cf2\n", out);
  row_cells r;
  for (int li = 0; li <= s->load.n_layers; li++) {
    row_fill(s, li == s->load.n_layers ? -1 : li, &r);
    for (int k = 0; k < REP_NCOLS; k++) fprintf(out, "%s%s", k ? "," : "", strcmp(r.c[k], "-") ? r.c[k] : "");
    fputc('\n', out);
  }
}

int rep_stats_cmd(const char *db_path, long long run_id, int json, FILE *out, char *err,
                  size_t errlen) {
  ana_db *d = NULL;
  if (ana_db_open(&d, db_path, err, errlen) != 0) return -1;
  ana_summary s;
  if (ana_summary_get(d, run_id, &s, err, errlen) != 0) { ana_db_close(d); return -1; }
  int rc = 0, structure = json & REP_STATS_STRUCTURE, have_st = 0;
  json &= 3;
  ana_trace t;
  ana_struct st;
  char note[512] = "";
  if (structure) {   /* one routing read (routing_packed or a scan), then plain C */
    int r = ana_trace_load(d, &s.run, &t, err, errlen);
    if (r == 1) { snprintf(note, sizeof note, "%s", err); err[0] = 0; }
    else if (r) rc = -1;
    else if (ana_struct_compute(&t, NULL, &st, err, errlen)) { ana_trace_free(&t); rc = -1; }
    else have_st = 1;
  }
  if (rc) {
  } else if (json == REP_STATS_CSV) {
    rep_stats_csv(&s, out);
  } else if (json) {
    cJSON *sj = NULL;
    if (have_st) sj = rep_structure_json(d, &t, &st);
    else if (structure) { sj = cJSON_CreateObject(); cJSON_AddStringToObject(sj, "unavailable", note); }
    char *txt = stats_json(&s, sj);
    if (!txt) { snprintf(err, errlen, "out of memory building JSON"); rc = -1; }
    else { fputs(txt, out); fputc('\n', out); cJSON_free(txt); }
  } else {
    const ana_run *r = &s.run;
    fprintf(out, "run %lld  family=%s  policy=%s  record=%s  E=%d  k=%d  MoE layers=%d\n",
            r->run_id, r->family[0] ? r->family : "?", r->policy[0] ? r->policy : "?",
            r->record_level[0] ? r->record_level : "?", s.load.n_experts, r->top_k,
            s.load.n_layers);
    rep_balance_table_text(out, &s);
    int E = s.load.n_experts;
    for (int li = 0; li < s.load.n_layers; li++) {
      if (!s.layer[li].n_dead) continue;
      fprintf(out, "dead experts, layer %d:", s.load.layer_ids[li]);
      for (int k = 0; k < s.layer[li].n_dead; k++) fprintf(out, " %d", s.dead[(size_t)li * E + k]);
      fputc('\n', out);
    }
    fputs("slots = token->expert assignments; overall = mean of layer metrics (dead: sum);\n"
          "aux_loss = E*sum f_e*P_e, f_e = slots_e/T (HF Mixtral, balanced = k), a = 1;\n"
          "z_loss = mean logsumexp(logits)^2; '-' = not recorded (needs --record full);\n"
          "Jain = (sum c)^2/(E sum c^2); drop@CF = share of slots over capacity ceil(CF*S_b/E) per batch\n", out);
    if (have_st) rep_structure_text(out, d, &t, &st);
    else if (structure) fprintf(out, "structure: %s\n", note);
  }
  if (have_st) { ana_struct_free(&st); ana_trace_free(&t); }
  if (ferror(out) && rc == 0) { snprintf(err, errlen, "write error on stats output"); rc = -1; }
  ana_summary_free(&s);
  ana_db_close(d);
  return rc;
}
