// HfTokenizer: a Hugging Face tokenizer.json with a BPE model (byte-level as in GPT-2, Llama-3 and
// Qwen, or SentencePiece-style with byte fallback as in Llama-2/Mistral): added tokens are split
// out first, then each section is normalized, pre-tokenized and BPE-encoded. Reads no other file;
// special-token configuration comes from LoadTokenizer.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "core/tokenizer/bpe_model.h"
#include "core/tokenizer/hf_decoder.h"
#include "core/tokenizer/hf_normalizer.h"
#include "core/tokenizer/hf_pre_tokenizer.h"
#include "core/tokenizer/tokenizer.h"
#include "core/util/json_fields.h"

namespace zigzag {

class HfTokenizer : public Tokenizer {
 public:
  // Parses the text of a tokenizer.json; `source` names it in error messages, which also name the
  // key path of the problem. InvalidArgument for malformed JSON, nesting deeper than
  // kMaxJsonDepth, a wrong type, an id outside [0, kMaxTokenId] or ids too sparse for their
  // table (tokenizer_limits.h); Unimplemented for model, normalizer, pre-tokenizer or decoder
  // types we do not support.
  static absl::StatusOr<std::unique_ptr<HfTokenizer>> Parse(std::string_view json_text,
                                                            const std::string& source);

  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                              bool add_special_tokens) const override;
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids,
                                     bool skip_special_tokens) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(id_to_token_.size()); }
  bool IsSpecial(int32_t id) const override;
  std::optional<int32_t> TokenToId(std::string_view piece) const override;
  std::optional<std::string> IdToToken(int32_t id) const override;

  // The special tokens the post_processor's TemplateProcessing puts before / after the text, if
  // any (LoadTokenizer's default for add_bos / add_eos).
  std::optional<int32_t> template_bos() const { return template_bos_; }
  std::optional<int32_t> template_eos() const { return template_eos_; }

 private:
  struct AddedToken {
    std::string content;
    int32_t id = 0;
    bool special = false;
    bool lstrip = false;
    bool rstrip = false;
    bool single_word = false;
  };
  // A part of the input: text to normalize and encode, or one added token.
  struct Section {
    size_t begin = 0;
    size_t end = 0;
    int32_t added_id = -1;
  };

  HfTokenizer() = default;
  static absl::StatusOr<std::unique_ptr<HfTokenizer>> ParseTree(const JsonField& root);
  std::vector<Section> SplitOnAddedTokens(std::string_view text) const;
  std::optional<size_t> MatchAddedToken(std::string_view text, size_t pos) const;

  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<HfNormalizer> normalizer_;
  std::unique_ptr<HfPreTokenizer> pre_tokenizer_;
  std::unique_ptr<HfDecoder> decoder_;
  std::vector<AddedToken> added_tokens_;
  absl::flat_hash_map<std::string, int32_t> added_by_content_;  // content -> id
  std::vector<std::vector<size_t>> added_by_first_byte_;        // 256 lists, longest content first
  std::vector<std::string> id_to_token_;
  std::vector<uint8_t> id_kind_;  // 0 unused, 1 vocabulary, 2 added, 3 added and special
  std::optional<int32_t> template_bos_;
  std::optional<int32_t> template_eos_;
};

}  // namespace zigzag
