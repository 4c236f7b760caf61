// Tokenizer: the interface between text and token ids for one model, and LoadTokenizer, which
// picks the implementation for a model folder (Hugging Face tokenizer.json, else SentencePiece
// tokenizer.model) and reads the special tokens from the folder's config files.
// Streaming helpers live in incremental_detokenizer.h and stop_strings.h; chat templates are not
// handled here.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace zigzag {

struct SpecialTokens {
  std::optional<int32_t> bos_id;
  std::vector<int32_t> eos_ids;  // tokenizer_config's eos_token first, then the model configs'
  std::optional<int32_t> pad_id;
  bool add_bos = false;  // Encode(..., add_special_tokens=true) prepends bos_id
  bool add_eos = false;  // ... and appends eos_ids[0]
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // InvalidArgument (naming the byte offset) for invalid UTF-8. add_special_tokens: BOS/EOS per
  // special_tokens(). Special-token text in `text` (e.g. "<|im_end|>") is encoded as that token
  // by tokenizer.json tokenizers; SentencePiece encodes it as plain text, like spm_encode.
  virtual absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                                      bool add_special_tokens) const = 0;

  // InvalidArgument for an id outside [0, vocab_size). May return text with U+FFFD for byte
  // sequences that are not valid UTF-8 on their own; the result is always valid UTF-8.
  // No clean-up of tokenization spaces is done (it would break streaming).
  virtual absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids,
                                             bool skip_special_tokens) const = 0;

  // One more than the largest id (added tokens included).
  virtual int32_t vocab_size() const = 0;
  // Added tokens marked special (tokenizer.json) or control tokens (SentencePiece).
  virtual bool IsSpecial(int32_t id) const = 0;
  // The id of a vocabulary entry or added token, spelled as stored (e.g. "Ġthe", "▁the", "<s>").
  virtual std::optional<int32_t> TokenToId(std::string_view piece) const = 0;
  // The stored spelling of `id`; nullopt outside [0, vocab_size) or for unused ids.
  virtual std::optional<std::string> IdToToken(int32_t id) const = 0;

  const SpecialTokens& special_tokens() const { return special_tokens_; }
  // For loaders and tests: replaces the special tokens.
  void set_special_tokens(SpecialTokens special_tokens) {
    special_tokens_ = std::move(special_tokens);
  }

 protected:
  // Shared by the implementations: BOS/EOS around `ids` per special_tokens().
  std::vector<int32_t> AddSpecialTokens(std::vector<int32_t> ids) const;
  // InvalidArgument unless every id is in [0, vocab_size()).
  absl::Status CheckIds(absl::Span<const int32_t> ids) const;

 private:
  SpecialTokens special_tokens_;
};

// Loads DIR/tokenizer.json (preferred) or DIR/tokenizer.model (SentencePiece), with special tokens
// and add_bos/add_eos from DIR/tokenizer_config.json and EOS ids also from
// DIR/generation_config.json and config.json (eos_token_id may be an int or a list). NotFound when
// the folder has neither file.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& model_dir);

// The files of a model folder that LoadTokenizer reads, held in memory (nullopt: the file is
// absent). `dir` only names the files in error messages.
struct TokenizerFiles {
  std::string dir;
  std::optional<std::string> tokenizer_json;
  std::optional<std::string> tokenizer_model;  // a serialized SentencePiece ModelProto
  std::optional<std::string> tokenizer_config;
  std::optional<std::string> generation_config;
  std::optional<std::string> config;
};

// LoadTokenizer's work on files already read (in-memory callers such as the fuzz targets): the
// same choice of implementation, special tokens and errors.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizerFromFiles(const TokenizerFiles& files);

}  // namespace zigzag
