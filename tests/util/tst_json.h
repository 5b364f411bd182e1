/* tst_json.h — test helpers to read JSON fixtures (cJSON) and collect routing events
 * from the engine through an in-memory probe. Header-only; used by fidelity tests. */
#ifndef MOESCOPE_TST_JSON_H
#define MOESCOPE_TST_JSON_H

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "probes/prb_probe.h"

static inline cJSON *tst_json_load(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) { fprintf(stderr, "cannot open %s\n", path); return NULL; }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)n + 1);
  if (fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); fclose(f); return NULL; }
  fclose(f);
  b[n] = 0;
  cJSON *j = cJSON_Parse(b);
  free(b);
  return j;
}
static inline cJSON *tst_get(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }
static inline int tst_int_array(const cJSON *a, int *out, int cap) {
  int n = 0;
  for (const cJSON *it = a ? a->child : NULL; it && n < cap; it = it->next) out[n++] = (int)it->valuedouble;
  return n;
}

/* Collects routing: experts/weights per (layer, pos) for positions < cap_pos. */
typedef struct tst_routes {
  int n_layers, k, cap_pos, n_events;
  int *experts;     /* [layer][pos][k] */
  float *weights;
  float *logits;    /* [layer][pos][E] when level full */
  int E;
} tst_routes;

static inline void tst_routes_cb(void *ctx, const prb_route_batch *rb) {
  tst_routes *r = ctx;
  r->n_events++;
  for (int t = 0; t < rb->n_tokens; t++) {
    int p = rb->pos[t];
    if (p < 0 || p >= r->cap_pos || rb->layer >= r->n_layers) continue;
    for (int j = 0; j < rb->k && j < r->k; j++) {
      r->experts[((size_t)rb->layer * r->cap_pos + p) * r->k + j] = rb->experts[t * rb->k + j];
      r->weights[((size_t)rb->layer * r->cap_pos + p) * r->k + j] = rb->weights[t * rb->k + j];
    }
    if (rb->logits && r->logits && rb->n_experts == r->E)
      memcpy(r->logits + ((size_t)rb->layer * r->cap_pos + p) * r->E, rb->logits + (size_t)t * r->E, sizeof(float) * r->E);
  }
}
static inline prb_probe tst_routes_probe(tst_routes *r, int n_layers, int k, int E, int cap_pos) {
  r->n_layers = n_layers; r->k = k; r->cap_pos = cap_pos; r->E = E; r->n_events = 0;
  r->experts = calloc((size_t)n_layers * cap_pos * k, sizeof(int));
  r->weights = calloc((size_t)n_layers * cap_pos * k, sizeof(float));
  r->logits = calloc((size_t)n_layers * cap_pos * E, sizeof(float));
  prb_probe p = prb_probe_none();
  p.ctx = r;
  p.level = PRB_LEVEL_FULL;
  p.route = tst_routes_cb;
  return p;
}
static inline void tst_routes_free(tst_routes *r) { free(r->experts); free(r->weights); free(r->logits); }
#endif
