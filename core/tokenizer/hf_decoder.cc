#include "core/tokenizer/hf_decoder.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "core/tokenizer/byte_level.h"
#include "core/tokenizer/hf_normalizer.h"
#include "core/tokenizer/icu_regex.h"
#include "core/util/status_macros.h"
#include "nlohmann/json.hpp"

namespace zigzag {
namespace {

using nlohmann::json;

// Concatenates the bytes each token spells; added tokens and tokens with characters outside the
// byte table are taken as they are.
class ByteLevelDecoder : public HfDecoder {
 public:
  void Decode(std::vector<DecodePiece>* pieces) const override {
    std::string bytes;
    for (const DecodePiece& piece : *pieces) {
      std::optional<std::string> decoded;
      if (!piece.added) decoded = ByteLevelToBytes(piece.text);
      bytes.append(decoded.has_value() ? *decoded : piece.text);
    }
    pieces->assign(1, DecodePiece{std::move(bytes), false});
  }
};

class ReplaceDecoder : public HfDecoder {
 public:
  ReplaceDecoder(IcuRegex pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void Decode(std::vector<DecodePiece>* pieces) const override {
    for (DecodePiece& piece : *pieces) piece.text = pattern_.ReplaceAll(piece.text, content_);
  }

 private:
  IcuRegex pattern_;
  std::string content_;
};

// "<0xNN>" tokens become the byte NN; runs of them become one piece.
class ByteFallbackDecoder : public HfDecoder {
 public:
  void Decode(std::vector<DecodePiece>* pieces) const override {
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
  }
};

class FuseDecoder : public HfDecoder {
 public:
  void Decode(std::vector<DecodePiece>* pieces) const override {
    std::string all;
    for (const DecodePiece& piece : *pieces) all.append(piece.text);
    pieces->assign(1, DecodePiece{std::move(all), false});
  }
};

class StripDecoder : public HfDecoder {
 public:
  StripDecoder(std::string content, int start, int stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  void Decode(std::vector<DecodePiece>* pieces) const override {
    if (content_.empty()) return;
    for (DecodePiece& piece : *pieces) {
      std::string& text = piece.text;
      size_t begin = 0, end = text.size();
      for (int i = 0; i < start_ && text.compare(begin, content_.size(), content_) == 0; ++i) {
        begin += content_.size();
      }
      for (int i = 0; i < stop_ && end >= begin + content_.size() &&
                      text.compare(end - content_.size(), content_.size(), content_) == 0;
           ++i) {
        end -= content_.size();
      }
      text = text.substr(begin, end - begin);
    }
  }

 private:
  std::string content_;
  int start_, stop_;
};

class MetaspaceDecoder : public HfDecoder {
 public:
  MetaspaceDecoder(IcuRegex replacement, bool strip_first)
      : replacement_(std::move(replacement)), strip_first_(strip_first) {}
  void Decode(std::vector<DecodePiece>* pieces) const override {
    for (size_t i = 0; i < pieces->size(); ++i) {
      std::string& text = (*pieces)[i].text;
      text = replacement_.ReplaceAll(text, " ");
      if (i == 0 && strip_first_ && !text.empty() && text[0] == ' ') text.erase(0, 1);
    }
  }

 private:
  IcuRegex replacement_;
  bool strip_first_;
};

class SequenceDecoder : public HfDecoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<HfDecoder>> parts)
      : parts_(std::move(parts)) {}
  void Decode(std::vector<DecodePiece>* pieces) const override {
    for (const auto& part : parts_) part->Decode(pieces);
  }

 private:
  std::vector<std::unique_ptr<HfDecoder>> parts_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<HfDecoder>> ParseHfDecoder(const json& config) {
  if (config.is_null()) return nullptr;
  if (!config.is_object() || !config.contains("type") || !config["type"].is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat("decoder: expected an object with a \"type\", got ", config.dump()));
  }
  const std::string type = config["type"].get<std::string>();
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Replace") {
    ASSIGN_OR_RETURN(IcuRegex pattern, ParseHfPattern(config.value("pattern", json())));
    return std::make_unique<ReplaceDecoder>(std::move(pattern),
                                            config.value("content", std::string()));
  }
  if (type == "Strip") {
    return std::make_unique<StripDecoder>(config.value("content", std::string(" ")),
                                          config.value("start", 0), config.value("stop", 0));
  }
  if (type == "Metaspace") {
    ASSIGN_OR_RETURN(IcuRegex replacement,
                     IcuRegex::Literal(config.value("replacement", std::string("\u2581"))));
    bool strip_first = config.value("add_prefix_space", true);
    if (config.contains("prepend_scheme") && config["prepend_scheme"].is_string()) {
      strip_first = config["prepend_scheme"].get<std::string>() != "never";
    }
    return std::make_unique<MetaspaceDecoder>(std::move(replacement), strip_first);
  }
  if (type == "Sequence") {
    std::vector<std::unique_ptr<HfDecoder>> parts;
    for (const json& part : config.value("decoders", json::array())) {
      ASSIGN_OR_RETURN(std::unique_ptr<HfDecoder> parsed, ParseHfDecoder(part));
      if (parsed != nullptr) parts.push_back(std::move(parsed));
    }
    return std::make_unique<SequenceDecoder>(std::move(parts));
  }
  return absl::UnimplementedError(absl::StrCat("decoder type '", type, "' is not supported"));
}

}  // namespace zigzag
