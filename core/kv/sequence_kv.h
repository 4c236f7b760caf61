// SequenceKv: one sequence's KV bookkeeping: for every (layer, KV head) its own stream, a block
// list and a length. Streams may hold different lengths (compression keeps different budgets per
// layer, and an adaptive split different counts per head), and a stream that keeps fewer tokens
// holds fewer blocks. It owns its blocks: they go back to the BlockPool on Release() or
// destruction, so nothing can leak. It touches no tensor memory; KvCache and the Backend do.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "core/kv/block_pool.h"

namespace zigzag {

class SequenceKv {
 public:
  SequenceKv(BlockPool* pool, int num_layers, int num_kv_heads);
  ~SequenceKv();
  SequenceKv(const SequenceKv&) = delete;
  SequenceKv& operator=(const SequenceKv&) = delete;
  SequenceKv(SequenceKv&& other) noexcept;
  SequenceKv& operator=(SequenceKv&& other) noexcept;

  int num_layers() const { return num_layers_; }
  int num_kv_heads() const { return num_kv_heads_; }
  int32_t block_size() const { return pool_->block_size(); }
  int64_t length(int layer, int head) const { return stream(layer, head).length; }
  std::span<const int32_t> blocks(int layer, int head) const { return stream(layer, head).blocks; }
  // Changes whenever the stream's block list changes (blocks appended, truncated away, released)
  // and nowhere else, so a backend holding a resident copy of the list re-sends it only then.
  // Drawn from one process-wide counter: no two lists ever share a version, whichever sequence
  // they belong to, so equal versions mean equal lists.
  uint64_t version(int layer, int head) const { return stream(layer, head).version; }
  // Identifies this sequence's contents: unique per process, drawn anew by Release() (a released
  // and refilled sequence, e.g. preempted and recomputed, is a new sequence to a backend).
  uint64_t id() const { return id_; }
  // The shortest and longest stream of a layer (0 for a sequence with no heads).
  int64_t min_length(int layer) const;
  int64_t max_length(int layer) const;
  // Blocks held across all streams.
  int64_t blocks_held() const;
  // Tokens held across all streams (sum of lengths): one token of one layer counts once per head.
  int64_t tokens_held() const;

  // Blocks the pool must supply to grow every stream by `tokens`.
  int32_t BlocksNeededToAppend(int64_t tokens) const;
  // Grows every (layer, KV head) stream by `tokens`, allocating blocks as needed; all or nothing
  // (ResourceExhausted and no change when the pool cannot supply them).
  absl::Status AppendAllLayers(int64_t tokens);
  // Grows one stream by `tokens`; all or nothing.
  absl::Status Append(int layer, int head, int64_t tokens);
  // Slot (block_id * block_size + offset) of entry `index` of a stream.
  int32_t Slot(int layer, int head, int64_t index) const;
  // Shrinks a stream to `new_length` (<= length) and returns blocks no longer needed to the pool.
  void Truncate(int layer, int head, int64_t new_length);
  // Returns every block to the pool; all lengths become 0.
  void Release();

 private:
  struct Stream {
    std::vector<int32_t> blocks;
    int64_t length = 0;
    uint64_t version = 0;
  };
  const Stream& stream(int layer, int head) const;
  Stream& stream(int layer, int head);

  BlockPool* pool_;
  int num_layers_;
  int num_kv_heads_;
  std::vector<Stream> streams_;  // [num_layers * num_kv_heads], layer-major
  uint64_t id_ = 0;
};

}  // namespace zigzag
