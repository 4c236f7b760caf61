#include "kernels/backend_registry.h"

#include "absl/strings/str_cat.h"
#include "kernels/cpu/cpu_backend.h"
#include "spdlog/spdlog.h"
#ifdef ZIGZAG_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

namespace zigzag {

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(std::string_view name,
                                                       const BackendOptions& options) {
  if (name == "cpu") return CreateCpuBackend(options.num_threads);
  if (name == "cuda") {
#ifdef ZIGZAG_HAVE_CUDA
    return CreateCudaBackend(options.cuda_device, options.cuda_fp32);
#else
    return absl::FailedPreconditionError(
        "backend 'cuda' requested but this build has no CUDA support");
#endif
  }
  if (name == "auto") {
#ifdef ZIGZAG_HAVE_CUDA
    auto cuda = CreateCudaBackend(options.cuda_device, options.cuda_fp32);
    if (cuda.ok()) return cuda;
    spdlog::info("backend: CUDA not usable ({}); using the CPU backend",
                 std::string(cuda.status().message()));
#else
    spdlog::info("backend: this build has no CUDA support; using the CPU backend");
#endif
    return CreateCpuBackend(options.num_threads);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown backend '", std::string(name), "': expected auto, cpu or cuda"));
}

std::vector<std::string> AvailableBackends() {
  std::vector<std::string> names = {"cpu"};
#ifdef ZIGZAG_HAVE_CUDA
  if (CudaDeviceUsable().ok()) names.push_back("cuda");
#endif
  return names;
}

}  // namespace zigzag
