/* ana_struct.c — co-activation, cross-layer transitions, repetition, load along position,
 * per-label and per-token specialization and gate-weight distributions from an
 * ana_trace. Definitions in ana_struct.h. One pass over the token arrays per statistic
 * family; O(n_tok * L * K^2) overall. */
#include "analysis/ana_struct.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/ana_math.h"

void ana_struct_opts_default(ana_struct_opts *o) {
  o->max_tokens = 1024;
  o->min_count = 5;
  o->pinned_w = 0.99;
  o->uniform_tol = 0.05;
}

static int cmp_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

typedef struct idcnt { int32_t id; long long n; } idcnt;
static int cmp_idcnt(const void *a, const void *b) {
  const idcnt *x = a, *y = b;
  if (x->n != y->n) return (x->n < y->n) - (x->n > y->n);
  return (x->id > y->id) - (x->id < y->id);
}

/* Frequent tokens: fills s->tok/tok_cnt/M and idx[n_tok] (index into tok or -1). */
static int frequent_tokens(const ana_trace *t, const ana_struct_opts *o, ana_struct *s, int32_t *idx) {
  for (long long i = 0; i < t->n_tok; i++) idx[i] = -1;
  if (!t->has_token_ids) return 0;
  int32_t *ids = malloc(((size_t)t->n_tok + 1) * sizeof *ids);
  if (!ids) return -1;
  size_t n = 0;
  for (long long i = 0; i < t->n_tok; i++) if (t->tok_id[i] >= 0) ids[n++] = t->tok_id[i];
  qsort(ids, n, sizeof *ids, cmp_i32);
  idcnt *u = malloc((n + 1) * sizeof *u);
  if (!u) { free(ids); return -1; }
  size_t nu = 0;
  for (size_t i = 0; i < n; i++) {
    if (nu && u[nu - 1].id == ids[i]) u[nu - 1].n++;
    else u[nu++] = (idcnt){ids[i], 1};
  }
  free(ids);
  qsort(u, nu, sizeof *u, cmp_idcnt);
  int M = (int)(nu < (size_t)o->max_tokens ? nu : (size_t)o->max_tokens);
  s->tok = malloc(((size_t)M + 1) * sizeof *s->tok);
  s->tok_cnt = malloc(((size_t)M + 1) * sizeof *s->tok_cnt);
  idcnt *byid = malloc(((size_t)M + 1) * sizeof *byid);
  if (!s->tok || !s->tok_cnt || !byid) { free(u); free(byid); return -1; }
  for (int i = 0; i < M; i++) { s->tok[i] = u[i].id; s->tok_cnt[i] = u[i].n; byid[i] = (idcnt){u[i].id, i}; }
  free(u);
  s->M = M;
  /* byid sorted by id for lookup */
  qsort(byid, (size_t)M, sizeof *byid, cmp_i32);   /* id is the first member */
  for (long long i = 0; i < t->n_tok; i++) {
    int32_t id = t->tok_id[i];
    if (id < 0) continue;
    int lo = 0, hi = M - 1;
    while (lo <= hi) {
      int mid = (lo + hi) / 2;
      if (byid[mid].id == id) { idx[i] = (int32_t)byid[mid].n; break; }
      if (byid[mid].id < id) lo = mid + 1; else hi = mid - 1;
    }
  }
  free(byid);
  return 0;
}

#define ALLOC(p, n) do { (p) = calloc((size_t)(n) + 1, sizeof *(p)); if (!(p)) goto oom; } while (0)

int ana_struct_compute(const ana_trace *t, const ana_struct_opts *o, ana_struct *s, char *err, size_t errlen) {
  memset(s, 0, sizeof *s);
  ana_struct_opts def;
  if (!o) { ana_struct_opts_default(&def); o = &def; }
  int L = t->L, E = t->E, K = t->K, NL = t->n_labels;
  s->L = L; s->E = E; s->K = K; s->n_labels = NL; s->min_count = o->min_count;
  size_t EE = (size_t)E * E;
  int32_t *idx = NULL;
  int *prim = NULL;
  ALLOC(s->tok_n, L); ALLOC(s->slots, (size_t)L * E); ALLOC(s->co, (size_t)L * EE);
  ALLOC(s->trans, (size_t)(L > 1 ? L - 1 : 0) * EE);
  ALLOC(s->trans_mi, L); ALLOC(s->trans_nmi, L);
  ALLOC(s->rep_pairs, L); ALLOC(s->rep_rate, L); ALLOC(s->rep_base, L);
  long long maxlen = 1;
  for (int i = 0; i < t->n_seqs; i++) if (t->seq_off[i + 1] - t->seq_off[i] > maxlen) maxlen = t->seq_off[i + 1] - t->seq_off[i];
  s->n_pos_bins = maxlen < ANA_MAX_POS_BINS ? (int)maxlen : ANA_MAX_POS_BINS;
  s->pos_bin_w = (maxlen + s->n_pos_bins - 1) / s->n_pos_bins;
  ALLOC(s->pos, (size_t)L * s->n_pos_bins * E); ALLOC(s->pos_js, L); ALLOC(s->pos_p, L);
  ALLOC(s->lab, (size_t)L * NL * E); ALLOC(s->lab_g, L); ALLOC(s->lab_df, L); ALLOC(s->lab_p, L); ALLOC(s->lab_v, L);
  ALLOC(s->lab_js, (size_t)L * NL);
  ALLOC(s->whist, (size_t)L * ANA_WBINS); ALLOC(s->whist_all, (size_t)L * ANA_WBINS);
  ALLOC(s->w1_mean, L); ALLOC(s->w1_pinned, L); ALLOC(s->w1_uniform, L);
  ALLOC(s->tok_spec, L); ALLOC(s->tok_spec_base, L); ALLOC(s->tok_spec_n, L);
  ALLOC(idx, t->n_tok);
  ALLOC(prim, (size_t)t->n_tok * (L ? L : 1));
  if (frequent_tokens(t, o, s, idx)) goto oom;
  ALLOC(s->tok_exp, (size_t)L * (s->M ? s->M : 1) * E);

  /* pass 1: per token and layer */
  long long *wcnt = calloc((size_t)L + 1, sizeof *wcnt), renorm_bad = 0, renorm_n = 0;
  double *w1sum = calloc((size_t)L + 1, sizeof *w1sum);
  long long *pinned = calloc((size_t)L + 1, sizeof *pinned), *unif = calloc((size_t)L + 1, sizeof *unif);
  if (!wcnt || !w1sum || !pinned || !unif) { free(wcnt); free(w1sum); free(pinned); free(unif); goto oom; }
  for (int si = 0; si < t->n_seqs; si++) {
    int lab = t->seq_label[si];
    for (long long tok = t->seq_off[si]; tok < t->seq_off[si + 1]; tok++) {
      long long pos = tok - t->seq_off[si];
      int pb = (int)(pos / s->pos_bin_w);
      if (pb >= s->n_pos_bins) pb = s->n_pos_bins - 1;
      for (int li = 0; li < L; li++) {
        size_t c = ana_cell(t, tok, li, 0);
        int ne = 0, best = -1;
        float bw = 0;
        double wsum = 0;
        int wn = 0;
        for (int k = 0; k < K; k++) {
          unsigned e = t->ex[c + k];
          if (e == ANA_NONE) continue;
          ne++;
          float w = t->w[c + k];
          if (best < 0 || (!isnan(w) && (isnan(bw) || w > bw))) { best = (int)e; bw = w; }
          if (!isnan(w)) {
            wsum += w; wn++;
            int b = (int)(w * ANA_WBINS);
            s->whist_all[(size_t)li * ANA_WBINS + (b < 0 ? 0 : b >= ANA_WBINS ? ANA_WBINS - 1 : b)]++;
          }
          s->slots[(size_t)li * E + e]++;
          s->pos[((size_t)li * s->n_pos_bins + pb) * E + e]++;
          s->lab[((size_t)li * NL + lab) * E + e]++;
          if (idx[tok] >= 0) s->tok_exp[((size_t)li * s->M + idx[tok]) * E + e]++;
          for (int k2 = 0; k2 < K; k2++) {
            unsigned e2 = t->ex[c + k2];
            if (e2 != ANA_NONE && (k2 != k || 1)) {
              if (k2 == k) s->co[(size_t)li * EE + e * E + e]++;
              else if (e2 != e) s->co[(size_t)li * EE + e * E + e2]++;
            }
          }
        }
        prim[(size_t)tok * L + li] = best;
        if (!ne) continue;
        s->tok_n[li]++;
        if (wn > 0 && !isnan(bw)) {
          wcnt[li]++;
          w1sum[li] += bw;
          int b = (int)(bw * ANA_WBINS);
          s->whist[(size_t)li * ANA_WBINS + (b < 0 ? 0 : b >= ANA_WBINS ? ANA_WBINS - 1 : b)]++;
          if (bw >= o->pinned_w) pinned[li]++;
          renorm_n++;
          if (fabs(wsum - 1) > 1e-3) renorm_bad++;
        }
      }
    }
  }
  s->renorm = renorm_n > 0 && renorm_bad * 100 < renorm_n;   /* 99% of tokens sum to 1 */
  for (long long tok = 0; tok < t->n_tok; tok++)    /* uniform check needs renorm first */
    for (int li = 0; li < L; li++) {
      size_t c = ana_cell(t, tok, li, 0);
      int ne = 0;
      float bw = NAN;
      for (int k = 0; k < K; k++)
        if (t->ex[c + k] != ANA_NONE) { ne++; if (!isnan(t->w[c + k]) && (isnan(bw) || t->w[c + k] > bw)) bw = t->w[c + k]; }
      if (!ne || isnan(bw)) continue;
      double uni = s->renorm ? 1.0 / ne : 1.0 / E;
      if (bw <= (1 + o->uniform_tol) * uni) unif[li]++;
    }
  for (int li = 0; li < L; li++) {
    s->w1_mean[li] = wcnt[li] ? w1sum[li] / wcnt[li] : NAN;
    s->w1_pinned[li] = wcnt[li] ? (double)pinned[li] / wcnt[li] : NAN;
    s->w1_uniform[li] = wcnt[li] ? (double)unif[li] / wcnt[li] : NAN;
  }
  free(wcnt); free(w1sum); free(pinned); free(unif);

  /* transitions, repetition from primaries */
  long long *pc = calloc((size_t)L * E + 1, sizeof *pc);
  long long *same = calloc((size_t)L + 1, sizeof *same);
  if (!pc || !same) { free(pc); free(same); goto oom; }
  for (int si = 0; si < t->n_seqs; si++)
    for (long long tok = t->seq_off[si]; tok < t->seq_off[si + 1]; tok++)
      for (int li = 0; li < L; li++) {
        int a = prim[(size_t)tok * L + li];
        if (a < 0) continue;
        pc[(size_t)li * E + a]++;
        if (li + 1 < L) {
          int b = prim[(size_t)tok * L + li + 1];
          if (b >= 0) s->trans[(size_t)li * EE + (size_t)a * E + b]++;
        }
        if (tok + 1 < t->seq_off[si + 1]) {
          int b = prim[(size_t)(tok + 1) * L + li];
          if (b >= 0) { s->rep_pairs[li]++; same[li] += a == b; }
        }
      }
  for (int li = 0; li < L; li++) {
    long long tot = 0;
    double base = 0;
    for (int e = 0; e < E; e++) tot += pc[(size_t)li * E + e];
    for (int e = 0; e < E; e++) { double p = tot ? (double)pc[(size_t)li * E + e] / tot : 0; base += p * p; }
    s->rep_base[li] = tot ? base : NAN;
    s->rep_rate[li] = s->rep_pairs[li] ? (double)same[li] / s->rep_pairs[li] : NAN;
    s->trans_mi[li] = s->trans_nmi[li] = NAN;
    if (li + 1 < L) {
      const long long *tr = s->trans + (size_t)li * EE;
      long long *ra = calloc((size_t)E, sizeof *ra), *cb = calloc((size_t)E, sizeof *cb);
      if (!ra || !cb) { free(ra); free(cb); free(pc); free(same); goto oom; }
      long long n = 0;
      for (int a = 0; a < E; a++) for (int b = 0; b < E; b++) { ra[a] += tr[a * E + b]; cb[b] += tr[a * E + b]; n += tr[a * E + b]; }
      if (n > 0) {
        double mi = 0;
        for (int a = 0; a < E; a++) for (int b = 0; b < E; b++) {
          double x = (double)tr[a * E + b];
          if (x > 0) mi += x / n * log2(x * n / ((double)ra[a] * cb[b]));
        }
        double ha = ana_entropy_bits(ra, E), hb = ana_entropy_bits(cb, E), hm = ha < hb ? ha : hb;
        s->trans_mi[li] = mi < 0 ? 0 : mi;
        s->trans_nmi[li] = hm > 0 ? s->trans_mi[li] / hm : NAN;
      }
      free(ra); free(cb);
    }
  }
  free(pc); free(same);

  /* position drift, label tests */
  long long *h1 = calloc((size_t)E + 1, sizeof *h1), *h2 = calloc((size_t)E + 1, sizeof *h2);
  if (!h1 || !h2) { free(h1); free(h2); goto oom; }
  for (int li = 0; li < L; li++) {
    memset(h1, 0, (size_t)E * sizeof *h1); memset(h2, 0, (size_t)E * sizeof *h2);
    int half = s->n_pos_bins / 2;
    for (int b = 0; b < s->n_pos_bins; b++)
      for (int e = 0; e < E; e++) (b < half ? h1 : h2)[e] += s->pos[((size_t)li * s->n_pos_bins + b) * E + e];
    s->pos_js[li] = half > 0 ? ana_js_bits(h1, h2, E) : NAN;
    ana_gtest(s->pos + (size_t)li * s->n_pos_bins * E, s->n_pos_bins, E, NULL, NULL, &s->pos_p[li], NULL);
    const long long *lt = s->lab + (size_t)li * NL * E;
    ana_gtest(lt, NL, E, &s->lab_g[li], &s->lab_df[li], &s->lab_p[li], &s->lab_v[li]);
    for (int j = 0; j < NL; j++) {   /* label vs the rest of the labels */
      for (int e = 0; e < E; e++) h1[e] = s->slots[(size_t)li * E + e] - lt[(size_t)j * E + e];
      s->lab_js[(size_t)li * NL + j] = ana_js_bits(lt + (size_t)j * E, h1, E);
    }
  }
  free(h1); free(h2);

  /* token specialization */
  for (int li = 0; li < L; li++) {
    s->tok_spec[li] = s->tok_spec_base[li] = NAN;
    if (!s->M || !s->tok_n[li]) continue;
    double acc = 0, mx = 0;
    long long n = 0;
    for (int i = 0; i < s->M; i++) {
      if (s->tok_cnt[i] < o->min_count) continue;
      const long long *r = s->tok_exp + ((size_t)li * s->M + i) * E;
      long long m = 0;
      for (int e = 0; e < E; e++) if (r[e] > m) m = r[e];
      acc += (double)m;
      n += s->tok_cnt[i];
    }
    for (int e = 0; e < E; e++) { double q = (double)s->co[(size_t)li * EE + e * E + e] / s->tok_n[li]; if (q > mx) mx = q; }
    s->tok_spec_n[li] = n;
    if (n > 0) { s->tok_spec[li] = acc / n; s->tok_spec_base[li] = mx; }
  }
  free(idx); free(prim);
  return 0;
oom:
  free(idx); free(prim);
  ana_struct_free(s);
  snprintf(err, errlen, "out of memory computing routing structure");
  return -1;
}

void ana_struct_free(ana_struct *s) {
  if (!s) return;
  free(s->tok_n); free(s->slots); free(s->co); free(s->trans); free(s->trans_mi); free(s->trans_nmi);
  free(s->rep_pairs); free(s->rep_rate); free(s->rep_base); free(s->pos); free(s->pos_js); free(s->pos_p);
  free(s->lab); free(s->lab_g); free(s->lab_df); free(s->lab_p); free(s->lab_v); free(s->lab_js);
  free(s->whist); free(s->whist_all); free(s->w1_mean); free(s->w1_pinned); free(s->w1_uniform);
  free(s->tok); free(s->tok_cnt); free(s->tok_exp); free(s->tok_spec); free(s->tok_spec_base); free(s->tok_spec_n);
  memset(s, 0, sizeof *s);
}

int ana_top_tokens(const ana_struct *s, int li, int e, int n, int *idx, double *share) {
  int got = 0;
  if (!s->M || li < 0 || li >= s->L || e < 0 || e >= s->E) return 0;
  for (int i = 0; i < s->M; i++) {
    long long c = s->tok_exp[((size_t)li * s->M + i) * s->E + e];
    if (s->tok_cnt[i] < s->min_count || c < 1) continue;
    double sh = (double)c / (double)s->tok_cnt[i];
    int j = got < n ? got++ : n;   /* insertion into the sorted top-n */
    while (j > 0) {
      int p = idx[j - 1];
      long long pc = s->tok_exp[((size_t)li * s->M + p) * s->E + e];
      int better = sh > share[j - 1] || (sh == share[j - 1] && (c > pc || (c == pc && s->tok[i] < s->tok[p])));
      if (!better) break;
      if (j < n) { idx[j] = idx[j - 1]; share[j] = share[j - 1]; }
      j--;
    }
    if (j < n) { idx[j] = i; share[j] = sh; }
  }
  return got;
}
