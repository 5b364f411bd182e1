/* test_model_mmap.c — loading must not copy the checkpoint: models/tiny-mixtral (BF16)
 * loads with every weight matrix a krn_w view (BF16) pointing inside the mapped
 * model.safetensors, the heap the model allocates (eng_model.heap_bytes) under 10% of the
 * weight bytes, no weight copied, and the process's anonymous RSS growing by less than a
 * quarter of the file (a float32 copy would add twice the file). A transformers-5 packed copy of the same model (experts.gate_up_proj
 * [E,2I,H], experts.down_proj [E,H,I], written here) loads its experts as row ranges of
 * the packed tensors (w3 = w1 + I rows) and gives bit-identical logits. */
#include "engine/eng_forward.h"
#include "engine/eng_model.h"
#include "engine/eng_safetensors.h"
#include "engine/eng_st_write.h"
#include "tests/tst.h"

#include <stdint.h>

static long rss_anon_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  long kb = -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "RssAnon: %ld kB", &kb) == 1) break;
  fclose(f);
  return kb;
}

static int inside(const eng_model *m, const krn_w *w) {
  const uint8_t *p = w->data;
  for (int i = 0; i < m->set->n_files; i++) {
    const uint8_t *b = m->set->maps[i];
    if (p >= b && p + krn_w_bytes(w) <= b + m->set->map_sizes[i]) return 1;
  }
  return 0;
}

/* Every matrix of a Mixtral-layout model is an in-map view of dtype dt; returns the count. */
static int check_views(const eng_model *m, int dt, const char *label) {
  int n = 0, bad = 0;
  const krn_w *top[2] = {&m->embed, &m->lm_head};
  for (int i = 0; i < 2; i++) { n++; if (!inside(m, top[i]) || top[i]->dtype != dt) bad++; }
  for (int l = 0; l < m->cfg.n_layers; l++) {
    const eng_layer *ly = &m->layers[l];
    const krn_w *w[5] = {&ly->q, &ly->k, &ly->v, &ly->o, &ly->gate};
    for (int i = 0; i < 5; i++) { n++; if (!inside(m, w[i]) || w[i]->dtype != dt) bad++; }
    for (int e = 0; e < m->cfg.n_experts; e++) {
      const krn_w *x[3] = {&ly->experts[e].w1, &ly->experts[e].w3, &ly->experts[e].w2};
      for (int i = 0; i < 3; i++) { n++; if (!inside(m, x[i]) || x[i]->dtype != dt) bad++; }
    }
  }
  CHECKF(bad == 0, "%s: %d of %d weight matrices are not %s views inside the mapping", label, bad, n,
         eng_dtype_name(dt));
  return n;
}

static float *logits_of(const eng_model *m, const int *ids, int n) {
  char err[512];
  eng_policy *pol;
  REQUIRE(eng_policy_create_cfg(&pol, "native", &m->cfg.router, err, sizeof err) == 0);
  eng_ctx c;
  REQUIRE(eng_ctx_init(&c, m, krn_cpu_backend(), pol, prb_probe_none(), 64, 64, err, sizeof err) == 0);
  float *lg = malloc(sizeof(float) * (size_t)(n + 1) * m->cfg.vocab);
  REQUIRE(eng_forward(&c, ids, n, ENG_LOGITS_ALL, lg, 0, 0, err, sizeof err) >= 0);
  int one = ids[0];   /* a decode step too (single-token path) */
  REQUIRE(eng_forward(&c, &one, 1, ENG_LOGITS_LAST, lg + (size_t)n * m->cfg.vocab, 0, n, err, sizeof err) >= 0);
  eng_ctx_free(&c);
  eng_policy_free(pol);
  return lg;
}

/* Writes dir/ as the packed (transformers-5) layout of the Mixtral model src. */
static void write_packed(const char *src, const char *dir) {
  char err[512], path[4096];
  eng_st_set s;
  REQUIRE(eng_st_open_dir(&s, src, err, sizeof err) == 0);
  eng_model m;
  REQUIRE(eng_model_load(&m, src, err, sizeof err) == 0);
  int L = m.cfg.n_layers, E = m.cfg.n_experts;
  int64_t H = m.cfg.hidden, I = m.cfg.intermediate;
  eng_model_free(&m);
  eng_stw *w = eng_stw_new();
  REQUIRE(w);
  for (int i = 0; i < s.n_tensors; i++) {
    const eng_st_tensor *t = &s.tensors[i];
    if (strstr(t->name, ".experts.")) continue;
    float *x = malloc(sizeof(float) * (size_t)eng_st_numel(t));
    REQUIRE(x && eng_st_to_f32(x, t) == 0);
    REQUIRE(eng_stw_add(w, t->name, ENG_STW_BF16, t->ndim, t->shape, x, err, sizeof err) == 0);
    free(x);
  }
  float *gu = malloc(sizeof(float) * (size_t)(E * 2 * I * H)), *dn = malloc(sizeof(float) * (size_t)(E * H * I));
  REQUIRE(gu && dn);
  for (int l = 0; l < L; l++) {
    for (int e = 0; e < E; e++) {
      const char *nm[3] = {"w1", "w3", "w2"};
      float *dst[3] = {gu + (size_t)e * 2 * I * H, gu + (size_t)e * 2 * I * H + I * H, dn + (size_t)e * H * I};
      for (int j = 0; j < 3; j++) {
        snprintf(path, sizeof path, "model.layers.%d.block_sparse_moe.experts.%d.%s.weight", l, e, nm[j]);
        const eng_st_tensor *t = eng_st_find(&s, path);
        REQUIRE(t && eng_st_to_f32(dst[j], t) == 0);
      }
    }
    int64_t s1[3] = {E, 2 * I, H}, s2[3] = {E, H, I};
    snprintf(path, sizeof path, "model.layers.%d.mlp.experts.gate_up_proj", l);
    REQUIRE(eng_stw_add(w, path, ENG_STW_BF16, 3, s1, gu, err, sizeof err) == 0);
    snprintf(path, sizeof path, "model.layers.%d.mlp.experts.down_proj", l);
    REQUIRE(eng_stw_add(w, path, ENG_STW_BF16, 3, s2, dn, err, sizeof err) == 0);
  }
  free(gu); free(dn);
  char cmd[3 * 4096 + 64];
  snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s/config.json' '%s/'", dir, src, dir);
  REQUIRE(system(cmd) == 0);
  REQUIRE(eng_stw_write_dir(w, dir, err, sizeof err) == 0 || (fprintf(stderr, "%s\n", err), 0));
  eng_stw_free(w);
  eng_st_close(&s);
}

int main(void) {
  char dir[4096], err[512];
  tst_path(dir, sizeof dir, "MOESCOPE_SRC", "models/tiny-mixtral");
  long rss0 = rss_anon_kb();
  eng_model m;
  REQUIRE(eng_model_load(&m, dir, err, sizeof err) == 0 || (fprintf(stderr, "%s\n", err), 0));
  long rss1 = rss_anon_kb();
  size_t file = m.set->map_sizes[0];
  printf("tiny-mixtral: %s, file %zu bytes, weights %zu bytes (%zu copied), model heap %zu bytes, "
         "anon RSS +%ld kB\n", m.dtype, file, m.weight_bytes, m.copied_weight_bytes, m.heap_bytes, rss1 - rss0);
  CHECK(!strcmp(m.dtype, "BF16") && m.owns_set);
  CHECK(m.weight_bytes > file / 2 && m.weight_bytes <= file);
  CHECKF(m.heap_bytes < m.weight_bytes / 10, "heap %zu bytes >= 10%% of %zu weight bytes", m.heap_bytes, m.weight_bytes);
  CHECK(m.copied_weight_bytes == 0);
  /* float32 copies used to add 2x the file; allocator / sanitizer overhead is well under 1/4 */
  if (rss0 >= 0 && rss1 >= 0) CHECKF((size_t)(rss1 - rss0) * 1024 < file / 4, "anon RSS grew %ld kB", rss1 - rss0);
  int nv = check_views(&m, ENG_DT_BF16, "tiny-mixtral");
  CHECK(nv == 2 + m.cfg.n_layers * (5 + 3 * m.cfg.n_experts));
  /* decode reads the stored bytes: BF16 = 2 bytes per active parameter (+ float32 norms) */
  double db = eng_model_decode_bytes(&m), act = (double)m.n_active_params;
  CHECKF(db > 2.0 * (act - (double)m.cfg.vocab * m.cfg.hidden) && db < 2.2 * act, "decode bytes %.0f for %.0f active params", db, act);

  int ids[9] = {1, 5, 9, 100, 2000, 77, 3, 8000, 42};
  float *a = logits_of(&m, ids, 9);

  char packed[4096];
  snprintf(packed, sizeof packed, "%s/mmap_packed_%d", tst_tmp_dir(), (int)getpid());
  write_packed(dir, packed);
  eng_model p;
  REQUIRE(eng_model_load(&p, packed, err, sizeof err) == 0 || (fprintf(stderr, "%s\n", err), 0));
  check_views(&p, ENG_DT_BF16, "packed");
  size_t rb = krn_dtype_row_bytes(KRN_DT_BF16, p.cfg.hidden);
  int split_ok = 1;
  for (int l = 0; l < p.cfg.n_layers; l++)
    for (int e = 0; e < p.cfg.n_experts; e++) {
      const eng_expert *x = &p.layers[l].experts[e];
      split_ok &= (const uint8_t *)x->w3.data == (const uint8_t *)x->w1.data + (size_t)p.cfg.intermediate * rb;
      split_ok &= x->w1.rows == p.cfg.intermediate && x->w2.rows == p.cfg.hidden && x->w2.cols == p.cfg.intermediate;
    }
  CHECK(split_ok);
  CHECK(p.copied_weight_bytes == 0 && p.heap_bytes < p.weight_bytes / 10);
  float *b = logits_of(&p, ids, 9);
  CHECKF(!memcmp(a, b, sizeof(float) * 10 * (size_t)m.cfg.vocab), "packed layout logits differ from per-expert layout");
  free(a); free(b);
  eng_model_free(&p);
  eng_model_free(&m);
  CHECK(m.set == NULL && m.heap == NULL);
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", packed);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", packed);
  return tst_done();
}
