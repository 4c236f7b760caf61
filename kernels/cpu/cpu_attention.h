// The CPU backend's paged-KV ops over a pool paged per KV head: WriteKv (each token's heads into
// their streams' slots), CompactKv (kept entries to the front of each stream after compression),
// CopyBlocks, and causal Attention over each KV head's own stream with GQA and the optional
// window-mass summary (argument checks here; planning and kernels in attention_runner.h).
// Float32 host tensors only; the Backend contract for both ops is in kernels/backend.h.
// Internal to kernels/cpu (CpuBackend forwards).
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
absl::Status CompactKv(std::span<const KvStreamCompaction> streams, Tensor* kv_pool);

absl::Status Attention(ThreadPool& pool, const AttentionBatch& batch, const Tensor& q,
                       const Tensor& kv_pool, Tensor* out);

}  // namespace zigzag::cpu
