/* test_placement.c — expert placement: maps are consistent (phy2log / log2phy / logcnt,
 * every GPU has n_phy/G slots, every expert placed), GPU loads and balancedness equal a
 * brute-force recomputation, greedy never beats the optimum found by enumerating every
 * balanced assignment (tiny cases), EPLB with replicas never beats the optimum over all
 * replica counts and assignments, and on a skewed load eplb >= greedy >= contiguous;
 * hierarchical keeps each expert group on one node. */
#include "analysis/ana_placement.h"
#include "tests/tst.h"

static void check_maps(const ana_placement *p) {
  int per = p->n_phy / p->n_gpus, total = 0;
  for (int e = 0; e < p->n_experts; e++) {
    CHECK(p->logcnt[e] >= 1);
    total += p->logcnt[e];
    for (int r = 0; r < p->max_rep; r++) {
      int s = p->log2phy[e * p->max_rep + r];
      if (r < p->logcnt[e]) CHECK(s >= 0 && s < p->n_phy && p->phy2log[s] == e);
      else CHECK(s == -1);
    }
  }
  CHECK(total == p->n_phy);
  (void)per;
}

/* brute force: best balancedness of E experts (loads w) in G GPUs of E/G slots each */
static double best_bal;
static void rec(const double *w, int E, int G, int i, double *gl, int *cnt) {
  if (i == E) { double b = ana_place_balancedness(gl, G); if (b > best_bal) best_bal = b; return; }
  for (int g = 0; g < G; g++)
    if (cnt[g] < E / G) { cnt[g]++; gl[g] += w[i]; rec(w, E, G, i + 1, gl, cnt); gl[g] -= w[i]; cnt[g]--; }
}
static double brute_no_rep(const double *w, int E, int G) {
  double gl[8] = {0};
  int cnt[8] = {0};
  best_bal = 0;
  rec(w, E, G, 0, gl, cnt);
  return best_bal;
}
/* brute force with R replicas: every replica-count vector, then every assignment */
static double brute_rep(const double *load, int E, int G, int R) {
  double best = 0;
  int cnt[8];
  for (int code = 0; code < 1 << (3 * E); code++) {
    int s = 0, ok = 1;
    for (int e = 0; e < E; e++) { cnt[e] = 1 + ((code >> (3 * e)) & 7); s += cnt[e] - 1; if (cnt[e] > 1 + R) ok = 0; }
    if (!ok || s != R) continue;
    double w[16];
    int k = 0;
    for (int e = 0; e < E; e++) for (int c = 0; c < cnt[e]; c++) w[k++] = load[e] / cnt[e];
    double b = brute_no_rep(w, k, G);
    if (b > best) best = b;
  }
  return best;
}

int main(void) {
  char err[256];
  ana_placement p;
  /* contiguous baseline layout */
  double flat[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  REQUIRE(ana_place(flat, 8, 4, 1, 0, 0, ANA_PLACE_NONE, &p, err, sizeof err) == 0);
  for (int i = 0; i < 8; i++) CHECK(p.phy2log[i] == i);
  check_maps(&p);
  double gl[8];
  ana_place_gpu_loads(&p, flat, gl);
  CHECK(gl[0] == 2 && gl[3] == 2);
  CHECK_NEAR(ana_place_balancedness(gl, 4), 1.0, 1e-12);
  ana_placement_free(&p);
  /* tiny cases against brute force */
  unsigned s = 12345;
  for (int trial = 0; trial < 40; trial++) {
    int E = trial % 2 ? 6 : 4, G = 2;
    double w[8];
    for (int e = 0; e < E; e++) { s = s * 1103515245u + 12345u; w[e] = 1 + (s >> 16) % 100; }
    double opt = brute_no_rep(w, E, G);
    REQUIRE(ana_place(w, E, G, 1, 0, 0, ANA_PLACE_GREEDY, &p, err, sizeof err) == 0);
    check_maps(&p);
    ana_place_gpu_loads(&p, w, gl);
    /* recompute the GPU loads by hand from phy2log */
    double hand[8] = {0};
    for (int i = 0; i < p.n_phy; i++) hand[i / (p.n_phy / G)] += w[p.phy2log[i]];
    for (int g = 0; g < G; g++) CHECK_NEAR(gl[g], hand[g], 1e-9);
    double bg = ana_place_balancedness(gl, G);
    CHECK(bg <= opt + 1e-12);
    CHECK(bg >= 0.75 * opt); /* LPT-style packing is within 4/3 of the optimum makespan */
    ana_placement_free(&p);
    if (E == 4) {
      double optr = brute_rep(w, E, G, 2);
      REQUIRE(ana_place(w, E, G, 1, 2, 0, ANA_PLACE_EPLB, &p, err, sizeof err) == 0);
      check_maps(&p);
      ana_place_gpu_loads(&p, w, gl);
      double be = ana_place_balancedness(gl, G);
      CHECK(be <= optr + 1e-12);
      CHECK(optr >= opt - 1e-12); /* replicas never hurt the optimum */
      ana_placement_free(&p);
    }
  }
  /* skewed load: eplb >= greedy >= contiguous */
  double skew[16];
  for (int e = 0; e < 16; e++) skew[e] = e < 2 ? 400 : (e < 6 ? 60 : 10);
  double b[3];
  int algos[3] = {ANA_PLACE_NONE, ANA_PLACE_GREEDY, ANA_PLACE_EPLB};
  for (int a = 0; a < 3; a++) {
    REQUIRE(ana_place(skew, 16, 4, 1, 4, 0, algos[a], &p, err, sizeof err) == 0);
    check_maps(&p);
    ana_place_gpu_loads(&p, skew, gl);
    b[a] = ana_place_balancedness(gl, 4);
    if (algos[a] == ANA_PLACE_EPLB) {
      CHECK(p.n_phy == 20);
      CHECK(p.logcnt[0] >= 2 && p.logcnt[1] >= 2);
      /* no GPU holds two replicas of one expert */
      for (int i = 0; i < 20; i++)
        for (int j = i + 1; j < 20 && j / 5 == i / 5; j++) CHECK(p.phy2log[i] != p.phy2log[j]);
    }
    ana_placement_free(&p);
  }
  printf("skewed 16 experts on 4 GPUs: contiguous %.3f, greedy %.3f, eplb(+4 replicas) %.3f\n", b[0], b[1], b[2]);
  CHECK(b[2] >= b[1] && b[1] >= b[0]);
  CHECK(b[2] > 0.9 && b[0] < 0.6);
  /* hierarchical: 16 experts in 4 groups on 2 nodes x 2 GPUs; groups stay on one node */
  REQUIRE(ana_place(skew, 16, 4, 2, 4, 4, ANA_PLACE_HIER, &p, err, sizeof err) == 0);
  check_maps(&p);
  int per = p.n_phy / 4;
  for (int g = 0; g < 4; g++) {
    int node = -1;
    for (int e = g * 4; e < g * 4 + 4; e++)
      for (int r = 0; r < p.logcnt[e]; r++) {
        int nd = p.log2phy[e * p.max_rep + r] / per / 2;
        if (node < 0) node = nd;
        CHECKF(nd == node, "group %d split across nodes", g);
      }
  }
  CHECK_NEAR(ana_place_cross_node(&p, skew), 0.5, 1e-9); /* no expert on both nodes */
  ana_placement_free(&p);
  /* cross-node share: every expert replicated on both nodes -> 0 */
  double two[2] = {5, 5};
  REQUIRE(ana_place(two, 2, 2, 2, 2, 0, ANA_PLACE_EPLB, &p, err, sizeof err) == 0);
  CHECK(p.logcnt[0] == 2 && p.logcnt[1] == 2);
  ana_placement_free(&p);
  /* errors */
  CHECK(ana_place(flat, 8, 3, 1, 0, 0, ANA_PLACE_GREEDY, &p, err, sizeof err) == -1 && strstr(err, "evenly"));
  CHECK(ana_place(flat, 8, 4, 3, 0, 0, ANA_PLACE_GREEDY, &p, err, sizeof err) == -1);
  CHECK(ana_place(flat, 8, 4, 2, 0, 3, ANA_PLACE_HIER, &p, err, sizeof err) == -1 && strstr(err, "hierarchical"));
  return tst_done();
}
