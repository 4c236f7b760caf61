#include "core/tokenizer/sentencepiece_tokenizer.h"

#include <algorithm>
#include <queue>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/tokenizer/utf8.h"
#include "core/util/status_macros.h"

namespace zigzag {
namespace {

constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";  // U+2581 "▁"

// "<0x41>" -> 0x41 (upper-case hex, as SentencePiece writes them), else -1.
int PieceToByte(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
  int value = 0;
  for (size_t i = 3; i < 5; ++i) {
    const char c = piece[i];
    value <<= 4;
    if (c >= '0' && c <= '9') {
      value |= c - '0';
    } else if (c >= 'A' && c <= 'F') {
      value |= c - 'A' + 10;
    } else {
      return -1;
    }
  }
  return value;
}

// One character (or a frozen user-defined piece) of the text being merged, in a linked list.
struct Symbol {
  int32_t prev;
  int32_t next;
  bool freeze;
  std::string_view piece;  // empty once merged into its left neighbour
};

// A candidate merge of two adjacent symbols. Stale entries are recognised on pop.
struct SymbolPair {
  int32_t left;
  int32_t right;
  float score;
  size_t size;
};

// Highest score first; among equal scores the leftmost pair (as SentencePiece's BPE).
struct SymbolPairLess {
  bool operator()(const SymbolPair& a, const SymbolPair& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

}  // namespace

SentencePieceTokenizer::SentencePieceTokenizer(SentencePieceModel model)
    : model_(std::move(model)) {}
SentencePieceTokenizer::~SentencePieceTokenizer() = default;

absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> SentencePieceTokenizer::Load(
    const std::string& model_path) {
  ASSIGN_OR_RETURN(SentencePieceModel model, ReadSentencePieceModel(model_path));
  return Create(std::move(model), model_path);
}

absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> SentencePieceTokenizer::Create(
    SentencePieceModel model, const std::string& source) {
  std::unique_ptr<SentencePieceTokenizer> tokenizer(new SentencePieceTokenizer(std::move(model)));
  const absl::Status status = tokenizer->Init();
  if (!status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", status.message()));
  }
  return tokenizer;
}

absl::Status SentencePieceTokenizer::Init() {
  if (model_.model_type != SentencePieceModel::ModelType::kBpe) {
    return absl::InvalidArgumentError(absl::StrCat("SentencePiece model type ",
                                                   ModelTypeName(model_.model_type),
                                                   " is not supported (only BPE)"));
  }
  if (!model_.denormalizer_charsmap.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("SentencePiece denormalizer '",
                                                   model_.denormalizer_name, "' is not supported"));
  }
  if (model_.pieces.empty() || model_.pieces.size() > static_cast<size_t>(INT32_MAX)) {
    return absl::InvalidArgumentError("the model has no pieces");
  }
  // The same checks as SentencePiece's ModelInterface::InitializePieces.
  std::array<bool, 256> byte_found{};
  id_to_byte_.assign(model_.pieces.size(), -1);
  for (size_t i = 0; i < model_.pieces.size(); ++i) {
    const SentencePieceModel::Piece& piece = model_.pieces[i];
    const int32_t id = static_cast<int32_t>(i);
    if (piece.piece.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("piece ", id, " is empty"));
    }
    const bool mergeable = piece.type == PieceType::kNormal ||
                           piece.type == PieceType::kUserDefined ||
                           piece.type == PieceType::kUnused;
    if (!(mergeable ? pieces_ : reserved_).emplace(piece.piece, id).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("piece '", piece.piece, "' (id ", id, ") is defined twice"));
    }
    if (piece.type == PieceType::kUserDefined) {
      user_defined_.emplace(piece.piece, id);
      if (std::find(user_defined_lengths_.begin(), user_defined_lengths_.end(),
                    piece.piece.size()) == user_defined_lengths_.end()) {
        user_defined_lengths_.push_back(piece.piece.size());
      }
    }
    if (piece.type == PieceType::kUnknown) {
      if (unk_id_ >= 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("more than one unknown piece (ids ", unk_id_, " and ", id, ")"));
      }
      unk_id_ = id;
    }
    if (piece.type == PieceType::kByte) {
      if (!model_.byte_fallback) {
        return absl::InvalidArgumentError(absl::StrCat(
            "byte piece '", piece.piece, "' is present although byte_fallback is false"));
      }
      const int byte = PieceToByte(piece.piece);
      if (byte < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("byte piece '", piece.piece, "' (id ", id, ") is invalid"));
      }
      byte_found[byte] = true;
      byte_ids_[byte] = id;
      id_to_byte_[i] = static_cast<int16_t>(byte);
    }
  }
  std::sort(user_defined_lengths_.rbegin(), user_defined_lengths_.rend());
  if (unk_id_ < 0) return absl::InvalidArgumentError("the model has no unknown piece");
  if (model_.byte_fallback &&
      !std::all_of(byte_found.begin(), byte_found.end(), [](bool found) { return found; })) {
    return absl::InvalidArgumentError(
        "byte_fallback is true but the model does not have all 256 byte pieces");
  }

  // The precompiled charsmap: a little-endian uint32 trie size, the darts-clone double array,
  // then the NUL-terminated replacement strings.
  const std::string& blob = model_.precompiled_charsmap;
  if (!blob.empty()) {
    uint32_t trie_size = 0;
    if (blob.size() > 4) {
      for (int i = 0; i < 4; ++i)
        trie_size |= static_cast<uint32_t>(static_cast<uint8_t>(blob[i])) << (8 * i);
    }
    if (blob.size() <= 4 || trie_size >= blob.size() - 4 || trie_size % 4 != 0 || trie_size == 0) {
      return absl::InvalidArgumentError(absl::StrCat("normalizer '", model_.normalizer_name,
                                                     "' has an invalid precompiled_charsmap"));
    }
    charsmap_trie_.resize(trie_size / 4);
    for (size_t i = 0; i < charsmap_trie_.size(); ++i) {
      uint32_t unit = 0;
      for (int b = 0; b < 4; ++b) {
        unit |= static_cast<uint32_t>(static_cast<uint8_t>(blob[4 + 4 * i + b])) << (8 * b);
      }
      charsmap_trie_[i] = unit;
    }
    charsmap_strings_ = std::string_view(blob).substr(4 + trie_size);
  }
  return absl::OkStatus();
}

int32_t SentencePieceTokenizer::PieceToId(std::string_view piece) const {
  if (auto it = reserved_.find(ToAbsl(piece)); it != reserved_.end()) return it->second;
  if (auto it = pieces_.find(ToAbsl(piece)); it != pieces_.end()) return it->second;
  return unk_id_;
}

size_t SentencePieceTokenizer::MatchUserDefined(std::string_view text) const {
  for (size_t length : user_defined_lengths_) {
    if (length <= text.size() && user_defined_.contains(ToAbsl(text.substr(0, length)))) {
      return length;
    }
  }
  return 0;
}

std::pair<uint32_t, size_t> SentencePieceTokenizer::CharsmapMatch(std::string_view input) const {
  // darts-clone's commonPrefixSearch, keeping the longest of the first 32 matches (as
  // SentencePiece does). Units: bit 8 has_leaf, label = bits 0-7 and 31, value = bits 0-30,
  // offset = (unit >> 10) << ((unit & (1 << 9)) >> 6).
  const auto offset = [](uint32_t unit) -> uint32_t {
    return (unit >> 10) << ((unit & (1U << 9)) >> 6);
  };
  constexpr int kMaxResults = 32;
  int results = 0;
  std::pair<uint32_t, size_t> longest(0, 0);
  const size_t size = charsmap_trie_.size();
  uint32_t node = offset(charsmap_trie_[0]);
  for (size_t i = 0; i < input.size(); ++i) {
    const uint8_t c = static_cast<uint8_t>(input[i]);
    node ^= c;
    if (node >= size) break;
    const uint32_t unit = charsmap_trie_[node];
    if ((unit & ((1U << 31) | 0xFF)) != c) break;
    node ^= offset(unit);
    if (node >= size) break;
    if ((unit >> 8) & 1) {
      if (results < kMaxResults) {
        const uint32_t value = charsmap_trie_[node] & ((1U << 31) - 1);
        if (longest.second == 0 || i + 1 > longest.second) longest = {value, i + 1};
      }
      ++results;
    }
  }
  return longest;
}

std::pair<std::string_view, size_t> SentencePieceTokenizer::NormalizePrefix(
    std::string_view input) const {
  // User-defined pieces pass through unnormalized.
  if (const size_t length = MatchUserDefined(input); length > 0) {
    return {input.substr(0, length), length};
  }
  if (!charsmap_trie_.empty()) {
    const auto [value, length] = CharsmapMatch(input);
    if (length > 0 && value < charsmap_strings_.size()) {
      std::string_view replacement = charsmap_strings_.substr(value);
      replacement = replacement.substr(0, replacement.find('\0'));
      return {replacement, length};
    }
  }
  // The input is valid UTF-8 (checked by Encode).
  const size_t length = std::max<size_t>(1, Utf8SequenceLength(input, 0));
  return {input.substr(0, length), length};
}

std::string SentencePieceTokenizer::Normalize(std::string_view input) const {
  // SentencePiece's Normalizer::Normalize.
  std::string normalized;
  if (input.empty()) return normalized;
  if (model_.remove_extra_whitespaces) {
    while (!input.empty()) {
      const auto [replacement, length] = NormalizePrefix(input);
      if (replacement != " ") break;
      input.remove_prefix(length);
    }
    if (input.empty()) return normalized;
  }
  normalized.reserve(input.size() * 3 / 2 + 8);
  const std::string_view space = model_.escape_whitespaces ? kSpaceSymbol : " ";
  const bool dummy = model_.add_dummy_prefix;
  if (dummy && !model_.treat_whitespace_as_suffix) normalized.append(space);
  bool is_prev_space = model_.remove_extra_whitespaces;
  while (!input.empty()) {
    auto [piece, length] = NormalizePrefix(input);
    if (is_prev_space) {
      while (!piece.empty() && piece.front() == ' ') piece.remove_prefix(1);
    }
    if (!piece.empty()) {
      for (char c : piece) {
        if (c == ' ' && model_.escape_whitespaces) {
          normalized.append(kSpaceSymbol);
        } else {
          normalized.push_back(c);
        }
      }
      is_prev_space = piece.back() == ' ';
    }
    input.remove_prefix(length);
    if (!model_.remove_extra_whitespaces) is_prev_space = false;
  }
  if (model_.remove_extra_whitespaces) {
    while (normalized.size() >= space.size() &&
           std::string_view(normalized).substr(normalized.size() - space.size()) == space) {
      normalized.resize(normalized.size() - space.size());
    }
  }
  if (dummy && model_.treat_whitespace_as_suffix) normalized.append(space);
  return normalized;
}

std::vector<std::pair<std::string_view, int32_t>> SentencePieceTokenizer::EncodeNormalized(
    std::string_view normalized) const {
  // SentencePiece's bpe::Model::Encode: characters (user-defined pieces frozen), then merges of
  // the best adjacent pair until none is in the vocabulary.
  std::vector<std::pair<std::string_view, int32_t>> output;
  if (normalized.empty()) return output;
  std::vector<Symbol> symbols;
  symbols.reserve(normalized.size());
  for (size_t pos = 0; pos < normalized.size();) {
    size_t length = MatchUserDefined(normalized.substr(pos));
    const bool freeze = length > 0;
    if (!freeze) {
      length = std::max<size_t>(1, Utf8SequenceLength(normalized, pos));
      length = std::min(length, normalized.size() - pos);
    }
    const int32_t index = static_cast<int32_t>(symbols.size());
    symbols.push_back(Symbol{index - 1, -1, freeze, normalized.substr(pos, length)});
    pos += length;
    if (pos < normalized.size()) symbols.back().next = index + 1;
  }

  std::priority_queue<SymbolPair, std::vector<SymbolPair>, SymbolPairLess> agenda;
  // Merged UNUSED pieces, to be split back into their two halves afterwards.
  absl::flat_hash_map<absl::string_view, std::pair<std::string_view, std::string_view>> rev_merge;
  const auto maybe_add_pair = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0 || symbols[left].freeze || symbols[right].freeze) return;
    const std::string_view piece(symbols[left].piece.data(),
                                 symbols[left].piece.size() + symbols[right].piece.size());
    const auto it = pieces_.find(ToAbsl(piece));
    if (it == pieces_.end()) return;
    agenda.push(SymbolPair{left, right, model_.pieces[it->second].score, piece.size()});
    if (type(it->second) == PieceType::kUnused) {
      rev_merge[ToAbsl(piece)] = {symbols[left].piece, symbols[right].piece};
    }
  };
  for (size_t i = 1; i < symbols.size(); ++i) {
    maybe_add_pair(static_cast<int32_t>(i - 1), static_cast<int32_t>(i));
  }
  while (!agenda.empty()) {
    const SymbolPair top = agenda.top();
    agenda.pop();
    Symbol& left = symbols[top.left];
    Symbol& right = symbols[top.right];
    if (left.piece.empty() || right.piece.empty() ||
        left.piece.size() + right.piece.size() != top.size) {
      continue;  // stale: one side has merged since
    }
    left.piece = std::string_view(left.piece.data(), top.size);
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.left;
    right.piece = std::string_view();
    maybe_add_pair(left.prev, top.left);
    maybe_add_pair(top.left, left.next);
  }

  // Splits merged UNUSED pieces back (recursively), as SentencePiece's resegment.
  std::vector<std::string_view> stack;
  for (int32_t index = 0; index != -1; index = symbols[index].next) {
    stack.push_back(symbols[index].piece);
    while (!stack.empty()) {
      const std::string_view piece = stack.back();
      stack.pop_back();
      const int32_t id = PieceToId(piece);
      if (type(id) == PieceType::kUnused) {
        if (const auto it = rev_merge.find(ToAbsl(piece)); it != rev_merge.end()) {
          stack.push_back(it->second.second);
          stack.push_back(it->second.first);
          continue;
        }
      }
      output.emplace_back(piece, id);
    }
  }
  return output;
}

absl::StatusOr<std::vector<int32_t>> SentencePieceTokenizer::Encode(std::string_view text,
                                                                    bool add_special_tokens) const {
  RETURN_IF_ERROR(ValidateUtf8(text));
  const std::string normalized = Normalize(text);
  std::vector<int32_t> ids;
  ids.reserve(normalized.size() / 3 + 2);
  bool prev_unknown = false;
  for (const auto& [piece, id] : EncodeNormalized(normalized)) {
    const bool unknown = type(id) == PieceType::kUnknown;
    if (unknown && model_.byte_fallback) {
      for (char c : piece) ids.push_back(byte_ids_[static_cast<uint8_t>(c)]);
    } else if (!(unknown && prev_unknown)) {
      // A run of unknown symbols becomes one unknown token.
      ids.push_back(id);
    }
    prev_unknown = unknown;
  }
  if (add_special_tokens) ids = AddSpecialTokens(std::move(ids));
  return ids;
}

absl::StatusOr<std::string> SentencePieceTokenizer::Decode(absl::Span<const int32_t> ids,
                                                           bool skip_special_tokens) const {
  RETURN_IF_ERROR(CheckIds(ids));
  // SentencePiece's SentencePieceProcessor::Decode.
  std::string text;
  std::string bytes;
  const auto flush_bytes = [&]() {
    for (size_t pos = 0; pos < bytes.size();) {
      const size_t length = Utf8SequenceLength(bytes, pos);
      if (length == 0) {
        text.append(kReplacementCharacter);  // one per invalid byte
        ++pos;
      } else {
        text.append(bytes, pos, length);
        pos += length;
      }
    }
    bytes.clear();
  };
  const bool strip_first_space = model_.add_dummy_prefix || model_.remove_extra_whitespaces;
  bool is_bos_ws = true;  // the next piece may still lose its leading "▁"
  bool bos_ws_seen = false;
  for (int32_t id : ids) {
    const PieceType piece_type = type(id);
    if (piece_type == PieceType::kByte) {
      bytes.push_back(static_cast<char>(id_to_byte_[id]));
      continue;
    }
    flush_bytes();
    if (bos_ws_seen || !text.empty()) is_bos_ws = false;
    bos_ws_seen = false;
    const std::string& piece_text = model_.pieces[id].piece;
    if (piece_type == PieceType::kControl) {
      if (!skip_special_tokens) text.append(piece_text);
      continue;
    }
    if (piece_type == PieceType::kUnknown) {
      text.append(model_.unk_surface);
      continue;
    }
    std::string_view piece = piece_text;
    if (is_bos_ws && strip_first_space && piece.substr(0, kSpaceSymbol.size()) == kSpaceSymbol) {
      piece.remove_prefix(kSpaceSymbol.size());
      // With remove_extra_whitespaces, every leading space piece is stripped.
      bos_ws_seen = !model_.remove_extra_whitespaces;
    }
    for (size_t pos = 0; pos < piece.size();) {
      const size_t next = piece.find(kSpaceSymbol, pos);
      if (next == std::string_view::npos) {
        text.append(piece.substr(pos));
        break;
      }
      text.append(piece.substr(pos, next - pos));
      text.push_back(' ');
      pos = next + kSpaceSymbol.size();
    }
  }
  flush_bytes();
  if (!ValidateUtf8(text).ok()) return Utf8Lossy(text);
  return text;
}

int32_t SentencePieceTokenizer::vocab_size() const {
  return static_cast<int32_t>(model_.pieces.size());
}

bool SentencePieceTokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < vocab_size() && type(id) == PieceType::kControl;
}

std::optional<int32_t> SentencePieceTokenizer::TokenToId(std::string_view piece) const {
  const int32_t id = PieceToId(piece);
  if (model_.pieces[id].piece != piece) return std::nullopt;  // the unk fallback
  return id;
}

std::optional<std::string> SentencePieceTokenizer::IdToToken(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return std::nullopt;
  return model_.pieces[id].piece;
}

std::optional<int32_t> SentencePieceTokenizer::model_bos_id() const {
  const int32_t id = PieceToId(model_.bos_piece);
  if (type(id) != PieceType::kControl) return std::nullopt;
  return id;
}
std::optional<int32_t> SentencePieceTokenizer::model_eos_id() const {
  const int32_t id = PieceToId(model_.eos_piece);
  if (type(id) != PieceType::kControl) return std::nullopt;
  return id;
}
std::optional<int32_t> SentencePieceTokenizer::model_pad_id() const {
  const int32_t id = PieceToId(model_.pad_piece);
  if (type(id) != PieceType::kControl) return std::nullopt;
  return id;
}

}  // namespace zigzag
