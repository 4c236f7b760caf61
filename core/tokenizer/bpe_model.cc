#include "core/tokenizer/bpe_model.h"

#include <queue>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/tokenizer/tokenizer_limits.h"
#include "core/tokenizer/utf8.h"
#include "core/util/status_macros.h"

namespace zigzag {
namespace {

uint64_t PairKey(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::Parse(const JsonField& model) {
  std::unique_ptr<BpeModel> bpe(new BpeModel());
  const JsonField vocab = model.Get("vocab");
  RETURN_IF_ERROR(vocab.RequireObject());
  if (vocab.json().size() > static_cast<size_t>(kMaxTokenId) + 1) {
    return vocab.Error(absl::StrCat("has ", vocab.json().size(),
                                    " entries, more than the limit of ", kMaxTokenId + 1));
  }
  bpe->vocab_.reserve(vocab.json().size());
  for (const auto& [token, id] : vocab.json().items()) {
    ASSIGN_OR_RETURN(const int64_t value, vocab.Member(token, id).Int(0, kMaxTokenId));
    bpe->vocab_[token] = static_cast<int32_t>(value);
  }
  const auto id_of = [&](const std::string& token) -> std::optional<int32_t> {
    auto it = bpe->vocab_.find(token);
    if (it == bpe->vocab_.end()) return std::nullopt;
    return it->second;
  };

  ASSIGN_OR_RETURN(const std::vector<JsonField> merges,
                   model.Get("merges").ElementsOr(static_cast<size_t>(kMaxTokenId) + 1));
  bpe->merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const JsonField& merge = merges[rank];
    std::string left, right;
    if (merge.json().is_string()) {
      const std::string& text = merge.json().get_ref<const std::string&>();
      const size_t space = text.find(' ');
      if (space == std::string::npos) {
        return merge.Error("must be \"left right\" (two tokens and a space)");
      }
      left = text.substr(0, space);
      right = text.substr(space + 1);
    } else if (merge.json().is_array() && merge.json().size() == 2 && merge.json()[0].is_string() &&
               merge.json()[1].is_string()) {
      left = merge.json()[0].get<std::string>();
      right = merge.json()[1].get<std::string>();
    } else {
      return merge.Error(absl::StrCat("must be \"left right\" or [\"left\", \"right\"], got ",
                                      DescribeJson(merge.json())));
    }
    const std::optional<int32_t> left_id = id_of(left), right_id = id_of(right),
                                 merged_id = id_of(left + right);
    if (!left_id || !right_id || !merged_id) {
      return merge.Error(
          absl::StrCat("('", left, "', '", right, "') uses a token not in model.vocab"));
    }
    // The first (lowest-ranked) occurrence of a pair wins.
    bpe->merges_.try_emplace(PairKey(*left_id, *right_id),
                             Merge{static_cast<int32_t>(rank), *merged_id});
  }

  const JsonField unk_token = model.Get("unk_token");
  if (unk_token.present()) {
    ASSIGN_OR_RETURN(const std::string unk, unk_token.String());
    bpe->unk_id_ = id_of(unk);
  }
  ASSIGN_OR_RETURN(bpe->fuse_unk_, model.Get("fuse_unk").BoolOr(false));
  ASSIGN_OR_RETURN(bpe->byte_fallback_, model.Get("byte_fallback").BoolOr(false));
  ASSIGN_OR_RETURN(bpe->ignore_merges_, model.Get("ignore_merges").BoolOr(false));
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    ASSIGN_OR_RETURN(const std::string affix, model.Get(key).StringOr(""));
    if (!affix.empty()) return model.Get(key).Unsupported("is not supported");
  }
  ASSIGN_OR_RETURN(const double dropout, model.Get("dropout").NumberOr(0.0, 0.0, 1.0));
  if (dropout > 0.0)
    return model.Get("dropout").Unsupported("is not supported (must be 0 or null)");
  for (int b = 0; b < 256; ++b) {
    bpe->byte_ids_[b] = id_of(absl::StrFormat("<0x%02X>", b)).value_or(-1);
  }
  return bpe;
}

absl::Status BpeModel::Encode(std::string_view piece, std::vector<int32_t>* ids) const {
  if (ignore_merges_) {
    auto it = vocab_.find(ToAbsl(piece));
    if (it != vocab_.end()) {
      ids->push_back(it->second);
      return absl::OkStatus();
    }
  }
  const bool cacheable = piece.size() <= kMaxCachedPieceBytes;
  if (cacheable) {
    absl::MutexLock lock(&cache_mutex_);
    auto it = cache_.find(ToAbsl(piece));
    if (it != cache_.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      return absl::OkStatus();
    }
  }
  const size_t first = ids->size();
  RETURN_IF_ERROR(EncodeUncached(piece, ids));
  if (cacheable) {
    absl::MutexLock lock(&cache_mutex_);
    if (cache_.size() >= kMaxCacheEntries) cache_.clear();
    cache_.try_emplace(std::string(piece), ids->begin() + static_cast<std::ptrdiff_t>(first),
                       ids->end());
  }
  return absl::OkStatus();
}

absl::Status BpeModel::EncodeUncached(std::string_view piece, std::vector<int32_t>* ids) const {
  // Symbols start as one per character (or per byte with byte fallback); merges join a symbol
  // with its right neighbour, the merged symbol keeping the left one's slot.
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    bool alive;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(piece.size());
  const auto push = [&](int32_t id) {
    const int32_t index = static_cast<int32_t>(symbols.size());
    symbols.push_back(Symbol{id, index - 1, -1, true});
    if (index > 0) symbols[index - 1].next = index;
  };
  std::string character;
  size_t pos = 0;
  while (pos < piece.size()) {
    size_t length = Utf8SequenceLength(piece, pos);
    if (length == 0) length = 1;  // cannot happen for validated input; treat as one byte
    character.assign(piece.substr(pos, length));
    auto it = vocab_.find(character);
    if (it != vocab_.end()) {
      push(it->second);
    } else {
      bool all_bytes = byte_fallback_;
      for (size_t i = 0; all_bytes && i < length; ++i) {
        all_bytes = byte_ids_[static_cast<uint8_t>(piece[pos + i])] >= 0;
      }
      if (all_bytes) {
        for (size_t i = 0; i < length; ++i) push(byte_ids_[static_cast<uint8_t>(piece[pos + i])]);
      } else if (unk_id_.has_value()) {
        if (!(fuse_unk_ && !symbols.empty() && symbols.back().id == *unk_id_)) push(*unk_id_);
      } else {
        return absl::InvalidArgumentError(absl::StrCat(
            "character '", character, "' has no token (the tokenizer has no unknown token)"));
      }
    }
    pos += length;
  }

  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t left_id;
    int32_t right_id;
    int32_t merged_id;
    bool operator>(const Candidate& other) const {
      return rank != other.rank ? rank > other.rank : pos > other.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  const auto consider = [&](int32_t left) {
    if (left < 0) return;
    const int32_t right = symbols[left].next;
    if (right < 0) return;
    auto it = merges_.find(PairKey(symbols[left].id, symbols[right].id));
    if (it == merges_.end()) return;
    queue.push(Candidate{it->second.rank, left, symbols[left].id, symbols[right].id,
                         it->second.merged_id});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) consider(i);
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (!left.alive || left.id != top.left_id || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    if (right.id != top.right_id) continue;
    left.id = top.merged_id;
    right.alive = false;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = top.pos;
    consider(left.prev);
    consider(top.pos);
  }
  for (int32_t i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[i].next) {
    ids->push_back(symbols[i].id);
  }
  return absl::OkStatus();
}

}  // namespace zigzag
