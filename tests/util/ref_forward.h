/* ref_forward.h — test-only float64 reference forward for every family, written
 * independently of the engine (own config.json parsing with cJSON, own tensor lookup by HF
 * name, plain loops in double, no KV cache, HF semantics spelled out per family). Used by
 * tests/unit/test_family_ref.c to check the optimised engine. */
#ifndef MOESCOPE_REF_FORWARD_H
#define MOESCOPE_REF_FORWARD_H

#include <stddef.h>

typedef struct ref_out {
  int n, n_layers, k, vocab;
  double *logits;     /* [n, vocab] */
  int *experts;       /* [layer][n][k], -1 = empty slot / dense layer */
  double *weights;    /* [layer][n][k] */
} ref_out;

/* Runs the model in dir over ids[n] (positions 0..n-1, one batch). 0 or -1 (+err). */
int ref_forward(const char *dir, const int *ids, int n, ref_out *out, char *err, size_t errlen);
void ref_out_free(ref_out *o);

#endif
