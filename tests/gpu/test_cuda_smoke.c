/* test_cuda_smoke.c — GPU label: the CUDA backend is built and sees a device. Skipped
 * (exit 77) on builds without CUDA or machines without a GPU, as everywhere but the
 * GPU check (tools/gpu-check.sh). */
#include "kernels/krn_cuda.h"
#include "tests/tst.h"

int main(void) {
  if (!krn_cuda_built()) { printf("SKIP: built without CUDA\n"); return 77; }
  char name[256] = "";
  int major = 0, minor = 0;
  int n = krn_cuda_device_count(name, sizeof name, &major, &minor);
  if (n <= 0) { printf("SKIP: no CUDA device\n"); return 77; }
  printf("%d device(s); device 0: %s, compute capability %d.%d\n", n, name, major, minor);
  CHECK(strlen(name) > 0);
  CHECK(major >= 7);
  return tst_done();
}
