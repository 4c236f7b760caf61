// The fixed tokenizers and model config that fuzz targets run fuzzed data against, loaded once
// from fuzz/data/ and models/zigzag-tiny/ (a missing file aborts: a broken checkout, not a
// finding). Does no fuzzing itself.
#pragma once

#include <string>
#include <string_view>

#include "core/model/model_config.h"
#include "core/tokenizer/tokenizer.h"

namespace zigzag::fuzz {

enum class FixedTokenizer {
  kByteLevel = 0,      // fuzz/data/tokenizer_bytelevel.json: GPT-2/Llama-3 style, ICU regex split
  kMetaspace = 1,      // fuzz/data/tokenizer_metaspace.json: Llama-2 style, byte fallback
  kSentencePiece = 2,  // models/zigzag-tiny/tokenizer.model with its config files
};
inline constexpr int kNumFixedTokenizers = 3;

// The source tree's path of `relative` (ZIGZAG_FUZZ_SOURCE_DIR overrides the built-in one).
std::string SourcePath(std::string_view relative);
// The file's bytes; aborts with a message when it cannot be read.
std::string ReadSourceFile(std::string_view relative);

const Tokenizer& GetFixedTokenizer(FixedTokenizer which);

// models/zigzag-tiny's config (vocab 4096, context 4096).
const ModelConfig& TinyModelConfig();

// Quiets spdlog (the libraries' info logs would dominate the fuzzers' output).
void QuietLogs();

}  // namespace zigzag::fuzz
