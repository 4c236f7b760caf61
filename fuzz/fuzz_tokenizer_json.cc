// libFuzzer target: a tokenizer.json through LoadTokenizerFromFiles (BPE model, normalizers,
// pre-tokenizers with ICU regexes, decoders, added tokens, post-processor), then encode and
// decode (tokenizer_checks.h). Input: "<tokenizer.json>\0<text to encode>"; without a text part
// a fixed sample is encoded. Generator mode (shaped_input.h) is expanded first: "@@" shapes the
// JSON (deep nesting, huge ids, many vocab entries), "@$" the text (e.g. a 1 MB whitespace run).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/tokenizer/tokenizer.h"
#include "fuzz/fixed_models.h"
#include "fuzz/json_mutator.h"
#include "fuzz/shaped_input.h"
#include "fuzz/tokenizer_checks.h"

namespace {

constexpr std::string_view kSample =
    "Hello world! It's 2024, naïve café\n\n  spaces\t<|endoftext|>日本語 😀 12345";

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
  const std::string input =
      zigzag::fuzz::ExpandShapedInput(std::string_view(reinterpret_cast<const char*>(data), size));
  const auto parts = zigzag::fuzz::SplitParts(input, 2);
  zigzag::TokenizerFiles files;
  files.dir = "fuzz";
  files.tokenizer_json = std::string(parts[0]);
  absl::StatusOr<std::unique_ptr<zigzag::Tokenizer>> tokenizer =
      zigzag::LoadTokenizerFromFiles(files);
  if (!tokenizer.ok()) {
    if (tokenizer.status().message().empty()) std::abort();
    return 0;
  }
  zigzag::fuzz::CheckEncodeDecode(**tokenizer, parts.size() > 1 ? parts[1] : kSample);
  zigzag::fuzz::CheckDecodeSweep(**tokenizer, 512);
  return 0;
}
