/* test_synth.c — `moescope synth` backend (engine/eng_synth.c) and the safetensors writer
 * (engine/eng_st_write.c). Reads the written files back with a minimal safetensors reader of
 * its own (not the engine's), checks layout, names, shapes, BF16/F16 rounding, determinism and
 * the tokenizer, then runs a float64 reference Mixtral forward pass written here (independent
 * of the engine) over random ids and asserts that the planted routing structure is what the
 * router actually does:
 *   collapse        planted layers: each collapse expert is in the top-k of >= 90% of tokens;
 *                   unplanted layers: no expert is in the top-k of more than 50% of tokens.
 *   specialization  planted layers: >= 90% of the tokens of range r have expert r in top-k.
 *   none            every layer: no expert in the top-k of more than 50% of tokens
 *                   (balanced is k/E = 25% for the default E=8, k=2; 128 tokens).
 * Bad options give -1 and one clear line. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>

#include <cjson/cJSON.h>

#include "engine/eng_st_write.h"
#include "engine/eng_synth.h"
#include "tests/tst.h"

/* ---- small file helpers ------------------------------------------------------------------- */
static unsigned char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc((size_t)n + 1);
  if (b && fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
  if (b) b[n] = 0;
  fclose(f);
  if (len) *len = (size_t)n;
  return b;
}
static cJSON *load_json(const char *dir, const char *file) {
  char p[4096];
  snprintf(p, sizeof p, "%s/%s", dir, file);
  char *s = (char *)slurp(p, NULL);
  cJSON *j = s ? cJSON_Parse(s) : NULL;
  free(s);
  return j;
}
static int jint(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsNumber(v) ? v->valueint : -1;
}
static const char *tmpdir(void) {
  const char *t = getenv("MOESCOPE_TMP");
  return t && *t ? t : "/tmp";
}
static void mkpath(char *buf, size_t n, const char *leaf) {
  snprintf(buf, n, "%s/synth_%ld_%s", tmpdir(), (long)getpid(), leaf);
}
static void rm_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  char p[4096];
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    struct stat st;
    if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) rm_dir(p);
    else unlink(p);
  }
  closedir(d);
  rmdir(dir);
}
static int count_entries(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  closedir(d);
  return n;
}

/* ---- minimal safetensors reader ---------------------------------------------------------- */
typedef struct {
  char name[160];
  char dtype[8];
  int ndim;
  int64_t shape[4];
  int64_t numel;
  const unsigned char *raw;
  double *v;           /* widened values */
} rt_tensor;
typedef struct {
  unsigned char *file;
  size_t size;
  rt_tensor *t;
  int n;
} rt_model;

static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static double f16_to_double(uint16_t h) {           /* independent of eng_stw_f16_to_f32 */
  int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
  double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
  return s ? -v : v;
}

/* Returns 0 and fills m, or -1 after failing a CHECK that says why. */
static int rt_load(rt_model *m, const char *dir) {
  char p[4096];
  memset(m, 0, sizeof *m);
  snprintf(p, sizeof p, "%s/model.safetensors", dir);
  m->file = slurp(p, &m->size);
  CHECKF(m->file != NULL, "cannot read %s", p);
  if (!m->file || m->size < 8) return -1;
  uint64_t n = 0;
  for (int i = 0; i < 8; i++) n |= (uint64_t)m->file[i] << (8 * i);
  CHECKF(n % 8 == 0, "header length %llu not a multiple of 8", (unsigned long long)n);
  CHECK(8 + n <= m->size);
  if (8 + n > m->size) return -1;
  char *hdr = malloc(n + 1);
  memcpy(hdr, m->file + 8, n);
  hdr[n] = 0;
  size_t jl = n;
  while (jl > 0 && hdr[jl - 1] == ' ') jl--;
  CHECK(jl > 0 && hdr[jl - 1] == '}');
  CHECK(n - jl < 8);                                 /* padding is only to the next 8 */
  cJSON *j = cJSON_Parse(hdr);
  free(hdr);
  CHECK(j != NULL);
  if (!j) return -1;
  const cJSON *meta = cJSON_GetObjectItemCaseSensitive(j, "__metadata__");
  CHECK(meta && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(meta, "format")) &&
        !strcmp(cJSON_GetObjectItemCaseSensitive(meta, "format")->valuestring, "pt"));
  CHECK(j->child && !strcmp(j->child->string, "__metadata__"));
  int cnt = cJSON_GetArraySize(j) - 1;
  m->t = calloc((size_t)cnt + 1, sizeof *m->t);
  const unsigned char *data = m->file + 8 + n;
  uint64_t data_len = m->size - 8 - n, expect_off = 0;
  const char *prev = "";
  int ok = 1;
  for (const cJSON *c = j->child; c; c = c->next) {
    if (!strcmp(c->string, "__metadata__")) continue;
    rt_tensor *t = &m->t[m->n++];
    snprintf(t->name, sizeof t->name, "%s", c->string);
    CHECKF(strcmp(prev, t->name) < 0, "tensor %s not in name order after %s", t->name, prev);
    prev = c->string;
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(c, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(c, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(c, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2) {
      CHECKF(0, "tensor %s: bad header entry", t->name);
      ok = 0;
      break;
    }
    snprintf(t->dtype, sizeof t->dtype, "%s", dt->valuestring);
    size_t es = !strcmp(t->dtype, "F32") ? 4 : (!strcmp(t->dtype, "BF16") || !strcmp(t->dtype, "F16")) ? 2 : 0;
    CHECKF(es != 0, "tensor %s: dtype %s", t->name, t->dtype);
    t->ndim = cJSON_GetArraySize(sh);
    CHECK(t->ndim >= 1 && t->ndim <= 4);
    t->numel = 1;
    for (int d = 0; d < t->ndim && d < 4; d++) {
      t->shape[d] = (int64_t)cJSON_GetArrayItem(sh, d)->valuedouble;
      t->numel *= t->shape[d];
    }
    uint64_t b0 = (uint64_t)cJSON_GetArrayItem(of, 0)->valuedouble;
    uint64_t b1 = (uint64_t)cJSON_GetArrayItem(of, 1)->valuedouble;
    CHECKF(b0 == expect_off, "tensor %s: begins at %llu, expected %llu (not contiguous)", t->name,
           (unsigned long long)b0, (unsigned long long)expect_off);
    CHECKF(b1 - b0 == (uint64_t)t->numel * es, "tensor %s: %llu bytes for %lld elements", t->name,
           (unsigned long long)(b1 - b0), (long long)t->numel);
    if (b0 != expect_off || b1 > data_len || b1 - b0 != (uint64_t)t->numel * es || !es) { ok = 0; break; }
    expect_off = b1;
    t->raw = data + b0;
    t->v = malloc((size_t)t->numel * sizeof(double));
    for (int64_t i = 0; i < t->numel; i++) {
      const unsigned char *r = t->raw + i * (int64_t)es;
      if (es == 4) t->v[i] = bits_f32((uint32_t)r[0] | (uint32_t)r[1] << 8 | (uint32_t)r[2] << 16 | (uint32_t)r[3] << 24);
      else {
        uint16_t h = (uint16_t)(r[0] | r[1] << 8);
        t->v[i] = t->dtype[0] == 'B' ? (double)bits_f32((uint32_t)h << 16) : f16_to_double(h);
      }
    }
  }
  CHECKF(!ok || expect_off == data_len, "data is %llu bytes, tensors cover %llu",
         (unsigned long long)data_len, (unsigned long long)expect_off);
  cJSON_Delete(j);
  return ok ? 0 : -1;
}
static void rt_free(rt_model *m) {
  for (int i = 0; i < m->n; i++) free(m->t[i].v);
  free(m->t);
  free(m->file);
}
static rt_tensor *rt_get(rt_model *m, const char *name) {
  for (int i = 0; i < m->n; i++) if (!strcmp(m->t[i].name, name)) return &m->t[i];
  return NULL;
}

/* ---- model config + name/shape completeness ---------------------------------------------- */
typedef struct { int L, E, K, H, V, NH, NKV, HD, I; double eps, theta; } cfg_t;

static int read_cfg(const char *dir, cfg_t *c, cJSON **out) {
  cJSON *j = load_json(dir, "config.json");
  CHECK(j != NULL);
  if (!j) return -1;
  c->L = jint(j, "num_hidden_layers"); c->E = jint(j, "num_local_experts");
  c->K = jint(j, "num_experts_per_tok"); c->H = jint(j, "hidden_size");
  c->V = jint(j, "vocab_size"); c->NH = jint(j, "num_attention_heads");
  c->NKV = jint(j, "num_key_value_heads"); c->HD = jint(j, "head_dim");
  c->I = jint(j, "intermediate_size");
  c->eps = cJSON_GetObjectItem(j, "rms_norm_eps")->valuedouble;
  c->theta = cJSON_GetObjectItem(j, "rope_theta")->valuedouble;
  CHECK(!strcmp(cJSON_GetObjectItem(j, "model_type")->valuestring, "mixtral"));
  CHECK(!strcmp(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "architectures"), 0)->valuestring,
                "MixtralForCausalLM"));
  CHECK(cJSON_IsFalse(cJSON_GetObjectItem(j, "tie_word_embeddings")));
  CHECK_NEAR(c->eps, 1e-5, 1e-20);
  CHECK_NEAR(c->theta, 10000.0, 0);
  CHECK(c->HD * c->NH == c->H);
  CHECK(jint(j, "bos_token_id") == c->V - 1 && jint(j, "eos_token_id") == c->V - 1);
  CHECK(jint(j, "max_position_embeddings") > 0);
  CHECK(cJSON_IsString(cJSON_GetObjectItem(j, "torch_dtype")));
  CHECK(cJSON_IsObject(cJSON_GetObjectItem(j, "moescope_synth")));
  *out = j;
  return 0;
}

static void check_shape(rt_model *m, const char *name, int ndim, int64_t d0, int64_t d1) {
  rt_tensor *t = rt_get(m, name);
  CHECKF(t != NULL, "missing tensor %s", name);
  if (!t) return;
  CHECKF(t->ndim == ndim && t->shape[0] == d0 && (ndim == 1 || t->shape[1] == d1),
         "tensor %s: shape [%lld,%lld] ndim %d", name, (long long)t->shape[0],
         (long long)(t->ndim > 1 ? t->shape[1] : 0), t->ndim);
}

static void check_names(rt_model *m, const cfg_t *c, const char *dtype) {
  char nm[200];
  int expected = 3 + c->L * (7 + 3 * c->E);
  CHECKF(m->n == expected, "%d tensors, expected %d", m->n, expected);
  for (int i = 0; i < m->n; i++) CHECKF(!strcmp(m->t[i].dtype, dtype), "%s is %s", m->t[i].name, m->t[i].dtype);
  check_shape(m, "model.embed_tokens.weight", 2, c->V, c->H);
  check_shape(m, "lm_head.weight", 2, c->V, c->H);
  check_shape(m, "model.norm.weight", 1, c->H, 0);
  for (int l = 0; l < c->L; l++) {
#define N(...) (snprintf(nm, sizeof nm, __VA_ARGS__), nm)
    check_shape(m, N("model.layers.%d.input_layernorm.weight", l), 1, c->H, 0);
    check_shape(m, N("model.layers.%d.post_attention_layernorm.weight", l), 1, c->H, 0);
    check_shape(m, N("model.layers.%d.self_attn.q_proj.weight", l), 2, c->NH * c->HD, c->H);
    check_shape(m, N("model.layers.%d.self_attn.k_proj.weight", l), 2, c->NKV * c->HD, c->H);
    check_shape(m, N("model.layers.%d.self_attn.v_proj.weight", l), 2, c->NKV * c->HD, c->H);
    check_shape(m, N("model.layers.%d.self_attn.o_proj.weight", l), 2, c->H, c->NH * c->HD);
    check_shape(m, N("model.layers.%d.block_sparse_moe.gate.weight", l), 2, c->E, c->H);
    for (int e = 0; e < c->E; e++) {
      check_shape(m, N("model.layers.%d.block_sparse_moe.experts.%d.w1.weight", l, e), 2, c->I, c->H);
      check_shape(m, N("model.layers.%d.block_sparse_moe.experts.%d.w3.weight", l, e), 2, c->I, c->H);
      check_shape(m, N("model.layers.%d.block_sparse_moe.experts.%d.w2.weight", l, e), 2, c->H, c->I);
    }
#undef N
  }
}

/* ---- float64 reference forward (routing only is recorded) ---------------------------------- */
static const double *W(rt_model *m, const char *fmt, int l, int e) {
  char nm[200];
  snprintf(nm, sizeof nm, fmt, l, e);
  rt_tensor *t = rt_get(m, nm);
  REQUIRE(t != NULL);
  return t->v;
}
static void matvec(const double *w, const double *x, double *y, int rows, int cols) {
  for (int r = 0; r < rows; r++) {
    double s = 0;
    for (int k = 0; k < cols; k++) s += w[(size_t)r * cols + k] * x[k];
    y[r] = s;
  }
}
static void rmsnorm(const double *x, const double *w, double *y, int n, double eps) {
  double ss = 0;
  for (int i = 0; i < n; i++) ss += x[i] * x[i];
  double inv = 1.0 / sqrt(ss / n + eps);
  for (int i = 0; i < n; i++) y[i] = w[i] * x[i] * inv;
}
static void rope(double *v, int hd, int pos, double theta) {
  for (int i = 0; i < hd / 2; i++) {
    double a = pos * pow(theta, -2.0 * i / hd), c = cos(a), s = sin(a);
    double x0 = v[i], x1 = v[i + hd / 2];
    v[i] = x0 * c - x1 * s;
    v[i + hd / 2] = x1 * c + x0 * s;
  }
}

/* chosen[(l*T + t)*K + j] = expert of slot j (descending probability). */
static void ref_forward(rt_model *m, const cfg_t *c, const int *ids, int T, int *chosen) {
  int H = c->H, HD = c->HD, Q = c->NH * HD, KV = c->NKV * HD, E = c->E, K = c->K, I = c->I;
  double *x = calloc((size_t)T * H, sizeof *x), *h = malloc(sizeof(double) * H);
  double *q = malloc(sizeof(double) * (size_t)T * Q), *k = malloc(sizeof(double) * (size_t)T * KV);
  double *v = malloc(sizeof(double) * (size_t)T * KV), *att = malloc(sizeof(double) * Q);
  double *o = malloc(sizeof(double) * H), *sc = malloc(sizeof(double) * T);
  double *lg = malloc(sizeof(double) * E), *a1 = malloc(sizeof(double) * I);
  double *a3 = malloc(sizeof(double) * I), *acc = calloc((size_t)T * H, sizeof(double));
  const double *emb = W(m, "model.embed_tokens.weight%.0d%.0d", 0, 0);
  for (int t = 0; t < T; t++) memcpy(x + (size_t)t * H, emb + (size_t)ids[t] * H, sizeof(double) * H);
  for (int l = 0; l < c->L; l++) {
    const double *ln1 = W(m, "model.layers.%d.input_layernorm.weight%.0d", l, 0);
    const double *ln2 = W(m, "model.layers.%d.post_attention_layernorm.weight%.0d", l, 0);
    const double *wq = W(m, "model.layers.%d.self_attn.q_proj.weight%.0d", l, 0);
    const double *wk = W(m, "model.layers.%d.self_attn.k_proj.weight%.0d", l, 0);
    const double *wv = W(m, "model.layers.%d.self_attn.v_proj.weight%.0d", l, 0);
    const double *wo = W(m, "model.layers.%d.self_attn.o_proj.weight%.0d", l, 0);
    const double *wg = W(m, "model.layers.%d.block_sparse_moe.gate.weight%.0d", l, 0);
    for (int t = 0; t < T; t++) {
      rmsnorm(x + (size_t)t * H, ln1, h, H, c->eps);
      matvec(wq, h, q + (size_t)t * Q, Q, H);
      matvec(wk, h, k + (size_t)t * KV, KV, H);
      matvec(wv, h, v + (size_t)t * KV, KV, H);
      for (int j = 0; j < c->NH; j++) rope(q + (size_t)t * Q + j * HD, HD, t, c->theta);
      for (int j = 0; j < c->NKV; j++) rope(k + (size_t)t * KV + j * HD, HD, t, c->theta);
    }
    for (int t = 0; t < T; t++) {           /* attention, then residual (all rows after) */
      for (int j = 0; j < c->NH; j++) {
        int kvh = j / (c->NH / c->NKV);
        double mx = -INFINITY, z = 0;
        for (int s = 0; s <= t; s++) {
          double d = 0;
          for (int i = 0; i < HD; i++) d += q[(size_t)t * Q + j * HD + i] * k[(size_t)s * KV + kvh * HD + i];
          sc[s] = d / sqrt((double)HD);
          if (sc[s] > mx) mx = sc[s];
        }
        for (int s = 0; s <= t; s++) { sc[s] = exp(sc[s] - mx); z += sc[s]; }
        for (int i = 0; i < HD; i++) {
          double a = 0;
          for (int s = 0; s <= t; s++) a += sc[s] * v[(size_t)s * KV + kvh * HD + i];
          att[j * HD + i] = a / z;
        }
      }
      matvec(wo, att, o, H, Q);
      for (int i = 0; i < H; i++) acc[(size_t)t * H + i] = o[i];
    }
    for (size_t i = 0; i < (size_t)T * H; i++) x[i] += acc[i];
    for (int t = 0; t < T; t++) {           /* MoE */
      double *xt = x + (size_t)t * H;
      rmsnorm(xt, ln2, h, H, c->eps);
      matvec(wg, h, lg, E, H);
      double mx = -INFINITY, z = 0;
      for (int e = 0; e < E; e++) if (lg[e] > mx) mx = lg[e];
      for (int e = 0; e < E; e++) { lg[e] = exp(lg[e] - mx); z += lg[e]; }
      for (int e = 0; e < E; e++) lg[e] /= z;
      int *ch = chosen + ((size_t)l * T + t) * K;
      double wsum = 0;
      for (int j = 0; j < K; j++) {
        int best = -1;
        for (int e = 0; e < E; e++) {
          int used = 0;
          for (int u = 0; u < j; u++) used |= ch[u] == e;
          if (!used && (best < 0 || lg[e] > lg[best])) best = e;
        }
        ch[j] = best;
        wsum += lg[best];
      }
      for (int i = 0; i < H; i++) acc[i] = 0;
      for (int j = 0; j < K; j++) {
        const double *w1 = W(m, "model.layers.%d.block_sparse_moe.experts.%d.w1.weight", l, ch[j]);
        const double *w3 = W(m, "model.layers.%d.block_sparse_moe.experts.%d.w3.weight", l, ch[j]);
        const double *w2 = W(m, "model.layers.%d.block_sparse_moe.experts.%d.w2.weight", l, ch[j]);
        matvec(w1, h, a1, I, H);
        matvec(w3, h, a3, I, H);
        for (int i = 0; i < I; i++) a1[i] = a1[i] / (1 + exp(-a1[i])) * a3[i];
        matvec(w2, a1, o, H, I);
        double g = lg[ch[j]] / wsum;
        for (int i = 0; i < H; i++) acc[i] += g * o[i];
      }
      for (int i = 0; i < H; i++) xt[i] += acc[i];
    }
  }
  free(x); free(h); free(q); free(k); free(v); free(att); free(o); free(sc); free(lg);
  free(a1); free(a3); free(acc);
}

/* share of tokens (among those with mask[t], or all) whose top-k at layer l contains e */
static double share(const int *chosen, int l, int T, int K, int e, const int *ids, int lo, int hi) {
  int n = 0, hit = 0;
  for (int t = 0; t < T; t++) {
    if (lo >= 0 && (ids[t] < lo || ids[t] >= hi)) continue;
    n++;
    for (int j = 0; j < K; j++) hit += chosen[((size_t)l * T + t) * K + j] == e;
  }
  return n ? (double)hit / n : -1;
}
static double max_share(const int *chosen, int l, int T, int K, int E) {
  double mx = 0;
  for (int e = 0; e < E; e++) {
    double s = share(chosen, l, T, K, e, NULL, -1, -1);
    if (s > mx) mx = s;
  }
  return mx;
}

#define NTOK 128

static void random_ids(int *ids, int T, int V, uint64_t seed) {
  for (int t = 0; t < T; t++) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    ids[t] = (int)((seed >> 33) % (uint64_t)V);
  }
}

/* Writes a model, loads it, checks layout and the planted routing. Returns 0 on success. */
static int check_model(const eng_synth_opts *o, const char *leaf, const char *st_dtype) {
  char dir[4096], err[512] = "";
  mkpath(dir, sizeof dir, leaf);
  int rc = eng_synth_write(o, dir, err, sizeof err);
  CHECKF(rc == 0, "synth %s: %s", leaf, err);
  if (rc) return -1;
  cfg_t c;
  cJSON *cfg = NULL;
  rt_model m;
  if (read_cfg(dir, &c, &cfg) || rt_load(&m, dir)) { cJSON_Delete(cfg); return -1; }
  CHECK(c.L == o->layers && c.E == o->experts && c.K == o->top_k && c.H == o->hidden && c.V == o->vocab);
  check_names(&m, &c, st_dtype);
  const cJSON *ms = cJSON_GetObjectItem(cfg, "moescope_synth");
  const char *plant = cJSON_GetObjectItem(ms, "plant")->valuestring;
  CHECK(!strcmp(plant, o->plant));
  unsigned char planted[64] = {0};
  const cJSON *it;
  cJSON_ArrayForEach(it, cJSON_GetObjectItem(ms, "planted_layers")) planted[it->valueint] = 1;

  int ids[NTOK], *chosen = malloc(sizeof(int) * (size_t)c.L * NTOK * c.K);
  random_ids(ids, NTOK, c.V, o->seed + 7);
  ref_forward(&m, &c, ids, NTOK, chosen);
  printf("%s:", leaf);
  for (int l = 0; l < c.L; l++) printf(" L%d%s max %.2f", l, planted[l] ? "*" : "", max_share(chosen, l, NTOK, c.K, c.E));
  printf("\n");
  double minplanted = 2;

  if (!strcmp(plant, "collapse")) {
    int nl = 0;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(ms, "layers")) {
      int l = jint(it, "layer");
      CHECK(planted[l]);
      nl++;
      const cJSON *e;
      int ne = 0;
      cJSON_ArrayForEach(e, cJSON_GetObjectItem(it, "experts")) {
        double s = share(chosen, l, NTOK, c.K, e->valueint, NULL, -1, -1);
        CHECKF(s >= 0.90, "%s layer %d: collapse expert %d in top-k of %.2f of tokens", leaf, l, e->valueint, s);
        if (s < minplanted) minplanted = s;
        ne++;
      }
      CHECK(ne == o->collapse_experts);
    }
    CHECK(nl > 0);
    for (int l = 0; l < c.L; l++)
      if (!planted[l]) {
        double s = max_share(chosen, l, NTOK, c.K, c.E);
        CHECKF(s <= 0.50, "%s unplanted layer %d: an expert takes %.2f of tokens", leaf, l, s);
      }
  } else if (!strcmp(plant, "specialization")) {
    int nr = 0;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(ms, "token_ranges")) {
      int b = jint(it, "begin"), e = jint(it, "end"), ex = jint(it, "expert");
      CHECK(b == (int)((int64_t)nr * c.V / c.E) && ex == nr);
      CHECK(e == (int)((int64_t)(nr + 1) * c.V / c.E));
      for (int l = 0; l < c.L; l++)
        if (planted[l]) {
          double s = share(chosen, l, NTOK, c.K, ex, ids, b, e);
          CHECKF(s >= 0.90 || s < 0, "%s layer %d: range [%d,%d) picks expert %d for %.2f of tokens",
                 leaf, l, b, e, ex, s);
          if (s >= 0 && s < minplanted) minplanted = s;
        }
      nr++;
    }
    CHECK(nr == c.E);
    for (int l = 0; l < c.L; l++)
      if (!planted[l]) {
        double s = max_share(chosen, l, NTOK, c.K, c.E);
        CHECKF(s <= 0.50, "%s unplanted layer %d: an expert takes %.2f of tokens", leaf, l, s);
      }
  } else {
    for (int l = 0; l < c.L; l++) {
      double s = max_share(chosen, l, NTOK, c.K, c.E);
      CHECKF(s <= 0.50, "%s layer %d: an expert takes %.2f of tokens (balanced %.2f)", leaf, l, s,
             (double)c.K / c.E);
    }
  }
  if (minplanted <= 1) printf("%s: smallest planted share %.3f\n", leaf, minplanted);
  free(chosen);
  rt_free(&m);
  cJSON_Delete(cfg);
  return 0;
}

/* ---- tokenizer ------------------------------------------------------------------------------- */
static void check_tokenizer(const char *dir, int V) {
  cJSON *j = load_json(dir, "tokenizer.json");
  CHECK(j != NULL);
  if (!j) return;
  const cJSON *model = cJSON_GetObjectItem(j, "model");
  CHECK(!strcmp(cJSON_GetObjectItem(model, "type")->valuestring, "BPE"));
  CHECK(!strcmp(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "pre_tokenizer"), "type")->valuestring, "ByteLevel"));
  const cJSON *vocab = cJSON_GetObjectItem(model, "vocab"), *merges = cJSON_GetObjectItem(model, "merges");
  unsigned char *seen = calloc((size_t)V, 1);
  int nv = 0;
  const cJSON *it;
  cJSON_ArrayForEach(it, vocab) {
    int id = it->valueint;
    CHECK(id >= 0 && id < V);
    if (id >= 0 && id < V) { CHECKF(!seen[id], "id %d twice", id); seen[id] = 1; }
    nv++;
  }
  /* GPT-2 byte tokens (models/README.md): '!'=0, 'A'=32, byte 0 = U+0100 'Ā' = 188,
   * '\n' = 'Ċ' = 198, ' ' = 'Ġ' = 220, 0xFF 'ÿ' = 187 */
  CHECK(jint(vocab, "!") == 0);
  CHECK(jint(vocab, "A") == 32);
  CHECK(jint(vocab, "\xC4\x80") == 188);
  CHECK(jint(vocab, "\xC4\x8A") == 198);
  CHECK(jint(vocab, "\xC4\xA0") == 220);
  CHECK(jint(vocab, "\xC3\xBF") == 187);
  int nm = cJSON_GetArraySize(merges), i = 0;
  CHECK(nm == nv - 256);
  cJSON_ArrayForEach(it, merges) {
    char a[256], b[256], ab[512];
    const char *s = it->valuestring, *sp = strchr(s, ' ');
    CHECK(sp != NULL && strchr(sp + 1, ' ') == NULL);
    if (!sp) break;
    snprintf(a, sizeof a, "%.*s", (int)(sp - s), s);
    snprintf(b, sizeof b, "%s", sp + 1);
    snprintf(ab, sizeof ab, "%s%s", a, b);
    CHECKF(jint(vocab, a) >= 0 && jint(vocab, b) >= 0, "merge %d '%s': parts not in vocab", i, s);
    CHECKF(jint(vocab, ab) == 256 + i, "merge %d '%s' -> id %d", i, s, jint(vocab, ab));
    i++;
  }
  int eos = -1, na = 0;
  cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, "added_tokens")) {
    int id = jint(it, "id");
    CHECK(id >= 0 && id < V);
    if (id >= 0 && id < V) { CHECKF(!seen[id], "added id %d twice", id); seen[id] = 1; }
    if (!strcmp(cJSON_GetObjectItem(it, "content")->valuestring, "<|endoftext|>")) eos = id;
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(it, "special")));
    na++;
  }
  CHECK(eos == V - 1);
  CHECK(nv + na == V);
  int all = 1;
  for (int k = 0; k < V; k++) all &= seen[k];
  CHECK(all);
  printf("tokenizer V=%d: %d merges, %d added tokens\n", V, nm, na);
  free(seen);
  cJSON_Delete(j);
  cJSON *tc = load_json(dir, "tokenizer_config.json");
  CHECK(tc && !strcmp(cJSON_GetObjectItem(tc, "eos_token")->valuestring, "<|endoftext|>") &&
        !strcmp(cJSON_GetObjectItem(tc, "bos_token")->valuestring, "<|endoftext|>"));
  cJSON_Delete(tc);
}

/* ---- rounding ------------------------------------------------------------------------------- */
static void test_rounding(void) {
  CHECK(eng_stw_f32_to_bf16(1.0f) == 0x3F80);
  CHECK(eng_stw_f32_to_bf16(-2.0f) == 0xC000);
  CHECK(eng_stw_f32_to_bf16(1.0f + 0x1p-8f) == 0x3F80);            /* tie -> even */
  CHECK(eng_stw_f32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3F82);        /* tie -> even (up) */
  CHECK(eng_stw_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f) == 0x3F81); /* above tie */
  CHECK(eng_stw_f32_to_bf16(3.14159265f) == 0x4049);
  CHECK(eng_stw_f32_to_bf16(INFINITY) == 0x7F80);
  CHECK(eng_stw_f32_to_bf16(3.4e38f) == 0x7F80);                   /* rounds past max -> inf */
  CHECK((eng_stw_f32_to_bf16(NAN) & 0x7F80) == 0x7F80 && (eng_stw_f32_to_bf16(NAN) & 0x7F));
  CHECK(eng_stw_f32_to_f16(1.0f) == 0x3C00);
  CHECK(eng_stw_f32_to_f16(-2.0f) == 0xC000);
  CHECK(eng_stw_f32_to_f16(1.0f + 0x1p-11f) == 0x3C00);            /* tie -> even */
  CHECK(eng_stw_f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3C02);
  CHECK(eng_stw_f32_to_f16(0.1f) == 0x2E66);
  CHECK(eng_stw_f32_to_f16(65504.0f) == 0x7BFF);
  CHECK(eng_stw_f32_to_f16(65519.0f) == 0x7BFF);
  CHECK(eng_stw_f32_to_f16(65520.0f) == 0x7C00);                   /* tie at max -> inf */
  CHECK(eng_stw_f32_to_f16(0x1p-14f) == 0x0400);                   /* smallest normal */
  CHECK(eng_stw_f32_to_f16(0x1p-24f) == 0x0001);                   /* smallest subnormal */
  CHECK(eng_stw_f32_to_f16(0x1p-25f) == 0x0000);                   /* tie -> even (0) */
  CHECK(eng_stw_f32_to_f16(3 * 0x1p-26f) == 0x0001);
  CHECK(eng_stw_f32_to_f16(3 * 0x1p-25f) == 0x0002);               /* 1.5 ulp tie -> even 2 */
  CHECK(eng_stw_f32_to_f16(-0x1p-30f) == 0x8000);
  CHECK(eng_stw_f32_to_f16(0x1p-14f - 0x1p-25f) == 0x0400);        /* subnormal rounds up to normal */
  CHECK((eng_stw_f32_to_f16(NAN) & 0x7C00) == 0x7C00 && (eng_stw_f32_to_f16(NAN) & 0x3FF));
  /* exhaustive round trip: every finite half / bfloat16 widens and narrows back exactly,
   * and the independent decoder agrees */
  int bad = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    if ((h & 0x7C00) != 0x7C00) {
      float f = eng_stw_f16_to_f32((uint16_t)h);
      bad += eng_stw_f32_to_f16(f) != h || (double)f != f16_to_double((uint16_t)h);
    }
    if ((h & 0x7F80) != 0x7F80) bad += eng_stw_f32_to_bf16(eng_stw_bf16_to_f32((uint16_t)h)) != h;
  }
  CHECKF(bad == 0, "%d half/bf16 round trips failed", bad);
  /* midpoints between consecutive positive halves go to the even neighbour */
  bad = 0;
  for (uint32_t h = 0; h < 0x7BFF; h++) {
    double mid = (f16_to_double((uint16_t)h) + f16_to_double((uint16_t)(h + 1))) / 2;
    uint16_t r = eng_stw_f32_to_f16((float)mid);                   /* mid is exact in float */
    bad += r != ((h & 1) ? h + 1 : h);
  }
  CHECKF(bad == 0, "%d f16 midpoints not rounded to even", bad);
}

/* ---- writer: direct use, atomicity -------------------------------------------------------- */
static void test_writer(void) {
  char dir[4096], err[512] = "";
  mkpath(dir, sizeof dir, "writer");
  mkdir(dir, 0755);
  eng_stw *w = eng_stw_new();
  float a[6] = {1, 2, 3, 4, 5, 6}, b[2] = {1.0f + 0x1p-8f, -0.5f};
  int64_t sa[2] = {2, 3}, sb[1] = {2};
  CHECK(eng_stw_add(w, "zeta", ENG_STW_F32, 2, sa, a, err, sizeof err) == 0);
  CHECK(eng_stw_add(w, "alpha", ENG_STW_BF16, 1, sb, b, err, sizeof err) == 0);
  CHECK(eng_stw_add(w, "mid", ENG_STW_F16, 1, sb, b, err, sizeof err) == 0);
  CHECK(eng_stw_add(w, "alpha", ENG_STW_F32, 1, sb, b, err, sizeof err) == -1 && strstr(err, "duplicate"));
  CHECK(eng_stw_add(w, "__metadata__", ENG_STW_F32, 1, sb, b, err, sizeof err) == -1);
  CHECK(eng_stw_write_dir(w, dir, err, sizeof err) == 0);
  rt_model m;
  if (rt_load(&m, dir) == 0) {
    CHECK(m.n == 3 && !strcmp(m.t[0].name, "alpha") && !strcmp(m.t[1].name, "mid") && !strcmp(m.t[2].name, "zeta"));
    CHECK(m.t[0].v[0] == 1.0 && m.t[0].v[1] == -0.5);           /* bf16 tie rounded to even */
    CHECK(m.t[1].v[0] == 1.00390625 && m.t[1].v[1] == -0.5);     /* exact in f16 */
    CHECK(m.t[2].shape[0] == 2 && m.t[2].shape[1] == 3 && m.t[2].v[5] == 6.0);
    CHECK(m.t[0].raw[0] == 0x80 && m.t[0].raw[1] == 0x3F);      /* little-endian 0x3F80 */
    rt_free(&m);
  }
  /* the target path is a folder: rename fails; the error is one line, no temp file is left */
  char sub[4200];
  snprintf(sub, sizeof sub, "%s/blocked", dir);
  mkdir(sub, 0755);
  snprintf(sub, sizeof sub, "%s/blocked/model.safetensors", dir);
  mkdir(sub, 0755);
  snprintf(sub, sizeof sub, "%s/blocked", dir);
  err[0] = 0;
  CHECK(eng_stw_write_dir(w, sub, err, sizeof err) == -1);
  CHECK(strstr(err, "model.safetensors") != NULL && strchr(err, '\n') == NULL);
  printf("blocked write: %s\n", err);
  CHECK(count_entries(sub) == 1);
  /* folder that does not exist */
  snprintf(sub, sizeof sub, "%s/nope/deeper", dir);
  CHECK(eng_stw_write_dir(w, sub, err, sizeof err) == -1 && strstr(err, "No such file"));
  /* a write that fails half way (file size limit -> EFBIG, like ENOSPC): -1, one line,
   * neither the target nor the temp file is left behind */
  snprintf(sub, sizeof sub, "%s/fsize", dir);
  mkdir(sub, 0755);
  float *big = calloc(1 << 16, sizeof(float));
  int64_t sbig[1] = {1 << 16};
  CHECK(eng_stw_add(w, "big", ENG_STW_F32, 1, sbig, big, err, sizeof err) == 0);
  free(big);
  struct rlimit old;
  getrlimit(RLIMIT_FSIZE, &old);
  struct rlimit lim = old;
  lim.rlim_cur = 65536;
  void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
  if (setrlimit(RLIMIT_FSIZE, &lim) == 0) {
    err[0] = 0;
    int rc = eng_stw_write_dir(w, sub, err, sizeof err);
    setrlimit(RLIMIT_FSIZE, &old);
    CHECK(rc == -1 && strstr(err, "File too large") && strchr(err, '\n') == NULL);
    printf("size-limited write: %s\n", err);
    CHECK(count_entries(sub) == 0);
  }
  signal(SIGXFSZ, prev);
  eng_stw_free(w);
  rm_dir(dir);
}

/* ---- determinism and dtype conversion through the file -------------------------------------- */
static int files_equal(const char *d1, const char *d2, const char *file) {
  char p1[4200], p2[4200];
  snprintf(p1, sizeof p1, "%s/%s", d1, file);
  snprintf(p2, sizeof p2, "%s/%s", d2, file);
  size_t n1, n2;
  unsigned char *a = slurp(p1, &n1), *b = slurp(p2, &n2);
  int eq = a && b && n1 == n2 && !memcmp(a, b, n1);
  free(a); free(b);
  return eq;
}

static void test_determinism(void) {
  eng_synth_opts o;
  eng_synth_defaults(&o);
  o.plant = "collapse";
  o.layers = 2;
  char d1[4096], d2[4096], d3[4096], err[512];
  mkpath(d1, sizeof d1, "det1");
  mkpath(d2, sizeof d2, "det2");
  mkpath(d3, sizeof d3, "det3");
  CHECK(eng_synth_write(&o, d1, err, sizeof err) == 0);
  CHECK(eng_synth_write(&o, d2, err, sizeof err) == 0);
  o.seed = 2;
  CHECK(eng_synth_write(&o, d3, err, sizeof err) == 0);
  static const char *files[] = {"model.safetensors", "config.json", "tokenizer.json",
                                "tokenizer_config.json", "generation_config.json"};
  for (int i = 0; i < 5; i++) CHECKF(files_equal(d1, d2, files[i]), "%s differs for the same seed", files[i]);
  CHECK(!files_equal(d1, d3, "model.safetensors"));
  CHECK(!files_equal(d1, d3, "config.json"));                  /* seed recorded */
  CHECK(files_equal(d1, d3, "tokenizer.json"));                /* tokenizer does not depend on seed */
  /* the same model in bf16 / f16 holds exactly the rounded f32 values */
  o.seed = 1;
  char db[4096], dh[4096];
  mkpath(db, sizeof db, "detbf16");
  mkpath(dh, sizeof dh, "detf16");
  o.dtype = "bf16";
  CHECK(eng_synth_write(&o, db, err, sizeof err) == 0);
  o.dtype = "f16";
  CHECK(eng_synth_write(&o, dh, err, sizeof err) == 0);
  rt_model mf, mb, mh;
  if (rt_load(&mf, d1) == 0 && rt_load(&mb, db) == 0 && rt_load(&mh, dh) == 0) {
    CHECK(mf.n == mb.n && mf.n == mh.n);
    int bad = 0;
    int64_t total = 0;
    for (int i = 0; i < mf.n && i < mb.n && i < mh.n; i++) {
      CHECK(!strcmp(mf.t[i].name, mb.t[i].name) && !strcmp(mf.t[i].name, mh.t[i].name));
      for (int64_t k = 0; k < mf.t[i].numel; k++) {
        float f = (float)mf.t[i].v[k];
        uint16_t hb = (uint16_t)(mb.t[i].raw[2 * k] | mb.t[i].raw[2 * k + 1] << 8);
        uint16_t hh = (uint16_t)(mh.t[i].raw[2 * k] | mh.t[i].raw[2 * k + 1] << 8);
        bad += hb != eng_stw_f32_to_bf16(f) || hh != eng_stw_f32_to_f16(f);
        bad += fabs(mb.t[i].v[k] - f) > fabs(f) * 0x1p-8 + 1e-30;   /* half an ulp of bf16 */
        total++;
      }
    }
    CHECKF(bad == 0, "%d of %lld values not rounded as expected", bad, (long long)total);
    rt_tensor *e = rt_get(&mb, "model.embed_tokens.weight");
    CHECK(e && e->v[0] == 4.0);                                  /* collapse signal on dim 0 */
    rt_free(&mf); rt_free(&mb); rt_free(&mh);
  }
  cJSON *cb = load_json(db, "config.json");
  CHECK(cb && !strcmp(cJSON_GetObjectItem(cb, "torch_dtype")->valuestring, "bfloat16"));
  cJSON_Delete(cb);
  rm_dir(d1); rm_dir(d2); rm_dir(d3); rm_dir(db); rm_dir(dh);
}

/* ---- bad options ------------------------------------------------------------------------------ */
static void expect_bad(eng_synth_opts *o, const char *dir, const char *needle) {
  char err[512] = "";
  int rc = eng_synth_write(o, dir, err, sizeof err);
  CHECKF(rc == -1, "expected failure (%s)", needle);
  CHECKF(strstr(err, needle) != NULL, "error '%s' lacks '%s'", err, needle);
  CHECKF(err[0] && strchr(err, '\n') == NULL, "error not one line: '%s'", err);
  printf("bad option -> %s\n", err);
}

static void test_bad_options(void) {
  char dir[4096];
  mkpath(dir, sizeof dir, "bad");
  eng_synth_opts o;
#define BAD(stmt, needle) do { eng_synth_defaults(&o); stmt; expect_bad(&o, dir, needle); } while (0)
  BAD(o.top_k = 9, "top_k");
  BAD((o.experts = 1, o.top_k = 2), "top_k");
  BAD(o.heads = 5, "not divisible by heads");
  BAD((o.heads = 4, o.kv_heads = 3), "kv_heads");
  BAD(o.plant = "zigzag", "unknown plant");
  BAD(o.family = "llama", "unknown family");
  BAD(o.dtype = "f8", "unknown dtype");
  BAD(o.vocab = 100, "vocab");
  BAD(o.layers = 0, "layers");
  BAD((o.plant = "collapse", o.plant_layers = "1,9"), "out of range");
  BAD((o.plant = "collapse", o.plant_layers = "1;3"), "bad plant layer list");
  BAD((o.plant = "collapse", o.collapse_experts = 8), "collapse_experts");
  BAD(o.plant_layers = "1", "plant is none");
  BAD((o.plant = "specialization", o.experts = 63, o.top_k = 2), "hidden >= experts + 2");
  BAD((o.hidden = 1 << 16, o.intermediate = 1 << 16, o.experts = 64), "too large");
  struct stat st;
  CHECK(stat(dir, &st) != 0);                                   /* nothing was created */
  /* unwritable output folder: a path below a regular file */
  char file[4200], below[4300];
  snprintf(file, sizeof file, "%s_file", dir);
  FILE *f = fopen(file, "w");
  if (f) fclose(f);
  snprintf(below, sizeof below, "%s/model", file);
  eng_synth_defaults(&o);
  expect_bad(&o, below, "cannot create output folder");
  expect_bad(&o, file, "not a folder");
  unlink(file);
#undef BAD
}

int main(void) {
  test_rounding();
  test_writer();
  test_determinism();
  test_bad_options();

  eng_synth_opts o;
  char dir[4096];
  /* none, default shape */
  eng_synth_defaults(&o);
  check_model(&o, "none", "F32");
  mkpath(dir, sizeof dir, "none");
  check_tokenizer(dir, o.vocab);
  rm_dir(dir);
  /* collapse, default layers (odd), bf16 */
  eng_synth_defaults(&o);
  o.plant = "collapse";
  o.dtype = "bf16";
  o.seed = 11;
  check_model(&o, "collapse_bf16", "BF16");
  mkpath(dir, sizeof dir, "collapse_bf16");
  rm_dir(dir);
  /* collapse of two experts into top-2 in layers 0 and 2, f32 */
  eng_synth_defaults(&o);
  o.plant = "collapse";
  o.plant_layers = "0, 2";
  o.collapse_experts = 2;
  o.seed = 12;
  check_model(&o, "collapse2", "F32");
  mkpath(dir, sizeof dir, "collapse2");
  rm_dir(dir);
  /* specialization, all layers, f16 */
  eng_synth_defaults(&o);
  o.plant = "specialization";
  o.dtype = "f16";
  o.seed = 13;
  check_model(&o, "spec_f16", "F16");
  mkpath(dir, sizeof dir, "spec_f16");
  rm_dir(dir);
  /* specialization in layers 1,3 only, 16 experts top-4, 6 layers */
  eng_synth_defaults(&o);
  o.plant = "specialization";
  o.plant_layers = "1,3";
  o.layers = 6;
  o.experts = 16;
  o.top_k = 4;
  o.hidden = 96;
  o.heads = 6;
  o.kv_heads = 3;
  o.vocab = 1000;
  o.seed = 14;
  check_model(&o, "spec16", "F32");
  mkpath(dir, sizeof dir, "spec16");
  rm_dir(dir);
  /* large vocab: merges run out, filled with <|synth_N|> added tokens */
  eng_synth_defaults(&o);
  o.layers = 1;
  o.vocab = 2048;
  check_model(&o, "vocab2048", "F32");
  mkpath(dir, sizeof dir, "vocab2048");
  check_tokenizer(dir, o.vocab);
  rm_dir(dir);
  return tst_done();
}
