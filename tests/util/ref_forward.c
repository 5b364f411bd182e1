/* ref_forward.c — float64 reference forward (see ref_forward.h). Everything is recomputed
 * from config.json and the safetensors tensors by their Hugging Face names; nothing of the
 * engine is used except the safetensors reader. Families: mixtral (+ moescope_router switch /
 * hierarchical), qwen2_moe, qwen3_moe, olmoe, deepseek_v2, deepseek_v3, gpt_oss. */
#include "tests/util/ref_forward.h"
#include "engine/eng_safetensors.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct R {
  cJSON *cfg;
  eng_st_set set;
  const char *fam;
  void *allocs[65536];
  int nalloc;
  char *err;
  size_t errlen;
  int bad;
} R;

/* Records the first failure (a missing tensor, a bad config) in r->err; later ones are dropped. */
static void ref_fail(R *r, const char *fmt, ...) {
  if (r->bad) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->err, r->errlen, fmt, ap);
  va_end(ap);
  r->bad = 1;
}

static double *dalloc(R *r, size_t n) {
  double *p = calloc(n ? n : 1, sizeof(double));
  if (r->nalloc < 65536) r->allocs[r->nalloc++] = p;
  return p;
}
static double cfgd(R *r, const char *k, double d) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->cfg, k);
  return cJSON_IsNumber(v) ? v->valuedouble : cJSON_IsBool(v) ? (double)cJSON_IsTrue(v) : d;
}
static double subd(const cJSON *o, const char *k, double d) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsNumber(v) ? v->valuedouble : cJSON_IsBool(v) ? (double)cJSON_IsTrue(v) : d;
}
/* tensor by name as doubles (NULL + error when required and absent) */
static double *T(R *r, int required, const char *fmt, ...) {
  char name[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(name, sizeof name, fmt, ap);
  va_end(ap);
  const eng_st_tensor *t = eng_st_find(&r->set, name);
  if (!t) {
    if (required) ref_fail(r, "ref: missing tensor %s", name);
    return NULL;
  }
  int64_t n = eng_st_numel(t);
  float *f = malloc(sizeof(float) * (size_t)n);
  eng_st_to_f32(f, t);
  double *d = dalloc(r, (size_t)n);
  for (int64_t i = 0; i < n; i++) d[i] = f[i];
  free(f);
  return d;
}

static void linear(double *y, const double *W, const double *b, const double *x, int out, int in) {
  for (int o = 0; o < out; o++) {
    double s = b ? b[o] : 0;
    for (int i = 0; i < in; i++) s += W[(size_t)o * in + i] * x[i];
    y[o] = s;
  }
}
static void rmsnorm(double *y, const double *x, const double *w, int d, double eps) {
  double ss = 0;
  for (int i = 0; i < d; i++) ss += x[i] * x[i];
  double r = 1.0 / sqrt(ss / d + eps);
  for (int i = 0; i < d; i++) y[i] = w[i] * (x[i] * r);
}
static double silu(double z) { return z / (1 + exp(-z)); }
static double sigm(double z) { return 1 / (1 + exp(-z)); }
/* indices of the k largest v[0..n), descending, ties to the lower index */
static void topk(const double *v, int n, int k, int *idx) {
  char *used = calloc((size_t)n, 1);
  for (int j = 0; j < k; j++) {
    int b = -1;
    for (int i = 0; i < n; i++) if (!used[i] && (b < 0 || v[i] > v[b])) b = i;
    idx[j] = b;
    used[b] = 1;
  }
  free(used);
}
static void softmax(double *p, const double *z, int n) {
  double m = -INFINITY, s = 0;
  for (int i = 0; i < n; i++) if (z[i] > m) m = z[i];
  for (int i = 0; i < n; i++) { p[i] = exp(z[i] - m); s += p[i]; }
  for (int i = 0; i < n; i++) p[i] /= s;
}
static double mscale(double s, double m) { return s <= 1 ? 1.0 : 0.1 * m * log(s) + 1.0; }

/* inverse frequencies (default or YaRN, HF modeling_rope_utils) and the cos/sin factor */
static void rope_freqs(R *r, int dim, double *inv, double *attn_factor) {
  double base = cfgd(r, "rope_theta", 10000);
  const cJSON *rs = cJSON_GetObjectItemCaseSensitive(r->cfg, "rope_scaling");
  *attn_factor = 1.0;
  for (int i = 0; i < dim / 2; i++) inv[i] = 1.0 / pow(base, (2.0 * i) / dim);
  if (!cJSON_IsObject(rs)) return;
  double f = subd(rs, "factor", 1), orig = subd(rs, "original_max_position_embeddings", cfgd(r, "max_position_embeddings", 0));
  double bf = subd(rs, "beta_fast", 32), bs = subd(rs, "beta_slow", 1), ms = subd(rs, "mscale", 0), ma = subd(rs, "mscale_all_dim", 0);
  int trunc = (int)subd(rs, "truncate", 1);
  *attn_factor = ms && ma ? mscale(f, ms) / mscale(f, ma) : mscale(f, 1);
  double lo = dim * log(orig / (bf * 2 * M_PI)) / (2 * log(base)), hi = dim * log(orig / (bs * 2 * M_PI)) / (2 * log(base));
  if (trunc) { lo = floor(lo); hi = ceil(hi); }
  lo = fmax(lo, 0); hi = fmin(hi, dim - 1);
  if (lo == hi) hi += 0.001;
  for (int i = 0; i < dim / 2; i++) {
    double ramp = fmin(fmax((i - lo) / (hi - lo), 0), 1), extra = 1 - ramp;
    double pf = pow(base, (2.0 * i) / dim);
    inv[i] = (1 / (f * pf)) * (1 - extra) + (1 / pf) * extra;
  }
}

/* rotate x[dim] at position pos. mode 0: rotate-half; 1: complex pairs (DeepSeek-V2
 * view_as_complex); 2: DeepSeek-V3 rope_interleave (de-interleave, then rotate-half; the
 * result stays permuted, identically for q and k) */
static void rope(double *x, int dim, int pos, const double *inv, double af, int mode) {
  int h = dim / 2;
  double t[1024];
  if (mode == 2) {
    for (int i = 0; i < h; i++) { t[i] = x[2 * i]; t[i + h] = x[2 * i + 1]; }
    memcpy(x, t, sizeof(double) * dim);
    mode = 0;
  }
  for (int i = 0; i < h; i++) {
    double c = cos(pos * inv[i]) * af, s = sin(pos * inv[i]) * af;
    if (mode == 0) {
      double a = x[i], b = x[i + h];
      x[i] = a * c - b * s; x[i + h] = b * c + a * s;
    } else {
      double re = x[2 * i], im = x[2 * i + 1];
      x[2 * i] = re * c - im * s; x[2 * i + 1] = re * s + im * c;
    }
  }
}

static void swiglu_mlp(double *y, const double *x, const double *g, const double *u, const double *d, int H, int I) {
  double *a = malloc(sizeof(double) * I), *b = malloc(sizeof(double) * I);
  linear(a, g, NULL, x, I, H);
  linear(b, u, NULL, x, I, H);
  for (int i = 0; i < I; i++) a[i] = silu(a[i]) * b[i];
  linear(y, d, NULL, a, H, I);
  free(a); free(b);
}

int ref_forward(const char *dir, const int *ids, int n, ref_out *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  R *r = calloc(1, sizeof *r);
  r->err = err; r->errlen = errlen;
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", dir);
  FILE *f = fopen(path, "rb");
  if (!f) { snprintf(err, errlen, "ref: no %s", path); free(r); return -1; }
  char *txt = malloc(1 << 20);
  size_t tl = fread(txt, 1, (1 << 20) - 1, f);
  txt[tl] = 0;
  fclose(f);
  r->cfg = cJSON_Parse(txt);
  free(txt);
  if (eng_st_open_dir(&r->set, dir, err, errlen)) { cJSON_Delete(r->cfg); free(r); return -1; }
  r->fam = cJSON_GetObjectItemCaseSensitive(r->cfg, "model_type")->valuestring;
  const char *fam = r->fam;
  int mixtral = !strcmp(fam, "mixtral"), q2 = !strcmp(fam, "qwen2_moe"), q3 = !strcmp(fam, "qwen3_moe");
  int olmoe = !strcmp(fam, "olmoe"), v2 = !strcmp(fam, "deepseek_v2"), v3 = !strcmp(fam, "deepseek_v3");
  int oai = !strcmp(fam, "gpt_oss"), mla = v2 || v3;
  int H = (int)cfgd(r, "hidden_size", 0), L = (int)cfgd(r, "num_hidden_layers", 0), V = (int)cfgd(r, "vocab_size", 0);
  int nh = (int)cfgd(r, "num_attention_heads", 0), nkv = (int)cfgd(r, "num_key_value_heads", nh);
  int hd = (int)cfgd(r, "head_dim", H / nh), K = (int)cfgd(r, "num_experts_per_tok", 2);
  double eps = cfgd(r, "rms_norm_eps", 1e-6);
  int E = (int)(mixtral || oai ? cfgd(r, "num_local_experts", 0) : mla ? cfgd(r, "n_routed_experts", 0) : cfgd(r, "num_experts", 0));
  int I = (int)(q2 || q3 || mla ? cfgd(r, "moe_intermediate_size", 0) : cfgd(r, "intermediate_size", 0));
  int Id = (int)cfgd(r, "intermediate_size", 0);
  int norm_topk = mixtral ? 1 : (int)cfgd(r, "norm_topk_prob", 0);
  double rscale = mla ? cfgd(r, "routed_scaling_factor", 1) : 1;
  int ngroup = (int)cfgd(r, "n_group", 1), tgroup = (int)cfgd(r, "topk_group", 1);
  const cJSON *mr = cJSON_GetObjectItemCaseSensitive(r->cfg, "moescope_router");
  const char *rkind = cJSON_IsObject(mr) ? cJSON_GetObjectItemCaseSensitive(mr, "kind")->valuestring : "";
  int sw = !strcmp(rkind, "switch"), hier = !strcmp(rkind, "hierarchical");
  if (sw) { K = 1; norm_topk = 0; }
  /* MLA dims */
  int nope = (int)cfgd(r, "qk_nope_head_dim", 0), rd = (int)cfgd(r, "qk_rope_head_dim", 0), vhd = (int)cfgd(r, "v_head_dim", 0);
  int kvr = (int)cfgd(r, "kv_lora_rank", 0), qr = (int)cfgd(r, "q_lora_rank", 0);
  int qk = mla ? nope + rd : hd, vd = mla ? vhd : hd, kvh = mla ? nh : nkv, rdim = mla ? rd : hd;
  double scale = 1.0 / sqrt((double)qk);
  double inv[512], af;
  rope_freqs(r, rdim, inv, &af);
  if ((v2 || v3) && cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(r->cfg, "rope_scaling"))) {
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(r->cfg, "rope_scaling");
    double ma = subd(rs, "mscale_all_dim", 0);
    if (ma) { double m = mscale(subd(rs, "factor", 1), ma); scale *= m * m; }
  }
  int rmode = v2 ? 1 : v3 ? ((int)cfgd(r, "rope_interleave", 1) ? 2 : 0) : 0;
  /* layer kinds */
  int first_dense = (int)cfgd(r, "first_k_dense_replace", 0);
  const cJSON *mlo = cJSON_GetObjectItemCaseSensitive(r->cfg, "mlp_only_layers");
  const cJSON *lt = cJSON_GetObjectItemCaseSensitive(r->cfg, "layer_types");
  int window = (int)cfgd(r, "sliding_window", 0);
  double limit = cfgd(r, "swiglu_limit", 7.0), alpha = 1.702;

  out->n = n; out->n_layers = L; out->k = K; out->vocab = V;
  out->logits = calloc((size_t)n * V, sizeof(double));
  out->experts = malloc(sizeof(int) * (size_t)L * n * K);
  out->weights = calloc((size_t)L * n * K, sizeof(double));
  for (size_t i = 0; i < (size_t)L * n * K; i++) out->experts[i] = -1;

  double *X = dalloc(r, (size_t)n * H), *h = dalloc(r, H), *tmp = dalloc(r, 1 << 16);
  double *Q = dalloc(r, (size_t)n * nh * qk), *Kc = dalloc(r, (size_t)n * kvh * qk), *Vc = dalloc(r, (size_t)n * kvh * vd);
  double *att = dalloc(r, (size_t)nh * vd), *sc = dalloc(r, (size_t)n + 1);
  double *emb = T(r, 1, "model.embed_tokens.weight");
  if (r->bad) goto fail;
  for (int t = 0; t < n; t++) memcpy(X + (size_t)t * H, emb + (size_t)ids[t] * H, sizeof(double) * H);
  for (int l = 0; l < L; l++) {
    char p[64];
    snprintf(p, sizeof p, "model.layers.%d.", l);
    double *ln1 = T(r, 1, "%sinput_layernorm.weight", p), *ln2 = T(r, 1, "%spost_attention_layernorm.weight", p);
    /* ---- attention: Q [n][nh][qk], K [n][kvh][qk], V [n][kvh][vd] ---- */
    if (mla) {
      double *qa = qr ? T(r, 1, "%sself_attn.q_a_proj.weight", p) : NULL, *qan = qr ? T(r, 1, "%sself_attn.q_a_layernorm.weight", p) : NULL;
      double *qb = qr ? T(r, 1, "%sself_attn.q_b_proj.weight", p) : T(r, 1, "%sself_attn.q_proj.weight", p);
      double *kva = T(r, 1, "%sself_attn.kv_a_proj_with_mqa.weight", p), *kvn = T(r, 1, "%sself_attn.kv_a_layernorm.weight", p);
      double *kvb = T(r, 1, "%sself_attn.kv_b_proj.weight", p);
      if (r->bad) goto fail;
      for (int t = 0; t < n; t++) {
        rmsnorm(h, X + (size_t)t * H, ln1, H, eps);
        double *q = Q + (size_t)t * nh * qk;
        if (qr) { double a[4096], an[4096]; linear(a, qa, NULL, h, qr, H); rmsnorm(an, a, qan, qr, 1e-6); linear(q, qb, NULL, an, nh * qk, qr); }
        else linear(q, qb, NULL, h, nh * qk, H);
        double ckv[4096], cn[4096], kv[65536];
        linear(ckv, kva, NULL, h, kvr + rd, H);
        rmsnorm(cn, ckv, kvn, kvr, 1e-6);
        linear(kv, kvb, NULL, cn, nh * (nope + vhd), kvr);
        double *kpe = ckv + kvr;
        rope(kpe, rd, t, inv, af, rmode);
        for (int hh = 0; hh < nh; hh++) {
          rope(q + (size_t)hh * qk + nope, rd, t, inv, af, rmode);
          double *kk = Kc + ((size_t)t * nh + hh) * qk, *vv = Vc + ((size_t)t * nh + hh) * vd;
          memcpy(kk, kv + (size_t)hh * (nope + vhd), sizeof(double) * nope);
          memcpy(kk + nope, kpe, sizeof(double) * rd);
          memcpy(vv, kv + (size_t)hh * (nope + vhd) + nope, sizeof(double) * vhd);
        }
      }
    } else {
      double *wq = T(r, 1, "%sself_attn.q_proj.weight", p), *wk = T(r, 1, "%sself_attn.k_proj.weight", p);
      double *wv = T(r, 1, "%sself_attn.v_proj.weight", p);
      double *bq = T(r, 0, "%sself_attn.q_proj.bias", p), *bk = T(r, 0, "%sself_attn.k_proj.bias", p), *bv = T(r, 0, "%sself_attn.v_proj.bias", p);
      double *qn = T(r, 0, "%sself_attn.q_norm.weight", p), *kn = T(r, 0, "%sself_attn.k_norm.weight", p);
      if (r->bad) goto fail;
      double clip = cfgd(r, "clip_qkv", 0);
      for (int t = 0; t < n; t++) {
        rmsnorm(h, X + (size_t)t * H, ln1, H, eps);
        double *q = Q + (size_t)t * nh * qk, *k = Kc + (size_t)t * nkv * qk, *v = Vc + (size_t)t * nkv * vd;
        linear(q, wq, bq, h, nh * hd, H);
        linear(k, wk, bk, h, nkv * hd, H);
        linear(v, wv, bv, h, nkv * hd, H);
        if (q3) {   /* per head */
          for (int i = 0; i < nh; i++) { rmsnorm(tmp, q + i * hd, qn, hd, eps); memcpy(q + i * hd, tmp, sizeof(double) * hd); }
          for (int i = 0; i < nkv; i++) { rmsnorm(tmp, k + i * hd, kn, hd, eps); memcpy(k + i * hd, tmp, sizeof(double) * hd); }
        }
        if (olmoe) {  /* whole projection, then clip */
          rmsnorm(tmp, q, qn, nh * hd, eps); memcpy(q, tmp, sizeof(double) * nh * hd);
          rmsnorm(tmp, k, kn, nkv * hd, eps); memcpy(k, tmp, sizeof(double) * nkv * hd);
          if (clip > 0)
            for (int i = 0; i < nh * hd || i < nkv * hd; i++) {
              if (i < nh * hd) q[i] = fmin(fmax(q[i], -clip), clip);
              if (i < nkv * hd) { k[i] = fmin(fmax(k[i], -clip), clip); v[i] = fmin(fmax(v[i], -clip), clip); }
            }
        }
        for (int i = 0; i < nh; i++) rope(q + i * hd, hd, t, inv, af, 0);
        for (int i = 0; i < nkv; i++) rope(k + i * hd, hd, t, inv, af, 0);
      }
    }
    double *wo = T(r, 1, "%sself_attn.o_proj.weight", p), *bo = T(r, 0, "%sself_attn.o_proj.bias", p);
    double *sinks = T(r, 0, "%sself_attn.sinks", p);
    if (r->bad) goto fail;
    int sliding = 0;
    if (oai) {
      const cJSON *x = cJSON_IsArray(lt) ? cJSON_GetArrayItem(lt, l) : NULL;
      sliding = x ? !strcmp(x->valuestring, "sliding_attention") : l % 2 == 0;
    }
    double *Y = dalloc(r, (size_t)n * H);
    for (int t = 0; t < n; t++) {
      for (int hh = 0; hh < nh; hh++) {
        int g = hh / (nh / kvh);
        const double *q = Q + ((size_t)t * nh + hh) * qk;
        double m = sinks ? sinks[hh] : -INFINITY, s = 0;
        for (int j = 0; j <= t; j++) {
          if (sliding && !(j > t - window)) { sc[j] = -INFINITY; continue; }
          double d = 0;
          for (int i = 0; i < qk; i++) d += q[i] * Kc[((size_t)j * kvh + g) * qk + i];
          sc[j] = d * scale;
          if (sc[j] > m) m = sc[j];
        }
        for (int j = 0; j <= t; j++) { sc[j] = exp(sc[j] - m); s += sc[j]; }
        if (sinks) s += exp(sinks[hh] - m);
        for (int i = 0; i < vd; i++) {
          double a = 0;
          for (int j = 0; j <= t; j++) a += sc[j] * Vc[((size_t)j * kvh + g) * vd + i];
          att[(size_t)hh * vd + i] = a / s;
        }
      }
      linear(Y + (size_t)t * H, wo, bo, att, H, nh * vd);
    }
    for (size_t i = 0; i < (size_t)n * H; i++) X[i] += Y[i];
    /* ---- FFN ---- */
    int moe = 1;
    if (mla) moe = l >= first_dense;
    if (q2 || q3) {
      int step = (int)cfgd(r, "decoder_sparse_step", 1);
      moe = (l + 1) % step == 0;
      for (const cJSON *x = cJSON_IsArray(mlo) ? mlo->child : NULL; x; x = x->next) if ((int)x->valuedouble == l) moe = 0;
    }
    for (int t = 0; t < n; t++) {
      double *y = Y + (size_t)t * H;
      rmsnorm(h, X + (size_t)t * H, ln2, H, eps);
      memset(y, 0, sizeof(double) * H);
      if (!moe) {
        double *g = T(r, 1, "%smlp.gate_proj.weight", p), *u = T(r, 1, "%smlp.up_proj.weight", p), *d = T(r, 1, "%smlp.down_proj.weight", p);
        if (r->bad) goto fail;
        swiglu_mlp(y, h, g, u, d, H, Id);
        continue;
      }
    }
    if (!moe) { for (size_t i = 0; i < (size_t)n * H; i++) X[i] += Y[i]; continue; }
    const char *mp = mixtral ? "block_sparse_moe" : "mlp";
    double *gate = T(r, 1, "%s%s.%s.weight", p, mp, oai ? "router" : "gate"), *gbias = oai ? T(r, 1, "%smlp.router.bias", p) : NULL;
    double *ggate = hier ? T(r, 1, "%sblock_sparse_moe.group_gate.weight", p) : NULL;
    double *ebias = v3 ? T(r, 0, "%smlp.gate.e_score_correction_bias", p) : NULL;
    if (r->bad) goto fail;
    int *cap_load = calloc((size_t)E, sizeof(int));
    int cap = sw ? (int)ceil(subd(mr, "capacity_factor", 1) * n / E) : 0;
    for (int t = 0; t < n; t++) {
      rmsnorm(h, X + (size_t)t * H, ln2, H, eps);
      double z[4096], pr[4096], sel[4096], w[64];
      int ex[64];
      linear(z, gate, gbias, h, E, H);
      int *oe = out->experts + ((size_t)l * n + t) * K;
      double *ow = out->weights + ((size_t)l * n + t) * K;
      if (oai) {                 /* top-k logits, softmax over them */
        topk(z, E, K, ex);
        double zz[64];
        for (int j = 0; j < K; j++) zz[j] = z[ex[j]];
        softmax(w, zz, K);
      } else if (v3) {           /* sigmoid, bias for selection, groups by top-2 sum */
        int per = E / ngroup;
        double gs[256];
        int gi[256];
        for (int e = 0; e < E; e++) { pr[e] = sigm(z[e]); sel[e] = pr[e] + (ebias ? ebias[e] : 0); }
        for (int g = 0; g < ngroup; g++) { int t2[2]; topk(sel + g * per, per, 2, t2); gs[g] = sel[g * per + t2[0]] + sel[g * per + t2[1]]; }
        topk(gs, ngroup, tgroup, gi);
        for (int g = 0; g < ngroup; g++) {
          int keep = 0;
          for (int j = 0; j < tgroup; j++) keep |= gi[j] == g;
          if (!keep) for (int e = g * per; e < (g + 1) * per; e++) sel[e] = 0.0;
        }
        topk(sel, E, K, ex);
        double s = 0;
        for (int j = 0; j < K; j++) { w[j] = pr[ex[j]]; s += w[j]; }
        for (int j = 0; j < K; j++) w[j] = (norm_topk ? w[j] / (s + 1e-20) : w[j]) * rscale;
      } else if (hier) {         /* group gate, then softmax inside the chosen group */
        int G = (int)subd(mr, "n_groups", 2), per = E / G, g;
        double zg[64], pg[64], pe[4096];
        linear(zg, ggate, NULL, h, G, H);
        softmax(pg, zg, G);
        topk(pg, G, 1, &g);
        softmax(pe, z + g * per, per);
        topk(pe, per, K, ex);
        for (int j = 0; j < K; j++) { w[j] = pg[g] * pe[ex[j]]; ex[j] += g * per; }
      } else {                   /* softmax families */
        softmax(pr, z, E);
        memcpy(sel, pr, sizeof(double) * E);
        if (v2 && !strcmp(cJSON_GetObjectItemCaseSensitive(r->cfg, "topk_method")->valuestring, "group_limited_greedy")) {
          int per = E / ngroup, gi[256];
          double gs[256];
          for (int g = 0; g < ngroup; g++) { gs[g] = -1; for (int e = g * per; e < (g + 1) * per; e++) gs[g] = fmax(gs[g], pr[e]); }
          topk(gs, ngroup, tgroup, gi);
          for (int g = 0; g < ngroup; g++) {
            int keep = 0;
            for (int j = 0; j < tgroup; j++) keep |= gi[j] == g;
            if (!keep) for (int e = g * per; e < (g + 1) * per; e++) sel[e] = 0.0;
          }
        }
        topk(sel, E, K, ex);
        double s = 0;
        for (int j = 0; j < K; j++) s += pr[ex[j]];
        for (int j = 0; j < K; j++) w[j] = (norm_topk ? pr[ex[j]] / s : pr[ex[j]]) * rscale;
        if (sw) {
          if (cap_load[ex[0]] < cap) cap_load[ex[0]]++;
          else ex[0] = -1;
        }
      }
      double *y = Y + (size_t)t * H;
      for (int j = 0; j < K; j++) {
        oe[j] = ex[j];
        ow[j] = ex[j] < 0 ? 0 : w[j];
        if (ex[j] < 0) continue;
        int e = ex[j];
        double eo[4096];
        if (oai) {
          double *gu = T(r, 1, "%smlp.experts.gate_up_proj", p), *gub = T(r, 1, "%smlp.experts.gate_up_proj_bias", p);
          double *dn = T(r, 1, "%smlp.experts.down_proj", p), *dnb = T(r, 1, "%smlp.experts.down_proj_bias", p);
          if (r->bad) { free(cap_load); goto fail; }
          double *act = malloc(sizeof(double) * I);
          for (int i = 0; i < I; i++) {
            double gg = gub[(size_t)e * 2 * I + 2 * i], uu = gub[(size_t)e * 2 * I + 2 * i + 1];
            for (int d = 0; d < H; d++) {
              gg += h[d] * gu[((size_t)e * H + d) * 2 * I + 2 * i];
              uu += h[d] * gu[((size_t)e * H + d) * 2 * I + 2 * i + 1];
            }
            gg = fmin(gg, limit);
            uu = fmin(fmax(uu, -limit), limit);
            act[i] = (uu + 1) * (gg * sigm(gg * alpha));
          }
          for (int d = 0; d < H; d++) {
            double s = dnb[(size_t)e * H + d];
            for (int i = 0; i < I; i++) s += act[i] * dn[((size_t)e * I + i) * H + d];
            eo[d] = s;
          }
          free(act);
        } else {
          const char *nm[3] = {mixtral ? "w1" : "gate_proj", mixtral ? "w3" : "up_proj", mixtral ? "w2" : "down_proj"};
          double *g = T(r, 1, "%s%s.experts.%d.%s.weight", p, mp, e, nm[0]);
          double *u = T(r, 1, "%s%s.experts.%d.%s.weight", p, mp, e, nm[1]);
          double *d = T(r, 1, "%s%s.experts.%d.%s.weight", p, mp, e, nm[2]);
          if (r->bad) { free(cap_load); goto fail; }
          swiglu_mlp(eo, h, g, u, d, H, I);
        }
        for (int d = 0; d < H; d++) y[d] += w[j] * eo[d];
      }
      /* shared expert(s) */
      if (q2 || mla) {
        const char *sp = q2 ? "shared_expert" : "shared_experts";
        double *g = T(r, 0, "%smlp.%s.gate_proj.weight", p, sp), *u = T(r, 0, "%smlp.%s.up_proj.weight", p, sp);
        double *d = T(r, 0, "%smlp.%s.down_proj.weight", p, sp);
        if (g) {
          int Is = q2 ? (int)cfgd(r, "shared_expert_intermediate_size", 0) : I * (int)cfgd(r, "n_shared_experts", 1);
          double so[4096], gw = 1;
          swiglu_mlp(so, h, g, u, d, H, Is);
          if (q2) {
            double *sg = T(r, 1, "%smlp.shared_expert_gate.weight", p), zz = 0;
            for (int i = 0; i < H; i++) zz += sg[i] * h[i];
            gw = sigm(zz);
          }
          for (int i = 0; i < H; i++) y[i] += gw * so[i];
        }
      }
    }
    free(cap_load);
    for (size_t i = 0; i < (size_t)n * H; i++) X[i] += Y[i];
    /* free this layer's tensors to keep memory flat */
    for (int i = 0; i < r->nalloc; i++) if (r->allocs[i] != X && r->allocs[i] != h && r->allocs[i] != tmp && r->allocs[i] != Q &&
                                             r->allocs[i] != Kc && r->allocs[i] != Vc && r->allocs[i] != att && r->allocs[i] != sc && r->allocs[i] != emb) {
      free(r->allocs[i]);
      r->allocs[i] = r->allocs[--r->nalloc];
      i--;
    }
  }
  {
    double *fn = T(r, 1, "model.norm.weight"), *lm = T(r, 0, "lm_head.weight");
    if (r->bad) goto fail;
    if (!lm) lm = emb;
    for (int t = 0; t < n; t++) {
      rmsnorm(h, X + (size_t)t * H, fn, H, eps);
      linear(out->logits + (size_t)t * V, lm, NULL, h, V, H);
    }
  }
  for (int i = 0; i < r->nalloc; i++) free(r->allocs[i]);
  eng_st_close(&r->set);
  cJSON_Delete(r->cfg);
  free(r);
  return 0;
fail:
  for (int i = 0; i < r->nalloc; i++) free(r->allocs[i]);
  eng_st_close(&r->set);
  cJSON_Delete(r->cfg);
  free(r);
  ref_out_free(out);
  return -1;
}

void ref_out_free(ref_out *o) {
  free(o->logits); free(o->experts); free(o->weights);
  memset(o, 0, sizeof *o);
}
