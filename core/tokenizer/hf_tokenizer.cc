#include "core/tokenizer/hf_tokenizer.h"

#include <unicode/uchar.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/tokenizer/tokenizer_limits.h"
#include "core/tokenizer/utf8.h"
#include "core/util/json_fields.h"
#include "core/util/status_macros.h"

namespace zigzag {
namespace {

enum IdKind : uint8_t { kUnused = 0, kVocab = 1, kAdded = 2, kAddedSpecial = 3 };

// The code point ending just before text[end], and its start.
std::pair<char32_t, size_t> CodePointBefore(std::string_view text, size_t end) {
  size_t begin = end - 1;
  while (begin > 0 && (static_cast<uint8_t>(text[begin]) & 0xC0) == 0x80) --begin;
  const size_t length = Utf8SequenceLength(text, begin);
  if (length != end - begin) return {U'\uFFFD', begin};
  return {DecodeUtf8At(text, begin, length), begin};
}

bool IsWordCharacter(char32_t cp) { return cp == U'_' || u_isalnum(static_cast<UChar32>(cp)); }

// Length of the Unicode white space at the start of text[begin, end).
size_t LeadingWhitespace(std::string_view text, size_t begin, size_t end) {
  size_t pos = begin;
  while (pos < end) {
    const size_t length = Utf8SequenceLength(text, pos);
    if (length == 0 || !u_isUWhiteSpace(static_cast<UChar32>(DecodeUtf8At(text, pos, length)))) {
      break;
    }
    pos += length;
  }
  return pos - begin;
}

size_t TrailingWhitespace(std::string_view text, size_t begin, size_t end) {
  size_t pos = end;
  while (pos > begin) {
    const auto [cp, start] = CodePointBefore(text, pos);
    if (start < begin || !u_isUWhiteSpace(static_cast<UChar32>(cp))) break;
    pos = start;
  }
  return end - pos;
}

// The most post-processors a "Sequence" post_processor may hold, and added tokens a file may have.
constexpr size_t kMaxPostProcessors = 64;
constexpr size_t kMaxAddedTokens = size_t{1} << 17;

// Finds the ids of a TemplateProcessing's special tokens before and after the sequence "A". Other
// processor types (ByteLevel, RobertaProcessing, ...) add no tokens that we read.
absl::Status ReadTemplate(const JsonField& processor, std::optional<int32_t>* bos,
                          std::optional<int32_t>* eos) {
  if (!processor.present()) return absl::OkStatus();
  RETURN_IF_ERROR(processor.RequireObject());
  ASSIGN_OR_RETURN(const std::string type, processor.Get("type").StringOr(""));
  if (type == "Sequence") {
    // Recursion bounded by the document's nesting (kMaxJsonDepth).
    ASSIGN_OR_RETURN(const std::vector<JsonField> parts,
                     processor.Get("processors").ElementsOr(kMaxPostProcessors));
    for (const JsonField& part : parts) RETURN_IF_ERROR(ReadTemplate(part, bos, eos));
    return absl::OkStatus();
  }
  if (type != "TemplateProcessing") return absl::OkStatus();
  const JsonField map = processor.Get("special_tokens");
  RETURN_IF_ERROR(map.OptionalObject());
  ASSIGN_OR_RETURN(const std::vector<JsonField> single,
                   processor.Get("single").ElementsOr(kMaxPostProcessors));
  bool seen_sequence = false;
  for (const JsonField& item : single) {
    RETURN_IF_ERROR(item.RequireObject());
    if (item.Get("Sequence").present()) {
      seen_sequence = true;
      continue;
    }
    const JsonField special = item.Get("SpecialToken");
    if (!special.present()) continue;
    RETURN_IF_ERROR(special.RequireObject());
    ASSIGN_OR_RETURN(const std::string name, special.Get("id").String());
    const JsonField entry = map.Get(name);
    if (!entry.present()) continue;
    RETURN_IF_ERROR(entry.RequireObject());
    ASSIGN_OR_RETURN(const std::vector<JsonField> ids,
                     entry.Get("ids").ElementsOr(kMaxPostProcessors));
    if (ids.size() != 1) continue;
    ASSIGN_OR_RETURN(const int64_t id, ids[0].Int(0, kMaxTokenId));
    if (!seen_sequence && !bos->has_value()) *bos = static_cast<int32_t>(id);
    if (seen_sequence) *eos = static_cast<int32_t>(id);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<HfTokenizer>> HfTokenizer::Parse(std::string_view json_text,
                                                                const std::string& source) {
  ASSIGN_OR_RETURN(const nlohmann::json root, ParseJson(json_text, source));
  // JsonField checks every type before use; this only backs it up.
  try {
    return ParseTree(JsonField(root, source));
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": unexpected JSON structure: ", e.what()));
  }
}

absl::StatusOr<std::unique_ptr<HfTokenizer>> HfTokenizer::ParseTree(const JsonField& root) {
  std::unique_ptr<HfTokenizer> tokenizer(new HfTokenizer());
  const JsonField model = root.Get("model");
  RETURN_IF_ERROR(model.RequireObject());
  ASSIGN_OR_RETURN(const std::string model_type, model.Get("type").StringOr("BPE"));
  if (model_type != "BPE") {
    return model.Get("type").Unsupported(
        absl::StrCat("is '", model_type, "': only BPE models are supported"));
  }
  ASSIGN_OR_RETURN(tokenizer->model_, BpeModel::Parse(model));
  ASSIGN_OR_RETURN(tokenizer->normalizer_, ParseHfNormalizer(root.Get("normalizer")));
  ASSIGN_OR_RETURN(tokenizer->pre_tokenizer_, ParseHfPreTokenizer(root.Get("pre_tokenizer")));
  ASSIGN_OR_RETURN(tokenizer->decoder_, ParseHfDecoder(root.Get("decoder")));

  // The id tables are sized by the largest id: it must be below kMaxTokenId (checked as each id
  // is read) and leave at most half of the table unused, besides kMaxUnusedIdSlack.
  int64_t max_id = -1;
  std::string max_id_path;
  for (const auto& [token, id] : tokenizer->model_->vocab()) {
    if (id > max_id) {
      max_id = id;
      max_id_path = token;
    }
  }
  const JsonField vocab = model.Get("vocab");
  std::optional<JsonField> max_id_field;
  if (max_id >= 0) max_id_field = vocab.Get(max_id_path);
  ASSIGN_OR_RETURN(const std::vector<JsonField> added,
                   root.Get("added_tokens").ElementsOr(kMaxAddedTokens));
  for (const JsonField& entry : added) {
    RETURN_IF_ERROR(entry.RequireObject());
    AddedToken token;
    ASSIGN_OR_RETURN(const int64_t id, entry.Get("id").Int(0, kMaxTokenId));
    token.id = static_cast<int32_t>(id);
    ASSIGN_OR_RETURN(token.content, entry.Get("content").String());
    if (token.content.empty()) return entry.Get("content").Error("must not be empty");
    ASSIGN_OR_RETURN(token.special, entry.Get("special").BoolOr(false));
    ASSIGN_OR_RETURN(token.lstrip, entry.Get("lstrip").BoolOr(false));
    ASSIGN_OR_RETURN(token.rstrip, entry.Get("rstrip").BoolOr(false));
    ASSIGN_OR_RETURN(token.single_word, entry.Get("single_word").BoolOr(false));
    RETURN_IF_ERROR(entry.Get("normalized").BoolOr(false).status());
    if (id > max_id) {
      max_id = id;
      max_id_field = entry.Get("id");
    }
    tokenizer->added_tokens_.push_back(std::move(token));
  }
  const int64_t entries =
      static_cast<int64_t>(tokenizer->model_->vocab().size() + tokenizer->added_tokens_.size());
  if (max_id_field.has_value() && max_id + 1 > 2 * entries + kMaxUnusedIdSlack) {
    return max_id_field->Error(
        absl::StrCat("is ", max_id, ", but the tokenizer has only ", entries,
                     " tokens: ids must be dense (at most half of the id table and ",
                     kMaxUnusedIdSlack, " more ids unused)"));
  }
  const size_t size = static_cast<size_t>(max_id + 1);
  tokenizer->id_to_token_.resize(size);
  tokenizer->id_kind_.assign(size, kUnused);
  for (const auto& [token, id] : tokenizer->model_->vocab()) {
    tokenizer->id_to_token_[id] = token;
    tokenizer->id_kind_[id] = kVocab;
  }
  tokenizer->added_by_first_byte_.resize(256);
  for (size_t i = 0; i < tokenizer->added_tokens_.size(); ++i) {
    const AddedToken& token = tokenizer->added_tokens_[i];
    tokenizer->id_to_token_[token.id] = token.content;
    tokenizer->id_kind_[token.id] = token.special ? kAddedSpecial : kAdded;
    tokenizer->added_by_content_[token.content] = token.id;
    tokenizer->added_by_first_byte_[static_cast<uint8_t>(token.content[0])].push_back(i);
  }
  for (auto& list : tokenizer->added_by_first_byte_) {
    std::stable_sort(list.begin(), list.end(), [&](size_t a, size_t b) {
      return tokenizer->added_tokens_[a].content.size() >
             tokenizer->added_tokens_[b].content.size();
    });
  }
  RETURN_IF_ERROR(ReadTemplate(root.Get("post_processor"), &tokenizer->template_bos_,
                               &tokenizer->template_eos_));
  return tokenizer;
}

std::optional<size_t> HfTokenizer::MatchAddedToken(std::string_view text, size_t pos) const {
  for (size_t index : added_by_first_byte_[static_cast<uint8_t>(text[pos])]) {
    const AddedToken& token = added_tokens_[index];
    if (text.compare(pos, token.content.size(), token.content) != 0) continue;
    if (token.single_word) {
      const size_t end = pos + token.content.size();
      if (pos > 0 && IsWordCharacter(CodePointBefore(text, pos).first)) continue;
      if (end < text.size()) {
        const size_t length = Utf8SequenceLength(text, end);
        if (length > 0 && IsWordCharacter(DecodeUtf8At(text, end, length))) continue;
      }
    }
    return index;
  }
  return std::nullopt;
}

std::vector<HfTokenizer::Section> HfTokenizer::SplitOnAddedTokens(std::string_view text) const {
  std::vector<Section> sections;
  size_t start = 0;  // start of the current text section
  size_t pos = 0;
  while (pos < text.size()) {
    const std::optional<size_t> match =
        added_tokens_.empty() ? std::nullopt : MatchAddedToken(text, pos);
    if (!match.has_value()) {
      ++pos;
      continue;
    }
    const AddedToken& token = added_tokens_[*match];
    size_t text_end = pos;
    if (token.lstrip) text_end -= TrailingWhitespace(text, start, pos);
    if (text_end > start) sections.push_back(Section{start, text_end, -1});
    sections.push_back(Section{pos, pos + token.content.size(), token.id});
    pos += token.content.size();
    if (token.rstrip) pos += LeadingWhitespace(text, pos, text.size());
    start = pos;
  }
  if (start < text.size()) sections.push_back(Section{start, text.size(), -1});
  return sections;
}

absl::StatusOr<std::vector<int32_t>> HfTokenizer::Encode(std::string_view text,
                                                         bool add_special_tokens) const {
  RETURN_IF_ERROR(ValidateUtf8(text));
  std::vector<int32_t> ids;
  const std::vector<Section> sections = SplitOnAddedTokens(text);
  std::vector<std::string> pieces;
  for (size_t i = 0; i < sections.size(); ++i) {
    const Section& section = sections[i];
    if (section.added_id >= 0) {
      ids.push_back(section.added_id);
      continue;
    }
    const size_t length = section.end - section.begin;
    std::string normalized(text.substr(section.begin, length));
    if (normalizer_ != nullptr) {
      ASSIGN_OR_RETURN(normalized,
                       normalizer_->Normalize(std::move(normalized), NormalizedByteLimit(length)));
    }
    if (normalized.empty()) continue;
    pieces.assign(1, std::move(normalized));
    if (pre_tokenizer_ != nullptr) {
      RETURN_IF_ERROR(pre_tokenizer_->PreTokenize(&pieces, /*first_section=*/i == 0));
    }
    for (const std::string& piece : pieces) {
      if (piece.empty()) continue;
      RETURN_IF_ERROR(model_->Encode(piece, &ids));
    }
  }
  if (add_special_tokens) ids = AddSpecialTokens(std::move(ids));
  return ids;
}

absl::StatusOr<std::string> HfTokenizer::Decode(absl::Span<const int32_t> ids,
                                                bool skip_special_tokens) const {
  RETURN_IF_ERROR(CheckIds(ids));
  std::vector<DecodePiece> pieces;
  pieces.reserve(ids.size());
  size_t input_bytes = 0;
  for (int32_t id : ids) {
    const uint8_t kind = id_kind_[id];
    if (kind == kUnused) continue;
    if (skip_special_tokens && kind == kAddedSpecial) continue;
    pieces.push_back(DecodePiece{id_to_token_[id], kind >= kAdded});
    input_bytes += pieces.back().text.size();
  }
  std::string out;
  if (decoder_ != nullptr) {
    RETURN_IF_ERROR(decoder_->Decode(&pieces, NormalizedByteLimit(input_bytes)));
    for (const DecodePiece& piece : pieces) out.append(piece.text);
  } else {
    for (size_t i = 0; i < pieces.size(); ++i) {
      if (i > 0) out.push_back(' ');
      out.append(pieces[i].text);
    }
  }
  return Utf8Lossy(out);
}

bool HfTokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < vocab_size() && id_kind_[id] == kAddedSpecial;
}

std::optional<int32_t> HfTokenizer::TokenToId(std::string_view piece) const {
  auto added = added_by_content_.find(ToAbsl(piece));
  if (added != added_by_content_.end()) return added->second;
  auto it = model_->vocab().find(ToAbsl(piece));
  if (it != model_->vocab().end()) return it->second;
  return std::nullopt;
}

std::optional<std::string> HfTokenizer::IdToToken(int32_t id) const {
  if (id < 0 || id >= vocab_size() || id_kind_[id] == kUnused) return std::nullopt;
  return id_to_token_[id];
}

}  // namespace zigzag
