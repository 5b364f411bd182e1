/* test_probe.c — unit tests for probes/prb_probe.c: level/op/phase names and parsing
 * (these strings are stored in the trace DB, so they are pinned here), the all-NULL probe,
 * and the monotonic clock. */
#include "probes/prb_probe.h"
#include "tests/tst.h"

int main(void) {
  /* levels: names round-trip through the parser, case-insensitively */
  const char *want[] = { "off", "counts", "topk", "full" };
  for (int l = PRB_LEVEL_OFF; l <= PRB_LEVEL_FULL; l++) {
    CHECK(strcmp(prb_level_name(l), want[l]) == 0);
    CHECK(prb_level_parse(prb_level_name(l)) == l);
  }
  CHECK(prb_level_parse("TopK") == PRB_LEVEL_TOPK);
  CHECK(prb_level_parse("FULL") == PRB_LEVEL_FULL);
  CHECK(prb_level_parse("") == -1);
  CHECK(prb_level_parse("top") == -1);
  CHECK(prb_level_parse("fullx") == -1);
  CHECK(prb_level_parse(NULL) == -1);
  CHECK(strcmp(prb_level_name(-1), "unknown") == 0);
  CHECK(strcmp(prb_level_name(4), "unknown") == 0);

  /* ops: every op has a distinct, non-empty, lower-case name; the pinned ones match */
  for (int i = 0; i < PRB_OP_COUNT; i++) {
    const char *n = prb_op_name(i);
    CHECK(n && *n && strcmp(n, "unknown") != 0);
    for (const char *c = n; *c; c++) CHECK((*c >= 'a' && *c <= 'z') || *c == '_');
    for (int j = 0; j < i; j++) CHECK(strcmp(n, prb_op_name(j)) != 0);
  }
  CHECK(strcmp(prb_op_name(PRB_OP_ATTENTION), "attention") == 0);
  CHECK(strcmp(prb_op_name(PRB_OP_ROUTER), "router") == 0);
  CHECK(strcmp(prb_op_name(PRB_OP_EXPERT), "expert") == 0);
  CHECK(strcmp(prb_op_name(PRB_OP_EXPERTS), "experts") == 0);
  CHECK(strcmp(prb_op_name(PRB_OP_SHARED_EXPERT), "shared_expert") == 0);
  CHECK(strcmp(prb_op_name(PRB_OP_LM_HEAD), "lm_head") == 0);
  CHECK(strcmp(prb_op_name(PRB_OP_EMBED), "embed") == 0);
  CHECK(strcmp(prb_op_name(PRB_OP_SAMPLE), "sample") == 0);
  CHECK(strcmp(prb_op_name(-1), "unknown") == 0);
  CHECK(strcmp(prb_op_name(PRB_OP_COUNT), "unknown") == 0);

  /* phases */
  CHECK(strcmp(prb_phase_name(PRB_PHASE_PREFILL), "prefill") == 0);
  CHECK(strcmp(prb_phase_name(PRB_PHASE_DECODE), "decode") == 0);
  CHECK(strcmp(prb_phase_name(7), "unknown") == 0);

  /* the none probe wants nothing */
  prb_probe p = prb_probe_none();
  CHECK(p.ctx == NULL);
  CHECK(p.level == PRB_LEVEL_OFF);
  CHECK(p.route == NULL && p.op == NULL && p.sequence == NULL && p.tokens == NULL);

  /* the clock is monotonic and advances across a short sleep by about that much */
  uint64_t prev = prb_now_ns();
  int backwards = 0;
  for (int i = 0; i < 100000; i++) {
    uint64_t t = prb_now_ns();
    if (t < prev) backwards++;
    prev = t;
  }
  CHECK(backwards == 0);
  uint64_t t0 = prb_now_ns();
  usleep(20000);
  uint64_t dt = prb_now_ns() - t0;
  CHECKF(dt >= 19000000ull && dt < 2000000000ull, "slept 20 ms, clock says %llu ns", (unsigned long long)dt);
  return tst_done();
}
