// HfNormalizer: the "normalizer" of a Hugging Face tokenizer.json (NFC/NFD/NFKC/NFKD, Lowercase,
// Strip, Prepend, Replace, Sequence), applied to each text section between added tokens before
// pre-tokenization. Offsets are not tracked. Output sizes are bounded by the caller's limit, so
// that no chain of rules can blow a text up. Internal to core/tokenizer.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "core/tokenizer/icu_regex.h"
#include "core/util/json_fields.h"

namespace zigzag {

class HfNormalizer {
 public:
  virtual ~HfNormalizer() = default;
  // `text` is valid UTF-8; the result is too. InvalidArgument when the result (or, in a Sequence,
  // any intermediate text) would be longer than `max_output_bytes`, or when a regex gives up.
  virtual absl::StatusOr<std::string> Normalize(std::string text,
                                                size_t max_output_bytes) const = 0;
};

// The most normalizers (Sequence members included) one tokenizer.json may chain: each one is a
// pass over the text of every Encode.
inline constexpr int kMaxHfNormalizers = 64;

// nullptr when `config` is absent or null (no normalizer). Errors name the file and key path;
// Unimplemented for types we do not support.
absl::StatusOr<std::unique_ptr<HfNormalizer>> ParseHfNormalizer(const JsonField& config);

// A {"String": s} or {"Regex": r} pattern as used by Replace and Split.
absl::StatusOr<IcuRegex> ParseHfPattern(const JsonField& pattern);

}  // namespace zigzag
