/* krn_cuda_stub.c — the CUDA entry points of a build without nvcc: no CUDA, no device. */
#include "kernels/krn_cuda.h"

#ifndef MOESCOPE_HAVE_CUDA
int krn_cuda_built(void) { return 0; }
int krn_cuda_device_count(char *name, size_t namelen, int *cc_major, int *cc_minor) {
  (void)cc_major; (void)cc_minor;
  if (name && namelen) name[0] = 0;
  return 0;
}
#else
typedef int krn_cuda_stub_unused; /* the .cu files provide the entry points */
#endif
