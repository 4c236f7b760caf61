// IcuRegex: a compiled ICU regular expression (Unicode properties such as \p{L}, lookahead,
// inline (?i:...)) that reports matches as byte ranges of UTF-8 text. Used by the tokenizer.json
// normalizers, pre-tokenizers and decoders. Thread-safe: each call makes its own matcher.
//
// Bounded work: ICU backtracks with a heap stack that grows with the length of a match for
// patterns such as `\s+(?!\S)` (a 1 MB run of spaces needs more than its 8 MB), so texts longer
// than kSegmentBytes are matched segment by segment, and every match operation runs under a stack
// and a step limit; hitting one is an InvalidArgument, never an abort.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

#include <unicode/uversion.h>  // the versioned namespace that `icu` aliases

U_NAMESPACE_BEGIN
class RegexPattern;
U_NAMESPACE_END

namespace zigzag {

class IcuRegex {
 public:
  // Segments of longer texts are cut at the last "safe" boundary in their second half: a space
  // (U+0020) after a character that is not white space. No match of the GPT-2, Llama-3 or Qwen
  // pre-tokenizer patterns (nor of Whitespace, WhitespaceSplit, Digits or a literal) spans such a
  // boundary, so for them the segments match exactly as the whole text does. Only a stretch of
  // kSegmentBytes / 2 without one (a long run of white space, a 32 KB "word") is cut elsewhere:
  // at the last character boundary within kSegmentBytes, so such a run ends up in pieces of at
  // most kSegmentBytes. Lookaround sees across segment boundaries (transparent bounds).
  static constexpr size_t kSegmentBytes = size_t{64} << 10;
  // ICU's backtracking stack per match operation (its default, stated here) and its step limit
  // (about a millisecond each: a pattern that backtracks quadratically gives up, linear ones on a
  // 64 KB segment stay far below).
  static constexpr int32_t kStackLimitBytes = 8 << 20;
  static constexpr int32_t kTimeLimitSteps = 1000;

  // InvalidArgument (with ICU's error name) when `pattern` does not compile.
  static absl::StatusOr<IcuRegex> Compile(const std::string& pattern);
  // A pattern matching `literal` exactly (no backtracking: matched without segments).
  static absl::StatusOr<IcuRegex> Literal(const std::string& literal);

  IcuRegex(IcuRegex&&) noexcept;
  IcuRegex& operator=(IcuRegex&&) noexcept;
  ~IcuRegex();

  // Non-overlapping, non-empty matches in `text` (valid UTF-8), as [begin, end) byte offsets.
  // InvalidArgument naming the pattern when ICU gives up (stack or step limit), Internal for any
  // other ICU error.
  absl::StatusOr<std::vector<std::pair<size_t, size_t>>> FindAll(std::string_view text) const;
  // `text` with every match replaced by `replacement` (taken literally). OutOfRange when the
  // result would be longer than `max_output_bytes` (callers word the limit), FindAll's errors.
  absl::StatusOr<std::string> ReplaceAll(std::string_view text, std::string_view replacement,
                                         size_t max_output_bytes = SIZE_MAX) const;

  const std::string& pattern() const { return pattern_text_; }

 private:
  IcuRegex(std::unique_ptr<icu::RegexPattern> pattern, std::string pattern_text, bool literal);
  std::unique_ptr<icu::RegexPattern> pattern_;
  std::string pattern_text_;
  bool literal_ = false;
};

// Where FindAll cuts `text` into segments (exposed for tests): the end offsets, the last being
// text.size(). A single segment for texts of at most `segment_bytes` (taken as 4 when smaller).
std::vector<size_t> RegexSegmentEnds(std::string_view text, size_t segment_bytes);

}  // namespace zigzag
