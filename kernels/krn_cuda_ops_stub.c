/* krn_cuda_ops_stub.c — the krn_cuda_ops.h entry points of a build without nvcc: each
 * returns -1 with "built without CUDA", so engine/eng_cuda.c compiles and fails cleanly
 * everywhere. The host BF16 conversions are plain C and live here in every build. */
#include "kernels/krn_cuda_ops.h"

#include <string.h>

uint16_t krn_f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u);   /* round to nearest even */
  return (uint16_t)(u >> 16);
}

float krn_bf16_to_f32(uint16_t b) {
  uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

#ifndef MOESCOPE_HAVE_CUDA
#define NO_CUDA return -1
static const char no_cuda[] = "built without CUDA (configure with -DMOESCOPE_CUDA=ON on a machine with nvcc)";

const char *krn_cuda_last_error(void) { return no_cuda; }
int krn_cuda_ctx_create(krn_cuda_ctx **out, int device, size_t scratch_elems) {
  (void)device; (void)scratch_elems;
  *out = NULL;
  NO_CUDA;
}
void krn_cuda_ctx_destroy(krn_cuda_ctx *c) { (void)c; }
int krn_cuda_sync(krn_cuda_ctx *c) { (void)c; NO_CUDA; }
int krn_cuda_device_info(int device, char *name, size_t namelen, size_t *total_mem, double *peak_bw) {
  (void)device; (void)total_mem; (void)peak_bw;
  if (name && namelen) name[0] = 0;
  NO_CUDA;
}
int krn_cuda_malloc(void **p, size_t bytes) { (void)bytes; *p = NULL; NO_CUDA; }
void krn_cuda_free(void *p) { (void)p; }
int krn_cuda_host_alloc(void **p, size_t bytes) { (void)bytes; *p = NULL; NO_CUDA; }
void krn_cuda_host_free(void *p) { (void)p; }
int krn_cuda_h2d(krn_cuda_ctx *c, void *dst, const void *src, size_t bytes) { (void)c; (void)dst; (void)src; (void)bytes; NO_CUDA; }
int krn_cuda_d2h(krn_cuda_ctx *c, void *dst, const void *src, size_t bytes) { (void)c; (void)dst; (void)src; (void)bytes; NO_CUDA; }
int krn_cuda_d2d(krn_cuda_ctx *c, void *dst, const void *src, size_t bytes) { (void)c; (void)dst; (void)src; (void)bytes; NO_CUDA; }
int krn_cuda_memset(krn_cuda_ctx *c, void *dst, int value, size_t bytes) { (void)c; (void)dst; (void)value; (void)bytes; NO_CUDA; }
int krn_cuda_event_create(void **ev) { *ev = NULL; NO_CUDA; }
void krn_cuda_event_destroy(void *ev) { (void)ev; }
int krn_cuda_event_record(krn_cuda_ctx *c, void *ev) { (void)c; (void)ev; NO_CUDA; }
int krn_cuda_event_elapsed_ms(void *ev0, void *ev1, float *ms) { (void)ev0; (void)ev1; *ms = 0; NO_CUDA; }
int krn_cuda_embed(krn_cuda_ctx *c, float *x, const uint16_t *emb, const int *ids, int n, int dim) {
  (void)c; (void)x; (void)emb; (void)ids; (void)n; (void)dim; NO_CUDA;
}
int krn_cuda_rmsnorm(krn_cuda_ctx *c, float *y, const float *x, const float *w, int n, int dim, float eps) {
  (void)c; (void)y; (void)x; (void)w; (void)n; (void)dim; (void)eps; NO_CUDA;
}
int krn_cuda_rmsnorm_strided(krn_cuda_ctx *c, float *y, int y_stride, const float *x, int x_stride, const float *w,
                             int n, int dim, float eps) {
  (void)c; (void)y; (void)y_stride; (void)x; (void)x_stride; (void)w; (void)n; (void)dim; (void)eps; NO_CUDA;
}
int krn_cuda_rope_cs(krn_cuda_ctx *c, float *x, int n, int n_heads, int row_stride, int head_stride, int rot_dim,
                     const float *cs, const float *sn, int interleaved) {
  (void)c; (void)x; (void)n; (void)n_heads; (void)row_stride; (void)head_stride; (void)rot_dim; (void)cs; (void)sn;
  (void)interleaved; NO_CUDA;
}
int krn_cuda_attention(krn_cuda_ctx *c, float *out, const float *q, const float *kc, const float *vc, int n,
                       int start, int n_heads, int n_kv, int qk_dim, int v_dim, float scale, int window,
                       const float *sinks, int kind) {
  (void)c; (void)out; (void)q; (void)kc; (void)vc; (void)n; (void)start; (void)n_heads; (void)n_kv; (void)qk_dim;
  (void)v_dim; (void)scale; (void)window; (void)sinks; (void)kind; NO_CUDA;
}
int krn_cuda_add_bias(krn_cuda_ctx *c, float *y, const float *bias, int n, int dim) {
  (void)c; (void)y; (void)bias; (void)n; (void)dim; NO_CUDA;
}
int krn_cuda_clamp(krn_cuda_ctx *c, float *x, size_t count, float lim) { (void)c; (void)x; (void)count; (void)lim; NO_CUDA; }
int krn_cuda_add_rows(krn_cuda_ctx *c, float *x, const float *y, const float *s, int n, int dim) {
  (void)c; (void)x; (void)y; (void)s; (void)n; (void)dim; NO_CUDA;
}
int krn_cuda_rowdot_sigmoid(krn_cuda_ctx *c, float *s, const float *h, const float *w, int n, int dim) {
  (void)c; (void)s; (void)h; (void)w; (void)n; (void)dim; NO_CUDA;
}
int krn_cuda_swiglu(krn_cuda_ctx *c, float *h, const float *gu, int rows, const int *rows_dev, int inter) {
  (void)c; (void)h; (void)gu; (void)rows; (void)rows_dev; (void)inter; NO_CUDA;
}
int krn_cuda_swiglu_oai(krn_cuda_ctx *c, float *h, const float *gu, int rows, const int *rows_dev, int inter,
                        float alpha, float limit) {
  (void)c; (void)h; (void)gu; (void)rows; (void)rows_dev; (void)inter; (void)alpha; (void)limit; NO_CUDA;
}
int krn_cuda_mla_kv(krn_cuda_ctx *c, float *kc, float *vc, const float *kvb, const float *kva, int n, int nh, int nope,
                    int rd, int vh, int kvr) {
  (void)c; (void)kc; (void)vc; (void)kvb; (void)kva; (void)n; (void)nh; (void)nope; (void)rd; (void)vh; (void)kvr;
  NO_CUDA;
}
int krn_cuda_linear(krn_cuda_ctx *c, float *y, const float *x, const uint16_t *w, const float *bias, int rows,
                    int in, int out, int mode) {
  (void)c; (void)y; (void)x; (void)w; (void)bias; (void)rows; (void)in; (void)out; (void)mode; NO_CUDA;
}
int krn_cuda_linear_f32w(krn_cuda_ctx *c, float *y, const float *x, const float *w, const float *bias, int rows,
                         int in, int out) {
  (void)c; (void)y; (void)x; (void)w; (void)bias; (void)rows; (void)in; (void)out; NO_CUDA;
}
int krn_cuda_grouped_linear(krn_cuda_ctx *c, float *y, const float *x, const uint16_t *w, size_t w_stride,
                            const float *bias, const int *offsets, const int *row_exp, int n_groups,
                            int max_rows, int in, int out, int mode) {
  (void)c; (void)y; (void)x; (void)w; (void)w_stride; (void)bias; (void)offsets; (void)row_exp; (void)n_groups;
  (void)max_rows; (void)in; (void)out; (void)mode; NO_CUDA;
}
int krn_cuda_grouped_linear_tc(krn_cuda_ctx *c, float *y, const float *x, uint16_t *xbf, const uint16_t *w,
                               size_t w_stride, const float *bias, const int *h_offsets, int n_groups, int in,
                               int out, int mode) {
  (void)c; (void)y; (void)x; (void)xbf; (void)w; (void)w_stride; (void)bias; (void)h_offsets; (void)n_groups;
  (void)in; (void)out; (void)mode; NO_CUDA;
}
int krn_cuda_route(krn_cuda_ctx *c, const krn_cuda_router *r, const float *logits, const float *sel_bias, int n,
                   float *probs, int *experts, float *weights, float *scratch) {
  (void)c; (void)r; (void)logits; (void)sel_bias; (void)n; (void)probs; (void)experts; (void)weights; (void)scratch;
  NO_CUDA;
}
int krn_cuda_moe_permute(krn_cuda_ctx *c, const int *experts, int n, int k, int n_experts, int *counts,
                         int *offsets, int *row_tok, int *row_exp, int *slot_row) {
  (void)c; (void)experts; (void)n; (void)k; (void)n_experts; (void)counts; (void)offsets; (void)row_tok; (void)row_exp;
  (void)slot_row; NO_CUDA;
}
int krn_cuda_gather_rows(krn_cuda_ctx *c, float *dst, const float *src, const int *row_tok, const int *total,
                         int max_rows, int dim) {
  (void)c; (void)dst; (void)src; (void)row_tok; (void)total; (void)max_rows; (void)dim; NO_CUDA;
}
int krn_cuda_moe_combine(krn_cuda_ctx *c, float *x, const float *y, const int *slot_row, const float *weights,
                         int n, int k, int dim) {
  (void)c; (void)x; (void)y; (void)slot_row; (void)weights; (void)n; (void)k; (void)dim; NO_CUDA;
}
int krn_cuda_argmax(krn_cuda_ctx *c, int *out, const float *logits, int n, int vocab) {
  (void)c; (void)out; (void)logits; (void)n; (void)vocab; NO_CUDA;
}
int krn_cuda_sample(krn_cuda_ctx *c, int *out, const float *logits, int vocab, float temperature, float r) {
  (void)c; (void)out; (void)logits; (void)vocab; (void)temperature; (void)r; NO_CUDA;
}
#endif
