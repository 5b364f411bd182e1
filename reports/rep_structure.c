/* rep_structure.c — the routing-structure part of `moescope stats --structure` (text and
 * JSON) and the per-expert top-token lists shared with `report`: co-activation lift,
 * cross-layer transitions + mutual information, repetition vs baseline, load along
 * position, label G-test / Cramer's V, token specialization, gate weights and the top
 * tokens of every expert as text pieces (analysis/ana_struct.h has the definitions). */
#include "reports/rep_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double rep_coact_lift(const ana_struct *st, int li, int a, int b) {
  int E = st->E, K = st->K;
  const long long *co = st->co + (size_t)li * E * E;
  double na = (double)co[(size_t)a * E + a], nb = (double)co[(size_t)b * E + b], n = (double)st->tok_n[li];
  if (a == b || K < 2 || na <= 0 || nb <= 0 || n <= 0) return NAN;
  return (double)co[(size_t)a * E + b] * n * K / (na * nb * (K - 1));
}

double rep_max_lift(const ana_struct *st, int li) {
  double lift = NAN;
  for (int a = 0; a < st->E; a++)
    for (int c = 0; c < st->E; c++) {
      double x = rep_coact_lift(st, li, a, c);
      if (!isnan(x) && (isnan(lift) || x > lift)) lift = x;
    }
  return lift;
}

void rep_structure_text(FILE *out, ana_db *d, const ana_trace *t, const ana_struct *st) {
  fprintf(out, "\nstructure (routing rows: %lld; tokens %lld)\n%5s %9s %9s %8s %8s %9s %9s %9s %9s %9s %9s %8s %8s\n",
          t->n_rows, t->n_tok, "layer", "coact_max", "MI_next", "NMI_next", "repeat", "rep_base", "pos_JS", "label_V",
          "label_p", "tok_spec", "spec_base", "w1_mean", "pinned");
  char b[12][32];
  for (int li = 0; li < st->L; li++)
    fprintf(out, "%5d %9s %9s %8s %8s %9s %9s %9s %9s %9s %9s %8s %8s\n", t->layer_ids[li],
            rep_num(b[0], 32, "%.3f", rep_max_lift(st, li)), rep_num(b[1], 32, "%.3f", st->trans_mi[li]),
            rep_num(b[2], 32, "%.3f", st->trans_nmi[li]), rep_num(b[3], 32, "%.3f", st->rep_rate[li]),
            rep_num(b[4], 32, "%.3f", st->rep_base[li]), rep_num(b[5], 32, "%.4f", st->pos_js[li]),
            rep_num(b[6], 32, "%.3f", t->has_real_label ? st->lab_v[li] : NAN),
            rep_num(b[7], 32, "%.2g", t->has_real_label ? st->lab_p[li] : NAN),
            rep_num(b[8], 32, "%.3f", st->tok_spec[li]), rep_num(b[9], 32, "%.3f", st->tok_spec_base[li]),
            rep_num(b[10], 32, "%.3f", st->w1_mean[li]), rep_num(b[11], 32, "%.3f", st->w1_pinned[li]));
  fputs("coact_max = max lift N_ab T k/(N_a N_b (k-1)) (1 = independent); MI/NMI_next = primary expert l -> next layer\n"
        "(bits / normalised); repeat = P(same primary expert for consecutive tokens) vs rep_base = sum p_e^2;\n"
        "pos_JS = JS bits first vs second half of positions; label_V/p = Cramer's V and G-test p of label x expert;\n"
        "tok_spec = mean max_e N(x->e)/N(x) over tokens seen >= 5 times vs spec_base = max_e q_e;\n"
        "w1_mean = mean top-1 gate weight, pinned = share of tokens with top-1 weight >= 0.99\n", out);
  if (!st->M) { fputs("top tokens: no token ids recorded\n", out); return; }
  fprintf(out, "\ntop tokens per expert (share of the token's occurrences routed to the expert; tokens seen >= %d times)\n",
          st->min_count);
  int idx[REP_TOPTOK];
  double sh[REP_TOPTOK];
  char piece[256];
  for (int li = 0; li < st->L; li++) {
    fprintf(out, "layer %d\n", t->layer_ids[li]);
    for (int e = 0; e < st->E; e++) {
      int n = ana_top_tokens(st, li, e, REP_TOPTOK, idx, sh);
      fprintf(out, "  e%-3d", e);
      for (int i = 0; i < n; i++) {
        ana_token_piece(d, t->run_id, st->tok[idx[i]], piece, sizeof piece);
        fprintf(out, " '%s'(%.2f)", piece, sh[i]);
      }
      fputc('\n', out);
    }
  }
}

static cJSON *jnv(double v) { return (isnan(v) || isinf(v)) ? cJSON_CreateNull() : cJSON_CreateNumber(v); }

static cJSON *jarr_ll(const long long *v, size_t n) {
  cJSON *a = cJSON_CreateArray();
  for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)v[i]));
  return a;
}

cJSON *rep_structure_json(ana_db *d, const ana_trace *t, const ana_struct *st) {
  int E = st->E, NL = st->n_labels;
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "routing_rows", (double)t->n_rows);
  cJSON_AddNumberToObject(o, "tokens", (double)t->n_tok);
  cJSON_AddBoolToObject(o, "from_routing_packed", t->packed);
  cJSON_AddNumberToObject(o, "pos_bin_width", (double)st->pos_bin_w);
  cJSON *labs = cJSON_AddArrayToObject(o, "labels");
  for (int j = 0; j < NL; j++) cJSON_AddItemToArray(labs, cJSON_CreateString(t->labels[j]));
  cJSON *conv = cJSON_AddObjectToObject(o, "conventions");
  cJSON_AddStringToObject(conv, "coactivation", "N_ab = tokens whose top-k holds a and b (diagonal N_a); lift = N_ab T k/(N_a N_b (k-1)), 1 = independent choice of k distinct experts");
  cJSON_AddStringToObject(conv, "transitions", "[a][b] = tokens with primary expert a in this layer and b in the next MoE layer");
  cJSON_AddStringToObject(conv, "top_tokens", "tokens with N(x) >= min_count by N(x->e)/N(x)");
  cJSON *layers = cJSON_AddArrayToObject(o, "layers");
  int idx[REP_TOPTOK];
  double sh[REP_TOPTOK];
  char piece[256];
  for (int li = 0; li < st->L; li++) {
    cJSON *l = cJSON_CreateObject();
    cJSON_AddNumberToObject(l, "layer", t->layer_ids[li]);
    cJSON_AddNumberToObject(l, "tokens", (double)st->tok_n[li]);
    cJSON_AddItemToObject(l, "coact_max_lift", jnv(rep_max_lift(st, li)));
    cJSON_AddItemToObject(l, "coactivation", jarr_ll(st->co + (size_t)li * E * E, (size_t)E * E));
    if (li + 1 < st->L) cJSON_AddItemToObject(l, "transitions_next", jarr_ll(st->trans + (size_t)li * E * E, (size_t)E * E));
    cJSON_AddItemToObject(l, "mi_next_bits", jnv(st->trans_mi[li]));
    cJSON_AddItemToObject(l, "nmi_next", jnv(st->trans_nmi[li]));
    cJSON_AddNumberToObject(l, "repeat_pairs", (double)st->rep_pairs[li]);
    cJSON_AddItemToObject(l, "repeat_rate", jnv(st->rep_rate[li]));
    cJSON_AddItemToObject(l, "repeat_baseline", jnv(st->rep_base[li]));
    cJSON_AddItemToObject(l, "position_counts", jarr_ll(st->pos + (size_t)li * st->n_pos_bins * E, (size_t)st->n_pos_bins * E));
    cJSON_AddItemToObject(l, "pos_js_bits", jnv(st->pos_js[li]));
    cJSON_AddItemToObject(l, "pos_gtest_p", jnv(st->pos_p[li]));
    cJSON_AddItemToObject(l, "label_counts", jarr_ll(st->lab + (size_t)li * NL * E, (size_t)NL * E));
    cJSON_AddItemToObject(l, "label_g", jnv(st->lab_g[li]));
    cJSON_AddItemToObject(l, "label_df", jnv(st->lab_df[li]));
    cJSON_AddItemToObject(l, "label_p", jnv(st->lab_p[li]));
    cJSON_AddItemToObject(l, "cramers_v", jnv(st->lab_v[li]));
    cJSON *js = cJSON_AddArrayToObject(l, "label_js_bits");
    for (int j = 0; j < NL; j++) cJSON_AddItemToArray(js, jnv(st->lab_js[(size_t)li * NL + j]));
    cJSON_AddItemToObject(l, "token_specialization", jnv(st->tok_spec[li]));
    cJSON_AddItemToObject(l, "token_specialization_baseline", jnv(st->tok_spec_base[li]));
    cJSON_AddItemToObject(l, "top1_weight_mean", jnv(st->w1_mean[li]));
    cJSON_AddItemToObject(l, "top1_weight_pinned_frac", jnv(st->w1_pinned[li]));
    cJSON_AddItemToObject(l, "top1_weight_uniform_frac", jnv(st->w1_uniform[li]));
    cJSON_AddItemToObject(l, "top1_weight_hist", jarr_ll(st->whist + (size_t)li * ANA_WBINS, ANA_WBINS));
    cJSON_AddItemToObject(l, "weight_hist", jarr_ll(st->whist_all + (size_t)li * ANA_WBINS, ANA_WBINS));
    cJSON *tt = cJSON_AddArrayToObject(l, "top_tokens");
    for (int e = 0; e < E; e++) {
      cJSON *ea = cJSON_CreateArray();
      int n = ana_top_tokens(st, li, e, REP_TOPTOK, idx, sh);
      for (int i = 0; i < n; i++) {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "token_id", st->tok[idx[i]]);
        ana_token_piece(d, t->run_id, st->tok[idx[i]], piece, sizeof piece);
        cJSON_AddStringToObject(x, "piece", piece);
        cJSON_AddNumberToObject(x, "n", (double)st->tok_exp[((size_t)li * st->M + idx[i]) * E + e]);
        cJSON_AddNumberToObject(x, "share", sh[i]);
        cJSON_AddItemToArray(ea, x);
      }
      cJSON_AddItemToArray(tt, ea);
    }
    cJSON_AddItemToArray(layers, l);
  }
  return o;
}
