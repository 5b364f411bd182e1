/* test_safetensors.c — the safetensors reader on files written by eng_st_write: values
 * of F32/BF16/F16 tensors come back exactly (BF16 widened by a 16-bit shift), a sharded
 * checkpoint (model.safetensors.index.json) is assembled, and hostile headers are
 * refused with an error naming the file and the tensor: offsets out of range, size not
 * matching the shape, overlapping tensors, unknown dtype, a tensor in two shards. */
#include "engine/eng_safetensors.h"
#include "engine/eng_st_write.h"
#include "tests/tst.h"

#include <sys/stat.h>

static char dir[2048];

static void write_raw(const char *name, const char *json, size_t data_bytes) {
  char p[4200];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  FILE *f = fopen(p, "wb");
  uint64_t n = strlen(json);
  fwrite(&n, 8, 1, f);
  fputs(json, f);
  for (size_t i = 0; i < data_bytes; i++) fputc(0, f);
  fclose(f);
}

static void expect_fail(const char *json, size_t data_bytes, const char *needle) {
  char err[512] = "", p[4200];
  write_raw("bad.safetensors", json, data_bytes);
  snprintf(p, sizeof p, "%s/bad.safetensors", dir);
  eng_st_set s;
  int rc = eng_st_open_file(&s, p, err, sizeof err);
  CHECKF(rc == -1, "accepted: %s", json);
  CHECKF(strstr(err, needle) != NULL && strstr(err, "bad.safetensors") != NULL, "error '%s' lacks '%s'", err, needle);
}

int main(void) {
  snprintf(dir, sizeof dir, "%s/st_test", tst_tmp_dir());
  mkdir(dir, 0755);
  char err[512], p[4200];
  /* valid file with three dtypes */
  float vals[6] = {1.0f, -2.5f, 3.140625f, 0.0f, 65504.0f, 1e-3f};
  eng_stw *w = eng_stw_new();
  int64_t sh[2] = {2, 3};
  REQUIRE(eng_stw_add(w, "a.f32", ENG_STW_F32, 2, sh, vals, err, sizeof err) == 0);
  REQUIRE(eng_stw_add(w, "b.bf16", ENG_STW_BF16, 2, sh, vals, err, sizeof err) == 0);
  REQUIRE(eng_stw_add(w, "c.f16", ENG_STW_F16, 2, sh, vals, err, sizeof err) == 0);
  REQUIRE(eng_stw_write_dir(w, dir, err, sizeof err) == 0);
  eng_stw_free(w);
  eng_st_set s;
  REQUIRE(eng_st_open_dir(&s, dir, err, sizeof err) == 0);
  CHECK(s.n_tensors == 3);
  const eng_st_tensor *t = eng_st_find(&s, "b.bf16");
  REQUIRE(t);
  CHECK(t->dtype == ENG_DT_BF16 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3 && eng_st_numel(t) == 6);
  float out[6];
  eng_st_to_f32(out, eng_st_find(&s, "a.f32"));
  for (int i = 0; i < 6; i++) CHECK(out[i] == vals[i]);
  eng_st_to_f32(out, t);
  for (int i = 0; i < 6; i++) CHECK(out[i] == eng_stw_bf16_to_f32(eng_stw_f32_to_bf16(vals[i])));
  CHECK(out[0] == 1.0f && out[1] == -2.5f && out[2] == 3.140625f);
  eng_st_to_f32(out, eng_st_find(&s, "c.f16"));
  CHECK(out[4] == 65504.0f && out[1] == -2.5f);
  CHECK_NEAR(out[5], 1e-3, 1e-6);
  CHECK(eng_st_find(&s, "zzz") == NULL);
  eng_st_close(&s);
  CHECK(eng_bf16_to_f32(0x3f80) == 1.0f);
  CHECK(eng_f16_to_f32(0x0001) == 5.9604644775390625e-08f); /* smallest subnormal */
  CHECK(eng_f16_to_f32(0xfc00) == -INFINITY);

  /* sharded: two files + index */
  {
    char sd[2200];
    snprintf(sd, sizeof sd, "%s/sharded", dir);
    mkdir(sd, 0755);
    int64_t s1[1] = {3};
    float v1[3] = {1, 2, 3}, v2[3] = {4, 5, 6};
    eng_stw *a = eng_stw_new(), *b = eng_stw_new();
    eng_stw_add(a, "x", ENG_STW_F32, 1, s1, v1, err, sizeof err);
    eng_stw_add(b, "y", ENG_STW_F32, 1, s1, v2, err, sizeof err);
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", sd);
    REQUIRE(eng_stw_write_path(a, p, err, sizeof err) == 0);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", sd);
    REQUIRE(eng_stw_write_path(b, p, err, sizeof err) == 0);
    eng_stw_free(a); eng_stw_free(b);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", sd);
    FILE *f = fopen(p, "w");
    fputs("{\"metadata\":{},\"weight_map\":{\"x\":\"model-00001-of-00002.safetensors\","
          "\"y\":\"model-00002-of-00002.safetensors\"}}", f);
    fclose(f);
    REQUIRE(eng_st_open_dir(&s, sd, err, sizeof err) == 0);
    CHECK(s.n_files == 2 && s.n_tensors == 2);
    eng_st_to_f32(out, eng_st_find(&s, "y"));
    CHECK(out[0] == 4 && out[2] == 6);
    eng_st_close(&s);
    f = fopen(p, "w");
    fputs("{\"weight_map\":{\"x\":\"model-00001-of-00002.safetensors\",\"z\":\"model-00002-of-00002.safetensors\"}}", f);
    fclose(f);
    CHECK(eng_st_open_dir(&s, sd, err, sizeof err) == -1 && strstr(err, "'z'"));
    f = fopen(p, "w");
    fputs("{\"weight_map\":{\"x\":\"../etc/passwd\"}}", f);
    fclose(f);
    CHECK(eng_st_open_dir(&s, sd, err, sizeof err) == -1 && strstr(err, "plain file name"));
  }
  /* hostile headers */
  expect_fail("{\"t\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "'t'");
  expect_fail("{\"t\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,12]}}", 16, "expected 16");
  expect_fail("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"u\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 16, "overlap");
  expect_fail("{\"t\":{\"dtype\":\"F8_E9M9\",\"shape\":[2],\"data_offsets\":[0,2]}}", 8, "F8_E9M9");
  expect_fail("{\"t\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 8, "shape");
  expect_fail("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, "'t'");
  expect_fail("{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", 8, "data_offsets");
  expect_fail("{\"t\":[1,2]}", 8, "'t'");
  expect_fail("not json at all", 8, "JSON");
  /* header length beyond the file */
  snprintf(p, sizeof p, "%s/bad.safetensors", dir);
  FILE *f = fopen(p, "wb");
  uint64_t huge = 1u << 30;
  fwrite(&huge, 8, 1, f);
  fputs("{}", f);
  fclose(f);
  CHECK(eng_st_open_file(&s, p, err, sizeof err) == -1 && strstr(err, "exceeds the file size"));
  f = fopen(p, "wb");
  fputs("abc", f);
  fclose(f);
  CHECK(eng_st_open_file(&s, p, err, sizeof err) == -1 && strstr(err, "truncated"));
  snprintf(p, sizeof p, "%s/none", dir);
  CHECK(eng_st_open_dir(&s, p, err, sizeof err) == -1 && strstr(err, p));
  return tst_done();
}
