#include "core/tokenizer/hf_decoder.h"

#include <cstdint>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "core/tokenizer/byte_level.h"
#include "core/tokenizer/hf_normalizer.h"
#include "core/tokenizer/icu_regex.h"
#include "core/tokenizer/utf8.h"
#include "core/util/status_macros.h"

namespace zigzag {
namespace {

absl::Status TooLong(const char* what, size_t max_output_bytes) {
  return absl::InvalidArgumentError(
      absl::StrCat("the ", what, " decoder makes the text longer than the limit of ",
                   max_output_bytes, " bytes"));
}

// `text` with `pattern` replaced, using at most what is left of `max_output_bytes` after `*used`
// bytes of earlier pieces; adds the result's size to `*used`.
absl::Status ReplaceWithin(const IcuRegex& pattern, std::string_view replacement, const char* what,
                           size_t max_output_bytes, size_t* used, std::string* text) {
  absl::StatusOr<std::string> out =
      pattern.ReplaceAll(*text, replacement, max_output_bytes - *used);
  if (out.status().code() == absl::StatusCode::kOutOfRange) return TooLong(what, max_output_bytes);
  if (!out.ok()) return out.status();
  *text = *std::move(out);
  *used += text->size();
  return absl::OkStatus();
}

// Concatenates the bytes each token spells; added tokens and tokens with characters outside the
// byte table are taken as they are. Never grows the text.
class ByteLevelDecoder : public HfDecoder {
 public:
  absl::Status Decode(std::vector<DecodePiece>* pieces, size_t max_output_bytes) const override {
    std::string bytes;
    for (const DecodePiece& piece : *pieces) {
      std::optional<std::string> decoded;
      if (!piece.added) decoded = ByteLevelToBytes(piece.text);
      bytes.append(decoded.has_value() ? *decoded : piece.text);
    }
    if (bytes.size() > max_output_bytes) return TooLong("ByteLevel", max_output_bytes);
    pieces->assign(1, DecodePiece{std::move(bytes), false});
    return absl::OkStatus();
  }
};

class ReplaceDecoder : public HfDecoder {
 public:
  ReplaceDecoder(IcuRegex pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  absl::Status Decode(std::vector<DecodePiece>* pieces, size_t max_output_bytes) const override {
    size_t used = 0;
    for (DecodePiece& piece : *pieces) {
      RETURN_IF_ERROR(
          ReplaceWithin(pattern_, content_, "Replace", max_output_bytes, &used, &piece.text));
    }
    return absl::OkStatus();
  }

 private:
  IcuRegex pattern_;
  std::string content_;
};

// "<0xNN>" tokens become the byte NN; runs of them become one piece. Never grows the text.
class ByteFallbackDecoder : public HfDecoder {
 public:
  absl::Status Decode(std::vector<DecodePiece>* pieces,
                      size_t /*max_output_bytes*/) const override {
    std::vector<DecodePiece> out;
    bool in_bytes = false;
    for (DecodePiece& piece : *pieces) {
      int byte = -1;
      if (piece.text.size() == 6 && piece.text.compare(0, 3, "<0x") == 0 && piece.text[5] == '>' &&
          absl::ascii_isxdigit(piece.text[3]) && absl::ascii_isxdigit(piece.text[4])) {
        const auto hex = [](char c) {
          return absl::ascii_isdigit(c) ? c - '0' : (c | 0x20) - 'a' + 10;
        };
        byte = hex(piece.text[3]) * 16 + hex(piece.text[4]);
      }
      if (byte >= 0) {
        if (!in_bytes) out.push_back(DecodePiece{"", false});
        out.back().text.push_back(static_cast<char>(byte));
        in_bytes = true;
      } else {
        out.push_back(std::move(piece));
        in_bytes = false;
      }
    }
    *pieces = std::move(out);
    return absl::OkStatus();
  }
};

class FuseDecoder : public HfDecoder {
 public:
  absl::Status Decode(std::vector<DecodePiece>* pieces, size_t max_output_bytes) const override {
    std::string all;
    for (const DecodePiece& piece : *pieces) all.append(piece.text);
    if (all.size() > max_output_bytes) return TooLong("Fuse", max_output_bytes);
    pieces->assign(1, DecodePiece{std::move(all), false});
    return absl::OkStatus();
  }
};

class StripDecoder : public HfDecoder {
 public:
  StripDecoder(std::string content, int64_t start, int64_t stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  absl::Status Decode(std::vector<DecodePiece>* pieces,
                      size_t /*max_output_bytes*/) const override {
    if (content_.empty()) return absl::OkStatus();
    for (DecodePiece& piece : *pieces) {
      std::string& text = piece.text;
      size_t begin = 0, end = text.size();
      for (int64_t i = 0; i < start_ && text.compare(begin, content_.size(), content_) == 0; ++i) {
        begin += content_.size();
      }
      for (int64_t i = 0; i < stop_ && end >= begin + content_.size() &&
                          text.compare(end - content_.size(), content_.size(), content_) == 0;
           ++i) {
        end -= content_.size();
      }
      text = text.substr(begin, end - begin);
    }
    return absl::OkStatus();
  }

 private:
  std::string content_;
  int64_t start_, stop_;
};

class MetaspaceDecoder : public HfDecoder {
 public:
  MetaspaceDecoder(IcuRegex replacement, bool strip_first)
      : replacement_(std::move(replacement)), strip_first_(strip_first) {}
  absl::Status Decode(std::vector<DecodePiece>* pieces, size_t max_output_bytes) const override {
    size_t used = 0;
    for (size_t i = 0; i < pieces->size(); ++i) {
      std::string& text = (*pieces)[i].text;
      RETURN_IF_ERROR(
          ReplaceWithin(replacement_, " ", "Metaspace", max_output_bytes, &used, &text));
      if (i == 0 && strip_first_ && !text.empty() && text[0] == ' ') {
        text.erase(0, 1);
        --used;
      }
    }
    return absl::OkStatus();
  }

 private:
  IcuRegex replacement_;
  bool strip_first_;
};

class SequenceDecoder : public HfDecoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<HfDecoder>> parts)
      : parts_(std::move(parts)) {}
  absl::Status Decode(std::vector<DecodePiece>* pieces, size_t max_output_bytes) const override {
    for (const auto& part : parts_) RETURN_IF_ERROR(part->Decode(pieces, max_output_bytes));
    return absl::OkStatus();
  }

 private:
  std::vector<std::unique_ptr<HfDecoder>> parts_;
};

absl::StatusOr<IcuRegex> ParseLiteral(const JsonField& field, const std::string& literal) {
  absl::StatusOr<IcuRegex> regex = IcuRegex::Literal(literal);
  if (!regex.ok()) return field.Error(regex.status().message());
  return regex;
}

// `count`: decoders made so far for this tokenizer.json, against kMaxHfDecoders.
absl::StatusOr<std::unique_ptr<HfDecoder>> ParseCounted(const JsonField& config, int* count) {
  if (!config.present()) return nullptr;
  RETURN_IF_ERROR(config.RequireObject());
  if (++*count > kMaxHfDecoders) {
    return config.Error(
        absl::StrCat("makes more than ", kMaxHfDecoders, " decoders in one tokenizer"));
  }
  ASSIGN_OR_RETURN(const std::string type, config.Get("type").String());
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Replace") {
    ASSIGN_OR_RETURN(IcuRegex pattern, ParseHfPattern(config.Get("pattern")));
    ASSIGN_OR_RETURN(std::string content, config.Get("content").StringOr(""));
    return std::make_unique<ReplaceDecoder>(std::move(pattern), std::move(content));
  }
  if (type == "Strip") {
    ASSIGN_OR_RETURN(std::string content, config.Get("content").StringOr(" "));
    ASSIGN_OR_RETURN(const int64_t start, config.Get("start").IntOr(0, 0, INT32_MAX));
    ASSIGN_OR_RETURN(const int64_t stop, config.Get("stop").IntOr(0, 0, INT32_MAX));
    return std::make_unique<StripDecoder>(std::move(content), start, stop);
  }
  if (type == "Metaspace") {
    ASSIGN_OR_RETURN(const std::string replacement_text,
                     config.Get("replacement").StringOr("\u2581"));
    if (replacement_text.empty() ||
        Utf8SequenceLength(replacement_text, 0) != replacement_text.size()) {
      return config.Get("replacement").Error("must be a single character");
    }
    ASSIGN_OR_RETURN(IcuRegex replacement,
                     ParseLiteral(config.Get("replacement"), replacement_text));
    ASSIGN_OR_RETURN(bool strip_first, config.Get("add_prefix_space").BoolOr(true));
    const JsonField scheme = config.Get("prepend_scheme");
    if (scheme.present()) {
      ASSIGN_OR_RETURN(const std::string name, scheme.String());
      strip_first = name != "never";
    }
    return std::make_unique<MetaspaceDecoder>(std::move(replacement), strip_first);
  }
  if (type == "Sequence") {
    ASSIGN_OR_RETURN(const std::vector<JsonField> members,
                     config.Get("decoders").ElementsOr(kMaxHfDecoders));
    std::vector<std::unique_ptr<HfDecoder>> parts;
    for (const JsonField& member : members) {
      ASSIGN_OR_RETURN(std::unique_ptr<HfDecoder> parsed, ParseCounted(member, count));
      if (parsed != nullptr) parts.push_back(std::move(parsed));
    }
    return std::make_unique<SequenceDecoder>(std::move(parts));
  }
  return config.Get("type").Unsupported(
      absl::StrCat("names decoder type '", type, "', which is not supported"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<HfDecoder>> ParseHfDecoder(const JsonField& config) {
  int count = 0;
  return ParseCounted(config, &count);
}

}  // namespace zigzag
