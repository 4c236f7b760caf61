#include "core/kv/sequence_kv.h"

#include <utility>

#include "absl/status/statusor.h"
#include "core/util/check.h"

namespace zigzag {

SequenceKv::SequenceKv(BlockPool* pool, int num_layers) : pool_(pool), layers_(num_layers) {
  ZZ_CHECK(pool != nullptr) << "SequenceKv needs a pool";
  ZZ_CHECK(num_layers >= 0) << "num_layers " << num_layers;
}

SequenceKv::~SequenceKv() { Release(); }

SequenceKv::SequenceKv(SequenceKv&& other) noexcept
    : pool_(other.pool_), layers_(std::move(other.layers_)) {
  // A moved-from sequence holds no layers, so its destructor returns nothing to the pool.
  other.layers_.clear();
}

SequenceKv& SequenceKv::operator=(SequenceKv&& other) noexcept {
  if (this != &other) {
    Release();
    pool_ = other.pool_;
    layers_ = std::move(other.layers_);
    other.layers_.clear();
  }
  return *this;
}

int64_t SequenceKv::blocks_held() const {
  int64_t total = 0;
  for (const Layer& layer : layers_) total += static_cast<int64_t>(layer.blocks.size());
  return total;
}

int64_t SequenceKv::tokens_held() const {
  int64_t total = 0;
  for (const Layer& layer : layers_) total += layer.length;
  return total;
}

namespace {

// Blocks a layer of `length` tokens holding `held` blocks must add to grow by `tokens`.
int32_t ExtraBlocks(int64_t length, size_t held, int64_t tokens, int32_t block_size) {
  const int64_t needed = BlockPool::BlocksForTokens(length + tokens, block_size);
  const int64_t extra = needed - static_cast<int64_t>(held);
  return extra > 0 ? static_cast<int32_t>(extra) : 0;
}

}  // namespace

int32_t SequenceKv::BlocksNeededToAppend(int64_t tokens) const {
  ZZ_CHECK(tokens >= 0) << "append of " << tokens << " tokens";
  int64_t total = 0;
  for (const Layer& layer : layers_) {
    total += ExtraBlocks(layer.length, layer.blocks.size(), tokens, block_size());
  }
  return static_cast<int32_t>(total);
}

absl::Status SequenceKv::AppendAllLayers(int64_t tokens) {
  // One pool request for every layer, so a failure leaves every layer unchanged.
  absl::StatusOr<std::vector<int32_t>> fresh = pool_->Allocate(BlocksNeededToAppend(tokens));
  if (!fresh.ok()) return fresh.status();
  size_t next = 0;
  for (Layer& layer : layers_) {
    const int32_t extra = ExtraBlocks(layer.length, layer.blocks.size(), tokens, block_size());
    for (int32_t i = 0; i < extra; ++i) layer.blocks.push_back((*fresh)[next++]);
    layer.length += tokens;
  }
  ZZ_CHECK_EQ(next, fresh->size());
  return absl::OkStatus();
}

absl::Status SequenceKv::Append(int layer_index, int64_t tokens) {
  ZZ_CHECK(layer_index >= 0 && layer_index < num_layers()) << "layer " << layer_index;
  ZZ_CHECK(tokens >= 0) << "append of " << tokens << " tokens";
  Layer& layer = layers_[layer_index];
  absl::StatusOr<std::vector<int32_t>> fresh =
      pool_->Allocate(ExtraBlocks(layer.length, layer.blocks.size(), tokens, block_size()));
  if (!fresh.ok()) return fresh.status();
  layer.blocks.insert(layer.blocks.end(), fresh->begin(), fresh->end());
  layer.length += tokens;
  return absl::OkStatus();
}

int32_t SequenceKv::Slot(int layer_index, int64_t index) const {
  ZZ_CHECK(layer_index >= 0 && layer_index < num_layers()) << "layer " << layer_index;
  const Layer& layer = layers_[layer_index];
  ZZ_CHECK(index >= 0 && index < layer.length)
      << "cache index " << index << " of layer " << layer_index << " with length " << layer.length;
  const int32_t bs = block_size();
  return layer.blocks[index / bs] * bs + static_cast<int32_t>(index % bs);
}

void SequenceKv::Truncate(int layer_index, int64_t new_length) {
  ZZ_CHECK(layer_index >= 0 && layer_index < num_layers()) << "layer " << layer_index;
  Layer& layer = layers_[layer_index];
  ZZ_CHECK(new_length >= 0 && new_length <= layer.length)
      << "truncate layer " << layer_index << " of length " << layer.length << " to " << new_length;
  const size_t keep = BlockPool::BlocksForTokens(new_length, block_size());
  // Return tail blocks newest first; the pool's order does not depend on it.
  while (layer.blocks.size() > keep) {
    pool_->Free(layer.blocks.back());
    layer.blocks.pop_back();
  }
  layer.length = new_length;
}

void SequenceKv::Release() {
  for (Layer& layer : layers_) {
    pool_->Free(layer.blocks);
    layer.blocks.clear();
    layer.length = 0;
  }
}

}  // namespace zigzag
