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
#include "kernels/backend.h"

namespace zigzag {

// Every stream's kept entries strictly ascending and within its blocks' capacity; every block
// id within [0, num_blocks); no block in two streams (or twice in one), so that streams can be
// compacted independently.
inline absl::Status ValidateCompactKvArgs(std::span<const KvStreamCompaction> streams,
                                          int64_t block_size, int64_t num_blocks) {
  std::vector<bool> used(static_cast<size_t>(num_blocks), false);
  for (size_t s = 0; s < streams.size(); ++s) {
    const KvStreamCompaction& stream = streams[s];
    for (size_t b = 0; b < stream.block_ids.size(); ++b) {
      const int32_t id = stream.block_ids[b];
      if (id < 0 || id >= num_blocks) {
        return absl::InvalidArgumentError(absl::StrCat("CompactKv: streams[", s, "].block_ids[", b,
                                                       "] = ", id, " is outside [0, ", num_blocks,
                                                       ")"));
      }
      if (used[id]) {
        return absl::InvalidArgumentError(absl::StrCat("CompactKv: streams[", s, "].block_ids[", b,
                                                       "] = ", id, " already belongs to a stream"));
      }
      used[id] = true;
    }
    const int64_t capacity = static_cast<int64_t>(stream.block_ids.size()) * block_size;
    for (size_t i = 0; i < stream.kept.size(); ++i) {
      const int32_t entry = stream.kept[i];
      if (entry < 0 || entry >= capacity) {
        return absl::InvalidArgumentError(absl::StrCat("CompactKv: streams[", s, "].kept[", i,
                                                       "] = ", entry, " is outside the stream's ",
                                                       capacity, " entries"));
      }
      if (i > 0 && entry <= stream.kept[i - 1]) {
        return absl::InvalidArgumentError(
            absl::StrCat("CompactKv: streams[", s, "].kept must be strictly ascending; entry ", i,
                         " is ", entry, " after ", stream.kept[i - 1]));
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
