#include "fuzz/fixed_models.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>

#include "spdlog/spdlog.h"

namespace zigzag::fuzz {
namespace {

[[noreturn]] void Fail(const std::string& message) {
  std::fprintf(stderr, "fuzz harness set-up failed: %s\n", message.c_str());
  std::abort();
}

std::unique_ptr<Tokenizer> LoadFixed(FixedTokenizer which) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> loaded;
  switch (which) {
    case FixedTokenizer::kByteLevel:
    case FixedTokenizer::kMetaspace: {
      TokenizerFiles files;
      files.dir = SourcePath("fuzz/data");
      files.tokenizer_json = ReadSourceFile(which == FixedTokenizer::kByteLevel
                                                ? "fuzz/data/tokenizer_bytelevel.json"
                                                : "fuzz/data/tokenizer_metaspace.json");
      loaded = LoadTokenizerFromFiles(files);
      break;
    }
    case FixedTokenizer::kSentencePiece:
      loaded = LoadTokenizer(SourcePath("models/zigzag-tiny"));
      break;
  }
  if (!loaded.ok()) Fail(loaded.status().ToString());
  return *std::move(loaded);
}

}  // namespace

std::string SourcePath(std::string_view relative) {
  const char* env = std::getenv("ZIGZAG_FUZZ_SOURCE_DIR");
  return std::string(env != nullptr ? env : ZIGZAG_SOURCE_DIR) + "/" + std::string(relative);
}

std::string ReadSourceFile(std::string_view relative) {
  const std::string path = SourcePath(relative);
  std::ifstream in(path, std::ios::binary);
  if (!in) Fail("cannot read " + path + " (set ZIGZAG_FUZZ_SOURCE_DIR to the source tree)");
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

const Tokenizer& GetFixedTokenizer(FixedTokenizer which) {
  static const Tokenizer* const kTokenizers[kNumFixedTokenizers] = {
      LoadFixed(FixedTokenizer::kByteLevel).release(),
      LoadFixed(FixedTokenizer::kMetaspace).release(),
      LoadFixed(FixedTokenizer::kSentencePiece).release(),
  };
  return *kTokenizers[static_cast<int>(which)];
}

const ModelConfig& TinyModelConfig() {
  static const ModelConfig* const kConfig = [] {
    absl::StatusOr<ModelConfig> config =
        ParseModelConfig(ReadSourceFile("models/zigzag-tiny/config.json"), "zigzag-tiny");
    if (!config.ok()) Fail(config.status().ToString());
    return new ModelConfig(*std::move(config));
  }();
  return *kConfig;
}

void QuietLogs() { spdlog::set_level(spdlog::level::off); }

}  // namespace zigzag::fuzz
