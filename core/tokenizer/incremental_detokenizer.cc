#include "core/tokenizer/incremental_detokenizer.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "core/tokenizer/utf8.h"
#include "core/util/status_macros.h"
#include "spdlog/spdlog.h"

namespace zigzag {
namespace {

// How many prompt ids the first window reaches back (vLLM uses the same number): enough context
// for leading-space rules, few enough to keep every Append cheap.
constexpr size_t kInitialPrefixIds = 5;
// At most this many ids wait for their text to settle. Without a bound, ids that never settle
// (invalid bytes, skipped special tokens, a prefix whose text keeps changing) widen the window
// on every Append, and streaming n of them decodes O(n^2) ids.
constexpr size_t kMaxPendingIds = 16;
// When the bound forces text out, the last ids stay pending: a UTF-8 character has at most four
// bytes, and a byte-fallback token carries one, so a character still arriving is not cut.
constexpr size_t kKeptPendingIds = 4;

}  // namespace

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tokenizer,
                                               std::vector<int32_t> prompt_ids,
                                               bool skip_special_tokens)
    : tokenizer_(tokenizer),
      skip_special_tokens_(skip_special_tokens),
      ids_(std::move(prompt_ids)) {
  // Out-of-range prompt ids would make every window fail to decode; start past them.
  size_t last_bad = 0;
  for (size_t i = 0; i < ids_.size(); ++i) {
    if (ids_[i] < 0 || ids_[i] >= tokenizer_.vocab_size()) last_bad = i + 1;
  }
  read_offset_ = ids_.size();
  prefix_offset_ = std::max(last_bad, read_offset_ - std::min(read_offset_, kInitialPrefixIds));
}

absl::StatusOr<std::string> IncrementalDetokenizer::DecodeRange(size_t begin, size_t end) const {
  // The ids are in range (checked when appended); a decoder can still refuse (its limits).
  return tokenizer_.Decode(absl::MakeConstSpan(ids_).subspan(begin, end - begin),
                           skip_special_tokens_);
}

absl::StatusOr<std::string> IncrementalDetokenizer::Append(int32_t id) {
  if (id < 0 || id >= tokenizer_.vocab_size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "token id ", id, " is outside the vocabulary [0, ", tokenizer_.vocab_size(), ")"));
  }
  ids_.push_back(id);
  absl::StatusOr<std::string> prefix = DecodeRange(prefix_offset_, read_offset_);
  absl::StatusOr<std::string> full = DecodeRange(prefix_offset_, ids_.size());
  if (!prefix.ok() || !full.ok()) {
    ids_.pop_back();
    return prefix.ok() ? full.status() : prefix.status();
  }
  std::string delta = Emit(*prefix, *full);
  if (!delta.empty() || ids_.size() - read_offset_ < kMaxPendingIds) return delta;
  // Too many unsettled ids: their text is final as it stands (U+FFFD for invalid bytes).
  absl::StatusOr<std::string> forced = EmitThrough(*prefix, ids_.size() - kKeptPendingIds);
  if (!forced.ok()) ids_.pop_back();
  return forced;
}

std::string IncrementalDetokenizer::Emit(const std::string& prefix, const std::string& full) {
  // Hold back while the window ends in an incomplete character, or when the new ids changed the
  // text of the prefix (then a later, longer window settles it).
  if (full.size() <= prefix.size() || EndsWithReplacement(full) ||
      full.compare(0, prefix.size(), prefix) != 0) {
    return std::string();
  }
  std::string delta = full.substr(prefix.size());
  prefix_offset_ = read_offset_;
  read_offset_ = ids_.size();
  text_.append(delta);
  return delta;
}

std::string IncrementalDetokenizer::Flush() {
  absl::StatusOr<std::string> delta = FlushOrError();
  if (!delta.ok()) {
    spdlog::warn("dropping the text of {} pending token(s): {}", ids_.size() - read_offset_,
                 std::string(delta.status().message()));
    read_offset_ = ids_.size();
    prefix_offset_ = read_offset_;
    return std::string();
  }
  return *std::move(delta);
}

absl::StatusOr<std::string> IncrementalDetokenizer::FlushOrError() {
  if (read_offset_ == ids_.size()) return std::string();
  ASSIGN_OR_RETURN(const std::string prefix, DecodeRange(prefix_offset_, read_offset_));
  return EmitThrough(prefix, ids_.size());
}

absl::StatusOr<std::string> IncrementalDetokenizer::EmitThrough(const std::string& prefix,
                                                                size_t end) {
  ASSIGN_OR_RETURN(const std::string full, DecodeRange(prefix_offset_, end));
  std::string delta;
  if (full.compare(0, prefix.size(), prefix) == 0) {
    delta = full.substr(prefix.size());
  } else {
    // The prefix's text changed; emit the pending ids decoded on their own.
    ASSIGN_OR_RETURN(delta, DecodeRange(read_offset_, end));
  }
  prefix_offset_ = read_offset_;
  read_offset_ = end;
  text_.append(delta);
  return delta;
}

}  // namespace zigzag
