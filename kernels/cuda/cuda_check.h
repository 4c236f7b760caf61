// Turning CUDA runtime and cuBLAS errors into absl::Status at the library boundary.
// Every CUDA call in kernels/cuda goes through one of these macros, so an error names the file,
// line, the call's text and CUDA's own error string. Nothing here exits, aborts or throws.
//
// Kernel launches: each launcher in a .cu file returns `cudaGetLastError()` right after its
// `<<<...>>>` launch, and the host code wraps the launcher call in CUDA_RETURN_IF_ERROR, so a bad
// launch configuration comes back as a Status naming the launcher call site. Errors raised while
// a kernel runs surface at the next synchronising call (CopyToHost, Synchronize); run with
// CUDA_LAUNCH_BLOCKING=1 to pin them to the launch that caused them.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace zigzag::cuda_internal {

// "dir/file.cc" -> "file.cc": messages stay short and do not depend on the build machine.
inline const char* FileBaseName(const char* path) {
  const char* slash = std::strrchr(path, '/');
  return slash == nullptr ? path : slash + 1;
}

inline absl::StatusCode CudaErrorCode(cudaError_t error) {
  switch (error) {
    case cudaErrorMemoryAllocation:
      return absl::StatusCode::kResourceExhausted;
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInvalidDevice:
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorInvalidDeviceFunction:
    case cudaErrorDevicesUnavailable:
    case cudaErrorStubLibrary:
      return absl::StatusCode::kFailedPrecondition;
    case cudaErrorInvalidValue:
    case cudaErrorInvalidConfiguration:
      return absl::StatusCode::kInvalidArgument;
    default:
      return absl::StatusCode::kInternal;
  }
}

inline absl::Status CudaErrorToStatus(cudaError_t error, const char* file, int line,
                                      const char* call) {
  // Reset the runtime's "last error" so that a later launch check does not report this one again
  // (sticky errors such as an illegal address cannot be reset; they stay and are reported).
  (void)cudaGetLastError();
  return absl::Status(CudaErrorCode(error), absl::StrCat(FileBaseName(file), ":", line, ": ", call,
                                                         " failed: ", cudaGetErrorName(error), " (",
                                                         cudaGetErrorString(error), ")"));
}

inline absl::StatusCode CublasErrorCode(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_ALLOC_FAILED:
      return absl::StatusCode::kResourceExhausted;
    case CUBLAS_STATUS_NOT_INITIALIZED:
    case CUBLAS_STATUS_ARCH_MISMATCH:
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return absl::StatusCode::kFailedPrecondition;
    case CUBLAS_STATUS_INVALID_VALUE:
      return absl::StatusCode::kInvalidArgument;
    default:
      return absl::StatusCode::kInternal;
  }
}

inline absl::Status CublasErrorToStatus(cublasStatus_t status, const char* file, int line,
                                        const char* call) {
  return absl::Status(CublasErrorCode(status),
                      absl::StrCat(FileBaseName(file), ":", line, ": ", call,
                                   " failed: ", cublasGetStatusName(status), " (",
                                   cublasGetStatusString(status), ")"));
}

}  // namespace zigzag::cuda_internal

// CUDA_RETURN_IF_ERROR(cudaMalloc(&ptr, bytes)); returns a Status from the enclosing function.
#define CUDA_RETURN_IF_ERROR(call)                                                          \
  do {                                                                                      \
    const cudaError_t zz_cuda_error_ = (call);                                              \
    if (zz_cuda_error_ != cudaSuccess) {                                                    \
      return ::zigzag::cuda_internal::CudaErrorToStatus(zz_cuda_error_, __FILE__, __LINE__, \
                                                        #call);                             \
    }                                                                                       \
  } while (0)

// CUBLAS_RETURN_IF_ERROR(cublasGemmEx(...)); returns a Status from the enclosing function.
#define CUBLAS_RETURN_IF_ERROR(call)                                                             \
  do {                                                                                           \
    const cublasStatus_t zz_cublas_status_ = (call);                                             \
    if (zz_cublas_status_ != CUBLAS_STATUS_SUCCESS) {                                            \
      return ::zigzag::cuda_internal::CublasErrorToStatus(zz_cublas_status_, __FILE__, __LINE__, \
                                                          #call);                                \
    }                                                                                            \
  } while (0)

// After a raw `<<<...>>>` launch written in host code: reports a bad launch configuration (grid,
// block or shared memory size) as a Status naming this line and `what`.
#define CUDA_RETURN_IF_LAUNCH_ERROR(what)                                                     \
  do {                                                                                        \
    const cudaError_t zz_launch_error_ = cudaGetLastError();                                  \
    if (zz_launch_error_ != cudaSuccess) {                                                    \
      return ::zigzag::cuda_internal::CudaErrorToStatus(zz_launch_error_, __FILE__, __LINE__, \
                                                        "launch of " what);                   \
    }                                                                                         \
  } while (0)
