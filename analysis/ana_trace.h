/* ana_trace.h — the per-token routing of one run, loaded once for every structural
 * statistic (co-activation, cross-layer transitions, repetition, load along position,
 * per-label and per-token specialization, gate-weight distributions, diagnosis).
 *
 * The `routing` table is read in ONE sequential scan (split by rowid range over up to 4
 * threads, each with its own read-only connection) straight into dense arrays indexed by
 * (token, layer, slot): a token is a (seq_id, pos) pair, numbered through the sequence
 * lengths (max of sequences.n_tokens and tokens.pos + 1; if routing has positions beyond
 * those, the lengths are re-derived from routing itself). Everything downstream is plain C
 * over the arrays, so a 10^7-row trace costs one scan instead of one GROUP BY per
 * statistic. Works on any schema-v1 DB (tokens, sequences and vocab may be empty).
 * Fast path: when the DB has moescope's routing_packed table (the same routing, one blob
 * row per forward batch x layer; probes/prb_schema.c) and SUM(n_rows) there equals
 * COUNT(*) of routing, the arrays are filled from it (no SQLite step per routing row);
 * otherwise (DBs from other tools) the row scan runs. MOESCOPE_NO_PACKED=1 forces the scan.
 * Errors: 0, -1 with one line in err; 1 when the run has no routing rows (level counts).
 */
#ifndef MOESCOPE_ANA_TRACE_H
#define MOESCOPE_ANA_TRACE_H

#include <stdint.h>

#include "analysis/ana_db.h"

#define ANA_NONE 0xFFFFu   /* empty slot in ana_trace.ex */

typedef struct ana_trace {
  long long run_id;
  int L, E, K;              /* layers with routing rows, experts, slots per token */
  int *layer_ids;           /* [L] model layer ids, ascending */
  int n_seqs;
  long long *seq_id;        /* [n_seqs] ascending */
  long long *seq_off;       /* [n_seqs + 1] first token index of each sequence */
  int *seq_label;           /* [n_seqs] index into labels */
  int n_labels;
  char **labels;            /* sorted; "(unlabelled)" for NULL/empty labels */
  int has_real_label;
  long long n_tok;          /* total token slots (sum of sequence lengths) */
  int32_t *tok_id;          /* [n_tok] token id, -1 when unknown */
  int has_token_ids;
  uint16_t *ex;             /* [n_tok * L * K] expert per slot, ANA_NONE = empty */
  float *w;                 /* [n_tok * L * K] gate weight (NaN when NULL) */
  long long n_rows;         /* routing rows used */
  long long n_skipped;      /* rows outside the arrays (slot >= K, unknown layer, ...) */
  int packed;               /* 1: read from routing_packed instead of scanning routing */
} ana_trace;

/* Loads run `run` (its n_experts/top_k are lower bounds; ids found in the data widen them).
 * Returns 0, 1 (no routing rows; err says so) or -1. Free with ana_trace_free. */
int ana_trace_load(ana_db *d, const ana_run *run, ana_trace *t, char *err, size_t errlen);
void ana_trace_free(ana_trace *t);

/* Index of (token, layer, slot) cells. */
static inline size_t ana_cell(const ana_trace *t, long long tok, int li, int k) {
  return ((size_t)tok * (size_t)t->L + (size_t)li) * (size_t)t->K + (size_t)k;
}

/* The primary (highest-weight) expert of a token in layer index li, or -1 when the token
 * has no routing there. Ties and NaN weights go to the lower slot. */
int ana_primary(const ana_trace *t, long long tok, int li);

/* Text piece of a token id from the vocab table, "#id" when absent. The result is always
 * valid UTF-8: valid sequences are copied, control characters become \n, \t or \xNN and
 * bytes that are not valid UTF-8 (byte-level BPE pieces) become \xNN. */
void ana_token_piece(ana_db *d, long long run_id, int token_id, char *buf, size_t n);

#endif
