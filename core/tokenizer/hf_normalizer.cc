#include "core/tokenizer/hf_normalizer.h"

#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/unistr.h>

#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/tokenizer/icu_regex.h"
#include "core/util/check.h"
#include "core/util/status_macros.h"
#include "nlohmann/json.hpp"

namespace zigzag {
namespace {

using nlohmann::json;

class UnicodeNormalizer : public HfNormalizer {
 public:
  explicit UnicodeNormalizer(const icu::Normalizer2* normalizer) : normalizer_(normalizer) {}
  std::string Normalize(std::string text) const override {
    UErrorCode status = U_ZERO_ERROR;
    if (normalizer_->isNormalizedUTF8(text, status) && U_SUCCESS(status)) return text;
    status = U_ZERO_ERROR;
    std::string out;
    icu::StringByteSink<std::string> sink(&out);
    normalizer_->normalizeUTF8(0, text, sink, nullptr, status);
    ZZ_CHECK(U_SUCCESS(status)) << u_errorName(status);
    return out;
  }

 private:
  const icu::Normalizer2* normalizer_;  // ICU singletons, never freed
};

class LowercaseNormalizer : public HfNormalizer {
 public:
  std::string Normalize(std::string text) const override {
    icu::UnicodeString unicode = icu::UnicodeString::fromUTF8(text);
    unicode.toLower(icu::Locale::getRoot());
    std::string out;
    unicode.toUTF8String(out);
    return out;
  }
};

class PrependNormalizer : public HfNormalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  std::string Normalize(std::string text) const override {
    if (text.empty()) return text;
    return prefix_ + text;
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer : public HfNormalizer {
 public:
  ReplaceNormalizer(IcuRegex pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  std::string Normalize(std::string text) const override {
    return pattern_.ReplaceAll(text, content_);
  }

 private:
  IcuRegex pattern_;
  std::string content_;
};

// Strips ASCII and Unicode white space (as Rust's char::is_whitespace) from either end.
class StripNormalizer : public HfNormalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  std::string Normalize(std::string text) const override {
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
    return out;
  }

 private:
  bool left_, right_;
};

class SequenceNormalizer : public HfNormalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<HfNormalizer>> parts)
      : parts_(std::move(parts)) {}
  std::string Normalize(std::string text) const override {
    for (const auto& part : parts_) text = part->Normalize(std::move(text));
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

}  // namespace

// A {"String": s} or {"Regex": r} pattern of tokenizer.json.
absl::StatusOr<IcuRegex> ParseHfPattern(const json& pattern) {
  if (pattern.is_object() && pattern.contains("String") && pattern["String"].is_string()) {
    return IcuRegex::Literal(pattern["String"].get<std::string>());
  }
  if (pattern.is_object() && pattern.contains("Regex") && pattern["Regex"].is_string()) {
    return IcuRegex::Compile(pattern["Regex"].get<std::string>());
  }
  return absl::InvalidArgumentError(
      absl::StrCat("pattern must be {\"String\": ...} or {\"Regex\": ...}, got ", pattern.dump()));
}

absl::StatusOr<std::unique_ptr<HfNormalizer>> ParseHfNormalizer(const json& config) {
  if (config.is_null()) return nullptr;
  if (!config.is_object() || !config.contains("type") || !config["type"].is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat("normalizer: expected an object with a \"type\", got ", config.dump()));
  }
  const std::string type = config["type"].get<std::string>();
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
    ASSIGN_OR_RETURN(const icu::Normalizer2* instance, IcuInstance(type));
    return std::make_unique<UnicodeNormalizer>(instance);
  }
  if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  if (type == "Strip") {
    return std::make_unique<StripNormalizer>(config.value("left", true),
                                             config.value("right", true));
  }
  if (type == "Prepend") {
    return std::make_unique<PrependNormalizer>(config.value("prepend", std::string()));
  }
  if (type == "Replace") {
    ASSIGN_OR_RETURN(IcuRegex pattern, ParseHfPattern(config.value("pattern", json())));
    return std::make_unique<ReplaceNormalizer>(std::move(pattern),
                                               config.value("content", std::string()));
  }
  if (type == "Sequence") {
    std::vector<std::unique_ptr<HfNormalizer>> parts;
    for (const json& part : config.value("normalizers", json::array())) {
      ASSIGN_OR_RETURN(std::unique_ptr<HfNormalizer> parsed, ParseHfNormalizer(part));
      if (parsed != nullptr) parts.push_back(std::move(parsed));
    }
    return std::make_unique<SequenceNormalizer>(std::move(parts));
  }
  return absl::UnimplementedError(absl::StrCat("normalizer type '", type, "' is not supported"));
}

}  // namespace zigzag
