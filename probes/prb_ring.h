/* prb_ring.h — the bounded byte ring between the engine thread(s) and the sink's writer
 * thread (internal to probes/, used by prb_sink.c).
 *
 * Records are variable-sized: an 8-byte header {type, len} then len payload bytes, padded
 * to 8 so every record (and its payload) is 8-aligned and contiguous in memory: a record
 * that would straddle the end is preceded by a PAD record filling the tail. Producers
 * (any thread) reserve space under the mutex, serialise in place, and commit; they block
 * only when the ring is full (counted in `waits`). The single consumer takes a snapshot
 * of the filled region, reads it without the lock (producers never touch it), and
 * releases it when done; so `used == 0` also means the consumer holds no pointer into the
 * buffer, which is when an oversized record may grow the buffer.
 */
#ifndef MOESCOPE_PRB_RING_H
#define MOESCOPE_PRB_RING_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

enum { PRB_REC_PAD = 0 };

typedef struct prb_rec_hdr { uint32_t type, len; } prb_rec_hdr;

typedef struct prb_ring {
  pthread_mutex_t mu;
  pthread_cond_t not_full, not_empty, drained;
  unsigned char *buf;
  size_t cap, rpos, wpos, used;
  uint64_t queued_total;    /* bytes ever committed (records + pads) */
  uint64_t consumed_total;  /* bytes ever released by the consumer */
  uint64_t flush_target;    /* consumer skips lingering while consumed_total < this */
  uint64_t payload_bytes;   /* record bytes excluding pads (stats) */
  uint64_t waits;           /* times a producer blocked for space */
  int stop;
  /* pending reservation (valid between reserve and commit, lock held) */
  size_t pend_total;
} prb_ring;

/* Rounded record size for a payload of len bytes. */
static inline size_t prb_rec_size(size_t len) { return 8 + ((len + 7) & ~(size_t)7); }

int prb_ring_init(prb_ring *r, size_t cap);
void prb_ring_destroy(prb_ring *r);

/* Producer: blocks until len payload bytes fit, returns the payload pointer with the ring
 * locked; the caller fills it and calls prb_ring_commit. NULL (unlocked) when out of
 * memory growing for an oversized record, or after stop. */
void *prb_ring_reserve(prb_ring *r, uint32_t type, size_t len);
void prb_ring_commit(prb_ring *r);

/* Consumer: waits for data (lingering briefly so that small events batch up), returns 0
 * with the filled region [*pos, *pos + *len) (may wrap through a PAD), or 1 when stopped
 * and empty. */
int prb_ring_take(prb_ring *r, size_t *pos, size_t *len);
/* Walks one record of a taken region: returns its header (payload follows it) and
 * advances *pos and *left; PAD records are returned too (the caller skips them). */
const prb_rec_hdr *prb_ring_next(prb_ring *r, size_t *pos, size_t *left);
/* Gives back n bytes of a taken region; new_pos is where the walk ended. */
void prb_ring_release(prb_ring *r, size_t new_pos, size_t n);

/* Blocks until everything committed before the call has been released by the consumer. */
void prb_ring_flush(prb_ring *r);
/* Asks the consumer to finish (it drains what is left first). */
void prb_ring_stop(prb_ring *r);

#endif
