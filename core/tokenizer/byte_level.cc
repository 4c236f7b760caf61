#include "core/tokenizer/byte_level.h"

#include <array>
#include <cstdint>

#include "core/tokenizer/utf8.h"

namespace zigzag {
namespace {

struct ByteTable {
  std::array<std::string, 256> byte_to_text;
  std::array<int16_t, 324> code_point_to_byte;  // the table's code points are all below 324

  ByteTable() {
    code_point_to_byte.fill(-1);
    // Printable Latin-1 bytes map to themselves; the others (controls, space, 0x7F-0xA0, 0xAD)
    // map to 256, 257, ... in byte order.
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      const char32_t cp = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(next++);
      AppendUtf8(cp, &byte_to_text[b]);
      code_point_to_byte[cp] = static_cast<int16_t>(b);
    }
  }
};

const ByteTable& Table() {
  static const ByteTable* table = new ByteTable();
  return *table;
}

}  // namespace

void AppendByteLevel(std::string_view bytes, std::string* out) {
  const ByteTable& table = Table();
  for (char c : bytes) out->append(table.byte_to_text[static_cast<uint8_t>(c)]);
}

std::optional<std::string> ByteLevelToBytes(std::string_view token) {
  const ByteTable& table = Table();
  std::string bytes;
  size_t pos = 0;
  while (pos < token.size()) {
    const size_t length = Utf8SequenceLength(token, pos);
    if (length == 0) return std::nullopt;
    const char32_t cp = DecodeUtf8At(token, pos, length);
    if (cp >= table.code_point_to_byte.size() || table.code_point_to_byte[cp] < 0) {
      return std::nullopt;
    }
    bytes.push_back(static_cast<char>(table.code_point_to_byte[cp]));
    pos += length;
  }
  return bytes;
}

}  // namespace zigzag
