/* krn_cuda_rt.cu — the device runtime side of the CUDA backend (see krn_cuda_ops.h):
 * thread-local error messages, the context (device, stream, cuBLAS handle, BF16 scratch),
 * memory, copies and events. (The host BF16 conversions live in krn_cuda_ops_stub.c.) */
#include "kernels/cuda/krn_cuda_int.cuh"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static __thread char g_err[512];

extern "C" const char *krn_cuda_last_error(void) { return g_err; }

int krn_cuda_fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_err, sizeof g_err, fmt, ap);
  va_end(ap);
  return -1;
}

int krn_cuda_check(cudaError_t e, const char *what) {
  if (e == cudaSuccess) return 0;
  return krn_cuda_fail("%s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

int krn_cuda_launched(const char *what) { return krn_cuda_check(cudaGetLastError(), what); }

static const char *blas_status(cublasStatus_t s) {
  switch (s) {
  case CUBLAS_STATUS_SUCCESS: return "success";
  case CUBLAS_STATUS_NOT_INITIALIZED: return "not initialized";
  case CUBLAS_STATUS_ALLOC_FAILED: return "alloc failed";
  case CUBLAS_STATUS_INVALID_VALUE: return "invalid value";
  case CUBLAS_STATUS_ARCH_MISMATCH: return "arch mismatch";
  case CUBLAS_STATUS_MAPPING_ERROR: return "mapping error";
  case CUBLAS_STATUS_EXECUTION_FAILED: return "execution failed";
  case CUBLAS_STATUS_INTERNAL_ERROR: return "internal error";
  case CUBLAS_STATUS_NOT_SUPPORTED: return "not supported";
  default: return "unknown status";
  }
}
int krn_cuda_blas_check(cublasStatus_t s, const char *what) {
  if (s == CUBLAS_STATUS_SUCCESS) return 0;
  return krn_cuda_fail("%s: cuBLAS %s (%d)", what, blas_status(s), (int)s);
}

extern "C" int krn_cuda_ctx_create(krn_cuda_ctx **out, int device, size_t scratch_elems) {
  *out = NULL;
  krn_cuda_ctx *c = (krn_cuda_ctx *)calloc(1, sizeof *c);
  if (!c) return krn_cuda_fail("out of host memory");
  c->device = device;
  if (krn_cuda_check(cudaSetDevice(device), "cudaSetDevice")) { free(c); return -1; }
  if (krn_cuda_check(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), "cudaStreamCreate")) {
    free(c);
    return -1;
  }
  if (krn_cuda_blas_check(cublasCreate(&c->blas), "cublasCreate") ||
      krn_cuda_blas_check(cublasSetStream(c->blas, c->stream), "cublasSetStream")) {
    krn_cuda_ctx_destroy(c);
    return -1;
  }
  if (scratch_elems > 0) {
    if (krn_cuda_check(cudaMalloc((void **)&c->scratch, scratch_elems * sizeof(__nv_bfloat16)), "cudaMalloc(scratch)")) {
      krn_cuda_ctx_destroy(c);
      return -1;
    }
    c->scratch_elems = scratch_elems;
  }
  *out = c;
  return 0;
}

extern "C" void krn_cuda_ctx_destroy(krn_cuda_ctx *c) {
  if (!c) return;
  if (c->stream) cudaStreamSynchronize(c->stream);
  if (c->blas) cublasDestroy(c->blas);
  krn_cuda_tc_free(c);
  if (c->scratch) cudaFree(c->scratch);
  if (c->stream) cudaStreamDestroy(c->stream);
  free(c);
}

extern "C" int krn_cuda_sync(krn_cuda_ctx *c) { return krn_cuda_check(cudaStreamSynchronize(c->stream), "stream sync"); }

extern "C" int krn_cuda_device_info(int device, char *name, size_t namelen, size_t *total_mem, double *peak_bw) {
  cudaDeviceProp p;
  if (krn_cuda_check(cudaGetDeviceProperties(&p, device), "cudaGetDeviceProperties")) return -1;
  if (name && namelen) snprintf(name, namelen, "%s", p.name);
  if (total_mem) *total_mem = p.totalGlobalMem;
  if (peak_bw) {
    /* CUDA 13 dropped memoryClockRate from cudaDeviceProp: ask the attribute (kHz). */
    int clk_khz = 0, bus_bits = 0;
    if (cudaDeviceGetAttribute(&clk_khz, cudaDevAttrMemoryClockRate, device) != cudaSuccess) { cudaGetLastError(); clk_khz = 0; }
    if (cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device) != cudaSuccess) { cudaGetLastError(); bus_bits = 0; }
    *peak_bw = 2.0 * (double)clk_khz * 1e3 * (double)bus_bits / 8.0;   /* DDR: two transfers per clock */
  }
  return 0;
}

extern "C" int krn_cuda_malloc(void **p, size_t bytes) {
  *p = NULL;
  if (bytes == 0) bytes = 1;
  return krn_cuda_check(cudaMalloc(p, bytes), "cudaMalloc");
}
extern "C" void krn_cuda_free(void *p) { if (p) cudaFree(p); }
extern "C" int krn_cuda_host_alloc(void **p, size_t bytes) {
  *p = NULL;
  if (bytes == 0) bytes = 1;
  return krn_cuda_check(cudaMallocHost(p, bytes), "cudaMallocHost");
}
extern "C" void krn_cuda_host_free(void *p) { if (p) cudaFreeHost(p); }
extern "C" int krn_cuda_h2d(krn_cuda_ctx *c, void *dst, const void *src, size_t bytes) {
  if (bytes == 0) return 0;
  return krn_cuda_check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream), "memcpy H2D");
}
extern "C" int krn_cuda_d2h(krn_cuda_ctx *c, void *dst, const void *src, size_t bytes) {
  if (bytes == 0) return 0;
  return krn_cuda_check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream), "memcpy D2H");
}
extern "C" int krn_cuda_d2d(krn_cuda_ctx *c, void *dst, const void *src, size_t bytes) {
  if (bytes == 0) return 0;
  return krn_cuda_check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c->stream), "memcpy D2D");
}
extern "C" int krn_cuda_memset(krn_cuda_ctx *c, void *dst, int value, size_t bytes) {
  if (bytes == 0) return 0;
  return krn_cuda_check(cudaMemsetAsync(dst, value, bytes, c->stream), "memset");
}

extern "C" int krn_cuda_event_create(void **ev) {
  cudaEvent_t e = NULL;
  *ev = NULL;
  if (krn_cuda_check(cudaEventCreate(&e), "cudaEventCreate")) return -1;
  *ev = (void *)e;
  return 0;
}
extern "C" void krn_cuda_event_destroy(void *ev) { if (ev) cudaEventDestroy((cudaEvent_t)ev); }
extern "C" int krn_cuda_event_record(krn_cuda_ctx *c, void *ev) {
  return krn_cuda_check(cudaEventRecord((cudaEvent_t)ev, c->stream), "cudaEventRecord");
}
extern "C" int krn_cuda_event_elapsed_ms(void *ev0, void *ev1, float *ms) {
  *ms = 0;
  return krn_cuda_check(cudaEventElapsedTime(ms, (cudaEvent_t)ev0, (cudaEvent_t)ev1), "cudaEventElapsedTime");
}
