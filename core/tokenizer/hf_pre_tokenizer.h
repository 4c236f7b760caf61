// HfPreTokenizer: the "pre_tokenizer" of a Hugging Face tokenizer.json (Split with a regex or
// string and any split behaviour, ByteLevel, Metaspace, Digits, Whitespace, WhitespaceSplit,
// Sequence): cuts one normalized text section into the pieces that BPE encodes independently.
// Offsets are not tracked. Internal to core/tokenizer.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/util/json_fields.h"

namespace zigzag {

class HfPreTokenizer {
 public:
  virtual ~HfPreTokenizer() = default;
  // Replaces `pieces` by their sub-pieces. `first_section`: the pieces come from the first
  // section of the input (Metaspace's prepend_scheme "first" only prefixes there).
  // InvalidArgument when a regex gives up on the text (see icu_regex.h).
  virtual absl::Status PreTokenize(std::vector<std::string>* pieces, bool first_section) const = 0;
};

// The most pre-tokenizers (Sequence members included) one tokenizer.json may chain.
inline constexpr int kMaxHfPreTokenizers = 64;

// nullptr when `config` is absent or null. Errors name the file and key path; Unimplemented for
// types we do not support.
absl::StatusOr<std::unique_ptr<HfPreTokenizer>> ParseHfPreTokenizer(const JsonField& config);

}  // namespace zigzag
