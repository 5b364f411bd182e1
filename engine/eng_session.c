/* eng_session.c — scoring (teacher forcing in windows) and generation (see header): the
 * loops over an eng_runner, and the CPU context's runner (eng_score / eng_generate). */
#include "engine/eng_session.h"

#include "engine/eng_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double eng_token_nll(const float *z, int V, int target) {
  float mx = -INFINITY;
  for (int i = 0; i < V; i++) if (z[i] > mx) mx = z[i];
  double s = 0;
  for (int i = 0; i < V; i++) s += exp((double)z[i] - mx);
  return -((double)z[target] - mx - log(s));
}

void eng_report_tokens(const prb_probe *p, int seq_id, const int *ids, int n, int pos0, int phase, const float *nll) {
  if (!p->tokens || n <= 0) return;
  int *pos = malloc(sizeof(int) * (size_t)n);
  if (!pos) return;
  for (int i = 0; i < n; i++) pos[i] = pos0 + i;
  p->tokens(p->ctx, seq_id, n, pos, ids, phase, nll);
  free(pos);
}

int eng_run_score(const eng_runner *r, const int *ids, int n, int window, int seq_id, float *nll_out,
                  eng_score_result *res, eng_logits_cb cb, void *cb_user, char *err, size_t errlen) {
  int V = r->vocab;
  const prb_probe *p = r->probe;
  if (window <= 1 || window > r->max_ctx) window = r->max_ctx;
  float *logits = malloc(sizeof(float) * (size_t)r->max_batch * V);
  float *nll = malloc(sizeof(float) * (size_t)(window > 0 ? window : 1));
  if (!logits || !nll) { free(logits); free(nll); return eng_errf(err, errlen, "out of memory"); }
  res->nll_sum = 0;
  res->n_scored = 0;
  int rc = 0;
  for (int w0 = 0; w0 < n && rc == 0; w0 += window) {
    int wn = n - w0 < window ? n - w0 : window;
    r->reset(r->ctx);
    for (int i = 0; i < wn; i++) nll[i] = NAN;
    for (int b0 = 0; b0 < wn && rc == 0; b0 += r->max_batch) {
      int bn = wn - b0 < r->max_batch ? wn - b0 : r->max_batch;
      if (r->forward(r->ctx, ids + w0 + b0, bn, ENG_LOGITS_ALL, logits, NULL, seq_id, w0 + b0, err, errlen) < 0) {
        rc = -1;
        break;
      }
      if (p->logits && p->level >= PRB_LEVEL_FULL)
        for (int t = 0; t < bn; t++)
          if ((w0 + b0 + t) % PRB_LOGITS_EVERY == 0) p->logits(p->ctx, seq_id, w0 + b0 + t, V, logits + (size_t)t * V);
      if (cb && cb(cb_user, logits, bn, V)) { rc = -1; break; }
      for (int t = 0; t < bn; t++) {
        int i = b0 + t; /* logits at window position i predict token i+1 */
        if (i + 1 < wn) {
          double l = eng_token_nll(logits + (size_t)t * V, V, ids[w0 + i + 1]);
          nll[i + 1] = (float)l;
          res->nll_sum += l;
          res->n_scored++;
        }
      }
    }
    if (rc == 0) {
      eng_report_tokens(p, seq_id, ids + w0, wn, w0, PRB_PHASE_PREFILL, nll);
      if (nll_out) memcpy(nll_out + w0, nll, sizeof(float) * (size_t)wn);
    }
  }
  free(logits);
  free(nll);
  return rc;
}

static uint64_t rng_next(uint64_t *s) { /* splitmix64 */
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

typedef struct { float p; int id; } pid;
static int cmp_pid(const void *a, const void *b) {
  const pid *x = a, *y = b;
  if (x->p != y->p) return x->p > y->p ? -1 : 1;
  return x->id - y->id;
}

int eng_sample(const eng_sampler *s, uint64_t *rng, float *z, int V) {
  int best = 0;
  for (int i = 1; i < V; i++) if (z[i] > z[best]) best = i;
  if (!s || s->temperature <= 0) return best;
  float mx = z[best];
  double sum = 0;
  for (int i = 0; i < V; i++) { z[i] = expf((z[i] - mx) / s->temperature); sum += z[i]; }
  pid *v = malloc(sizeof(pid) * (size_t)V);
  if (!v) return best;
  for (int i = 0; i < V; i++) { v[i].p = (float)(z[i] / sum); v[i].id = i; }
  qsort(v, (size_t)V, sizeof(pid), cmp_pid);
  double top_p = s->top_p > 0 && s->top_p < 1 ? s->top_p : 1.0, mass = 0;
  int cut = V;
  for (int i = 0; i < V; i++) { mass += v[i].p; if (mass >= top_p) { cut = i + 1; break; } }
  double r = (double)(rng_next(rng) >> 11) / 9007199254740992.0 * mass, acc = 0;
  int pick = v[cut - 1].id;
  for (int i = 0; i < cut; i++) { acc += v[i].p; if (r < acc) { pick = v[i].id; break; } }
  free(v);
  return pick;
}

int eng_run_generate(const eng_runner *r, const int *prompt, int n_prompt, int n_new, const eng_sampler *s,
                     int stop_id, int seq_id, int *out_ids, int *n_out, eng_token_cb tok_cb, void *tok_user,
                     eng_logits_cb cb, void *cb_user, char *err, size_t errlen) {
  int V = r->vocab;
  const prb_probe *p = r->probe;
  *n_out = 0;
  if (n_prompt <= 0) return eng_errf(err, errlen, "empty prompt");
  if (n_prompt + n_new > r->max_ctx) n_new = r->max_ctx - n_prompt;
  if (n_new < 0) n_new = 0;
  float *logits = malloc(sizeof(float) * (size_t)r->max_batch * V);
  if (!logits) return eng_errf(err, errlen, "out of memory");
  uint64_t rng = s ? s->seed : 0;
  int greedy_dev = r->argmax && !cb && (!s || s->temperature <= 0);   /* next token picked by forward, no logits copy */
  r->reset(r->ctx);
  int rc = 0, next = 0;
  int want = cb ? ENG_LOGITS_ALL : ENG_LOGITS_LAST;
  for (int b0 = 0; b0 < n_prompt && rc == 0; b0 += r->max_batch) {
    int bn = n_prompt - b0 < r->max_batch ? n_prompt - b0 : r->max_batch;
    int last = b0 + bn == n_prompt;
    int w = !last && !cb ? ENG_LOGITS_NONE : (last && greedy_dev ? ENG_WANT_ARGMAX : want);
    if (r->forward(r->ctx, prompt + b0, bn, w, logits, &next, seq_id, b0, err, errlen) < 0) rc = -1;
    else if (cb && cb(cb_user, logits, bn, V)) rc = -1;
    else if (last && want == ENG_LOGITS_ALL) memmove(logits, logits + (size_t)(bn - 1) * V, sizeof(float) * V);
  }
  if (rc == 0) eng_report_tokens(p, seq_id, prompt, n_prompt, 0, PRB_PHASE_PREFILL, NULL);
  for (int i = 0; i < n_new && rc == 0; i++) {
    int id = greedy_dev ? next : eng_sample(s, &rng, logits, V);
    out_ids[(*n_out)++] = id;
    eng_report_tokens(p, seq_id, &id, 1, n_prompt + i, PRB_PHASE_DECODE, NULL);
    if (tok_cb && tok_cb(tok_user, id)) break;
    if (id == stop_id || i + 1 == n_new) break;
    if (r->forward(r->ctx, &id, 1, greedy_dev ? ENG_WANT_ARGMAX : ENG_LOGITS_LAST, logits, &next, seq_id, n_prompt + i,
                   err, errlen) < 0)
      rc = -1;
    else if (cb && cb(cb_user, logits, 1, V)) rc = -1;
  }
  free(logits);
  return rc;
}

/* ---- the CPU context as a runner ---------------------------------------------------------- */
static int64_t cpu_forward(void *ctx, const int *ids, int n, int want, float *logits, int *next, int seq_id,
                           int abs_pos0, char *err, size_t errlen) {
  (void)next;   /* argmax is 0: ENG_WANT_ARGMAX never comes here */
  return eng_forward(ctx, ids, n, want, logits, seq_id, abs_pos0, err, errlen);
}
static void cpu_reset(void *ctx) { eng_ctx_reset(ctx); }
static eng_runner cpu_runner(eng_ctx *c) {
  eng_runner r = {c, cpu_forward, cpu_reset, &c->probe, c->m->cfg.vocab, c->max_ctx, c->max_batch, 0};
  return r;
}

int eng_score(eng_ctx *c, const int *ids, int n, int window, int seq_id, float *nll_out,
              eng_score_result *res, eng_logits_cb cb, void *cb_user, char *err, size_t errlen) {
  eng_runner r = cpu_runner(c);
  return eng_run_score(&r, ids, n, window, seq_id, nll_out, res, cb, cb_user, err, errlen);
}

int eng_generate(eng_ctx *c, const int *prompt, int n_prompt, int n_new, const eng_sampler *s, int stop_id,
                 int seq_id, int *out_ids, int *n_out, eng_token_cb tok_cb, void *tok_user,
                 eng_logits_cb cb, void *cb_user, char *err, size_t errlen) {
  eng_runner r = cpu_runner(c);
  return eng_run_generate(&r, prompt, n_prompt, n_new, s, stop_id, seq_id, out_ids, n_out, tok_cb, tok_user, cb,
                          cb_user, err, errlen);
}
