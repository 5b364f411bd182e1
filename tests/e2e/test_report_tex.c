/* test_report_tex.c — report.tex compiles. Runs tiny-mixtral over two labelled texts full of
 * characters TeX treats specially (& { } _ ~ ^ < | > \ # $ % "), writes the report and runs
 * `pdflatex -halt-on-error` on report.tex: exit 0 and a report.pdf of at least 3 pages.
 * Skipped (exit 77) when pdflatex is not installed (texlive is not a build dependency; CI has
 * none). */
#include "tests/tst.h"
#include "tests/util/tst_run.h"

#include <sys/stat.h>

int main(void) {
  tst_out o;
  if (tst_sh(&o, "command -v pdflatex") != 0) {
    fprintf(stderr, "SKIP: pdflatex not installed (apt-get install texlive-latex-recommended)\n");
    return 77;
  }
  char model[4096], dir[4200], a[4200], b[4200], db[4200];
  tst_path(model, sizeof model, "MOESCOPE_SRC", "models/tiny-mixtral");
  snprintf(dir, sizeof dir, "%s/report_tex", tst_tmp());
  snprintf(a, sizeof a, "%s/rt_a.txt", tst_tmp());
  snprintf(b, sizeof b, "%s/rt_b.txt", tst_tmp());
  snprintf(db, sizeof db, "%s/rt.db", tst_tmp());
  tst_sh(&o, "rm -rf '%s' '%s'*", dir, db);
  FILE *f = fopen(a, "w");
  REQUIRE(f);
  fputs("int main(void) { printf(\"%d & {x} _y_ ~z^ <a|b> \\\\ #1 $2\", 3); return 0; }\n", f);
  for (int i = 0; i < 6; i++) fputs("for (int i = 0; i < n; i++) sum += a[i] * b[i];\n", f);
  fclose(f);
  f = fopen(b, "w");
  REQUIRE(f);
  for (int i = 0; i < 6; i++) fputs("The river ran slowly past the old mill, and the village slept \"soundly\".\n", f);
  fclose(f);
  int st = tst_sh(&o, "'%s' run --model '%s' --file '%s' --label code --file '%s' --label prose --score --db '%s' --quiet",
                  tst_bin(), model, a, b, db);
  REQUIRE(st == 0 || (fprintf(stderr, "%s", o.err), 0));
  st = tst_sh(&o, "'%s' report '%s' -o '%s' --format tex,pdf", tst_bin(), db, dir);
  CHECKF(st == 0, "report: %s", o.err);
  st = tst_sh(&o, "cd '%s' && timeout 300 pdflatex -interaction=nonstopmode -halt-on-error report.tex", dir);
  if (st) {
    const char *bang = strstr(o.out, "\n!");
    fprintf(stderr, "pdflatex: %.600s\n", bang ? bang : o.out);
  }
  CHECKF(st == 0, "pdflatex report.tex exit %d", st);
  char pdf[4300];
  snprintf(pdf, sizeof pdf, "%s/report.pdf", dir);
  struct stat sb;
  CHECKF(stat(pdf, &sb) == 0 && sb.st_size > 10000, "report.pdf missing or tiny");
  const char *pages = strstr(o.out, "Output written on report.pdf (");
  int np = 0;
  if (pages) sscanf(pages, "Output written on report.pdf (%d pages", &np);
  printf("report.pdf: %d pages, %lld bytes\n", np, (long long)sb.st_size);
  CHECKF(np >= 3, "report.pdf has %d pages", np);
  tst_sh(&o, "rm -rf '%s' '%s'* '%s' '%s'", dir, db, a, b);
  return tst_done();
}
