// BpeModel: the "model" of a tokenizer.json of type BPE: vocabulary, ranked merges, byte fallback
// to <0xNN> tokens, unknown token, ignore_merges. Encodes one pre-tokenized piece at a time with a
// rank-ordered merge loop over a linked list (O(n log n) in the piece length) and a bounded cache
// of recent pieces. Knows nothing of added tokens, normalizers or decoding.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/util/json_fields.h"

namespace zigzag {

class BpeModel {
 public:
  // Parses the "model" object of tokenizer.json (merges as "a b" strings or ["a", "b"] pairs).
  // Errors name the file and key path; ids must be in [0, kMaxTokenId] (tokenizer_limits.h).
  static absl::StatusOr<std::unique_ptr<BpeModel>> Parse(const JsonField& model);

  // Appends the ids of `piece` (non-empty, valid UTF-8). InvalidArgument when a character has no
  // token and the model has neither byte fallback nor an unknown token.
  absl::Status Encode(std::string_view piece, std::vector<int32_t>* ids) const;

  const absl::flat_hash_map<std::string, int32_t>& vocab() const { return vocab_; }

 private:
  struct Merge {
    int32_t rank;
    int32_t merged_id;
  };
  BpeModel() = default;
  absl::Status EncodeUncached(std::string_view piece, std::vector<int32_t>* ids) const;

  absl::flat_hash_map<std::string, int32_t> vocab_;
  absl::flat_hash_map<uint64_t, Merge> merges_;  // key: left id << 32 | right id
  std::optional<int32_t> unk_id_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  int32_t byte_ids_[256];  // ids of <0x00>..<0xFF>, -1 when absent

  static constexpr size_t kMaxCachedPieceBytes = 256;
  static constexpr size_t kMaxCacheEntries = 1 << 16;
  mutable absl::Mutex cache_mutex_;
  mutable absl::flat_hash_map<std::string, std::vector<int32_t>> cache_
      ABSL_GUARDED_BY(cache_mutex_);
};

}  // namespace zigzag
