/* test_policy_ext.c — the --route overrides (engine/eng_policy_ext.c) on hand-made logits
 * with known answers: canonical specs and one-line errors naming the bad parameter;
 * top-k with sigmoid scores; top-p picks the minimal set (renormalised); capacity drops
 * exactly the right slots in token order (and in rank order); expert choice honours the
 * per-expert capacity (hand-made and brute force); group-limited routing keeps only the
 * chosen groups (max vs top2sum); noisy with std=0 equals top-k, and is seeded; hash is a
 * fixed function of the token id and seed; random is reproducible with a seed. The bias
 * policy has its own test (test_policy_bias.c). */
#include "engine/eng_policy.h"
#include "tests/tst.h"

#include <stdint.h>

#define MAXN 4096
static int ex[MAXN * 8], ex2[MAXN * 8], dr[8], dr2[8];
static float wt[MAXN * 8], wt2[MAXN * 8], pr[MAXN * 8], pr2[MAXN * 8];

static eng_policy *mk(const char *spec, int E, int k, int renorm) {
  char err[256];
  eng_policy *p = NULL;
  if (eng_policy_create(&p, spec, E, k, renorm, err, sizeof err)) { fprintf(stderr, "%s: %s\n", spec, err); exit(1); }
  return p;
}
static int route(eng_policy *p, const float *z, const int *ids, int n, int *e, float *w, float *probs, int *d) {
  eng_route_out o = {e, w, probs, d, NULL, 0};
  return p->route(p, z, ids, n, 0, &o);
}
/* Checks the canonical spec of SPEC (E=8, native k=2 renormalised). */
static void spec_is(const char *spec, const char *canon) {
  eng_policy *p = mk(spec, 8, 2, 1);
  CHECKF(!strcmp(p->spec, canon), "%s -> %s (want %s)", spec, p->spec, canon);
  eng_policy_free(p);
}
/* SPEC fails with an error containing NEED. */
static void bad(const char *spec, const char *need) {
  char err[256] = "";
  eng_policy *p = (eng_policy *)1;
  int rc = eng_policy_create(&p, spec, 8, 2, 1, err, sizeof err);
  CHECKF(rc == -1 && p == NULL && strstr(err, need) && !strchr(err, '\n'), "%s: rc %d err '%s' (want '%s')", spec, rc, err, need);
}
static uint64_t lcg(uint64_t *s) { *s = *s * 6364136223846793005ull + 1442695040888963407ull; return *s >> 33; }
static float frand(uint64_t *s) { return (float)lcg(s) / 2147483648.0f; }

static void test_specs(void) {
  spec_is("topk", "topk:k=2,score=softmax,renorm=1");
  spec_is("topk:renorm=0,score=sigmoid,k=3", "topk:k=3,score=sigmoid,renorm=0");
  spec_is("topp:p=0.5", "topp:p=0.5,max_k=8");
  spec_is("topp", "topp:p=0.4,max_k=8");
  spec_is("capacity:k=1,cf=1", "capacity:cf=1,k=1,renorm=1,order=token");
  spec_is("capacity:order=rank", "capacity:cf=1.25,k=2,renorm=1,order=rank");
  spec_is("expert_choice", "expert_choice:cf=2");
  spec_is("bias:gamma=0.01", "bias:gamma=0.01,k=2,score=softmax,renorm=1");
  spec_is("group:topk_group=2,n_group=4", "group:n_group=4,topk_group=2,score=max,k=2,renorm=1");
  spec_is("group:n_group=4,topk_group=1,score=top2sum", "group:n_group=4,topk_group=1,score=top2sum,k=2,renorm=1");
  spec_is("noisy", "noisy:std=1,k=2,seed=0");
  spec_is("hash:seed=7", "hash:k=2,seed=7");
  spec_is("random:k=3,seed=1", "random:k=3,seed=1");
  bad("topp:p=0", "p=0");
  bad("topp:p=1.5", "p=1.5");
  bad("topp:max_k=9", "max_k=9");
  bad("capacity:cf=-1", "cf=-1");
  bad("capacity:order=fifo", "order=fifo");
  bad("expert_choice:cf=abc", "cf=abc");
  bad("bias:gamma=-1", "gamma=-1");
  bad("bias:gamma=nan", "gamma=nan");
  bad("group:n_group=3,topk_group=1", "n_group=3");
  bad("group:n_group=4", "required");
  bad("group", "required");
  bad("group:n_group=4,topk_group=5", "topk_group=5");
  bad("group:n_group=4,topk_group=1,k=3", "k=3");
  bad("group:n_group=4,topk_group=1,score=sum", "score=sum");
  bad("noisy:std=x", "std=x");
  bad("hash:k=0", "k=0");
  bad("random:seed=-1", "seed=-1");
  bad("topk:score=relu", "score=relu");
  bad("topk:k=2,k=3", "given twice");
  bad("random:foo=1", "unknown parameter 'foo'");
  bad("topk:k", "expected key=value");
  bad("bogus:x=1", "unknown policy 'bogus'");
  bad("topkk", "unknown policy");
  /* the model's routed_scaling_factor scales every override's weights and ends the spec */
  eng_router_cfg rc = {ENG_ROUTER_SOFTMAX_TOPK, 4, 2, 1, 1, 1, 2.5f, 1.0f};
  char err[256];
  eng_policy *p;
  REQUIRE(eng_policy_create_cfg(&p, "topk:k=1", &rc, err, sizeof err) == 0);
  CHECK(!strcmp(p->spec, "topk:k=1,score=softmax,renorm=1,scale=2.5"));
  float z[4] = {0, 1, 0, 0};
  REQUIRE(route(p, z, NULL, 1, ex, wt, pr, dr) == 0);
  CHECK(ex[0] == 1 && wt[0] == 2.5f);
  eng_policy_free(p);
}

static void test_topk_sigmoid(void) {
  float z[4] = {0, 2, -1, 1};
  eng_policy *p = mk("topk:score=sigmoid,renorm=0", 4, 2, 1);
  REQUIRE(route(p, z, NULL, 1, ex, wt, pr, dr) == 0);
  double s1 = 1 / (1 + exp(-2.0)), s3 = 1 / (1 + exp(-1.0));
  CHECK(ex[0] == 1 && ex[1] == 3);
  CHECK_NEAR(wt[0], s1, 1e-6);
  CHECK_NEAR(wt[1], s3, 1e-6);
  CHECK_NEAR(pr[2], 1 / (1 + exp(1.0)), 1e-6);   /* recorded scores are the sigmoids */
  eng_policy_free(p);
  p = mk("topk:score=sigmoid,renorm=1", 4, 2, 1);
  REQUIRE(route(p, z, NULL, 1, ex, wt, pr, dr) == 0);
  CHECK_NEAR(wt[0], s1 / (s1 + s3), 1e-6);
  eng_policy_free(p);
}

static void test_topp(void) {
  /* logits log(p): probabilities 0.5, 0.25, 0.125, 0.125 */
  float z[4] = {logf(0.5f), logf(0.25f), logf(0.125f), logf(0.125f)};
  struct { const char *spec; int m, e[4]; } c[] = {
    {"topp:p=0.5", 1, {0}}, {"topp:p=0.7", 2, {0, 1}}, {"topp:p=0.75", 2, {0, 1}}, {"topp:p=0.8", 3, {0, 1, 2}},
    {"topp:p=0.9", 4, {0, 1, 2, 3}}, {"topp:p=1", 4, {0, 1, 2, 3}}, {"topp:p=0.9,max_k=2", 2, {0, 1}},
    {"topp:p=0.1", 1, {0}}};
  for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
    eng_policy *p = mk(c[i].spec, 4, 2, 1);
    REQUIRE(route(p, z, NULL, 1, ex, wt, pr, dr) == 0);
    int K = eng_policy_kmax(p), m = 0;
    double mass = 0, wsum = 0;
    for (int j = 0; j < c[i].m; j++) mass += pr[c[i].e[j]];
    for (int j = 0; j < K; j++) {
      if (ex[j] < 0) { CHECK(wt[j] == 0); continue; }
      CHECKF(j < c[i].m && ex[j] == c[i].e[j], "%s slot %d = %d", c[i].spec, j, ex[j]);
      CHECK_NEAR(wt[j], pr[ex[j]] / mass, 1e-6);   /* renormalised over the chosen set */
      wsum += wt[j];
      m++;
    }
    CHECKF(m == c[i].m, "%s: %d experts (want %d)", c[i].spec, m, c[i].m);
    CHECK_NEAR(wsum, 1.0, 1e-6);
    eng_policy_free(p);
  }
  /* ties: four equal probabilities, p=0.5 -> the two lowest experts */
  float u[4] = {0, 0, 0, 0};
  eng_policy *p = mk("topp:p=0.5", 4, 2, 1);
  REQUIRE(route(p, u, NULL, 1, ex, wt, pr, dr) == 0);
  CHECK(ex[0] == 0 && ex[1] == 1 && ex[2] == -1 && ex[3] == -1);
  CHECK_NEAR(wt[0], 0.5, 1e-6);
  eng_policy_free(p);
}

static void test_capacity(void) {
  /* k=1, E=4, T=8, cf=1 -> capacity ceil(1*1*8/4) = 2; argmax experts 0 0 0 1 0 2 2 2 */
  int pref[8] = {0, 0, 0, 1, 0, 2, 2, 2};
  float z[8 * 4];
  for (int t = 0; t < 8; t++) for (int e = 0; e < 4; e++) z[t * 4 + e] = e == pref[t] ? 2.0f + 0.1f * t : 0.0f;
  eng_policy *p = mk("capacity:cf=1,k=1,renorm=0", 4, 2, 1);
  CHECK(eng_policy_kmax(p) == 1);
  REQUIRE(route(p, z, NULL, 8, ex, wt, pr, dr) == 0);
  int want[8] = {0, 0, -1, 1, -1, 2, 2, -1};
  for (int t = 0; t < 8; t++) {
    CHECKF(ex[t] == want[t], "token %d -> %d (want %d)", t, ex[t], want[t]);
    if (want[t] >= 0) CHECK_NEAR(wt[t], pr[t * 4 + want[t]], 1e-7);
    else CHECK(wt[t] == 0);
  }
  CHECK(dr[0] == 2 && dr[1] == 0 && dr[2] == 1 && dr[3] == 0);
  eng_policy_free(p);
  /* cf=1.5 -> capacity 3: only token 4 (expert 0's fourth) is dropped */
  p = mk("capacity:cf=1.5,k=1", 4, 2, 1);
  REQUIRE(route(p, z, NULL, 8, ex, wt, pr, dr) == 0);
  for (int t = 0; t < 8; t++) CHECK(ex[t] == (t == 4 ? -1 : pref[t]));
  CHECK(wt[0] == 1.0f);   /* renorm over k=1 */
  CHECK(dr[0] == 1 && dr[1] == 0 && dr[2] == 0 && dr[3] == 0);
  eng_policy_free(p);
  /* k=2, T=4, cf=1 -> capacity ceil(1*2*4/4) = 2. Top-2: t0 (0,1) t1 (0,1) t2 (0,2) t3 (1,0) */
  float z2[16] = {3, 2, 0, -1, 3, 2, 0, -1, 3, 0, 2, -1, 2, 3, 0, -1};
  p = mk("capacity:cf=1,k=2,renorm=1", 4, 2, 1);
  REQUIRE(route(p, z2, NULL, 4, ex, wt, pr, dr) == 0);
  /* token order: t0 e0 e1, t1 e0 e1, t2 e0 full -> dropped, e2; t3 e1 full, e0 full -> no expert */
  int w2[8] = {0, 1, 0, 1, -1, 2, -1, -1};
  for (int i = 0; i < 8; i++) CHECKF(ex[i] == w2[i], "slot %d -> %d (want %d)", i, ex[i], w2[i]);
  CHECK(dr[0] == 2 && dr[1] == 1 && dr[2] == 0 && dr[3] == 0);
  CHECK_NEAR(wt[0], pr[0] / (pr[0] + pr[1]), 1e-6);   /* renormalised over the k before dropping */
  CHECK_NEAR(wt[5], pr[2 * 4 + 2] / (pr[2 * 4 + 0] + pr[2 * 4 + 2]), 1e-6);
  CHECK(wt[4] == 0 && wt[6] == 0 && wt[7] == 0);
  eng_policy_free(p);
  /* rank order (GShard priority): all rank-1 slots first: t0 e0, t1 e0, t2 e0 (dropped), t3 e1;
   * then rank 2: t0 e1, t1 e1 (dropped), t2 e2, t3 e0 (dropped) */
  p = mk("capacity:cf=1,k=2,order=rank", 4, 2, 1);
  REQUIRE(route(p, z2, NULL, 4, ex, wt, pr, dr) == 0);
  int w3[8] = {0, 1, 0, -1, -1, 2, 1, -1};
  for (int i = 0; i < 8; i++) CHECKF(ex[i] == w3[i], "rank order slot %d -> %d (want %d)", i, ex[i], w3[i]);
  CHECK(dr[0] == 2 && dr[1] == 1);
  eng_policy_free(p);
}

static void test_expert_choice(void) {
  /* E=4, T=4, cf=2 -> capacity ceil(2*4/4) = 2 tokens per expert */
  float P[16] = {0.7f, 0.12f, 0.08f, 0.10f, 0.6f, 0.2f, 0.15f, 0.05f, 0.4f, 0.3f, 0.22f, 0.08f, 0.25f, 0.25f, 0.25f, 0.25f};
  float z[16];
  for (int i = 0; i < 16; i++) z[i] = logf(P[i]);
  eng_policy *p = mk("expert_choice:cf=2", 4, 2, 1);
  CHECK(eng_policy_kmax(p) == 4);
  REQUIRE(route(p, z, NULL, 4, ex, wt, pr, dr) == 0);
  /* e0 takes t0,t1; e1 t2,t3; e2 t3,t2; e3 t3,t0 */
  int want[16] = {0, 3, -1, -1, 0, -1, -1, -1, 1, 2, -1, -1, 1, 2, 3, -1};
  for (int i = 0; i < 16; i++) {
    CHECKF(ex[i] == want[i], "slot %d -> %d (want %d)", i, ex[i], want[i]);
    if (want[i] >= 0) CHECK_NEAR(wt[i], P[(i / 4) * 4 + want[i]], 1e-6);
    else CHECK(wt[i] == 0);
  }
  for (int e = 0; e < 4; e++) CHECK(dr[e] == 0);
  eng_policy_free(p);
  /* brute force on random logits: each expert has exactly cap tokens, and they are its best */
  uint64_t s = 42;
  int T = 37, E = 8;
  float *zz = malloc(sizeof(float) * T * E);
  for (int i = 0; i < T * E; i++) zz[i] = 3 * frand(&s);
  p = mk("expert_choice:cf=1.5", E, 2, 1);
  REQUIRE(route(p, zz, NULL, T, ex, wt, pr, dr) == 0);
  int cap = (int)ceil(1.5 * T / E);   /* 7 */
  for (int e = 0; e < E; e++) {
    int cnt = 0;
    double worst_in = 2, best_out = -1;
    for (int t = 0; t < T; t++) {
      int in = 0;
      for (int j = 0; j < E; j++) in |= ex[t * E + j] == e;
      cnt += in;
      double v = pr[t * E + e];
      if (in && v < worst_in) worst_in = v;
      if (!in && v > best_out) best_out = v;
    }
    CHECKF(cnt == cap, "expert %d took %d tokens (capacity %d)", e, cnt, cap);
    CHECK(worst_in >= best_out);
  }
  for (int t = 0; t < T; t++)   /* slots by descending probability, filled from the left */
    for (int j = 1; j < E; j++) {
      if (ex[t * E + j] < 0) { CHECK(j == E - 1 || ex[t * E + j + 1] < 0); continue; }
      CHECK(pr[t * E + ex[t * E + j - 1]] >= pr[t * E + ex[t * E + j]]);
    }
  eng_policy_free(p);
  free(zz);
  /* decode (T = 1): every expert takes the only token */
  p = mk("expert_choice:cf=2", 4, 2, 1);
  REQUIRE(route(p, z, NULL, 1, ex, wt, pr, dr) == 0);
  CHECK(ex[0] == 0 && ex[1] == 1 && ex[2] == 3 && ex[3] == 2);
  eng_policy_free(p);
}

static void test_group(void) {
  /* E=8 in 4 groups of 2: {0,1} {2,3} {4,5} {6,7} */
  float z[8] = {5, 0, 4, 4, 4.5f, -5, 0, 0};
  eng_policy *p = mk("group:n_group=4,topk_group=2,score=max", 8, 2, 1);
  REQUIRE(route(p, z, NULL, 1, ex, wt, pr, dr) == 0);
  CHECK(ex[0] == 0 && ex[1] == 4);        /* max: groups 0 (5) and 2 (4.5) */
  CHECK_NEAR(wt[0] + wt[1], 1.0, 1e-6);
  eng_policy_free(p);
  p = mk("group:n_group=4,topk_group=2,score=top2sum,renorm=0", 8, 2, 1);
  REQUIRE(route(p, z, NULL, 1, ex, wt, pr, dr) == 0);
  CHECK(ex[0] == 0 && ex[1] == 2);        /* top2sum: groups 0 (e^5+1) and 1 (2e^4); 4.5 is excluded */
  CHECK_NEAR(wt[1], pr[2], 1e-7);
  eng_policy_free(p);
  p = mk("group:n_group=4,topk_group=1", 8, 2, 1);
  REQUIRE(route(p, z, NULL, 1, ex, wt, pr, dr) == 0);
  CHECK(ex[0] == 0 && ex[1] == 1);        /* one group: both experts of group 0 */
  eng_policy_free(p);
  /* n_group=1 equals plain top-k */
  eng_policy *q = mk("topk", 8, 2, 1);
  p = mk("group:n_group=1,topk_group=1", 8, 2, 1);
  REQUIRE(route(p, z, NULL, 1, ex, wt, pr, dr) == 0 && route(q, z, NULL, 1, ex2, wt2, pr2, dr2) == 0);
  CHECK(ex[0] == ex2[0] && ex[1] == ex2[1] && wt[0] == wt2[0]);
  eng_policy_free(p);
  eng_policy_free(q);
}

static void test_noisy(void) {
  int T = 512, E = 8;
  uint64_t s = 7;
  float *z = malloc(sizeof(float) * T * E);
  for (int i = 0; i < T * E; i++) z[i] = 2 * frand(&s);
  eng_policy *p = mk("noisy:std=0", E, 2, 1), *q = mk("topk:score=softmax,renorm=1", E, 2, 0);
  REQUIRE(route(p, z, NULL, T, ex, wt, pr, dr) == 0 && route(q, z, NULL, T, ex2, wt2, pr2, dr2) == 0);
  int same = 1;
  for (int i = 0; i < T * 2; i++) same &= ex[i] == ex2[i] && wt[i] == wt2[i];
  CHECK(same);                            /* std=0 equals top-k exactly */
  eng_policy_free(p);
  eng_policy_free(q);
  p = mk("noisy:std=1,seed=1", E, 2, 1);
  q = mk("noisy:std=1,seed=1", E, 2, 1);
  REQUIRE(route(p, z, NULL, T, ex, wt, pr, dr) == 0 && route(q, z, NULL, T, ex2, wt2, pr2, dr2) == 0);
  same = 1;
  for (int i = 0; i < T * 2; i++) same &= ex[i] == ex2[i] && wt[i] == wt2[i];
  CHECK(same);                            /* same seed, same call -> same routing */
  int diff_call = 0, diff_seed = 0, diff_clean = 0;
  REQUIRE(route(q, z, NULL, T, ex2, wt2, pr2, dr2) == 0);   /* second call: fresh noise */
  for (int i = 0; i < T * 2; i++) diff_call += ex[i] != ex2[i];
  eng_policy_free(q);
  q = mk("noisy:std=1,seed=2", E, 2, 1);
  REQUIRE(route(q, z, NULL, T, ex2, wt2, pr2, dr2) == 0);
  for (int i = 0; i < T * 2; i++) diff_seed += ex[i] != ex2[i];
  eng_policy_free(q);
  q = mk("topk", E, 2, 1);
  REQUIRE(route(q, z, NULL, T, ex2, wt2, pr2, dr2) == 0);
  for (int i = 0; i < T * 2; i++) diff_clean += ex[i] != ex2[i];
  CHECK(diff_call > T / 4 && diff_seed > T / 4 && diff_clean > T / 4);
  /* weights: softmax of the noisy logits over the chosen k (sum 1, descending) */
  for (int t = 0; t < T; t++) { CHECK_NEAR(wt[2 * t] + wt[2 * t + 1], 1.0, 1e-6); CHECK(wt[2 * t] >= wt[2 * t + 1]); }
  printf("noisy std=1: %d of %d slots differ from clean top-2\n", diff_clean, 2 * T);
  eng_policy_free(p);
  eng_policy_free(q);
  free(z);
}

static void test_hash_random(void) {
  int E = 8, T = 4096;
  int *ids = malloc(sizeof(int) * T);
  float *z = malloc(sizeof(float) * T * E), *z2 = malloc(sizeof(float) * T * E);
  uint64_t s = 3;
  for (int t = 0; t < T; t++) ids[t] = (int)(lcg(&s) % 997);
  for (int i = 0; i < T * E; i++) { z[i] = frand(&s); z2[i] = frand(&s); }
  eng_policy *p = mk("hash", E, 2, 1), *q = mk("hash:k=2,seed=0", E, 2, 1);
  CHECK(route(p, z, NULL, 4, ex, wt, pr, dr) == -1 && ex[0] == -1 && ex[7] == -1);   /* needs token ids */
  REQUIRE(route(p, z, ids, T, ex, wt, pr, dr) == 0);
  REQUIRE(route(q, z2, ids, T, ex2, wt2, pr2, dr2) == 0);   /* other logits, other policy object */
  int same = 1, ok = 1, load[8] = {0};
  for (int t = 0; t < T; t++) {
    same &= ex[2 * t] == ex2[2 * t] && ex[2 * t + 1] == ex2[2 * t + 1];
    ok &= ex[2 * t] >= 0 && ex[2 * t] < ex[2 * t + 1] && ex[2 * t + 1] < E && wt[2 * t] == 0.5f && wt[2 * t + 1] == 0.5f;
    load[ex[2 * t]]++; load[ex[2 * t + 1]]++;
    for (int u = 0; u < t && u < 200; u++)   /* the same token id always gets the same experts */
      if (ids[u] == ids[t]) ok &= ex[2 * u] == ex[2 * t] && ex[2 * u + 1] == ex[2 * t + 1];
  }
  CHECK(same && ok);
  for (int e = 0; e < E; e++) CHECKF(abs(load[e] - 2 * T / E) < 2 * T / E / 5, "hash load e%d = %d", e, load[e]);
  eng_policy_free(q);
  q = mk("hash:seed=1", E, 2, 1);
  REQUIRE(route(q, z, ids, T, ex2, wt2, pr2, dr2) == 0);
  int diff = 0;
  for (int i = 0; i < 2 * T; i++) diff += ex[i] != ex2[i];
  CHECK(diff > T / 2);                    /* another seed, another hash */
  eng_policy_free(p);
  eng_policy_free(q);
  /* random: reproducible per seed and call, k distinct, weights 1/k, uniform */
  p = mk("random:k=3,seed=5", E, 2, 1);
  q = mk("random:k=3,seed=5", E, 2, 1);
  REQUIRE(route(p, z, NULL, T, ex, wt, pr, dr) == 0 && route(q, z2, NULL, T, ex2, wt2, pr2, dr2) == 0);
  same = 1; ok = 1;
  int rl[8] = {0};
  for (int t = 0; t < T; t++)
    for (int j = 0; j < 3; j++) {
      same &= ex[3 * t + j] == ex2[3 * t + j];
      ok &= (j == 0 || ex[3 * t + j - 1] < ex[3 * t + j]) && fabsf(wt[3 * t + j] - 1.0f / 3) < 1e-7f;
      rl[ex[3 * t + j]]++;
    }
  CHECK(same && ok);
  for (int e = 0; e < E; e++) CHECKF(abs(rl[e] - 3 * T / E) < 3 * T / E / 10, "random load e%d = %d", e, rl[e]);
  REQUIRE(route(q, z2, NULL, T, ex2, wt2, pr2, dr2) == 0);   /* the next call draws again */
  diff = 0;
  for (int i = 0; i < 3 * T; i++) diff += ex[i] != ex2[i];
  CHECK(diff > T);
  eng_policy_free(q);
  q = mk("random:k=3,seed=6", E, 2, 1);
  REQUIRE(route(q, z, NULL, T, ex2, wt2, pr2, dr2) == 0);
  diff = 0;
  for (int i = 0; i < 3 * T; i++) diff += ex[i] != ex2[i];
  CHECK(diff > T);
  eng_policy_free(p);
  eng_policy_free(q);
  free(ids); free(z); free(z2);
}

int main(void) {
  test_specs();
  test_topk_sigmoid();
  test_topp();
  test_capacity();
  test_expert_choice();
  test_group();
  test_noisy();
  test_hash_random();
  return tst_done();
}
