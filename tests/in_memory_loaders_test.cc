// The in-memory loader entry points that the fuzz targets use (fuzz/README.md):
// LoadTokenizerFromFiles must give what LoadTokenizer gives for a folder holding the same files,
// and ApplyGenerationConfig must merge generation_config.json as LoadModelConfig documents.
// Expected ids and special tokens are worked out by hand from the tiny files written here.
#include <cstdint>
#include <string>
#include <vector>

#include "core/model/model_config.h"
#include "core/tokenizer/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_support.h"

namespace zigzag {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A BPE tokenizer.json: <unk> 0, <s> 1, </s> 2, a 3, b 4, ab 5 (merge "a b"); <s> and </s> are
// special added tokens.
constexpr const char* kTokenizerJson = R"({
  "model": {"type": "BPE", "unk_token": "<unk>",
            "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "a": 3, "b": 4, "ab": 5},
            "merges": ["a b"]},
  "added_tokens": [{"id": 1, "content": "<s>", "special": true},
                   {"id": 2, "content": "</s>", "special": true}]
})";
constexpr const char* kTokenizerConfig =
    R"({"bos_token": "<s>", "eos_token": {"content": "</s>"}, "add_bos_token": true})";
constexpr const char* kGenerationConfig = R"({"eos_token_id": [4, 2]})";
constexpr const char* kModelConfig = R"({"eos_token_id": 3})";

void AppendVarint(uint64_t value, std::string* out) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>((value & 0x7F) | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

void AppendBytesField(int field, const std::string& bytes, std::string* out) {
  AppendVarint(static_cast<uint64_t>(field) << 3 | 2, out);
  AppendVarint(bytes.size(), out);
  *out += bytes;
}

// A SentencePiece ModelProto: pieces <unk> (UNKNOWN) 0, <s> 1, </s> 2 (CONTROL), "▁" 3, "a" 4,
// "b" 5 (NORMAL, no merges between them), and a BPE TrainerSpec.
std::string TinySentencePieceModel() {
  std::string model;
  const std::pair<const char*, int> pieces[] = {{"<unk>", 2},        {"<s>", 3}, {"</s>", 3},
                                                {"\xE2\x96\x81", 1}, {"a", 1},   {"b", 1}};
  for (const auto& [text, type] : pieces) {
    std::string piece;
    AppendBytesField(1, text, &piece);
    piece += '\x18';  // type = 3, varint
    AppendVarint(static_cast<uint64_t>(type), &piece);
    AppendBytesField(1, piece, &model);
  }
  AppendBytesField(2, std::string("\x18\x02", 2), &model);  // trainer_spec { model_type: BPE }
  return model;
}

TEST(LoadTokenizerFromFiles, TokenizerJsonGivesWhatLoadTokenizerGivesForTheSameFolder) {
  const fs::path dir = testing::MakeTempDir("in_memory_hf");
  testing::WriteFile(dir / "tokenizer.json", kTokenizerJson);
  testing::WriteFile(dir / "tokenizer_config.json", kTokenizerConfig);
  testing::WriteFile(dir / "generation_config.json", kGenerationConfig);
  testing::WriteFile(dir / "config.json", kModelConfig);
  TokenizerFiles files{.dir = dir.string(),
                       .tokenizer_json = kTokenizerJson,
                       .tokenizer_config = kTokenizerConfig,
                       .generation_config = kGenerationConfig,
                       .config = kModelConfig};

  absl::StatusOr<std::unique_ptr<Tokenizer>> from_files = LoadTokenizerFromFiles(files);
  absl::StatusOr<std::unique_ptr<Tokenizer>> from_dir = LoadTokenizer(dir.string());
  ASSERT_TRUE(from_files.ok()) << from_files.status();
  ASSERT_TRUE(from_dir.ok()) << from_dir.status();
  for (const Tokenizer* tokenizer : {from_files->get(), from_dir->get()}) {
    const SpecialTokens& special = tokenizer->special_tokens();
    EXPECT_EQ(special.bos_id, 1);
    // tokenizer_config's eos_token first, then generation_config's, then config.json's.
    EXPECT_THAT(special.eos_ids, ElementsAre(2, 4, 3));
    EXPECT_TRUE(special.add_bos);
    EXPECT_FALSE(special.add_eos);
    absl::StatusOr<std::vector<int32_t>> ids = tokenizer->Encode("abba", true);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_THAT(*ids, ElementsAre(1, 5, 4, 3));  // <s> ab b a
  }
}

TEST(LoadTokenizerFromFiles, SentencePieceModelGivesWhatLoadTokenizerGivesForTheSameFolder) {
  const std::string model = TinySentencePieceModel();
  const fs::path dir = testing::MakeTempDir("in_memory_sp");
  testing::WriteFile(dir / "tokenizer.model", model);
  TokenizerFiles files{.dir = dir.string(), .tokenizer_model = model};

  absl::StatusOr<std::unique_ptr<Tokenizer>> from_files = LoadTokenizerFromFiles(files);
  absl::StatusOr<std::unique_ptr<Tokenizer>> from_dir = LoadTokenizer(dir.string());
  ASSERT_TRUE(from_files.ok()) << from_files.status();
  ASSERT_TRUE(from_dir.ok()) << from_dir.status();
  for (const Tokenizer* tokenizer : {from_files->get(), from_dir->get()}) {
    // The model's own <s> and </s>; BOS is added by default, as Hugging Face's LlamaTokenizer.
    EXPECT_EQ(tokenizer->special_tokens().bos_id, 1);
    EXPECT_THAT(tokenizer->special_tokens().eos_ids, ElementsAre(2));
    absl::StatusOr<std::vector<int32_t>> ids = tokenizer->Encode("ab", true);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_THAT(*ids, ElementsAre(1, 3, 4, 5));  // <s> ▁ a b (dummy prefix, no merges)
  }
}

TEST(LoadTokenizerFromFiles, NoTokenizerFileIsNotFoundNamingTheFolder) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      LoadTokenizerFromFiles(TokenizerFiles{.dir = "/models/x", .config = kModelConfig});
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(tokenizer.status().message(), HasSubstr("/models/x has neither tokenizer.json"));
}

TEST(LoadTokenizerFromFiles, TokenizerConfigThatIsNotAnObjectIsInvalidNamingTheFile) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = LoadTokenizerFromFiles(TokenizerFiles{
      .dir = "/models/x", .tokenizer_json = kTokenizerJson, .tokenizer_config = "[1, 2]"});
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(tokenizer.status().message(),
              HasSubstr("/models/x/tokenizer_config.json: expected a JSON object"));
}

TEST(LoadTokenizerFromFiles, TruncatedSentencePieceModelIsInvalidNamingTheFile) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = LoadTokenizerFromFiles(
      TokenizerFiles{.dir = "/models/x", .tokenizer_model = std::string("\x0a\x09<unk>", 7)});
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(tokenizer.status().message(),
              HasSubstr("/models/x/tokenizer.model: not a valid SentencePiece model"));
}

constexpr const char* kConfigWithoutBos = R"({
  "architectures": ["LlamaForCausalLM"], "vocab_size": 100, "hidden_size": 64,
  "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
  "eos_token_id": 2})";

TEST(ApplyGenerationConfig, AppendsNewEosIdsAndFillsAMissingBos) {
  absl::StatusOr<ModelConfig> config = ParseModelConfig(kConfigWithoutBos, "config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_TRUE(ApplyGenerationConfig(R"({"bos_token_id": 5, "eos_token_id": [7, 2]})",
                                    "generation_config.json", &*config)
                  .ok());
  EXPECT_THAT(config->eos_token_ids, ElementsAre(2, 7));
  EXPECT_EQ(config->bos_token_id, 5);
}

TEST(ApplyGenerationConfig, KeepsTheBosOfConfigJson) {
  absl::StatusOr<ModelConfig> config = ParseModelConfig(kConfigWithoutBos, "config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  config->bos_token_id = 1;
  ASSERT_TRUE(ApplyGenerationConfig(R"({"bos_token_id": 5})", "gen.json", &*config).ok());
  EXPECT_EQ(config->bos_token_id, 1);
}

TEST(ApplyGenerationConfig, NonIntegerEosIsInvalidNamingTheFileAndField) {
  absl::StatusOr<ModelConfig> config = ParseModelConfig(kConfigWithoutBos, "config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  const absl::Status status =
      ApplyGenerationConfig(R"({"eos_token_id": "x"})", "dir/generation_config.json", &*config);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("dir/generation_config.json: field 'eos_token_id'"));
}

}  // namespace
}  // namespace zigzag
