/* test_gguf_bad.c — hostile GGUF files: every one must be refused with -1 and exactly one
 * error line that says what is wrong, never a crash or an allocation sized by the file
 * (this test runs under ASan+UBSan in the sanitizer pass). A small valid file is built in
 * memory, then: every truncation of it, bad magic/version, absurd tensor / metadata /
 * array counts, absurd dims, too many dims, string lengths past the end, misaligned and
 * out-of-file offsets, unknown tensor and value types, a bad general.alignment, duplicate
 * tensor names and keys, overlapping tensors, a row not a multiple of the Q8_0 block,
 * nested arrays; plus the file path (eng_gguf_open / eng_gguf_model_source) cases. */
#include "engine/eng_gguf.h"
#include "tests/tst.h"

#include <stdint.h>

typedef struct { uint8_t b[4096]; size_t n; } img;

static void p(img *m, const void *d, size_t n) { REQUIRE(m->n + n <= sizeof m->b); memcpy(m->b + m->n, d, n); m->n += n; }
static void u32(img *m, uint32_t v) { p(m, &v, 4); }
static void u64(img *m, uint64_t v) { p(m, &v, 8); }
static void str(img *m, const char *s) { u64(m, strlen(s)); p(m, s, strlen(s)); }

/* faults */
enum { F_NONE, F_VERSION, F_NT, F_NKV, F_DIM, F_NDIMS, F_STRLEN, F_MISALIGN, F_OUTSIDE, F_TYPE, F_VTYPE, F_ALIGN,
       F_DUPNAME, F_DUPKEY, F_OVERLAP, F_Q8ROW, F_NESTED, F_ARRLEN, F_MAGIC, F_BOOL };

/* Builds: kv general.architecture = "llama", llama.block_count = 1, general.alignment
 * (32), tokens array; tensors a [4,2] F32 at 0, b [4] F32 at 32. */
static void build(img *m, int fault) {
  memset(m, 0, sizeof *m);
  p(m, fault == F_MAGIC ? "GGUX" : "GGUF", 4);
  u32(m, fault == F_VERSION ? 2 : 3);
  u64(m, fault == F_NT ? (uint64_t)1 << 40 : 2);
  u64(m, fault == F_NKV ? UINT64_MAX / 2 : 5);
  str(m, "general.architecture"); u32(m, GGUF_T_STRING);
  if (fault == F_STRLEN) u64(m, (uint64_t)1 << 60); else str(m, "llama");

  str(m, fault == F_DUPKEY ? "general.architecture" : "llama.block_count"); u32(m, fault == F_VTYPE ? 99 : GGUF_T_U32); u32(m, 1);
  str(m, "general.alignment"); u32(m, GGUF_T_U32); u32(m, fault == F_ALIGN ? 24 : 32);
  str(m, "tokenizer.ggml.tokens"); u32(m, GGUF_T_ARRAY);
  if (fault == F_NESTED) { u32(m, GGUF_T_ARRAY); u64(m, 1); u32(m, GGUF_T_U8); u64(m, 1); p(m, "x", 1); }
  else { u32(m, GGUF_T_STRING); u64(m, fault == F_ARRLEN ? (uint64_t)1 << 62 : 2); str(m, "a"); str(m, "b"); }
  str(m, "flag"); u32(m, GGUF_T_BOOL); p(m, fault == F_BOOL ? "\x07" : "\x01", 1);
  /* tensor a */
  str(m, "a");
  u32(m, fault == F_NDIMS ? 9 : 2);
  u64(m, fault == F_Q8ROW ? 33 : 4);
  u64(m, fault == F_DIM ? (uint64_t)1 << 62 : 2);
  u32(m, fault == F_TYPE ? 77 : fault == F_Q8ROW ? GGML_T_Q8_0 : GGML_T_F32);
  u64(m, fault == F_MISALIGN ? 4 : 0);
  /* tensor b */
  str(m, fault == F_DUPNAME ? "a" : "b");
  u32(m, 1); u64(m, 4); u32(m, GGML_T_F32);
  u64(m, fault == F_OVERLAP ? 0 : fault == F_OUTSIDE ? 4096 : 32);
  while (m->n % 32) p(m, "\0", 1);
  for (int i = 0; i < 64; i++) p(m, "\0", 1); /* 32 bytes of a (padded) + 16 bytes of b + pad */
}

static void expect_fail(const img *m, const char *label, const char *want) {
  eng_gguf g;
  char err[512] = "";
  int rc = eng_gguf_parse(&g, m->b, m->n, label, err, sizeof err);
  CHECKF(rc == -1, "%s: accepted", label);
  CHECKF(err[0] && !strchr(err, '\n'), "%s: error is not one line: '%s'", label, err);
  if (want) CHECKF(strstr(err, want) != NULL, "%s: error '%s' does not mention '%s'", label, err, want);
  eng_gguf_close(&g);
}

int main(void) {
  img m;
  char err[512];
  eng_gguf g;
  build(&m, F_NONE);
  int rc = eng_gguf_parse(&g, m.b, m.n, "valid", err, sizeof err);
  CHECKF(rc == 0, "valid image refused: %s", err);
  if (rc == 0) {
    CHECK(g.n_tensors == 2 && g.n_kv == 5 && g.alignment == 32);
    const eng_gguf_tensor *b = eng_gguf_find_tensor(&g, "b");
    CHECK(b && b->offset == 32 && b->nbytes == 16 && b->ne[0] == 4);
    const eng_gguf_kv *kv = eng_gguf_find(&g, "tokenizer.ggml.tokens");
    size_t len = 0;
    CHECK(kv && kv->n == 2 && !memcmp(eng_gguf_arr_str(kv, 1, &len), "b", 1) && len == 1);
    int64_t v = 0;
    CHECK(eng_gguf_get_int(&g, "llama.block_count", &v) == 0 && v == 1);
  }
  eng_gguf_close(&g);
  /* every truncation (the data section is needed: tensors end at 48 + padding) */
  size_t full = m.n;
  int refused = 0;
  for (size_t n = 0; n < full - 16; n++) {
    img t = m;
    t.n = n;
    char e2[512] = "";
    rc = eng_gguf_parse(&g, t.b, t.n, "trunc", e2, sizeof e2);
    refused += rc == -1 && e2[0] && !strchr(e2, '\n');
    eng_gguf_close(&g);
  }
  CHECKF(refused == (int)(full - 16), "only %d of %zu truncations refused with one line", refused, full - 16);
  static const struct { int f; const char *label, *want; } cases[] = {
    {F_MAGIC, "magic", "magic"}, {F_VERSION, "version", "version 2"}, {F_NT, "tensor count", "tensor count"},
    {F_NKV, "kv count", "metadata count"}, {F_DIM, "dim", "absurd"}, {F_NDIMS, "ndims", "dimensions"},
    {F_STRLEN, "strlen", "truncated"}, {F_MISALIGN, "misaligned", "alignment"}, {F_OUTSIDE, "outside", "outside"},
    {F_TYPE, "type", "unknown ggml type 77"}, {F_VTYPE, "value type", "unknown value type"},
    {F_ALIGN, "alignment", "power of two"}, {F_DUPNAME, "dup name", "appears twice"},
    {F_DUPKEY, "dup key", "appears twice"}, {F_OVERLAP, "overlap", "overlap"}, {F_Q8ROW, "q8 row", "block"},
    {F_NESTED, "nested", "array of array"}, {F_ARRLEN, "array length", "cannot fit"}, {F_BOOL, "bool", "bool"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    build(&m, cases[i].f);
    expect_fail(&m, cases[i].label, cases[i].want);
  }
  /* file paths: missing file, empty file, a truncated file on disk, model source on a
   * vocab-only style file without architecture keys */
  char path[4096];
  snprintf(path, sizeof path, "%s/bad_gguf_%d.gguf", tst_tmp_dir(), (int)getpid());
  CHECK(eng_gguf_open(&g, "/nonexistent/x.gguf", err, sizeof err) == -1 && strstr(err, "cannot open"));
  FILE *f = fopen(path, "wb");
  REQUIRE(f);
  fclose(f);
  CHECK(eng_gguf_open(&g, path, err, sizeof err) == -1 && strstr(err, "truncated"));
  build(&m, F_NONE);
  f = fopen(path, "wb");
  REQUIRE(f && fwrite(m.b, 1, m.n - 40, f) == m.n - 40);
  fclose(f);
  CHECK(eng_gguf_open(&g, path, err, sizeof err) == -1 && !strchr(err, '\n'));
  f = fopen(path, "wb");
  REQUIRE(f && fwrite(m.b, 1, m.n, f) == m.n);
  fclose(f);
  eng_st_set set;
  char *cfg = NULL;
  rc = eng_gguf_model_source(path, &set, &cfg, err, sizeof err);
  CHECKF(rc == -1 && strstr(err, "missing metadata key"), "model source of a file without sizes: rc %d '%s'", rc, err);
  CHECK(cfg == NULL);
  remove(path);
  return tst_done();
}
