/* rep_docs.c — the documents of `moescope report` (rep_report.c builds their content):
 * report.md (tables + PNG figures with SVG/PDF links), index.html (self-contained: PNGs
 * embedded as base64 data URIs, click-to-sort tables, every figure in a <figure id=stem>)
 * and report.tex (article + booktabs tables + \includegraphics of the PDF figures; plain
 * pdflatex, non-ASCII written as [U+XXXX]). Every table appears in each document with the
 * same rows as its tables/<name>.csv. */
#include "reports/rep_report_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static FILE *open_doc(const char *outdir, const char *name, char *path, size_t n, char *err, size_t errlen) {
  snprintf(path, n, "%s/%s", outdir, name);
  FILE *f = fopen(path, "w");
  if (!f) snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
  return f;
}

static int close_doc(FILE *f, const char *path, char *err, size_t errlen) {
  int bad = ferror(f);
  if (fclose(f) != 0 || bad) { snprintf(err, errlen, "write error on %s", path); return -1; }
  return 0;
}

/* The diagnosis text as one malloc'd string (NULL on failure). */
static char *diag_string(const rep_doc *doc) {
  char *buf = NULL;
  size_t n = 0;
  FILE *m = open_memstream(&buf, &n);
  if (!m) return NULL;
  rep_diag_text(m, doc->d, doc->dg);
  fclose(m);
  return buf;
}

int rep_write_md(const char *outdir, const rep_doc *doc, char *err, size_t errlen) {
  char path[4200];
  FILE *f = open_doc(outdir, "report.md", path, sizeof path, err, errlen);
  if (!f) return -1;
  fprintf(f, "# moescope report: run %lld\n\n", doc->dg->sum.run.run_id);
  char *dt = diag_string(doc);
  for (int i = 0; i < doc->ntab; i++) {
    fprintf(f, "## %s\n\n", doc->tab[i].caption);
    if (!strcmp(doc->tab[i].name, "diagnosis") && dt) fprintf(f, "```\n%s```\n\n", dt);
    rep_table_md(f, &doc->tab[i]);
    fprintf(f, "\nCSV: [tables/%s.csv](tables/%s.csv)\n\n", doc->tab[i].name, doc->tab[i].name);
    if (!strcmp(doc->tab[i].name, "balance")) fprintf(f, "%s\n\n", rep_conventions);
  }
  free(dt);
  fputs("## Figures\n\n", f);
  for (int i = 0; i < doc->fg->n; i++) {
    const rep_figure *g = &doc->fg->v[i];
    fprintf(f, "### %s\n\n![%s](%s.png)\n\n[SVG](%s.svg)", g->caption, g->caption, g->stem, g->stem);
    if (doc->fmt & REP_FMT_PDF) fprintf(f, " · [PDF](%s.pdf)", g->stem);
    fputs("\n\n", f);
  }
  if (doc->note[0]) fprintf(f, "Skipped: %s.\n", doc->note);
  return close_doc(f, path, err, errlen);
}

static const char k_sort_js[] =
  "<script>\n"
  "document.querySelectorAll('table.sortable th').forEach(function(th){th.style.cursor='pointer';"
  "th.title='click to sort';th.addEventListener('click',function(){var t=th.closest('table'),"
  "b=t.tBodies[0],i=Array.prototype.indexOf.call(th.parentNode.children,th),d=th.dataset.d==='1'?-1:1;"
  "th.dataset.d=d===1?'1':'0';var r=Array.prototype.slice.call(b.rows);r.sort(function(x,y){"
  "var p=x.cells[i].textContent,q=y.cells[i].textContent,a=parseFloat(p),c=parseFloat(q);"
  "if(!isNaN(a)&&!isNaN(c))return d*(a-c);return d*p.localeCompare(q);});"
  "r.forEach(function(x){b.appendChild(x);});});});\n</script>\n";

int rep_write_html(const char *outdir, const rep_doc *doc, char *err, size_t errlen) {
  char path[4200], png[4200];
  FILE *f = open_doc(outdir, "index.html", path, sizeof path, err, errlen);
  if (!f) return -1;
  long long run = doc->dg->sum.run.run_id;
  fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
             "<title>moescope report: run %lld</title>\n<style>\n"
             "body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}\n"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
             "padding:3px 8px}table.num td{text-align:right}th{background:#f3f3f3}\n"
             "figure{margin:1.5em 0}img{max-width:100%%;height:auto}"
             "p.note{color:#555;font-size:90%%}pre{background:#f7f7f7;padding:8px;overflow-x:auto}\n"
             "</style></head><body>\n<h1>moescope report: run %lld</h1>\n", run, run);
  fputs("<p>Figures:", f);
  for (int i = 0; i < doc->fg->n; i++) fprintf(f, " <a href=\"#%s\">%s</a>", doc->fg->v[i].stem, doc->fg->v[i].stem);
  fputs("</p>\n", f);
  char *dt = diag_string(doc);
  for (int i = 0; i < doc->ntab; i++) {
    fputs("<h2>", f);
    rep_html_escape(f, doc->tab[i].caption);
    fputs("</h2>\n", f);
    if (!strcmp(doc->tab[i].name, "diagnosis") && dt) { fputs("<pre>", f); rep_html_escape(f, dt); fputs("</pre>\n", f); }
    rep_table_html(f, &doc->tab[i]);
    fprintf(f, "<p class=\"note\">CSV: <a href=\"tables/%s.csv\">tables/%s.csv</a>", doc->tab[i].name, doc->tab[i].name);
    if (!strcmp(doc->tab[i].name, "balance")) { fputs("<br>", f); rep_html_escape(f, rep_conventions); }
    fputs("</p>\n", f);
  }
  free(dt);
  fputs("<h2>Figures</h2>\n", f);
  for (int i = 0; i < doc->fg->n; i++) {
    const rep_figure *g = &doc->fg->v[i];
    snprintf(png, sizeof png, "%s/%s.png", outdir, g->stem);
    fprintf(f, "<figure id=\"%s\"><img alt=\"", g->stem);
    rep_html_escape(f, g->caption);
    fputs("\" src=\"data:image/png;base64,", f);
    if (rep_put_base64_file(f, png) != 0) {
      snprintf(err, errlen, "cannot read %s for embedding", png);
      fclose(f);
      return -1;
    }
    fputs("\"><figcaption>", f);
    rep_html_escape(f, g->caption);
    fprintf(f, " (<a href=\"%s.svg\">SVG</a>", g->stem);
    if (doc->fmt & REP_FMT_PDF) fprintf(f, ", <a href=\"%s.pdf\">PDF</a>", g->stem);
    fputs(")</figcaption></figure>\n", f);
  }
  if (doc->note[0]) { fputs("<p class=\"note\">Skipped: ", f); rep_html_escape(f, doc->note); fputs(".</p>\n", f); }
  fputs(k_sort_js, f);
  fputs("</body></html>\n", f);
  return close_doc(f, path, err, errlen);
}

/* Verbatim text for LaTeX: ASCII as is, other code points as [U+XXXX]. */
static void tex_verbatim(FILE *f, const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    if (*p < 0x80) { fputc(*p == '\t' ? ' ' : *p, f); p++; continue; }
    int n = *p >= 0xF0 ? 4 : *p >= 0xE0 ? 3 : *p >= 0xC0 ? 2 : 1;
    unsigned cp = n == 1 ? *p : *p & (0x7F >> n);
    int i = 1;
    for (; i < n && (p[i] & 0xC0) == 0x80; i++) cp = cp << 6 | (p[i] & 0x3F);
    fprintf(f, "[U+%04X]", i == n ? cp : *p);
    p += i == n ? n : 1;
  }
}

int rep_write_tex(const char *outdir, const rep_doc *doc, char *err, size_t errlen) {
  char path[4200];
  FILE *f = open_doc(outdir, "report.tex", path, sizeof path, err, errlen);
  if (!f) return -1;
  /* T1 font encoding: the escapes of rep_tex_escape (\textquotedbl, \textless, ...) need it */
  fprintf(f, "%% moescope report, run %lld: pdflatex report.tex (needs booktabs, graphicx, geometry)\n"
             "\\documentclass[10pt]{article}\n\\usepackage[T1]{fontenc}\n\\usepackage[margin=2cm]{geometry}\n"
             "\\usepackage{booktabs}\n"
             "\\usepackage{graphicx}\n\\usepackage{float}\n\\begin{document}\n"
             "\\section*{moescope report: run %lld}\n\n", doc->dg->sum.run.run_id, doc->dg->sum.run.run_id);
  char *dt = diag_string(doc);
  if (dt) {
    fputs("\\subsection*{Diagnosis}\n{\\footnotesize\n\\begin{verbatim}\n", f);
    /* wrap long lines at 110 columns so they stay on the page; non-ASCII as [U+XXXX] */
    int col = 0;
    for (const char *p = dt; *p;) {
      if (*p == '\n') col = -1;
      else if (col >= 110) { fputs("\n    ", f); col = 4; }
      const char *q = p + 1;
      while (((unsigned char)*q & 0xC0) == 0x80) q++;   /* one code point */
      char one[8];
      size_t len = (size_t)(q - p) < sizeof one ? (size_t)(q - p) : sizeof one - 1;
      memcpy(one, p, len);
      one[len] = 0;
      tex_verbatim(f, one);
      col++;
      p = q;
    }
    fputs("\\end{verbatim}\n}\n\n", f);
    free(dt);
  }
  for (int i = 0; i < doc->ntab; i++) rep_table_tex(f, &doc->tab[i]);
  fputs("\\begingroup\\small\n", f);
  rep_tex_escape(f, rep_conventions);
  fputs("\\par\\endgroup\n\\clearpage\n", f);
  if (doc->fmt & REP_FMT_PDF)
    for (int i = 0; i < doc->fg->n; i++) {
      const rep_figure *g = &doc->fg->v[i];
      fprintf(f, "\\begin{figure}[H]\n\\centering\n\\includegraphics[width=\\linewidth,height=0.42\\textheight,"
                 "keepaspectratio]{%s.pdf}\n\\caption{", g->stem);
      rep_tex_escape(f, g->caption);
      fprintf(f, "}\n\\label{fig:%s}\n\\end{figure}\n\n", g->stem);
    }
  if (doc->note[0]) { fputs("Skipped: ", f); rep_tex_escape(f, doc->note); fputs(".\n", f); }
  fputs("\\end{document}\n", f);
  return close_doc(f, path, err, errlen);
}
