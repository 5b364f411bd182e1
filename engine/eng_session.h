/* eng_session.h — what a run does with a model: score text with teacher forcing in
 * windows, or generate from a prompt (greedy or temperature/top-p sampling). Reports
 * sequences and tokens (with their nll) to the context's probe; logits of every
 * forwarded position can be handed to a callback (used by --dump-logits).
 * The loops exist once, over a small device-neutral runner (eng_runner: a forward callback
 * + reset); eng_score / eng_generate run them on the CPU context, eng_cuda_score /
 * eng_cuda_generate (eng_cuda.h) on the GPU context. */
#ifndef MOESCOPE_ENG_SESSION_H
#define MOESCOPE_ENG_SESSION_H

#include "engine/eng_forward.h"

#include <stdint.h>

/* Receives logits [n, V] of n consecutive forwarded positions. */
typedef int (*eng_logits_cb)(void *user, const float *logits, int n, int vocab);

typedef struct eng_score_result {
  double nll_sum;       /* over scored tokens */
  long n_scored;
} eng_score_result;

/* Scores ids[0..n) in non-overlapping windows of `window` tokens (positions restart at 0
 * in each window; token i of a window is scored given tokens 0..i-1 of that window, so
 * the first token of each window is unscored). nll_out[n] (may be NULL) receives each
 * token's nll or NaN. Tokens are reported to the probe under seq_id (phase prefill). */
int eng_score(eng_ctx *c, const int *ids, int n, int window, int seq_id, float *nll_out,
              eng_score_result *res, eng_logits_cb cb, void *cb_user, char *err, size_t errlen);

typedef struct eng_sampler {
  float temperature;    /* 0 = greedy (argmax, lowest id on ties) */
  float top_p;          /* nucleus mass in (0,1]; 1 = off */
  uint64_t seed;
} eng_sampler;

/* -log softmax(z)[target] over V logits (double accumulation): the nll of one token. */
double eng_token_nll(const float *z, int V, int target);

/* Reports n consecutive tokens (positions pos0..) of a sequence to a probe's tokens hook. */
void eng_report_tokens(const prb_probe *p, int seq_id, const int *ids, int n, int pos0, int phase, const float *nll);

/* Picks the next token from logits[V] (modified in place when sampling). */
int eng_sample(const eng_sampler *s, uint64_t *rng, float *logits, int vocab);

/* Called for every generated token; return non-zero to stop. */
typedef int (*eng_token_cb)(void *user, int token_id);

/* A forward context as the loops see it. forward has eng_forward's contract (n tokens
 * continuing the cache; want = ENG_LOGITS_NONE / LAST / ALL into logits [.., vocab]) plus
 * want = ENG_WANT_ARGMAX when `argmax` is set: only the greedy next token of the last
 * position, into *next (the GPU picks it on the device). Returns the batch id or -1 (+err). */
enum { ENG_WANT_ARGMAX = 100 };
typedef struct eng_runner {
  void *ctx;
  int64_t (*forward)(void *ctx, const int *ids, int n, int want, float *logits, int *next, int seq_id, int abs_pos0,
                     char *err, size_t errlen);
  void (*reset)(void *ctx);       /* empties the KV cache */
  const prb_probe *probe;
  int vocab, max_ctx, max_batch;
  int argmax;                     /* forward accepts ENG_WANT_ARGMAX */
} eng_runner;

/* eng_score / eng_generate on any runner (same arguments and reporting). */
int eng_run_score(const eng_runner *r, const int *ids, int n, int window, int seq_id, float *nll_out,
                  eng_score_result *res, eng_logits_cb cb, void *cb_user, char *err, size_t errlen);
int eng_run_generate(const eng_runner *r, const int *prompt, int n_prompt, int n_new, const eng_sampler *s,
                     int stop_id, int seq_id, int *out_ids, int *n_out, eng_token_cb tok_cb, void *tok_user,
                     eng_logits_cb cb, void *cb_user, char *err, size_t errlen);

/* Prefills the prompt then generates up to n_new tokens (stops early at stop_id >= 0).
 * out_ids (capacity n_new) receives the generated ids; *n_out their count. */
int eng_generate(eng_ctx *c, const int *prompt, int n_prompt, int n_new, const eng_sampler *s, int stop_id,
                 int seq_id, int *out_ids, int *n_out, eng_token_cb tok_cb, void *tok_user,
                 eng_logits_cb cb, void *cb_user, char *err, size_t errlen);

#endif
