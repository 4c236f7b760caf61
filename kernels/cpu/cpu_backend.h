// The CPU backend: the readable float32 reference every other backend is tested against.
// GEMM through OpenBLAS sgemm; the other ops are plain loops split over a thread pool.
// Weights, activations and the KV pool are float32 in host memory.
#pragma once

#include <memory>

#include "kernels/backend.h"

namespace zigzag {

// num_threads 0 = std::thread::hardware_concurrency().
std::unique_ptr<Backend> CreateCpuBackend(int num_threads = 0);

}  // namespace zigzag
