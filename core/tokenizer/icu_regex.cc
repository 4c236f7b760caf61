#include "core/tokenizer/icu_regex.h"

#include <unicode/regex.h>
#include <unicode/utext.h>

#include "absl/strings/str_cat.h"
#include "core/util/check.h"

namespace zigzag {

IcuRegex::IcuRegex(std::unique_ptr<icu::RegexPattern> pattern) : pattern_(std::move(pattern)) {}
IcuRegex::IcuRegex(IcuRegex&&) noexcept = default;
IcuRegex& IcuRegex::operator=(IcuRegex&&) noexcept = default;
IcuRegex::~IcuRegex() = default;

absl::StatusOr<IcuRegex> IcuRegex::Compile(const std::string& pattern) {
  UErrorCode status = U_ZERO_ERROR;
  UParseError parse_error;
  std::unique_ptr<icu::RegexPattern> compiled(
      icu::RegexPattern::compile(icu::UnicodeString::fromUTF8(pattern), 0, parse_error, status));
  if (U_FAILURE(status) || compiled == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("cannot compile regex '", pattern,
                                                   "': ", u_errorName(status), " at offset ",
                                                   parse_error.offset));
  }
  return IcuRegex(std::move(compiled));
}

absl::StatusOr<IcuRegex> IcuRegex::Literal(const std::string& literal) {
  UErrorCode status = U_ZERO_ERROR;
  UParseError parse_error;
  std::unique_ptr<icu::RegexPattern> compiled(icu::RegexPattern::compile(
      icu::UnicodeString::fromUTF8(literal), UREGEX_LITERAL, parse_error, status));
  if (U_FAILURE(status) || compiled == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot compile literal pattern '", literal, "': ", u_errorName(status)));
  }
  return IcuRegex(std::move(compiled));
}

std::vector<std::pair<size_t, size_t>> IcuRegex::FindAll(std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> matches;
  if (text.empty()) return matches;
  UErrorCode status = U_ZERO_ERROR;
  UText* utext = utext_openUTF8(nullptr, text.data(), static_cast<int64_t>(text.size()), &status);
  ZZ_CHECK(U_SUCCESS(status)) << u_errorName(status);
  std::unique_ptr<icu::RegexMatcher> matcher(pattern_->matcher(status));
  ZZ_CHECK(U_SUCCESS(status)) << u_errorName(status);
  matcher->reset(utext);
  while (matcher->find(status) && U_SUCCESS(status)) {
    // With UTF-8 UText input, start64/end64 are native (byte) offsets.
    const int64_t begin = matcher->start64(status);
    const int64_t end = matcher->end64(status);
    if (end > begin) matches.emplace_back(static_cast<size_t>(begin), static_cast<size_t>(end));
  }
  ZZ_CHECK(U_SUCCESS(status)) << u_errorName(status);
  matcher.reset();
  utext_close(utext);
  return matches;
}

std::string IcuRegex::ReplaceAll(std::string_view text, std::string_view replacement) const {
  std::string out;
  size_t last = 0;
  for (const auto& [begin, end] : FindAll(text)) {
    out.append(text.substr(last, begin - last));
    out.append(replacement);
    last = end;
  }
  out.append(text.substr(last));
  return out;
}

}  // namespace zigzag
