// Malformed model files (issue 11, item 8): every wrong type, hostile number and over-deep nesting
// in config.json / generation_config.json, and every malformed safetensors header (length past the
// file, overlapping or out-of-range data_offsets, a shape whose size overflows, an unknown dtype,
// 20,000 nested arrays) or shard index, gives InvalidArgument naming the file and the key.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/model/checkpoint.h"
#include "core/model/model_config.h"
#include "core/model/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/test_support.h"

namespace zigzag {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::HasSubstr;

constexpr const char* kSource = "/models/x/config.json";

// Every field ParseModelConfig reads for a Llama model, and for a Qwen2 one with its window.
constexpr const char* kLlamaConfig = R"({
  "architectures": ["LlamaForCausalLM"], "model_type": "llama", "attention_bias": false,
  "bos_token_id": 1, "eos_token_id": [2, 3], "hidden_size": 64, "intermediate_size": 128,
  "max_position_embeddings": 256, "num_attention_heads": 4, "num_hidden_layers": 2,
  "num_key_value_heads": 2, "head_dim": 16, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 128, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "vocab_size": 100})";
constexpr const char* kQwenConfig = R"({
  "architectures": ["Qwen2ForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
  "num_attention_heads": 4, "num_hidden_layers": 2, "vocab_size": 100,
  "max_position_embeddings": 256, "use_sliding_window": true, "sliding_window": 64})";

json OtherType(const json& value) {
  if (value.is_string()) return 7;
  if (value.is_boolean()) return "yes";
  if (value.is_number()) return "7";
  if (value.is_object()) return json::array({1});
  return json{{"x", 1}};
}

// Every value of `doc` but the root, with its pointer.
void ForEachValue(const json& doc, const json::json_pointer& at,
                  const std::function<void(const json::json_pointer&)>& visit) {
  if (!at.empty()) visit(at);
  const json& value = doc.at(at);
  if (value.is_object()) {
    for (const auto& [key, child] : value.items()) ForEachValue(doc, at / key, visit);
  } else if (value.is_array()) {
    for (size_t i = 0; i < value.size(); ++i) ForEachValue(doc, at / i, visit);
  }
}

// The last key of a pointer that is not an array index ("/eos_token_id/0" -> "eos_token_id").
std::string LastKey(json::json_pointer pointer) {
  while (!pointer.empty()) {
    const std::string token = pointer.back();
    if (token.find_first_not_of("0123456789") != std::string::npos) return token;
    pointer.pop_back();
  }
  return "";
}

std::string Nested(int depth, const std::string& open, const std::string& close) {
  std::string text;
  for (int i = 0; i < depth; ++i) text += open;
  text += "1";
  for (int i = 0; i < depth; ++i) text += close;
  return text;
}

absl::Status ConfigError(const std::string& text) {
  absl::StatusOr<ModelConfig> config = ParseModelConfig(text, kSource);
  EXPECT_FALSE(config.ok()) << "parsed a malformed config.json";
  if (config.ok()) return absl::OkStatus();
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument) << config.status();
  EXPECT_THAT(std::string(config.status().message()), HasSubstr(kSource));
  return config.status();
}

TEST(ConfigJsonHardeningTest, EveryFieldOfTheWrongTypeIsInvalidArgumentNamingIt) {
  int checked = 0;
  for (const char* text : {kLlamaConfig, kQwenConfig}) {
    const json base = json::parse(text);
    ASSERT_TRUE(ParseModelConfig(text, kSource).ok());
    ForEachValue(base, json::json_pointer(), [&](const json::json_pointer& pointer) {
      json doc = base;
      doc.at(pointer) = OtherType(base.at(pointer));
      const absl::Status status = ConfigError(doc.dump());
      EXPECT_THAT(std::string(status.message()),
                  HasSubstr(absl::StrCat("'", LastKey(pointer), "'")))
          << pointer.to_string();
      ++checked;
    });
  }
  EXPECT_GT(checked, 30);
}

TEST(ConfigJsonHardeningTest, HostileNumbersAreBoundedNotConverted) {
  json doc = json::parse(kLlamaConfig);
  doc["hidden_size"] = int64_t{1} << 40;
  EXPECT_THAT(std::string(ConfigError(doc.dump()).message()),
              HasSubstr("field 'hidden_size' must be at most 1048576, got 1099511627776"));
  doc = json::parse(kLlamaConfig);
  doc["vocab_size"] = 999999999;
  EXPECT_THAT(std::string(ConfigError(doc.dump()).message()),
              HasSubstr("field 'vocab_size' must be at most 4194304"));
  doc = json::parse(kLlamaConfig);
  doc["num_hidden_layers"] = 1e10;  // a number, not an integer: never cast
  EXPECT_THAT(
      std::string(ConfigError(doc.dump()).message()),
      HasSubstr("field 'num_hidden_layers' must be an integer, got a number 10000000000.0"));
  doc = json::parse(kLlamaConfig);
  doc["rope_theta"] = 1e300;
  EXPECT_THAT(std::string(ConfigError(doc.dump()).message()),
              HasSubstr("field 'rope_theta' must be at most"));
  doc = json::parse(kLlamaConfig);
  doc["eos_token_id"] = json::array({2, 2147483647});
  EXPECT_THAT(std::string(ConfigError(doc.dump()).message()),
              HasSubstr("field 'eos_token_id' must be a token id in [0, 4194303], got an integer "
                        "2147483647"));
}

TEST(ConfigJsonHardeningTest, TwentyThousandNestedObjectsAreRejectedByDepth) {
  std::string text = kLlamaConfig;
  text.insert(1, "\"rope_scaling_extra\": " + Nested(20000, "{\"a\": ", "}") + ", ");
  const absl::Status status = ConfigError(text);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr(std::string(kSource) + ": field 'rope_scaling_extra.a.a.a"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("is nested deeper than 64 levels"));
}

TEST(ConfigJsonHardeningTest, GenerationConfigErrorsNameItsFileAndKey) {
  const fs::path dir = testing::MakeTempDir("generation_hardening");
  testing::WriteFile(dir / "config.json", kLlamaConfig);
  const auto load_error = [&](const std::string& generation) {
    testing::WriteFile(dir / "generation_config.json", generation);
    absl::StatusOr<ModelConfig> config = LoadModelConfig(dir);
    EXPECT_FALSE(config.ok());
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument) << config.status();
    return std::string(config.status().message());
  };
  const std::string source = (dir / "generation_config.json").string();
  EXPECT_THAT(load_error(R"({"eos_token_id": "x"})"),
              HasSubstr(source + ": field 'eos_token_id' must be a token id"));
  EXPECT_THAT(load_error(R"({"bos_token_id": 1e10})"),
              HasSubstr(source + ": field 'bos_token_id' must be a token id"));
  EXPECT_THAT(load_error(Nested(20000, "[", "]")), HasSubstr(source + ": field '[0][0][0]"));
}

TEST(ConfigJsonHardeningTest, ShardIndexNestingIsRejectedByDepth) {
  const fs::path dir = testing::MakeTempDir("index_hardening");
  testing::WriteFile(dir / "config.json", kLlamaConfig);
  testing::WriteFile(dir / "model.safetensors.index.json",
                     "{\"weight_map\": " + Nested(20000, "{\"a\": ", "}") + "}");
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::Open(dir);
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_EQ(checkpoint.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(
      std::string(checkpoint.status().message()),
      HasSubstr((dir / "model.safetensors.index.json").string() + ": field 'weight_map.a.a.a"));
}

// safetensors headers
// ------------------------------------------------------------------------------

// 8-byte little-endian header length `n`, then `header` and `data`: built by hand.
std::string SafetensorsBytes(const std::string& header, const std::string& data,
                             uint64_t n = UINT64_MAX) {
  if (n == UINT64_MAX) n = header.size();
  std::string bytes;
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return bytes + header + data;
}

class SafetensorsHardeningTest : public ::testing::Test {
 protected:
  // Opens `bytes` as a file: the error, which must be InvalidArgument naming the file.
  std::string OpenError(const std::string& bytes, uint64_t resize_to = 0) {
    testing::WriteFile(path_, bytes);
    if (resize_to > 0) fs::resize_file(path_, resize_to);  // sparse: no disk written
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path_);
    EXPECT_FALSE(file.ok()) << "opened a malformed file";
    if (file.ok()) return "";
    EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument) << file.status();
    EXPECT_THAT(std::string(file.status().message()), HasSubstr(path_.string()));
    return std::string(file.status().message());
  }

  fs::path path_ = testing::MakeTempDir("safetensors_hardening") / "w.safetensors";
};

TEST_F(SafetensorsHardeningTest, HeaderLengthPastTheFileOrTheLimit) {
  EXPECT_THAT(OpenError(SafetensorsBytes("{}", "", 1000)),
              HasSubstr("header length 1000 exceeds file size 10"));
  // A header of 100,000,001 bytes in a (sparse) file that long: refused before it is parsed.
  EXPECT_THAT(OpenError(SafetensorsBytes("{}", "", 100000001), 100000001 + 8),
              HasSubstr("header length 100000001 exceeds the limit of 100000000 bytes"));
}

TEST_F(SafetensorsHardeningTest, OverlappingAndOutOfRangeDataOffsets) {
  const std::string two = R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                              "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})";
  EXPECT_THAT(OpenError(SafetensorsBytes(two, std::string(12, '\0'))),
              HasSubstr("tensor 'b' has data_offsets [4, 12] that overlap those of tensor 'a' "
                        "[0, 8]"));
  const std::string past = R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})";
  EXPECT_THAT(OpenError(SafetensorsBytes(past, std::string(8, '\0'))),
              HasSubstr("tensor 'w' data ends at 16 beyond the file's data region of 8 bytes"));
  const std::string huge =
      R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [18446744073709551612, 18446744073709551615]}})";
  EXPECT_THAT(OpenError(SafetensorsBytes(huge, std::string(8, '\0'))),
              HasSubstr("tensor 'w' data ends at 18446744073709551615 beyond the file's data"));
  // Empty tensors own no bytes: two of them at one offset do not overlap.
  const std::string empty = R"({"a": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]},
                                "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})";
  testing::WriteFile(path_, SafetensorsBytes(empty, std::string(4, '\0')));
  EXPECT_TRUE(SafetensorsFile::Open(path_).ok());
}

TEST_F(SafetensorsHardeningTest, ShapesThatOverflowOrNestOrHaveTooManyDimensions) {
  const std::string overflow =
      R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})";
  EXPECT_THAT(OpenError(SafetensorsBytes(overflow, "")),
              HasSubstr("tensor 'w' has a shape too large: the element count overflows at "
                        "'shape[1]'"));
  const std::string deep = R"({"w": {"dtype": "F32", "shape": )" + Nested(20000, "[", "]") +
                           R"(, "data_offsets": [0, 0]}})";
  const std::string message = OpenError(SafetensorsBytes(deep, ""));
  EXPECT_THAT(message, HasSubstr("header field 'w.shape[0][0][0]"));
  EXPECT_THAT(message, HasSubstr("is nested deeper than 64 levels"));
  std::string dims = "1";
  for (int i = 1; i < 17; ++i) dims += ", 1";
  EXPECT_THAT(OpenError(SafetensorsBytes(
                  R"({"w": {"dtype": "F32", "shape": [)" + dims + R"(], "data_offsets": [0, 4]}})",
                  std::string(4, '\0'))),
              HasSubstr("tensor 'w' has a shape of 17 dimensions, more than the limit of 16"));
}

TEST_F(SafetensorsHardeningTest, UnknownDtypeAndWrongTypesNameTheTensorAndKey) {
  EXPECT_THAT(OpenError(SafetensorsBytes(
                  R"({"w": {"dtype": "Q4_K", "shape": [1], "data_offsets": [0, 4]}})", "abcd")),
              HasSubstr("tensor 'w' has unknown dtype 'Q4_K' (expected F32, BF16 or F16)"));
  EXPECT_THAT(OpenError(SafetensorsBytes(
                  R"({"w": {"dtype": 5, "shape": [1], "data_offsets": [0, 4]}})", "abcd")),
              HasSubstr("tensor 'w' has no string 'dtype'"));
  EXPECT_THAT(OpenError(SafetensorsBytes(
                  R"({"w": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}})", "abcd")),
              HasSubstr("'shape[0]' is a number 1.5"));
  EXPECT_THAT(OpenError(SafetensorsBytes(
                  R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": "0-4"}})", "abcd")),
              HasSubstr("tensor 'w' needs 'data_offsets' [begin, end] of non-negative integers, "
                        "got a string \"0-4\""));
}

}  // namespace
}  // namespace zigzag
