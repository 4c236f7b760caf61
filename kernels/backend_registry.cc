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
  const CpuBackendConfig cpu_config{.num_threads = options.num_threads,
                                    .weight_dtype = options.cpu_weight_dtype};
  if (name == "cpu") return CreateCpuBackend(cpu_config);
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
    return CreateCpuBackend(cpu_config);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown backend '", std::string(name), "': expected auto, cpu or cuda"));
}

absl::StatusOr<DType> ResolveCpuWeightDtype(std::string_view flag, DType checkpoint_dtype) {
  if (flag == "auto") return IsFloatDType(checkpoint_dtype) ? checkpoint_dtype : DType::kF32;
  if (flag == "f32") return DType::kF32;
  if (flag == "bf16") return DType::kBF16;
  if (flag == "f16") return DType::kF16;
  return absl::InvalidArgumentError(absl::StrCat("--cpu-weight-dtype '", std::string(flag),
                                                 "' is not one of auto, f32, bf16, f16"));
}

std::vector<std::string> AvailableBackends() {
  std::vector<std::string> names = {"cpu"};
#ifdef ZIGZAG_HAVE_CUDA
  if (CudaDeviceUsable().ok()) names.push_back("cuda");
#endif
  return names;
}

}  // namespace zigzag
