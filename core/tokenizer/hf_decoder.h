// HfDecoder: the "decoder" of a Hugging Face tokenizer.json (ByteLevel, Metaspace, Replace,
// ByteFallback, Fuse, Strip, Sequence): turns the token strings of a Decode call back into text.
// Works on bytes; the caller makes the final result valid UTF-8. Internal to core/tokenizer.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/util/json_fields.h"

namespace zigzag {

struct DecodePiece {
  std::string text;
  bool added = false;  // an added token: ByteLevel keeps its text as is
};

class HfDecoder {
 public:
  virtual ~HfDecoder() = default;
  // InvalidArgument when the pieces would total more than `max_output_bytes` (a Replace rule
  // that grows them) or a regex gives up.
  virtual absl::Status Decode(std::vector<DecodePiece>* pieces, size_t max_output_bytes) const = 0;
};

// The most decoders (Sequence members included) one tokenizer.json may chain.
inline constexpr int kMaxHfDecoders = 64;

// nullptr when `config` is absent or null (the caller then joins tokens with spaces, as Hugging
// Face does). Errors name the file and key path; Unimplemented for types we do not support.
absl::StatusOr<std::unique_ptr<HfDecoder>> ParseHfDecoder(const JsonField& config);

}  // namespace zigzag
