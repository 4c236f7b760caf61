// The CPU backend: the readable float32 reference every other backend is tested against.
// Matmul through our own run-time dispatched SIMD kernels (kernels/cpu/matmul_kernels.h), and
// oneDNN for many-row f32/bf16 matmuls when the build has it (matmul_dnnl.h); the other
// ops are plain loops split over a thread pool. Activations and the KV pool are float32 in host
// memory; weights are float32, bf16 or f16 (weight_dtype), always accumulated in float32.
#pragma once

#include <memory>
#include <optional>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "kernels/cpu/matmul_kernels.h"

namespace zigzag {

struct CpuBackendConfig {
  int num_threads = 0;  // 0 = std::thread::hardware_concurrency()
  // The dtype weights are stored in: f32, bf16 or f16 (anything else is InvalidArgument).
  DType weight_dtype = DType::kF32;
  // The matmul kernels to use, for tests of the slower paths on a fast CPU. Unset = the best this
  // CPU runs; one it cannot run is FailedPrecondition.
  std::optional<cpu::MatmulIsa> matmul_isa;
  // Matmuls of many rows (prefill) with f32 or bf16 weights through oneDNN when the build has it
  // (kernels/cpu/matmul_dnnl.h); false = our kernels for every matmul (tests of their paths).
  bool use_dnnl = true;
};

absl::StatusOr<std::unique_ptr<Backend>> CreateCpuBackend(const CpuBackendConfig& config);

// Float32 weights, the best matmul kernels; num_threads 0 = std::thread::hardware_concurrency().
std::unique_ptr<Backend> CreateCpuBackend(int num_threads = 0);

}  // namespace zigzag
