/* rep_report.c — `moescope report`: turns one run of a trace DB into a report folder. It
 * runs the diagnosis once (balance summary + one routing read + structure), draws every
 * figure (rep_figs.c) and builds every table once as strings (run, diagnosis, balance,
 * structure, label preference, top tokens; rep_table.c), then writes the documents asked
 * for by --format: index.html (self-contained: PNGs embedded as base64, sortable tables),
 * report.md (PNG figures, links to SVG/PDF), report.tex (booktabs tables, \includegraphics
 * of the PDF figures) and, always, tables/<name>.csv for every table. Reads only the DB
 * through analysis/. Also the timeline figure gpu_timeline (rep_timeline.c: GPU kernels per
 * stream, or the CPU op timers when the run has no kernels; window --timeline-batches) and
 * the time tables of `export --time` (rep_time.c: time by layer / op / expert, cost of
 * imbalance), and the flow figures transitions_sankey and bias_trajectory (rep_bias.h:
 * rep_sankey.c, rep_bias.c). */
#include "reports/rep_commands.h"
#include "reports/rep_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "analysis/ana_diag.h"
#include "reports/rep_bias.h"
#include "reports/rep_report_int.h"
#include "reports/rep_timeline.h"

int rep_mkdir_p(const char *path, char *err, size_t errlen) {
  char buf[4096];
  if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
    snprintf(err, errlen, "output path too long");
    return -1;
  }
  for (char *p = buf + 1;; p++) {
    if (*p == '/' || *p == '\0') {
      char c = *p;
      *p = '\0';
      if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create directory '%s': %s", buf, strerror(errno));
        return -1;
      }
      *p = c;
      if (!c) break;
    }
  }
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "cannot create directory '%s': not a directory", path);
    return -1;
  }
  return 0;
}

static const char b64tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Streams the file at path into f as base64. 0 or -1. */
int rep_put_base64_file(FILE *f, const char *path) {
  FILE *in = fopen(path, "rb");
  if (!in) return -1;
  unsigned char b[3 * 4096];
  size_t n;
  char o[4 * 4096];
  while ((n = fread(b, 1, sizeof b, in)) > 0) {
    size_t k = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
      unsigned v = (unsigned)b[i] << 16 | (unsigned)b[i + 1] << 8 | b[i + 2];
      o[k++] = b64tab[v >> 18]; o[k++] = b64tab[(v >> 12) & 63];
      o[k++] = b64tab[(v >> 6) & 63]; o[k++] = b64tab[v & 63];
    }
    if (i < n) {   /* only possible at EOF since the buffer is a multiple of 3 */
      unsigned v = (unsigned)b[i] << 16 | (i + 1 < n ? (unsigned)b[i + 1] << 8 : 0);
      o[k++] = b64tab[v >> 18]; o[k++] = b64tab[(v >> 12) & 63];
      o[k++] = i + 1 < n ? b64tab[(v >> 6) & 63] : '=';
      o[k++] = '=';
    }
    fwrite(o, 1, k, f);
  }
  int bad = ferror(in);
  fclose(in);
  return bad ? -1 : 0;
}

void rep_run_rows(const ana_summary *s, const char *names[], char vals[][1100], int *n) {
  const ana_run *r = &s->run;
  int k = 0;
#define ROW(name, ...) do { names[k] = name; snprintf(vals[k], 1100, __VA_ARGS__); k++; } while (0)
  ROW("run_id", "%lld", r->run_id);
  ROW("started_at", "%s", r->started_at);
  ROW("status", "%s", r->status);
  ROW("model", "%s", r->model_path);
  ROW("family", "%s", r->family);
  ROW("policy", "%s", r->policy);
  ROW("record level", "%s", r->record_level);
  ROW("layers (MoE with data / model)", "%d / %d", s->load.n_layers, r->n_layers);
  ROW("experts (E), top-k, shared", "%d, %d, %d", s->load.n_experts, r->top_k, r->n_shared_experts);
  ROW("device, dtype, threads", "%s, %s, %d", r->device, r->dtype, r->threads);
  ROW("slots (token-expert assignments)", "%lld", s->overall.total);
  ROW("command line", "%.1000s", r->command_line);
#undef ROW
  *n = k;
}

const char rep_conventions[] =
  "slots = token->expert assignments; CV = std/mean of per-expert slots; MaxVio = (max-mean)/mean; "
  "H_norm = entropy/log(E); Gini over experts; dead = experts with 0 slots; overall row = mean of "
  "layer metrics (dead summed). aux_loss = a*E*sum_e f_e*P_e with a = 1 and f_e = slots_e/T "
  "(Hugging Face Mixtral load_balancing_loss_func convention; balanced routing gives k); "
  "z_loss = mean logsumexp(logits)^2; Jain = (sum c)^2/(E sum c^2); drop@CF = share of slots over the capacity "
  "ceil(CF*S_b/E) of their forward batch (S_b = slots of the batch in the layer). '-' = not recorded "
  "(needs --record full).";

void rep_diag_text(FILE *f, ana_db *d, const ana_diag *dg) {
  char names[512];
  fprintf(f, "%s\n", dg->n_findings ? "FINDINGS" : "healthy: no finding in any layer");
  for (int l = 0; l < dg->n; l++) {
    const ana_diag_layer *g = &dg->layers[l];
    fprintf(f, "layer %d: %s", g->layer, g->verdict);
    if (g->flags & ~(unsigned)ANA_F_LOWDATA) fprintf(f, " (%s)", ana_diag_flag_names(g->flags, names, sizeof names));
    fputc('\n', f);
    rep_diag_evidence(f, d, dg, g, "  ");
  }
  rep_diag_thresholds_text(f, &dg->thr);
}


static int build_tables(ana_db *d, const ana_diag *dg, rep_table *tab, int *ntab, char *err, size_t errlen) {
  const ana_summary *s = &dg->sum;
  int n = 0, L = s->load.n_layers;
  rep_table *t;
#define NEWTAB(name, cap, rows, cols) do { t = &tab[n++]; \
    if (rep_table_init(t, name, cap, rows, cols)) { *ntab = n; snprintf(err, errlen, "out of memory"); return -1; } } while (0)
  /* run */
  const char *names[16];
  char vals[16][1100];
  int nr;
  rep_run_rows(s, names, vals, &nr);
  NEWTAB("run", "Run", nr, 2);
  rep_table_set(t, -1, 0, "field"); rep_table_set(t, -1, 1, "value");
  for (int i = 0; i < nr; i++) { rep_table_set(t, i, 0, "%s", names[i]); rep_table_set(t, i, 1, "%s", vals[i]); }
  /* diagnosis */
  NEWTAB("diagnosis", "Diagnosis per MoE layer", dg->n, 9);
  static const char *dh[9] = {"layer", "verdict", "findings", "busiest experts (share)", "top quarter share", "CV", "MaxVio",
                              "dead", "pinned"};
  for (int c = 0; c < 9; c++) rep_table_set(t, -1, c, "%s", dh[c]);
  char b[64], names2[512];
  for (int l = 0; l < dg->n; l++) {
    const ana_diag_layer *g = &dg->layers[l];
    rep_table_set(t, l, 0, "%d", g->layer);
    rep_table_set(t, l, 1, "%s", g->verdict);
    rep_table_set(t, l, 2, "%s", (g->flags & ~(unsigned)ANA_F_LOWDATA) ? ana_diag_flag_names(g->flags & ~(unsigned)ANA_F_LOWDATA, names2, sizeof names2) : "-");
    char busy[128] = "";
    for (int k = 0; k < ANA_DIAG_TOP && g->top_e[k] >= 0; k++)
      snprintf(busy + strlen(busy), sizeof busy - strlen(busy), "%s%d (%.2f)", k ? ", " : "", g->top_e[k], g->top_share[k]);
    rep_table_set(t, l, 3, "%s", busy);
    rep_table_set(t, l, 4, "%s", rep_num(b, sizeof b, "%.3f", g->few_share));
    rep_table_set(t, l, 5, "%s", rep_num(b, sizeof b, "%.3f", g->cv));
    rep_table_set(t, l, 6, "%s", rep_num(b, sizeof b, "%.3f", g->maxvio));
    rep_table_set(t, l, 7, "%d", g->n_dead);
    rep_table_set(t, l, 8, "%s", rep_num(b, sizeof b, "%.3f", g->w1_pinned));
  }
  /* balance */
  NEWTAB("balance", "Load balance per MoE layer (last row: overall)", L + 1, REP_NCOLS);
  char cells[REP_NCOLS][32];
  for (int c = 0; c < REP_NCOLS; c++) rep_table_set(t, -1, c, "%s", rep_balance_heads[c]);
  for (int l = 0; l <= L; l++) {
    rep_balance_row(s, l == L ? -1 : l, cells);
    for (int c = 0; c < REP_NCOLS; c++) rep_table_set(t, l, c, "%s", cells[c]);
  }
  if (dg->has_trace) {
    const ana_trace *tr = &dg->trace;
    const ana_struct *st = &dg->st;
    NEWTAB("structure", "Routing structure per MoE layer", st->L, 15);
    static const char *sh[15] = {"layer", "tokens", "coact max lift", "MI next (bits)", "NMI next", "repeat", "repeat base",
                                 "pos JS (bits)", "label V", "label p", "tok spec", "tok spec base", "top-1 w mean",
                                 "pinned", "uniform"};
    for (int c = 0; c < 15; c++) rep_table_set(t, -1, c, "%s", sh[c]);
    for (int l = 0; l < st->L; l++) {
      double v[13] = {rep_max_lift(st, l), st->trans_mi[l], st->trans_nmi[l], st->rep_rate[l], st->rep_base[l], st->pos_js[l],
                      tr->has_real_label ? st->lab_v[l] : NAN, tr->has_real_label ? st->lab_p[l] : NAN, st->tok_spec[l],
                      st->tok_spec_base[l], st->w1_mean[l], st->w1_pinned[l], st->w1_uniform[l]};
      rep_table_set(t, l, 0, "%d", tr->layer_ids[l]);
      rep_table_set(t, l, 1, "%lld", st->tok_n[l]);
      for (int k = 0; k < 13; k++) rep_table_set(t, l, 2 + k, "%s", rep_num(b, sizeof b, k == 7 ? "%.2g" : "%.4f", v[k]));
    }
    if (tr->has_real_label) {
      int NL = st->n_labels, E = st->E;
      NEWTAB("labels", "Expert preference per label and layer", st->L * NL, 6);
      static const char *lh[6] = {"layer", "label", "slots", "JS vs other labels (bits)", "favourite expert",
                                  "its share / uniform"};
      for (int c = 0; c < 6; c++) rep_table_set(t, -1, c, "%s", lh[c]);
      for (int l = 0; l < st->L; l++)
        for (int j = 0; j < NL; j++) {
          const long long *cn = st->lab + ((size_t)l * NL + j) * E;
          long long tot = 0, mx = -1;
          int arg = 0;
          for (int e = 0; e < E; e++) { tot += cn[e]; if (cn[e] > mx) { mx = cn[e]; arg = e; } }
          int r = l * NL + j;
          rep_table_set(t, r, 0, "%d", tr->layer_ids[l]);
          rep_table_set(t, r, 1, "%s", tr->labels[j]);
          rep_table_set(t, r, 2, "%lld", tot);
          rep_table_set(t, r, 3, "%s", rep_num(b, sizeof b, "%.4f", st->lab_js[(size_t)l * NL + j]));
          rep_table_set(t, r, 4, "%d", arg);
          rep_table_set(t, r, 5, "%s", rep_num(b, sizeof b, "%.2f", tot ? (double)mx * E / tot : NAN));
        }
    }
    if (st->M) {
      int E = st->E, idx[REP_TOPTOK];
      double shr[REP_TOPTOK];
      char piece[256];
      NEWTAB("top_tokens", "Top tokens per expert (share of the token's occurrences routed to the expert)", st->L * E,
             3 + REP_TOPTOK);
      static const char *th[3 + REP_TOPTOK] = {"layer", "expert", "slots %", "1st", "2nd", "3rd", "4th", "5th"};
      for (int c = 0; c < 3 + REP_TOPTOK; c++) rep_table_set(t, -1, c, "%s", th[c]);
      for (int l = 0; l < st->L; l++) {
        long long tot = 0;
        for (int e = 0; e < E; e++) tot += st->slots[(size_t)l * E + e];
        for (int e = 0; e < E; e++) {
          int r = l * E + e, k = ana_top_tokens(st, l, e, REP_TOPTOK, idx, shr);
          rep_table_set(t, r, 0, "%d", tr->layer_ids[l]);
          rep_table_set(t, r, 1, "%d", e);
          rep_table_set(t, r, 2, "%.1f", tot ? 100.0 * st->slots[(size_t)l * E + e] / tot : 0.0);
          for (int i = 0; i < k; i++) {
            ana_token_piece(d, tr->run_id, st->tok[idx[i]], piece, sizeof piece);
            rep_table_set(t, r, 3 + i, "'%s' %.2f", piece, shr[i]);
          }
        }
      }
    }
  }
#undef NEWTAB
  *ntab = n;
  return 0;
}

unsigned rep_parse_formats(const char *s, char *err, size_t errlen) {
  unsigned f = 0;
  char buf[256];
  snprintf(buf, sizeof buf, "%s", s ? s : "");
  for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    if (!strcmp(tok, "html")) f |= REP_DOC_HTML;
    else if (!strcmp(tok, "md")) f |= REP_DOC_MD;
    else if (!strcmp(tok, "tex")) f |= REP_DOC_TEX;
    else if (!strcmp(tok, "pdf")) f |= REP_DOC_PDF;
    else if (!strcmp(tok, "all")) f |= REP_DOC_ALL;
    else { snprintf(err, errlen, "--format: unknown format '%s' (expected html, md, tex, pdf or all)", tok); return 0; }
  }
  if (!f) snprintf(err, errlen, "--format: no format given (expected html,md,tex,pdf)");
  return f;
}

void rep_report_opts_default(rep_report_opts *o) {
  o->docs = REP_DOC_ALL;
  o->tl_first = -1;
  o->tl_batches = REP_TL_DEFAULT_BATCHES;
}

static void note_add(char *note, size_t n, const char *what) {
  size_t l = strlen(note);
  snprintf(note + l, n - l, "%s%s", l ? "; " : "", what);
}

/* The timeline figure of tl (collected first, so that a bad window fails before any file
 * is written); a note instead when the run has no kernel or op timings. */
static int fig_timeline(const rep_timeline *tl, long long run, const char *outdir, unsigned fmt, rep_figs *fg, char *note,
                        size_t notelen, char *err, size_t errlen) {
  if (tl->n_boxes == 0) {
    char w[160];
    snprintf(w, sizeof w, "no GPU kernel or op timings for run %lld: no timeline figure", run);
    note_add(note, notelen, w);
    return 0;
  }
  char path[4200], cap[200];
  snprintf(path, sizeof path, "%s/gpu_timeline", outdir);
  if (tl->source == REP_TL_SRC_KERNELS)
    snprintf(cap, sizeof cap, "GPU timeline: kernels per stream coloured by op (batches %lld..%lld of %d)", tl->batch_first,
             tl->batch_last, tl->n_batches_run);
  else
    snprintf(cap, sizeof cap, "Timeline from CPU op timers (no GPU kernels; batches %lld..%lld of %d)", tl->batch_first,
             tl->batch_last, tl->n_batches_run);
  if (rep_timeline_render(tl, path, fmt, err, errlen)) return -1;
  if (rep_figs_add(fg, "gpu_timeline", cap)) { snprintf(err, errlen, "out of memory"); return -1; }
  return 0;
}

/* The flow figures of rep_bias.h: transitions_sankey (needs routing in >= 2 MoE layers)
 * and bias_trajectory (needs router_bias rows); a note for each one skipped. */
static int fig_flows(ana_db *d, const ana_diag *dg, const char *outdir, unsigned fmt, rep_figs *fg, char *note,
                     size_t notelen, char *err, size_t errlen) {
  char why[512];
  int rc = rep_sankey_figure(dg, outdir, fmt, fg, why, sizeof why, err, errlen);
  if (rc < 0) return -1;
  if (rc == 1 && why[0]) note_add(note, notelen, why);
  rc = rep_bias_figure(d, dg->sum.run.run_id, outdir, fmt, fg, why, sizeof why, err, errlen);
  if (rc < 0) return -1;
  if (rc == 1 && why[0]) note_add(note, notelen, why);
  return 0;
}

int rep_report_cmd_opts(const char *db_path, long long run_id, const char *outdir, const rep_report_opts *o, char *err,
                        size_t errlen) {
  if (!outdir || !*outdir) { snprintf(err, errlen, "no output directory given"); return -1; }
  unsigned docs = o->docs;
  if (!(docs & REP_DOC_ALL)) docs = REP_DOC_ALL;
  unsigned fmt = 0;
  if (docs & (REP_DOC_HTML | REP_DOC_MD)) fmt |= REP_FMT_PNG | REP_FMT_SVG;
  if (docs & (REP_DOC_TEX | REP_DOC_PDF)) fmt |= REP_FMT_PDF;
  ana_db *d = NULL;
  if (ana_db_open(&d, db_path, err, errlen) != 0) return -1;
  ana_diag dg;
  if (ana_diagnose(d, run_id, NULL, &dg, err, errlen) != 0) { ana_db_close(d); return -1; }
  rep_figs fg = {0};
  rep_table tab[REP_MAX_TABLES];
  int ntab = 0, rc = -1;
  char note[1024] = "", path[4200];
  long long run = dg.sum.run.run_id;
  rep_timeline tl = {0};
  if (rep_timeline_collect(d, run, o->tl_first, o->tl_batches, 0, &tl, err, errlen) != 0) goto done;
  if (rep_mkdir_p(outdir, err, errlen) != 0) goto done;
  snprintf(path, sizeof path, "%s/tables", outdir);
  if (rep_mkdir_p(path, err, errlen) != 0) goto done;
  rep_png_async_begin();   /* PNGs are deflated on a second thread while the rest goes on */
  if (rep_figures(d, &dg, outdir, fmt, &fg, note, sizeof note, err, errlen) != 0) goto done;
  if (fig_timeline(&tl, run, outdir, fmt, &fg, note, sizeof note, err, errlen) != 0) goto done;
  if (fig_flows(d, &dg, outdir, fmt, &fg, note, sizeof note, err, errlen) != 0) goto done;
  if (build_tables(d, &dg, tab, &ntab, err, errlen) != 0) goto done;
  if (rep_time_tables(d->db, d->path, run, tab, REP_MAX_TABLES, &ntab, err, errlen) != 0) goto done;
  for (int i = 0; i < ntab; i++) {
    snprintf(path, sizeof path, "%s/tables/%s.csv", outdir, tab[i].name);
    if (rep_table_csv(&tab[i], path, err, errlen) != 0) goto done;
  }
  rep_doc doc = {d, &dg, &fg, tab, ntab, note, fmt};
  if ((docs & REP_DOC_MD) && rep_write_md(outdir, &doc, err, errlen) != 0) goto done;
  if (rep_png_async_end(err, errlen) != 0) goto done;   /* index.html embeds the PNGs */
  if ((docs & REP_DOC_HTML) && rep_write_html(outdir, &doc, err, errlen) != 0) goto done;
  if ((docs & REP_DOC_TEX) && rep_write_tex(outdir, &doc, err, errlen) != 0) goto done;
  rc = 0;
done:
  if (rep_png_async_end(rc ? NULL : err, errlen) != 0) rc = -1;
  for (int i = 0; i < ntab; i++) rep_table_free(&tab[i]);
  rep_timeline_free(&tl);
  free(fg.v);
  ana_diag_free(&dg);
  ana_db_close(d);
  return rc;
}

int rep_report_cmd_fmt(const char *db_path, long long run_id, const char *outdir, unsigned docs, char *err,
                       size_t errlen) {
  rep_report_opts o;
  rep_report_opts_default(&o);
  o.docs = docs;
  return rep_report_cmd_opts(db_path, run_id, outdir, &o, err, errlen);
}

int rep_report_cmd(const char *db_path, long long run_id, const char *outdir, char *err, size_t errlen) {
  return rep_report_cmd_fmt(db_path, run_id, outdir, REP_DOC_ALL, err, errlen);
}
