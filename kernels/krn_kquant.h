/* krn_kquant.h — ggml K-quant super-blocks (Q4_K, Q5_K, Q6_K): the exact scalar
 * dequantisation that krn_w_row_f32 uses for them (the definition; SIMD paths must give the
 * same float32 values), a scalar element accessor, and moescope's own quantizers (used by
 * `moescope convert --type q4_k|q5_k|q6_k`). Layouts are ggml's (ggml-common.h), 256
 * elements per super-block along a row:
 *  Q4_K (144 bytes): f16 d, f16 dmin, scales[12] (8 six-bit scales sc and 8 six-bit mins m,
 *    packed as get_scale_min_k4), qs[128]. Sub-block s (32 elements) of 64-chunk j = s/2:
 *    q = qs[32j + l] & 15 (s even) or >> 4 (s odd); value = (d*sc[s])*q - (dmin*m[s]).
 *  Q5_K (176 bytes): as Q4_K with qh[32] between scales and qs; q gains 16 * bit s of qh[l].
 *  Q6_K (210 bytes): ql[128], qh[64], int8 scales[16], f16 d. Element e of half h = e/128
 *    (r = e%128, k = r/32, l = r%32): low nibble of ql[64h + 32(k&1) + l] (k < 2) or its high
 *    nibble (k >= 2), plus bits 2k..2k+1 of qh[32h + l] << 4, minus 32; value =
 *    (d*scales[e/16])*q.
 * All products are single float32 operations in that order (no fused multiply-add), as in
 * ggml's dequantize_row_q*_K and gguf-py's numpy dequantizers. */
#ifndef MOESCOPE_KRN_KQUANT_H
#define MOESCOPE_KRN_KQUANT_H

#include <stddef.h>
#include <stdint.h>

#define KRN_QK_K 256

/* Bytes of one super-block of a K-quant dtype (KRN_DT_Q4_K ...), 0 for other types. */
size_t krn_kq_block_bytes(int dtype);
/* n elements (a multiple of 256) of K-quant data to float32. */
void krn_kq_dequant(int dtype, const uint8_t *src, int64_t n, float *dst);
/* Element i of a K-quant row starting at row (same value krn_kq_dequant gives). */
float krn_kq_at(int dtype, const uint8_t *row, int i);
/* Quantises n floats (a multiple of 256) to dtype (Q4_K, Q5_K or Q6_K) into dst.
 * Q4_K / Q5_K: each 32-value sub-block gets a step s and offset o <= 0 (value s*q + o) from
 * a few candidate grids over [min(0, min x), max x], shrunk by up to 30% and each refined
 * by a least-squares refit, keeping the smallest squared error; the super-block's f16 d and
 * dmin are the largest step / min over 63, and each six-bit scale / min is rounded down or
 * up, whichever fits its sub-block better; every value then takes its nearest grid point.
 * Q6_K: per 16-value sub-block the value of largest magnitude maps to -32 (ggml's
 * convention), int8 scales rounded up in magnitude relative to a signed f16 d (itself
 * rounded up), so each value errs by <= half a step, or <= one step for values opposite the
 * extreme (the grid runs -32..31). Deterministic; simpler than llama.cpp's weighted
 * searches (the bytes differ from llama-quantize's; any ggml reader decodes them). */
void krn_kq_quant(int dtype, void *dst, const float *x, int64_t n);

#endif
