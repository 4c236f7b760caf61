// A small byte-level BPE tokenizer.json built in code for the hardening tests: one token per byte
// (GPT-2's byte-to-character table, id = byte value) and no merges, so the ids of any text are
// its bytes, whatever the pre-tokenizer does. Tests replace its parts (normalizer, pre_tokenizer,
// decoder, ...) as they need. Header-only.
#pragma once

#include <cstdint>
#include <string>

#include "nlohmann/json.hpp"

namespace zigzag::testing {

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other bytes for
// U+0100 upwards in order, as UTF-8.
inline std::string ByteLevelCharacter(uint8_t byte) {
  const auto printable = [](int b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  };
  int code_point = byte;
  if (!printable(byte)) {
    int n = 0;
    for (int b = 0; b < byte; ++b) n += printable(b) ? 0 : 1;
    code_point = 256 + n;
  }
  std::string out;
  if (code_point < 0x80) {
    out.push_back(static_cast<char>(code_point));
  } else {
    out.push_back(static_cast<char>(0xC0 | (code_point >> 6)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  }
  return out;
}

// {"model": {"type": "BPE", "vocab": {256 byte characters}, "merges": []}, "pre_tokenizer":
// ByteLevel without regex, "decoder": ByteLevel}.
inline nlohmann::json ByteLevelTokenizerJson() {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[ByteLevelCharacter(static_cast<uint8_t>(b))] = b;
  return nlohmann::json{
      {"version", "1.0"},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}},
      {"decoder", {{"type", "ByteLevel"}}},
  };
}

}  // namespace zigzag::testing
