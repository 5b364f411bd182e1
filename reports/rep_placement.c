/* rep_placement.c — `moescope placement`: learns a placement per MoE layer on the first
 * part of a run (train_frac of its batches), then replays the remaining batches with the
 * placement fixed and reports per-GPU balance, compared with the contiguous and greedy
 * baselines; JSON adds the phy2log / log2phy / logcnt maps a serving engine takes. */
#include "reports/rep_placement.h"
#include "analysis/ana_placement.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct layer_res {
  double bal_train, bal_eval, bal_eval_batch_mean, bal_eval_batch_min, maxmean_eval, cross;
  double bal_none, bal_greedy;   /* baselines on the eval load */
  int replicas;
} layer_res;

static void sum_batches(const ana_batch_load *bl, int li, int b0, int b1, double *acc) {
  int E = bl->n_experts;
  for (int e = 0; e < E; e++) acc[e] = 0;
  for (int b = b0; b < b1; b++)
    for (int e = 0; e < E; e++) acc[e] += bl->load[((size_t)b * bl->n_layers + li) * E + e];
}

static double eval_bal(const ana_placement *p, const double *load, double *gl) {
  ana_place_gpu_loads(p, load, gl);
  return ana_place_balancedness(gl, p->n_gpus);
}

static cJSON *int_array(const int *v, int n) {
  cJSON *a = cJSON_CreateArray();
  for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
  return a;
}

int rep_placement_cmd(const char *db_path, const rep_placement_opts *o, FILE *out, char *err, size_t errlen) {
  ana_db *d;
  if (ana_db_open(&d, db_path, err, errlen)) return -1;
  ana_run run;
  ana_batch_load bl;
  if (ana_run_get(d, o->run_id, &run, err, errlen) || ana_placement_load(d, &run, &bl, err, errlen)) {
    ana_db_close(d);
    return -1;
  }
  int E = bl.n_experts, G = o->gpus, B = bl.n_batches, rc = 0;
  int train = (int)ceil(o->train_frac * B);
  if (train < 1) train = 1;
  int e0 = train < B ? train : 0; /* a single batch: evaluate in-sample */
  double *tl = malloc(sizeof(double) * E), *el = malloc(sizeof(double) * E), *gl = malloc(sizeof(double) * G);
  layer_res *res = calloc((size_t)bl.n_layers, sizeof(layer_res));
  cJSON *root = o->json ? cJSON_CreateObject() : NULL, *jl = NULL;
  if (root) {
    cJSON_AddNumberToObject(root, "run_id", (double)run.run_id);
    cJSON_AddStringToObject(root, "algo", ana_place_algo_name(o->algo));
    cJSON_AddNumberToObject(root, "gpus", G);
    cJSON_AddNumberToObject(root, "nodes", o->nodes);
    cJSON_AddNumberToObject(root, "replicas", o->replicas);
    cJSON_AddNumberToObject(root, "batches", B);
    cJSON_AddNumberToObject(root, "train_batches", train);
    cJSON_AddStringToObject(root, "balancedness", "mean GPU load / max GPU load (1 = perfect)");
    jl = cJSON_AddArrayToObject(root, "layers");
  }
  for (int li = 0; li < bl.n_layers && rc == 0; li++) {
    sum_batches(&bl, li, 0, train, tl);
    sum_batches(&bl, li, e0, B, el);
    ana_placement p, pn, pg;
    if (ana_place(tl, E, G, o->nodes, o->replicas, o->groups, o->algo, &p, err, errlen) ||
        ana_place(tl, E, G, o->nodes, 0, o->groups, ANA_PLACE_NONE, &pn, err, errlen) ||
        ana_place(tl, E, G, o->nodes, 0, o->groups, ANA_PLACE_GREEDY, &pg, err, errlen)) {
      rc = -1;
      break;
    }
    layer_res *r = &res[li];
    r->replicas = p.n_phy - E;
    r->bal_train = eval_bal(&p, tl, gl);
    r->bal_eval = eval_bal(&p, el, gl);
    double mx = 0, s = 0;
    for (int g = 0; g < G; g++) { s += gl[g]; if (gl[g] > mx) mx = gl[g]; }
    r->maxmean_eval = s > 0 ? mx / (s / G) : 1;
    r->cross = ana_place_cross_node(&p, el);
    r->bal_none = eval_bal(&pn, el, gl);
    r->bal_greedy = eval_bal(&pg, el, gl);
    double sum = 0, mn = 1;
    int nb = 0;
    double *bload = malloc(sizeof(double) * E);
    for (int b = e0; b < B; b++) {
      sum_batches(&bl, li, b, b + 1, bload);
      double v = eval_bal(&p, bload, gl);
      sum += v; nb++;
      if (v < mn) mn = v;
    }
    free(bload);
    r->bal_eval_batch_mean = nb ? sum / nb : NAN;
    r->bal_eval_batch_min = nb ? mn : NAN;
    if (root) {
      cJSON *L = cJSON_CreateObject();
      cJSON_AddNumberToObject(L, "layer", bl.layer_ids[li]);
      cJSON_AddNumberToObject(L, "replicas_used", r->replicas);
      cJSON_AddNumberToObject(L, "balancedness_train", r->bal_train);
      cJSON_AddNumberToObject(L, "balancedness_eval", r->bal_eval);
      cJSON_AddNumberToObject(L, "balancedness_eval_batch_mean", r->bal_eval_batch_mean);
      cJSON_AddNumberToObject(L, "balancedness_eval_batch_min", r->bal_eval_batch_min);
      cJSON_AddNumberToObject(L, "max_over_mean_eval", r->maxmean_eval);
      cJSON_AddNumberToObject(L, "cross_node_share", r->cross);
      cJSON_AddNumberToObject(L, "balancedness_contiguous", r->bal_none);
      cJSON_AddNumberToObject(L, "balancedness_greedy", r->bal_greedy);
      ana_place_gpu_loads(&p, el, gl);
      cJSON *ga = cJSON_AddArrayToObject(L, "gpu_load_eval");
      for (int g = 0; g < G; g++) cJSON_AddItemToArray(ga, cJSON_CreateNumber(gl[g]));
      cJSON_AddItemToObject(L, "phy2log", int_array(p.phy2log, p.n_phy));
      cJSON_AddItemToObject(L, "logcnt", int_array(p.logcnt, E));
      cJSON *l2p = cJSON_AddArrayToObject(L, "log2phy");
      for (int e = 0; e < E; e++) cJSON_AddItemToArray(l2p, int_array(p.log2phy + e * p.max_rep, p.max_rep));
      cJSON_AddItemToArray(jl, L);
    }
    ana_placement_free(&p); ana_placement_free(&pn); ana_placement_free(&pg);
  }
  if (rc == 0 && root) {
    char *txt = cJSON_Print(root);
    fprintf(out, "%s\n", txt);
    free(txt);
  } else if (rc == 0) {
    fprintf(out, "run %lld: placement '%s' of %d experts on %d GPUs / %d node(s), %d replicas; learned on %d of %d "
                 "batches, evaluated on %s\n", run.run_id, ana_place_algo_name(o->algo), E, G, o->nodes, o->replicas,
            train, B, e0 ? "the rest" : "the same batches (in-sample: nothing held out)");
    fprintf(out, "%5s %8s %10s %10s %12s %11s %9s %8s | %10s %8s\n", "layer", "replicas", "bal_train", "bal_eval",
            "bal_batch_mu", "bal_batch_lo", "max/mean", "x-node", "contiguous", "greedy");
    double acc[8] = {0};
    for (int li = 0; li < bl.n_layers; li++) {
      layer_res *r = &res[li];
      fprintf(out, "%5d %8d %10.4f %10.4f %12.4f %11.4f %9.3f %7.1f%% | %10.4f %8.4f\n", bl.layer_ids[li], r->replicas,
              r->bal_train, r->bal_eval, r->bal_eval_batch_mean, r->bal_eval_batch_min, r->maxmean_eval, 100 * r->cross,
              r->bal_none, r->bal_greedy);
      double v[8] = {r->bal_train, r->bal_eval, r->bal_eval_batch_mean, r->bal_eval_batch_min, r->maxmean_eval, r->cross, r->bal_none, r->bal_greedy};
      for (int k = 0; k < 8; k++) acc[k] += v[k] / bl.n_layers;
    }
    fprintf(out, "%5s %8s %10.4f %10.4f %12.4f %11.4f %9.3f %7.1f%% | %10.4f %8.4f\n", "mean", "", acc[0], acc[1], acc[2],
            acc[3], acc[4], 100 * acc[5], acc[6], acc[7]);
    fprintf(out, "balancedness = mean/max GPU load (1 = perfect); bal_batch = per-batch replay with the placement fixed;\n"
                 "x-node = expected share of dispatches leaving their node (uniform token sources, local replica preferred);\n"
                 "--json adds per-GPU loads and the phy2log/log2phy/logcnt maps\n");
  }
  cJSON_Delete(root);
  free(tl); free(el); free(gl); free(res);
  ana_batch_load_free(&bl);
  ana_db_close(d);
  return rc;
}
