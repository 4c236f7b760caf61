// Parsing and typed, checked field access for the JSON files of a model folder (config.json,
// generation_config.json, tokenizer.json, tokenizer_config.json, safetensors headers): ParseJson
// bounds the nesting depth before anything walks the tree, and JsonField turns every missing key,
// wrong type or out-of-range number into InvalidArgument naming the file and the key path
// ("/m/tokenizer.json: field 'model.vocab' must be an object, got a string"). Knows no schema.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace zigzag {

// The deepest nesting of arrays and objects ParseJson accepts. Real model files nest a handful of
// levels; the bound keeps every recursive walk of a parsed tree (dump, copy, our parsers of nested
// "Sequence" normalizers) far from the end of the stack.
inline constexpr int kMaxJsonDepth = 64;

// What went wrong in ParseJsonText, for callers that word their own errors.
struct JsonParseResult {
  enum class Error { kNone, kSyntax, kTooDeep };
  nlohmann::json value;
  Error error = Error::kNone;
  // kSyntax: nlohmann's description (line, column, what); kTooDeep: the key path of the first
  // container past the limit, e.g. "normalizer.normalizers[0].normalizers[0]...".
  std::string detail;
};

// Parses `text`, discarding anything nested deeper than `max_depth` and reporting it. Never
// throws; the strings of the result are valid UTF-8 (nlohmann's lexer rejects anything else).
JsonParseResult ParseJsonText(std::string_view text, int max_depth = kMaxJsonDepth);

// ParseJsonText with standard errors, all InvalidArgument naming `source`: "SOURCE: invalid JSON:
// DETAIL", "SOURCE: field 'PATH' is nested deeper than 64 levels", and "SOURCE: expected a JSON
// object at top level" when `require_object`.
absl::StatusOr<nlohmann::json> ParseJson(std::string_view text, std::string_view source,
                                         bool require_object = true, int max_depth = kMaxJsonDepth);

// A short description of a value for error messages, never its whole text: "a string \"abc\""
// (cut after 40 bytes), "an integer 5", "a number 1e+10", "a boolean", "null", "an object", "an
// array of 3 elements".
std::string DescribeJson(const nlohmann::json& value);

// One value of a parsed document together with the file it came from and its key path. Cheap to
// copy (two strings and a pointer); must not outlive the document. Absent values (a missing key,
// an index past the end) are representable so that optional fields read naturally:
//   ASSIGN_OR_RETURN(bool lstrip, entry.Get("lstrip").BoolOr(false));
class JsonField {
 public:
  // `value` is the document (or a part of it that `path` names); `source` names the file.
  JsonField(const nlohmann::json& value, std::string source, std::string path = "");

  // The member `key`; absent when missing or when this value is not an object.
  JsonField Get(std::string_view key) const;
  // The element `index`; absent when out of range or when this value is not an array.
  JsonField At(size_t index) const;
  // A member or element already found by the caller (while iterating), for its path.
  JsonField Member(std::string_view key, const nlohmann::json& value) const;
  JsonField Element(size_t index, const nlohmann::json& value) const;

  // Exists and is not null. Every "...Or(fallback)" getter returns the fallback when not present.
  bool present() const { return value_ != nullptr && !value_->is_null(); }
  // The value; a null json when absent.
  const nlohmann::json& json() const;
  const std::string& source() const { return source_; }
  const std::string& path() const { return path_; }

  // "SOURCE: field 'PATH' PROBLEM" ("SOURCE: PROBLEM" for the document itself).
  absl::Status Error(absl::string_view problem) const;        // InvalidArgument
  absl::Status Unsupported(absl::string_view problem) const;  // Unimplemented

  // Required values: "is required but missing" when not present, "must be a string, got an
  // integer 5" for a wrong type, "must be an integer in [0, 10], got an integer 11" out of range.
  // Integers must be written as integers (1e10 and 2.0 are numbers, not integers).
  absl::StatusOr<std::string> String() const;
  absl::StatusOr<bool> Bool() const;
  absl::StatusOr<int64_t> Int(int64_t min, int64_t max) const;
  // Finite, in [min, max]; integers are accepted.
  absl::StatusOr<double> Number(double min, double max) const;

  absl::StatusOr<std::string> StringOr(std::string_view fallback) const;
  absl::StatusOr<bool> BoolOr(bool fallback) const;
  absl::StatusOr<int64_t> IntOr(int64_t fallback, int64_t min, int64_t max) const;
  absl::StatusOr<double> NumberOr(double fallback, double min, double max) const;

  // Present and an object; "is required but missing" / "must be an object, got ...".
  absl::Status RequireObject() const;
  // An object or not present (absent and null are accepted).
  absl::Status OptionalObject() const;
  // The elements of a required array, or of an optional one (not present: none). At most
  // `max_size` of them, else an error naming the limit.
  absl::StatusOr<std::vector<JsonField>> Elements(size_t max_size = SIZE_MAX) const;
  absl::StatusOr<std::vector<JsonField>> ElementsOr(size_t max_size = SIZE_MAX) const;

 private:
  JsonField(const nlohmann::json* value, std::string source, std::string path);
  absl::Status TypeError(absl::string_view expected) const;

  const nlohmann::json* value_;
  std::string source_;
  std::string path_;
};

}  // namespace zigzag
