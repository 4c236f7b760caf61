#include "core/tokenizer/hf_normalizer.h"

#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/unistr.h>

#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/tokenizer/icu_regex.h"
#include "core/util/status_macros.h"

namespace zigzag {
namespace {

absl::Status TooLong(const char* what, size_t input_bytes, size_t max_output_bytes) {
  return absl::InvalidArgumentError(
      absl::StrCat("the ", what, " normalizer makes the ", input_bytes,
                   "-byte text longer than the limit of ", max_output_bytes, " bytes"));
}

class UnicodeNormalizer : public HfNormalizer {
 public:
  UnicodeNormalizer(const icu::Normalizer2* normalizer, std::string name)
      : normalizer_(normalizer), name_(std::move(name)) {}
  absl::StatusOr<std::string> Normalize(std::string text, size_t max_output_bytes) const override {
    UErrorCode status = U_ZERO_ERROR;
    if (normalizer_->isNormalizedUTF8(text, status) && U_SUCCESS(status)) {
      if (text.size() > max_output_bytes)
        return TooLong(name_.c_str(), text.size(), max_output_bytes);
      return text;
    }
    status = U_ZERO_ERROR;
    std::string out;
    icu::StringByteSink<std::string> sink(&out);
    normalizer_->normalizeUTF8(0, text, sink, nullptr, status);
    if (U_FAILURE(status)) {
      return absl::InternalError(
          absl::StrCat("ICU ", name_, " normalization failed: ", u_errorName(status)));
    }
    // ICU grows a text at most 18 code points per input code point, so `out` stayed bounded.
    if (out.size() > max_output_bytes) return TooLong(name_.c_str(), text.size(), max_output_bytes);
    return out;
  }

 private:
  const icu::Normalizer2* normalizer_;  // ICU singletons, never freed
  std::string name_;
};

class LowercaseNormalizer : public HfNormalizer {
 public:
  absl::StatusOr<std::string> Normalize(std::string text, size_t max_output_bytes) const override {
    icu::UnicodeString unicode = icu::UnicodeString::fromUTF8(text);
    unicode.toLower(icu::Locale::getRoot());
    std::string out;
    unicode.toUTF8String(out);
    if (out.size() > max_output_bytes) return TooLong("Lowercase", text.size(), max_output_bytes);
    return out;
  }
};

class PrependNormalizer : public HfNormalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  absl::StatusOr<std::string> Normalize(std::string text, size_t max_output_bytes) const override {
    if (text.empty()) return text;
    if (prefix_.size() > max_output_bytes || text.size() > max_output_bytes - prefix_.size()) {
      return TooLong("Prepend", text.size(), max_output_bytes);
    }
    return prefix_ + text;
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer : public HfNormalizer {
 public:
  ReplaceNormalizer(IcuRegex pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  absl::StatusOr<std::string> Normalize(std::string text, size_t max_output_bytes) const override {
    absl::StatusOr<std::string> out = pattern_.ReplaceAll(text, content_, max_output_bytes);
    if (out.status().code() == absl::StatusCode::kOutOfRange) {
      return TooLong("Replace", text.size(), max_output_bytes);
    }
    return out;
  }

 private:
  IcuRegex pattern_;
  std::string content_;
};

// Strips ASCII and Unicode white space (as Rust's char::is_whitespace) from either end.
class StripNormalizer : public HfNormalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  absl::StatusOr<std::string> Normalize(std::string text, size_t max_output_bytes) const override {
    icu::UnicodeString unicode = icu::UnicodeString::fromUTF8(text);
    int32_t begin = 0, end = unicode.length();
    if (left_) {
      while (begin < end && u_isUWhiteSpace(unicode.char32At(begin))) {
        begin = unicode.moveIndex32(begin, 1);
      }
    }
    if (right_) {
      while (end > begin) {
        const int32_t prev = unicode.moveIndex32(end, -1);
        if (!u_isUWhiteSpace(unicode.char32At(prev))) break;
        end = prev;
      }
    }
    std::string out;
    unicode.tempSubStringBetween(begin, end).toUTF8String(out);
    if (out.size() > max_output_bytes) return TooLong("Strip", text.size(), max_output_bytes);
    return out;
  }

 private:
  bool left_, right_;
};

class SequenceNormalizer : public HfNormalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<HfNormalizer>> parts)
      : parts_(std::move(parts)) {}
  absl::StatusOr<std::string> Normalize(std::string text, size_t max_output_bytes) const override {
    for (const auto& part : parts_) {
      ASSIGN_OR_RETURN(text, part->Normalize(std::move(text), max_output_bytes));
    }
    return text;
  }

 private:
  std::vector<std::unique_ptr<HfNormalizer>> parts_;
};

absl::StatusOr<const icu::Normalizer2*> IcuInstance(const std::string& type) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* instance = nullptr;
  if (type == "NFC") instance = icu::Normalizer2::getNFCInstance(status);
  if (type == "NFD") instance = icu::Normalizer2::getNFDInstance(status);
  if (type == "NFKC") instance = icu::Normalizer2::getNFKCInstance(status);
  if (type == "NFKD") instance = icu::Normalizer2::getNFKDInstance(status);
  if (U_FAILURE(status) || instance == nullptr) {
    return absl::InternalError(absl::StrCat("ICU ", type, " normalizer: ", u_errorName(status)));
  }
  return instance;
}

// `count`: normalizers made so far for this tokenizer.json, against kMaxHfNormalizers.
absl::StatusOr<std::unique_ptr<HfNormalizer>> ParseCounted(const JsonField& config, int* count) {
  if (!config.present()) return nullptr;
  RETURN_IF_ERROR(config.RequireObject());
  if (++*count > kMaxHfNormalizers) {
    return config.Error(
        absl::StrCat("makes more than ", kMaxHfNormalizers, " normalizers in one tokenizer"));
  }
  ASSIGN_OR_RETURN(const std::string type, config.Get("type").String());
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
    ASSIGN_OR_RETURN(const icu::Normalizer2* instance, IcuInstance(type));
    return std::make_unique<UnicodeNormalizer>(instance, type);
  }
  if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  if (type == "Strip") {
    ASSIGN_OR_RETURN(const bool left, config.Get("left").BoolOr(true));
    ASSIGN_OR_RETURN(const bool right, config.Get("right").BoolOr(true));
    return std::make_unique<StripNormalizer>(left, right);
  }
  if (type == "Prepend") {
    ASSIGN_OR_RETURN(std::string prefix, config.Get("prepend").StringOr(""));
    return std::make_unique<PrependNormalizer>(std::move(prefix));
  }
  if (type == "Replace") {
    ASSIGN_OR_RETURN(IcuRegex pattern, ParseHfPattern(config.Get("pattern")));
    ASSIGN_OR_RETURN(std::string content, config.Get("content").StringOr(""));
    return std::make_unique<ReplaceNormalizer>(std::move(pattern), std::move(content));
  }
  if (type == "Sequence") {
    ASSIGN_OR_RETURN(const std::vector<JsonField> members,
                     config.Get("normalizers").ElementsOr(kMaxHfNormalizers));
    std::vector<std::unique_ptr<HfNormalizer>> parts;
    for (const JsonField& member : members) {
      ASSIGN_OR_RETURN(std::unique_ptr<HfNormalizer> parsed, ParseCounted(member, count));
      if (parsed != nullptr) parts.push_back(std::move(parsed));
    }
    return std::make_unique<SequenceNormalizer>(std::move(parts));
  }
  return config.Get("type").Unsupported(
      absl::StrCat("names normalizer type '", type, "', which is not supported"));
}

}  // namespace

absl::StatusOr<IcuRegex> ParseHfPattern(const JsonField& pattern) {
  RETURN_IF_ERROR(pattern.RequireObject());
  const JsonField string = pattern.Get("String");
  const JsonField regex = pattern.Get("Regex");
  absl::StatusOr<IcuRegex> compiled = absl::UnknownError("");
  if (string.present()) {
    ASSIGN_OR_RETURN(const std::string literal, string.String());
    compiled = IcuRegex::Literal(literal);
    if (!compiled.ok()) return string.Error(compiled.status().message());
  } else if (regex.present()) {
    ASSIGN_OR_RETURN(const std::string expression, regex.String());
    compiled = IcuRegex::Compile(expression);
    if (!compiled.ok()) return regex.Error(compiled.status().message());
  } else {
    return pattern.Error("must be {\"String\": ...} or {\"Regex\": ...}");
  }
  return compiled;
}

absl::StatusOr<std::unique_ptr<HfNormalizer>> ParseHfNormalizer(const JsonField& config) {
  int count = 0;
  return ParseCounted(config, &count);
}

}  // namespace zigzag
