/* rep_compare.c — renders run comparisons (see rep_compare.h): text tables on stdout,
 * JSON, and the paper folder (Markdown, LaTeX booktabs, CSV, scatter figure). The cost
 * column is GPU kernel time when every compared run has kernel rows (kernel_scope), else
 * the CPU op timers for all of them; its source is named in every output ("gpu kernels" /
 * "cpu ops", and "mixed" when only some runs have kernels). */
#include "reports/rep_compare.h"
#include "analysis/ana_compare.h"

#include <cairo-pdf.h>
#include <cairo-svg.h>
#include <cairo.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int rerr(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -1;
}

/* per-run summary row for the paper table and the scatter */
typedef struct run_row {
  char name[160];
  double ppl, dppl, jaccard, top1, cv, maxvio, hnorm, us_per_token, kl;
  long long dropped;
} run_row;

static double mean_of(const double *v, int n) {
  double s = 0;
  int c = 0;
  for (int i = 0; i < n; i++) if (!isnan(v[i])) { s += v[i]; c++; }
  return c ? s / c : NAN;
}

static void row_from(const ana_compare *c, int side, run_row *r) {
  const ana_run *run = side ? &c->run_b : &c->run_a;
  const ana_balance *b = side ? c->bal_b : c->bal_a;
  snprintf(r->name, sizeof r->name, "%s", run->policy[0] ? run->policy : "native");
  r->ppl = side ? c->q.ppl_all_b : c->q.ppl_all_a;
  r->dppl = side ? 100.0 * (c->q.ppl_all_b / c->q.ppl_all_a - 1) : 0;
  r->jaccard = side ? mean_of(c->jaccard, c->n_layers) : 1;
  r->top1 = side ? mean_of(c->top1, c->n_layers) : 1;
  double cv = 0, mv = 0, h = 0;
  for (int l = 0; l < c->n_layers; l++) { cv += b[l].cv; mv += b[l].maxvio; h += b[l].h_norm; }
  r->cv = cv / c->n_layers; r->maxvio = mv / c->n_layers; r->hnorm = h / c->n_layers;
  r->us_per_token = (side ? c->ns_per_token_b : c->ns_per_token_a) / 1000.0;
  r->dropped = side ? c->dropped_b : c->dropped_a;
  r->kl = side ? c->kl_mean : (c->n_logit_pos ? 0.0 : NAN);
}

static void print_pair(FILE *f, const ana_compare *c) {
  fprintf(f, "run %lld [%s] vs run %lld [%s]: %lld tokens, identical inputs\n", c->run_a.run_id, c->run_a.policy,
          c->run_b.run_id, c->run_b.policy, c->n_tokens);
  fprintf(f, "quality:\n  %-16s %10s %12s %12s %9s\n", "label", "scored", "ppl A", "ppl B", "delta");
  for (int i = 0; i < c->q.n_labels; i++)
    fprintf(f, "  %-16s %10lld %12.4f %12.4f %8.2f%%\n", c->q.labels[i], c->q.scored[i], c->q.ppl_a[i], c->q.ppl_b[i],
            100.0 * (c->q.ppl_b[i] / c->q.ppl_a[i] - 1));
  fprintf(f, "  %-16s %10s %12.4f %12.4f %8.2f%%\n", "all", "", c->q.ppl_all_a, c->q.ppl_all_b,
          100.0 * (c->q.ppl_all_b / c->q.ppl_all_a - 1));
  fprintf(f, "  tokens dropped by capacity: A %lld, B %lld\n", c->dropped_a, c->dropped_b);
  if (c->n_logit_pos)
    fprintf(f, "  next-token distributions over %lld sampled positions: mean KL(A||B) %.5f nats, top-1 agreement %.4f\n",
            c->n_logit_pos, c->kl_mean, c->next_top1);
  else fprintf(f, "  next-token KL / top-1 agreement: n/a (needs --record full in both runs)\n");
  fprintf(f, "routing (per MoE layer; agreement needs routing rows in both runs):\n");
  fprintf(f, "  %5s %8s %7s %7s %6s %6s %7s %7s %8s %8s %7s %7s\n", "layer", "jaccard", "top1", "w_corr", "k_A", "k_B",
          "CV_A", "CV_B", "MaxVio_A", "MaxVio_B", "H_A", "H_B");
  for (int l = 0; l < c->n_layers; l++)
    fprintf(f, "  %5d %8.4f %7.4f %7.4f %6.2f %6.2f %7.3f %7.3f %8.3f %8.3f %7.4f %7.4f\n", c->layer_ids[l], c->jaccard[l],
            c->top1[l], c->wcorr[l], c->mean_k_a[l], c->mean_k_b[l], c->bal_a[l].cv, c->bal_b[l].cv, c->bal_a[l].maxvio,
            c->bal_b[l].maxvio, c->bal_a[l].h_norm, c->bal_b[l].h_norm);
  fprintf(f, "largest load shifts (share of slots, B - A):\n");
  for (int l = 0; l < c->n_layers; l++) {
    fprintf(f, "  layer %d:", c->layer_ids[l]);
    int used[3] = {-1, -1, -1};
    for (int t = 0; t < 3 && t < c->n_experts; t++) {
      int best = -1;
      for (int e = 0; e < c->n_experts; e++) {
        if (e == used[0] || e == used[1]) continue;
        if (best < 0 || fabs(c->shift[(size_t)l * c->n_experts + e]) > fabs(c->shift[(size_t)l * c->n_experts + best])) best = e;
      }
      used[t] = best;
      fprintf(f, " e%d %+.1f%%", best, 100 * c->shift[(size_t)l * c->n_experts + best]);
    }
    fputc('\n', f);
  }
  if (c->cost_src == ANA_COST_KERNELS)
    fprintf(f, "cost (gpu kernels): GPU kernel time %.3f us/token (A) vs %.3f us/token (B)\n\n", c->ns_per_token_a / 1000,
            c->ns_per_token_b / 1000);
  else
    fprintf(f, "cost (cpu ops%s): engine op time %.1f us/token (A) vs %.1f us/token (B)\n\n",
            c->cost_mixed ? (c->kern_a ? "; mixed: only run A has GPU kernel rows, so both use ops"
                                       : "; mixed: only run B has GPU kernel rows, so both use ops") : "",
            c->ns_per_token_a / 1000, c->ns_per_token_b / 1000);
}

static cJSON *nums(const double *v, int n) {
  cJSON *a = cJSON_CreateArray();
  for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, isnan(v[i]) ? cJSON_CreateNull() : cJSON_CreateNumber(v[i]));
  return a;
}

static cJSON *pair_json(const ana_compare *c) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "run_a", (double)c->run_a.run_id);
  cJSON_AddNumberToObject(o, "run_b", (double)c->run_b.run_id);
  cJSON_AddStringToObject(o, "policy_a", c->run_a.policy);
  cJSON_AddStringToObject(o, "policy_b", c->run_b.policy);
  cJSON_AddNumberToObject(o, "tokens", (double)c->n_tokens);
  cJSON *q = cJSON_AddArrayToObject(o, "quality");
  for (int i = 0; i < c->q.n_labels; i++) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "label", c->q.labels[i]);
    cJSON_AddNumberToObject(r, "scored", (double)c->q.scored[i]);
    cJSON_AddNumberToObject(r, "ppl_a", c->q.ppl_a[i]);
    cJSON_AddNumberToObject(r, "ppl_b", c->q.ppl_b[i]);
    cJSON_AddItemToArray(q, r);
  }
  cJSON_AddNumberToObject(o, "ppl_a", c->q.ppl_all_a);
  cJSON_AddNumberToObject(o, "ppl_b", c->q.ppl_all_b);
  cJSON_AddNumberToObject(o, "dropped_a", (double)c->dropped_a);
  cJSON_AddNumberToObject(o, "dropped_b", (double)c->dropped_b);
  cJSON_AddBoolToObject(o, "has_routing", c->has_routing);
  cJSON_AddNumberToObject(o, "logit_positions", (double)c->n_logit_pos);
  if (c->n_logit_pos) {
    cJSON_AddNumberToObject(o, "kl_mean", c->kl_mean);
    cJSON_AddNumberToObject(o, "next_token_top1", c->next_top1);
  } else {
    cJSON_AddNullToObject(o, "kl_mean");
    cJSON_AddNullToObject(o, "next_token_top1");
  }
  int L = c->n_layers;
  double *cva = malloc(sizeof(double) * L), *cvb = malloc(sizeof(double) * L), *mva = malloc(sizeof(double) * L),
         *mvb = malloc(sizeof(double) * L), *ids = malloc(sizeof(double) * L);
  for (int l = 0; l < L; l++) { cva[l] = c->bal_a[l].cv; cvb[l] = c->bal_b[l].cv; mva[l] = c->bal_a[l].maxvio; mvb[l] = c->bal_b[l].maxvio; ids[l] = c->layer_ids[l]; }
  cJSON_AddItemToObject(o, "layers", nums(ids, L));
  cJSON_AddItemToObject(o, "jaccard", nums(c->jaccard, L));
  cJSON_AddItemToObject(o, "top1_agreement", nums(c->top1, L));
  cJSON_AddItemToObject(o, "weight_corr", nums(c->wcorr, L));
  cJSON_AddItemToObject(o, "cv_a", nums(cva, L));
  cJSON_AddItemToObject(o, "cv_b", nums(cvb, L));
  cJSON_AddItemToObject(o, "maxvio_a", nums(mva, L));
  cJSON_AddItemToObject(o, "maxvio_b", nums(mvb, L));
  cJSON_AddItemToObject(o, "load_shift", nums(c->shift, L * c->n_experts));
  cJSON_AddNumberToObject(o, "ns_per_token_a", isnan(c->ns_per_token_a) ? -1 : c->ns_per_token_a);
  cJSON_AddNumberToObject(o, "ns_per_token_b", isnan(c->ns_per_token_b) ? -1 : c->ns_per_token_b);
  cJSON_AddStringToObject(o, "cost_source", ana_cost_src_name(c->cost_src));
  cJSON_AddBoolToObject(o, "cost_mixed", c->cost_mixed);
  cJSON_AddBoolToObject(o, "gpu_kernels_a", c->kern_a);
  cJSON_AddBoolToObject(o, "gpu_kernels_b", c->kern_b);
  cJSON *lc = cJSON_AddObjectToObject(o, "layer_ns_per_token");
  cJSON_AddItemToObject(lc, "a", nums(c->layer_ns_a, L));
  cJSON_AddItemToObject(lc, "b", nums(c->layer_ns_b, L));
  free(cva); free(cvb); free(mva); free(mvb); free(ids);
  return o;
}

static void tex_escape(FILE *f, const char *s) {
  for (; *s; s++) {
    if (strchr("&%$#_{}", *s)) fprintf(f, "\\%c", *s);
    else if (*s == '~' || *s == '^' || *s == '\\') fprintf(f, "\\textasciitilde{}");
    else fputc(*s, f);
  }
}

static int write_tables(const char *dir, const run_row *rows, int n, const char *cost_src, char *err, size_t errlen) {
  char p[4096];
  snprintf(p, sizeof p, "%s/compare.csv", dir);
  FILE *f = fopen(p, "w");
  if (!f) return rerr(err, errlen, "%s: cannot create: %s", p, strerror(errno));
  fprintf(f, "strategy,ppl,delta_ppl_pct,kl_vs_baseline,jaccard_vs_baseline,top1_agreement,cv,maxvio,h_norm,dropped,us_per_token,"
             "cost_source\n");
  for (int i = 0; i < n; i++)
    fprintf(f, "\"%s\",%.6f,%.4f,%.6g,%.6f,%.6f,%.6f,%.6f,%.6f,%lld,%.3f,%s\n", rows[i].name, rows[i].ppl, rows[i].dppl,
            rows[i].kl, rows[i].jaccard, rows[i].top1, rows[i].cv, rows[i].maxvio, rows[i].hnorm, rows[i].dropped,
            rows[i].us_per_token, cost_src);
  fclose(f);
  snprintf(p, sizeof p, "%s/compare.tex", dir);
  if (!(f = fopen(p, "w"))) return rerr(err, errlen, "%s: cannot create: %s", p, strerror(errno));
  fprintf(f, "%% moescope compare: routing strategy x metric (needs \\usepackage{booktabs} and \\usepackage[T1]{fontenc})\n"
             "\\begin{table}[t]\n\\centering\n\\small\n\\begin{tabular}{lrrrrrrrrr}\n\\toprule\n"
             "Strategy & PPL & $\\Delta$PPL (\\%%) & KL & Jaccard & Top-1 & CV & MaxVio & $H_\\mathrm{norm}$ & Dropped \\\\\n\\midrule\n");
  for (int i = 0; i < n; i++) {
    fprintf(f, "\\texttt{");
    tex_escape(f, rows[i].name);
    char kl[32];
    if (isnan(rows[i].kl)) snprintf(kl, sizeof kl, "--");
    else snprintf(kl, sizeof kl, "%.4f", rows[i].kl);
    fprintf(f, "} & %.2f & %+.2f & %s & %.3f & %.3f & %.3f & %.3f & %.4f & %lld \\\\\n", rows[i].ppl, rows[i].dppl, kl,
            rows[i].jaccard, rows[i].top1, rows[i].cv, rows[i].maxvio, rows[i].hnorm, rows[i].dropped);
  }
  fprintf(f, "\\bottomrule\n\\end{tabular}\n\\caption{Routing strategies on identical inputs. Jaccard and Top-1: "
             "agreement of the expert sets with the first row; KL: mean KL divergence (nats) of the next-token "
             "distributions from the first row's, over sampled positions (record level full); CV, MaxVio, $H_\\mathrm{norm}$: expert-load balance "
             "(mean over MoE layers).}\n\\label{tab:routing-strategies}\n\\end{table}\n");
  fclose(f);
  snprintf(p, sizeof p, "%s/compare.md", dir);
  if (!(f = fopen(p, "w"))) return rerr(err, errlen, "%s: cannot create: %s", p, strerror(errno));
  fprintf(f, "# Routing strategy comparison\n\n| strategy | PPL | ΔPPL %% | KL | Jaccard | Top-1 | CV | MaxVio | H_norm | dropped |"
             " µs/token (%s) |\n", cost_src);
  fprintf(f, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (int i = 0; i < n; i++)
    fprintf(f, "| `%s` | %.3f | %+.2f | %.4g | %.3f | %.3f | %.3f | %.3f | %.4f | %lld | %.1f |\n", rows[i].name, rows[i].ppl,
            rows[i].dppl, rows[i].kl, rows[i].jaccard, rows[i].top1, rows[i].cv, rows[i].maxvio, rows[i].hnorm, rows[i].dropped,
            rows[i].us_per_token);
  fprintf(f, "\n![quality vs balance](quality_vs_balance.png)\n");
  fclose(f);
  return 0;
}

static void draw_scatter(cairo_t *cr, const run_row *rows, int n, double W, double H) {
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  double x0 = 90, y0 = 40, x1 = W - 30, y1 = H - 60;
  double xmin = 1e30, xmax = -1e30, ymin = 1e30, ymax = -1e30;
  for (int i = 0; i < n; i++) {
    if (rows[i].maxvio < xmin) xmin = rows[i].maxvio;
    if (rows[i].maxvio > xmax) xmax = rows[i].maxvio;
    if (rows[i].ppl < ymin) ymin = rows[i].ppl;
    if (rows[i].ppl > ymax) ymax = rows[i].ppl;
  }
  double px = (xmax - xmin) * 0.15 + 1e-3, py = (ymax - ymin) * 0.15 + 1e-3;
  xmin -= px; xmax += px; ymin -= py; ymax += py;
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
  cairo_set_font_size(cr, 15);
  cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  cairo_move_to(cr, x0, 24);
  cairo_show_text(cr, "Quality vs balance across routing strategies");
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, 12);
  cairo_set_line_width(cr, 1);
  cairo_rectangle(cr, x0, y0, x1 - x0, y1 - y0);
  cairo_stroke(cr);
  char buf[64];
  for (int t = 0; t <= 4; t++) {
    double xv = xmin + (xmax - xmin) * t / 4, yv = ymin + (ymax - ymin) * t / 4;
    double X = x0 + (x1 - x0) * t / 4, Y = y1 - (y1 - y0) * t / 4;
    snprintf(buf, sizeof buf, "%.2f", xv);
    cairo_move_to(cr, X - 12, y1 + 16);
    cairo_show_text(cr, buf);
    snprintf(buf, sizeof buf, "%.1f", yv);
    cairo_text_extents_t te;
    cairo_text_extents(cr, buf, &te);
    cairo_move_to(cr, x0 - 6 - te.x_advance, Y + 4);
    cairo_show_text(cr, buf);
  }
  cairo_move_to(cr, (x0 + x1) / 2 - 120, H - 18);
  cairo_show_text(cr, "MaxVio, mean over MoE layers (lower = more balanced)");
  cairo_save(cr);
  cairo_move_to(cr, 20, (y0 + y1) / 2 + 30);
  cairo_rotate(cr, -M_PI / 2);
  cairo_show_text(cr, "perplexity");
  cairo_restore(cr);
  for (int i = 0; i < n; i++) {
    double X = x0 + (rows[i].maxvio - xmin) / (xmax - xmin) * (x1 - x0);
    double Y = y1 - (rows[i].ppl - ymin) / (ymax - ymin) * (y1 - y0);
    cairo_set_source_rgb(cr, i == 0 ? 0.15 : 0.8, 0.3, i == 0 ? 0.7 : 0.2);
    cairo_arc(cr, X, Y, 5, 0, 2 * M_PI);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    cairo_text_extents_t te;
    cairo_text_extents(cr, rows[i].name, &te);
    double tx = X + 8 + te.x_advance > x1 - 4 ? X - 8 - te.x_advance : X + 8;
    cairo_move_to(cr, tx, Y - 6);
    cairo_show_text(cr, rows[i].name);
  }
}

static int write_scatter(const char *dir, const run_row *rows, int n, char *err, size_t errlen) {
  const double W = 720, H = 480;
  char p[4096];
  cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, (int)W, (int)H);
  cairo_t *cr = cairo_create(s);
  draw_scatter(cr, rows, n, W, H);
  cairo_destroy(cr);
  snprintf(p, sizeof p, "%s/quality_vs_balance.png", dir);
  int bad = cairo_surface_write_to_png(s, p) != CAIRO_STATUS_SUCCESS;
  cairo_surface_destroy(s);
  if (bad) return rerr(err, errlen, "%s: cannot write PNG", p);
  for (int k = 0; k < 2; k++) {
    snprintf(p, sizeof p, "%s/quality_vs_balance.%s", dir, k ? "pdf" : "svg");
    s = k ? cairo_pdf_surface_create(p, W, H) : cairo_svg_surface_create(p, W, H);
    cr = cairo_create(s);
    draw_scatter(cr, rows, n, W, H);
    cairo_destroy(cr);
    cairo_surface_finish(s);
    bad = cairo_surface_status(s) != CAIRO_STATUS_SUCCESS;
    cairo_surface_destroy(s);
    if (bad) return rerr(err, errlen, "%s: cannot write", p);
  }
  return 0;
}

static int mkdirs(const char *dir, char *err, size_t errlen) {
  char p[4096];
  snprintf(p, sizeof p, "%s", dir);
  for (char *s = p + 1; *s; s++)
    if (*s == '/') { *s = 0; mkdir(p, 0755); *s = '/'; }
  if (mkdir(p, 0755) && errno != EEXIST) return rerr(err, errlen, "%s: cannot create directory: %s", dir, strerror(errno));
  return 0;
}

int rep_compare_cmd(const rep_run_ref *refs, int n, int json, const char *outdir, FILE *out, char *err, size_t errlen) {
  if (n < 2) return rerr(err, errlen, "compare needs at least two runs");
  ana_db **dbs = calloc((size_t)n, sizeof(ana_db *));
  run_row *rows = calloc((size_t)n, sizeof(run_row));
  cJSON *root = json ? cJSON_CreateArray() : NULL;
  int rc = 0;
  for (int i = 0; i < n && rc == 0; i++) {
    for (int j = 0; j < i; j++) if (!strcmp(refs[j].db, refs[i].db)) dbs[i] = dbs[j];
    if (!dbs[i] && ana_db_open(&dbs[i], refs[i].db, err, errlen)) rc = -1;
  }
  /* one cost source for the whole table: kernels only when every run has them */
  int n_kern = 0;
  for (int i = 0; i < n && rc == 0; i++) {
    ana_run r;
    if (ana_run_get(dbs[i], refs[i].run_id, &r, err, errlen)) rc = -1;
    else n_kern += ana_run_has_kernels(dbs[i], r.run_id);
  }
  int src = n_kern == n ? ANA_COST_KERNELS : ANA_COST_OPS;
  char src_label[64];
  snprintf(src_label, sizeof src_label, "%s%s", ana_cost_src_name(src), n_kern > 0 && n_kern < n ? " (mixed)" : "");
  for (int i = 1; i < n && rc == 0; i++) {
    ana_compare c;
    if (ana_compare_runs_src(dbs[0], refs[0].run_id, dbs[i], refs[i].run_id, src, &c, err, errlen)) { rc = -1; break; }
    if (i == 1) row_from(&c, 0, &rows[0]);
    row_from(&c, 1, &rows[i]);
    if (root) cJSON_AddItemToArray(root, pair_json(&c));
    else print_pair(out, &c);
    ana_compare_free(&c);
  }
  if (rc == 0 && root) { char *t = cJSON_Print(root); fprintf(out, "%s\n", t); free(t); }
  if (rc == 0 && !root) {
    fprintf(out, "%-40s %10s %8s %8s %7s %7s %7s %8s %8s\n", "strategy", "ppl", "dppl%", "jaccard", "top1", "CV", "MaxVio", "H_norm", "us/tok");
    for (int i = 0; i < n; i++)
      fprintf(out, "%-40s %10.3f %+8.2f %8.3f %7.3f %7.3f %7.3f %8.4f %8.1f\n", rows[i].name, rows[i].ppl, rows[i].dppl,
              rows[i].jaccard, rows[i].top1, rows[i].cv, rows[i].maxvio, rows[i].hnorm, rows[i].us_per_token);
    fprintf(out, "us/tok = %s%s\n", src == ANA_COST_KERNELS ? "GPU kernel time per token (kernel_scope)" : "engine op time per token (ops)",
            n_kern > 0 && n_kern < n ? "; mixed: only some runs have GPU kernel rows, so all use the CPU op timers" : "");
  }
  if (rc == 0 && outdir && (mkdirs(outdir, err, errlen) || write_tables(outdir, rows, n, src_label, err, errlen) ||
                            write_scatter(outdir, rows, n, err, errlen)))
    rc = -1;
  cJSON_Delete(root);
  for (int i = 0; i < n; i++) {
    int dup = 0;
    for (int j = 0; j < i; j++) if (dbs[j] == dbs[i]) dup = 1;
    if (!dup && dbs[i]) ana_db_close(dbs[i]);
  }
  free(dbs);
  free(rows);
  return rc;
}
