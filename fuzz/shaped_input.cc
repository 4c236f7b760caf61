#include "fuzz/shaped_input.h"

#include <algorithm>
#include <array>

namespace zigzag::fuzz {
namespace {

// White space runs: ASCII ones (escaped in JSON), and Unicode ones ICU's \s matches.
struct WhitespaceUnit {
  std::string_view raw;
  std::string_view json;
};
constexpr std::array<WhitespaceUnit, 8> kWhitespace = {{
    {" ", " "},
    {"\n", "\\n"},
    {"\t", "\\t"},
    {"\r\n", "\\r\\n"},
    {" \n", " \\n"},
    {"\xE3\x80\x80", "\xE3\x80\x80"},  // U+3000 IDEOGRAPHIC SPACE
    {"\xC2\xA0", "\xC2\xA0"},          // U+00A0 NO-BREAK SPACE
    {"\xE2\x80\xA8", "\\u2028"},       // U+2028 LINE SEPARATOR
}};

constexpr std::array<std::string_view, 16> kHugeNumbers = {
    "2147483647",
    "2147483646",
    "2147483648",
    "-2147483648",
    "-2147483649",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "1e308",
    "-1e308",
    "1e400",
    "-0",
    "0.5",
};

constexpr std::array<std::string_view, 10> kTextUnits = {
    "a",      "ab ", "\xC3\xA9",         "\xE2\x96\x81", "\xC4\xA0",
    "<0x41>", "<s>", "\xF0\x9F\x98\x80", "'s",           "1",
};

// The template text after the 6-byte generator header.
constexpr size_t kHeaderBytes = 6;

uint32_t CapFor(ShapeKind kind) {
  switch (kind) {
    case ShapeKind::kDeepArrays:
      return kMaxShapeBytes / 2;  // two bytes per level
    case ShapeKind::kDeepObjects:
      return kMaxShapeBytes / 6;  // {"a": and }
    case ShapeKind::kManyEntries:
      return kMaxShapeBytes / 16;
    default:
      return kMaxShapeBytes;
  }
}

void AppendRepeated(std::string_view unit, size_t bytes, std::string* out) {
  if (unit.empty()) return;
  const size_t count = std::max<size_t>(1, bytes / unit.size());
  out->reserve(out->size() + count * unit.size());
  for (size_t i = 0; i < count; ++i) out->append(unit);
}

}  // namespace

std::string MakeShape(ShapeKind kind, uint8_t variant, uint32_t size, bool json) {
  size = std::min(size, CapFor(kind));
  std::string out;
  switch (kind) {
    case ShapeKind::kDeepArrays:
      out.append(size, '[');
      out.push_back('0');
      out.append(size, ']');
      break;
    case ShapeKind::kDeepObjects:
      AppendRepeated("{\"a\":", size_t{size} * 5, &out);
      out.push_back('0');
      out.append(size, '}');
      break;
    case ShapeKind::kWhitespace: {
      const WhitespaceUnit& unit = kWhitespace[variant % kWhitespace.size()];
      AppendRepeated(json ? unit.json : unit.raw, size, &out);
      break;
    }
    case ShapeKind::kHugeNumber:
      out = kHugeNumbers[variant % kHugeNumbers.size()];
      break;
    case ShapeKind::kLongText:
      AppendRepeated(kTextUnits[variant % kTextUnits.size()], size, &out);
      break;
    case ShapeKind::kManyEntries: {
      // variant % 3: 0 object members "tN":N, 1 array elements N, 2 merge strings "a b".
      const int form = variant % 3;
      out.reserve(size_t{size} * 12);
      for (uint32_t i = 0; i < size; ++i) {
        if (i > 0) out.push_back(',');
        const std::string n = std::to_string(i);
        if (form == 0) {
          out.append("\"t").append(n).append("\":").append(n);
        } else if (form == 1) {
          out.append(n);
        } else {
          out.append("\"t").append(n).append(" t").append(n).append("\"");
        }
      }
      break;
    }
    case ShapeKind::kCount:
      break;
  }
  return out;
}

std::optional<ShapeHeader> ParseShapeHeader(std::string_view input) {
  if (input.size() < kHeaderBytes || static_cast<uint8_t>(input[0]) != kShapeMarker) {
    return std::nullopt;
  }
  ShapeHeader header;
  header.kind = static_cast<ShapeKind>(static_cast<uint8_t>(input[1]) %
                                       static_cast<uint8_t>(ShapeKind::kCount));
  header.variant = static_cast<uint8_t>(input[2]);
  const uint32_t m =
      static_cast<uint8_t>(input[3]) | (static_cast<uint32_t>(static_cast<uint8_t>(input[4])) << 8);
  const uint32_t e = static_cast<uint8_t>(input[5]) % 22;
  header.size = ((uint32_t{1} << e) - 1) + m;
  header.rest = input.substr(kHeaderBytes);
  return header;
}

std::string ExpandShapedInput(std::string_view input) {
  const std::optional<ShapeHeader> header = ParseShapeHeader(input);
  if (!header.has_value()) return std::string(input);
  const std::string_view rest = header->rest;
  const size_t json_at = rest.find("@@");
  const size_t raw_at = rest.find("@$");
  const size_t at = std::min(json_at, raw_at);
  if (at == std::string_view::npos) {
    return std::string(rest) + MakeShape(header->kind, header->variant, header->size, false);
  }
  std::string out(rest.substr(0, at));
  out += MakeShape(header->kind, header->variant, header->size, /*json=*/at == json_at);
  out += rest.substr(at + 2);
  return out;
}

std::vector<std::string_view> SplitParts(std::string_view input, size_t max_parts) {
  std::vector<std::string_view> parts;
  while (parts.size() + 1 < max_parts) {
    const size_t nul = input.find('\0');
    if (nul == std::string_view::npos) break;
    parts.push_back(input.substr(0, nul));
    input.remove_prefix(nul + 1);
  }
  parts.push_back(input);
  return parts;
}

}  // namespace zigzag::fuzz
