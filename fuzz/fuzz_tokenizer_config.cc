// libFuzzer target: the special-token configuration LoadTokenizer reads beside a tokenizer
// (tokenizer_config.json's bos/eos/pad tokens and add_bos/add_eos, generation_config.json's and
// config.json's token ids), through LoadTokenizerFromFiles with a fixed tokenizer file, then an
// encode with special tokens. Input: "<tokenizer_config.json>\0<generation_config.json>\0
// <config.json>\0<selector>"; an empty part means the file is absent; the selector's first byte
// (mod 3) picks the tokenizer file: fuzz/data/tokenizer_small.json (also when absent),
// tokenizer_metaspace.json or tokenizer_small.model, all quick to load since every input loads
// one. Generator mode is expanded first.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "core/tokenizer/tokenizer.h"
#include "fuzz/fixed_models.h"
#include "fuzz/json_mutator.h"
#include "fuzz/shaped_input.h"

namespace {

std::optional<std::string> Part(const std::vector<std::string_view>& parts, size_t i) {
  if (i >= parts.size() || parts[i].empty()) return std::nullopt;
  return std::string(parts[i]);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  zigzag::fuzz::QuietLogs();
  return 0;
}

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size,
                                          unsigned int seed) {
  return zigzag::fuzz::MutateJsonInput(data, size, max_size, seed);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string kSmallJson =
      zigzag::fuzz::ReadSourceFile("fuzz/data/tokenizer_small.json");
  static const std::string kMetaspace =
      zigzag::fuzz::ReadSourceFile("fuzz/data/tokenizer_metaspace.json");
  static const std::string kSentencePiece =
      zigzag::fuzz::ReadSourceFile("fuzz/data/tokenizer_small.model");

  const std::string input =
      zigzag::fuzz::ExpandShapedInput(std::string_view(reinterpret_cast<const char*>(data), size));
  const auto parts = zigzag::fuzz::SplitParts(input, 4);
  zigzag::TokenizerFiles files;
  files.dir = "fuzz";
  files.tokenizer_config = Part(parts, 0);
  files.generation_config = Part(parts, 1);
  files.config = Part(parts, 2);
  const int selector =
      parts.size() > 3 && !parts[3].empty() ? static_cast<uint8_t>(parts[3][0]) % 3 : 0;
  if (selector == 0) files.tokenizer_json = kSmallJson;
  if (selector == 1) files.tokenizer_json = kMetaspace;
  if (selector == 2) files.tokenizer_model = kSentencePiece;

  absl::StatusOr<std::unique_ptr<zigzag::Tokenizer>> tokenizer =
      zigzag::LoadTokenizerFromFiles(files);
  if (!tokenizer.ok()) {
    if (tokenizer.status().message().empty()) std::abort();
    return 0;
  }
  // Accepted special tokens must be ids of the vocabulary (LoadTokenizer checks this).
  const zigzag::SpecialTokens& special = (*tokenizer)->special_tokens();
  const int32_t vocab = (*tokenizer)->vocab_size();
  const auto in_vocab = [&](int32_t id) { return id >= 0 && id < vocab; };
  if (special.bos_id && !in_vocab(*special.bos_id)) std::abort();
  if (special.pad_id && !in_vocab(*special.pad_id)) std::abort();
  for (int32_t id : special.eos_ids) {
    if (!in_vocab(id)) std::abort();
  }
  absl::StatusOr<std::vector<int32_t>> ids = (*tokenizer)->Encode("Hello world", true);
  if (!ids.ok()) std::abort();  // valid UTF-8 with a byte-covering vocabulary always encodes
  if (special.add_bos && (ids->empty() || ids->front() != *special.bos_id)) std::abort();
  if (special.add_eos && (ids->empty() || ids->back() != special.eos_ids[0])) std::abort();
  for (int32_t id : *ids) {
    if (!in_vocab(id)) std::abort();
  }
  return 0;
}
