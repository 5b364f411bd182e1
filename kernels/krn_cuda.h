/* krn_cuda.h — the CUDA backend's C entry points (kernels/cuda/ *.cu, extern "C").
 * Built when CMake finds nvcc (MOESCOPE_CUDA=AUTO|ON); otherwise these are stubs that
 * report "no CUDA", so callers and tests need no #ifdef. Step 1 has only device
 * discovery; the kernels come with the CUDA backend (Step 5). */
#ifndef MOESCOPE_KRN_CUDA_H
#define MOESCOPE_KRN_CUDA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when this build contains the CUDA backend. */
int krn_cuda_built(void);
/* Number of usable CUDA devices (0 without a driver or device); name of device 0 and
 * its compute capability into name (may be NULL). Never fails hard. */
int krn_cuda_device_count(char *name, size_t namelen, int *cc_major, int *cc_minor);

#ifdef __cplusplus
}
#endif
#endif
