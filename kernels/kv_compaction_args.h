// Validation of Backend::CompactKv's and CopyBlocks' host-side arguments, shared by every backend
// so that all of them reject the same inputs with the same messages. Computes nothing and touches
// no tensor memory.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace zigzag {

// kept is [kv_heads][budget] flattened; every head's row must be strictly ascending, within
// [0, block_ids.size() * block_size); every block id within [0, num_blocks).
inline absl::Status ValidateCompactKvArgs(std::span<const int32_t> block_ids,
                                          std::span<const int32_t> kept, int64_t budget,
                                          int64_t kv_heads, int64_t block_size,
                                          int64_t num_blocks) {
  if (budget < 0)
    return absl::InvalidArgumentError(absl::StrCat("CompactKv: budget ", budget, " < 0"));
  if (static_cast<int64_t>(kept.size()) != kv_heads * budget) {
    return absl::InvalidArgumentError(absl::StrCat("CompactKv: kept has ", kept.size(),
                                                   " entries, expected kv_heads ", kv_heads,
                                                   " x budget ", budget));
  }
  for (size_t b = 0; b < block_ids.size(); ++b) {
    if (block_ids[b] < 0 || block_ids[b] >= num_blocks) {
      return absl::InvalidArgumentError(absl::StrCat(
          "CompactKv: block_ids[", b, "] = ", block_ids[b], " is outside [0, ", num_blocks, ")"));
    }
  }
  const int64_t capacity = static_cast<int64_t>(block_ids.size()) * block_size;
  for (int64_t g = 0; g < kv_heads; ++g) {
    for (int64_t i = 0; i < budget; ++i) {
      const int32_t entry = kept[g * budget + i];
      if (entry < 0 || entry >= capacity) {
        return absl::InvalidArgumentError(absl::StrCat("CompactKv: kept[", g, "][", i,
                                                       "] = ", entry, " is outside the layer's ",
                                                       capacity, " entries"));
      }
      if (i > 0 && entry <= kept[g * budget + i - 1]) {
        return absl::InvalidArgumentError(
            absl::StrCat("CompactKv: kept[", g, "] must be strictly ascending; entry ", i, " is ",
                         entry, " after ", kept[g * budget + i - 1]));
      }
    }
  }
  return absl::OkStatus();
}

// CopyBlocks' arguments: equal lengths, ids within [0, num_blocks), destinations distinct and
// disjoint from the sources (so the copies are independent of their order).
inline absl::Status ValidateCopyBlocksArgs(std::span<const int32_t> src_blocks,
                                           std::span<const int32_t> dst_blocks,
                                           int64_t num_blocks) {
  if (src_blocks.size() != dst_blocks.size()) {
    return absl::InvalidArgumentError(absl::StrCat("CopyBlocks: ", src_blocks.size(),
                                                   " source blocks but ", dst_blocks.size(),
                                                   " destinations"));
  }
  std::vector<bool> is_source(static_cast<size_t>(num_blocks), false);
  std::vector<bool> is_destination(static_cast<size_t>(num_blocks), false);
  for (size_t i = 0; i < src_blocks.size(); ++i) {
    for (const auto& [name, id] : {std::pair<const char*, int32_t>{"src_blocks", src_blocks[i]},
                                   {"dst_blocks", dst_blocks[i]}}) {
      if (id < 0 || id >= num_blocks) {
        return absl::InvalidArgumentError(absl::StrCat("CopyBlocks: ", name, "[", i, "] = ", id,
                                                       " is outside [0, ", num_blocks, ")"));
      }
    }
    is_source[src_blocks[i]] = true;
  }
  for (size_t i = 0; i < dst_blocks.size(); ++i) {
    if (is_destination[dst_blocks[i]] || is_source[dst_blocks[i]]) {
      return absl::InvalidArgumentError(
          absl::StrCat("CopyBlocks: dst_blocks[", i, "] = ", dst_blocks[i],
                       is_source[dst_blocks[i]] ? " is also a source" : " is repeated"));
    }
    is_destination[dst_blocks[i]] = true;
  }
  return absl::OkStatus();
}

}  // namespace zigzag
