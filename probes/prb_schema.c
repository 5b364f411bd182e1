/* prb_schema.c — the trace database schema v1 (DESIGN.md). The contract between
 * recording (probes/) and analysis (analysis/): table and column names here are what
 * analysis queries. Applied idempotently by prb_sink_open(). */
#include "probes/prb_sink.h"
#include "probes/prb_nsys.h"

const char prb_schema_sql[] =
  "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);\n"
  "CREATE TABLE IF NOT EXISTS runs(run_id INTEGER PRIMARY KEY, started_at TEXT, finished_at TEXT,"
  " status TEXT, model_path TEXT, model_sha256 TEXT, family TEXT, n_layers INTEGER,"
  " n_experts INTEGER, top_k INTEGER, n_shared_experts INTEGER, policy TEXT, record_level TEXT,"
  " device TEXT, dtype TEXT, threads INTEGER, command_line TEXT);\n"
  "CREATE TABLE IF NOT EXISTS sequences(run_id INTEGER NOT NULL, seq_id INTEGER NOT NULL,"
  " label TEXT, source TEXT, n_tokens INTEGER, PRIMARY KEY(run_id, seq_id));\n"
  "CREATE TABLE IF NOT EXISTS tokens(run_id INTEGER NOT NULL, seq_id INTEGER NOT NULL,"
  " pos INTEGER NOT NULL, token_id INTEGER, phase TEXT, nll REAL,"
  " PRIMARY KEY(run_id, seq_id, pos)) WITHOUT ROWID;\n"
  "CREATE TABLE IF NOT EXISTS vocab(run_id INTEGER NOT NULL, token_id INTEGER NOT NULL,"
  " piece TEXT, PRIMARY KEY(run_id, token_id)) WITHOUT ROWID;\n"
  "CREATE TABLE IF NOT EXISTS routing(run_id INTEGER NOT NULL, seq_id INTEGER NOT NULL,"
  " pos INTEGER NOT NULL, layer INTEGER NOT NULL, slot INTEGER NOT NULL, expert INTEGER NOT NULL,"
  " weight REAL);\n"
  /* routing_packed: the same routing as `routing`, one row per (forward batch, layer) record
   * with the arrays as little-endian blobs (seq, pos: int32[n]; expert: int32[n*k], -1 or
   * >= e = empty slot; weight: float32[n*k]); n_rows = the `routing` rows of the record.
   * Written in the same transaction as those rows; analysis reads it instead of scanning
   * `routing` (10^7 rows) when SUM(n_rows) equals COUNT(*) of routing, else falls back. */
  "CREATE TABLE IF NOT EXISTS routing_packed(run_id INTEGER NOT NULL, batch_id INTEGER,"
  " layer INTEGER NOT NULL, n INTEGER NOT NULL, k INTEGER NOT NULL, e INTEGER NOT NULL,"
  " n_rows INTEGER NOT NULL, seq BLOB, pos BLOB, expert BLOB, weight BLOB);\n"
  "CREATE TABLE IF NOT EXISTS router_probs(run_id INTEGER NOT NULL, seq_id INTEGER NOT NULL,"
  " pos INTEGER NOT NULL, layer INTEGER NOT NULL, probs BLOB, logits BLOB);\n"
  "CREATE TABLE IF NOT EXISTS expert_load(run_id INTEGER NOT NULL, batch_id INTEGER NOT NULL,"
  " layer INTEGER NOT NULL, expert INTEGER NOT NULL, tokens INTEGER NOT NULL,"
  " weight_sum REAL NOT NULL, dropped INTEGER NOT NULL DEFAULT 0);\n"
  /* router_bias: the selection bias of the `bias` router policy (DeepSeek-V3 aux-loss-free
   * balancing) that routed forward batch batch_id at `layer`, one row per expert. */
  "CREATE TABLE IF NOT EXISTS router_bias(run_id INTEGER NOT NULL, batch_id INTEGER NOT NULL,"
  " layer INTEGER NOT NULL, expert INTEGER NOT NULL, bias REAL NOT NULL);\n"
  /* logits_sample: next-token logits (float32[vocab]) of every PRB_LOGITS_EVERY-th position
   * of scored sequences, at record level full (compare: KL divergence, top-1 agreement). */
  "CREATE TABLE IF NOT EXISTS logits_sample(run_id INTEGER NOT NULL, seq_id INTEGER NOT NULL,"
  " pos INTEGER NOT NULL, logits BLOB NOT NULL);\n"
  "CREATE TABLE IF NOT EXISTS ops(run_id INTEGER NOT NULL, batch_id INTEGER, layer INTEGER,"
  " op TEXT NOT NULL, expert INTEGER, device TEXT, start_ns INTEGER, end_ns INTEGER,"
  " thread INTEGER);\n"
  "CREATE INDEX IF NOT EXISTS expert_load_run ON expert_load(run_id, layer, expert);\n"
  "CREATE VIEW IF NOT EXISTS v_expert_load AS SELECT run_id, layer, expert,"
  " SUM(tokens) AS tokens, SUM(weight_sum) AS weight_sum, SUM(dropped) AS dropped"
  " FROM expert_load GROUP BY run_id, layer, expert;\n"
  "CREATE VIEW IF NOT EXISTS v_op_time_by_layer AS SELECT run_id, layer, op,"
  " COUNT(*) AS calls, SUM(end_ns - start_ns) AS total_ns FROM ops GROUP BY run_id, layer, op;\n"
  /* Nsight Systems-compatible profiler tables + kernel_scope and v_kernel_time_by_layer
   * (kernels joined to layers/ops, plus the CPU op timers): probes/prb_nsys.h. */
  PRB_NSYS_SCHEMA_SQL
  PRB_NSYS_VIEW_SQL;
