// Choosing a Backend at start-up: "cuda" when this build has CUDA and a device is usable, else
// "cpu" (with a log line saying why), or a name forced by the caller (flag --backend).
// Owns no backend state; it only constructs backends.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace zigzag {

// Options every backend understands; a backend ignores what does not apply to it.
struct BackendOptions {
  // CPU: worker threads for the ops (0 = hardware concurrency).
  int num_threads = 0;
  // CPU: the dtype weights are kept in (f32, bf16 or f16); see ResolveCpuWeightDtype.
  DType cpu_weight_dtype = DType::kF32;
  // CUDA: weights and activations in bf16 (default) or float32 (for tests against the CPU).
  bool cuda_fp32 = false;
  int cuda_device = 0;
};

// "auto", "cpu" or "cuda". "cuda" without a usable device is FailedPrecondition (with the reason);
// an unknown name is InvalidArgument.
absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(std::string_view name,
                                                       const BackendOptions& options = {});

// The CPU weight dtype for a --cpu-weight-dtype value: "f32", "bf16", "f16", or "auto" = the
// checkpoint's dtype (bf16 and f16 checkpoints keep their 16-bit weights, half the memory and
// memory traffic; f32 stays f32). Anything else is InvalidArgument naming the flag.
absl::StatusOr<DType> ResolveCpuWeightDtype(std::string_view flag, DType checkpoint_dtype);

// Names of the backends that can be created on this machine now ("cpu" always first).
std::vector<std::string> AvailableBackends();

}  // namespace zigzag
