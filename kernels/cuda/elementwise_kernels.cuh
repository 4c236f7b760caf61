// Launchers for the CUDA backend's row-wise and element-wise kernels: gathers, RMSNorm, RoPE,
// SwiGLU, residual add, bias add and KV writes. Plain host declarations (includable from .cc);
// the kernels live in elementwise_kernels.cu. Inputs are validated by the caller (cuda_ops.cc):
// launchers trust shapes and indices. Each returns cudaGetLastError() after its launch (or
// cudaSuccess when there is no work).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/dtype.h"

namespace zigzag::cuda {

// dst[r, :] = src[rows[r], :]. Any dtype (copies raw elements). Embedding and CopyRows.
struct GatherRowsParams {
  const void* src = nullptr;      // [src_rows, row_size] of dtype
  const int32_t* rows = nullptr;  // [num_rows] device memory, each in [0, src_rows)
  void* dst = nullptr;            // [num_rows, row_size] of dtype
  int64_t num_rows = 0;
  int64_t row_size = 0;
  DType dtype = DType::kF32;
};
cudaError_t LaunchGatherRows(const GatherRowsParams& params, cudaStream_t stream);

// y = x / sqrt(mean(x^2) + eps) * weight per row, float32 math. y may alias x.
struct RmsNormParams {
  const void* x = nullptr;       // [rows, dim] of dtype
  const void* weight = nullptr;  // [dim] of dtype
  void* y = nullptr;             // [rows, dim] of dtype
  int64_t rows = 0;
  int64_t dim = 0;
  float eps = 1e-6f;
  DType dtype = DType::kF32;  // f32 or bf16
};
cudaError_t LaunchRmsNorm(const RmsNormParams& params, cudaStream_t stream);

// Rotate-half RoPE in place: (x_i, x_{i+d/2}) rotated by positions[t] * inv_freq[i].
struct RopeParams {
  void* x = nullptr;                   // [tokens, heads, head_dim] of dtype
  const int32_t* positions = nullptr;  // [tokens] device memory
  const float* inv_freq = nullptr;     // [head_dim / 2] float32, device memory
  int64_t tokens = 0;
  int64_t heads = 0;
  int64_t head_dim = 0;  // even
  DType dtype = DType::kF32;
};
cudaError_t LaunchRope(const RopeParams& params, cudaStream_t stream);

// out = silu(gate) * up, element-wise. out may alias gate or up.
struct SiluMulParams {
  const void* gate = nullptr;  // [count] of dtype
  const void* up = nullptr;    // [count] of dtype
  void* out = nullptr;         // [count] of dtype
  int64_t count = 0;
  DType dtype = DType::kF32;
};
cudaError_t LaunchSiluMul(const SiluMulParams& params, cudaStream_t stream);

// out = a + b, element-wise. out may alias a or b.
struct AddParams {
  const void* a = nullptr;  // [count] of dtype
  const void* b = nullptr;  // [count] of dtype
  void* out = nullptr;      // [count] of dtype
  int64_t count = 0;
  DType dtype = DType::kF32;
};
cudaError_t LaunchAdd(const AddParams& params, cudaStream_t stream);

// y[r, c] += bias[c] (after the GEMM).
struct AddBiasParams {
  void* y = nullptr;           // [rows, cols] of dtype
  const void* bias = nullptr;  // [cols] of dtype
  int64_t rows = 0;
  int64_t cols = 0;
  DType dtype = DType::kF32;
};
cudaError_t LaunchAddBias(const AddBiasParams& params, cudaStream_t stream);

// kv_pool[slot / block_size, 0, slot % block_size, :] = k[t, :] and [.., 1, ..] = v[t, :] with
// slot = slots[t]. Any dtype (copies raw elements).
struct WriteKvParams {
  const void* k = nullptr;         // [tokens, row_size] of dtype (row_size = kv_heads * head_dim)
  const void* v = nullptr;         // [tokens, row_size] of dtype
  const int32_t* slots = nullptr;  // [tokens] device memory, each in [0, num_blocks * block_size)
  void* kv_pool = nullptr;         // [num_blocks, 2, block_size, row_size] of dtype
  int64_t tokens = 0;
  int64_t row_size = 0;
  int64_t block_size = 0;
  DType dtype = DType::kF32;
};
cudaError_t LaunchWriteKv(const WriteKvParams& params, cudaStream_t stream);

// Moves each KV head's kept entries of one (sequence, layer) to the front of its blocks:
// gathers them into `staging`, then scatters them to entries 0..budget-1. Two passes because
// destinations of one head may be sources of the same head in a parallel copy.
struct CompactKvParams {
  const int32_t* block_ids = nullptr;  // [layer_blocks] device memory
  const int32_t* kept = nullptr;       // [kv_heads, budget] device memory, rows ascending
  void* kv_pool = nullptr;             // [num_blocks, 2, block_size, kv_heads, head_dim] of dtype
  void* staging = nullptr;             // [2, kv_heads, budget, head_dim] of dtype
  int64_t budget = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
  int64_t block_size = 0;
  DType dtype = DType::kF32;
};
cudaError_t LaunchCompactKv(const CompactKvParams& params, cudaStream_t stream);

// cudaSuccess when this binary holds kernel code the current device can run (compiled for its
// architecture, or PTX it can JIT); cudaErrorNoKernelImageForDevice or similar otherwise.
cudaError_t ProbeKernelImage();

// Launches a kernel with an impossible block size (for the launch-check test only): returns the
// launch error (cudaErrorInvalidConfiguration) without running anything.
cudaError_t LaunchInvalidConfigurationForTesting(cudaStream_t stream);

}  // namespace zigzag::cuda
