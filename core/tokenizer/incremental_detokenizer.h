// IncrementalDetokenizer: text for each new token id of one generated sequence, for streaming.
// Decodes a short window of ids (a prefix already emitted plus the new ones) and emits the part
// past the prefix, so SentencePiece's leading-space rules and multi-token characters come out as
// in a full Decode; text is held back while it ends in an incomplete UTF-8 character (U+FFFD),
// for at most 16 ids (then it is emitted as it stands), so every Append decodes a bounded window.
// Owns no tokenizer and does no stop-string handling (stop_strings.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/tokenizer/tokenizer.h"

namespace zigzag {

class IncrementalDetokenizer {
 public:
  // `tokenizer` must outlive this object. `prompt_ids` give the context the first generated
  // tokens are decoded after; their own text is never emitted.
  IncrementalDetokenizer(const Tokenizer& tokenizer, std::vector<int32_t> prompt_ids,
                         bool skip_special_tokens);

  // The new complete text since the last call ("" while a character is incomplete, unless 16
  // ids are pending: then all but the last four are emitted, invalid bytes as U+FFFD).
  // InvalidArgument for an id outside the vocabulary, or the tokenizer's error when its decoder
  // fails on the window (a limit of tokenizer_limits.h); the id is then not appended.
  absl::StatusOr<std::string> Append(int32_t id);
  // Whatever is pending at the end (incomplete bytes as U+FFFD); "" (logged) when the tokenizer
  // cannot decode it.
  std::string Flush();
  // All text emitted so far (by Append and Flush).
  const std::string& text() const { return text_; }

 private:
  // The text of ids_[begin, end).
  absl::StatusOr<std::string> DecodeRange(size_t begin, size_t end) const;
  // Append's step after decoding: the part of `full` past `prefix`, when it is safe to emit.
  std::string Emit(const std::string& prefix, const std::string& full);
  // Flush's work; its errors are the tokenizer's.
  absl::StatusOr<std::string> FlushOrError();
  // Emits ids_[read_offset_, end) whether or not their text has settled; `prefix` is the text of
  // ids_[prefix_offset_, read_offset_). Errors are the tokenizer's.
  absl::StatusOr<std::string> EmitThrough(const std::string& prefix, size_t end);

  const Tokenizer& tokenizer_;
  bool skip_special_tokens_;
  std::vector<int32_t> ids_;
  size_t prefix_offset_ = 0;  // start of the decode window
  size_t read_offset_ = 0;    // ids before this have been emitted
  std::string text_;
};

}  // namespace zigzag
