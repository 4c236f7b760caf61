// BlockPool: the ids of a fixed number of equally sized KV blocks and which of them are free.
// Owns ids and counts only; the memory behind them is KvCache's, and it knows nothing of
// requests or layers. Allocation order is deterministic (lowest free id first), so tests can
// assert exact ids.
#pragma once

#include <cstdint>
#include <set>
#include <vector>

#include "absl/status/statusor.h"

namespace zigzag {

class BlockPool {
 public:
  BlockPool(int32_t num_blocks, int32_t block_size);

  int32_t num_blocks() const { return num_blocks_; }
  int32_t block_size() const { return block_size_; }
  int32_t num_free() const { return static_cast<int32_t>(free_.size()); }
  int32_t num_used() const { return num_blocks_ - num_free(); }

  // `count` blocks, all or nothing: ResourceExhausted (with the numbers) when fewer are free.
  absl::StatusOr<std::vector<int32_t>> Allocate(int32_t count);
  // Returns blocks to the pool. Freeing a free or unknown id is a bug (aborts).
  void Free(const std::vector<int32_t>& blocks);
  void Free(int32_t block);

  static int32_t BlocksForTokens(int64_t tokens, int32_t block_size) {
    return static_cast<int32_t>((tokens + block_size - 1) / block_size);
  }

 private:
  int32_t num_blocks_;
  int32_t block_size_;
  std::set<int32_t> free_;
};

}  // namespace zigzag
