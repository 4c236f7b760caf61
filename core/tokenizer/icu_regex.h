// IcuRegex: a compiled ICU regular expression (Unicode properties such as \p{L}, lookahead,
// inline (?i:...)) that reports matches as byte ranges of UTF-8 text. Used by the tokenizer.json
// normalizers, pre-tokenizers and decoders. Thread-safe: each call makes its own matcher.
#pragma once

#include <cstddef>
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
  // InvalidArgument (with ICU's error name) when `pattern` does not compile.
  static absl::StatusOr<IcuRegex> Compile(const std::string& pattern);
  // A pattern matching `literal` exactly.
  static absl::StatusOr<IcuRegex> Literal(const std::string& literal);

  IcuRegex(IcuRegex&&) noexcept;
  IcuRegex& operator=(IcuRegex&&) noexcept;
  ~IcuRegex();

  // Non-overlapping, non-empty matches in `text` (valid UTF-8), as [begin, end) byte offsets.
  std::vector<std::pair<size_t, size_t>> FindAll(std::string_view text) const;
  // `text` with every match replaced by `replacement` (taken literally).
  std::string ReplaceAll(std::string_view text, std::string_view replacement) const;

 private:
  explicit IcuRegex(std::unique_ptr<icu::RegexPattern> pattern);
  std::unique_ptr<icu::RegexPattern> pattern_;
};

}  // namespace zigzag
