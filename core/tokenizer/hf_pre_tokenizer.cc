#include "core/tokenizer/hf_pre_tokenizer.h"

#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/tokenizer/byte_level.h"
#include "core/tokenizer/hf_normalizer.h"
#include "core/tokenizer/icu_regex.h"
#include "core/tokenizer/utf8.h"
#include "core/util/status_macros.h"

namespace zigzag {
namespace {

// GPT-2's pre-tokenization regex, used by ByteLevel when use_regex is true.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

enum class SplitBehavior {
  kRemoved,
  kIsolated,
  kMergedWithPrevious,
  kMergedWithNext,
  kContiguous,
};

absl::StatusOr<SplitBehavior> ParseBehavior(const JsonField& field) {
  ASSIGN_OR_RETURN(const std::string name, field.StringOr("Isolated"));
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  return field.Error(absl::StrCat("names an unknown split behavior '", name, "'"));
}

// Splits `text` around the matches of `regex` (or around the non-matches when `invert`), as the
// Rust tokenizers' NormalizedString::split does. Empty pieces are dropped.
absl::Status SplitText(std::string_view text, const IcuRegex& regex, SplitBehavior behavior,
                       bool invert, std::vector<std::string>* out) {
  struct Span {
    size_t begin, end;
    bool match;
  };
  ASSIGN_OR_RETURN(const auto matches, regex.FindAll(text));
  std::vector<Span> spans;
  size_t last = 0;
  for (const auto& [begin, end] : matches) {
    if (begin > last) spans.push_back({last, begin, invert});
    spans.push_back({begin, end, !invert});
    last = end;
  }
  if (last < text.size()) spans.push_back({last, text.size(), invert});

  std::vector<std::pair<size_t, size_t>> pieces;
  for (size_t i = 0; i < spans.size(); ++i) {
    const Span& span = spans[i];
    switch (behavior) {
      case SplitBehavior::kRemoved:
        if (!span.match) pieces.emplace_back(span.begin, span.end);
        break;
      case SplitBehavior::kIsolated:
        pieces.emplace_back(span.begin, span.end);
        break;
      case SplitBehavior::kContiguous:
        if (span.match && i > 0 && spans[i - 1].match) {
          pieces.back().second = span.end;
        } else {
          pieces.emplace_back(span.begin, span.end);
        }
        break;
      case SplitBehavior::kMergedWithPrevious:
        if (span.match && i > 0 && !spans[i - 1].match) {
          pieces.back().second = span.end;
        } else {
          pieces.emplace_back(span.begin, span.end);
        }
        break;
      case SplitBehavior::kMergedWithNext:
        if (i > 0 && spans[i - 1].match) {
          pieces.back().second = span.end;
        } else {
          pieces.emplace_back(span.begin, span.end);
        }
        break;
    }
  }
  for (const auto& [begin, end] : pieces) {
    if (end > begin) out->emplace_back(text.substr(begin, end - begin));
  }
  return absl::OkStatus();
}

class SplitPreTokenizer : public HfPreTokenizer {
 public:
  SplitPreTokenizer(IcuRegex regex, SplitBehavior behavior, bool invert)
      : regex_(std::move(regex)), behavior_(behavior), invert_(invert) {}
  absl::Status PreTokenize(std::vector<std::string>* pieces,
                           bool /*first_section*/) const override {
    std::vector<std::string> out;
    for (const std::string& piece : *pieces) {
      RETURN_IF_ERROR(SplitText(piece, regex_, behavior_, invert_, &out));
    }
    *pieces = std::move(out);
    return absl::OkStatus();
  }

 private:
  IcuRegex regex_;
  SplitBehavior behavior_;
  bool invert_;
};

class ByteLevelPreTokenizer : public HfPreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::optional<IcuRegex> regex)
      : add_prefix_space_(add_prefix_space), regex_(std::move(regex)) {}
  absl::Status PreTokenize(std::vector<std::string>* pieces,
                           bool /*first_section*/) const override {
    std::vector<std::string> split;
    for (std::string& piece : *pieces) {
      if (add_prefix_space_ && (piece.empty() || piece[0] != ' ')) {
        // A new string, not piece.insert(0, " "): gcc 12 at -O3 inlines insert's overlapping-move
        // path and reports a false -Wrestrict there (GCC bug 105329), which broke Release builds.
        std::string prefixed;
        prefixed.reserve(piece.size() + 1);
        prefixed.push_back(' ');
        prefixed.append(piece);
        piece = std::move(prefixed);
      }
      if (regex_.has_value()) {
        RETURN_IF_ERROR(SplitText(piece, *regex_, SplitBehavior::kIsolated, false, &split));
      } else {
        split.push_back(std::move(piece));
      }
    }
    pieces->clear();
    for (const std::string& piece : split) {
      std::string mapped;
      AppendByteLevel(piece, &mapped);
      pieces->push_back(std::move(mapped));
    }
    return absl::OkStatus();
  }

 private:
  bool add_prefix_space_;
  std::optional<IcuRegex> regex_;
};

enum class PrependScheme { kAlways, kFirst, kNever };

class MetaspacePreTokenizer : public HfPreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme, bool split,
                        IcuRegex replacement_regex)
      : replacement_(std::move(replacement)),
        scheme_(scheme),
        split_(split),
        replacement_regex_(std::move(replacement_regex)) {}
  absl::Status PreTokenize(std::vector<std::string>* pieces, bool first_section) const override {
    std::vector<std::string> out;
    for (size_t i = 0; i < pieces->size(); ++i) {
      std::string text;
      for (char c : (*pieces)[i]) {
        if (c == ' ') {
          text.append(replacement_);
        } else {
          text.push_back(c);
        }
      }
      const bool prepend = scheme_ == PrependScheme::kAlways ||
                           (scheme_ == PrependScheme::kFirst && first_section && i == 0);
      if (prepend && text.compare(0, replacement_.size(), replacement_) != 0) {
        text.insert(0, replacement_);
      }
      if (split_) {
        RETURN_IF_ERROR(
            SplitText(text, replacement_regex_, SplitBehavior::kMergedWithNext, false, &out));
      } else if (!text.empty()) {
        out.push_back(std::move(text));
      }
    }
    *pieces = std::move(out);
    return absl::OkStatus();
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
  IcuRegex replacement_regex_;
};

class SequencePreTokenizer : public HfPreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<HfPreTokenizer>> parts)
      : parts_(std::move(parts)) {}
  absl::Status PreTokenize(std::vector<std::string>* pieces, bool first_section) const override {
    for (const auto& part : parts_) RETURN_IF_ERROR(part->PreTokenize(pieces, first_section));
    return absl::OkStatus();
  }

 private:
  std::vector<std::unique_ptr<HfPreTokenizer>> parts_;
};

absl::StatusOr<std::unique_ptr<HfPreTokenizer>> MakeSplit(const std::string& regex,
                                                          SplitBehavior behavior, bool invert) {
  ASSIGN_OR_RETURN(IcuRegex compiled, IcuRegex::Compile(regex));
  return std::make_unique<SplitPreTokenizer>(std::move(compiled), behavior, invert);
}

// `count`: pre-tokenizers made so far for this tokenizer.json, against kMaxHfPreTokenizers.
absl::StatusOr<std::unique_ptr<HfPreTokenizer>> ParseCounted(const JsonField& config, int* count) {
  if (!config.present()) return nullptr;
  RETURN_IF_ERROR(config.RequireObject());
  if (++*count > kMaxHfPreTokenizers) {
    return config.Error(
        absl::StrCat("makes more than ", kMaxHfPreTokenizers, " pre-tokenizers in one tokenizer"));
  }
  ASSIGN_OR_RETURN(const std::string type, config.Get("type").String());
  if (type == "Split") {
    ASSIGN_OR_RETURN(IcuRegex regex, ParseHfPattern(config.Get("pattern")));
    ASSIGN_OR_RETURN(const SplitBehavior behavior, ParseBehavior(config.Get("behavior")));
    ASSIGN_OR_RETURN(const bool invert, config.Get("invert").BoolOr(false));
    return std::make_unique<SplitPreTokenizer>(std::move(regex), behavior, invert);
  }
  if (type == "ByteLevel") {
    ASSIGN_OR_RETURN(const bool use_regex, config.Get("use_regex").BoolOr(true));
    ASSIGN_OR_RETURN(const bool add_prefix_space, config.Get("add_prefix_space").BoolOr(true));
    std::optional<IcuRegex> regex;
    if (use_regex) {
      ASSIGN_OR_RETURN(regex, IcuRegex::Compile(kGpt2Pattern));
    }
    return std::make_unique<ByteLevelPreTokenizer>(add_prefix_space, std::move(regex));
  }
  if (type == "Metaspace") {
    ASSIGN_OR_RETURN(std::string replacement, config.Get("replacement").StringOr("\u2581"));
    // One character, as in Hugging Face (a char): each space becomes it, so a longer string
    // would multiply the text.
    if (replacement.empty() || Utf8SequenceLength(replacement, 0) != replacement.size()) {
      return config.Get("replacement").Error("must be a single character");
    }
    PrependScheme scheme = PrependScheme::kAlways;
    const JsonField scheme_field = config.Get("prepend_scheme");
    if (scheme_field.present()) {
      ASSIGN_OR_RETURN(const std::string name, scheme_field.String());
      if (name == "first") {
        scheme = PrependScheme::kFirst;
      } else if (name == "never") {
        scheme = PrependScheme::kNever;
      } else if (name != "always") {
        return scheme_field.Error(absl::StrCat("names an unknown prepend_scheme '", name, "'"));
      }
    } else {
      ASSIGN_OR_RETURN(const bool add_prefix_space, config.Get("add_prefix_space").BoolOr(true));
      if (!add_prefix_space) scheme = PrependScheme::kNever;
    }
    ASSIGN_OR_RETURN(const bool split, config.Get("split").BoolOr(true));
    absl::StatusOr<IcuRegex> replacement_regex = IcuRegex::Literal(replacement);
    if (!replacement_regex.ok()) {
      return config.Get("replacement").Error(replacement_regex.status().message());
    }
    return std::make_unique<MetaspacePreTokenizer>(std::move(replacement), scheme, split,
                                                   *std::move(replacement_regex));
  }
  if (type == "Digits") {
    ASSIGN_OR_RETURN(const bool individual, config.Get("individual_digits").BoolOr(false));
    return MakeSplit(individual ? R"(\p{N})" : R"(\p{N}+)", SplitBehavior::kIsolated, false);
  }
  if (type == "Whitespace") return MakeSplit(R"(\w+|[^\w\s]+)", SplitBehavior::kRemoved, true);
  if (type == "WhitespaceSplit") return MakeSplit(R"(\s+)", SplitBehavior::kRemoved, false);
  if (type == "Sequence") {
    ASSIGN_OR_RETURN(const std::vector<JsonField> members,
                     config.Get("pretokenizers").ElementsOr(kMaxHfPreTokenizers));
    std::vector<std::unique_ptr<HfPreTokenizer>> parts;
    for (const JsonField& member : members) {
      ASSIGN_OR_RETURN(std::unique_ptr<HfPreTokenizer> parsed, ParseCounted(member, count));
      if (parsed != nullptr) parts.push_back(std::move(parsed));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(parts));
  }
  return config.Get("type").Unsupported(
      absl::StrCat("names pre_tokenizer type '", type, "', which is not supported"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<HfPreTokenizer>> ParseHfPreTokenizer(const JsonField& config) {
  int count = 0;
  return ParseCounted(config, &count);
}

}  // namespace zigzag
