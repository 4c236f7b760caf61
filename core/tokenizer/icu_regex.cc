#include "core/tokenizer/icu_regex.h"

#include <unicode/regex.h>
#include <unicode/uchar.h>
#include <unicode/utext.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/tokenizer/utf8.h"

namespace zigzag {
namespace {

constexpr size_t kMaxPatternBytesInErrors = 80;

bool IsContinuationByte(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

// Whether the code point ending just before text[pos] is white space (as ICU's \s).
bool WhiteSpaceBefore(std::string_view text, size_t pos) {
  size_t begin = pos - 1;
  while (begin > 0 && IsContinuationByte(text[begin])) --begin;
  const size_t length = Utf8SequenceLength(text, begin);
  if (length != pos - begin) return false;
  return u_isUWhiteSpace(static_cast<UChar32>(DecodeUtf8At(text, begin, length)));
}

std::string ShortPattern(const std::string& pattern) {
  if (pattern.size() <= kMaxPatternBytesInErrors) return pattern;
  size_t end = kMaxPatternBytesInErrors;
  while (end > 0 && IsContinuationByte(pattern[end])) --end;
  return absl::StrCat(pattern.substr(0, end), "...");
}

// Closes a UText on scope exit.
struct UTextCloser {
  void operator()(UText* text) const { utext_close(text); }
};

}  // namespace

std::vector<size_t> RegexSegmentEnds(std::string_view text, size_t segment_bytes) {
  // At least one character boundary in every stretch of 4 bytes of valid UTF-8.
  segment_bytes = std::max<size_t>(segment_bytes, 4);
  std::vector<size_t> ends;
  size_t begin = 0;
  while (text.size() - begin > segment_bytes) {
    const size_t limit = begin + segment_bytes;
    size_t cut = 0;
    // The last safe boundary in the segment's second half.
    for (size_t pos = limit; pos > begin + segment_bytes / 2; --pos) {
      if (text[pos] == ' ' && !WhiteSpaceBefore(text, pos)) {
        cut = pos;
        break;
      }
    }
    if (cut == 0) {
      // None: the last character boundary (a valid UTF-8 text has one within 4 bytes).
      cut = limit;
      while (cut > begin + 1 && IsContinuationByte(text[cut])) --cut;
    }
    ends.push_back(cut);
    begin = cut;
  }
  ends.push_back(text.size());
  return ends;
}

IcuRegex::IcuRegex(std::unique_ptr<icu::RegexPattern> pattern, std::string pattern_text,
                   bool literal)
    : pattern_(std::move(pattern)), pattern_text_(std::move(pattern_text)), literal_(literal) {}
IcuRegex::IcuRegex(IcuRegex&&) noexcept = default;
IcuRegex& IcuRegex::operator=(IcuRegex&&) noexcept = default;
IcuRegex::~IcuRegex() = default;

absl::StatusOr<IcuRegex> IcuRegex::Compile(const std::string& pattern) {
  UErrorCode status = U_ZERO_ERROR;
  UParseError parse_error;
  std::unique_ptr<icu::RegexPattern> compiled(
      icu::RegexPattern::compile(icu::UnicodeString::fromUTF8(pattern), 0, parse_error, status));
  if (U_FAILURE(status) || compiled == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("cannot compile regex '", ShortPattern(pattern),
                                                   "': ", u_errorName(status), " at offset ",
                                                   parse_error.offset));
  }
  return IcuRegex(std::move(compiled), pattern, /*literal=*/false);
}

absl::StatusOr<IcuRegex> IcuRegex::Literal(const std::string& literal) {
  UErrorCode status = U_ZERO_ERROR;
  UParseError parse_error;
  std::unique_ptr<icu::RegexPattern> compiled(icu::RegexPattern::compile(
      icu::UnicodeString::fromUTF8(literal), UREGEX_LITERAL, parse_error, status));
  if (U_FAILURE(status) || compiled == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot compile literal pattern '", ShortPattern(literal), "': ", u_errorName(status)));
  }
  return IcuRegex(std::move(compiled), literal, /*literal=*/true);
}

absl::StatusOr<std::vector<std::pair<size_t, size_t>>> IcuRegex::FindAll(
    std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> matches;
  if (text.empty()) return matches;
  const auto icu_error = [&](UErrorCode status) -> absl::Status {
    if (status == U_REGEX_STACK_OVERFLOW || status == U_REGEX_TIME_OUT) {
      return absl::InvalidArgumentError(
          absl::StrCat("the text is too hard for the regex '", ShortPattern(pattern_text_), "' (",
                       u_errorName(status), ": more than ", kStackLimitBytes >> 20,
                       " MB of backtracking stack or ", kTimeLimitSteps, " steps in one match)"));
    }
    return absl::InternalError(absl::StrCat("ICU regex '", ShortPattern(pattern_text_),
                                            "' failed: ", u_errorName(status)));
  };
  UErrorCode status = U_ZERO_ERROR;
  std::unique_ptr<UText, UTextCloser> utext(
      utext_openUTF8(nullptr, text.data(), static_cast<int64_t>(text.size()), &status));
  if (U_FAILURE(status)) return icu_error(status);
  std::unique_ptr<icu::RegexMatcher> matcher(pattern_->matcher(status));
  if (U_FAILURE(status) || matcher == nullptr) {
    return icu_error(U_FAILURE(status) ? status : U_MEMORY_ALLOCATION_ERROR);
  }
  matcher->reset(utext.get());
  matcher->setStackLimit(kStackLimitBytes, status);
  matcher->setTimeLimit(kTimeLimitSteps, status);
  if (U_FAILURE(status)) return icu_error(status);

  // A literal needs no backtracking: one segment whatever the length.
  const std::vector<size_t> ends =
      literal_ ? std::vector<size_t>{text.size()} : RegexSegmentEnds(text, kSegmentBytes);
  size_t begin = 0;
  for (size_t end : ends) {
    matcher->region(static_cast<int64_t>(begin), static_cast<int64_t>(end), status);
    matcher->useTransparentBounds(true);
    matcher->useAnchoringBounds(false);
    while (U_SUCCESS(status) && matcher->find(status) && U_SUCCESS(status)) {
      // With UTF-8 UText input, start64/end64 are native (byte) offsets.
      const int64_t match_begin = matcher->start64(status);
      const int64_t match_end = matcher->end64(status);
      if (U_SUCCESS(status) && match_end > match_begin) {
        matches.emplace_back(static_cast<size_t>(match_begin), static_cast<size_t>(match_end));
      }
    }
    if (U_FAILURE(status)) return icu_error(status);
    begin = end;
  }
  return matches;
}

absl::StatusOr<std::string> IcuRegex::ReplaceAll(std::string_view text,
                                                 std::string_view replacement,
                                                 size_t max_output_bytes) const {
  auto matches = FindAll(text);
  if (!matches.ok()) return matches.status();
  std::string out;
  size_t last = 0;
  const auto append = [&](std::string_view part) {
    if (part.size() > max_output_bytes - out.size()) return false;
    out.append(part);
    return true;
  };
  bool fits = true;
  for (const auto& [begin, end] : *matches) {
    fits = append(text.substr(last, begin - last)) && append(replacement);
    if (!fits) break;
    last = end;
  }
  if (fits) fits = append(text.substr(last));
  if (!fits) {
    return absl::OutOfRangeError(absl::StrCat("replacing '", ShortPattern(pattern_text_), "' by '",
                                              ShortPattern(std::string(replacement)),
                                              "' makes the text longer than ", max_output_bytes,
                                              " bytes"));
  }
  return out;
}

}  // namespace zigzag
