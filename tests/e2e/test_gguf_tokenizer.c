/* test_gguf_tokenizer.c — the tokenizer of a model given as a GGUF file (eng_tok_load_model,
 * `moescope run/info --model X.gguf`):
 *  - models/tiny-mixtral (byte-level BPE tokenizer.json) converted with `moescope convert
 *    --to gguf --type f32` into an empty folder (no tokenizer.json beside it): the embedded
 *    vocabulary encodes the texts to the same ids as the model's tokenizer.json, and
 *    `run --prompt TEXT --dump-logits` gives byte-identical logits from the folder and from
 *    the GGUF; `info X.gguf` names the embedded tokenizer;
 *  - a GGUF converted from a folder without tokenizer.json has no tokenizer.ggml.* vocabulary:
 *    `run --prompt` fails with one clear line, `run --ids` still works, and once a
 *    tokenizer.json (+ config) is put beside the file, `run --prompt` uses it (same logits);
 *  - tests/fixtures/tokenizer_spm (SentencePiece-style tokenizer.json) in a model folder,
 *    converted: the embedded "llama" vocabulary encodes the fixture texts as the json does
 *    (the texts where HF Metaspace and llama.cpp semantics differ are printed, not asserted).
 * Needs the moescope binary ($MOESCOPE_BIN); skips (77) without it. */
#include "engine/eng_tokenizer.h"
#include "tests/tst.h"
#include "tests/util/tst_run.h"

#include <sys/stat.h>

static char tmp[2048], src_model[2048];

static long file_size(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

/* 1 when both files exist and hold the same bytes */
static int same_file(const char *a, const char *b) {
  FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
  int same = fa && fb && file_size(a) == file_size(b) && file_size(a) > 128;
  char x[65536], y[65536];
  while (same) {
    size_t na = fread(x, 1, sizeof x, fa), nb = fread(y, 1, sizeof y, fb);
    if (na != nb || memcmp(x, y, na)) same = 0;
    if (na == 0) break;
  }
  if (fa) fclose(fa);
  if (fb) fclose(fb);
  return same;
}

static void encode_same(const eng_tokenizer *a, const eng_tokenizer *b, const char *text, const char *what) {
  int *x = NULL, *y = NULL;
  size_t nx = 0, ny = 0;
  char err[256] = "";
  REQUIRE(eng_tok_encode(a, text, strlen(text), &x, &nx, err, sizeof err) == 0);
  int rc = eng_tok_encode(b, text, strlen(text), &y, &ny, err, sizeof err);
  CHECKF(rc == 0, "%s: %s", what, err);
  CHECKF(rc == 0 && nx == ny && !memcmp(x, y, nx * sizeof *x), "%s: \"%s\" encodes differently (%zu vs %zu ids)", what,
         text, nx, ny);
  free(x);
  free(y);
}

/* Folder d with config.json and model.safetensors of the shipped model (symlinks). */
static void model_dir_without_tokenizer(const char *d) {
  char a[4096], b[4096];
  REQUIRE(mkdir(d, 0755) == 0);
  snprintf(a, sizeof a, "%s/config.json", src_model);
  snprintf(b, sizeof b, "%s/config.json", d);
  REQUIRE(symlink(a, b) == 0);
  snprintf(a, sizeof a, "%s/model.safetensors", src_model);
  snprintf(b, sizeof b, "%s/model.safetensors", d);
  REQUIRE(symlink(a, b) == 0);
}

static const char *const texts[] = {
    "The village sat by the river, and every morning the baker opened his shop.",
    "  two  spaces\tand tabs\n\nnew lines 12345 caf\xc3\xa9 na\xc3\xafve <|endoftext|> after",
    "def f(x):\n    return x**2  # code"};

int main(void) {
  if (strchr(tst_bin(), '/') && access(tst_bin(), X_OK)) {
    fprintf(stderr, "SKIP: %s not built\n", tst_bin());
    return 77;
  }
  tst_path(src_model, sizeof src_model, "MOESCOPE_SRC", "models/tiny-mixtral");
  snprintf(tmp, sizeof tmp, "%s/gguf_tok_%d", tst_tmp(), (int)getpid());
  REQUIRE(mkdir(tmp, 0755) == 0);
  char gguf[4096], a[8192], b[8192], err[1024] = "", srcdesc[4200];
  tst_out o;

  /* 1. byte-level BPE: folder vs GGUF (embedded vocabulary, nothing beside the file) */
  snprintf(gguf, sizeof gguf, "%s/x.gguf", tmp);
  int st = tst_sh(&o, "'%s' convert --model '%s' --to gguf --type f32 -o '%s'", tst_bin(), src_model, gguf);
  REQUIRE(st == 0 || (fprintf(stderr, "convert: %s\n", o.err), 0));
  snprintf(a, sizeof a, "%s/tokenizer.json", tmp);
  CHECK(access(a, F_OK) != 0);
  eng_tokenizer *tj = NULL, *tg = NULL;
  REQUIRE(eng_tok_load_model(&tj, src_model, srcdesc, sizeof srcdesc, err, sizeof err) == 0);
  CHECK(strstr(srcdesc, "tiny-mixtral/tokenizer.json") != NULL);
  int rc = eng_tok_load_model(&tg, gguf, srcdesc, sizeof srcdesc, err, sizeof err);
  CHECKF(rc == 0, "%s", err);
  if (rc == 0) {
    CHECKF(strstr(srcdesc, "x.gguf (embedded)") != NULL, "%s", srcdesc);
    CHECK(eng_tok_kind(tg) == ENG_TOK_BYTE_BPE && eng_tok_kind(tj) == ENG_TOK_BYTE_BPE);
    CHECK(eng_tok_bos(tg) == eng_tok_bos(tj) && eng_tok_eos(tg) == eng_tok_eos(tj) && eng_tok_eos(tj) >= 0);
    for (int i = 0; i < 3; i++) encode_same(tj, tg, texts[i], "tiny-mixtral GGUF");
    eng_tok_free(tg);
  }
  for (int i = 0; i < 3; i++) {
    char npa[4200], npb[4200];
    snprintf(npa, sizeof npa, "%s/dir%d.npy", tmp, i);
    snprintf(npb, sizeof npb, "%s/gguf%d.npy", tmp, i);
    /* the texts hold no single quote; shell-quote them as they are */
    st = tst_sh(&o, "'%s' run --model '%s' --prompt '%s' --dump-logits '%s' --record off --quiet --db '%s/a.db'", tst_bin(),
                src_model, texts[i], npa, tmp);
    CHECKF(st == 0, "run (folder): %s", o.err);
    st = tst_sh(&o, "'%s' run --model '%s' --prompt '%s' --dump-logits '%s' --record off --quiet --db '%s/b.db'", tst_bin(),
                gguf, texts[i], npb, tmp);
    CHECKF(st == 0, "run (gguf): %s", o.err);
    /* same token count (npy shape [tokens, vocab]) and byte-identical logits */
    int *ids = NULL;
    size_t n = 0;
    REQUIRE(eng_tok_encode(tj, texts[i], strlen(texts[i]), &ids, &n, NULL, 0) == 0);
    CHECKF(file_size(npa) > 0 && file_size(npb) == file_size(npa) && file_size(npa) >= (long)(n * 8192 * 4),
           "text %d: npy sizes %ld / %ld for %zu tokens", i, file_size(npa), file_size(npb), n);
    CHECKF(same_file(npa, npb), "text %d: logits from the GGUF differ from the folder's", i);
    free(ids);
  }
  st = tst_sh(&o, "'%s' info '%s'", tst_bin(), gguf);
  CHECKF(st == 0 && strstr(o.out, "tokenizer    byte-level BPE, 8192 ids") && strstr(o.out, "(embedded)"),
         "info: %s%s", o.out, o.err);
  st = tst_sh(&o, "'%s' info '%s'", tst_bin(), src_model);
  CHECKF(st == 0 && strstr(o.out, "tokenizer    byte-level BPE, 8192 ids, normalizer none") &&
         strstr(o.out, "tokenizer.json"), "info: %s%s", o.out, o.err);

  /* 2. a GGUF without an embedded vocabulary */
  char nodir[4200], gdir[4200], gguf2[4400];
  snprintf(nodir, sizeof nodir, "%s/notok", tmp);
  snprintf(gdir, sizeof gdir, "%s/g2", tmp);
  model_dir_without_tokenizer(nodir);
  REQUIRE(mkdir(gdir, 0755) == 0);
  snprintf(gguf2, sizeof gguf2, "%s/y.gguf", gdir);
  st = tst_sh(&o, "'%s' convert --model '%s' --to gguf --type f32 -o '%s'", tst_bin(), nodir, gguf2);
  REQUIRE(st == 0 || (fprintf(stderr, "convert: %s\n", o.err), 0));
  tg = NULL;
  rc = eng_tok_load_gguf(&tg, gguf2, err, sizeof err);
  CHECKF(rc == -2 && tg == NULL && strstr(err, "no embedded tokenizer"), "rc %d: %s", rc, err);
  rc = eng_tok_load_model(&tg, gguf2, NULL, 0, err, sizeof err);
  CHECKF(rc == -1 && strstr(err, "y.gguf: no embedded tokenizer") && strstr(err, "g2/tokenizer.json"), "%s", err);
  st = tst_sh(&o, "'%s' run --model '%s' --prompt 'hello there' --record off --quiet --db '%s/c.db'", tst_bin(), gguf2, tmp);
  CHECKF(st != 0 && tst_count_lines(o.err) == 1 && strstr(o.err, "no embedded tokenizer"), "status %d: %s", st, o.err);
  st = tst_sh(&o, "'%s' run --model '%s' --ids 22,25,29,38 --record off --quiet --db '%s/c.db'", tst_bin(), gguf2, tmp);
  CHECKF(st == 0, "run --ids without a tokenizer: %s", o.err);
  snprintf(a, sizeof a, "%s/tokenizer.json", src_model);
  snprintf(b, sizeof b, "%s/tokenizer.json", gdir);
  REQUIRE(symlink(a, b) == 0);
  snprintf(a, sizeof a, "%s/tokenizer_config.json", src_model);
  snprintf(b, sizeof b, "%s/tokenizer_config.json", gdir);
  REQUIRE(symlink(a, b) == 0);
  rc = eng_tok_load_model(&tg, gguf2, srcdesc, sizeof srcdesc, err, sizeof err);
  CHECKF(rc == 0 && strstr(srcdesc, "g2/tokenizer.json"), "%s / %s", err, srcdesc);
  if (rc == 0) {
    CHECK(eng_tok_eos(tg) == eng_tok_eos(tj));
    encode_same(tj, tg, texts[1], "tokenizer.json beside the GGUF");
    eng_tok_free(tg);
  }
  {
    char npa[4200], npc[4200];
    snprintf(npa, sizeof npa, "%s/dir0.npy", tmp);
    snprintf(npc, sizeof npc, "%s/beside0.npy", tmp);
    st = tst_sh(&o, "'%s' run --model '%s' --prompt '%s' --dump-logits '%s' --record off --quiet --db '%s/c.db'", tst_bin(),
                gguf2, texts[0], npc, tmp);
    CHECKF(st == 0, "run (gguf + tokenizer.json beside): %s", o.err);
    CHECKF(same_file(npa, npc), "logits with the tokenizer.json beside the GGUF differ from the folder's");
  }
  eng_tok_free(tj);

  /* 3. SentencePiece-style tokenizer.json, converted */
  char spdir[4200], gguf3[4400], sp[4096];
  snprintf(spdir, sizeof spdir, "%s/spm", tmp);
  model_dir_without_tokenizer(spdir);
  tst_path(sp, sizeof sp, "MOESCOPE_SRC", "tests/fixtures/tokenizer_spm/tokenizer.json");
  snprintf(b, sizeof b, "%s/tokenizer.json", spdir);
  REQUIRE(symlink(sp, b) == 0);
  snprintf(gguf3, sizeof gguf3, "%s/z.gguf", gdir);
  st = tst_sh(&o, "'%s' convert --model '%s' --to gguf --type f32 -o '%s'", tst_bin(), spdir, gguf3);
  CHECKF(st == 0, "convert (spm): %s", o.err);
  eng_tokenizer *sj = NULL, *sg = NULL;
  REQUIRE(eng_tok_load(&sj, sp, NULL, err, sizeof err) == 0);
  rc = st == 0 ? eng_tok_load_gguf(&sg, gguf3, err, sizeof err) : -1;
  CHECKF(rc == 0, "%s", err);
  if (rc == 0) {
    CHECK(eng_tok_kind(sg) == ENG_TOK_SPM);
    /* the README's vectors that do not start with a space or hold a control token */
    static const char *const same[] = {"ab", "ab c", "\xc3\xa9", "abc", "ab ab", "cab a", "a\xe2\x82\xac"};
    for (size_t i = 0; i < sizeof same / sizeof *same; i++) encode_same(sj, sg, same[i], "SPM GGUF");
    static const int want[] = {265, 259, 262}; /* "ab c" -> ▁ab ▁ c (README) */
    int *ids = NULL;
    size_t n = 0;
    CHECK(eng_tok_encode(sg, "ab c", 4, &ids, &n, NULL, 0) == 0 && n == 3 && !memcmp(ids, want, sizeof want));
    free(ids);
    /* HF Metaspace prepend_scheme "first" vs llama.cpp's add_space_prefix; "<s>" parsed as text */
    static const char *const differ[] = {" ab ab", "<s>ab"};
    for (int i = 0; i < 2; i++) {
      int *x = NULL, *y = NULL;
      size_t nx = 0, ny = 0;
      REQUIRE(eng_tok_encode(sj, differ[i], strlen(differ[i]), &x, &nx, NULL, 0) == 0);
      REQUIRE(eng_tok_encode(sg, differ[i], strlen(differ[i]), &y, &ny, NULL, 0) == 0);
      printf("SPM \"%s\": json %zu ids, gguf %zu ids%s\n", differ[i], nx, ny,
             nx == ny && !memcmp(x, y, nx * sizeof *x) ? " (same)" : " (differ: GGUF keeps llama.cpp semantics)");
      free(x);
      free(y);
    }
    eng_tok_free(sg);
  }
  eng_tok_free(sj);
  tst_sh(&o, "rm -rf '%s'", tmp);
  return tst_done();
}
