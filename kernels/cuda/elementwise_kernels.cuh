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
// One row per (token, KV head): row r of k and v (r = n * kv_heads + g, so k [N, kv_heads,
// head_dim] is already in that order) goes to slot slots[r] of the pool paged per KV head.
struct WriteKvParams {
  const void* k = nullptr;         // [rows, head_dim] of dtype
  const void* v = nullptr;         // [rows, head_dim] of dtype
  const int32_t* slots = nullptr;  // [rows] device memory, each in [0, num_blocks * block_size)
  void* kv_pool = nullptr;         // [num_blocks, 2, block_size, head_dim] of dtype
  int64_t tokens = 0;              // rows
  int64_t row_size = 0;            // head_dim
  int64_t block_size = 0;
  DType dtype = DType::kF32;
};
cudaError_t LaunchWriteKv(const WriteKvParams& params, cudaStream_t stream);

// Compaction of any number of KV head streams as a list of (source slot, destination slot) moves
// (the host resolves each stream's kept entries through its blocks): every source is gathered
// into `staging`, then scattered to its destination. Two passes because a destination may be
// another move's source, and the moves run in parallel.
struct CompactKvParams {
  const int32_t* src_slots = nullptr;  // [moves] device memory, slot = block * block_size + offset
  const int32_t* dst_slots = nullptr;  // [moves] device memory, distinct
  void* kv_pool = nullptr;             // [num_blocks, 2, block_size, head_dim] of dtype
  void* staging = nullptr;             // [2, moves, head_dim] of dtype
  int64_t moves = 0;
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
