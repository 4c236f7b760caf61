// The GPT-2 byte <-> printable character table used by byte-level BPE (GPT-2, Llama-3, Qwen):
// every byte maps to one code point so that BPE works on visible text ("Ġ" is the space byte).
// Pure table lookups; pre-tokenizing and decoding around it live in hf_pre_tokenizer/hf_decoder.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace zigzag {

// Appends the byte-level spelling of `bytes` (each byte becomes its table character).
void AppendByteLevel(std::string_view bytes, std::string* out);

// The bytes a byte-level token spells, or nullopt when it contains a character outside the table.
std::optional<std::string> ByteLevelToBytes(std::string_view token);

}  // namespace zigzag
