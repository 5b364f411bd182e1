/* eng_gguf_write.c — `moescope convert`: a Hugging Face model folder -> GGUF v3 with
 * llama.cpp's conventions (contract: eng_gguf_convert in eng_gguf.h).
 *
 * Names: token_embd / output_norm / output, blk.N.{attn_norm, attn_q/k/v/output,
 * ffn_norm, ffn_gate_inp, ffn_{gate,up,down}_exps (experts stacked into one 3-D tensor,
 * ne = [cols, rows, E]), *_shexp, exp_probs_b}. Mixtral is written as llama.cpp does:
 * general.architecture "llama" with llama.expert_count, Q/K rows permuted to ggml's
 * interleaved RoPE order (convert_hf_to_gguf.py LlamaModel.permute). gpt-oss as llama.cpp's
 * GptOssModel (general.architecture "gpt-oss"): the packed gate_up_proj [E,H,2I] (x @ W,
 * gate/up interleaved by column) split and transposed into ffn_gate_exps / ffn_up_exps
 * [E,I,H] with ffn_{gate,up}_exps.bias, down_proj [E,I,H] transposed into ffn_down_exps,
 * mlp.router -> ffn_gate_inp(.bias), self_attn.sinks -> attn_sinks.weight,
 * post_attention_layernorm -> post_attention_norm. DeepSeek kv_b_proj optionally as newer
 * llama.cpp's attn_k_b + attn_v_b (ENG_GGUF_CONVERT_SPLIT_KV_B). Metadata: eng_gguf_meta.c
 * (plus moescope.hf_config = config.json unless ENG_GGUF_CONVERT_NO_HF_CONFIG). Types: 1-D
 * tensors, every *.bias, *_norm.weight and the routers (ffn_gate_inp, ffn_gate_inp_shexp)
 * stay F32; the rest takes
 * the requested type (Q8_0/Q4_0 quantised exactly as ggml's reference quantizers; a row
 * length not a multiple of 32 falls back to F16, as llama.cpp does; Q4_K/Q5_K/Q6_K use
 * moescope's own quantizer (krn_kq_quant, kernels/krn_kquant.h: a small grid search with
 * least-squares refit per sub-block, simpler than llama.cpp's, so the bytes differ from
 * llama-quantize's) for rows a multiple of 256, fall back to Q8_0 for rows a multiple of
 * 32 only, else to F16).
 * Tokenizer (eng_gguf_meta.c): tokenizer.json byte-level BPE -> tokenizer.ggml.model "gpt2" (tokens,
 * token_type, merges); SentencePiece-style BPE (byte_fallback) -> "llama" (tokens, scores
 * = -merge rank, token_type); bos/eos ids from tokenizer_config.json or config.json.
 * One tensor is converted at a time; the file is written to <out>.tmp.<pid>, fsync'ed and
 * renamed into place. */
#include "engine/eng_util.h"
#include "engine/eng_gguf.h"
#include "engine/eng_gguf_names.h"
#include "engine/eng_gguf_write_int.h"
#include "engine/eng_model.h"
#include "engine/eng_st_write.h"
#include "kernels/krn_backend.h"
#include "kernels/krn_kquant.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ALIGN 32

/* ---- output tensors ---------------------------------------------------------------------- */

/* PLAIN: one HF tensor as is; STACK: E per-expert 2-D tensors; PACKED: rows [r0, r0+rows) of
 * each expert of a [E, R, C] tensor; the rest rearrange one whole HF tensor (relayout):
 * OAI_GU / OAI_GUB: gpt-oss gate_up_proj [E,H,2I] -> [E,I,H] / gate_up_proj_bias [E,2I] ->
 * [E,I], columns par, par+2, ...; T3: [E,R,C] -> [E,C,R]; KB / VB: DeepSeek kv_b_proj ->
 * attn_k_b [n_head, kv_lora, nope] / attn_v_b [n_head, v, kv_lora]. */
enum { SRC_PLAIN, SRC_STACK, SRC_PACKED, SRC_OAI_GU, SRC_OAI_GUB, SRC_T3, SRC_KB, SRC_VB };

typedef struct {
  char name[128];
  int ggml_type, n_dims;
  int64_t ne[4];
  int kind;
  const eng_st_tensor *src;        /* PLAIN, PACKED */
  const eng_st_tensor **exp;       /* STACK: E pointers */
  int64_t n_exp, r0, rows;         /* PACKED: rows [r0, r0+rows) of each expert */
  int64_t permute_heads;           /* > 0: llama.cpp Q/K permutation */
  int par;                         /* OAI_GU/OAI_GUB: 0 gate (even columns), 1 up (odd) */
  int64_t nope, vdim;              /* KB/VB: per-head K (no RoPE) and V widths */
  size_t nbytes;
  uint64_t offset;
} out_tensor;

typedef struct {
  out_tensor *t;
  int n, cap;
  int out_type;
  const char *arch;
  const eng_config *c;
  int flags;                       /* ENG_GGUF_CONVERT_* */
} plan;

static out_tensor *plan_add(plan *p, const char *name) {
  if (p->n == p->cap) {
    int cap = p->cap ? p->cap * 2 : 64;
    out_tensor *t = realloc(p->t, sizeof *t * (size_t)cap);
    if (!t) return NULL;
    p->t = t;
    p->cap = cap;
  }
  out_tensor *o = &p->t[p->n++];
  memset(o, 0, sizeof *o);
  snprintf(o->name, sizeof o->name, "%s", name);
  return o;
}

static int64_t numel(const out_tensor *o) {
  int64_t n = 1;
  for (int i = 0; i < o->n_dims; i++) n *= o->ne[i];
  return n;
}

/* Chooses the ggml type as llama.cpp's converter does and sizes the tensor. */
static void choose_type(plan *p, out_tensor *o) {
  size_t len = strlen(o->name);
  int keep_f32 = o->n_dims <= 1 || (len > 12 && !strcmp(o->name + len - 12, "_norm.weight")) ||
                 strstr(o->name, "ffn_gate_inp") != NULL || (len > 5 && !strcmp(o->name + len - 5, ".bias"));
  int t = GGML_T_F32;
  if (!keep_f32) switch (p->out_type) {
    case ENG_GGUF_OUT_F16: t = GGML_T_F16; break;
    case ENG_GGUF_OUT_BF16: t = GGML_T_BF16; break;
    case ENG_GGUF_OUT_Q8_0: t = o->ne[0] % 32 ? GGML_T_F16 : GGML_T_Q8_0; break;
    case ENG_GGUF_OUT_Q4_0: t = o->ne[0] % 32 ? GGML_T_F16 : GGML_T_Q4_0; break;
    case ENG_GGUF_OUT_Q4_K: case ENG_GGUF_OUT_Q5_K: case ENG_GGUF_OUT_Q6_K: /* K-quant, else Q8_0, else F16 */
      t = o->ne[0] % 256 == 0 ? GGML_T_Q4_K + (p->out_type - ENG_GGUF_OUT_Q4_K) : o->ne[0] % 32 ? GGML_T_F16 : GGML_T_Q8_0;
      break;
    default: t = GGML_T_F32;
  }
  o->ggml_type = t;
  o->nbytes = eng_dtype_nbytes(eng_ggml_to_dtype(t), numel(o));
}

/* dst = the rearranged x (the whole HF tensor o->src as floats); see the SRC_* kinds. */
static void relayout(const out_tensor *o, const float *x, float *dst) {
  const int64_t *sh = o->src->shape;
  if (o->kind == SRC_OAI_GU || o->kind == SRC_OAI_GUB) {
    int gu = o->kind == SRC_OAI_GU;
    int64_t E = sh[0], H = gu ? sh[1] : 1, I2 = gu ? sh[2] : sh[1], I = I2 / 2;
    for (int64_t e = 0; e < E; e++)
      for (int64_t i = 0; i < I; i++)
        for (int64_t h = 0; h < H; h++) dst[(e * I + i) * H + h] = x[(e * H + h) * I2 + 2 * i + o->par];
  } else if (o->kind == SRC_T3) {
    int64_t E = sh[0], R = sh[1], C = sh[2];
    for (int64_t e = 0; e < E; e++)
      for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < C; c++) dst[(e * C + c) * R + r] = x[(e * R + r) * C + c];
  } else { /* KB / VB from kv_b_proj [n_head * (nope + v), R] */
    int64_t R = sh[1], nope = o->nope, v = o->vdim, nh = sh[0] / (nope + v);
    for (int64_t h = 0; h < nh; h++)
      for (int64_t j = 0; j < R; j++)
        if (o->kind == SRC_KB)
          for (int64_t i = 0; i < nope; i++) dst[(h * R + j) * nope + i] = x[(h * (nope + v) + i) * R + j];
        else
          for (int64_t i = 0; i < v; i++) dst[(h * v + i) * R + j] = x[(h * (nope + v) + nope + i) * R + j];
  }
}

/* Fills dst (numel floats, HF row-major = GGUF order) from the source tensors. */
static int produce(const out_tensor *o, float *dst, char *err, size_t errlen) {
  if (o->kind >= SRC_OAI_GU) {
    float *x = malloc(sizeof(float) * (size_t)(eng_st_numel(o->src) ? eng_st_numel(o->src) : 1));
    if (!x) return eng_errf(err, errlen, "out of memory");
    int bad = eng_st_to_f32(x, o->src);
    if (!bad) relayout(o, x, dst);
    free(x);
    if (bad) return eng_errf(err, errlen, "tensor '%s': dtype %s is not floating point", o->src->name, eng_dtype_name(o->src->dtype));
  } else if (o->kind == SRC_PLAIN) {
    if (eng_st_to_f32(dst, o->src)) return eng_errf(err, errlen, "tensor '%s': dtype %s is not floating point", o->src->name, eng_dtype_name(o->src->dtype));
  } else if (o->kind == SRC_STACK) {
    int64_t per = o->ne[0] * o->ne[1];
    for (int64_t e = 0; e < o->n_exp; e++)
      if (eng_st_to_f32(dst + e * per, o->exp[e]))
        return eng_errf(err, errlen, "tensor '%s': dtype is not floating point", o->exp[e]->name);
  } else {
    const eng_st_tensor *s = o->src;
    int64_t R = s->shape[1], C = s->shape[2];
    size_t es = eng_dtype_size(s->dtype);
    for (int64_t e = 0; e < o->n_exp; e++)
      if (eng_dt_to_f32(dst + e * o->rows * C, s->data + (size_t)((e * R + o->r0) * C) * es, s->dtype, o->rows * C))
        return eng_errf(err, errlen, "tensor '%s': dtype is not floating point", s->name);
  }
  if (o->permute_heads > 0) {
    int64_t rows = o->ne[1], cols = o->ne[0], hd = rows / o->permute_heads, half = hd / 2;
    float *tmp = malloc(sizeof(float) * (size_t)(rows * cols));
    if (!tmp) return eng_errf(err, errlen, "out of memory");
    memcpy(tmp, dst, sizeof(float) * (size_t)(rows * cols));
    for (int64_t h = 0; h < o->permute_heads; h++)
      for (int64_t i = 0; i < half; i++)
        for (int64_t j = 0; j < 2; j++)
          memcpy(dst + (h * hd + 2 * i + j) * cols, tmp + (h * hd + j * half + i) * cols, sizeof(float) * (size_t)cols);
    free(tmp);
  }
  return 0;
}

static void encode(const out_tensor *o, const float *x, uint8_t *dst) {
  int64_t n = numel(o);
  switch (o->ggml_type) {
  case GGML_T_F32: memcpy(dst, x, (size_t)n * 4); break;
  case GGML_T_F16: for (int64_t i = 0; i < n; i++) { uint16_t h = eng_stw_f32_to_f16(x[i]); memcpy(dst + 2 * i, &h, 2); } break;
  case GGML_T_BF16: for (int64_t i = 0; i < n; i++) { uint16_t h = eng_stw_f32_to_bf16(x[i]); memcpy(dst + 2 * i, &h, 2); } break;
  case GGML_T_Q8_0: eng_quant_q8_0(dst, x, n); break;
  case GGML_T_Q4_0: eng_quant_q4_0(dst, x, n); break;
  case GGML_T_Q4_K: krn_kq_quant(KRN_DT_Q4_K, dst, x, n); break;
  case GGML_T_Q5_K: krn_kq_quant(KRN_DT_Q5_K, dst, x, n); break;
  case GGML_T_Q6_K: krn_kq_quant(KRN_DT_Q6_K, dst, x, n); break;
  }
}

/* ---- tensor plan ------------------------------------------------------------------------- */

typedef struct { const eng_st_tensor **e[3]; } layer_exps;

/* Adds a tensor rearranged from the whole HF tensor t (kind >= SRC_OAI_GU); ne innermost first. */
static out_tensor *plan_relayout(plan *p, const char *name, const eng_st_tensor *t, int kind, int n_dims, int64_t ne0,
                                 int64_t ne1, int64_t ne2) {
  out_tensor *o = plan_add(p, name);
  if (!o) return NULL;
  o->kind = kind;
  o->src = t;
  o->n_dims = n_dims;
  o->ne[0] = ne0; o->ne[1] = ne1; o->ne[2] = ne2;
  return o;
}

/* gpt-oss packed experts (rest = mlp.experts.<x>): gate_up_proj [E,H,2I] (x @ W, gate/up
 * interleaved by column) -> ffn_gate_exps / ffn_up_exps [E,I,H]; gate_up_proj_bias [E,2I]
 * -> ffn_gate_exps.bias / ffn_up_exps.bias [E,I]; down_proj [E,I,H] -> ffn_down_exps
 * [E,H,I]; down_proj_bias [E,H] -> ffn_down_exps.bias. 1 = handled, 0 = not one of them. */
static int plan_oai_experts(plan *p, const eng_st_tensor *t, int l, const char *rest, int64_t n_exp, const char *dir,
                            char *err, size_t errlen, int *rc) {
  static const char *const parts[4] = {"mlp.experts.gate_up_proj", "mlp.experts.gate_up_proj_bias",
                                       "mlp.experts.down_proj", "mlp.experts.down_proj_bias"};
  int which = -1;
  for (int i = 0; i < 4; i++) if (!strcmp(rest, parts[i])) which = i;
  if (which < 0) return 0;
  int nd = which % 2 ? 2 : 3;
  if (t->ndim != nd || t->shape[0] != n_exp || (which < 2 && t->shape[nd - 1] % 2) || !eng_dtype_size(t->dtype)) {
    *rc = eng_errf(err, errlen, "%s: gpt-oss tensor '%s' must be %d-D [%lld, ...%s] of a float dtype", dir, t->name, nd,
                   (long long)n_exp, which < 2 ? ", even" : "");
    return 1;
  }
  char g[128];
  for (int h = 0; h < (which < 2 ? 2 : 1); h++) {
    int k = which < 2 ? h : 2;
    out_tensor *o;
    snprintf(g, sizeof g, "blk.%d.%s", l, which % 2 ? eng_gguf_exps_bias[k] : eng_gguf_exps[k]);
    if (which == 0) o = plan_relayout(p, g, t, SRC_OAI_GU, 3, t->shape[1], t->shape[2] / 2, n_exp);
    else if (which == 1) o = plan_relayout(p, g, t, SRC_OAI_GUB, 2, t->shape[1] / 2, n_exp, 0);
    else if (which == 2) o = plan_relayout(p, g, t, SRC_T3, 3, t->shape[1], t->shape[2], n_exp);
    else o = plan_relayout(p, g, t, SRC_PLAIN, 2, t->shape[1], n_exp, 0);
    if (!o) { *rc = eng_errf(err, errlen, "out of memory"); return 1; }
    o->par = h;
    choose_type(p, o);
  }
  return 1;
}

/* DeepSeek kv_b_proj -> attn_k_b + attn_v_b (newer llama.cpp's layout, ENG_GGUF_CONVERT_SPLIT_KV_B). */
static int plan_split_kv_b(plan *p, const eng_st_tensor *t, int l, const char *dir, char *err, size_t errlen) {
  const eng_config *c = p->c;
  int64_t nh = c->n_heads, nope = c->qk_nope_dim, v = c->v_head_dim, R = c->kv_lora_rank;
  if (t->ndim != 2 || t->shape[0] != nh * (nope + v) || t->shape[1] != R || !eng_dtype_size(t->dtype))
    return eng_errf(err, errlen, "%s: tensor '%s' is not [%lld, %lld] of a float dtype", dir, t->name, (long long)(nh * (nope + v)),
                    (long long)R);
  char g[128];
  snprintf(g, sizeof g, "blk.%d.%s", l, ENG_GGUF_K_B);
  out_tensor *k = plan_relayout(p, g, t, SRC_KB, 3, nope, R, nh);
  if (!k) return eng_errf(err, errlen, "out of memory");
  k->nope = nope; k->vdim = v;
  choose_type(p, k);
  snprintf(g, sizeof g, "blk.%d.%s", l, ENG_GGUF_V_B);
  out_tensor *vb = plan_relayout(p, g, t, SRC_VB, 3, R, v, nh);
  if (!vb) return eng_errf(err, errlen, "out of memory");
  vb->nope = nope; vb->vdim = v;
  choose_type(p, vb);
  return 0;
}

static int build_plan(plan *p, const eng_st_set *set, int64_t n_layers, int64_t n_exp, const char *dir, char *err,
                      size_t errlen) {
  double heads = p->c->n_heads, kvh = p->c->n_kv_heads;
  int oai = p->c->family == ENG_FAM_GPT_OSS;
  int permute = !strcmp(p->arch, "llama");
  layer_exps *le = calloc((size_t)n_layers, sizeof *le);
  if (!le) return eng_errf(err, errlen, "out of memory");
  int rc = 0;
  for (int i = 0; i < set->n_tensors && !rc; i++) {
    const eng_st_tensor *t = &set->tensors[i];
    const char *nm = t->name;
    char gname[128] = "", rest[256];
    int l = -1, e = -1, cn = 0;
    if (strstr(nm, "rotary_emb.inv_freq")) continue;
    if (!strcmp(nm, "model.embed_tokens.weight")) snprintf(gname, sizeof gname, "token_embd.weight");
    else if (!strcmp(nm, "model.norm.weight")) snprintf(gname, sizeof gname, "output_norm.weight");
    else if (!strcmp(nm, "lm_head.weight")) snprintf(gname, sizeof gname, "output.weight");
    else if (sscanf(nm, "model.layers.%d.%255s", &l, rest) == 2 && l >= 0 && l < n_layers) {
      for (int pass = 0; pass < 2 && !*gname; pass++) /* this architecture's own names first */
        for (int k = 0; eng_gguf_layer_names[k].gguf && !*gname; k++) {
          const eng_gguf_name *x = &eng_gguf_layer_names[k];
          if (pass == 0 ? !x->arch || strcmp(x->arch, p->arch) : x->arch != NULL) continue;
          if (!strcmp(rest, x->hf) || (x->hf_mixtral && !strcmp(rest, x->hf_mixtral)) ||
              (x->hf_deepseek && !strcmp(rest, x->hf_deepseek)))
            snprintf(gname, sizeof gname, "blk.%d.%s", l, x->gguf);
        }
      if (!*gname && oai && plan_oai_experts(p, t, l, rest, n_exp, dir, err, errlen, &rc)) {
        if (rc) break;
        continue;
      }
      if ((p->flags & ENG_GGUF_CONVERT_SPLIT_KV_B) && p->c->mla && !strcmp(rest, "self_attn.kv_b_proj.weight")) {
        if ((rc = plan_split_kv_b(p, t, l, dir, err, errlen))) break;
        continue;
      }
      for (int k = 0; k < 3 && !*gname; k++) {
        char f1[96], f2[96];
        snprintf(f1, sizeof f1, "block_sparse_moe.experts.%%d.%s.weight%%n", eng_gguf_exp_mixtral[k]);
        snprintf(f2, sizeof f2, "mlp.experts.%%d.%s.weight%%n", eng_gguf_exp_hf[k]);
        if (((cn = 0, sscanf(rest, f1, &e, &cn) == 1 && rest[cn] == 0) ||
             (cn = 0, sscanf(rest, f2, &e, &cn) == 1 && rest[cn] == 0))) {
          if (e < 0 || e >= n_exp) { rc = eng_errf(err, errlen, "%s: tensor '%s': expert %d out of range (%lld experts)", dir, nm, e, (long long)n_exp); break; }
          if (!le[l].e[k] && !(le[l].e[k] = calloc((size_t)n_exp, sizeof(void *)))) { rc = eng_errf(err, errlen, "out of memory"); break; }
          le[l].e[k][e] = t;
          snprintf(gname, sizeof gname, "-");
        }
      }
      if (rc) break;
      if (!*gname && (!strcmp(rest, "mlp.experts.gate_up_proj") || !strcmp(rest, "mlp.experts.down_proj"))) {
        int gu = !strcmp(rest, "mlp.experts.gate_up_proj");
        if (t->ndim != 3 || t->shape[0] != n_exp || (gu && t->shape[1] % 2) || !eng_dtype_size(t->dtype)) {
          rc = eng_errf(err, errlen, "%s: packed tensor '%s' must be 3-D [%lld, rows, cols] of a float dtype", dir, nm, (long long)n_exp);
          break;
        }
        for (int h = 0; h < (gu ? 2 : 1); h++) {
          char g2[128];
          snprintf(g2, sizeof g2, "blk.%d.%s", l, gu ? eng_gguf_exps[h] : eng_gguf_exps[2]);
          out_tensor *o = plan_add(p, g2);
          if (!o) { rc = eng_errf(err, errlen, "out of memory"); break; }
          o->kind = SRC_PACKED;
          o->src = t;
          o->n_exp = n_exp;
          o->rows = gu ? t->shape[1] / 2 : t->shape[1];
          o->r0 = h * o->rows;
          o->n_dims = 3;
          o->ne[0] = t->shape[2]; o->ne[1] = o->rows; o->ne[2] = n_exp;
          choose_type(p, o);
        }
        snprintf(gname, sizeof gname, "-");
      }
    }
    if (rc) break;
    if (!*gname) { rc = eng_errf(err, errlen, "%s: tensor '%s' has no llama.cpp name (unsupported layout)", dir, nm); break; }
    if (!strcmp(gname, "-")) continue;
    if (t->ndim < 1 || t->ndim > 3) { rc = eng_errf(err, errlen, "%s: tensor '%s' has %d dims", dir, nm, t->ndim); break; }
    out_tensor *o = plan_add(p, gname);
    if (!o) { rc = eng_errf(err, errlen, "out of memory"); break; }
    o->kind = SRC_PLAIN;
    o->src = t;
    o->n_dims = t->ndim;
    for (int d = 0; d < t->ndim; d++) o->ne[d] = t->shape[t->ndim - 1 - d];
    size_t gl = strlen(gname);
    if (permute && gl > 14 && (!strcmp(gname + gl - 14, ".attn_q.weight") || !strcmp(gname + gl - 14, ".attn_k.weight"))) {
      o->permute_heads = (int64_t)(gname[gl - 8] == 'q' ? heads : kvh);
      if (o->n_dims != 2 || o->permute_heads <= 0 || o->ne[1] % o->permute_heads || (o->ne[1] / o->permute_heads) % 2) {
        rc = eng_errf(err, errlen, "%s: tensor '%s' rows do not split into %lld heads of even size", dir, nm, (long long)o->permute_heads);
        break;
      }
    }
    choose_type(p, o);
  }
  for (int64_t l = 0; l < n_layers && !rc; l++)
    for (int k = 0; k < 3 && !rc; k++) {
      if (!le[l].e[k]) continue;
      const eng_st_tensor *e0 = le[l].e[k][0];
      for (int64_t e = 0; e < n_exp && !rc; e++) {
        const eng_st_tensor *x = le[l].e[k][e];
        if (!x || !e0 || x->ndim != 2 || x->shape[0] != e0->shape[0] || x->shape[1] != e0->shape[1])
          rc = eng_errf(err, errlen, "%s: layer %lld: expert %lld of %s is missing or has another shape", dir, (long long)l,
                        (long long)e, eng_gguf_exp_hf[k]);
      }
      if (rc) break;
      char g2[128];
      snprintf(g2, sizeof g2, "blk.%lld.%s", (long long)l, eng_gguf_exps[k]);
      out_tensor *o = plan_add(p, g2);
      if (!o) { rc = eng_errf(err, errlen, "out of memory"); break; }
      o->kind = SRC_STACK;
      o->exp = le[l].e[k];
      le[l].e[k] = NULL; /* owned by the plan now */
      o->n_exp = n_exp;
      o->n_dims = 3;
      o->ne[0] = e0->shape[1]; o->ne[1] = e0->shape[0]; o->ne[2] = n_exp;
      choose_type(p, o);
    }
  for (int64_t l = 0; l < n_layers; l++) for (int k = 0; k < 3; k++) free(le[l].e[k]);
  free(le);
  return rc;
}

static int cmp_out(const void *a, const void *b) {
  const out_tensor *x = a, *y = b;
  int lx = -1, ly = -1;
  sscanf(x->name, "blk.%d.", &lx);
  sscanf(y->name, "blk.%d.", &ly);
  if (lx != ly) return lx < ly ? -1 : 1;
  return strcmp(x->name, y->name);
}

int eng_gguf_out_type(const char *s) {
  static const char *const n[ENG_GGUF_OUT_COUNT] = {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q5_k", "q6_k"};
  for (int i = 0; i < ENG_GGUF_OUT_COUNT; i++) if (!strcasecmp(s, n[i])) return i;
  return -1;
}

int eng_gguf_convert(const char *dir, const char *out_path, int out_type, eng_gguf_progress progress, void *pu,
                     char *err, size_t errlen) {
  return eng_gguf_convert_ex(dir, out_path, out_type, 0, progress, pu, err, errlen);
}

int eng_gguf_convert_ex(const char *dir, const char *out_path, int out_type, int flags, eng_gguf_progress progress,
                        void *pu, char *err, size_t errlen) {
  char path[PATH_MAX], tmp[PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/config.json", dir);
  cJSON *cfg = ggw_load_json(path);
  if (!cJSON_IsObject(cfg)) { cJSON_Delete(cfg); return eng_errf(err, errlen, "%s: missing or malformed config.json", dir); }
  const cJSON *mtj = cJSON_GetObjectItemCaseSensitive(cfg, "model_type");
  const char *mt = cJSON_IsString(mtj) ? mtj->valuestring : "";
  const char *arch = NULL;
  for (int i = 0; eng_gguf_arch_map[i][0]; i++) if (!strcmp(mt, eng_gguf_arch_map[i][0])) arch = eng_gguf_arch_map[i][1];
  double nl = 0, ne = 0, vocab = 0;
  ggw_cfg_num(cfg, "num_hidden_layers", &nl);
  if (!ggw_cfg_num(cfg, "num_local_experts", &ne) && !ggw_cfg_num(cfg, "num_experts", &ne)) ggw_cfg_num(cfg, "n_routed_experts", &ne);
  ggw_cfg_num(cfg, "vocab_size", &vocab);
  if (!arch) { /* format before cfg (which owns mt) is freed */
    eng_errf(err, errlen, "%s: model_type '%s' cannot be converted to GGUF (supported: mixtral, qwen2_moe, qwen3_moe, olmoe, deepseek_v2, deepseek_v3, gpt_oss)", dir, mt);
    cJSON_Delete(cfg);
    return -1;
  }
  if (!(nl >= 1 && nl <= 4096) || !(ne >= 0 && ne <= 4096)) {
    cJSON_Delete(cfg);
    return eng_errf(err, errlen, "%s/config.json: implausible num_hidden_layers / experts", dir);
  }
  if (out_type < ENG_GGUF_OUT_F32 || out_type >= ENG_GGUF_OUT_COUNT) {
    cJSON_Delete(cfg);
    return eng_errf(err, errlen, "unknown GGUF output type %d", out_type);
  }
  eng_config ec; /* the engine's reading of config.json: the metadata says what it would run */
  if (eng_config_load(&ec, path, err, errlen)) { cJSON_Delete(cfg); return -1; }
  eng_st_set set;
  if (eng_st_open_dir(&set, dir, err, errlen)) { cJSON_Delete(cfg); return -1; }
  plan p = {.out_type = out_type, .arch = arch, .c = &ec, .flags = flags};
  ggw_kv kv = {0};
  FILE *f = NULL;
  float *fx = NULL;
  uint8_t *qx = NULL;
  int rc = build_plan(&p, &set, (int64_t)nl, (int64_t)ne, dir, err, errlen);
  if (rc) goto done;
  qsort(p.t, (size_t)p.n, sizeof *p.t, cmp_out);
  /* metadata */
  ggw_kv_str(&kv, "general.architecture", arch);
  const char *base = strrchr(dir, '/');
  base = base && base[1] ? base + 1 : dir;
  ggw_kv_str(&kv, "general.name", base);
  /* LLAMA_FTYPE_ALL_F32, MOSTLY_F16, _BF16, _Q8_0, _Q4_0, _Q4_K_S, _Q5_K_S, _Q6_K (every quantised
   * tensor is Q4_K / Q5_K: the "S" mixes; _M ones would put Q6_K in attn_v / ffn_down) */
  static const uint32_t ftype[ENG_GGUF_OUT_COUNT] = {0, 1, 32, 7, 2, 14, 16, 18};
  ggw_kv_u32(&kv, "general.file_type", ftype[out_type]);
  ggw_kv_u32(&kv, "general.quantization_version", 2);
  if (ggw_write_hparams(&kv, cfg, &ec, arch, flags, dir, err, errlen)) { rc = -1; goto done; }
  if (!(flags & ENG_GGUF_CONVERT_NO_HF_CONFIG)) { /* the original config.json verbatim: moescope's
     * reader prefers it to the llama.cpp keys (exact for any field, known or not) */
    size_t cn = 0;
    char ce[256];
    char *ct = eng_read_file(path, &cn, (size_t)1 << 26, ce, sizeof ce);
    if (!ct) { rc = eng_errf(err, errlen, "%s", ce); goto done; }
    ggw_kv_key(&kv, ENG_GGUF_KEY_HF_CONFIG, GGUF_T_STRING);
    ggw_put_str(&kv.b, ct, cn);
    free(ct);
  }
  if (ggw_write_tokenizer(&kv, dir, cfg, (int64_t)vocab, err, errlen)) { rc = -1; goto done; }
  if (kv.b.oom) { rc = eng_errf(err, errlen, "out of memory"); goto done; }
  /* tensor infos */
  ggw_buf hdr = {0};
  ggw_put(&hdr, "GGUF", 4);
  ggw_put_u32(&hdr, 3);
  ggw_put_u64(&hdr, (uint64_t)p.n);
  ggw_put_u64(&hdr, kv.n);
  ggw_put(&hdr, kv.b.p, kv.b.n);
  uint64_t off = 0;
  size_t maxn = 0, maxb = 0;
  for (int i = 0; i < p.n; i++) {
    out_tensor *o = &p.t[i];
    ggw_put_str(&hdr, o->name, strlen(o->name));
    ggw_put_u32(&hdr, (uint32_t)o->n_dims);
    for (int d = 0; d < o->n_dims; d++) ggw_put_u64(&hdr, (uint64_t)o->ne[d]);
    ggw_put_u32(&hdr, (uint32_t)o->ggml_type);
    ggw_put_u64(&hdr, off);
    o->offset = off;
    off += (o->nbytes + ALIGN - 1) / ALIGN * ALIGN;
    if ((size_t)numel(o) > maxn) maxn = (size_t)numel(o);
    if (o->nbytes > maxb) maxb = o->nbytes;
  }
  static const uint8_t zeros[ALIGN];
  ggw_put(&hdr, zeros, (ALIGN - hdr.n % ALIGN) % ALIGN);
  if (hdr.oom) { free(hdr.p); rc = eng_errf(err, errlen, "out of memory"); goto done; }
  snprintf(tmp, sizeof tmp, "%s.tmp.%d", out_path, (int)getpid());
  f = fopen(tmp, "wb");
  if (!f) { free(hdr.p); rc = eng_errf(err, errlen, "%s: cannot create: %s", tmp, strerror(errno)); goto done; }
  int werr = fwrite(hdr.p, 1, hdr.n, f) != hdr.n;
  free(hdr.p);
  fx = malloc(sizeof(float) * (maxn ? maxn : 1));
  qx = malloc(maxb ? maxb : 1);
  if (!fx || !qx) { rc = eng_errf(err, errlen, "out of memory"); goto done; }
  for (int i = 0; i < p.n && !werr; i++) {
    out_tensor *o = &p.t[i];
    if (produce(o, fx, err, errlen)) { rc = -1; goto done; }
    encode(o, fx, qx);
    werr = fwrite(qx, 1, o->nbytes, f) != o->nbytes;
    size_t padn = (ALIGN - o->nbytes % ALIGN) % ALIGN;
    if (!werr && padn) werr = fwrite(zeros, 1, padn, f) != padn;
    if (progress) progress(pu, i + 1, p.n);
  }
  if (werr || fflush(f) || fsync(fileno(f))) { rc = eng_errf(err, errlen, "%s: write failed: %s", tmp, strerror(errno)); goto done; }
  if (fclose(f)) { f = NULL; rc = eng_errf(err, errlen, "%s: write failed: %s", tmp, strerror(errno)); goto done; }
  f = NULL;
  if (rename(tmp, out_path)) { rc = eng_errf(err, errlen, "%s: cannot rename into place: %s", out_path, strerror(errno)); goto done; }
  rc = 0;
done:
  if (f) fclose(f);
  if (rc && f != NULL) unlink(tmp);
  if (rc) { snprintf(tmp, sizeof tmp, "%s.tmp.%d", out_path, (int)getpid()); unlink(tmp); }
  free(fx);
  free(qx);
  for (int i = 0; i < p.n; i++) if (p.t[i].kind == SRC_STACK) free((void *)p.t[i].exp);
  free(p.t);
  free(kv.b.p);
  eng_st_close(&set);
  cJSON_Delete(cfg);
  return rc;
}
