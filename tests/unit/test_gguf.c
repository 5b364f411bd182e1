/* test_gguf.c — the GGUF reader on a real llama.cpp file and the ggml block quantizers:
 *  - ../shared/data/tokenizers/olmoe_gpt_neox_bpe/ggml-vocab-mpt.gguf (vocab-only, written
 *    by llama.cpp's gguf-py): version 3, architecture mpt, tokenizer.ggml.model gpt2, pre
 *    mpt, 50432 tokens, 50009 merges (its README), token types (0 and 1 control, 50276
 *    user-defined), no tensors; skipped when ../shared is absent;
 *  - Q8_0 / Q4_0 of known blocks against values worked by hand from ggml-quants.c
 *    (quantize_row_q8_0_ref, quantize_row_q4_0_ref) and their dequantisation;
 *  - eng_dtype_nbytes / eng_dtype_block for the block types. */
#include "engine/eng_gguf.h"
#include "tests/tst.h"

int main(void) {
  /* Q8_0: x_j = j - 16 (amax 16, d = 16/127), q_j = round((j-16)*127/16) */
  float x[64], y[64];
  uint8_t q[2 * 34];
  for (int j = 0; j < 32; j++) x[j] = (float)(j - 16);
  for (int j = 0; j < 32; j++) x[32 + j] = 0; /* an all-zero block: d = 0, q = 0 */
  eng_quant_q8_0(q, x, 64);
  uint16_t h;
  memcpy(&h, q, 2);
  CHECK_NEAR(eng_f16_to_f32(h), 16.0 / 127, 16.0 / 127 * ldexp(1, -11));
  CHECK((int8_t)q[2] == -127 && (int8_t)q[2 + 16] == 0 && (int8_t)q[2 + 31] == 119); /* 15*127/16 = 119.06 */
  CHECK((int8_t)q[2 + 8] == -64); /* -8*127/16 = -63.5 -> roundf away from zero */
  memcpy(&h, q + 34, 2);
  CHECK(h == 0 && q[34 + 2] == 0);
  REQUIRE(eng_dt_to_f32(y, q, ENG_DT_Q8_0, 64) == 0);
  double maxe = 0;
  for (int j = 0; j < 64; j++) maxe = fmax(maxe, fabs(x[j] - y[j]));
  CHECKF(maxe <= 16.0 / 127 * (0.5 + 127 * ldexp(1, -11)), "q8_0 error %g", maxe);
  CHECK(y[32] == 0 && y[63] == 0);
  /* Q4_0: max by magnitude keeps its sign: -16 -> d = 2, q = (int8)(x/2 + 8.5) clamped to 15 */
  uint8_t q4[18];
  eng_quant_q4_0(q4, x, 32);
  memcpy(&h, q4, 2);
  CHECK(eng_f16_to_f32(h) == 2.0f);
  CHECK((q4[2] & 15) == 0 && (q4[2] >> 4) == 8);        /* x0 = -16 -> 0; x16 = 0 -> 8 */
  CHECK((q4[2 + 15] >> 4) == 15);                        /* x31 = 15 -> 16 -> clamp 15 */
  REQUIRE(eng_dt_to_f32(y, q4, ENG_DT_Q4_0, 32) == 0);
  CHECK(y[0] == -16 && y[16] == 0 && y[31] == 14 && y[1] == -14); /* -15 -> (int8)(1.0) = 1 -> -14 */
  size_t bb;
  CHECK(eng_dtype_block(ENG_DT_Q8_0, &bb) == 32 && bb == 34);
  CHECK(eng_dtype_block(ENG_DT_Q4_0, &bb) == 32 && bb == 18);
  CHECK(eng_dtype_nbytes(ENG_DT_Q8_0, 64) == 68 && eng_dtype_nbytes(ENG_DT_Q8_0, 33) == 0);
  CHECK(eng_dtype_nbytes(ENG_DT_BF16, 3) == 6 && eng_dtype_is_float(ENG_DT_Q8_0) && !eng_dtype_is_float(ENG_DT_I32));
  CHECK(!strcmp(eng_dtype_name(ENG_DT_Q8_0), "Q8_0") && eng_ggml_to_dtype(GGML_T_Q8_0) == ENG_DT_Q8_0);

  const char *sh = tst_shared();
  char p[4096];
  if (!sh) { fprintf(stderr, "SKIP (shared part): MOESCOPE_SHARED not set\n"); return tst_done(); }
  snprintf(p, sizeof p, "%s/data/tokenizers/olmoe_gpt_neox_bpe/ggml-vocab-mpt.gguf", sh);
  if (access(p, R_OK)) { fprintf(stderr, "SKIP (shared part): %s absent\n", p); return tst_done(); }
  eng_gguf g;
  char err[512];
  REQUIRE(eng_gguf_open(&g, p, err, sizeof err) == 0 || (fprintf(stderr, "%s\n", err), 0));
  CHECK(g.version == 3 && g.n_tensors == 0 && g.alignment == 32);
  size_t n = 0;
  const char *s = eng_gguf_get_str(&g, "general.architecture", &n);
  CHECK(s && n == 3 && !memcmp(s, "mpt", 3));
  s = eng_gguf_get_str(&g, "tokenizer.ggml.model", &n);
  CHECK(s && n == 4 && !memcmp(s, "gpt2", 4));
  s = eng_gguf_get_str(&g, "tokenizer.ggml.pre", &n);
  CHECK(s && n == 3 && !memcmp(s, "mpt", 3));
  const eng_gguf_kv *tok = eng_gguf_find(&g, "tokenizer.ggml.tokens"), *mer = eng_gguf_find(&g, "tokenizer.ggml.merges");
  const eng_gguf_kv *ty = eng_gguf_find(&g, "tokenizer.ggml.token_type");
  REQUIRE(tok && mer && ty);
  CHECK(tok->n == 50432 && mer->n == 50009 && ty->n == 50432);
  s = eng_gguf_arr_str(tok, 0, &n);
  CHECK(s && n == 13 && !memcmp(s, "<|endoftext|>", 13));
  CHECK(eng_gguf_arr_int(ty, 0) == 3 && eng_gguf_arr_int(ty, 1) == 3 && eng_gguf_arr_int(ty, 50276) == 4 &&
        eng_gguf_arr_int(ty, 1000) == 1);
  s = eng_gguf_arr_str(mer, 0, &n);
  CHECK(s && n > 2 && memchr(s, ' ', n));
  printf("ggml-vocab-mpt.gguf: %llu kv, first merge '%.*s'\n", (unsigned long long)g.n_kv, (int)n, s);
  eng_gguf_close(&g);
  return tst_done();
}
