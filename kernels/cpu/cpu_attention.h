// The CPU backend's paged-KV ops: WriteKv (tokens into pool slots), CompactKv (kept entries to the
// front after compression) and causal Attention over the
// pool with GQA and the optional window-mass summary. Float32 host tensors only; the Backend
// contract for both ops is in kernels/backend.h. Internal to kernels/cpu (CpuBackend forwards).
#pragma once

#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "kernels/backend.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/tensor.h"

namespace zigzag::cpu {

absl::Status WriteKv(const Tensor& k, const Tensor& v, std::span<const int32_t> slots,
                     Tensor* kv_pool);

// Backend::CopyBlocks.
absl::Status CopyBlocks(std::span<const int32_t> src_blocks, std::span<const int32_t> dst_blocks,
                        Tensor* kv_pool);
absl::Status CompactKv(std::span<const int32_t> block_ids, std::span<const int32_t> kept,
                       int32_t budget, Tensor* kv_pool);

absl::Status Attention(ThreadPool& pool, const AttentionBatch& batch, const Tensor& q,
                       const Tensor& kv_pool, Tensor* out);

}  // namespace zigzag::cpu
