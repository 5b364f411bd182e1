/* prb_ring.c — the bounded record ring of the SQLite sink (see prb_ring.h for the
 * protocol). One mutex, three condition variables: not_full (producers wait for space),
 * not_empty (the writer waits for work) and drained (flush waits for the writer). */
#include "probes/prb_ring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LINGER_NS 20000000L  /* the writer waits up to 20 ms for more rows before a commit */

int prb_ring_init(prb_ring *r, size_t cap) {
  memset(r, 0, sizeof *r);
  cap = (cap + 7) & ~(size_t)7;
  if (cap < 4096) cap = 4096;
  r->buf = malloc(cap);
  if (!r->buf) return -1;
  r->cap = cap;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_mutex_init(&r->mu, NULL);
  pthread_cond_init(&r->not_full, NULL);
  pthread_cond_init(&r->not_empty, &ca);
  pthread_cond_init(&r->drained, NULL);
  pthread_condattr_destroy(&ca);
  return 0;
}

void prb_ring_destroy(prb_ring *r) {
  if (!r->buf) return;
  pthread_mutex_destroy(&r->mu);
  pthread_cond_destroy(&r->not_full);
  pthread_cond_destroy(&r->not_empty);
  pthread_cond_destroy(&r->drained);
  free(r->buf);
  r->buf = NULL;
}

/* With the lock held: makes room for a record of `total` bytes at wpos if the free space
 * allows (writing a PAD over the tail when the record must start at 0). */
static int ring_fits(prb_ring *r, size_t total) {
  if (r->used == 0) { r->rpos = r->wpos = 0; return total <= r->cap; }
  if (r->wpos > r->rpos) {
    size_t tail = r->cap - r->wpos;
    if (total <= tail) return 1;
    if (total > r->rpos) return 0;
    prb_rec_hdr pad = { PRB_REC_PAD, (uint32_t)(tail - 8) };
    memcpy(r->buf + r->wpos, &pad, sizeof pad);
    r->used += tail;
    r->queued_total += tail;
    r->wpos = 0;
    return 1;
  }
  if (r->wpos < r->rpos) return total <= r->rpos - r->wpos;
  return 0;  /* wpos == rpos with used > 0: full */
}

void *prb_ring_reserve(prb_ring *r, uint32_t type, size_t len) {
  size_t total = prb_rec_size(len);
  pthread_mutex_lock(&r->mu);
  if (r->stop) { pthread_mutex_unlock(&r->mu); return NULL; }
  int waited = 0;
  if (total > r->cap) {
    /* Oversized record: wait until the consumer holds nothing, then grow. */
    while (r->used != 0) {
      if (!waited) { r->waits++; waited = 1; }
      pthread_cond_wait(&r->not_full, &r->mu);
    }
    unsigned char *nb = realloc(r->buf, total);
    if (!nb) { pthread_mutex_unlock(&r->mu); return NULL; }
    r->buf = nb;
    r->cap = total;
    r->rpos = r->wpos = 0;
  }
  while (!ring_fits(r, total)) {
    if (!waited) { r->waits++; waited = 1; }
    pthread_cond_wait(&r->not_full, &r->mu);
  }
  prb_rec_hdr h = { type, (uint32_t)len };
  memcpy(r->buf + r->wpos, &h, sizeof h);
  r->pend_total = total;
  return r->buf + r->wpos + sizeof h;
}

void prb_ring_commit(prb_ring *r) {
  size_t before = r->used, total = r->pend_total;
  r->wpos += total;
  if (r->wpos == r->cap) r->wpos = 0;
  r->used += total;
  r->queued_total += total;
  r->payload_bytes += total;
  size_t thr = r->cap / 4;
  if (before == 0 || (before < thr && r->used >= thr)) pthread_cond_signal(&r->not_empty);
  pthread_mutex_unlock(&r->mu);
}

int prb_ring_take(prb_ring *r, size_t *pos, size_t *len) {
  pthread_mutex_lock(&r->mu);
  while (r->used == 0 && !r->stop) pthread_cond_wait(&r->not_empty, &r->mu);
  if (r->used == 0) { pthread_mutex_unlock(&r->mu); return 1; }
  if (!r->stop && r->consumed_total >= r->flush_target && r->used < r->cap / 4) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += LINGER_NS;
    if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
    pthread_cond_timedwait(&r->not_empty, &r->mu, &ts);  /* timeout or more data: both fine */
  }
  *pos = r->rpos;
  *len = r->used;
  pthread_mutex_unlock(&r->mu);
  return 0;
}

const prb_rec_hdr *prb_ring_next(prb_ring *r, size_t *pos, size_t *left) {
  const prb_rec_hdr *h = (const prb_rec_hdr *)(const void *)(r->buf + *pos);
  size_t total = prb_rec_size(h->len);
  *pos += total;
  if (*pos >= r->cap) *pos = 0;
  *left -= total;
  return h;
}

void prb_ring_release(prb_ring *r, size_t new_pos, size_t n) {
  pthread_mutex_lock(&r->mu);
  r->rpos = new_pos;
  r->used -= n;
  r->consumed_total += n;
  pthread_cond_broadcast(&r->not_full);
  pthread_cond_broadcast(&r->drained);
  pthread_mutex_unlock(&r->mu);
}

void prb_ring_flush(prb_ring *r) {
  pthread_mutex_lock(&r->mu);
  uint64_t target = r->queued_total;
  if (target > r->flush_target) r->flush_target = target;
  pthread_cond_signal(&r->not_empty);
  while (r->consumed_total < target) pthread_cond_wait(&r->drained, &r->mu);
  pthread_mutex_unlock(&r->mu);
}

void prb_ring_stop(prb_ring *r) {
  pthread_mutex_lock(&r->mu);
  r->stop = 1;
  pthread_cond_broadcast(&r->not_empty);
  pthread_cond_broadcast(&r->not_full);
  pthread_mutex_unlock(&r->mu);
}
