/* test_badinput.c — hostile model folders, broken JSON, bad CLI arguments, unusable DB
 * paths, a full disk and a killed process. Each bad case must end with exactly one stderr
 * line "moescope ...: <fact>" naming the file / tensor at fault, exit status 1..127 (no
 * crash, no sanitizer report), and must not lose or corrupt anything already recorded. */
#pragma GCC diagnostic ignored "-Wformat-truncation" /* paths are bounded by PATH_MAX-sized buffers */
#include "tests/tst.h"
#include "tests/util/tst_run.h"

#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

static char g_fix[4096], g_tok[4096], g_root[4096], g_tiny[4096];

static char *read_all(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  REQUIRE(f != NULL);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)n + 1);
  REQUIRE(b && fread(b, 1, (size_t)n, f) == (size_t)n);
  fclose(f);
  b[n] = 0;
  *len = (size_t)n;
  return b;
}
static void write_all(const char *path, const void *buf, size_t len) {
  FILE *f = fopen(path, "wb");
  REQUIRE(f != NULL);
  REQUIRE(fwrite(buf, 1, len, f) == len);
  REQUIRE(fclose(f) == 0);
}
static void copy_file(const char *src, const char *dst) {
  size_t n;
  char *b = read_all(src, &n);
  write_all(dst, b, n);
  free(b);
}

/* A fresh copy of the fixture model in g_root/<name>; returns its path (static buffer). */
static const char *mk_model(const char *name) {
  static char dir[4096];
  char a[4096], b[4096];
  snprintf(dir, sizeof dir, "%s/%s", g_root, name);
  tst_out o;
  tst_sh(&o, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
  REQUIRE(o.status == 0);
  snprintf(a, sizeof a, "%s/config.json", g_fix); snprintf(b, sizeof b, "%s/config.json", dir); copy_file(a, b);
  snprintf(a, sizeof a, "%s/model.safetensors", g_fix); snprintf(b, sizeof b, "%s/model.safetensors", dir); copy_file(a, b);
  return dir;
}
static void path_in(char *buf, size_t n, const char *dir, const char *file) { snprintf(buf, n, "%s/%s", dir, file); }

/* Replaces the first `from` by `to` in a text file. */
static void text_edit(const char *path, const char *from, const char *to) {
  size_t n;
  char *b = read_all(path, &n);
  char *p = strstr(b, from);
  REQUIRE(p != NULL);
  size_t fl = strlen(from), tl = strlen(to), off = (size_t)(p - b);
  char *o = malloc(n - fl + tl + 1);
  memcpy(o, b, off);
  memcpy(o + off, to, tl);
  memcpy(o + off + tl, p + fl, n - off - fl);
  write_all(path, o, n - fl + tl);
  free(o);
  free(b);
}

/* Rewrites dir/model.safetensors with the first `from` in its JSON header replaced by
 * `to` (header length updated, data section unchanged). */
static void st_edit(const char *dir, const char *from, const char *to) {
  char path[4096];
  path_in(path, sizeof path, dir, "model.safetensors");
  size_t n;
  uint8_t *b = (uint8_t *)read_all(path, &n);
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--) hl = (hl << 8) | b[i];
  REQUIRE(hl + 8 <= n);
  char *h = malloc(hl + 1);
  memcpy(h, b + 8, hl);
  h[hl] = 0;
  char *p = strstr(h, from);
  REQUIRE(p != NULL);
  size_t fl = strlen(from), tl = strlen(to), off = (size_t)(p - h), nhl = hl - fl + tl;
  uint8_t *o = malloc(8 + nhl + (n - 8 - hl));
  for (int i = 0; i < 8; i++) o[i] = (uint8_t)(nhl >> (8 * i));
  memcpy(o + 8, h, off);
  memcpy(o + 8 + off, to, tl);
  memcpy(o + 8 + off + tl, p + fl, hl - off - fl);
  memcpy(o + 8 + nhl, b + 8 + hl, n - 8 - hl);
  write_all(path, o, 8 + nhl + (n - 8 - hl));
  free(o); free(h); free(b);
}
static void st_truncate(const char *dir, off_t size) {
  char path[4096];
  path_in(path, sizeof path, dir, "model.safetensors");
  REQUIRE(truncate(path, size) == 0);
}
static off_t fsize(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? st.st_size : -1;
}

/* The contract for every bad case. need1/need2: facts the one error line must contain. */
static void expect_fail(const char *what, const tst_out *o, const char *need1, const char *need2) {
  int lines = tst_count_lines(o->err);
  int ok = o->status > 0 && o->status < 128 && lines == 1 &&
           (!strncmp(o->err, "moescope ", 9) || !strncmp(o->err, "moescope: ", 10)) &&
           (!need1 || strstr(o->err, need1)) && (!need2 || strstr(o->err, need2));
  CHECKF(ok, "[%s] status %d, %d stderr lines, want 1 line with '%s' '%s'; stderr:\n%.3000s", what, o->status, lines,
         need1 ? need1 : "", need2 ? need2 : "", o->err);
}

/* run --ids 1,2,3 against a model dir; no DB file must appear for a model that fails to load. */
static void run_model_case(const char *what, const char *dir, const char *need1, const char *need2) {
  char db[4096];
  snprintf(db, sizeof db, "%s/%s.db", g_root, what);
  remove(db);
  tst_out o;
  tst_sh(&o, "'%s' run --model '%s' --ids 1,2,3 --db '%s'", tst_bin(), dir, db);
  expect_fail(what, &o, need1, need2);
  CHECKF(access(db, F_OK) != 0, "[%s] a trace DB was created for a model that failed to load", what);
}

static sqlite3 *db_open(const char *path) {
  sqlite3 *d = NULL;
  REQUIRE(sqlite3_open_v2(path, &d, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK);
  return d;
}
static long long db_int(sqlite3 *d, const char *sql) {
  sqlite3_stmt *st = NULL;
  long long v = -1;
  if (sqlite3_prepare_v2(d, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}
static int db_integrity_ok(const char *path) {
  sqlite3 *d = db_open(path);
  sqlite3_stmt *st = NULL;
  int ok = sqlite3_prepare_v2(d, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW &&
           !strcmp((const char *)sqlite3_column_text(st, 0), "ok");
  sqlite3_finalize(st);
  sqlite3_close(d);
  return ok;
}

/* ---------------------------------------------------------------- model files */
static void model_cases(void) {
  char p[4096], fn[4096];
  const char *d;
  off_t full;

  d = mk_model("st_trunc4");
  path_in(fn, sizeof fn, d, "model.safetensors");
  full = fsize(fn);
  st_truncate(d, 4);
  run_model_case("st_trunc4", d, fn, NULL);

  d = mk_model("st_empty");
  path_in(fn, sizeof fn, d, "model.safetensors");
  st_truncate(d, 0);
  run_model_case("st_empty", d, fn, NULL);

  d = mk_model("st_half");
  path_in(fn, sizeof fn, d, "model.safetensors");
  st_truncate(d, full / 2);
  run_model_case("st_half", d, fn, NULL);

  d = mk_model("st_header_only");
  path_in(fn, sizeof fn, d, "model.safetensors");
  st_truncate(d, 100); /* inside the header */
  run_model_case("st_header_only", d, fn, NULL);

  d = mk_model("st_hlen_big");
  path_in(fn, sizeof fn, d, "model.safetensors");
  {
    int fdw = open(fn, O_WRONLY);
    REQUIRE(fdw >= 0);
    uint64_t v = (uint64_t)full + 1000;
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)(v >> (8 * i));
    REQUIRE(pwrite(fdw, le, 8, 0) == 8);
    close(fdw);
  }
  run_model_case("st_hlen_big", d, fn, "header length");

  d = mk_model("st_hlen_2e64");
  path_in(fn, sizeof fn, d, "model.safetensors");
  {
    int fdw = open(fn, O_WRONLY);
    REQUIRE(fdw >= 0);
    uint8_t le[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    REQUIRE(pwrite(fdw, le, 8, 0) == 8);
    close(fdw);
  }
  run_model_case("st_hlen_2e64", d, fn, "header length");

  d = mk_model("st_json_garbage");
  path_in(fn, sizeof fn, d, "model.safetensors");
  {
    int fdw = open(fn, O_WRONLY);
    REQUIRE(fdw >= 0);
    char junk[600];
    memset(junk, 'x', sizeof junk);
    memcpy(junk, "{\"lm_head.weight\":{\"dtype\":[", 28);
    REQUIRE(pwrite(fdw, junk, sizeof junk, 8) == (ssize_t)sizeof junk);
    close(fdw);
  }
  run_model_case("st_json_garbage", d, fn, "JSON");

  d = mk_model("st_not_object");
  st_edit(d, "{\"lm_head.weight\":{\"dtype\":\"F32\",\"shape\":[48,32],\"data_offsets\":[0,6144]},",
          "{\"lm_head.weight\":[1,2,3],");
  path_in(fn, sizeof fn, d, "model.safetensors");
  run_model_case("st_entry_not_object", d, fn, "lm_head.weight");

  const char *norm = "\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[32],\"data_offsets\":[243200,243328]}";
  d = mk_model("st_offsets_range");
  st_edit(d, norm, "\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[32],\"data_offsets\":[999872,1000000]}");
  path_in(fn, sizeof fn, d, "model.safetensors");
  run_model_case("st_offsets_range", d, fn, "model.norm.weight");

  d = mk_model("st_offsets_neg");
  st_edit(d, norm, "\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[32],\"data_offsets\":[-128,0]}");
  path_in(fn, sizeof fn, d, "model.safetensors");
  run_model_case("st_offsets_neg", d, fn, "model.norm.weight");

  d = mk_model("st_offsets_size");
  st_edit(d, norm, "\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[32],\"data_offsets\":[243200,243324]}");
  path_in(fn, sizeof fn, d, "model.safetensors");
  run_model_case("st_offsets_size", d, fn, "model.norm.weight");

  d = mk_model("st_overlap");
  st_edit(d, norm, "\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[32],\"data_offsets\":[0,128]}");
  path_in(fn, sizeof fn, d, "model.safetensors");
  run_model_case("st_overlap", d, fn, "model.norm.weight");
  {
    tst_out o;
    tst_sh(&o, "'%s' run --model '%s' --ids 1,2,3 --db '%s/st_overlap.db'", tst_bin(), d, g_root);
    CHECKF(strstr(o.err, "lm_head.weight") != NULL, "[st_overlap] both tensors named: %s", o.err);
  }

  d = mk_model("st_dtype");
  st_edit(d, "\"model.norm.weight\":{\"dtype\":\"F32\"", "\"model.norm.weight\":{\"dtype\":\"F8_E9M9\"");
  path_in(fn, sizeof fn, d, "model.safetensors");
  run_model_case("st_dtype", d, "model.norm.weight", "F8_E9M9");

  d = mk_model("st_dtype_int");
  st_edit(d, "\"model.norm.weight\":{\"dtype\":\"F32\"", "\"model.norm.weight\":{\"dtype\":\"I32\"");
  path_in(fn, sizeof fn, d, "model.safetensors");
  run_model_case("st_dtype_int", d, "model.norm.weight", "I32");

  d = mk_model("st_shape_neg");
  st_edit(d, norm, "\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[-32],\"data_offsets\":[243200,243328]}");
  path_in(fn, sizeof fn, d, "model.safetensors");
  run_model_case("st_shape_neg", d, fn, "model.norm.weight");

  d = mk_model("st_shape_huge");
  st_edit(d, norm, "\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[243200,243328]}");
  path_in(fn, sizeof fn, d, "model.safetensors");
  run_model_case("st_shape_huge", d, fn, "model.norm.weight");

  d = mk_model("st_missing_tensor");
  st_edit(d, "\"model.layers.1.self_attn.k_proj.weight\"", "\"model.layers.1.self_attn.k_proj.weighX\"");
  run_model_case("st_missing_tensor", d, "model.layers.1.self_attn.k_proj.weight", "missing");

  d = mk_model("st_missing_file");
  path_in(fn, sizeof fn, d, "model.safetensors");
  remove(fn);
  run_model_case("st_missing_file", d, d, "model.safetensors");

  /* shape disagrees with config.json: the error names the tensor and both shapes */
  d = mk_model("cfg_heads");
  path_in(p, sizeof p, d, "config.json");
  text_edit(p, "\"num_attention_heads\": 4", "\"num_attention_heads\": 8");
  run_model_case("cfg_heads", d, "model.layers.0.self_attn.q_proj.weight", "[32,32]");
  {
    tst_out o;
    tst_sh(&o, "'%s' run --model '%s' --ids 1,2,3 --db '%s/cfg_heads.db'", tst_bin(), d, g_root);
    CHECKF(strstr(o.err, "[64,32]") && strstr(o.err, "model.safetensors"), "[cfg_heads] %s", o.err);
  }
  d = mk_model("cfg_hidden");
  path_in(p, sizeof p, d, "config.json");
  text_edit(p, "\"hidden_size\": 32", "\"hidden_size\": 64");
  run_model_case("cfg_hidden", d, "model.embed_tokens.weight", "[48,64]");

  /* config.json: bad numbers, broken JSON, missing, unsupported */
  struct { const char *name, *from, *to, *need; } cf[] = {
    {"cfg_nan", "\"hidden_size\": 32", "\"hidden_size\": NaN", "config.json"},
    {"cfg_neg_layers", "\"num_hidden_layers\": 2", "\"num_hidden_layers\": -2", "config.json"},
    {"cfg_huge_int", "\"hidden_size\": 32", "\"hidden_size\": 1e30", "hidden_size"},
    {"cfg_frac_int", "\"hidden_size\": 32", "\"hidden_size\": 32.5", "hidden_size"},
    {"cfg_string_int", "\"hidden_size\": 32", "\"hidden_size\": \"32\"", "hidden_size"},
    {"cfg_huge_vocab", "\"vocab_size\": 48", "\"vocab_size\": 2147483647", "config.json"},
    {"cfg_huge_experts", "\"num_local_experts\": 4", "\"num_local_experts\": 100000", "config.json"},
    {"cfg_huge_maxpos", "\"max_position_embeddings\": 64", "\"max_position_embeddings\": 2000000000", "max_position_embeddings"},
    {"cfg_huge_theta", "\"rope_theta\": 10000.0", "\"rope_theta\": 1e300", "rope_theta"},
    {"cfg_neg_eps", "\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": -1", "rms_norm_eps"},
    {"cfg_huge_eos", "\"eos_token_id\": 20", "\"eos_token_id\": 1e20", "eos_token_id"},
    {"cfg_neg_bos", "\"bos_token_id\": 1", "\"bos_token_id\": -7", "bos_token_id"},
    {"cfg_topk", "\"num_experts_per_tok\": 2", "\"num_experts_per_tok\": 9", "num_experts_per_tok"},
    {"cfg_kv_heads", "\"num_key_value_heads\": 4", "\"num_key_value_heads\": 3", "num_key_value_heads"},
    {"cfg_model_type", "\"model_type\": \"mixtral\"", "\"model_type\": \"llama\"", "llama"},
    {"cfg_no_model_type", "\"model_type\": \"mixtral\"", "\"model_typo\": \"mixtral\"", "model_type"},
    {"cfg_no_hidden", "\"hidden_size\": 32", "\"hidden_sizX\": 32", "hidden_size"},
    {"cfg_array", "{", "[{", "config.json"},
  };
  for (size_t i = 0; i < sizeof cf / sizeof cf[0]; i++) {
    d = mk_model(cf[i].name);
    path_in(p, sizeof p, d, "config.json");
    text_edit(p, cf[i].from, cf[i].to);
    run_model_case(cf[i].name, d, p, cf[i].need);
  }
  d = mk_model("cfg_truncated");
  path_in(p, sizeof p, d, "config.json");
  REQUIRE(truncate(p, 100) == 0);
  run_model_case("cfg_truncated", d, p, NULL);
  d = mk_model("cfg_empty");
  path_in(p, sizeof p, d, "config.json");
  REQUIRE(truncate(p, 0) == 0);
  run_model_case("cfg_empty", d, p, NULL);
  d = mk_model("cfg_missing");
  path_in(p, sizeof p, d, "config.json");
  remove(p);
  run_model_case("cfg_missing", d, p, NULL);
  d = mk_model("cfg_is_dir");
  path_in(p, sizeof p, d, "config.json");
  remove(p);
  REQUIRE(mkdir(p, 0755) == 0);
  run_model_case("cfg_is_dir", d, p, NULL);
  run_model_case("model_dir_missing", "/nonexistent/moescope/model", "/nonexistent/moescope/model", NULL);

  /* sharded checkpoints */
  d = mk_model("shard_missing");
  {
    char a[4096], b[4096], idx[4096];
    path_in(a, sizeof a, d, "model.safetensors");
    path_in(b, sizeof b, d, "model-00001-of-00002.safetensors");
    REQUIRE(rename(a, b) == 0);
    path_in(idx, sizeof idx, d, "model.safetensors.index.json");
    const char *j = "{\"metadata\":{},\"weight_map\":{\"lm_head.weight\":\"model-00001-of-00002.safetensors\","
                    "\"model.norm.weight\":\"model-00002-of-00002.safetensors\"}}";
    write_all(idx, j, strlen(j));
    run_model_case("shard_missing", d, "model-00002-of-00002.safetensors", NULL);
    const char *j2 = "{\"weight_map\":{\"lm_head.weight\":\"../model-00001-of-00002.safetensors\"}}";
    write_all(idx, j2, strlen(j2));
    run_model_case("shard_slash", d, "model.safetensors.index.json", "lm_head.weight");
    const char *j3 = "{\"weight_map\":{\"lm_head.weight\":\"/etc/passwd\"}}";
    write_all(idx, j3, strlen(j3));
    run_model_case("shard_abs", d, "model.safetensors.index.json", "lm_head.weight");
    const char *j4 = "{\"weight_map\":{\"lm_head.weight\":\"model-00001-of";
    write_all(idx, j4, strlen(j4));
    run_model_case("shard_bad_json", d, idx, NULL);
    const char *j5 = "{\"weight_map\":{\"lm_head.weight\":\"model-00001-of-00002.safetensors\","
                     "\"model.embed_tokenz.weight\":\"model-00001-of-00002.safetensors\"}}";
    write_all(idx, j5, strlen(j5));
    run_model_case("shard_name_absent", d, idx, "model.embed_tokenz.weight");
  }

  /* tokenizer.json (only needed for text input) */
  d = mk_model("tok_malformed");
  {
    char tj[4096], db[4096];
    path_in(tj, sizeof tj, d, "tokenizer.json");
    size_t n;
    char *t = read_all(g_tok, &n);
    write_all(tj, t, n / 3);
    free(t);
    snprintf(db, sizeof db, "%s/tok.db", g_root);
    remove(db);
    tst_out o;
    tst_sh(&o, "'%s' run --model '%s' --prompt 'hello world' --db '%s'", tst_bin(), d, db);
    expect_fail("tok_malformed", &o, tj, NULL);
    write_all(tj, "{\"model\": 3}", 12);
    tst_sh(&o, "'%s' run --model '%s' --prompt 'hello world' --db '%s'", tst_bin(), d, db);
    expect_fail("tok_no_model", &o, tj, NULL);
    remove(tj);
    tst_sh(&o, "'%s' run --model '%s' --prompt 'hello world' --db '%s'", tst_bin(), d, db);
    expect_fail("tok_missing", &o, tj, NULL);
    /* the 8192-piece tokenizer with the 48-token model: ids out of the model's vocab */
    copy_file(g_tok, tj);
    tst_sh(&o, "'%s' run --model '%s' --prompt 'hello world, a story about things' --db '%s'", tst_bin(), d, db);
    expect_fail("tok_vocab_mismatch", &o, tj, "vocab");
    CHECKF(access(db, F_OK) != 0, "[tok] no trace DB may be created when the input cannot be tokenized");
    /* a file input that does not exist */
    tst_sh(&o, "'%s' run --model '%s' --file '%s/no_such_input.txt' --db '%s'", tst_bin(), d, g_root, db);
    expect_fail("file_missing", &o, "no_such_input.txt", NULL);
  }
}

/* ---------------------------------------------------------------- CLI arguments */
static void cli_cases(void) {
  const char *B = tst_bin(), *M = g_fix;
  char db[4096];
  snprintf(db, sizeof db, "%s/cli.db", g_root);
  struct { const char *name, *args, *need; } cs[] = {
    {"unknown_command", "frobnicate", "frobnicate"},
    {"unknown_option", "run --model '%M' --ids 1,2,3 --bogus", "--bogus"},
    {"generate_abc", "run --model '%M' --ids 1,2,3 --generate abc", "--generate"},
    {"generate_neg", "run --model '%M' --ids 1,2,3 --generate -5", "--generate"},
    {"record_bogus", "run --model '%M' --ids 1,2,3 --record bogus", "bogus"},
    {"route_nope", "run --model '%M' --ids 1,2,3 --route nope", "nope"},
    {"route_k_too_big", "run --model '%M' --ids 1,2,3 --route topk:k=9", NULL},
    {"top_p_2", "run --model '%M' --ids 1,2,3 --top-p 2", "--top-p"},
    {"top_p_nan", "run --model '%M' --ids 1,2,3 --top-p nan", "--top-p"},
    {"temperature_neg", "run --model '%M' --ids 1,2,3 --temperature -1", "--temperature"},
    {"ids_garbage", "run --model '%M' --ids 1,,x", "1,,x"},
    {"ids_empty", "run --model '%M' --ids ''", "--ids"},
    {"ids_negative", "run --model '%M' --ids 1,-2,3", "--ids"},
    {"ids_overflow", "run --model '%M' --ids 99999999999999999999", "--ids"},
    {"ids_out_of_vocab", "run --model '%M' --ids 1,99999", "99999"},
    {"threads_0", "run --model '%M' --ids 1,2,3 --threads 0", "--threads"},
    {"batch_0", "run --model '%M' --ids 1,2,3 --batch 0", "--batch"},
    {"window_1", "run --model '%M' --ids 1,2,3 --window 1", "--window"},
    {"db_no_value", "run --model '%M' --ids 1,2,3 --db", "--db"},
    {"no_input", "run --model '%M'", "input"},
    {"label_first", "run --model '%M' --label x --ids 1,2", "--label"},
    {"dir_missing", "run --model '%M' --dir /nonexistent/texts", "/nonexistent/texts"},
    {"device_cuda", "run --model '%M' --ids 1,2,3 --device cuda", "cuda"},
    {"device_tpu", "run --model '%M' --ids 1,2,3 --device tpu", "tpu"},
    {"expert_gemm_bad", "run --model '%M' --ids 1,2,3 --device cuda --expert-gemm fast", "--expert-gemm"},
    {"expert_gemm_cpu", "run --model '%M' --ids 1,2,3 --expert-gemm cublas", "--expert-gemm"},
    {"prompt_too_long_ctx", "run --model '%M' --ids 1,2,3 --generate 5 --window 2", "context"},
    {"stats_missing_db", "stats '%R/missing.db'", "missing.db"},
    {"stats_unknown_opt", "stats '%R/missing.db' --bogus", "--bogus"},
    {"report_no_o", "report '%R/missing.db'", "-o"},
    {"report_missing_db", "report '%R/missing.db' -o '%R/rep_out'", "missing.db"},
    {"synth_experts_lt_topk", "synth -o '%R/synth_bad' --experts 2 --top-k 4", "top_k"},
    {"synth_no_o", "synth --experts 4", "-o"},
    {"synth_bad_int", "synth -o '%R/synth_bad' --layers x", "--layers"},
    {"info_missing", "info /nonexistent/model", "/nonexistent/model"},
    {"bench_bad", "bench --bogus", "--bogus"},
  };
  for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
    char args[4096] = "";
    for (const char *s = cs[i].args; *s; s++) { /* %M = model, %R = temp root */
      size_t L = strlen(args);
      if (s[0] == '%' && s[1] == 'M') { snprintf(args + L, sizeof args - L, "%s", M); s++; }
      else if (s[0] == '%' && s[1] == 'R') { snprintf(args + L, sizeof args - L, "%s", g_root); s++; }
      else { args[L] = *s; args[L + 1] = 0; }
    }
    remove(db);
    int has_db = strstr(args, "--db") != NULL || strncmp(args, "run", 3);
    tst_out o;
    tst_sh(&o, "'%s' %s %s%s%s", B, args, has_db ? "" : "--db '", has_db ? "" : db, has_db ? "" : "'");
    expect_fail(cs[i].name, &o, cs[i].need, NULL);
    CHECKF(access(db, F_OK) != 0, "[%s] a trace DB was created by a run that failed before starting", cs[i].name);
  }
  char out[4096];
  snprintf(out, sizeof out, "%s/rep_out", g_root);
  CHECKF(access(out, F_OK) != 0, "report on a missing DB must not create the output folder");
}

/* ---------------------------------------------------------------- trace DB paths */
static void db_cases(void) {
  const char *B = tst_bin(), *M = g_fix;
  char p[4096];
  tst_out o;
  snprintf(p, sizeof p, "%s/no/such/dir/x.db", g_root);
  tst_sh(&o, "'%s' run --model '%s' --ids 1,2,3 --db '%s'", B, M, p);
  expect_fail("db_no_dir", &o, p, NULL);

  snprintf(p, sizeof p, "%s/db_is_dir", g_root);
  mkdir(p, 0755);
  tst_sh(&o, "'%s' run --model '%s' --ids 1,2,3 --db '%s'", B, M, p);
  expect_fail("db_is_dir", &o, p, NULL);

  /* an existing non-SQLite file: refused, byte for byte unchanged, no side files */
  snprintf(p, sizeof p, "%s/notes.txt", g_root);
  char text[8192];
  for (size_t i = 0; i < sizeof text; i++) text[i] = (char)('a' + (i * 7) % 26);
  for (size_t i = 80; i < sizeof text; i += 81) text[i] = '\n';
  write_all(p, text, sizeof text);
  const char *cmds[] = {"run --model '%s' --ids 1,2,3 --db '%s'", "stats '%s%s'", "report '%s%s' -o '%s/rep_notes'"};
  for (int k = 0; k < 3; k++) {
    char c[4096];
    if (k == 0) snprintf(c, sizeof c, cmds[0], M, p);
    else if (k == 1) snprintf(c, sizeof c, cmds[1], "", p);
    else snprintf(c, sizeof c, cmds[2], "", p, g_root);
    tst_sh(&o, "'%s' %s", B, c);
    expect_fail(k == 0 ? "db_not_sqlite_run" : k == 1 ? "db_not_sqlite_stats" : "db_not_sqlite_report", &o, p, NULL);
    size_t n;
    char *now = read_all(p, &n);
    CHECKF(n == sizeof text && !memcmp(now, text, n), "[db_not_sqlite %d] the file was modified", k);
    free(now);
    char side[4200];
    snprintf(side, sizeof side, "%s-wal", p);
    CHECKF(access(side, F_OK) != 0, "[db_not_sqlite %d] left %s behind", k, side);
    snprintf(side, sizeof side, "%s-journal", p);
    CHECKF(access(side, F_OK) != 0, "[db_not_sqlite %d] left %s behind", k, side);
  }

  /* disk full while writing the logits dump (a 512-byte file-size limit; SIGXFSZ ignored so
   * the write fails with EFBIG): one line naming the file, and the partial file removed */
  snprintf(p, sizeof p, "%s/logits.npy", g_root);
  tst_sh(&o, "trap '' XFSZ; ulimit -f 1; exec '%s' run --model '%s' --ids 1,2,3,4,5,6 --score --record off --dump-logits '%s'",
         B, M, p);
  expect_fail("dump_disk_full", &o, p, NULL);
  CHECKF(access(p, F_OK) != 0, "[dump_disk_full] the partial .npy was left behind");
}

/* ---------------------------------------------------------------- nothing recorded is lost */
static void keep_cases(void) {
  const char *B = tst_bin(), *M = g_fix;
  char db[4096], bad[4096];
  snprintf(db, sizeof db, "%s/keep.db", g_root);
  tst_out o;
  tst_sh(&o, "rm -f '%s' '%s-wal' '%s-shm'", db, db, db);
  tst_sh(&o, "'%s' run --model '%s' --ids 1,2,3,4 --score --db '%s'", B, M, db);
  REQUIRE(o.status == 0);
  CHECKF(tst_count_lines(o.err) == 1 && strstr(o.err, "run 1"), "good run stderr: %s", o.err);
  snprintf(bad, sizeof bad, "%s/st_offsets_range", g_root);
  const char *fails[] = {
    "run --model '%s' --ids 1,2,3 --db '%s'",           /* bad model dir */
    "run --model '%s' --ids 1,,x --db '%s'",            /* bad --ids */
    "run --model '%s' --ids 5,99999 --db '%s'",         /* id out of vocab */
    "run --model '%s' --ids 1,2 --route nope --db '%s'",
  };
  for (int k = 0; k < 4; k++) {
    char c[8192];
    snprintf(c, sizeof c, fails[k], k == 0 ? bad : M, db);
    tst_sh(&o, "'%s' %s", B, c);
    expect_fail("keep_failing_cmd", &o, NULL, NULL);
  }
  /* full disk: the file-size limit makes SQLite's writes fail with EFBIG */
  char ids[8192] = "1"; /* ~0.5 MB of trace at level full: over the limit in 512- or 1024-byte blocks */
  for (int i = 1; i < 600; i++) snprintf(ids + strlen(ids), sizeof ids - strlen(ids), ",%d", 1 + (i * 37) % 40);
  tst_sh(&o, "trap '' XFSZ; ulimit -f 100; exec '%s' run --model '%s' --ids %s --score --window 64 --record full --db '%s'", B, M, ids, db);
  expect_fail("disk_full", &o, db, NULL);

  CHECK(db_integrity_ok(db));
  sqlite3 *d = db_open(db);
  CHECK(db_int(d, "SELECT count(*) FROM routing WHERE run_id = 1") == 16);
  CHECK(db_int(d, "SELECT count(*) FROM tokens WHERE run_id = 1") == 4);
  CHECK(db_int(d, "SELECT count(*) FROM sequences WHERE run_id = 1") == 1);
  CHECK(db_int(d, "SELECT count(*) FROM runs WHERE run_id = 1") == 1);
  long long runs = db_int(d, "SELECT count(*) FROM runs");
  CHECKF(runs <= 2, "failed commands before the trace started recorded %lld runs", runs);
  sqlite3_close(d);
  tst_sh(&o, "'%s' stats '%s' --run 1", B, db);
  CHECKF(o.status == 0, "stats on the kept DB: %s", o.err);
}

/* ---------------------------------------------------------------- killed process */
static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}
static void kill_case(void) {
  if (access(g_tiny, R_OK) != 0) { printf("note: %s absent, killed-process case skipped\n", g_tiny); return; }
  char db[4096], model[4096];
  snprintf(db, sizeof db, "%s/killed.db", g_root);
  snprintf(model, sizeof model, "%s", g_tiny);
  tst_out o;
  tst_sh(&o, "rm -f '%s' '%s-wal' '%s-shm'", db, db, db);
  size_t cap = 3000 * 6 + 1;
  char *ids = malloc(cap);
  ids[0] = 0;
  for (int i = 0; i < 3000; i++) snprintf(ids + strlen(ids), cap - strlen(ids), "%s%d", i ? "," : "", 1 + (i * 37) % 8000);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int nul = open("/dev/null", O_WRONLY);
    dup2(nul, 1);
    dup2(nul, 2);
    execl(tst_bin(), tst_bin(), "run", "--model", model, "--ids", ids, "--score", "--record", "full", "--db", db,
          "--quiet", (char *)NULL);
    _exit(127);
  }
  /* wait until the run is being recorded (runs row + some rows in the WAL), then kill */
  double t0 = now_s();
  int status = 0, exited = 0;
  char wal[4200];
  snprintf(wal, sizeof wal, "%s-wal", db);
  while (now_s() - t0 < 60) {
    if (waitpid(pid, &status, WNOHANG) == pid) { exited = 1; break; }
    if (fsize(wal) > 65536) break;
    usleep(10000);
  }
  if (!exited) {
    usleep(300000);
    if (waitpid(pid, &status, WNOHANG) == pid) exited = 1;
  }
  if (!exited) {
    kill(pid, SIGKILL);
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  } else {
    printf("note: the long run finished before it could be killed (%.2fs)\n", now_s() - t0);
  }
  free(ids);
  CHECKF(db_integrity_ok(db), "[killed] trace DB fails integrity_check");
  sqlite3 *d = db_open(db);
  long long runs = db_int(d, "SELECT count(*) FROM runs");
  CHECKF(runs == 1, "[killed] runs = %lld", runs);
  sqlite3_close(d);
  tst_sh(&o, "'%s' run --model '%s' --ids 1,2,3 --score --db '%s'", tst_bin(), model, db);
  CHECKF(o.status == 0 && strstr(o.err, "run 2"), "[killed] DB does not accept a new run: %d %s", o.status, o.err);
  CHECK(db_integrity_ok(db));
  d = db_open(db);
  CHECK(db_int(d, "SELECT count(*) FROM routing WHERE run_id = 2") == 3 * 4 * 2);
  sqlite3_close(d);
}

int main(void) {
  const char *src = getenv("MOESCOPE_SRC") ? getenv("MOESCOPE_SRC") : ".";
  snprintf(g_fix, sizeof g_fix, "%s/tests/fixtures/hf_mixtral_tiny", src);
  snprintf(g_tok, sizeof g_tok, "%s/tests/fixtures/tokenizer/tokenizer.json", src);
  snprintf(g_tiny, sizeof g_tiny, "%s/models/tiny-mixtral", src);
  snprintf(g_root, sizeof g_root, "%s/badinput.%d", tst_tmp(), (int)getpid());
  REQUIRE(access(g_fix, R_OK) == 0 && access(g_tok, R_OK) == 0);
  tst_out o;
  tst_sh(&o, "rm -rf '%s' && mkdir -p '%s'", g_root, g_root);
  REQUIRE(o.status == 0);
  /* sanity: the untouched fixture runs, so every failure below is the corruption's */
  char db[4096];
  snprintf(db, sizeof db, "%s/sanity.db", g_root);
  tst_sh(&o, "'%s' run --model '%s' --ids 1,2,3 --db '%s'", tst_bin(), g_fix, db);
  REQUIRE(o.status == 0);
  CHECKF(tst_count_lines(o.err) == 1, "a good run prints one stderr line: %s", o.err);
  model_cases();
  cli_cases();
  db_cases();
  keep_cases();
  kill_case();
  if (!tst_failures) tst_sh(&o, "rm -rf '%s'", g_root);
  return tst_done();
}
