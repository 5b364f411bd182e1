/* rep_report.c — `moescope report`: turns one run of a trace DB into a report folder:
 * heatmap_load.{png,svg} (layer x expert load / uniform share), label_pref_layer<L>.{png,svg}
 * (label x expert preference per MoE layer, when routing rows and labels exist), report.md
 * and a self-contained index.html (PNGs embedded as base64 data URIs). Reads only the DB
 * through analysis/; figures are drawn by rep_heatmap.c. */
#include "reports/rep_commands.h"
#include "reports/rep_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int mkdir_p(const char *path, char *err, size_t errlen) {
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

/* One figure of the report: file stem, caption. */
typedef struct figure { char stem[64]; char caption[160]; } figure;

typedef struct figs { figure *v; int n, cap; } figs;

static int figs_add(figs *f, const char *stem, const char *caption) {
  if (f->n == f->cap) {
    int nc = f->cap ? f->cap * 2 : 8;
    figure *nv = realloc(f->v, (size_t)nc * sizeof *nv);
    if (!nv) return -1;
    f->v = nv; f->cap = nc;
  }
  snprintf(f->v[f->n].stem, sizeof f->v[f->n].stem, "%s", stem);
  snprintf(f->v[f->n].caption, sizeof f->v[f->n].caption, "%s", caption);
  f->n++;
  return 0;
}

static int write_fig(const char *outdir, const char *stem, const rep_heatmap *hm, char *err,
                     size_t errlen) {
  char png[4200], svg[4200];
  snprintf(png, sizeof png, "%s/%s.png", outdir, stem);
  snprintf(svg, sizeof svg, "%s/%s.svg", outdir, stem);
  return rep_heatmap_write(hm, png, svg, NULL, NULL, err, errlen);
}

static int load_heatmap(const ana_summary *s, const char *outdir, char *err, size_t errlen) {
  int L = s->load.n_layers, E = s->load.n_experts;
  double *ratio = malloc((size_t)L * E * sizeof *ratio);
  char (*lab)[24] = malloc((size_t)L * sizeof *lab);
  const char **labp = malloc((size_t)L * sizeof *labp);
  int rc = -1;
  if (!ratio || !lab || !labp) { snprintf(err, errlen, "out of memory"); goto done; }
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
  rep_heatmap hm = {title, sub, "expert", "layer", "load / uniform share (log scale)", L, E,
                    labp, ratio};
  rc = write_fig(outdir, "heatmap_load", &hm, err, errlen);
done:
  free(ratio); free(lab); free(labp);
  return rc;
}

/* Per-label preference heatmaps, one per MoE layer. Returns 0 and sets *note when skipped. */
static int label_heatmaps(ana_db *d, const ana_summary *s, const char *outdir, figs *fg,
                          char *note, size_t notelen, char *err, size_t errlen) {
  ana_labels lb;
  int rc = ana_label_counts(d, &s->run, -1, &lb, note, notelen);
  if (rc == 1) return 0;
  if (rc != 0) { snprintf(err, errlen, "%s", note); note[0] = 0; return -1; }
  if (!lb.has_real_label) {
    snprintf(note, notelen, "no sequence labels in run %lld (give --label when running)",
             s->run.run_id);
    ana_labels_free(&lb);
    return 0;
  }
  int E = lb.n_experts, NL = lb.n_labels;
  double *ratio = malloc((size_t)NL * E * sizeof *ratio);
  char (*lab)[96] = malloc((size_t)NL * sizeof *lab);
  const char **labp = malloc((size_t)NL * sizeof *labp);
  rc = -1;
  if (!ratio || !lab || !labp) { snprintf(err, errlen, "out of memory"); goto done; }
  for (int l = 0; l < lb.n_layers; l++) {
    const long long *c = lb.counts + (size_t)l * NL * E;
    for (int j = 0; j < NL; j++) {
      long long tot = 0;
      for (int e = 0; e < E; e++) tot += c[(size_t)j * E + e];
      double uni = (double)tot / E;
      for (int e = 0; e < E; e++)
        ratio[(size_t)j * E + e] = uni > 0 ? (double)c[(size_t)j * E + e] / uni : NAN;
      snprintf(lab[j], sizeof lab[j], "%.60s (%lld)", lb.labels[j], tot);
      labp[j] = lab[j];
    }
    char title[160], stem[64], cap[160];
    snprintf(title, sizeof title, "Layer %d: expert preference by label, run %lld",
             lb.layer_ids[l], s->run.run_id);
    rep_heatmap hm = {title, "cell = label's share of slots on expert / (1/E); (n) = slots",
                      "expert", "label", "share / uniform share (log scale)", NL, E, labp, ratio};
    snprintf(stem, sizeof stem, "label_pref_layer%d", lb.layer_ids[l]);
    if (write_fig(outdir, stem, &hm, err, errlen) != 0) goto done;
    snprintf(cap, sizeof cap, "Layer %d: expert preference by label", lb.layer_ids[l]);
    if (figs_add(fg, stem, cap) != 0) { snprintf(err, errlen, "out of memory"); goto done; }
  }
  rc = 0;
done:
  free(ratio); free(lab); free(labp);
  ana_labels_free(&lb);
  return rc;
}

static const char b64tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Streams the file at path into f as base64. 0 or -1. */
static int put_base64_file(FILE *f, const char *path) {
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

static void run_rows(const ana_summary *s, const char *names[], char vals[][1100], int *n) {
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

static const char k_conventions[] =
  "slots = token->expert assignments; CV = std/mean of per-expert slots; MaxVio = (max-mean)/mean; "
  "H_norm = entropy/log(E); Gini over experts; dead = experts with 0 slots; overall row = mean of "
  "layer metrics (dead summed). aux_loss = a*E*sum_e f_e*P_e with a = 1 and f_e = slots_e/T "
  "(Hugging Face Mixtral load_balancing_loss_func convention; balanced routing gives k); "
  "z_loss = mean logsumexp(logits)^2. '-' = not recorded (needs --record full).";

static int write_md(const char *outdir, const ana_summary *s, const figs *fg, const char *note,
                    char *err, size_t errlen) {
  char path[4200];
  snprintf(path, sizeof path, "%s/report.md", outdir);
  FILE *f = fopen(path, "w");
  if (!f) { snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno)); return -1; }
  fprintf(f, "# moescope report: run %lld\n\n## Run\n\n| field | value |\n|:---|:---|\n", s->run.run_id);
  const char *names[16];
  char vals[16][1100];
  int n;
  run_rows(s, names, vals, &n);
  for (int i = 0; i < n; i++) {
    fprintf(f, "| %s | ", names[i]);
    for (const char *p = vals[i]; *p; p++) fputs(*p == '|' ? "\\|" : (char[2]){*p, 0}, f);
    fputs(" |\n", f);
  }
  fputs("\n## Load balance\n\n", f);
  rep_balance_table_md(f, s);
  fprintf(f, "\n%s\n\n## Figures\n\n", k_conventions);
  for (int i = 0; i < fg->n; i++)
    fprintf(f, "### %s\n\n![%s](%s.png)\n\n[SVG](%s.svg)\n\n", fg->v[i].caption, fg->v[i].caption,
            fg->v[i].stem, fg->v[i].stem);
  if (note && *note) fprintf(f, "Per-label figures skipped: %s.\n", note);
  int bad = ferror(f);
  if (fclose(f) != 0 || bad) { snprintf(err, errlen, "write error on %s", path); return -1; }
  return 0;
}

static int write_html(const char *outdir, const ana_summary *s, const figs *fg, const char *note,
                      char *err, size_t errlen) {
  char path[4200], png[4200];
  snprintf(path, sizeof path, "%s/index.html", outdir);
  FILE *f = fopen(path, "w");
  if (!f) { snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno)); return -1; }
  fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
             "<title>moescope report: run %lld</title>\n<style>\n"
             "body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}\n"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
             "padding:3px 8px}table.num td{text-align:right}tr.total{font-weight:bold}\n"
             "figure{margin:1.5em 0}img{max-width:100%%;height:auto}"
             "p.note{color:#555;font-size:90%%}\n</style></head><body>\n"
             "<h1>moescope report: run %lld</h1>\n<h2>Run</h2>\n<table>\n",
          s->run.run_id, s->run.run_id);
  const char *names[16];
  char vals[16][1100];
  int n;
  run_rows(s, names, vals, &n);
  for (int i = 0; i < n; i++) {
    fprintf(f, "<tr><th>%s</th><td>", names[i]);
    rep_html_escape(f, vals[i]);
    fputs("</td></tr>\n", f);
  }
  fputs("</table>\n<h2>Load balance</h2>\n", f);
  rep_balance_table_html(f, s);
  fputs("<p class=\"note\">", f);
  rep_html_escape(f, k_conventions);
  fputs("</p>\n<h2>Figures</h2>\n", f);
  for (int i = 0; i < fg->n; i++) {
    snprintf(png, sizeof png, "%s/%s.png", outdir, fg->v[i].stem);
    fprintf(f, "<figure id=\"%s\"><img alt=\"", fg->v[i].stem);
    rep_html_escape(f, fg->v[i].caption);
    fputs("\" src=\"data:image/png;base64,", f);
    if (put_base64_file(f, png) != 0) {
      snprintf(err, errlen, "cannot read %s for embedding", png);
      fclose(f);
      return -1;
    }
    fputs("\"><figcaption>", f);
    rep_html_escape(f, fg->v[i].caption);
    fprintf(f, " (<a href=\"%s.svg\">SVG</a>)</figcaption></figure>\n", fg->v[i].stem);
  }
  if (note && *note) {
    fputs("<p class=\"note\">Per-label figures skipped: ", f);
    rep_html_escape(f, note);
    fputs(".</p>\n", f);
  }
  fputs("</body></html>\n", f);
  int bad = ferror(f);
  if (fclose(f) != 0 || bad) { snprintf(err, errlen, "write error on %s", path); return -1; }
  return 0;
}

int rep_report_cmd(const char *db_path, long long run_id, const char *outdir, char *err,
                   size_t errlen) {
  if (!outdir || !*outdir) { snprintf(err, errlen, "no output directory given"); return -1; }
  ana_db *d = NULL;
  if (ana_db_open(&d, db_path, err, errlen) != 0) return -1;
  ana_summary s;
  if (ana_summary_get(d, run_id, &s, err, errlen) != 0) { ana_db_close(d); return -1; }
  figs fg = {0};
  char note[512] = "";
  int rc = -1;
  if (mkdir_p(outdir, err, errlen) != 0) goto done;
  if (load_heatmap(&s, outdir, err, errlen) != 0) goto done;
  if (figs_add(&fg, "heatmap_load", "Expert load per layer (load / uniform share)") != 0) {
    snprintf(err, errlen, "out of memory");
    goto done;
  }
  if (label_heatmaps(d, &s, outdir, &fg, note, sizeof note, err, errlen) != 0) goto done;
  if (write_md(outdir, &s, &fg, note, err, errlen) != 0) goto done;
  if (write_html(outdir, &s, &fg, note, err, errlen) != 0) goto done;
  rc = 0;
done:
  free(fg.v);
  ana_summary_free(&s);
  ana_db_close(d);
  return rc;
}
