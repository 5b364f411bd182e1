/* test_fidelity_trained.c — the engine against the float64 references of the really
 * trained models: tiny-mixtral (BF16, shipped in models/, reference in tests/fixtures)
 * and tiny-mixtral-collapsed (F32, from ../shared, skipped when absent). For every
 * reference prompt (tests/util/tst_fidelity.c): final logits within 1e-3 absolute, the
 * same expert set for every token and layer, gate weights within 1e-4, mean nll within
 * 1e-4, and the greedy continuation (KV-cache decode) equal to the reference ids. */
#include "engine/eng_model.h"
#include "tests/tst.h"
#include "tests/util/tst_fidelity.h"

static void check(const char *model_dir, const char *ref_path) {
  tst_fidelity f;
  REQUIRE(tst_fidelity_run(model_dir, ref_path, NULL, 0, &f) == 0);
  tst_fidelity_print(model_dir, &f);
  CHECK(f.family == ENG_FAM_MIXTRAL);
  static const tst_fidelity_bounds bounds = {1e-3, 1e-4, 0, 1e-4, 0};
  tst_fidelity_check(&f, &bounds);
}

int main(void) {
  char md[4096], rp[4096];
  check(tst_path(md, sizeof md, "MOESCOPE_SRC", "models/tiny-mixtral"),
        tst_path(rp, sizeof rp, "MOESCOPE_SRC", "tests/fixtures/tiny-mixtral-reference.json"));
  if (tst_shared()) {
    check(tst_path(md, sizeof md, "MOESCOPE_SHARED", "models/tiny-mixtral-collapsed"),
          tst_path(rp, sizeof rp, "MOESCOPE_SHARED", "models/tiny-mixtral-collapsed/reference.json"));
  } else {
    printf("note: ../shared absent, tiny-mixtral-collapsed skipped\n");
  }
  return tst_done();
}
