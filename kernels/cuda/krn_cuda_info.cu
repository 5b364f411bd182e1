/* krn_cuda_info.cu — CUDA device discovery for the CUDA backend (see krn_cuda.h). */
#include "kernels/krn_cuda.h"

#include <cuda_runtime.h>
#include <stdio.h>

extern "C" int krn_cuda_built(void) { return 1; }

extern "C" int krn_cuda_device_count(char *name, size_t namelen, int *cc_major, int *cc_minor) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) { cudaGetLastError(); return 0; }
  if (n > 0) {
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, 0) == cudaSuccess) {
      if (name && namelen) snprintf(name, namelen, "%s", p.name);
      if (cc_major) *cc_major = p.major;
      if (cc_minor) *cc_minor = p.minor;
    }
  }
  return n;
}
