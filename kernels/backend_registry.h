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
  // CUDA: weights and activations in bf16 (default) or float32 (for tests against the CPU).
  bool cuda_fp32 = false;
  int cuda_device = 0;
};

// "auto", "cpu" or "cuda". "cuda" without a usable device is FailedPrecondition (with the reason);
// an unknown name is InvalidArgument.
absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(std::string_view name,
                                                       const BackendOptions& options = {});

// Names of the backends that can be created on this machine now ("cpu" always first).
std::vector<std::string> AvailableBackends();

}  // namespace zigzag
