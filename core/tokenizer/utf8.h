// UTF-8 helpers shared by the tokenizers and the streaming classes: validation with the byte
// offset of the first bad sequence, lossy decoding of arbitrary bytes (U+FFFD for each maximal
// invalid subpart, as WHATWG and Rust's from_utf8_lossy do) and code point iteration.
// Knows nothing of tokens.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace zigzag {

inline constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";  // U+FFFD

// Length of the valid UTF-8 sequence starting at text[pos], or 0 when the bytes there are not a
// complete, valid sequence (overlong forms, surrogates and values above U+10FFFF are invalid).
size_t Utf8SequenceLength(std::string_view text, size_t pos);

// OK, or InvalidArgument naming the byte offset of the first invalid sequence.
absl::Status ValidateUtf8(std::string_view text);

// `bytes` as valid UTF-8: every maximal invalid subpart becomes U+FFFD.
std::string Utf8Lossy(std::string_view bytes);

// Appends the UTF-8 encoding of `code_point` (which must be a valid scalar value).
void AppendUtf8(char32_t code_point, std::string* out);

// Decodes the valid sequence of `length` bytes at text[pos] (see Utf8SequenceLength).
char32_t DecodeUtf8At(std::string_view text, size_t pos, size_t length);

// Debian's Abseil has its own string_view type; this bridges the two.
inline absl::string_view ToAbsl(std::string_view text) {
  return absl::string_view(text.data(), text.size());
}

inline bool EndsWithReplacement(std::string_view text) {
  return text.size() >= kReplacementCharacter.size() &&
         text.substr(text.size() - kReplacementCharacter.size()) == kReplacementCharacter;
}

}  // namespace zigzag
