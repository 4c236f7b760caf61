#include "core/kv/block_pool.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/util/check.h"

namespace zigzag {

BlockPool::BlockPool(int32_t num_blocks, int32_t block_size)
    : num_blocks_(num_blocks), block_size_(block_size) {
  // KvCache validates user-supplied sizes before it builds a pool, so bad sizes here are bugs.
  ZZ_CHECK(num_blocks >= 0) << "num_blocks " << num_blocks;
  ZZ_CHECK(block_size > 0) << "block_size " << block_size;
  // Ascending ids inserted at the end: the hint makes this linear.
  for (int32_t id = 0; id < num_blocks; ++id) free_.insert(free_.end(), id);
}

absl::StatusOr<std::vector<int32_t>> BlockPool::Allocate(int32_t count) {
  ZZ_CHECK(count >= 0) << "Allocate(" << count << ")";
  if (count > num_free()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "KV block pool: need ", count, " blocks, only ", num_free(), " free of ", num_blocks_));
  }
  std::vector<int32_t> blocks;
  blocks.reserve(count);
  auto it = free_.begin();
  for (int32_t i = 0; i < count; ++i) blocks.push_back(*it++);
  free_.erase(free_.begin(), it);
  return blocks;
}

void BlockPool::Free(const std::vector<int32_t>& blocks) {
  for (int32_t block : blocks) Free(block);
}

void BlockPool::Free(int32_t block) {
  ZZ_CHECK(block >= 0 && block < num_blocks_)
      << "freeing block " << block << " outside [0, " << num_blocks_ << ")";
  const bool inserted = free_.insert(block).second;
  ZZ_CHECK(inserted) << "freeing block " << block << " which is already free";
}

}  // namespace zigzag
