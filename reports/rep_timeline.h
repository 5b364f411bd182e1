/* rep_timeline.h — the timeline figure of `moescope report` (gpu_timeline.{png,svg,pdf}):
 * x = time in ns relative to the run's start, one track per (device, stream) with every
 * GPU kernel as a box coloured by the op that launched it (kernel_scope), and above the
 * tracks one or two band rows of layer ranges. A trace without kernel rows for the run
 * (a CPU run) gives the same figure from the engine's CPU op timers (`ops`: one track per
 * (device, thread), nested ops such as `expert e` inside `experts` on a second lane); the
 * title says which source was drawn.
 *
 * Window: long runs are cut to a window of whole forward batches, by default the first
 * REP_TL_DEFAULT_BATCHES batches (`report --timeline-batches N` or FIRST:N), shrunk until
 * it holds at most max_boxes boxes (never below one batch; a single batch larger than
 * that keeps its first max_boxes boxes by start time and sets `truncated`).
 *
 * rep_timeline_collect() computes the tracks, boxes and bands (tested on their numbers);
 * rep_timeline_render() draws them. Reads the DB through analysis/ana_db.h only. */
#ifndef MOESCOPE_REP_TIMELINE_H
#define MOESCOPE_REP_TIMELINE_H

#include <stddef.h>

#include "analysis/ana_db.h"

/* Op categories (box colours). attention = attn_norm, qkv, rope, attention, attn_out;
 * router = moe_norm, router; dispatch = dispatch, permute; experts = experts, expert,
 * shared_expert; combine = combine, unpermute; other = everything else (embed, final_norm,
 * lm_head, sample, kernels without a scope). */
enum { REP_TL_ATTENTION = 0, REP_TL_ROUTER, REP_TL_DISPATCH, REP_TL_EXPERTS, REP_TL_COMBINE, REP_TL_OTHER,
       REP_TL_NCAT };
const char *rep_tl_cat_name(int cat);
int rep_tl_op_category(const char *op);   /* NULL -> REP_TL_OTHER */

enum { REP_TL_SRC_NONE = 0, REP_TL_SRC_KERNELS = 1, REP_TL_SRC_OPS = 2 };
#define REP_TL_DEFAULT_BATCHES 4
#define REP_TL_MAX_BOXES 8000

typedef struct rep_tl_track {
  char device[16];          /* "0" (GPU deviceId) or the ops.device text ("cpu") */
  long long stream;         /* streamId (kernels) or ops.thread */
  int lanes;                /* nesting depth + 1 (1 for kernels, 2 for ops with experts > expert) */
  char label[64];           /* "GPU 0 stream 7", "cpu thread 0" */
} rep_tl_track;

typedef struct rep_tl_box {
  long long t0, t1;         /* ns relative to the run's start */
  int track, lane, cat;     /* lane = nesting depth on the track */
  int layer, expert;        /* -1 = none */
  long long batch;          /* -1 = kernel without a scope */
  long long corr;           /* correlationId (kernels), 0 for ops */
  char name[48];            /* kernel short name or "op" / "expert e" */
} rep_tl_box;

typedef struct rep_tl_band {
  long long t0, t1;         /* ns relative to the run's start */
  int row, layer;           /* band row (0 = top) */
  long long batch;
} rep_tl_band;

typedef struct rep_timeline {
  int source;               /* REP_TL_SRC_* */
  long long run_id;
  long long origin_ns;      /* absolute start of the run (NVTX run range, else the first row) */
  long long rows_run;       /* kernel / op rows of the whole run */
  int n_batches_run, n_batches_shown, truncated;
  long long batch_first, batch_last;   /* window, inclusive */
  long long t0, t1;         /* window, relative ns */
  int n_tracks; rep_tl_track *tracks;  /* sorted by device, then stream */
  int n_boxes; rep_tl_box *boxes;      /* sorted by track, then t0 */
  int n_bands; rep_tl_band *bands;     /* sorted by row, then t0 */
  int n_band_rows; char band_row[2][48];
  long long cat_ns[REP_TL_NCAT];       /* summed lane-0 box time per category in the window */
} rep_timeline;

/* Collects the timeline of run_id (< 0 = latest) of d: first_batch < 0 = the run's first
 * batch; n_batches <= 0 = all batches; max_boxes <= 0 = REP_TL_MAX_BOXES. A run with
 * neither kernel nor op rows gives source REP_TL_SRC_NONE and no boxes (not an error).
 * 0, or -1 with a message. Free with rep_timeline_free. */
int rep_timeline_collect(ana_db *d, long long run_id, long long first_batch, int n_batches, int max_boxes,
                         rep_timeline *out, char *err, size_t errlen);
void rep_timeline_free(rep_timeline *t);

/* Draws t into stem.png / .svg / .pdf (REP_FMT_* bits of rep_internal.h). 0 or -1. */
int rep_timeline_render(const rep_timeline *t, const char *stem, unsigned formats, char *err, size_t errlen);

/* "N" (first N batches), "FIRST:N" or "all" -> *first (-1 = the run's first), *n (0 = all).
 * 0, or -1 with a message. */
int rep_tl_parse_window(const char *s, long long *first, int *n, char *err, size_t errlen);

#endif
