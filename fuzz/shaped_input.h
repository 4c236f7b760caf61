// The input convention the fuzz targets share: generator mode (0xFF first: a shape byte mutation
// rarely reaches, such as deep nesting or a megabyte whitespace run, spliced into a template) and
// splitting multi-file inputs at NUL bytes. Knows nothing of what the targets parse.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace zigzag::fuzz {

// Generator mode, byte by byte:
//   [0] 0xFF   [1] kind (ShapeKind, modulo the count)   [2] variant
//   [3..4] m (16 bits, little-endian)   [5] e: size = 2^(e % 22) - 1 + m, so that sizes spread
//         evenly over the scales (a random e gives a megabyte one time in eleven; most inputs
//         stay small and fast)
//   [6..] template: the first "@@" in it is replaced by the shape written for a JSON document
//         (inside a string where the shape is text: control characters escaped), the first "@$"
//         by the shape as raw bytes (text to encode). Without a placeholder the shape is appended.
// Sizes are capped per kind (kMaxShapeBytes in all), so one input never asks for unbounded work.
enum class ShapeKind : uint8_t {
  kDeepArrays = 0,   // [[[ ... 0 ... ]]], `size` levels
  kDeepObjects = 1,  // {"a":{"a": ... 0 ... }}, `size` levels
  kWhitespace = 2,   // a run of `size` bytes of white space; `variant` picks which characters
  kHugeNumber = 3,   // one edge number (INT32_MAX, INT64_MIN, 1e308, ...); `variant` picks it
  kLongText = 4,     // a unit (`variant` picks "a", "é", "▁", "<0x41>", ...) repeated to `size`
  kManyEntries = 5,  // `size` JSON members or elements: "t0":0,"t1":1,... (`variant`: the form)
  kCount = 6,
};

inline constexpr uint8_t kShapeMarker = 0xFF;
inline constexpr size_t kMaxShapeBytes = size_t{2} << 20;

// The generator header of an input in generator mode; nullopt for a plain input.
struct ShapeHeader {
  ShapeKind kind;
  uint8_t variant;
  uint32_t size;          // decoded from m and e
  std::string_view rest;  // the template after the header
};
std::optional<ShapeHeader> ParseShapeHeader(std::string_view input);

// The input with its shape expanded (a copy of the input when it is not in generator mode).
std::string ExpandShapedInput(std::string_view input);

// The generated shape alone, as JSON (`json` = true) or raw bytes.
std::string MakeShape(ShapeKind kind, uint8_t variant, uint32_t size, bool json);

// Splits `input` at NUL bytes into at most `max_parts` parts (the last part keeps any further
// NULs). JSON text cannot contain a raw NUL, so it separates the files of multi-file targets.
std::vector<std::string_view> SplitParts(std::string_view input, size_t max_parts);

}  // namespace zigzag::fuzz
