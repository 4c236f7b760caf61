// core/model/checkpoint and checkpoint_writer: random checkpoints written in every layout
// (llama/mistral/qwen2, f32/bf16/f16, sharded or not, tied or not) and read back, checked against
// the test's own reading of the raw files; and every error of opening a model folder.
#include "core/model/checkpoint.h"

#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "core/model/checkpoint_writer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/test_support.h"

namespace zigzag {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

struct ExpectedTensor {
  Shape shape;
  char kind;  // 'm' matrix, 'n' norm, 'b' bias
};

// Names and shapes the Hugging Face modeling code expects, written out independently of the writer.
std::map<std::string, ExpectedTensor> ExpectedTensors(const RandomCheckpointSpec& spec) {
  const int64_t d = spec.hidden_size, f = spec.intermediate_size, v = spec.vocab_size;
  const int64_t hd = spec.head_dim.value_or(d / spec.num_heads);
  const int64_t q = spec.num_heads * hd, kv = spec.num_kv_heads * hd;
  const bool bias = spec.qkv_bias || spec.architecture == "Qwen2ForCausalLM";
  std::map<std::string, ExpectedTensor> out;
  out["model.embed_tokens.weight"] = {{v, d}, 'm'};
  for (int64_t i = 0; i < spec.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    out[p + "input_layernorm.weight"] = {{d}, 'n'};
    out[p + "post_attention_layernorm.weight"] = {{d}, 'n'};
    out[p + "self_attn.q_proj.weight"] = {{q, d}, 'm'};
    out[p + "self_attn.k_proj.weight"] = {{kv, d}, 'm'};
    out[p + "self_attn.v_proj.weight"] = {{kv, d}, 'm'};
    out[p + "self_attn.o_proj.weight"] = {{d, q}, 'm'};
    if (bias) {
      out[p + "self_attn.q_proj.bias"] = {{q}, 'b'};
      out[p + "self_attn.k_proj.bias"] = {{kv}, 'b'};
      out[p + "self_attn.v_proj.bias"] = {{kv}, 'b'};
    }
    out[p + "mlp.gate_proj.weight"] = {{f, d}, 'm'};
    out[p + "mlp.up_proj.weight"] = {{f, d}, 'm'};
    out[p + "mlp.down_proj.weight"] = {{d, f}, 'm'};
  }
  out["model.norm.weight"] = {{d}, 'n'};
  if (!spec.tie_word_embeddings) out["lm_head.weight"] = {{v, d}, 'm'};
  return out;
}

// The test's own reading of a safetensors file: header JSON and data region.
struct RawFile {
  uint64_t header_size = 0;
  json header;
  std::string data;
};

RawFile ReadRaw(const std::filesystem::path& path) {
  const std::string bytes = testing::ReadFile(path);
  RawFile raw;
  EXPECT_GE(bytes.size(), 8u);
  for (int i = 0; i < 8; ++i)
    raw.header_size |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[i])) << (8 * i);
  raw.header = json::parse(bytes.substr(8, raw.header_size));
  raw.data = bytes.substr(8 + raw.header_size);
  return raw;
}

float DecodeElement(const char* p, DType dtype) {
  if (dtype == DType::kF32) {
    float v;
    std::memcpy(&v, p, 4);
    return v;
  }
  uint16_t bits;
  std::memcpy(&bits, p, 2);
  return dtype == DType::kBF16 ? BF16ToFloat(bits) : HalfToFloat(bits);
}

const char* HeaderDType(DType dtype) {
  return dtype == DType::kF32 ? "F32" : dtype == DType::kBF16 ? "BF16" : "F16";
}

using RoundTripParam = std::tuple<std::string, DType, int, bool>;  // arch, dtype, shards, tied

class RoundTripTest : public ::testing::TestWithParam<RoundTripParam> {};

TEST_P(RoundTripTest, WritesHuggingFaceLayoutAndReadsItBack) {
  const auto& [arch, dtype, shards, tied] = GetParam();
  RandomCheckpointSpec spec;
  spec.architecture = arch;
  spec.vocab_size = 50;
  spec.hidden_size = 32;
  spec.intermediate_size = 48;
  spec.num_layers = 2;
  spec.num_heads = 4;
  spec.num_kv_heads = 2;
  spec.dtype = dtype;
  spec.num_shards = shards;
  spec.tie_word_embeddings = tied;
  spec.seed = 1234;
  if (arch == "LlamaForCausalLM") {
    spec.head_dim = 16;  // != hidden / heads, as some real configs do
    spec.rope_scaling = RopeScaling{"llama3", 8.0, 1.0, 4.0, 8192};
    spec.qkv_bias = tied;  // exercise attention_bias too
  }
  const auto dir = testing::MakeTempDir("roundtrip");
  ASSERT_TRUE(WriteRandomCheckpoint(dir, spec).ok());

  auto checkpoint = Checkpoint::Open(dir);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  const ModelConfig& config = (*checkpoint)->config();
  EXPECT_EQ(config.architecture, arch);
  EXPECT_EQ(config.vocab_size, 50);
  EXPECT_EQ(config.hidden_size, 32);
  EXPECT_EQ(config.intermediate_size, 48);
  EXPECT_EQ(config.num_layers, 2);
  EXPECT_EQ(config.num_heads, 4);
  EXPECT_EQ(config.num_kv_heads, 2);
  EXPECT_EQ(config.head_dim, spec.head_dim.value_or(8));
  EXPECT_EQ(config.tie_word_embeddings, tied);
  EXPECT_EQ(config.qkv_bias, spec.qkv_bias || arch == "Qwen2ForCausalLM");
  EXPECT_EQ(config.rope_scaling.has_value(), spec.rope_scaling.has_value());
  EXPECT_FALSE(config.sliding_window.has_value());
  EXPECT_EQ(config.torch_dtype, dtype == DType::kF32    ? "float32"
                                : dtype == DType::kBF16 ? "bfloat16"
                                                        : "float16");
  EXPECT_EQ(config.bos_token_id, 1);
  EXPECT_THAT(config.eos_token_ids, ::testing::ElementsAre(2));

  // Which file holds each tensor, found by the test itself.
  std::map<std::string, std::string> file_of;
  if (shards == 1) {
    EXPECT_FALSE(std::filesystem::exists(dir / "model.safetensors.index.json"));
    const RawFile raw = ReadRaw(dir / "model.safetensors");
    for (const auto& [name, entry] : raw.header.items()) {
      if (name != "__metadata__") file_of[name] = "model.safetensors";
    }
  } else {
    EXPECT_FALSE(std::filesystem::exists(dir / "model.safetensors"));
    const json index = json::parse(testing::ReadFile(dir / "model.safetensors.index.json"));
    uint64_t total = 0;
    for (const auto& [name, shard] : index["weight_map"].items())
      file_of[name] = shard.get<std::string>();
    for (int s = 1; s <= shards; ++s) {
      char shard_name[64];
      std::snprintf(shard_name, sizeof(shard_name), "model-%05d-of-%05d.safetensors", s, shards);
      ASSERT_TRUE(std::filesystem::exists(dir / shard_name)) << shard_name;
      total += ReadRaw(dir / shard_name).data.size();
    }
    EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), total);
  }

  const auto expected = ExpectedTensors(spec);
  ASSERT_EQ(file_of.size(), expected.size());
  std::map<std::string, RawFile> raw_files;
  for (const auto& [name, want] : expected) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(file_of.count(name));
    ASSERT_TRUE((*checkpoint)->Contains(name));
    auto view = (*checkpoint)->Get(name, want.shape);
    ASSERT_TRUE(view.ok()) << view.status();
    EXPECT_EQ(view->dtype, dtype);
    EXPECT_EQ(view->shape, want.shape);
    EXPECT_EQ(view->size_bytes, static_cast<size_t>(ShapeNumel(want.shape)) * DTypeSize(dtype));
    EXPECT_EQ(view->file, (dir / file_of[name]).string());

    // Same bytes as the test's own reading of the file.
    if (!raw_files.count(file_of[name])) raw_files[file_of[name]] = ReadRaw(dir / file_of[name]);
    const RawFile& raw = raw_files[file_of[name]];
    const json& entry = raw.header[name];
    EXPECT_EQ(entry["dtype"], HeaderDType(dtype));
    const uint64_t begin = entry["data_offsets"][0], end = entry["data_offsets"][1];
    ASSERT_EQ(end - begin, view->size_bytes);
    EXPECT_EQ(std::memcmp(raw.data.data() + begin, view->data, view->size_bytes), 0);

    // Values in the ranges the writer promises.
    const double bound = want.kind == 'n'   ? 0.1
                         : want.kind == 'b' ? 0.05
                                            : 1.0 / std::sqrt(double(want.shape.back()));
    const double center = want.kind == 'n' ? 1.0 : 0.0;
    double sum_abs = 0;
    for (int64_t i = 0; i < ShapeNumel(want.shape); ++i) {
      const double value =
          DecodeElement(reinterpret_cast<const char*>(view->data) + i * DTypeSize(dtype), dtype);
      ASSERT_LE(std::fabs(value - center), bound * 1.01 + 1e-3) << "element " << i;
      sum_abs += std::fabs(value - center);
    }
    EXPECT_GT(sum_abs, 0.0);  // not all zeros / ones
  }
  EXPECT_EQ((*checkpoint)->Contains("lm_head.weight"), !tied);
  // What --cpu-weight-dtype auto keeps: the dtype the writer was asked for.
  ASSERT_TRUE((*checkpoint)->WeightDtype().ok());
  EXPECT_EQ(*(*checkpoint)->WeightDtype(), dtype);

  // Layout details other readers rely on: header padded to 8 bytes, tensors back to back.
  for (const auto& [file, raw] : raw_files) {
    SCOPED_TRACE(file);
    EXPECT_EQ(raw.header_size % 8, 0u);
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    for (const auto& [name, entry] : raw.header.items()) {
      if (name != "__metadata__")
        ranges.emplace_back(entry["data_offsets"][0], entry["data_offsets"][1]);
    }
    std::sort(ranges.begin(), ranges.end());
    uint64_t cursor = 0;
    for (const auto& [begin, end] : ranges) {
      EXPECT_EQ(begin, cursor);
      cursor = end;
    }
    EXPECT_EQ(cursor, raw.data.size());
  }
}

std::string LayoutName(const ::testing::TestParamInfo<RoundTripParam>& info) {
  const auto& [arch, dtype, shards, tied] = info.param;
  return arch.substr(0, arch.find("For")) + "_" + DTypeName(dtype) + "_" + std::to_string(shards) +
         "shards" + (tied ? "_tied" : "_untied");
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, RoundTripTest,
    ::testing::Combine(::testing::Values("LlamaForCausalLM", "MistralForCausalLM",
                                         "Qwen2ForCausalLM"),
                       ::testing::Values(DType::kF32, DType::kBF16, DType::kF16),
                       ::testing::Values(1, 3), ::testing::Bool()),
    LayoutName);

// Reads every tensor of a checkpoint as floats, keyed by name.
std::map<std::string, std::vector<float>> ReadAllValues(const std::filesystem::path& dir,
                                                        const RandomCheckpointSpec& spec) {
  std::map<std::string, std::vector<float>> out;
  auto checkpoint = Checkpoint::Open(dir);
  EXPECT_TRUE(checkpoint.ok()) << checkpoint.status();
  if (!checkpoint.ok()) return out;
  for (const auto& [name, want] : ExpectedTensors(spec)) {
    auto view = (*checkpoint)->Get(name, want.shape);
    EXPECT_TRUE(view.ok()) << view.status();
    if (!view.ok()) continue;
    auto& values = out[name];
    for (int64_t i = 0; i < ShapeNumel(want.shape); ++i) {
      values.push_back(DecodeElement(
          reinterpret_cast<const char*>(view->data) + i * DTypeSize(view->dtype), view->dtype));
    }
  }
  return out;
}

TEST(CheckpointWriterTest, SameSeedSameValuesAcrossDtypesAndShards) {
  RandomCheckpointSpec spec;
  spec.architecture = "Qwen2ForCausalLM";
  spec.seed = 99;
  const auto f32_dir = testing::MakeTempDir("f32"), bf16_dir = testing::MakeTempDir("bf16"),
             f16_dir = testing::MakeTempDir("f16"), sharded_dir = testing::MakeTempDir("sharded"),
             again_dir = testing::MakeTempDir("again"), other_dir = testing::MakeTempDir("other");
  ASSERT_TRUE(WriteRandomCheckpoint(f32_dir, spec).ok());
  ASSERT_TRUE(WriteRandomCheckpoint(again_dir, spec).ok());
  RandomCheckpointSpec variant = spec;
  variant.dtype = DType::kBF16;
  ASSERT_TRUE(WriteRandomCheckpoint(bf16_dir, variant).ok());
  variant.dtype = DType::kF16;
  ASSERT_TRUE(WriteRandomCheckpoint(f16_dir, variant).ok());
  variant = spec;
  variant.num_shards = 4;
  ASSERT_TRUE(WriteRandomCheckpoint(sharded_dir, variant).ok());
  variant = spec;
  variant.seed = 100;
  ASSERT_TRUE(WriteRandomCheckpoint(other_dir, variant).ok());

  // Reproducible to the byte.
  EXPECT_EQ(testing::ReadFile(f32_dir / "model.safetensors"),
            testing::ReadFile(again_dir / "model.safetensors"));
  const auto f32 = ReadAllValues(f32_dir, spec);
  const auto bf16 = ReadAllValues(bf16_dir, spec);
  const auto f16 = ReadAllValues(f16_dir, spec);
  const auto sharded = ReadAllValues(sharded_dir, spec);
  const auto other = ReadAllValues(other_dir, spec);
  ASSERT_EQ(f32.size(), ExpectedTensors(spec).size());
  EXPECT_EQ(sharded, f32);
  EXPECT_NE(other, f32);
  for (const auto& [name, values] : f32) {
    SCOPED_TRACE(name);
    ASSERT_EQ(bf16.at(name).size(), values.size());
    for (size_t i = 0; i < values.size(); ++i) {
      // The narrow dtypes hold the f32 value rounded once.
      ASSERT_EQ(bf16.at(name)[i], BF16ToFloat(FloatToBF16(values[i])));
      ASSERT_EQ(f16.at(name)[i], HalfToFloat(FloatToHalf(values[i])));
    }
  }
}

TEST(CheckpointWriterTest, ConfigJsonHasHuggingFaceFields) {
  RandomCheckpointSpec spec;
  spec.rope_scaling = RopeScaling{"llama3", 8.0, 1.0, 4.0, 8192};
  spec.dtype = DType::kBF16;
  const auto dir = testing::MakeTempDir("configjson");
  ASSERT_TRUE(WriteRandomCheckpoint(dir, spec).ok());
  const json config = json::parse(testing::ReadFile(dir / "config.json"));
  EXPECT_EQ(config["architectures"], json::array({"LlamaForCausalLM"}));
  EXPECT_EQ(config["model_type"], "llama");
  EXPECT_EQ(config["torch_dtype"], "bfloat16");
  EXPECT_EQ(config["attention_bias"], false);
  EXPECT_EQ(config["tie_word_embeddings"], false);
  EXPECT_EQ(config["num_key_value_heads"], 2);
  EXPECT_FALSE(config.contains("head_dim"));
  EXPECT_EQ(config["rope_scaling"]["rope_type"], "llama3");
  EXPECT_EQ(config["rope_scaling"]["original_max_position_embeddings"], 8192);
  const json generation = json::parse(testing::ReadFile(dir / "generation_config.json"));
  EXPECT_EQ(generation["bos_token_id"], 1);
  EXPECT_EQ(generation["eos_token_id"], 2);
}

TEST(CheckpointWriterTest, RewritingSwitchesLayoutCleanly) {
  RandomCheckpointSpec spec;
  spec.num_shards = 2;
  const auto dir = testing::MakeTempDir("rewrite");
  ASSERT_TRUE(WriteRandomCheckpoint(dir, spec).ok());
  spec.num_shards = 1;
  spec.seed = 5;
  ASSERT_TRUE(WriteRandomCheckpoint(dir, spec).ok());
  EXPECT_FALSE(std::filesystem::exists(dir / "model.safetensors.index.json"));
  EXPECT_FALSE(std::filesystem::exists(dir / "model-00001-of-00002.safetensors"));
  auto checkpoint = Checkpoint::Open(dir);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  auto view = (*checkpoint)->Get("model.norm.weight", {64});
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->file, (dir / "model.safetensors").string());
}

TEST(CheckpointWriterTest, RejectsBadSpecs) {
  const auto dir = testing::MakeTempDir("badspec");
  auto error = [&](auto mutate) {
    RandomCheckpointSpec spec;
    mutate(spec);
    return std::string(WriteRandomCheckpoint(dir, spec).message());
  };
  EXPECT_THAT(error([](auto& s) { s.architecture = "GPT2LMHeadModel"; }),
              HasSubstr("unsupported architecture 'GPT2LMHeadModel'"));
  EXPECT_THAT(error([](auto& s) { s.num_kv_heads = 3; }), HasSubstr("must divide num_heads"));
  EXPECT_THAT(error([](auto& s) { s.hidden_size = 0; }), HasSubstr("hidden_size must be positive"));
  EXPECT_THAT(error([](auto& s) { s.head_dim = 7; }),
              HasSubstr("head_dim must be positive and even"));
  EXPECT_THAT(error([](auto& s) { s.dtype = DType::kI32; }),
              HasSubstr("dtype must be f32, bf16 or f16"));
  EXPECT_THAT(error([](auto& s) { s.num_shards = 0; }), HasSubstr("num_shards must be >= 1"));
  EXPECT_THAT(error([](auto& s) { s.num_shards = 1000; }), HasSubstr("exceeds the"));
  EXPECT_THAT(error([](auto& s) {
                s.architecture = "MistralForCausalLM";
                s.qkv_bias = true;
              }),
              HasSubstr("no q/k/v bias"));
  EXPECT_THAT(error([](auto& s) {
                s.rope_scaling = RopeScaling{"yarn", 4.0, 1.0, 4.0, 8192};
              }),
              HasSubstr("'yarn'"));
  EXPECT_THAT(error([](auto& s) {
                s.rope_scaling = RopeScaling{"llama3", 8.0, 4.0, 1.0, 8192};
              }),
              HasSubstr("low_freq_factor < high_freq_factor"));
  EXPECT_THAT(error([](auto& s) { s.eos_token_id = -1; }), HasSubstr("must be non-negative"));
  // Nothing was written by the failed attempts.
  EXPECT_FALSE(std::filesystem::exists(dir / "config.json"));
}

TEST(CheckpointWriterTest, UnwritableFolderIsAnError) {
  const auto dir = testing::MakeTempDir("unwritable");
  testing::WriteFile(dir / "file", "x");
  absl::Status status = WriteRandomCheckpoint(dir / "file" / "sub", RandomCheckpointSpec{});
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), HasSubstr((dir / "file" / "sub").string()));
}

// --- Opening model folders: errors --------------------------------------------------------------

constexpr const char* kTinyConfig =
    R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 4, "hidden_size": 2,
        "intermediate_size": 4, "num_hidden_layers": 1, "num_attention_heads": 1})";

// A hand-built safetensors file holding F32 tensors of the given names, each of shape [2].
std::string TinySafetensors(const std::vector<std::string>& names) {
  json header = json::object();
  std::string data;
  for (const std::string& name : names) {
    header[name] = {
        {"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {data.size(), data.size() + 8}}};
    const float values[2] = {1.5f, -0.25f};
    data.append(reinterpret_cast<const char*>(values), 8);
  }
  const std::string text = header.dump();
  std::string bytes;
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((text.size() >> (8 * i)) & 0xff));
  return bytes + text + data;
}

class CheckpointOpenTest : public ::testing::Test {
 protected:
  absl::Status OpenStatus() { return Checkpoint::Open(dir_).status(); }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }
  void WriteIndex(const std::string& text) {
    testing::WriteFile(dir_ / "model.safetensors.index.json", text);
  }
  std::filesystem::path dir_ = testing::MakeTempDir("ckpt-open");
};

TEST_F(CheckpointOpenTest, MissingConfig) {
  testing::WriteFile(dir_ / "model.safetensors", TinySafetensors({"a"}));
  EXPECT_EQ(OpenStatus().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(OpenStatus().message()),
              HasSubstr("config.json not found in " + dir_.string()));
}

TEST_F(CheckpointOpenTest, UnsupportedArchitecture) {
  testing::WriteFile(dir_ / "config.json", R"({"architectures": ["GemmaForCausalLM"]})");
  EXPECT_THAT(std::string(OpenStatus().message()),
              HasSubstr("unsupported architecture 'GemmaForCausalLM' in " + Path("config.json")));
}

TEST_F(CheckpointOpenTest, MissingWeights) {
  testing::WriteFile(dir_ / "config.json", kTinyConfig);
  EXPECT_EQ(OpenStatus().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(
      std::string(OpenStatus().message()),
      HasSubstr("no model.safetensors or model.safetensors.index.json in " + dir_.string()));
}

TEST_F(CheckpointOpenTest, MalformedSingleFileNamesIt) {
  testing::WriteFile(dir_ / "config.json", kTinyConfig);
  testing::WriteFile(dir_ / "model.safetensors", "abc");
  EXPECT_THAT(std::string(OpenStatus().message()),
              HasSubstr(Path("model.safetensors") + ": truncated"));
}

TEST_F(CheckpointOpenTest, IndexErrors) {
  testing::WriteFile(dir_ / "config.json", kTinyConfig);
  const std::string index = Path("model.safetensors.index.json");
  WriteIndex("{\"weight_map\": ");
  EXPECT_THAT(std::string(OpenStatus().message()), HasSubstr(index + ": invalid JSON"));
  WriteIndex(R"({"metadata": {"total_size": 8}})");
  EXPECT_THAT(std::string(OpenStatus().message()), HasSubstr(index + ": no 'weight_map' object"));
  WriteIndex(R"({"weight_map": {}})");
  EXPECT_THAT(std::string(OpenStatus().message()), HasSubstr(index + ": 'weight_map' is empty"));
  WriteIndex(R"({"weight_map": {"a": 3}})");
  EXPECT_THAT(std::string(OpenStatus().message()),
              HasSubstr("weight_map entry for tensor 'a' is not a file name"));
  WriteIndex(R"({"weight_map": {"a": "../elsewhere.safetensors"}})");
  EXPECT_THAT(std::string(OpenStatus().message()), HasSubstr("not a file name in the same folder"));
}

TEST_F(CheckpointOpenTest, IndexNamesMissingShard) {
  testing::WriteFile(dir_ / "config.json", kTinyConfig);
  testing::WriteFile(dir_ / "model-00001-of-00002.safetensors", TinySafetensors({"a"}));
  WriteIndex(R"({"weight_map": {"a": "model-00001-of-00002.safetensors",
                                "b": "model-00002-of-00002.safetensors"}})");
  absl::Status status = OpenStatus();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("shard 'model-00002-of-00002.safetensors' named in " +
                        Path("model.safetensors.index.json")));
}

TEST_F(CheckpointOpenTest, IndexMapsTensorToShardWithoutIt) {
  testing::WriteFile(dir_ / "config.json", kTinyConfig);
  testing::WriteFile(dir_ / "s1.safetensors", TinySafetensors({"a"}));
  testing::WriteFile(dir_ / "s2.safetensors", TinySafetensors({"b"}));
  WriteIndex(R"({"weight_map": {"a": "s1.safetensors", "c": "s2.safetensors"}})");
  EXPECT_THAT(std::string(OpenStatus().message()),
              HasSubstr("tensor 'c' is mapped to shard " + Path("s2.safetensors")));
}

TEST_F(CheckpointOpenTest, MalformedShardNamesIt) {
  testing::WriteFile(dir_ / "config.json", kTinyConfig);
  testing::WriteFile(dir_ / "s1.safetensors", std::string(8, '\xff'));
  WriteIndex(R"({"weight_map": {"a": "s1.safetensors"}})");
  EXPECT_THAT(std::string(OpenStatus().message()),
              HasSubstr(Path("s1.safetensors") + ": header length"));
}

TEST_F(CheckpointOpenTest, GetChecksPresenceAndShape) {
  testing::WriteFile(dir_ / "config.json", kTinyConfig);
  testing::WriteFile(dir_ / "s1.safetensors", TinySafetensors({"a", "unmapped"}));
  testing::WriteFile(dir_ / "s2.safetensors", TinySafetensors({"b"}));
  WriteIndex(R"({"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}})");
  auto checkpoint = Checkpoint::Open(dir_);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_EQ((*checkpoint)->config().hidden_size, 2);
  EXPECT_EQ((*checkpoint)->dir(), dir_);
  // Only the index decides which tensors exist.
  EXPECT_FALSE((*checkpoint)->Contains("unmapped"));

  auto b = (*checkpoint)->Get("b", {2});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->file, Path("s2.safetensors"));
  float values[2];
  std::memcpy(values, b->data, 8);
  EXPECT_EQ(values[0], 1.5f);
  EXPECT_EQ(values[1], -0.25f);

  auto missing = (*checkpoint)->Get("lm_head.weight", {4, 2});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()),
              HasSubstr("tensor 'lm_head.weight' missing from " + dir_.string()));

  auto wrong = (*checkpoint)->Get("a", {1, 2});
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(wrong.status().message()),
              HasSubstr(Path("s1.safetensors") + ": tensor 'a' has shape [2], expected [1, 2]"));
}

}  // namespace
}  // namespace zigzag
