// Validation of Backend::Attention's per-(sequence, KV head) tables against q and the pool,
// shared by every backend so that all of them reject the same inputs with the same messages:
// lengths, CSR block offsets, every block id a kernel will read, window_mass's shape. Checks
// nothing about where tensors live or their dtypes (each backend does that); computes nothing.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/backend.h"

namespace zigzag {

struct AttentionLimits {
  int64_t num_rows = 0;    // q's rows
  int64_t num_heads = 0;   // q's heads
  int64_t block_size = 0;  // the pool's
  int64_t num_blocks = 0;  // the pool's
};

// The longest stream of a sequence (0 for none).
inline int32_t MaxKvLen(const AttentionSequence& seq) {
  int32_t longest = 0;
  for (int32_t len : seq.kv_lens) longest = std::max(longest, len);
  return longest;
}

inline absl::Status ValidateAttentionBatch(const AttentionBatch& batch,
                                           const AttentionLimits& limits) {
  const int64_t kv_heads = batch.num_kv_heads;
  if (kv_heads < 1 || limits.num_heads % kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("Attention: num_kv_heads ", kv_heads,
                                                   " must be >= 1 and divide q's ",
                                                   limits.num_heads, " heads"));
  }
  for (size_t i = 0; i < batch.sequences.size(); ++i) {
    const AttentionSequence& seq = batch.sequences[i];
    const auto error = [i](const char* field, auto&&... parts) {
      return absl::InvalidArgumentError(
          absl::StrCat("Attention: sequences[", i, "].", field, parts...));
    };
    if (seq.query_begin < 0 || seq.num_queries < 0 ||
        static_cast<int64_t>(seq.query_begin) + seq.num_queries > limits.num_rows) {
      return error("query_begin", " ", seq.query_begin, " and num_queries ", seq.num_queries,
                   " must be >= 0 and lie inside q's ", limits.num_rows, " rows");
    }
    if (static_cast<int64_t>(seq.kv_lens.size()) != kv_heads) {
      return error("kv_lens", " has ", seq.kv_lens.size(), " entries, expected num_kv_heads ",
                   kv_heads);
    }
    if (static_cast<int64_t>(seq.block_offsets.size()) != kv_heads + 1 ||
        seq.block_offsets[0] != 0 ||
        seq.block_offsets[kv_heads] > static_cast<int64_t>(seq.block_ids.size())) {
      return error("block_offsets", " must have num_kv_heads + 1 = ", kv_heads + 1,
                   " entries from 0 to at most block_ids' ", seq.block_ids.size());
    }
    for (int64_t g = 0; g < kv_heads; ++g) {
      const int32_t kv_len = seq.kv_lens[g];
      if (kv_len < seq.num_queries) {
        return error("kv_lens", "[", g, "] = ", kv_len, " < num_queries ", seq.num_queries,
                     " (the queries are the newest entries of every head's stream)");
      }
      const int64_t begin = seq.block_offsets[g], end = seq.block_offsets[g + 1];
      if (end < begin) {
        return error("block_offsets", "[", g + 1, "] = ", end, " < block_offsets[", g,
                     "] = ", begin);
      }
      const int64_t needed = (kv_len + limits.block_size - 1) / limits.block_size;
      if (end - begin < needed) {
        return error("kv_lens", "[", g, "] = ", kv_len, " needs ", needed, " blocks of ",
                     limits.block_size, " but head ", g, " has ", end - begin);
      }
      for (int64_t b = begin; b < begin + needed; ++b) {
        if (seq.block_ids[b] < 0 || seq.block_ids[b] >= limits.num_blocks) {
          return error("block_ids", "[", b, "] = ", seq.block_ids[b],
                       " is outside kv_pool's blocks [0, ", limits.num_blocks, ")");
        }
      }
    }
    if (seq.window_mass != nullptr) {
      const Tensor& mass = *seq.window_mass;
      if (mass.rank() != 2 || mass.dim(0) != limits.num_heads || mass.dim(1) < MaxKvLen(seq)) {
        return error("window_mass", " is ", mass.DebugString(), ", expected [", limits.num_heads,
                     ", >= ", MaxKvLen(seq), "] (num_heads, longest kv_len)");
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace zigzag
