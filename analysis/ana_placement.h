/* ana_placement.h — expert-placement what-ifs for multi-GPU serving, from recorded load.
 *
 * Given the per-expert load of one MoE layer (tokens routed to each logical expert),
 * compute where the experts would live on G GPUs (optionally N nodes) and how balanced
 * the GPUs would be:
 *   none          contiguous baseline: expert e on GPU e / (E/G), no replicas
 *   greedy        balanced bin packing (heaviest first onto the least-loaded GPU that
 *                 still has a free slot), no replicas
 *   eplb          DeepSeek EPLB style: R redundant replicas go one by one to the expert
 *                 with the largest load per replica (a replica serves load/count), then
 *                 the E+R physical experts are packed as in greedy
 *   hierarchical  EPLB's hierarchical mode: experts are split into contiguous groups,
 *                 groups packed onto nodes, then replicas + packing inside each node
 * The result is the physical->logical map (phy2log; physical slot p lives on GPU
 * p / (n_phy/G)), log2phy and logcnt — the arrays a serving engine takes.
 * Metrics: per-GPU load (a replica takes load/count of its expert), balancedness =
 * mean/max (1 = perfect), max/mean, and the expected share of dispatches that cross
 * nodes assuming tokens start uniformly over nodes and use a local replica when one
 * exists. Pure functions over arrays; ana_placement_load() reads the per-batch load
 * from a trace DB for the replay (learn on the first batches, evaluate on the rest).
 */
#ifndef MOESCOPE_ANA_PLACEMENT_H
#define MOESCOPE_ANA_PLACEMENT_H

#include "analysis/ana_db.h"

enum ana_place_algo { ANA_PLACE_NONE = 0, ANA_PLACE_GREEDY, ANA_PLACE_EPLB, ANA_PLACE_HIER };
const char *ana_place_algo_name(int algo);
int ana_place_algo_parse(const char *s);   /* -1 when unknown */

typedef struct ana_placement {
  int n_experts, n_gpus, n_nodes, n_phy, max_rep;
  int *phy2log;    /* [n_phy] */
  int *logcnt;     /* [n_experts] */
  int *log2phy;    /* [n_experts * max_rep], -1 padded */
} ana_placement;

/* Computes a placement of E experts with load[E] over G GPUs / N nodes with R
 * replicas (R is ignored, i.e. 0, for none and greedy; hierarchical uses n_groups
 * expert groups, 0 = N). 0, or -1 + one error line (sizes that do not divide). */
int ana_place(const double *load, int E, int G, int N, int R, int n_groups, int algo, ana_placement *out,
              char *err, size_t errlen);
void ana_placement_free(ana_placement *p);

/* gpu_load[G] of a load vector under a placement (replicas share their expert's load). */
void ana_place_gpu_loads(const ana_placement *p, const double *load, double *gpu_load);
/* mean/max of v[n] (1 when all zero). */
double ana_place_balancedness(const double *v, int n);
/* Expected share of dispatches that leave their node (0 when N = 1). */
double ana_place_cross_node(const ana_placement *p, const double *load);

/* Per-batch load of a run: loads[b][layer_row][expert] for n_batches batches (in
 * batch_id order) and the model layer id of each row. Free with free(). */
typedef struct ana_batch_load {
  int n_batches, n_layers, n_experts;
  int *layer_ids;      /* [n_layers] */
  double *load;        /* [n_batches * n_layers * n_experts] */
} ana_batch_load;
int ana_placement_load(ana_db *d, const ana_run *run, ana_batch_load *out, char *err, size_t errlen);
void ana_batch_load_free(ana_batch_load *b);

#endif
