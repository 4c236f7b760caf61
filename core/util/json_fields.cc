#include "core/util/json_fields.h"

#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace zigzag {
namespace {

using nlohmann::json;

// Debian's Abseil has its own string_view type.
absl::string_view View(std::string_view text) {
  return absl::string_view(text.data(), text.size());
}

constexpr size_t kMaxKeyBytesInPath = 64;
constexpr size_t kMaxStringBytesInDescription = 40;
constexpr size_t kMaxSyntaxDetailBytes = 200;

// `text` cut to at most `max_bytes` without splitting a UTF-8 sequence, "..." marking a cut.
std::string Shortened(std::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  size_t end = max_bytes;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return absl::StrCat(View(text.substr(0, end)), "...");
}

std::string JoinKey(const std::string& path, std::string_view key) {
  const std::string shown = Shortened(key, kMaxKeyBytesInPath);
  return path.empty() ? shown : absl::StrCat(path, ".", shown);
}

std::string JoinIndex(const std::string& path, size_t index) {
  return absl::StrCat(path, "[", index, "]");
}

// Follows the parser's events to know the key path of the container being opened, and refuses
// (discards) every container opened at depth `max_depth` or deeper. nlohmann's DOM parser keeps
// its own stack on the heap, so discarding bounds the tree without recursion.
class DepthLimiter {
 public:
  explicit DepthLimiter(int max_depth) : max_depth_(max_depth) {}

  bool operator()(int depth, json::parse_event_t event, json& parsed) {
    if (too_deep_) return false;
    switch (event) {
      case json::parse_event_t::key:
        pending_key_ = parsed.is_string() ? parsed.get_ref<const std::string&>() : std::string();
        return true;
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start: {
        // `depth` is the number of containers already open around this one.
        const size_t d = static_cast<size_t>(depth);
        std::string path;
        if (d > 0 && d <= paths_.size()) {
          path = is_array_[d - 1] ? JoinIndex(paths_[d - 1], counts_[d - 1])
                                  : JoinKey(paths_[d - 1], pending_key_);
        }
        if (depth >= max_depth_) {
          too_deep_ = true;
          path_ = std::move(path);
          return false;
        }
        paths_.resize(d);
        is_array_.resize(d);
        counts_.resize(d);
        paths_.push_back(std::move(path));
        is_array_.push_back(event == json::parse_event_t::array_start);
        counts_.push_back(0);
        return true;
      }
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        // `depth` is this container's own depth: one more child for its parent.
        if (depth > 0 && static_cast<size_t>(depth) <= counts_.size()) ++counts_[depth - 1];
        return true;
      case json::parse_event_t::value:
        if (depth > 0 && static_cast<size_t>(depth) <= counts_.size()) ++counts_[depth - 1];
        return true;
    }
    return true;
  }

  bool too_deep() const { return too_deep_; }
  const std::string& path() const { return path_; }

 private:
  int max_depth_;
  bool too_deep_ = false;
  std::string path_;
  std::string pending_key_;
  std::vector<std::string> paths_;  // per open container: its key path
  std::vector<bool> is_array_;
  std::vector<size_t> counts_;  // per open container: children seen so far
};

std::string SyntaxDetail(const char* what) {
  std::string_view text(what);
  // "[json.exception.parse_error.101] parse error at line 1, column 2: ..." -> "parse error ..."
  if (!text.empty() && text[0] == '[') {
    const size_t close = text.find("] ");
    if (close != std::string_view::npos) text.remove_prefix(close + 2);
  }
  // nlohmann quotes the bytes it last read, which may be anything: escape them.
  return absl::CHexEscape(Shortened(text, kMaxSyntaxDetailBytes));
}

}  // namespace

JsonParseResult ParseJsonText(std::string_view text, int max_depth) {
  JsonParseResult result;
  DepthLimiter limiter(max_depth);
  try {
    result.value = json::parse(text.begin(), text.end(),
                               [&limiter](int depth, json::parse_event_t event, json& parsed) {
                                 return limiter(depth, event, parsed);
                               });
  } catch (const json::exception& e) {
    result.value = json();
    result.error = JsonParseResult::Error::kSyntax;
    result.detail = SyntaxDetail(e.what());
    return result;
  }
  if (limiter.too_deep()) {
    result.value = json();
    result.error = JsonParseResult::Error::kTooDeep;
    result.detail = limiter.path();
  }
  return result;
}

absl::StatusOr<json> ParseJson(std::string_view text, std::string_view source, bool require_object,
                               int max_depth) {
  JsonParseResult parsed = ParseJsonText(text, max_depth);
  switch (parsed.error) {
    case JsonParseResult::Error::kSyntax:
      return absl::InvalidArgumentError(
          absl::StrCat(View(source), ": invalid JSON: ", parsed.detail));
    case JsonParseResult::Error::kTooDeep:
      return absl::InvalidArgumentError(absl::StrCat(View(source), ": field '", parsed.detail,
                                                     "' is nested deeper than ", max_depth,
                                                     " levels of arrays and objects"));
    case JsonParseResult::Error::kNone:
      break;
  }
  if (require_object && !parsed.value.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        View(source), ": expected a JSON object at top level, got ", DescribeJson(parsed.value)));
  }
  return std::move(parsed.value);
}

std::string DescribeJson(const json& value) {
  switch (value.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return value.get<bool>() ? "a boolean true" : "a boolean false";
    case json::value_t::string:
      return absl::StrCat(
          "a string \"",
          Shortened(value.get_ref<const std::string&>(), kMaxStringBytesInDescription), "\"");
    case json::value_t::number_integer:
      return absl::StrCat("an integer ", value.get<int64_t>());
    case json::value_t::number_unsigned:
      return absl::StrCat("an integer ", value.get<uint64_t>());
    case json::value_t::number_float:
      return absl::StrCat("a number ", value.dump());
    case json::value_t::object:
      return "an object";
    case json::value_t::array:
      return absl::StrCat("an array of ", value.size(), " elements");
    case json::value_t::binary:
      return "binary data";
    case json::value_t::discarded:
      return "a discarded value";
  }
  return "a value";
}

JsonField::JsonField(const nlohmann::json& value, std::string source, std::string path)
    : value_(&value), source_(std::move(source)), path_(std::move(path)) {}

JsonField::JsonField(const nlohmann::json* value, std::string source, std::string path)
    : value_(value), source_(std::move(source)), path_(std::move(path)) {}

const nlohmann::json& JsonField::json() const {
  static const nlohmann::json* const kNull = new nlohmann::json();
  return value_ != nullptr ? *value_ : *kNull;
}

JsonField JsonField::Get(std::string_view key) const {
  const nlohmann::json* member = nullptr;
  if (value_ != nullptr && value_->is_object()) {
    auto it = value_->find(std::string(key));
    if (it != value_->end()) member = &*it;
  }
  return JsonField(member, source_, JoinKey(path_, key));
}

JsonField JsonField::At(size_t index) const {
  const nlohmann::json* element = nullptr;
  if (value_ != nullptr && value_->is_array() && index < value_->size()) {
    element = &(*value_)[index];
  }
  return JsonField(element, source_, JoinIndex(path_, index));
}

JsonField JsonField::Member(std::string_view key, const nlohmann::json& value) const {
  return JsonField(&value, source_, JoinKey(path_, key));
}

JsonField JsonField::Element(size_t index, const nlohmann::json& value) const {
  return JsonField(&value, source_, JoinIndex(path_, index));
}

absl::Status JsonField::Error(absl::string_view problem) const {
  if (path_.empty()) return absl::InvalidArgumentError(absl::StrCat(source_, ": ", problem));
  return absl::InvalidArgumentError(absl::StrCat(source_, ": field '", path_, "' ", problem));
}

absl::Status JsonField::Unsupported(absl::string_view problem) const {
  if (path_.empty()) return absl::UnimplementedError(absl::StrCat(source_, ": ", problem));
  return absl::UnimplementedError(absl::StrCat(source_, ": field '", path_, "' ", problem));
}

absl::Status JsonField::TypeError(absl::string_view expected) const {
  if (!present()) return Error("is required but missing");
  return Error(absl::StrCat("must be ", expected, ", got ", DescribeJson(*value_)));
}

absl::StatusOr<std::string> JsonField::String() const {
  if (!present() || !value_->is_string()) return TypeError("a string");
  return value_->get<std::string>();
}

absl::StatusOr<bool> JsonField::Bool() const {
  if (!present() || !value_->is_boolean()) return TypeError("true or false");
  return value_->get<bool>();
}

absl::StatusOr<int64_t> JsonField::Int(int64_t min, int64_t max) const {
  const std::string expected = absl::StrCat("an integer in [", min, ", ", max, "]");
  if (!present() || !value_->is_number_integer()) return TypeError(expected);
  if (value_->is_number_unsigned()) {
    const uint64_t value = value_->get<uint64_t>();
    if (value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
        static_cast<int64_t>(value) > max || static_cast<int64_t>(value) < min) {
      return TypeError(expected);
    }
    return static_cast<int64_t>(value);
  }
  const int64_t value = value_->get<int64_t>();
  if (value < min || value > max) return TypeError(expected);
  return value;
}

absl::StatusOr<double> JsonField::Number(double min, double max) const {
  const std::string expected = absl::StrCat("a number in [", min, ", ", max, "]");
  if (!present() || !value_->is_number()) return TypeError(expected);
  const double value = value_->get<double>();
  if (!std::isfinite(value) || value < min || value > max) return TypeError(expected);
  return value;
}

absl::StatusOr<std::string> JsonField::StringOr(std::string_view fallback) const {
  if (!present()) return std::string(fallback);
  return String();
}

absl::StatusOr<bool> JsonField::BoolOr(bool fallback) const {
  if (!present()) return fallback;
  return Bool();
}

absl::StatusOr<int64_t> JsonField::IntOr(int64_t fallback, int64_t min, int64_t max) const {
  if (!present()) return fallback;
  return Int(min, max);
}

absl::StatusOr<double> JsonField::NumberOr(double fallback, double min, double max) const {
  if (!present()) return fallback;
  return Number(min, max);
}

absl::Status JsonField::RequireObject() const {
  if (!present() || !value_->is_object()) return TypeError("an object");
  return absl::OkStatus();
}

absl::Status JsonField::OptionalObject() const {
  if (present() && !value_->is_object()) return TypeError("an object");
  return absl::OkStatus();
}

absl::StatusOr<std::vector<JsonField>> JsonField::Elements(size_t max_size) const {
  if (!present() || !value_->is_array()) return TypeError("an array");
  if (value_->size() > max_size) {
    return Error(
        absl::StrCat("has ", value_->size(), " elements, more than the limit of ", max_size));
  }
  std::vector<JsonField> elements;
  elements.reserve(value_->size());
  for (size_t i = 0; i < value_->size(); ++i) elements.push_back(Element(i, (*value_)[i]));
  return elements;
}

absl::StatusOr<std::vector<JsonField>> JsonField::ElementsOr(size_t max_size) const {
  if (!present()) return std::vector<JsonField>();
  return Elements(max_size);
}

}  // namespace zigzag
