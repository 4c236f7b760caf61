// SequenceKv: one sequence's KV bookkeeping: for every layer its own block list and length.
// Layers may hold different lengths (compression keeps different budgets per layer). It owns its
// blocks: they go back to the BlockPool on Release() or destruction, so nothing can leak.
// It touches no tensor memory; KvCache and the Backend do.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "core/kv/block_pool.h"

namespace zigzag {

class SequenceKv {
 public:
  SequenceKv(BlockPool* pool, int num_layers);
  ~SequenceKv();
  SequenceKv(const SequenceKv&) = delete;
  SequenceKv& operator=(const SequenceKv&) = delete;
  SequenceKv(SequenceKv&& other) noexcept;
  SequenceKv& operator=(SequenceKv&& other) noexcept;

  int num_layers() const { return static_cast<int>(layers_.size()); }
  int32_t block_size() const { return pool_->block_size(); }
  int64_t length(int layer) const { return layers_[layer].length; }
  std::span<const int32_t> blocks(int layer) const { return layers_[layer].blocks; }
  // Blocks held across all layers.
  int64_t blocks_held() const;
  // Tokens held across all layers (sum of lengths).
  int64_t tokens_held() const;

  // Blocks the pool must supply to grow every layer by `tokens`.
  int32_t BlocksNeededToAppend(int64_t tokens) const;
  // Grows every layer by `tokens`, allocating blocks as needed; all or nothing across layers
  // (ResourceExhausted and no change when the pool cannot supply them).
  absl::Status AppendAllLayers(int64_t tokens);
  // Grows one layer by `tokens`; all or nothing.
  absl::Status Append(int layer, int64_t tokens);
  // Slot (block_id * block_size + offset) of cache entry `index` of `layer`.
  int32_t Slot(int layer, int64_t index) const;
  // Shrinks a layer to `new_length` (<= length) and returns blocks no longer needed to the pool.
  void Truncate(int layer, int64_t new_length);
  // Returns every block to the pool; all lengths become 0.
  void Release();

 private:
  struct Layer {
    std::vector<int32_t> blocks;
    int64_t length = 0;
  };
  BlockPool* pool_;
  std::vector<Layer> layers_;
};

}  // namespace zigzag
