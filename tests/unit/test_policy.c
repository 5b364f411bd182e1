/* test_policy.c — router policies on hand-made logits with known answers: softmax
 * top-k picks the k largest probabilities in descending order, ties go to the lower
 * expert index, renormalised weights sum to 1, raw weights equal the probabilities,
 * spec parsing and its errors. */
#include "engine/eng_policy.h"
#include "tests/tst.h"

int main(void) {
  char err[256];
  /* eng_topk: ties to the lower index, descending order */
  {
    float v[6] = {0.1f, 0.5f, 0.5f, 0.2f, 0.5f, 0.0f};
    int idx[3];
    eng_topk(v, 6, 3, idx);
    CHECK(idx[0] == 1 && idx[1] == 2 && idx[2] == 4);
    eng_topk(v, 6, 1, idx);
    CHECK(idx[0] == 1);
    float w[4] = {-1, -3, -2, -1};
    int j[4];
    eng_topk(w, 4, 4, j);
    CHECK(j[0] == 0 && j[1] == 3 && j[2] == 2 && j[3] == 1);
  }
  /* native mixtral: softmax over all E, top-2, renormalised */
  eng_policy *p;
  REQUIRE(eng_policy_create(&p, "native", 4, 2, 1, err, sizeof err) == 0);
  CHECK(strstr(p->spec, "native") != NULL);
  float logits[2 * 4] = {1.0f, 3.0f, 2.0f, 0.0f, /* token 1: a tie between experts 0 and 3 */ 2.0f, 1.0f, 0.5f, 2.0f};
  int ex[4];
  float wt[4], pr[8];
  int dropped[4];
  eng_route_out o = {ex, wt, pr, dropped, NULL, 0};
  REQUIRE(p->route(p, logits, NULL, 2, 0, &o) == 0);
  double z = exp(1) + exp(3) + exp(2) + exp(0);
  CHECK_NEAR(pr[1], exp(3) / z, 1e-6);
  CHECK(ex[0] == 1 && ex[1] == 2);
  CHECK_NEAR(wt[0], exp(3) / (exp(3) + exp(2)), 1e-6);
  CHECK_NEAR(wt[0] + wt[1], 1.0, 1e-6);
  CHECK(ex[2] == 0 && ex[3] == 3); /* tie broken by the lower index */
  CHECK_NEAR(wt[2], 0.5, 1e-6);
  for (int e = 0; e < 4; e++) CHECK(dropped[e] == 0);
  eng_policy_free(p);
  /* topk:k=3,renorm=0 -> raw probabilities */
  REQUIRE(eng_policy_create(&p, "topk:k=3,renorm=0", 4, 2, 1, err, sizeof err) == 0);
  CHECK(eng_policy_kmax(p) == 3);
  int ex3[6];
  float wt3[6];
  eng_route_out o3 = {ex3, wt3, pr, dropped, NULL, 0};
  REQUIRE(p->route(p, logits, NULL, 2, 0, &o3) == 0);
  CHECK(ex3[0] == 1 && ex3[1] == 2 && ex3[2] == 0);
  CHECK_NEAR(wt3[2], exp(1) / z, 1e-6);
  CHECK_NEAR(wt3[0] + wt3[1] + wt3[2], (exp(3) + exp(2) + exp(1)) / z, 1e-6);
  eng_policy_free(p);
  /* errors */
  CHECK(eng_policy_create(&p, "topk:k=9", 4, 2, 1, err, sizeof err) == -1 && strstr(err, "k=9"));
  CHECK(eng_policy_create(&p, "topk:k=2,renorm=5", 4, 2, 1, err, sizeof err) == -1);
  CHECK(eng_policy_create(&p, "topk:q=2", 4, 2, 1, err, sizeof err) == -1 && strstr(err, "unknown parameter"));
  CHECK(eng_policy_create(&p, "topk:k=x", 4, 2, 1, err, sizeof err) == -1);
  CHECK(eng_policy_create(&p, "bogus", 4, 2, 1, err, sizeof err) == -1 && strstr(err, "unknown policy"));
  CHECK(p == NULL);
  return tst_done();
}
