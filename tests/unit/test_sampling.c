/* test_sampling.c — next-token selection: greedy picks the argmax (lowest id on ties);
 * temperature sampling follows softmax(z/T) (chi-square over 40000 seeded draws);
 * top-p keeps the smallest prefix of the sorted distribution whose mass reaches p;
 * the same seed gives the same sequence. */
#include "engine/eng_session.h"
#include "tests/tst.h"

int main(void) {
  uint64_t rng = 1;
  float z[5] = {1.0f, 3.0f, 3.0f, 0.5f, -2.0f}, w[5];
  eng_sampler greedy = {0, 1, 0};
  memcpy(w, z, sizeof z);
  CHECK(eng_sample(&greedy, &rng, w, 5) == 1);
  CHECK(eng_sample(NULL, &rng, w, 5) == 1);
  /* temperature 1: empirical frequencies vs softmax */
  eng_sampler s = {1.0f, 1.0f, 42};
  int counts[5] = {0};
  const int N = 40000;
  rng = s.seed;
  for (int i = 0; i < N; i++) { memcpy(w, z, sizeof z); counts[eng_sample(&s, &rng, w, 5)]++; }
  double zs = 0, p[5], chi = 0;
  for (int i = 0; i < 5; i++) zs += exp(z[i]);
  for (int i = 0; i < 5; i++) {
    p[i] = exp(z[i]) / zs;
    chi += (counts[i] - N * p[i]) * (counts[i] - N * p[i]) / (N * p[i]);
  }
  printf("temperature 1: counts %d %d %d %d %d, chi2 %.2f (4 dof)\n", counts[0], counts[1], counts[2], counts[3], counts[4], chi);
  CHECK(chi < 18.5); /* p = 0.001 critical value for 4 degrees of freedom */
  /* top-p 0.8: p sorted = {.42,.42,.057,.035,.002} (ids 1,2,0,3,4): the nucleus is {1,2} */
  eng_sampler tp = {1.0f, 0.8f, 7};
  int seen[5] = {0};
  rng = tp.seed;
  for (int i = 0; i < 5000; i++) { memcpy(w, z, sizeof z); seen[eng_sample(&tp, &rng, w, 5)]++; }
  CHECK(seen[0] == 0 && seen[3] == 0 && seen[4] == 0);
  CHECK(seen[1] > 2200 && seen[2] > 2200);
  /* very low temperature behaves like greedy (ties aside) */
  float y[3] = {0.0f, 0.1f, 0.05f};
  eng_sampler cold = {1e-4f, 1.0f, 3};
  rng = 3;
  for (int i = 0; i < 100; i++) { float v[3]; memcpy(v, y, sizeof y); CHECK(eng_sample(&cold, &rng, v, 3) == 1); }
  /* reproducible with a seed */
  int a[50], b[50];
  for (int r = 0; r < 2; r++) {
    rng = 99;
    for (int i = 0; i < 50; i++) { memcpy(w, z, sizeof z); (r ? b : a)[i] = eng_sample(&s, &rng, w, 5); }
  }
  CHECK(memcmp(a, b, sizeof a) == 0);
  return tst_done();
}
