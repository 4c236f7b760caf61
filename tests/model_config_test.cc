// core/model/model_config: parsing real-looking Hugging Face config.json texts (Llama 3.1,
// Mistral 7B, Qwen2, Mistral-Nemo's explicit head_dim), generation_config.json merging, and every
// rejected input with the message it must carry.
#include "core/model/model_config.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_support.h"

namespace zigzag {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Llama-3.1-8B's config.json as published.
constexpr const char* kLlama31Config = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "eos_token_id": 128001,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3"
  },
  "rope_theta": 500000.0,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.43.0.dev0",
  "use_cache": true,
  "vocab_size": 128256
})";

// Mistral-7B-v0.1: sliding window 4096.
constexpr const char* kMistralConfig = R"({
  "architectures": ["MistralForCausalLM"],
  "bos_token_id": 1,
  "eos_token_id": 2,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 32768,
  "model_type": "mistral",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05,
  "rope_theta": 10000.0,
  "sliding_window": 4096,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.34.0.dev0",
  "use_cache": true,
  "vocab_size": 32000
})";

// Qwen2-0.5B-Instruct: tied embeddings, a sliding_window value that is switched off.
constexpr const char* kQwen2Config = R"({
  "architectures": ["Qwen2ForCausalLM"],
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151645,
  "hidden_act": "silu",
  "hidden_size": 896,
  "initializer_range": 0.02,
  "intermediate_size": 4864,
  "max_position_embeddings": 32768,
  "max_window_layers": 24,
  "model_type": "qwen2",
  "num_attention_heads": 14,
  "num_hidden_layers": 24,
  "num_key_value_heads": 2,
  "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0,
  "sliding_window": 32768,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.40.1",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": 151936
})";

// A minimal valid config with one line substituted by the tests below.
std::string MinimalConfig(const std::string& extra = "",
                          const std::string& arch = "LlamaForCausalLM") {
  return R"({"architectures": [")" + arch +
         R"("], "vocab_size": 100, "hidden_size": 64, "intermediate_size": 128,
             "num_hidden_layers": 2, "num_attention_heads": 4)" +
         (extra.empty() ? "" : ", " + extra) + "}";
}

absl::Status ParseError(const std::string& text) {
  return ParseModelConfig(text, "/models/x/config.json").status();
}

TEST(ModelConfigTest, ParsesLlama31) {
  absl::StatusOr<ModelConfig> config = ParseModelConfig(kLlama31Config, "config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->architecture, "LlamaForCausalLM");
  EXPECT_EQ(config->model_type, "llama");
  EXPECT_EQ(config->vocab_size, 128256);
  EXPECT_EQ(config->hidden_size, 4096);
  EXPECT_EQ(config->intermediate_size, 14336);
  EXPECT_EQ(config->num_layers, 32);
  EXPECT_EQ(config->num_heads, 32);
  EXPECT_EQ(config->num_kv_heads, 8);
  EXPECT_EQ(config->head_dim, 128);
  EXPECT_EQ(config->max_position_embeddings, 131072);
  EXPECT_EQ(config->max_context(), 131072);
  EXPECT_DOUBLE_EQ(config->rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(config->rope_theta, 500000.0);
  ASSERT_TRUE(config->rope_scaling.has_value());
  EXPECT_EQ(config->rope_scaling->type, "llama3");
  EXPECT_DOUBLE_EQ(config->rope_scaling->factor, 8.0);
  EXPECT_DOUBLE_EQ(config->rope_scaling->low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(config->rope_scaling->high_freq_factor, 4.0);
  EXPECT_EQ(config->rope_scaling->original_max_position_embeddings, 8192);
  EXPECT_FALSE(config->qkv_bias);
  EXPECT_FALSE(config->tie_word_embeddings);
  EXPECT_FALSE(config->sliding_window.has_value());
  EXPECT_EQ(config->torch_dtype, "bfloat16");
  EXPECT_EQ(config->bos_token_id, 128000);
  EXPECT_THAT(config->eos_token_ids, ElementsAre(128001));
}

TEST(ModelConfigTest, ParsesMistralWithSlidingWindow) {
  absl::StatusOr<ModelConfig> config = ParseModelConfig(kMistralConfig, "config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->architecture, "MistralForCausalLM");
  EXPECT_EQ(config->num_kv_heads, 8);
  EXPECT_EQ(config->head_dim, 128);
  EXPECT_FALSE(config->qkv_bias);
  EXPECT_FALSE(config->rope_scaling.has_value());
  ASSERT_TRUE(config->sliding_window.has_value());
  EXPECT_EQ(*config->sliding_window, 4096);
  EXPECT_EQ(config->max_position_embeddings, 32768);
  EXPECT_EQ(config->max_context(), 4096);  // capped: no sliding-window masking yet
  EXPECT_EQ(config->bos_token_id, 1);
  EXPECT_THAT(config->eos_token_ids, ElementsAre(2));
}

TEST(ModelConfigTest, MistralWithNullSlidingWindowHasNone) {
  absl::StatusOr<ModelConfig> config =
      ParseModelConfig(MinimalConfig(R"("sliding_window": null, "max_position_embeddings": 32768)",
                                     "MistralForCausalLM"),
                       "config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_FALSE(config->sliding_window.has_value());
  EXPECT_EQ(config->max_context(), 32768);
}

TEST(ModelConfigTest, ParsesQwen2) {
  absl::StatusOr<ModelConfig> config = ParseModelConfig(kQwen2Config, "config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->architecture, "Qwen2ForCausalLM");
  EXPECT_EQ(config->model_type, "qwen2");
  EXPECT_EQ(config->num_heads, 14);
  EXPECT_EQ(config->num_kv_heads, 2);
  EXPECT_EQ(config->head_dim, 64);
  EXPECT_TRUE(config->qkv_bias);  // always, though the config does not say so
  EXPECT_TRUE(config->tie_word_embeddings);
  EXPECT_FALSE(config->sliding_window.has_value());  // use_sliding_window is false
  EXPECT_EQ(config->max_context(), 32768);
  EXPECT_DOUBLE_EQ(config->rope_theta, 1e6);
  EXPECT_DOUBLE_EQ(config->rms_norm_eps, 1e-6);
}

TEST(ModelConfigTest, Qwen2SlidingWindowOnlyWhenEnabled) {
  absl::StatusOr<ModelConfig> config = ParseModelConfig(
      MinimalConfig(R"("sliding_window": 1024, "use_sliding_window": true)", "Qwen2ForCausalLM"),
      "config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_TRUE(config->sliding_window.has_value());
  EXPECT_EQ(*config->sliding_window, 1024);
  EXPECT_EQ(config->max_context(), 1024);
}

TEST(ModelConfigTest, LlamaIgnoresSlidingWindow) {
  absl::StatusOr<ModelConfig> config =
      ParseModelConfig(MinimalConfig(R"("sliding_window": 16)"), "c");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_FALSE(config->sliding_window.has_value());
}

TEST(ModelConfigTest, ExplicitHeadDimLikeMistralNemo) {
  // Mistral-Nemo: hidden 5120, 32 heads, but head_dim 128 (not 160).
  absl::StatusOr<ModelConfig> config = ParseModelConfig(
      R"({"architectures": ["MistralForCausalLM"], "vocab_size": 131072, "hidden_size": 5120,
          "intermediate_size": 14336, "num_hidden_layers": 40, "num_attention_heads": 32,
          "num_key_value_heads": 8, "head_dim": 128, "max_position_embeddings": 1024000,
          "rope_theta": 1000000.0, "sliding_window": null})",
      "config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->head_dim, 128);
  EXPECT_EQ(config->model_type, "mistral");  // derived from the architecture when absent
}

TEST(ModelConfigTest, DefaultsWhenFieldsAbsent) {
  absl::StatusOr<ModelConfig> config = ParseModelConfig(MinimalConfig(R"("head_dim": null)"), "c");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->num_kv_heads, 4);  // = num_attention_heads
  EXPECT_EQ(config->head_dim, 16);
  EXPECT_DOUBLE_EQ(config->rope_theta, 10000.0);
  EXPECT_DOUBLE_EQ(config->rms_norm_eps, 1e-6);
  EXPECT_EQ(config->max_position_embeddings, 2048);
  EXPECT_FALSE(config->tie_word_embeddings);
  EXPECT_FALSE(config->qkv_bias);
  EXPECT_FALSE(config->rope_scaling.has_value());
  EXPECT_FALSE(config->bos_token_id.has_value());
  EXPECT_TRUE(config->eos_token_ids.empty());
}

TEST(ModelConfigTest, LlamaAttentionBiasAndTokenLists) {
  absl::StatusOr<ModelConfig> config = ParseModelConfig(
      MinimalConfig(R"("attention_bias": true, "bos_token_id": null, "eos_token_id": [5, 7, 5],
                       "rope_scaling": null)"),
      "c");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->qkv_bias);
  EXPECT_FALSE(config->bos_token_id.has_value());
  EXPECT_THAT(config->eos_token_ids, ElementsAre(5, 7));
}

TEST(ModelConfigTest, RopeScalingWithOldTypeKeyAndDefault) {
  absl::StatusOr<ModelConfig> config = ParseModelConfig(
      MinimalConfig(R"("rope_scaling": {"type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                       "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})"),
      "c");
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_TRUE(config->rope_scaling.has_value());
  EXPECT_DOUBLE_EQ(config->rope_scaling->factor, 32.0);
  // transformers writes {"rope_type": "default"} for "no scaling".
  config = ParseModelConfig(MinimalConfig(R"("rope_scaling": {"rope_type": "default"})"), "c");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_FALSE(config->rope_scaling.has_value());
}

struct BadConfigCase {
  const char* label;
  std::string text;
  absl::StatusCode code;
  std::vector<std::string> message_parts;
};

class BadConfigTest : public ::testing::TestWithParam<BadConfigCase> {};

TEST_P(BadConfigTest, IsRejectedWithAClearMessage) {
  const BadConfigCase& c = GetParam();
  absl::Status status = ParseError(c.text);
  EXPECT_EQ(status.code(), c.code) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("/models/x/config.json")) << status;
  for (const std::string& part : c.message_parts) {
    EXPECT_THAT(std::string(status.message()), HasSubstr(part)) << status;
  }
}

const absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

INSTANTIATE_TEST_SUITE_P(
    Errors, BadConfigTest,
    ::testing::Values(
        BadConfigCase{"BadJson", "{\"architectures\": [", kInvalid, {"invalid JSON"}},
        BadConfigCase{"NotObject", "[1, 2]", kInvalid, {"JSON object"}},
        BadConfigCase{
            "UnsupportedArch",
            MinimalConfig("", "GPT2LMHeadModel"),
            kInvalid,
            {"unsupported architecture 'GPT2LMHeadModel'", "expected", "LlamaForCausalLM"}},
        BadConfigCase{"NoArchitectures",
                      R"({"vocab_size": 1, "hidden_size": 8, "intermediate_size": 8,
                          "num_hidden_layers": 1, "num_attention_heads": 1})",
                      kInvalid,
                      {"architectures"}},
        BadConfigCase{"EmptyArchitectures",
                      R"({"architectures": [], "vocab_size": 1})",
                      kInvalid,
                      {"architectures"}},
        BadConfigCase{"MissingVocab",
                      R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
                          "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4})",
                      kInvalid,
                      {"'vocab_size'", "missing"}},
        BadConfigCase{
            "MissingLayers",
            R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 10, "hidden_size": 64,
                          "intermediate_size": 128, "num_attention_heads": 4})",
            kInvalid,
            {"'num_hidden_layers'", "missing"}},
        BadConfigCase{
            "StringHidden",
            R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 10, "hidden_size": "64",
                          "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4})",
            kInvalid,
            {"'hidden_size'", "integer"}},
        BadConfigCase{
            "FloatHidden",
            R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 10, "hidden_size": 64.5,
                          "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4})",
            kInvalid,
            {"'hidden_size'", "integer"}},
        BadConfigCase{
            "ZeroIntermediate",
            R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 10, "hidden_size": 64,
                          "intermediate_size": 0, "num_hidden_layers": 2, "num_attention_heads": 4})",
            kInvalid,
            {"'intermediate_size'", "positive"}},
        BadConfigCase{"NegativeKvHeads",
                      MinimalConfig(R"("num_key_value_heads": -2)"),
                      kInvalid,
                      {"'num_key_value_heads'", "positive"}},
        BadConfigCase{"KvHeadsDoNotDivide",
                      MinimalConfig(R"("num_key_value_heads": 3)"),
                      kInvalid,
                      {"num_key_value_heads", "(3) must divide num_attention_heads (4)"}},
        BadConfigCase{
            "HiddenNotDivisible",
            R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 10, "hidden_size": 66,
                          "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4})",
            kInvalid,
            {"hidden_size", "not divisible by num_attention_heads"}},
        BadConfigCase{
            "OddHeadDim", MinimalConfig(R"("head_dim": 15)"), kInvalid, {"head_dim", "even"}},
        BadConfigCase{
            "ZeroHeadDim", MinimalConfig(R"("head_dim": 0)"), kInvalid, {"head_dim", "positive"}},
        BadConfigCase{"NegativeTheta",
                      MinimalConfig(R"("rope_theta": -1)"),
                      kInvalid,
                      {"'rope_theta'", "positive"}},
        BadConfigCase{"StringEps",
                      MinimalConfig(R"("rms_norm_eps": "1e-5")"),
                      kInvalid,
                      {"'rms_norm_eps'", "number"}},
        BadConfigCase{"ZeroMaxPos",
                      MinimalConfig(R"("max_position_embeddings": 0)"),
                      kInvalid,
                      {"'max_position_embeddings'", "positive"}},
        BadConfigCase{"TieNotBool",
                      MinimalConfig(R"("tie_word_embeddings": "yes")"),
                      kInvalid,
                      {"'tie_word_embeddings'", "true or false"}},
        BadConfigCase{"LinearRope",
                      MinimalConfig(R"("rope_scaling": {"type": "linear", "factor": 2.0})"),
                      kInvalid,
                      {"unsupported rope_scaling type 'linear'"}},
        BadConfigCase{"DynamicRope",
                      MinimalConfig(R"("rope_scaling": {"rope_type": "dynamic", "factor": 2.0})"),
                      kInvalid,
                      {"unsupported rope_scaling type 'dynamic'"}},
        BadConfigCase{"YarnRope",
                      MinimalConfig(R"("rope_scaling": {"rope_type": "yarn", "factor": 4.0,
                                       "original_max_position_embeddings": 32768})"),
                      kInvalid,
                      {"unsupported rope_scaling type 'yarn'"}},
        BadConfigCase{"RopeScalingNotObject",
                      MinimalConfig(R"("rope_scaling": 8)"),
                      kInvalid,
                      {"'rope_scaling'", "object"}},
        BadConfigCase{"RopeScalingWithoutType",
                      MinimalConfig(R"("rope_scaling": {"factor": 8.0})"),
                      kInvalid,
                      {"'rope_scaling'", "rope_type"}},
        BadConfigCase{
            "Llama3MissingFactor",
            MinimalConfig(R"("rope_scaling": {"rope_type": "llama3", "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0,
                                       "original_max_position_embeddings": 8192})"),
            kInvalid,
            {"'factor'", "llama3", "missing"}},
        BadConfigCase{"Llama3BandsReversed",
                      MinimalConfig(R"("rope_scaling": {"rope_type": "llama3", "factor": 8.0,
                                       "low_freq_factor": 4.0, "high_freq_factor": 1.0,
                                       "original_max_position_embeddings": 8192})"),
                      kInvalid,
                      {"'high_freq_factor'", "greater than low_freq_factor"}},
        BadConfigCase{"MistralZeroWindow",
                      MinimalConfig(R"("sliding_window": 0)", "MistralForCausalLM"),
                      kInvalid,
                      {"'sliding_window'", "positive"}},
        BadConfigCase{"EosString",
                      MinimalConfig(R"("eos_token_id": "</s>")"),
                      kInvalid,
                      {"'eos_token_id'", "token id"}},
        BadConfigCase{"EosListWithNegative",
                      MinimalConfig(R"("eos_token_id": [2, -1])"),
                      kInvalid,
                      {"'eos_token_id'", "token id"}},
        BadConfigCase{"BosFloat",
                      MinimalConfig(R"("bos_token_id": 1.5)"),
                      kInvalid,
                      {"'bos_token_id'", "token id"}}),
    [](const ::testing::TestParamInfo<BadConfigCase>& info) {
      return std::string(info.param.label);
    });

TEST(LoadModelConfigTest, MissingConfigJson) {
  const auto dir = testing::MakeTempDir("config-missing");
  absl::StatusOr<ModelConfig> config = LoadModelConfig(dir);
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(config.status().message()),
              HasSubstr("config.json not found in " + dir.string()));
}

TEST(LoadModelConfigTest, MergesGenerationConfig) {
  const auto dir = testing::MakeTempDir("config-merge");
  testing::WriteFile(dir / "config.json", kLlama31Config);
  testing::WriteFile(dir / "generation_config.json",
                     R"({"bos_token_id": 128000, "do_sample": true,
                         "eos_token_id": [128001, 128008, 128009], "temperature": 0.6, "top_p": 0.9})");
  absl::StatusOr<ModelConfig> config = LoadModelConfig(dir);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_THAT(config->eos_token_ids, ElementsAre(128001, 128008, 128009));
  EXPECT_EQ(config->bos_token_id, 128000);
}

TEST(LoadModelConfigTest, GenerationConfigSuppliesMissingBosButDoesNotOverride) {
  const auto dir = testing::MakeTempDir("config-bos");
  testing::WriteFile(dir / "config.json",
                     MinimalConfig(R"("bos_token_id": null, "eos_token_id": 3)"));
  testing::WriteFile(dir / "generation_config.json", R"({"bos_token_id": 9, "eos_token_id": 4})");
  absl::StatusOr<ModelConfig> config = LoadModelConfig(dir);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->bos_token_id, 9);
  EXPECT_THAT(config->eos_token_ids, ElementsAre(3, 4));

  testing::WriteFile(dir / "config.json", MinimalConfig(R"("bos_token_id": 1)"));
  config = LoadModelConfig(dir);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->bos_token_id, 1);
  EXPECT_THAT(config->eos_token_ids, ElementsAre(4));
}

TEST(LoadModelConfigTest, WorksWithoutGenerationConfig) {
  const auto dir = testing::MakeTempDir("config-nogen");
  testing::WriteFile(dir / "config.json", kMistralConfig);
  absl::StatusOr<ModelConfig> config = LoadModelConfig(dir);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_THAT(config->eos_token_ids, ElementsAre(2));
}

TEST(LoadModelConfigTest, ErrorsNameTheFile) {
  const auto dir = testing::MakeTempDir("config-errors");
  testing::WriteFile(dir / "config.json", "{not json");
  absl::Status status = LoadModelConfig(dir).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr((dir / "config.json").string() + ": invalid JSON"));

  testing::WriteFile(dir / "config.json", kMistralConfig);
  testing::WriteFile(dir / "generation_config.json", "{\"eos_token_id\": ");
  status = LoadModelConfig(dir).status();
  EXPECT_THAT(std::string(status.message()),
              HasSubstr((dir / "generation_config.json").string() + ": invalid JSON"));

  testing::WriteFile(dir / "generation_config.json", R"({"eos_token_id": {"a": 1}})");
  status = LoadModelConfig(dir).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("generation_config.json: field 'eos_token_id'"));
}

}  // namespace
}  // namespace zigzag
