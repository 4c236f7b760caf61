// AttentionLaunch: the host-side plan of one layer's attention launch on the CUDA backend — which
// kernel runs and where its descriptors, work items and block table sit in a metadata buffer —
// built from an AttentionBatch by BuildAttentionLaunch (cuda_attention.cc). Attention builds one
// and uploads it at once; PlanStep builds one per layer into a single buffer and uploads that
// once per step. It holds no device memory and launches nothing. Internal to kernels/cuda.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace zigzag::cuda_internal {

// Appends the bytes of `values` to `bytes` at a 16-byte aligned offset, which it returns.
template <typename T>
size_t AppendAligned(const std::vector<T>& values, std::vector<uint8_t>* bytes) {
  const size_t offset = (bytes->size() + 15) / 16 * 16;
  bytes->resize(offset + values.size() * sizeof(T));
  if (!values.empty()) {
    std::memcpy(bytes->data() + offset, values.data(), values.size() * sizeof(T));
  }
  return offset;
}

// What the kernels need to know of q and the pool (checked against the CUDA kernels' limits).
struct AttentionLayout {
  int64_t num_rows = 0;
  int64_t num_heads = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
  int64_t num_blocks = 0;
  int64_t block_size = 0;
};

struct AttentionLaunch {
  enum class Kernel { kNone, kDecode, kFlash, kSimple };
  Kernel kernel = Kernel::kNone;  // kNone: no queries, nothing to launch
  // Byte offsets into the metadata buffer (16-byte aligned).
  size_t descs_offset = 0;
  size_t work_offset = 0;      // decode: splits; flash/simple: query items
  size_t combines_offset = 0;  // decode only
  size_t table_offset = 0;
  // The block table is the backend's resident table (table_offset unused): descriptors point at
  // each stream's row in it.
  bool resident_table = false;
  int32_t num_work = 0;  // splits or items
  int32_t num_combines = 0;
  int32_t num_partials = 0;  // decode split-K partial results
  float scale = 1.0f;
};

// InvalidArgument naming the op when the layout is outside what the kernels handle.
absl::Status CheckAttentionLayout(const char* op, const AttentionLayout& layout);

// Validates `batch` against `layout` (kernels/attention_args.h; skipped when `validated`, e.g.
// by StepTables::Validate) and appends the launch's metadata to `bytes`. pool_aligned: the
// pool's base is 16-byte aligned (split-K needs it); num_sms sizes the split-K plan.
// resident_begins: empty, or per stream of the batch (sequence-major, G per sequence) where its
// list starts in the resident table; then no block ids are appended (resident_table).
absl::StatusOr<AttentionLaunch> BuildAttentionLaunch(const AttentionBatch& batch,
                                                     const AttentionLayout& layout,
                                                     bool pool_aligned, int num_sms, bool validated,
                                                     std::vector<uint8_t>* bytes,
                                                     std::span<const int64_t> resident_begins = {});

}  // namespace zigzag::cuda_internal
