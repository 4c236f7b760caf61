// SentencePieceTokenizer: a SentencePiece tokenizer.model (Llama-2, Mistral, our embedded model),
// read and run by our own code (no libsentencepiece, no protobuf library). Only BPE models are
// supported; UNIGRAM, WORD and CHAR models are rejected with InvalidArgument. Normalization is
// SentencePiece's: the precompiled character map (if any), whitespace handling and "▁" escaping.
// Control pieces (<s>, </s>) are the special tokens; text is encoded exactly as spm_encode does
// (special-token text is not recognised). Reads no config files; see sentencepiece_model.h for
// the file format.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "core/tokenizer/sentencepiece_model.h"
#include "core/tokenizer/tokenizer.h"

namespace zigzag {

class SentencePieceTokenizer : public Tokenizer {
 public:
  // NotFound when `model_path` cannot be opened; InvalidArgument naming it when it is not a valid
  // SentencePiece model or uses an unsupported feature (model type, denormalizer).
  static absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> Load(
      const std::string& model_path);
  // The same from a parsed model; `source` names it in errors.
  static absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> Create(SentencePieceModel model,
                                                                        const std::string& source);
  ~SentencePieceTokenizer() override;

  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                              bool add_special_tokens) const override;
  // As spm_decode: "▁" becomes " ", byte pieces are gathered into UTF-8 (U+FFFD per invalid
  // byte), unknown pieces become the model's unk_surface and the first piece loses the space of
  // the dummy prefix. Control tokens are kept as their piece text unless skipped (after a kept
  // one, the following text keeps its leading space).
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids,
                                     bool skip_special_tokens) const override;
  int32_t vocab_size() const override;
  bool IsSpecial(int32_t id) const override;
  std::optional<int32_t> TokenToId(std::string_view piece) const override;
  std::optional<std::string> IdToToken(int32_t id) const override;

  // The model's own BOS/EOS/PAD ids (LoadTokenizer's defaults); nullopt when the model has no
  // such control piece.
  std::optional<int32_t> model_bos_id() const;
  std::optional<int32_t> model_eos_id() const;
  std::optional<int32_t> model_pad_id() const;

  // The normalized text that the BPE merges run on (for tests and debugging).
  std::string Normalize(std::string_view text) const;

 private:
  using PieceType = SentencePieceModel::PieceType;

  explicit SentencePieceTokenizer(SentencePieceModel model);
  absl::Status Init();

  // SentencePiece's PieceToId: control/unknown/byte pieces first, then the others, else unk.
  int32_t PieceToId(std::string_view piece) const;
  // Length of the longest user-defined piece at the start of `text`, or 0.
  size_t MatchUserDefined(std::string_view text) const;
  // One normalization step: the replacement for a prefix of `input` and its length.
  std::pair<std::string_view, size_t> NormalizePrefix(std::string_view input) const;
  // The charsmap trie's longest match at the start of `input`: (offset into charsmap_strings_,
  // length), or length 0.
  std::pair<uint32_t, size_t> CharsmapMatch(std::string_view input) const;
  // BPE over normalized text: (piece, id) per resulting symbol.
  std::vector<std::pair<std::string_view, int32_t>> EncodeNormalized(
      std::string_view normalized) const;
  PieceType type(int32_t id) const { return model_.pieces[id].type; }

  SentencePieceModel model_;
  // NORMAL, USER_DEFINED and UNUSED pieces (mergeable), and the other types.
  absl::flat_hash_map<std::string, int32_t> pieces_;
  absl::flat_hash_map<std::string, int32_t> reserved_;
  absl::flat_hash_map<std::string, int32_t> user_defined_;
  std::vector<size_t> user_defined_lengths_;  // distinct lengths, longest first
  int32_t unk_id_ = -1;
  std::array<int32_t, 256> byte_ids_{};  // <0xNN> ids when byte_fallback
  std::vector<int16_t> id_to_byte_;      // the byte of a BYTE piece, else -1
  // The precompiled character map: a darts-clone double array and its NUL-separated outputs.
  std::vector<uint32_t> charsmap_trie_;
  std::string_view charsmap_strings_;
};

}  // namespace zigzag
