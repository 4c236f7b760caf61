#include "core/kv/sequence_kv.h"

#include <algorithm>
#include <atomic>
#include <utility>

#include "absl/status/statusor.h"
#include "core/util/check.h"

namespace zigzag {
namespace {

// Versions and ids: one process-wide counter, so they never repeat across sequences.
uint64_t NextVersion() {
  static std::atomic<uint64_t> counter{0};
  return counter.fetch_add(1, std::memory_order_relaxed) + 1;
}

}  // namespace

SequenceKv::SequenceKv(BlockPool* pool, int num_layers, int num_kv_heads)
    : pool_(pool), num_layers_(num_layers), num_kv_heads_(num_kv_heads) {
  ZZ_CHECK(pool != nullptr) << "SequenceKv needs a pool";
  ZZ_CHECK(num_layers >= 0) << "num_layers " << num_layers;
  ZZ_CHECK(num_kv_heads >= 0) << "num_kv_heads " << num_kv_heads;
  streams_.resize(static_cast<size_t>(num_layers) * num_kv_heads);
  id_ = NextVersion();
  for (Stream& s : streams_) s.version = NextVersion();
}

SequenceKv::~SequenceKv() { Release(); }

SequenceKv::SequenceKv(SequenceKv&& other) noexcept
    : pool_(other.pool_),
      num_layers_(other.num_layers_),
      num_kv_heads_(other.num_kv_heads_),
      streams_(std::move(other.streams_)),
      id_(other.id_) {
  // A moved-from sequence holds no streams, so its destructor returns nothing to the pool.
  other.streams_.clear();
  other.num_layers_ = 0;
  other.num_kv_heads_ = 0;
  other.id_ = NextVersion();
}

SequenceKv& SequenceKv::operator=(SequenceKv&& other) noexcept {
  if (this != &other) {
    Release();
    pool_ = other.pool_;
    num_layers_ = other.num_layers_;
    num_kv_heads_ = other.num_kv_heads_;
    streams_ = std::move(other.streams_);
    id_ = other.id_;
    other.id_ = NextVersion();
    other.streams_.clear();
    other.num_layers_ = 0;
    other.num_kv_heads_ = 0;
  }
  return *this;
}

const SequenceKv::Stream& SequenceKv::stream(int layer, int head) const {
  ZZ_CHECK(layer >= 0 && layer < num_layers_ && head >= 0 && head < num_kv_heads_)
      << "stream (layer " << layer << ", head " << head << ") of " << num_layers_ << " x "
      << num_kv_heads_;
  return streams_[static_cast<size_t>(layer) * num_kv_heads_ + head];
}

SequenceKv::Stream& SequenceKv::stream(int layer, int head) {
  return const_cast<Stream&>(std::as_const(*this).stream(layer, head));
}

int64_t SequenceKv::min_length(int layer) const {
  if (num_kv_heads_ == 0) return 0;
  int64_t shortest = length(layer, 0);
  for (int g = 1; g < num_kv_heads_; ++g) shortest = std::min(shortest, length(layer, g));
  return shortest;
}

int64_t SequenceKv::max_length(int layer) const {
  int64_t longest = 0;
  for (int g = 0; g < num_kv_heads_; ++g) longest = std::max(longest, length(layer, g));
  return longest;
}

int64_t SequenceKv::blocks_held() const {
  int64_t total = 0;
  for (const Stream& s : streams_) total += static_cast<int64_t>(s.blocks.size());
  return total;
}

int64_t SequenceKv::tokens_held() const {
  int64_t total = 0;
  for (const Stream& s : streams_) total += s.length;
  return total;
}

namespace {

// Blocks a stream of `length` tokens holding `held` blocks must add to grow by `tokens`.
int32_t ExtraBlocks(int64_t length, size_t held, int64_t tokens, int32_t block_size) {
  const int64_t needed = BlockPool::BlocksForTokens(length + tokens, block_size);
  const int64_t extra = needed - static_cast<int64_t>(held);
  return extra > 0 ? static_cast<int32_t>(extra) : 0;
}

}  // namespace

int32_t SequenceKv::BlocksNeededToAppend(int64_t tokens) const {
  ZZ_CHECK(tokens >= 0) << "append of " << tokens << " tokens";
  int64_t total = 0;
  for (const Stream& s : streams_) {
    total += ExtraBlocks(s.length, s.blocks.size(), tokens, block_size());
  }
  return static_cast<int32_t>(total);
}

absl::Status SequenceKv::AppendAllLayers(int64_t tokens) {
  // One pool request for every stream, so a failure leaves every stream unchanged.
  absl::StatusOr<std::vector<int32_t>> fresh = pool_->Allocate(BlocksNeededToAppend(tokens));
  if (!fresh.ok()) return fresh.status();
  size_t next = 0;
  for (Stream& s : streams_) {
    const int32_t extra = ExtraBlocks(s.length, s.blocks.size(), tokens, block_size());
    for (int32_t i = 0; i < extra; ++i) s.blocks.push_back((*fresh)[next++]);
    if (extra > 0) s.version = NextVersion();
    s.length += tokens;
  }
  ZZ_CHECK_EQ(next, fresh->size());
  return absl::OkStatus();
}

absl::Status SequenceKv::Append(int layer, int head, int64_t tokens) {
  ZZ_CHECK(tokens >= 0) << "append of " << tokens << " tokens";
  Stream& s = stream(layer, head);
  absl::StatusOr<std::vector<int32_t>> fresh =
      pool_->Allocate(ExtraBlocks(s.length, s.blocks.size(), tokens, block_size()));
  if (!fresh.ok()) return fresh.status();
  s.blocks.insert(s.blocks.end(), fresh->begin(), fresh->end());
  if (!fresh->empty()) s.version = NextVersion();
  s.length += tokens;
  return absl::OkStatus();
}

int32_t SequenceKv::Slot(int layer, int head, int64_t index) const {
  const Stream& s = stream(layer, head);
  ZZ_CHECK(index >= 0 && index < s.length) << "cache index " << index << " of layer " << layer
                                           << " head " << head << " with length " << s.length;
  const int32_t bs = block_size();
  return s.blocks[index / bs] * bs + static_cast<int32_t>(index % bs);
}

void SequenceKv::Truncate(int layer, int head, int64_t new_length) {
  Stream& s = stream(layer, head);
  ZZ_CHECK(new_length >= 0 && new_length <= s.length)
      << "truncate layer " << layer << " head " << head << " of length " << s.length << " to "
      << new_length;
  const size_t keep = BlockPool::BlocksForTokens(new_length, block_size());
  // Return tail blocks newest first; the pool's order does not depend on it.
  if (s.blocks.size() > keep) s.version = NextVersion();
  while (s.blocks.size() > keep) {
    pool_->Free(s.blocks.back());
    s.blocks.pop_back();
  }
  s.length = new_length;
}

void SequenceKv::Release() {
  for (Stream& s : streams_) {
    pool_->Free(s.blocks);
    s.blocks.clear();
    s.length = 0;
    s.version = NextVersion();
  }
  id_ = NextVersion();
}

}  // namespace zigzag
