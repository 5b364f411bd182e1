/* eng_session.c — scoring (teacher forcing in windows) and generation (see header). */
#include "engine/eng_session.h"

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

int eng_score(eng_ctx *c, const int *ids, int n, int window, int seq_id, float *nll_out,
              eng_score_result *res, eng_logits_cb cb, void *cb_user, char *err, size_t errlen) {
  int V = c->m->cfg.vocab;
  if (window <= 1 || window > c->max_ctx) window = c->max_ctx;
  float *logits = malloc(sizeof(float) * (size_t)c->max_batch * V);
  float *nll = malloc(sizeof(float) * (size_t)(window > 0 ? window : 1));
  if (!logits || !nll) { free(logits); free(nll); return -1; }
  res->nll_sum = 0;
  res->n_scored = 0;
  int rc = 0;
  for (int w0 = 0; w0 < n && rc == 0; w0 += window) {
    int wn = n - w0 < window ? n - w0 : window;
    eng_ctx_reset(c);
    for (int i = 0; i < wn; i++) nll[i] = NAN;
    for (int b0 = 0; b0 < wn && rc == 0; b0 += c->max_batch) {
      int bn = wn - b0 < c->max_batch ? wn - b0 : c->max_batch;
      if (eng_forward(c, ids + w0 + b0, bn, ENG_LOGITS_ALL, logits, seq_id, w0 + b0, err, errlen) < 0) { rc = -1; break; }
      if (c->probe.logits && c->probe.level >= PRB_LEVEL_FULL)
        for (int t = 0; t < bn; t++)
          if ((w0 + b0 + t) % PRB_LOGITS_EVERY == 0) c->probe.logits(c->probe.ctx, seq_id, w0 + b0 + t, V, logits + (size_t)t * V);
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
      eng_report_tokens(&c->probe, seq_id, ids + w0, wn, w0, PRB_PHASE_PREFILL, nll);
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

int eng_generate(eng_ctx *c, const int *prompt, int n_prompt, int n_new, const eng_sampler *s, int stop_id,
                 int seq_id, int *out_ids, int *n_out, eng_token_cb tok_cb, void *tok_user,
                 eng_logits_cb cb, void *cb_user, char *err, size_t errlen) {
  int V = c->m->cfg.vocab;
  *n_out = 0;
  if (n_prompt <= 0) return -1;
  if (n_prompt + n_new > c->max_ctx) n_new = c->max_ctx - n_prompt;
  if (n_new < 0) n_new = 0;
  float *logits = malloc(sizeof(float) * (size_t)c->max_batch * V);
  if (!logits) return -1;
  uint64_t rng = s ? s->seed : 0;
  eng_ctx_reset(c);
  int rc = 0;
  int want = cb ? ENG_LOGITS_ALL : ENG_LOGITS_LAST;
  for (int b0 = 0; b0 < n_prompt && rc == 0; b0 += c->max_batch) {
    int bn = n_prompt - b0 < c->max_batch ? n_prompt - b0 : c->max_batch;
    int last = b0 + bn == n_prompt;
    if (eng_forward(c, prompt + b0, bn, last || cb ? want : ENG_LOGITS_NONE, logits, seq_id, b0, err, errlen) < 0) rc = -1;
    else if (cb && cb(cb_user, logits, bn, V)) rc = -1;
    else if (last && want == ENG_LOGITS_ALL) memmove(logits, logits + (size_t)(bn - 1) * V, sizeof(float) * V);
  }
  if (rc == 0) eng_report_tokens(&c->probe, seq_id, prompt, n_prompt, 0, PRB_PHASE_PREFILL, NULL);
  for (int i = 0; i < n_new && rc == 0; i++) {
    int id = eng_sample(s, &rng, logits, V);
    out_ids[(*n_out)++] = id;
    eng_report_tokens(&c->probe, seq_id, &id, 1, n_prompt + i, PRB_PHASE_DECODE, NULL);
    if (tok_cb && tok_cb(tok_user, id)) break;
    if (id == stop_id || i + 1 == n_new) break;
    if (eng_forward(c, &id, 1, ENG_LOGITS_LAST, logits, seq_id, n_prompt + i, err, errlen) < 0) rc = -1;
    else if (cb && cb(cb_user, logits, 1, V)) rc = -1;
  }
  free(logits);
  return rc;
}
