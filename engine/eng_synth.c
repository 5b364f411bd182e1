/* eng_synth.c — `moescope synth` backend: a random HF-layout Mixtral model with planted
 * routing structure (see eng_synth.h for the construction), its config.json, and a small
 * byte-level BPE tokenizer learned on a built-in paragraph.
 *
 * Randomness: splitmix64, one stream per tensor (seeded from the seed and the tensor name, so
 * the draw order of other tensors does not matter); normals are Irwin-Hall (sum of 12
 * uniforms - 6), pure arithmetic, so files are bit-identical across libm versions. */
#include "engine/eng_synth.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "engine/eng_st_write.h"
#include "engine/eng_synth_int.h"

enum { PLANT_NONE = 0, PLANT_SPEC = 1, PLANT_COLLAPSE = 2 };

#define SYNTH_MAX_PARAMS ((int64_t)1 << 31)

/* ---- options ----------------------------------------------------------------------------- */
void eng_synth_defaults(eng_synth_opts *o) {
  memset(o, 0, sizeof *o);
  o->family = "mixtral";
  o->layers = 4; o->experts = 8; o->top_k = 2; o->hidden = 64; o->vocab = 512;
  o->heads = 4; o->kv_heads = 2; o->intermediate = 128; o->max_pos = 512;
  o->plant = "none"; o->plant_layers = NULL; o->collapse_experts = 1;
  o->seed = 1; o->dtype = "f32";
}

static int parse_plant(const char *p) {
  if (!p || !strcmp(p, "none")) return PLANT_NONE;
  if (!strcmp(p, "specialization") || !strcmp(p, "specialisation")) return PLANT_SPEC;
  if (!strcmp(p, "collapse")) return PLANT_COLLAPSE;
  return -1;
}

static int parse_dtype(const char *d, eng_stw_dtype *dt, const char **torch) {
  if (!d || !strcmp(d, "f32") || !strcmp(d, "float32") || !strcmp(d, "fp32")) {
    *dt = ENG_STW_F32; *torch = "float32"; return 0;
  }
  if (!strcmp(d, "bf16") || !strcmp(d, "bfloat16")) { *dt = ENG_STW_BF16; *torch = "bfloat16"; return 0; }
  if (!strcmp(d, "f16") || !strcmp(d, "float16") || !strcmp(d, "fp16")) {
    *dt = ENG_STW_F16; *torch = "float16"; return 0;
  }
  return -1;
}

/* Fills planted[0..layers) from the spec or the default. */
static int parse_layers(const eng_synth_opts *o, int plant, unsigned char *planted, char *err,
                        size_t errlen) {
  memset(planted, 0, (size_t)o->layers);
  if (plant == PLANT_NONE) {
    if (o->plant_layers && *o->plant_layers) {
      snprintf(err, errlen, "synth: --plant-layers given but plant is none");
      return -1;
    }
    return 0;
  }
  const char *s = o->plant_layers;
  if (!s || !strcmp(s, "all")) {
    for (int l = 0; l < o->layers; l++)
      planted[l] = (unsigned char)(s || plant == PLANT_SPEC || o->layers == 1 || (l & 1));
    return 0;
  }
  int any = 0;
  const char *p = s;
  for (;;) {
    while (*p == ' ' || *p == '\t') p++;
    char *end;
    errno = 0;
    long v = strtol(p, &end, 10);
    if (end == p || errno) {
      snprintf(err, errlen, "synth: bad plant layer list '%s' (want e.g. \"1,3\" or \"all\")", s);
      return -1;
    }
    if (v < 0 || v >= o->layers) {
      snprintf(err, errlen, "synth: plant layer %ld out of range (model has %d layers, 0..%d)", v,
               o->layers, o->layers - 1);
      return -1;
    }
    planted[v] = 1;
    any = 1;
    p = end;
    while (*p == ' ' || *p == '\t') p++;
    if (*p == ',') { p++; continue; }
    if (*p == 0) break;
    snprintf(err, errlen, "synth: bad plant layer list '%s' (want e.g. \"1,3\" or \"all\")", s);
    return -1;
  }
  if (!any) { snprintf(err, errlen, "synth: empty plant layer list"); return -1; }
  return 0;
}

static int64_t count_params(const eng_synth_opts *o) {
  int64_t H = o->hidden, V = o->vocab, I = o->intermediate, E = o->experts;
  int64_t hd = H / o->heads, q = (int64_t)o->heads * hd, kv = (int64_t)o->kv_heads * hd;
  int64_t per_layer = 2 * H + H * q + 2 * H * kv + q * H + E * H + E * 3 * I * H;
  return 2 * V * H + H + (int64_t)o->layers * per_layer;
}

int eng_synth_validate(const eng_synth_opts *o, char *err, size_t errlen) {
  if (!o) { snprintf(err, errlen, "synth: no options"); return -1; }
  int fam = eng_synth__family(o->family);
  if (fam < 0) {
    snprintf(err, errlen, "synth: unknown family '%s' (supported: mixtral, qwen2_moe, qwen3_moe, olmoe, "
             "deepseek_v2, deepseek_v3, gpt_oss, switch, hierarchical)", o->family ? o->family : "(null)");
    return -1;
  }
  if (fam >= SYN_QWEN2_MOE && fam <= SYN_GPT_OSS && parse_plant(o->plant) != PLANT_NONE) {
    snprintf(err, errlen, "synth: --plant works for mixtral, switch and hierarchical (not %s)", o->family);
    return -1;
  }
  if (fam == SYN_HIER && (o->experts % 2 || o->top_k > o->experts / 2)) {
    snprintf(err, errlen, "synth: hierarchical needs an even number of experts (2 groups) and top_k <= experts/2");
    return -1;
  }
  if (fam >= SYN_QWEN2_MOE && fam <= SYN_GPT_OSS && eng_synth__family_validate(o, fam, err, errlen)) return -1;
  int plant = parse_plant(o->plant);
  if (plant < 0) {
    snprintf(err, errlen, "synth: unknown plant '%s' (want none, specialization or collapse)", o->plant);
    return -1;
  }
  eng_stw_dtype dt;
  const char *torch;
  if (parse_dtype(o->dtype, &dt, &torch) != 0) {
    snprintf(err, errlen, "synth: unknown dtype '%s' (want f32, bf16 or f16)", o->dtype);
    return -1;
  }
#define RANGE(f, lo, hi)                                                                    \
  if (o->f < (lo) || o->f > (hi)) {                                                         \
    snprintf(err, errlen, "synth: " #f " = %d out of range [%d, %d]", o->f, (int)(lo), (int)(hi)); \
    return -1;                                                                              \
  }
  RANGE(layers, 1, 4096)
  RANGE(experts, 1, 4096)
  RANGE(hidden, 2, 1 << 16)
  RANGE(vocab, 257, 1 << 24)
  RANGE(heads, 1, 4096)
  RANGE(kv_heads, 1, 4096)
  RANGE(intermediate, 1, 1 << 20)
  RANGE(max_pos, 1, 1 << 24)
#undef RANGE
  if (o->top_k < 1 || o->top_k > o->experts) {
    snprintf(err, errlen, "synth: top_k = %d must be between 1 and experts (%d)", o->top_k, o->experts);
    return -1;
  }
  if (o->hidden % o->heads != 0) {
    snprintf(err, errlen, "synth: hidden (%d) is not divisible by heads (%d)", o->hidden, o->heads);
    return -1;
  }
  if ((o->hidden / o->heads) % 2 != 0) {
    snprintf(err, errlen, "synth: head_dim = hidden/heads = %d must be even (RoPE)", o->hidden / o->heads);
    return -1;
  }
  if (o->heads % o->kv_heads != 0) {
    snprintf(err, errlen, "synth: heads (%d) is not a multiple of kv_heads (%d)", o->heads, o->kv_heads);
    return -1;
  }
  if (plant == PLANT_COLLAPSE) {
    if (o->experts < 2) { snprintf(err, errlen, "synth: collapse needs at least 2 experts"); return -1; }
    if (o->collapse_experts < 1 || o->collapse_experts >= o->experts) {
      snprintf(err, errlen, "synth: collapse_experts = %d must be between 1 and experts-1 (%d)",
               o->collapse_experts, o->experts - 1);
      return -1;
    }
  }
  if (plant == PLANT_SPEC && o->hidden < o->experts + 2) {
    snprintf(err, errlen, "synth: specialization needs hidden >= experts + 2 (one signal dim per "
             "expert), got hidden %d, experts %d", o->hidden, o->experts);
    return -1;
  }
  if (plant == PLANT_SPEC && o->vocab < o->experts) {
    snprintf(err, errlen, "synth: specialization needs vocab >= experts");
    return -1;
  }
  int64_t np = count_params(o);
  if (np > SYNTH_MAX_PARAMS) {
    snprintf(err, errlen, "synth: model too large (%lld parameters, limit %lld)", (long long)np,
             (long long)SYNTH_MAX_PARAMS);
    return -1;
  }
  unsigned char *planted = malloc((size_t)o->layers);
  if (!planted) { snprintf(err, errlen, "synth: out of memory"); return -1; }
  int rc = parse_layers(o, plant, planted, err, errlen);
  free(planted);
  return rc;
}

/* ---- tensors ----------------------------------------------------------------------------- */
typedef struct {
  const eng_synth_opts *o;
  eng_stw *w;
  eng_stw_dtype dt;
  int plant;
  unsigned char *planted;
  int *collapse;        /* [layers][collapse_experts] chosen experts (planted layers) */
  int64_t *range_begin; /* specialization: [experts+1] token range bounds */
  char *err;
  size_t errlen;
} synth_ctx;

static int add_tensor(synth_ctx *c, const char *name, int ndim, int64_t d0, int64_t d1,
                      const float *data) {
  int64_t shape[2] = {d0, d1};
  return eng_stw_add(c->w, name, c->dt, ndim, shape, data, c->err, c->errlen);
}

static float *alloc_f(synth_ctx *c, int64_t n) {
  float *p = malloc((size_t)n * sizeof(float));
  if (!p) snprintf(c->err, c->errlen, "synth: out of memory (%lld floats)", (long long)n);
  return p;
}

static int gen_normal(synth_ctx *c, const char *name, int64_t rows, int64_t cols, double std,
                      double mean) {
  int64_t n = rows * (cols > 0 ? cols : 1);
  float *p = alloc_f(c, n);
  if (!p) return -1;
  rng_t r = rng_for(c->o->seed, name);
  for (int64_t i = 0; i < n; i++) p[i] = (float)(mean + std * rng_norm(&r));
  int rc = add_tensor(c, name, cols > 0 ? 2 : 1, rows, cols, p);
  free(p);
  return rc;
}

static int gen_norm_weight(synth_ctx *c, const char *name) {
  return gen_normal(c, name, c->o->hidden, 0, 0.05, 1.0);
}

static int gen_embed(synth_ctx *c) {
  const eng_synth_opts *o = c->o;
  int64_t V = o->vocab, H = o->hidden;
  float *p = alloc_f(c, V * H);
  if (!p) return -1;
  rng_t r = rng_for(o->seed, "model.embed_tokens.weight");
  for (int64_t i = 0; i < V * H; i++) p[i] = (float)rng_norm(&r);
  if (c->plant == PLANT_COLLAPSE)
    for (int64_t t = 0; t < V; t++) p[t * H] = ENG_SYNTH_SIGNAL;
  if (c->plant == PLANT_SPEC)
    for (int e = 0; e < o->experts; e++)
      for (int64_t t = 0; t < V; t++) {
        int64_t in = t >= c->range_begin[e] && t < c->range_begin[e + 1];
        p[t * H + 1 + e] = in ? ENG_SYNTH_SIGNAL : 0.0f;
      }
  int rc = add_tensor(c, "model.embed_tokens.weight", 2, V, H, p);
  free(p);
  return rc;
}

/* Router [E, H]: random unit-norm rows (equal norms keep routing balanced), zero on the
 * signal dims, then the planted weights in planted layers. */
static int gen_gate(synth_ctx *c, int layer, const char *name) {
  const eng_synth_opts *o = c->o;
  int64_t E = o->experts, H = o->hidden;
  float *p = alloc_f(c, E * H);
  if (!p) return -1;
  rng_t r = rng_for(o->seed, name);
  int sig_lo = 0, sig_hi = -1;                            /* signal dims [lo, hi] */
  if (c->plant == PLANT_COLLAPSE) { sig_lo = 0; sig_hi = 0; }
  if (c->plant == PLANT_SPEC) { sig_lo = 1; sig_hi = o->experts; }
  for (int64_t e = 0; e < E; e++) {
    double *row = malloc((size_t)H * sizeof(double)), ss = 0;
    if (!row) { free(p); snprintf(c->err, c->errlen, "synth: out of memory"); return -1; }
    for (int64_t d = 0; d < H; d++) {
      double v = rng_norm(&r);
      if (d >= sig_lo && d <= sig_hi) v = 0;
      row[d] = v;
      ss += v * v;
    }
    double s = ss > 0 ? 1.0 / sqrt(ss) : 0;
    for (int64_t d = 0; d < H; d++) p[e * H + d] = (float)(row[d] * s);
    free(row);
  }
  if (c->planted[layer]) {
    if (c->plant == PLANT_COLLAPSE)
      for (int j = 0; j < o->collapse_experts; j++)
        p[(int64_t)c->collapse[layer * o->collapse_experts + j] * H + 0] = ENG_SYNTH_GATE;
    if (c->plant == PLANT_SPEC)
      for (int64_t e = 0; e < E; e++) p[e * H + 1 + e] = ENG_SYNTH_GATE;
  }
  int rc = add_tensor(c, name, 2, E, H, p);
  free(p);
  return rc;
}

static int gen_tensors(synth_ctx *c) {
  const eng_synth_opts *o = c->o;
  int64_t H = o->hidden, hd = H / o->heads, Q = (int64_t)o->heads * hd, KV = (int64_t)o->kv_heads * hd;
  int64_t I = o->intermediate;
  char nm[256];
  if (gen_embed(c)) return -1;
  for (int l = 0; l < o->layers; l++) {
#define NAME(...) (snprintf(nm, sizeof nm, __VA_ARGS__), nm)
    if (gen_norm_weight(c, NAME("model.layers.%d.input_layernorm.weight", l))) return -1;
    if (gen_norm_weight(c, NAME("model.layers.%d.post_attention_layernorm.weight", l))) return -1;
    if (gen_normal(c, NAME("model.layers.%d.self_attn.q_proj.weight", l), Q, H, 0.08, 0)) return -1;
    if (gen_normal(c, NAME("model.layers.%d.self_attn.k_proj.weight", l), KV, H, 0.08, 0)) return -1;
    if (gen_normal(c, NAME("model.layers.%d.self_attn.v_proj.weight", l), KV, H, 0.02, 0)) return -1;
    if (gen_normal(c, NAME("model.layers.%d.self_attn.o_proj.weight", l), H, Q, 0.02, 0)) return -1;
    if (gen_gate(c, l, NAME("model.layers.%d.block_sparse_moe.gate.weight", l))) return -1;
    if (eng_synth__family(o->family) == SYN_HIER &&
        gen_normal(c, NAME("model.layers.%d.block_sparse_moe.group_gate.weight", l), 2, H, 0.3, 0)) return -1;
    for (int e = 0; e < o->experts; e++) {
      if (gen_normal(c, NAME("model.layers.%d.block_sparse_moe.experts.%d.w1.weight", l, e), I, H, 0.05, 0)) return -1;
      if (gen_normal(c, NAME("model.layers.%d.block_sparse_moe.experts.%d.w3.weight", l, e), I, H, 0.05, 0)) return -1;
      if (gen_normal(c, NAME("model.layers.%d.block_sparse_moe.experts.%d.w2.weight", l, e), H, I, 0.02, 0)) return -1;
    }
#undef NAME
  }
  if (gen_norm_weight(c, "model.norm.weight")) return -1;
  return gen_normal(c, "lm_head.weight", o->vocab, H, 0.05, 0);
}

/* ---- tokenizer --------------------------------------------------------------------------- */
static const char SAMPLE_TEXT[] =
  "A mixture of experts replaces the dense feed forward layer of a transformer with a set of "
  "experts and a router. For every token the router computes a score for each expert, picks the "
  "best few experts, and adds their outputs weighted by the gate weights. When the router sends "
  "most tokens to the same expert, the other experts are wasted and the model is said to have "
  "collapsed. When different kinds of text are sent to different experts, the experts are said "
  "to specialize. The load of an expert is the number of tokens that it receives in a batch, and "
  "the balance of the layer is how evenly the tokens are spread over the experts.\n"
  "This is a small synthetic model. It was written by a program, not trained on any data, so the "
  "text that it generates is random. The routing structure was planted on purpose: in some layers "
  "one expert takes almost all of the tokens, and in other layers each range of token ids has its "
  "own expert. The tools that read the routing traces should find exactly the structure that was "
  "planted, in the layers where it was planted, and nothing in the other layers.\n"
  "The quick brown fox jumps over the lazy dog. The five boxing wizards jump quickly. Pack my box "
  "with five dozen liquor jugs! How vexingly quick daft zebras jump? 0123456789 + 42 = 4200 / 100; "
  "the year 2024, the number 3.14159, and the list [1, 2, 3] are all tokens too.\n"
  "int main(void) { return 0; } for (int i = 0; i < n; i++) { sum += x[i] * w[i]; } "
  "def forward(self, x): return self.experts[self.router(x).argmax()](x)\n"
  "In the beginning the experts were equal, and the router had no preference. Then the training "
  "began, and the router learned which expert was the best for each token. Some experts became "
  "experts of numbers, some of names, some of the small words that hold a sentence together. "
  "The router and the experts learned together, and the loss went down, and the tokens were "
  "routed, and the experts were used, and the layers were balanced, and the model was ready.\n"
  "To check a model, run it over a few prompts and record the routing: for every layer and every "
  "token, the chosen experts, their gate weights and the router probabilities. Then count how "
  "often each expert was chosen in each layer, compare the counts with a balanced load, and look "
  "at the tokens that went to each expert. If the counts are far from balanced, the report says "
  "which layers are collapsed, which experts are dead, and since when the problem started.";

typedef struct { unsigned char *b; size_t n; } tok_str;
typedef struct { int *ids; int n; int freq; } bpe_word;

static int is_alpha(int ch) { return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'); }
static int is_digit(int ch) { return ch >= '0' && ch <= '9'; }
static int is_space(int ch) { return ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r'; }
static int cls(int ch) { return is_alpha(ch) ? 1 : is_digit(ch) ? 2 : is_space(ch) ? 3 : 4; }

/* ASCII approximation of the GPT-2 pre-tokenizer: contractions, " ?letters", " ?digits",
 * " ?other", whitespace. Calls add(word) for each piece. */
static size_t pretok_next(const char *s, size_t i, size_t n) {
  static const char *contr[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
  if (s[i] == '\'')
    for (size_t k = 0; k < sizeof contr / sizeof *contr; k++) {
      size_t l = strlen(contr[k]);
      if (i + l <= n && !memcmp(s + i, contr[k], l)) return i + l;
    }
  size_t j = i;
  if (s[j] == ' ' && j + 1 < n && !is_space((unsigned char)s[j + 1])) j++;
  int c0 = cls((unsigned char)s[j]);
  if (c0 != 3) {
    while (j < n && cls((unsigned char)s[j]) == c0) j++;
    return j;
  }
  size_t e = j;
  while (e < n && is_space((unsigned char)s[e])) e++;
  if (e < n && e - j > 1) return e - 1;    /* the last one goes with the next piece */
  return e;
}

typedef struct {
  tok_str *tok;     /* [V] byte strings of base + merged tokens */
  int ntok;
  int *merge_a, *merge_b;
  int nmerge;
} bpe_result;

static int tok_exists(const bpe_result *r, const unsigned char *b, size_t n) {
  for (int i = 0; i < r->ntok; i++)
    if (r->tok[i].n == n && !memcmp(r->tok[i].b, b, n)) return 1;
  return 0;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* GPT-2 order of the byte tokens: printable bytes in byte order, then the rest. */
static void gpt2_bytes(int *id_of_byte, int *byte_of_id, int *cp_of_byte) {
  int n = 0, extra = 0;
  for (int b = 0; b < 256; b++) {
    int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    if (printable) { id_of_byte[b] = n; byte_of_id[n] = b; cp_of_byte[b] = b; n++; }
  }
  for (int b = 0; b < 256; b++) {
    int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    if (!printable) { id_of_byte[b] = n; byte_of_id[n] = b; cp_of_byte[b] = 256 + extra++; n++; }
  }
}

/* Learns at most max_merges merges (pair frequency >= 2, ties to the smallest (a, b)). */
static int bpe_learn(bpe_result *r, int max_merges, const int *id_of_byte, const int *byte_of_id) {
  int rc = -1;
  size_t n = strlen(SAMPLE_TEXT);
  bpe_word *words = NULL;
  int nw = 0;
  uint64_t *pairs = NULL, *banned = NULL;
  int nbanned = 0;
  r->tok = calloc((size_t)256 + (size_t)max_merges, sizeof(tok_str));
  r->merge_a = malloc(((size_t)max_merges + 1) * sizeof(int));
  r->merge_b = malloc(((size_t)max_merges + 1) * sizeof(int));
  words = calloc(n, sizeof *words);
  pairs = malloc(n * sizeof *pairs);
  banned = malloc(n * sizeof *banned);
  if (!r->tok || !r->merge_a || !r->merge_b || !words || !pairs || !banned) goto out;
  for (int i = 0; i < 256; i++) {
    r->tok[i].b = malloc(1);
    if (!r->tok[i].b) goto out;
    r->tok[i].b[0] = (unsigned char)byte_of_id[i];
    r->tok[i].n = 1;
  }
  r->ntok = 256;
  for (size_t i = 0; i < n;) {                            /* unique words with counts */
    size_t j = pretok_next(SAMPLE_TEXT, i, n);
    int found = -1;
    for (int w = 0; w < nw && found < 0; w++) {
      if ((size_t)words[w].n != j - i) continue;
      int same = 1;
      for (size_t k = 0; k < j - i && same; k++)
        same = words[w].ids[k] == id_of_byte[(unsigned char)SAMPLE_TEXT[i + k]];
      if (same) found = w;
    }
    if (found >= 0) words[found].freq++;
    else {
      words[nw].ids = malloc((j - i) * sizeof(int));
      if (!words[nw].ids) goto out;
      for (size_t k = 0; k < j - i; k++) words[nw].ids[k] = id_of_byte[(unsigned char)SAMPLE_TEXT[i + k]];
      words[nw].n = (int)(j - i);
      words[nw].freq = 1;
      nw++;
    }
    i = j;
  }
  while (r->nmerge < max_merges) {
    size_t np = 0;
    for (int w = 0; w < nw; w++)
      for (int k = 0; k + 1 < words[w].n; k++)
        for (int f = 0; f < words[w].freq; f++)
          pairs[np++] = ((uint64_t)(uint32_t)words[w].ids[k] << 32) | (uint32_t)words[w].ids[k + 1];
    if (!np) break;
    qsort(pairs, np, sizeof *pairs, cmp_u64);
    uint64_t best = 0;
    size_t bestf = 0;
    for (size_t i = 0; i < np;) {
      size_t j = i;
      while (j < np && pairs[j] == pairs[i]) j++;
      int ban = 0;
      for (int b = 0; b < nbanned && !ban; b++) ban = banned[b] == pairs[i];
      if (!ban && j - i > bestf) { bestf = j - i; best = pairs[i]; }
      i = j;
    }
    if (bestf < 2) break;
    int a = (int)(best >> 32), b = (int)(best & 0xFFFFFFFFu);
    size_t ln = r->tok[a].n + r->tok[b].n;
    unsigned char *cat = malloc(ln);
    if (!cat) goto out;
    memcpy(cat, r->tok[a].b, r->tok[a].n);
    memcpy(cat + r->tok[a].n, r->tok[b].b, r->tok[b].n);
    if (tok_exists(r, cat, ln)) {               /* keep one merge per new token */
      free(cat);
      banned[nbanned++] = best;
      continue;
    }
    int id = r->ntok++;
    r->tok[id].b = cat;
    r->tok[id].n = ln;
    r->merge_a[r->nmerge] = a;
    r->merge_b[r->nmerge] = b;
    r->nmerge++;
    for (int w = 0; w < nw; w++) {              /* apply left to right */
      int o = 0;
      for (int k = 0; k < words[w].n; k++) {
        if (k + 1 < words[w].n && words[w].ids[k] == a && words[w].ids[k + 1] == b) {
          words[w].ids[o++] = id;
          k++;
        } else words[w].ids[o++] = words[w].ids[k];
      }
      words[w].n = o;
    }
  }
  rc = 0;
out:
  for (int w = 0; w < nw; w++) free(words[w].ids);
  free(words);
  free(pairs);
  free(banned);
  return rc;
}

static void bpe_free(bpe_result *r) {
  if (r->tok) for (int i = 0; i < r->ntok; i++) free(r->tok[i].b);
  free(r->tok);
  free(r->merge_a);
  free(r->merge_b);
}

/* Byte string -> GPT-2 mapped UTF-8 (each byte becomes one code point < 0x144). */
static char *mapped(const tok_str *t, const int *cp_of_byte) {
  char *s = malloc(t->n * 2 + 1), *p = s;
  if (!s) return NULL;
  for (size_t i = 0; i < t->n; i++) {
    int cp = cp_of_byte[t->b[i]];
    if (cp < 0x80) *p++ = (char)cp;
    else { *p++ = (char)(0xC0 | (cp >> 6)); *p++ = (char)(0x80 | (cp & 0x3F)); }
  }
  *p = 0;
  return s;
}

static cJSON *added_token(int id, const char *content) {
  cJSON *t = cJSON_CreateObject();
  if (!t) return NULL;
  cJSON_AddNumberToObject(t, "id", id);
  cJSON_AddStringToObject(t, "content", content);
  cJSON_AddBoolToObject(t, "single_word", 0);
  cJSON_AddBoolToObject(t, "lstrip", 0);
  cJSON_AddBoolToObject(t, "rstrip", 0);
  cJSON_AddBoolToObject(t, "normalized", 1);
  cJSON_AddBoolToObject(t, "special", 1);
  return t;
}

static cJSON *byte_level(int prefix, int trim) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "type", "ByteLevel");
  cJSON_AddBoolToObject(o, "add_prefix_space", prefix);
  cJSON_AddBoolToObject(o, "trim_offsets", trim);
  cJSON_AddBoolToObject(o, "use_regex", 1);
  return o;
}

int eng_synth__json(const char *dir, const char *file, cJSON *j, char *err, size_t errlen) {
  char path[4096];
  if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, file) >= sizeof path) {
    snprintf(err, errlen, "synth: output path too long");
    return -1;
  }
  char *s = j ? cJSON_Print(j) : NULL;
  if (!s) { snprintf(err, errlen, "synth: out of memory building %s", file); return -1; }
  size_t l = strlen(s);
  char *t = realloc(s, l + 2);
  if (!t) { free(s); snprintf(err, errlen, "synth: out of memory"); return -1; }
  t[l] = '\n'; t[l + 1] = 0;
  int rc = eng_stw_write_file_atomic(path, t, l + 1, err, errlen);
  free(t);
  return rc;
}

int eng_synth__tokenizer(const eng_synth_opts *o, const char *dir, int *n_merges_out,
                           char *err, size_t errlen) {
  int id_of_byte[256], byte_of_id[256], cp_of_byte[256];
  gpt2_bytes(id_of_byte, byte_of_id, cp_of_byte);
  bpe_result r = {0};
  int want = o->vocab - 1 - 256, rc = -1;
  cJSON *root = NULL;
  if (bpe_learn(&r, want, id_of_byte, byte_of_id) != 0) {
    snprintf(err, errlen, "synth: out of memory learning the tokenizer");
    goto out;
  }
  *n_merges_out = r.nmerge;
  root = cJSON_CreateObject();
  if (!root) goto oom;
  cJSON_AddStringToObject(root, "version", "1.0");
  cJSON_AddNullToObject(root, "truncation");
  cJSON_AddNullToObject(root, "padding");
  cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
  char buf[64];
  for (int id = r.ntok; id < o->vocab - 1; id++) {
    snprintf(buf, sizeof buf, "<|synth_%d|>", id);
    cJSON_AddItemToArray(added, added_token(id, buf));
  }
  cJSON_AddItemToArray(added, added_token(o->vocab - 1, "<|endoftext|>"));
  cJSON_AddNullToObject(root, "normalizer");
  cJSON_AddItemToObject(root, "pre_tokenizer", byte_level(0, 1));
  cJSON_AddItemToObject(root, "post_processor", byte_level(1, 0));
  cJSON_AddItemToObject(root, "decoder", byte_level(1, 1));
  cJSON *model = cJSON_AddObjectToObject(root, "model");
  cJSON_AddStringToObject(model, "type", "BPE");
  cJSON_AddNullToObject(model, "dropout");
  cJSON_AddNullToObject(model, "unk_token");
  cJSON_AddStringToObject(model, "continuing_subword_prefix", "");
  cJSON_AddStringToObject(model, "end_of_word_suffix", "");
  cJSON_AddBoolToObject(model, "fuse_unk", 0);
  cJSON_AddBoolToObject(model, "byte_fallback", 0);
  cJSON_AddBoolToObject(model, "ignore_merges", 0);
  cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
  cJSON *merges = cJSON_AddArrayToObject(model, "merges");
  if (!added || !model || !vocab || !merges) goto oom;
  for (int i = 0; i < r.ntok; i++) {
    char *m = mapped(&r.tok[i], cp_of_byte);
    if (!m) goto oom;
    cJSON_AddNumberToObject(vocab, m, i);
    free(m);
  }
  for (int i = 0; i < r.nmerge; i++) {
    char *a = mapped(&r.tok[r.merge_a[i]], cp_of_byte), *b = mapped(&r.tok[r.merge_b[i]], cp_of_byte);
    char *ab = a && b ? malloc(strlen(a) + strlen(b) + 2) : NULL;
    if (ab) sprintf(ab, "%s %s", a, b);
    if (ab) cJSON_AddItemToArray(merges, cJSON_CreateString(ab));
    free(a); free(b);
    if (!ab) goto oom;
    free(ab);
  }
  if (eng_synth__json(dir, "tokenizer.json", root, err, errlen)) goto out;
  cJSON_Delete(root);
  root = cJSON_CreateObject();
  if (!root) goto oom;
  cJSON_AddStringToObject(root, "tokenizer_class", "PreTrainedTokenizerFast");
  cJSON_AddStringToObject(root, "bos_token", "<|endoftext|>");
  cJSON_AddStringToObject(root, "eos_token", "<|endoftext|>");
  cJSON_AddNullToObject(root, "unk_token");
  cJSON_AddNullToObject(root, "pad_token");
  cJSON_AddBoolToObject(root, "add_bos_token", 0);
  cJSON_AddBoolToObject(root, "add_eos_token", 0);
  cJSON_AddBoolToObject(root, "add_prefix_space", 0);
  cJSON_AddBoolToObject(root, "clean_up_tokenization_spaces", 0);
  cJSON_AddNumberToObject(root, "model_max_length", o->max_pos);
  if (eng_synth__json(dir, "tokenizer_config.json", root, err, errlen)) goto out;
  rc = 0;
  goto out;
oom:
  snprintf(err, errlen, "synth: out of memory building tokenizer.json");
out:
  cJSON_Delete(root);
  bpe_free(&r);
  return rc;
}

/* ---- config.json -------------------------------------------------------------------------- */
static cJSON *synth_meta(const synth_ctx *c, const char *dtype_name, int n_merges) {
  const eng_synth_opts *o = c->o;
  cJSON *m = cJSON_CreateObject();
  if (!m) return NULL;
  static const char *kind[] = {"none", "specialization", "collapse"};
  cJSON_AddNumberToObject(m, "version", 1);
  cJSON_AddStringToObject(m, "family", o->family);
  cJSON_AddStringToObject(m, "plant", kind[c->plant]);
  if (o->seed <= (1ull << 53)) cJSON_AddNumberToObject(m, "seed", (double)o->seed);
  else {
    char b[32];
    snprintf(b, sizeof b, "%llu", o->seed);
    cJSON_AddStringToObject(m, "seed", b);
  }
  cJSON_AddStringToObject(m, "dtype", dtype_name);
  cJSON_AddNumberToObject(m, "signal_value", ENG_SYNTH_SIGNAL);
  cJSON_AddNumberToObject(m, "gate_weight", ENG_SYNTH_GATE);
  cJSON_AddNumberToObject(m, "tokenizer_merges", n_merges);
  cJSON *pl = cJSON_AddArrayToObject(m, "planted_layers");
  cJSON *ul = cJSON_AddArrayToObject(m, "unplanted_layers");
  for (int l = 0; l < o->layers; l++)
    cJSON_AddItemToArray(c->planted[l] ? pl : ul, cJSON_CreateNumber(l));
  cJSON *sd = cJSON_AddArrayToObject(m, "signal_dims");
  if (c->plant == PLANT_COLLAPSE) {
    cJSON_AddItemToArray(sd, cJSON_CreateNumber(0));
    cJSON_AddNumberToObject(m, "collapse_experts", o->collapse_experts);
    cJSON *lay = cJSON_AddArrayToObject(m, "layers");
    for (int l = 0; l < o->layers; l++) {
      if (!c->planted[l]) continue;
      cJSON *e = cJSON_CreateObject(), *ex = cJSON_CreateArray();
      cJSON_AddNumberToObject(e, "layer", l);
      for (int j = 0; j < o->collapse_experts; j++)
        cJSON_AddItemToArray(ex, cJSON_CreateNumber(c->collapse[l * o->collapse_experts + j]));
      cJSON_AddItemToObject(e, "experts", ex);
      cJSON_AddItemToArray(lay, e);
    }
    cJSON_AddStringToObject(m, "description",
      "every token has signal_value on hidden dim 0; in each planted layer the gate rows of the "
      "listed experts have gate_weight on dim 0, so those experts are in the top-k of nearly "
      "every token; other gate rows are random with unit norm and 0 on dim 0");
  } else if (c->plant == PLANT_SPEC) {
    cJSON *rg = cJSON_AddArrayToObject(m, "token_ranges");
    for (int e = 0; e < o->experts; e++) {
      cJSON_AddItemToArray(sd, cJSON_CreateNumber(1 + e));
      cJSON *t = cJSON_CreateObject();
      cJSON_AddNumberToObject(t, "begin", (double)c->range_begin[e]);
      cJSON_AddNumberToObject(t, "end", (double)c->range_begin[e + 1]);
      cJSON_AddNumberToObject(t, "expert", e);
      cJSON_AddNumberToObject(t, "signal_dim", 1 + e);
      cJSON_AddItemToArray(rg, t);
    }
    cJSON_AddStringToObject(m, "description",
      "token ids [begin, end) of range r have signal_value on hidden dim 1+r and 0 on the other "
      "signal dims; in planted layers gate row r has gate_weight on dim 1+r, so tokens of range "
      "r put expert r in their top-k; unplanted gate rows are random with unit norm and 0 on the "
      "signal dims");
  } else {
    cJSON_AddStringToObject(m, "description",
      "no planted structure: random unit-norm gate rows, routing roughly balanced");
  }
  return m;
}

static int write_config(const synth_ctx *c, const char *dir, const char *torch, int n_merges,
                        char *err, size_t errlen) {
  const eng_synth_opts *o = c->o;
  cJSON *j = cJSON_CreateObject();
  if (!j) { snprintf(err, errlen, "synth: out of memory"); return -1; }
  cJSON *arch = cJSON_AddArrayToObject(j, "architectures");
  cJSON_AddItemToArray(arch, cJSON_CreateString("MixtralForCausalLM"));
  cJSON_AddNumberToObject(j, "attention_dropout", 0.0);
  cJSON_AddNumberToObject(j, "bos_token_id", o->vocab - 1);
  cJSON_AddNumberToObject(j, "eos_token_id", o->vocab - 1);
  cJSON_AddNumberToObject(j, "head_dim", o->hidden / o->heads);
  cJSON_AddStringToObject(j, "hidden_act", "silu");
  cJSON_AddNumberToObject(j, "hidden_size", o->hidden);
  cJSON_AddNumberToObject(j, "initializer_range", 0.02);
  cJSON_AddNumberToObject(j, "intermediate_size", o->intermediate);
  cJSON_AddNumberToObject(j, "max_position_embeddings", o->max_pos);
  cJSON_AddStringToObject(j, "model_type", "mixtral");
  cJSON_AddNumberToObject(j, "num_attention_heads", o->heads);
  int fam = eng_synth__family(o->family);
  cJSON_AddNumberToObject(j, "num_experts_per_tok", fam == SYN_SWITCH ? 1 : o->top_k);
  cJSON_AddNumberToObject(j, "num_hidden_layers", o->layers);
  if (fam == SYN_SWITCH || fam == SYN_HIER) {   /* synthetic routers: Mixtral layout + router description */
    cJSON *r = cJSON_AddObjectToObject(j, "moescope_router");
    cJSON_AddStringToObject(r, "kind", fam == SYN_SWITCH ? "switch" : "hierarchical");
    if (fam == SYN_SWITCH) cJSON_AddNumberToObject(r, "capacity_factor", 1.0);
    else cJSON_AddNumberToObject(r, "n_groups", 2);
  }
  cJSON_AddNumberToObject(j, "num_key_value_heads", o->kv_heads);
  cJSON_AddNumberToObject(j, "num_local_experts", o->experts);
  cJSON_AddBoolToObject(j, "output_router_logits", 0);
  cJSON_AddNumberToObject(j, "rms_norm_eps", 1e-5);
  cJSON_AddNullToObject(j, "rope_scaling");
  cJSON_AddNumberToObject(j, "rope_theta", 10000.0);
  cJSON_AddNumberToObject(j, "router_aux_loss_coef", 0.01);
  cJSON_AddNumberToObject(j, "router_jitter_noise", 0.0);
  cJSON_AddNullToObject(j, "sliding_window");
  cJSON_AddBoolToObject(j, "tie_word_embeddings", 0);
  cJSON_AddStringToObject(j, "torch_dtype", torch);
  cJSON_AddBoolToObject(j, "use_cache", 1);
  cJSON_AddNumberToObject(j, "vocab_size", o->vocab);
  cJSON *m = synth_meta(c, c->dt == ENG_STW_F32 ? "f32" : c->dt == ENG_STW_BF16 ? "bf16" : "f16", n_merges);
  if (m) cJSON_AddItemToObject(j, "moescope_synth", m);
  int rc = m ? eng_synth__json(dir, "config.json", j, err, errlen) : -1;
  if (!m) snprintf(err, errlen, "synth: out of memory");
  cJSON_Delete(j);
  return rc;
}

int eng_synth__generation_config(const eng_synth_opts *o, const char *dir, char *err, size_t errlen) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddNumberToObject(j, "bos_token_id", o->vocab - 1);
  cJSON_AddNumberToObject(j, "eos_token_id", o->vocab - 1);
  int rc = eng_synth__json(dir, "generation_config.json", j, err, errlen);
  cJSON_Delete(j);
  return rc;
}

/* mkdir -p */
int eng_synth__mkdirs(const char *dir, char *err, size_t errlen) {
  size_t l = strlen(dir);
  if (!l) { snprintf(err, errlen, "synth: empty output folder name"); return -1; }
  char *p = strdup(dir);
  if (!p) { snprintf(err, errlen, "synth: out of memory"); return -1; }
  for (size_t i = 1; i <= l; i++) {
    if (p[i] != '/' && p[i] != 0) continue;
    char save = p[i];
    p[i] = 0;
    if (mkdir(p, 0755) != 0 && errno != EEXIST) {
      snprintf(err, errlen, "synth: cannot create output folder %s: %s", p, strerror(errno));
      free(p);
      return -1;
    }
    p[i] = save;
  }
  free(p);
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "synth: output path %s is not a folder", dir);
    return -1;
  }
  return 0;
}

int eng_synth_write(const eng_synth_opts *o, const char *outdir, char *err, size_t errlen) {
  if (eng_synth_validate(o, err, errlen) != 0) return -1;
  if (!outdir) { snprintf(err, errlen, "synth: no output folder"); return -1; }
  int fam = eng_synth__family(o->family);
  if (fam >= SYN_QWEN2_MOE && fam <= SYN_GPT_OSS) return eng_synth__family_write(o, fam, outdir, err, errlen);
  synth_ctx c = {0};
  c.o = o;
  c.err = err;
  c.errlen = errlen;
  c.plant = parse_plant(o->plant);
  const char *torch;
  parse_dtype(o->dtype, &c.dt, &torch);
  int rc = -1, n_merges = 0;
  c.planted = malloc((size_t)o->layers);
  c.collapse = malloc((size_t)o->layers * (size_t)(o->collapse_experts > 0 ? o->collapse_experts : 1) * sizeof(int));
  c.range_begin = malloc(((size_t)o->experts + 1) * sizeof(int64_t));
  int *perm = malloc((size_t)o->experts * sizeof(int));
  if (!c.planted || !c.collapse || !c.range_begin || !perm) {
    snprintf(err, errlen, "synth: out of memory");
    goto out;
  }
  if (parse_layers(o, c.plant, c.planted, err, errlen) != 0) goto out;
  for (int e = 0; e <= o->experts; e++) c.range_begin[e] = (int64_t)e * o->vocab / o->experts;
  if (c.plant == PLANT_COLLAPSE)
    for (int l = 0; l < o->layers; l++) {      /* a seeded choice of experts per layer */
      char nm[64];
      snprintf(nm, sizeof nm, "collapse.layer.%d", l);
      rng_t r = rng_for(o->seed, nm);
      for (int e = 0; e < o->experts; e++) perm[e] = e;
      for (int e = 0; e < o->collapse_experts; e++) {
        int k = e + (int)(rng_unif(&r) * (o->experts - e));
        int t = perm[e]; perm[e] = perm[k]; perm[k] = t;
      }
      for (int a = 1; a < o->collapse_experts; a++)  /* sort the chosen few */
        for (int b = a; b > 0 && perm[b - 1] > perm[b]; b--) { int t = perm[b]; perm[b] = perm[b - 1]; perm[b - 1] = t; }
      for (int j = 0; j < o->collapse_experts; j++) c.collapse[l * o->collapse_experts + j] = perm[j];
    }
  if (eng_synth__mkdirs(outdir, err, errlen) != 0) goto out;
  c.w = eng_stw_new();
  if (!c.w) { snprintf(err, errlen, "synth: out of memory"); goto out; }
  if (gen_tensors(&c) != 0) goto out;
  if (eng_stw_write_dir(c.w, outdir, err, errlen) != 0) goto out;
  eng_stw_free(c.w);
  c.w = NULL;
  if (eng_synth__tokenizer(o, outdir, &n_merges, err, errlen) != 0) goto out;
  if (eng_synth__generation_config(o, outdir, err, errlen) != 0) goto out;
  if (write_config(&c, outdir, torch, n_merges, err, errlen) != 0) goto out;  /* last: marks done */
  rc = 0;
out:
  eng_stw_free(c.w);
  free(perm);
  free(c.planted);
  free(c.collapse);
  free(c.range_begin);
  return rc;
}
