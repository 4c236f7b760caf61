#include "core/tokenizer/hf_tokenizer.h"

#include <unicode/uchar.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/tokenizer/utf8.h"
#include "core/util/status_macros.h"
#include "nlohmann/json.hpp"

namespace zigzag {
namespace {

using nlohmann::json;

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

// Finds the ids of a TemplateProcessing's special tokens before and after the sequence "A".
void ReadTemplate(const json& processor, const json& special_tokens_map,
                  std::optional<int32_t>* bos, std::optional<int32_t>* eos) {
  if (!processor.is_object()) return;
  const std::string type = processor.value("type", std::string());
  if (type == "Sequence") {
    for (const json& part : processor.value("processors", json::array())) {
      ReadTemplate(part, special_tokens_map, bos, eos);
    }
    return;
  }
  if (type != "TemplateProcessing" || !processor.contains("single") ||
      !processor["single"].is_array()) {
    return;
  }
  const json& map =
      processor.contains("special_tokens") ? processor["special_tokens"] : special_tokens_map;
  const auto id_of = [&](const json& item) -> std::optional<int32_t> {
    if (!item.contains("SpecialToken")) return std::nullopt;
    const std::string name = item["SpecialToken"].value("id", std::string());
    if (!map.is_object() || !map.contains(name)) return std::nullopt;
    const json& ids = map[name].value("ids", json::array());
    if (ids.size() != 1 || !ids[0].is_number_integer()) return std::nullopt;
    return ids[0].get<int32_t>();
  };
  const json& single = processor["single"];
  bool seen_sequence = false;
  for (const json& item : single) {
    if (item.contains("Sequence")) {
      seen_sequence = true;
      continue;
    }
    const std::optional<int32_t> id = id_of(item);
    if (!id) continue;
    if (!seen_sequence && !bos->has_value()) *bos = id;
    if (seen_sequence) *eos = id;
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<HfTokenizer>> HfTokenizer::Parse(std::string_view json_text,
                                                                const std::string& source) {
  const json root = json::parse(json_text.begin(), json_text.end(), nullptr,
                                /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not a valid JSON object"));
  }
  const auto context = [&](const absl::Status& status) {
    return absl::Status(status.code(), absl::StrCat(source, ": ", status.message()));
  };
  std::unique_ptr<HfTokenizer> tokenizer(new HfTokenizer());
  const json& model = root.contains("model") ? root["model"] : json();
  if (!model.is_object() || model.value("type", std::string("BPE")) != "BPE") {
    return absl::UnimplementedError(
        absl::StrCat(source, ": only BPE models are supported, got ",
                     model.is_object() ? model.value("type", std::string("?")) : model.dump()));
  }
  auto bpe = BpeModel::Parse(model);
  if (!bpe.ok()) return context(bpe.status());
  tokenizer->model_ = std::move(*bpe);

  const auto section = [&](const char* name) { return root.contains(name) ? root[name] : json(); };
  auto normalizer = ParseHfNormalizer(section("normalizer"));
  if (!normalizer.ok()) return context(normalizer.status());
  tokenizer->normalizer_ = std::move(*normalizer);
  auto pre_tokenizer = ParseHfPreTokenizer(section("pre_tokenizer"));
  if (!pre_tokenizer.ok()) return context(pre_tokenizer.status());
  tokenizer->pre_tokenizer_ = std::move(*pre_tokenizer);
  auto decoder = ParseHfDecoder(section("decoder"));
  if (!decoder.ok()) return context(decoder.status());
  tokenizer->decoder_ = std::move(*decoder);

  int32_t size = 0;
  for (const auto& [token, id] : tokenizer->model_->vocab()) size = std::max(size, id + 1);
  const json added = section("added_tokens").is_array() ? section("added_tokens") : json::array();
  for (const json& entry : added) {
    AddedToken token;
    if (!entry.is_object() || !entry.contains("id") || !entry["id"].is_number_integer() ||
        !entry.contains("content") || !entry["content"].is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": malformed added token ", entry.dump()));
    }
    token.id = entry["id"].get<int32_t>();
    token.content = entry["content"].get<std::string>();
    token.special = entry.value("special", false);
    token.lstrip = entry.value("lstrip", false);
    token.rstrip = entry.value("rstrip", false);
    token.single_word = entry.value("single_word", false);
    if (token.id < 0 || token.content.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": malformed added token ", entry.dump()));
    }
    size = std::max(size, token.id + 1);
    tokenizer->added_tokens_.push_back(std::move(token));
  }
  tokenizer->id_to_token_.resize(static_cast<size_t>(size));
  tokenizer->id_kind_.assign(static_cast<size_t>(size), kUnused);
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
  ReadTemplate(section("post_processor"), json(), &tokenizer->template_bos_,
               &tokenizer->template_eos_);
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
    std::string normalized(text.substr(section.begin, section.end - section.begin));
    if (normalizer_ != nullptr) normalized = normalizer_->Normalize(std::move(normalized));
    if (normalized.empty()) continue;
    pieces.assign(1, std::move(normalized));
    if (pre_tokenizer_ != nullptr) pre_tokenizer_->PreTokenize(&pieces, /*first_section=*/i == 0);
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
  for (int32_t id : ids) {
    const uint8_t kind = id_kind_[id];
    if (kind == kUnused) continue;
    if (skip_special_tokens && kind == kAddedSpecial) continue;
    pieces.push_back(DecodePiece{id_to_token_[id], kind >= kAdded});
  }
  std::string out;
  if (decoder_ != nullptr) {
    decoder_->Decode(&pieces);
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
