// KvCache: the paged KV memory of one model on one backend: a single pool tensor allocated once
// at start-up ([num_blocks, 2, block_size, head_dim]: a block holds one KV head's K and V of
// block_size tokens) and the BlockPool of its ids. Every (layer, KV head) stream of every
// sequence shares it, so a block freed by one head serves any other. It knows nothing of
// requests; SequenceKv holds each sequence's blocks.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "core/kv/block_pool.h"
#include "kernels/backend.h"

namespace zigzag {

struct KvLayout {
  int32_t num_layers = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t block_size = 16;
  DType dtype = DType::kF32;

  // K and V of one block (one KV head): 2 * block_size * head_dim * sizeof(dtype).
  int64_t bytes_per_block() const;
  // K and V of one token in one layer, all KV heads.
  int64_t bytes_per_token_layer() const;
  // K and V of one token in one (layer, KV head) stream.
  int64_t bytes_per_token_head() const;
  // Blocks a token count needs in every (layer, KV head) stream: L * G * ceil(tokens / block).
  int64_t BlocksForTokensAllStreams(int64_t tokens) const;
};

class KvCache {
 public:
  // Allocates num_blocks blocks on the backend. InvalidArgument for non-positive sizes,
  // ResourceExhausted when the backend cannot allocate.
  static absl::StatusOr<std::unique_ptr<KvCache>> Create(Backend* backend, const KvLayout& layout,
                                                         int32_t num_blocks);
  // As many blocks as fit in `bytes` (at least one, else InvalidArgument saying how many bytes
  // one block needs).
  static absl::StatusOr<std::unique_ptr<KvCache>> CreateWithBytes(Backend* backend,
                                                                  const KvLayout& layout,
                                                                  int64_t bytes);

  const KvLayout& layout() const { return layout_; }
  BlockPool& pool() { return pool_; }
  const BlockPool& pool() const { return pool_; }
  Tensor& pool_tensor() { return pool_tensor_; }
  int64_t bytes_in_use() const { return pool_.num_used() * layout_.bytes_per_block(); }
  int64_t bytes_total() const { return int64_t{pool_.num_blocks()} * layout_.bytes_per_block(); }

 private:
  KvCache(const KvLayout& layout, int32_t num_blocks, Tensor pool_tensor);
  KvLayout layout_;
  BlockPool pool_;
  Tensor pool_tensor_;
};

}  // namespace zigzag
