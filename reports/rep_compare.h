/* rep_compare.h — `moescope compare`: runs side by side (analysis/ana_compare.h) as a
 * text report, JSON, or a folder with compare.md, compare.tex (booktabs table routing
 * strategy x metric), compare.csv and a quality-vs-balance scatter (PNG, SVG, PDF). */
#ifndef MOESCOPE_REP_COMPARE_H
#define MOESCOPE_REP_COMPARE_H

#include <stddef.h>
#include <stdio.h>

typedef struct rep_run_ref { const char *db; long long run_id; } rep_run_ref;  /* run_id < 0: latest */

/* refs[0] is the baseline; every other run is compared with it. outdir may be NULL. */
int rep_compare_cmd(const rep_run_ref *refs, int n, int json, const char *outdir, FILE *out, char *err, size_t errlen);

#endif
