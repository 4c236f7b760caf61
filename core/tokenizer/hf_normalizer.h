// HfNormalizer: the "normalizer" of a Hugging Face tokenizer.json (NFC/NFD/NFKC/NFKD, Lowercase,
// Strip, Prepend, Replace, Sequence), applied to each text section between added tokens before
// pre-tokenization. Offsets are not tracked. Internal to core/tokenizer.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "core/tokenizer/icu_regex.h"
#include "nlohmann/json_fwd.hpp"

namespace zigzag {

class HfNormalizer {
 public:
  virtual ~HfNormalizer() = default;
  // `text` is valid UTF-8; the result is too.
  virtual std::string Normalize(std::string text) const = 0;
};

// nullptr for a JSON null (no normalizer). Unimplemented for types we do not support.
absl::StatusOr<std::unique_ptr<HfNormalizer>> ParseHfNormalizer(const nlohmann::json& config);

// A {"String": s} or {"Regex": r} pattern as used by Replace and Split.
absl::StatusOr<IcuRegex> ParseHfPattern(const nlohmann::json& pattern);

}  // namespace zigzag
