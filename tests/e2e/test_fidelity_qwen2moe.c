/* test_fidelity_qwen2moe.c — the engine (qwen2_moe family: q/k/v biases, fine-grained experts,
 * softmax top-4 without renormalisation, sigmoid-gated shared expert) against the float64
 * reference of the trained tiny-qwen2moe (../shared/models/tiny-qwen2moe, F32; skipped when
 * absent). For every reference prompt (tests/util/tst_fidelity.c): the expert set of every
 * token and layer, gate weights within 1e-4 absolute / 1e-5 relative, final logits within
 * 1e-3, mean nll within 1e-4 and the greedy continuation.
 *
 * Near-ties (models/README.md): router probability gaps below 1e-5 at (github, layer 1,
 * pos 37) and (c4, layer 0, pos 23); a float32 engine may legitimately choose the other
 * expert there, and then only what is upstream of it is compared. A difference anywhere
 * else fails. */
#include "engine/eng_model.h"
#include "tests/tst.h"
#include "tests/util/tst_fidelity.h"

static const tst_near_tie TIES[] = {{"github", 1, 37}, {"c4", 0, 23}};

int main(void) {
  tst_need_shared("models/tiny-qwen2moe/reference.json");
  char dir[4096], rp[4200];
  snprintf(dir, sizeof dir, "%s/models/tiny-qwen2moe", tst_shared());
  snprintf(rp, sizeof rp, "%s/reference.json", dir);
  tst_fidelity f;
  REQUIRE(tst_fidelity_run(dir, rp, TIES, 2, &f) == 0);
  tst_fidelity_print("tiny-qwen2moe", &f);
  CHECK(f.family == ENG_FAM_QWEN2_MOE && f.norm_topk_prob == 0 && f.shared_gated == 1);
  static const tst_fidelity_bounds bounds = {1e-3, 1e-4, 1e-5, 1e-4, 1};
  tst_fidelity_check(&f, &bounds);
  return tst_done();
}
