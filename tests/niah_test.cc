// Needle-in-a-haystack prompts (tools/niah) and the embedded model (models/zigzag-tiny) through
// the whole text path: the prompt builder against hand-checkable properties (token budget, needle
// position, the trainer's format), answer scoring on hand-written cases, and the embedded model
// retrieving passkeys it has never seen from held-out text with a full cache and with ZigZag at
// 40%, via one shared prefill per prompt.
#include <cstdlib>
#include <filesystem>
#include <string>

#include "core/engine/generation.h"
#include "core/model/llama_model.h"
#include "core/tokenizer/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/backend_registry.h"
#include "tests/test_support.h"
#include "tools/niah/niah_prompt.h"

namespace zigzag::niah {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// Compiled-in paths, each overridable from the environment: bench/gpu/run.sh runs this binary from
// a bundle on a machine where the build tree does not exist and git's docs may not be installed.
std::string PathFromEnv(const char* variable, const std::string& built_in) {
  const char* env = std::getenv(variable);
  return env != nullptr && *env != '\0' ? std::string(env) : built_in;
}
std::string ModelDir() {
  return PathFromEnv("ZIGZAG_SOURCE_DIR", ZIGZAG_SOURCE_DIR) + "/models/zigzag-tiny";
}
// Held-out haystack text (git's release notes, as tools/niah uses them).
std::string HaystackDir() {
  return PathFromEnv("ZIGZAG_NIAH_HAYSTACK", "/usr/share/doc/git/RelNotes");
}

std::vector<std::string> Words(const std::string& text) {
  const std::filesystem::path dir = testing::MakeTempDir("niah");
  testing::WriteFile(dir / "hay.txt", text);
  auto words = LoadHaystackWords({(dir / "hay.txt").string()}, 1, 0);
  EXPECT_TRUE(words.ok()) << words.status();
  return words.value_or(std::vector<std::string>{});
}

TEST(NiahPromptTest, HaystackWordsAreAsciiAndSplitOnWhitespace) {
  EXPECT_THAT(Words("  Hello,\tworld\n\ncafé  42 "),
              ::testing::ElementsAre("Hello,", "world", "caf", "42"));
  EXPECT_EQ(LoadHaystackWords({"/no/such/file"}, 1, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(LoadHaystackWords({"/x"}, 8, 8).status().message()),
              HasSubstr("0 <= offset < stride"));
}

TEST(NiahPromptTest, AnswersAreScoredByTheirFirstNumber) {
  EXPECT_TRUE(IsCorrectAnswer(" 58213. Remember", "58213"));
  EXPECT_TRUE(IsCorrectAnswer("58213", "58213"));
  EXPECT_FALSE(IsCorrectAnswer(" 5821", "58213"));
  EXPECT_FALSE(IsCorrectAnswer(" 582134", "58213"));
  EXPECT_FALSE(IsCorrectAnswer(" 12345 58213", "58213"));
  EXPECT_FALSE(IsCorrectAnswer(" the passkey", "58213"));
  EXPECT_FALSE(IsCorrectAnswer("", "58213"));
}

class EmbeddedModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(ModelDir() + "/config.json")) << ModelDir();
    auto tokenizer = LoadTokenizer(ModelDir());
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = std::move(*tokenizer);
    auto words = LoadHaystackWords({HaystackDir()}, 8, 7);
    ASSERT_TRUE(words.ok()) << words.status();
    words_ = std::move(*words);
  }
  std::unique_ptr<Tokenizer> tokenizer_;
  std::vector<std::string> words_;
};

TEST_F(EmbeddedModelTest, PromptsFillTheirBudgetInTheTrainersFormat) {
  const NiahFormat format;
  for (double depth : {0.0, 0.3, 1.0}) {
    auto prompt = BuildNiahPrompt(*tokenizer_, words_, format, "48213", 100, depth, 700);
    ASSERT_TRUE(prompt.ok()) << prompt.status();
    EXPECT_LE(prompt->ids.size(), 700u);
    EXPECT_GE(prompt->ids.size(), 690u);  // one more word would not fit
    EXPECT_EQ(prompt->ids.front(), *tokenizer_->special_tokens().bos_id);
    EXPECT_EQ(prompt->words_before_needle, std::llround(depth * prompt->haystack_words));
    const std::string needle = "The secret passkey is 48213. Remember it.";
    const size_t at = prompt->text.find(needle);
    ASSERT_NE(at, std::string::npos);
    if (depth == 0.0) {
      EXPECT_THAT(prompt->text, StartsWith(needle));
    }
    if (depth == 1.0) {
      EXPECT_EQ(prompt->text.substr(at),
                needle + " What is the secret passkey? The secret passkey is");
    }
    // The ids are the tokenization of the text as a whole.
    EXPECT_EQ(prompt->ids, *tokenizer_->Encode(prompt->text, true));
  }
  EXPECT_EQ(BuildNiahPrompt(*tokenizer_, words_, format, "1", 0, 1.5, 100).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto too_small = BuildNiahPrompt(*tokenizer_, words_, format, "48213", 0, 0.5, 5);
  EXPECT_THAT(std::string(too_small.status().message()), HasSubstr("does not even hold"));
}

TEST_F(EmbeddedModelTest, RetrievesUnseenPasskeysWithFullAndZigZagCaches) {
  auto backend = CreateBackend("cpu");
  ASSERT_TRUE(backend.ok());
  auto model = LlamaModel::LoadFromDir(ModelDir(), backend->get());
  ASSERT_TRUE(model.ok()) << model.status();
  ASSERT_GE((*model)->config().max_context(), 4096);
  auto cache = KvCache::CreateWithBytes(backend->get(), (*model)->kv_layout(16), 64 << 20);
  ASSERT_TRUE(cache.ok());
  int correct_full = 0;
  int correct_zigzag = 0;
  int total = 0;
  for (const auto& [passkey, depth] : std::vector<std::pair<std::string, double>>{
           {"30417", 0.1}, {"77802", 0.5}, {"52968", 0.9}}) {
    auto prompt = BuildNiahPrompt(*tokenizer_, words_, NiahFormat(), passkey,
                                  std::stoll(passkey) % 50000, depth, 1024);
    ASSERT_TRUE(prompt.ok()) << prompt.status();
    std::vector<GenerationRequest> requests(2);
    for (GenerationRequest& request : requests) {
      request.prompt = prompt->ids;
      request.sampling.temperature = 0.0f;
      request.sampling.max_tokens = 8;
    }
    requests[1].compression.policy = KvPolicy::kZigZag;
    requests[1].compression.ratio = 0.4;
    auto results = GenerateFromSharedPrefill(**model, **cache, requests);
    ASSERT_TRUE(results.ok()) << results.status();
    const std::string full = *tokenizer_->Decode((*results)[0].tokens, true);
    const std::string zigzag = *tokenizer_->Decode((*results)[1].tokens, true);
    EXPECT_TRUE(IsCorrectAnswer(full, passkey)) << passkey << " full: '" << full << "'";
    EXPECT_TRUE(IsCorrectAnswer(zigzag, passkey)) << passkey << " zigzag: '" << zigzag << "'";
    correct_full += IsCorrectAnswer(full, passkey);
    correct_zigzag += IsCorrectAnswer(zigzag, passkey);
    ++total;
    EXPECT_TRUE((*results)[1].kv_stats.compressed);
    EXPECT_LT((*results)[1].kv_stats.retained_kv_bytes, (*results)[0].kv_stats.retained_kv_bytes);
  }
  // Greedy decoding of fixed weights is deterministic: the model card reports 100% at 1K tokens.
  EXPECT_EQ(correct_full, total);
  EXPECT_EQ(correct_zigzag, total);
  EXPECT_EQ((*cache)->pool().num_used(), 0);
}

}  // namespace
}  // namespace zigzag::niah
