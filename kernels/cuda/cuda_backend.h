// The CUDA backend: cuBLAS GEMMs (bf16 or fp32 in, fp32 accumulate) and custom kernels for the
// other ops, the KV pool in device memory. Built only when nvcc is found (ZIGZAG_HAVE_CUDA).
// Every CUDA/cuBLAS error becomes an absl::Status naming the file, line and call.
#pragma once

#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace zigzag {

// OK when a CUDA device can be used; otherwise a status that says why (no driver, no device...).
absl::Status CudaDeviceUsable();

// fp32 = true keeps weights and activations in float32 (tests against the CPU backend);
// otherwise bf16 with float32 accumulation.
absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(int device, bool fp32);

}  // namespace zigzag
