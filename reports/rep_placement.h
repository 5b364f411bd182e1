/* rep_placement.h — `moescope placement`: expert-placement what-if over G GPUs / N nodes
 * from a trace's recorded per-expert load (analysis/ana_placement.h), as a table or JSON. */
#ifndef MOESCOPE_REP_PLACEMENT_H
#define MOESCOPE_REP_PLACEMENT_H

#include <stddef.h>
#include <stdio.h>

typedef struct rep_placement_opts {
  long long run_id;     /* < 0 = latest */
  int gpus, nodes, replicas, groups, algo;   /* algo: enum ana_place_algo */
  double train_frac;    /* share of batches the placement is learned on (rest: replay) */
  int json;
} rep_placement_opts;

int rep_placement_cmd(const char *db_path, const rep_placement_opts *o, FILE *out, char *err, size_t errlen);

#endif
