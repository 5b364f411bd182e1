/* prb_sink.h — the SQLite trace writer: a prb_probe whose events land in a trace DB.
 *
 * Design: event callbacks (called on the engine's thread) serialise rows into a bounded
 * ring buffer and return; a writer thread drains it and inserts rows in batched
 * transactions (one COMMIT per drained chunk) on a WAL-mode database. The forward pass
 * only blocks when the ring is full. A crash loses at most the uncommitted tail; the file
 * is never corrupt (SQLite's journal guarantees it). Writer-side failures (disk full,
 * I/O error) are latched and reported by prb_sink_close() / prb_sink_error(), never by
 * aborting the process. Several runs may be appended to one DB: each begin_run gets a
 * fresh run_id (runs.run_id INTEGER PRIMARY KEY).
 *
 * Schema: see prb_schema.c (DESIGN.md schema v1; PRAGMA user_version = 1).
 */
#ifndef MOESCOPE_PRB_SINK_H
#define MOESCOPE_PRB_SINK_H

#include "probes/prb_probe.h"

typedef struct prb_sink prb_sink;

/* Run metadata (the `runs` row). Strings may be NULL. */
typedef struct prb_run_info {
  const char *model_path, *model_sha256, *family, *policy, *device, *dtype, *command_line;
  int n_layers, n_experts, top_k, n_shared_experts, threads;
  int record_level;      /* enum prb_level */
} prb_run_info;

/* Opens (creating if needed) the DB, applies the schema, starts the writer thread.
 * ring_bytes = 0 picks a default (64 MiB). Returns 0, or -1 with a message in err. */
int prb_sink_open(prb_sink **out, const char *db_path, size_t ring_bytes, char *err, size_t errlen);

/* Inserts the runs row synchronously and returns its run_id; later events belong to it. */
int prb_sink_begin_run(prb_sink *s, const prb_run_info *ri, int64_t *run_id, char *err, size_t errlen);

/* Queues vocab rows for the current run: n pieces (raw bytes, lens[i] bytes each). */
int prb_sink_vocab(prb_sink *s, int n, const char *const *pieces, const size_t *lens);

/* The probe whose callbacks feed this sink at the given record level. */
prb_probe prb_sink_probe(prb_sink *s, int level);

/* Blocks until everything queued so far is committed. 0 or -1 (writer error). */
int prb_sink_flush(prb_sink *s, char *err, size_t errlen);

/* First writer error, or NULL. */
const char *prb_sink_error(prb_sink *s);

/* Marks the current run finished, drains, joins the writer, closes the DB. Always frees s.
 * Returns 0, or -1 with the first writer error in err. */
int prb_sink_close(prb_sink *s, char *err, size_t errlen);

/* Statistics for the bench: how often the engine thread had to wait for space. */
typedef struct prb_sink_stats { uint64_t bytes_queued, waits, rows_written, commits; } prb_sink_stats;
void prb_sink_get_stats(prb_sink *s, prb_sink_stats *st);

/* The schema v1 DDL (idempotent CREATE ... IF NOT EXISTS statements). */
extern const char prb_schema_sql[];
#define PRB_SCHEMA_VERSION 1

#endif
