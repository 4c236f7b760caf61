// IncrementalDetokenizer: text for each new token id of one generated sequence, for streaming.
// Decodes a short window of ids (a prefix already emitted plus the new ones) and emits the part
// past the prefix, so SentencePiece's leading-space rules and multi-token characters come out as
// in a full Decode; text is held back while it ends in an incomplete UTF-8 character (U+FFFD).
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

  // The new complete text since the last call ("" while a character is incomplete).
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

  const Tokenizer& tokenizer_;
  bool skip_special_tokens_;
  std::vector<int32_t> ids_;
  size_t prefix_offset_ = 0;  // start of the decode window
  size_t read_offset_ = 0;    // ids before this have been emitted
  std::string text_;
};

}  // namespace zigzag
