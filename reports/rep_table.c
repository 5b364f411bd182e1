/* rep_table.c — one in-memory table of strings rendered four ways, so that every table of
 * a report has exactly the same rows in report.md, index.html (sortable), report.tex
 * (booktabs) and its CSV file (RFC 4180): the report builds each table once
 * (rep_report.c) and these writers only format. Also the LaTeX escaper: LaTeX specials are
 * escaped and non-ASCII code points are written as [U+XXXX] so the file compiles with plain
 * pdflatex whatever the token pieces hold (pieces are valid UTF-8, analysis/ana_trace.c). */
#include "reports/rep_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int rep_table_init(rep_table *t, const char *name, const char *caption, int rows, int cols) {
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, "%s", name);
  snprintf(t->caption, sizeof t->caption, "%s", caption);
  t->rows = rows;
  t->cols = cols;
  t->head = calloc((size_t)cols + 1, sizeof *t->head);
  t->cell = calloc((size_t)rows * cols + 1, sizeof *t->cell);
  return t->head && t->cell ? 0 : -1;
}

void rep_table_set(rep_table *t, int r, int c, const char *fmt, ...) {
  if (r >= t->rows || c < 0 || c >= t->cols) return;
  char **dst = r < 0 ? &t->head[c] : &t->cell[(size_t)r * t->cols + c];
  va_list ap;
  va_start(ap, fmt);
  char *s = NULL;
  if (vasprintf(&s, fmt, ap) < 0) s = NULL;
  va_end(ap);
  free(*dst);
  *dst = s;
}

void rep_table_free(rep_table *t) {
  if (t->head) for (int c = 0; c < t->cols; c++) free(t->head[c]);
  if (t->cell) for (size_t i = 0; i < (size_t)t->rows * t->cols; i++) free(t->cell[i]);
  free(t->head);
  free(t->cell);
  memset(t, 0, sizeof *t);
}

static const char *cell(const rep_table *t, int r, int c) {
  const char *s = r < 0 ? t->head[c] : t->cell[(size_t)r * t->cols + c];
  return s ? s : "";
}

int rep_table_csv(const rep_table *t, const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "w");
  if (!f) { snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno)); return -1; }
  for (int r = -1; r < t->rows; r++) {
    for (int c = 0; c < t->cols; c++) {
      const char *s = cell(t, r, c);
      if (r >= 0 && !strcmp(s, "-")) s = "";   /* unavailable = empty field */
      if (c) fputc(',', f);
      if (strpbrk(s, ",\"\n\r")) {
        fputc('"', f);
        for (; *s; s++) { if (*s == '"') fputc('"', f); fputc(*s, f); }
        fputc('"', f);
      } else fputs(s, f);
    }
    fputs("\r\n", f);
  }
  int bad = ferror(f);
  if (fclose(f) != 0 || bad) { snprintf(err, errlen, "write error on %s", path); return -1; }
  return 0;
}

static void md_cell(FILE *f, const char *s) {
  for (; *s; s++) {
    if (*s == '|') fputc('\\', f);
    fputc(*s == '\n' ? ' ' : *s, f);
  }
}

void rep_table_md(FILE *f, const rep_table *t) {
  fputc('|', f);
  for (int c = 0; c < t->cols; c++) { fputc(' ', f); md_cell(f, cell(t, -1, c)); fputs(" |", f); }
  fputs("\n|", f);
  for (int c = 0; c < t->cols; c++) fputs(c == 0 ? ":---|" : "---:|", f);
  fputc('\n', f);
  for (int r = 0; r < t->rows; r++) {
    fputc('|', f);
    for (int c = 0; c < t->cols; c++) { fputc(' ', f); md_cell(f, cell(t, r, c)); fputs(" |", f); }
    fputc('\n', f);
  }
}

void rep_table_html(FILE *f, const rep_table *t) {
  fprintf(f, "<table class=\"num sortable\" id=\"tab-%s\">\n<thead><tr>", t->name);
  for (int c = 0; c < t->cols; c++) { fputs("<th>", f); rep_html_escape(f, cell(t, -1, c)); fputs("</th>", f); }
  fputs("</tr></thead>\n<tbody>\n", f);
  for (int r = 0; r < t->rows; r++) {
    fputs("<tr>", f);
    for (int c = 0; c < t->cols; c++) { fputs("<td>", f); rep_html_escape(f, cell(t, r, c)); fputs("</td>", f); }
    fputs("</tr>\n", f);
  }
  fputs("</tbody></table>\n", f);
}

void rep_tex_escape(FILE *f, const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  while (p && *p) {
    unsigned char c = *p;
    if (c >= 0x80) {   /* a valid UTF-8 sequence (else one byte): [U+XXXX] */
      int n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
      unsigned cp = n == 1 ? c : c & (0x7F >> n);
      int i = 1;
      for (; i < n && (p[i] & 0xC0) == 0x80; i++) cp = cp << 6 | (p[i] & 0x3F);
      fprintf(f, "[U+%04X]", i == n ? cp : c);
      p += i == n ? n : 1;
      continue;
    }
    switch (c) {
      case '\\': fputs("\\textbackslash{}", f); break;
      case '{': case '}': case '$': case '&': case '#': case '_': case '%': fprintf(f, "\\%c", c); break;
      case '^': fputs("\\textasciicircum{}", f); break;
      case '~': fputs("\\textasciitilde{}", f); break;
      case '<': fputs("\\textless{}", f); break;
      case '>': fputs("\\textgreater{}", f); break;
      case '|': fputs("\\textbar{}", f); break;
      case '"': fputs("\\textquotedbl{}", f); break;
      default: fputc(c < 0x20 ? ' ' : c, f);
    }
    p++;
  }
}

void rep_table_tex(FILE *f, const rep_table *t) {
  fputs("\\begin{table}[htbp]\n\\centering\n\\caption{", f);
  rep_tex_escape(f, t->caption);
  fprintf(f, "}\n\\label{tab:%s}\n\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%%\n"
             "\\begin{tabular}{l", t->name);
  for (int c = 1; c < t->cols; c++) fputc('r', f);
  fputs("}\n\\toprule\n", f);
  for (int c = 0; c < t->cols; c++) { if (c) fputs(" & ", f); rep_tex_escape(f, cell(t, -1, c)); }
  fputs(" \\\\\n\\midrule\n", f);
  for (int r = 0; r < t->rows; r++) {
    for (int c = 0; c < t->cols; c++) { if (c) fputs(" & ", f); rep_tex_escape(f, cell(t, r, c)); }
    fputs(" \\\\\n", f);
  }
  fputs("\\bottomrule\n\\end{tabular}}\n\\end{table}\n\n", f);
}
