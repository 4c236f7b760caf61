// HfDecoder: the "decoder" of a Hugging Face tokenizer.json (ByteLevel, Metaspace, Replace,
// ByteFallback, Fuse, Strip, Sequence): turns the token strings of a Decode call back into text.
// Works on bytes; the caller makes the final result valid UTF-8. Internal to core/tokenizer.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace zigzag {

struct DecodePiece {
  std::string text;
  bool added = false;  // an added token: ByteLevel keeps its text as is
};

class HfDecoder {
 public:
  virtual ~HfDecoder() = default;
  virtual void Decode(std::vector<DecodePiece>* pieces) const = 0;
};

// nullptr for a JSON null (the caller then joins tokens with spaces, as Hugging Face does).
absl::StatusOr<std::unique_ptr<HfDecoder>> ParseHfDecoder(const nlohmann::json& config);

}  // namespace zigzag
