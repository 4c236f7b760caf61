#include "core/model/checkpoint_writer.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/util/status_macros.h"
#include "kernels/tensor.h"
#include "nlohmann/json.hpp"

namespace zigzag {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;

// How a tensor's random values are drawn.
enum class Init { kMatrix, kNorm, kBias };

struct TensorPlan {
  std::string name;
  Shape shape;
  Init init = Init::kMatrix;
};

absl::Status ValidateSpec(const RandomCheckpointSpec& spec) {
  const std::string& arch = spec.architecture;
  if (arch != "LlamaForCausalLM" && arch != "MistralForCausalLM" && arch != "Qwen2ForCausalLM") {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported architecture '", arch,
                     "': expected LlamaForCausalLM, MistralForCausalLM or Qwen2ForCausalLM"));
  }
  const std::pair<const char*, int64_t> positive[] = {
      {"vocab_size", spec.vocab_size},
      {"hidden_size", spec.hidden_size},
      {"intermediate_size", spec.intermediate_size},
      {"num_layers", spec.num_layers},
      {"num_heads", spec.num_heads},
      {"num_kv_heads", spec.num_kv_heads},
      {"max_position_embeddings", spec.max_position_embeddings}};
  for (const auto& [field, value] : positive) {
    if (value <= 0)
      return absl::InvalidArgumentError(absl::StrCat(field, " must be positive, got ", value));
  }
  if (spec.num_heads % spec.num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "num_kv_heads (", spec.num_kv_heads, ") must divide num_heads (", spec.num_heads, ")"));
  }
  if (!spec.head_dim && spec.hidden_size % spec.num_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("hidden_size (", spec.hidden_size,
                                                   ") is not divisible by num_heads (",
                                                   spec.num_heads, ") and no head_dim is given"));
  }
  const int64_t head_dim = spec.head_dim ? *spec.head_dim : spec.hidden_size / spec.num_heads;
  if (head_dim <= 0 || head_dim % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("head_dim must be positive and even, got ", head_dim));
  }
  if (spec.dtype != DType::kF32 && spec.dtype != DType::kBF16 && spec.dtype != DType::kF16) {
    return absl::InvalidArgumentError(
        absl::StrCat("dtype must be f32, bf16 or f16, got ", DTypeName(spec.dtype)));
  }
  if (spec.qkv_bias && arch == "MistralForCausalLM") {
    return absl::InvalidArgumentError("MistralForCausalLM has no q/k/v bias");
  }
  if (spec.rope_scaling) {
    const RopeScaling& scaling = *spec.rope_scaling;
    if (scaling.type != "llama3") {
      return absl::InvalidArgumentError(
          absl::StrCat("rope_scaling type must be 'llama3', got '", scaling.type, "'"));
    }
    // The same constraints ParseModelConfig enforces, so that what is written can be read.
    if (!(scaling.factor > 0.0) || !(scaling.low_freq_factor > 0.0) ||
        !(scaling.high_freq_factor > scaling.low_freq_factor) ||
        scaling.original_max_position_embeddings <= 0) {
      return absl::InvalidArgumentError(
          "llama3 rope_scaling needs factor > 0, 0 < low_freq_factor < high_freq_factor and "
          "original_max_position_embeddings > 0");
    }
  }
  if (spec.bos_token_id < 0 || spec.eos_token_id < 0) {
    return absl::InvalidArgumentError("bos_token_id and eos_token_id must be non-negative");
  }
  if (!(spec.rms_norm_eps > 0.0) || !(spec.rope_theta > 0.0) || !(spec.weight_scale >= 0.0f)) {
    return absl::InvalidArgumentError(
        "rms_norm_eps and rope_theta must be positive, weight_scale >= 0");
  }
  if (spec.num_shards < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_shards must be >= 1, got ", spec.num_shards));
  }
  return absl::OkStatus();
}

bool HasQkvBias(const RandomCheckpointSpec& spec) {
  return spec.qkv_bias || spec.architecture == "Qwen2ForCausalLM";
}

// Every tensor in Hugging Face order: embeddings, layers, final norm, lm head.
std::vector<TensorPlan> PlanTensors(const RandomCheckpointSpec& spec) {
  const int64_t d = spec.hidden_size;
  const int64_t f = spec.intermediate_size;
  const int64_t hd = spec.head_dim ? *spec.head_dim : spec.hidden_size / spec.num_heads;
  const int64_t q_out = spec.num_heads * hd;
  const int64_t kv_out = spec.num_kv_heads * hd;
  std::vector<TensorPlan> plan;
  plan.push_back({"model.embed_tokens.weight", {spec.vocab_size, d}, Init::kMatrix});
  for (int64_t i = 0; i < spec.num_layers; ++i) {
    const std::string layer = absl::StrCat("model.layers.", i, ".");
    plan.push_back({layer + "input_layernorm.weight", {d}, Init::kNorm});
    plan.push_back({layer + "self_attn.q_proj.weight", {q_out, d}, Init::kMatrix});
    plan.push_back({layer + "self_attn.k_proj.weight", {kv_out, d}, Init::kMatrix});
    plan.push_back({layer + "self_attn.v_proj.weight", {kv_out, d}, Init::kMatrix});
    if (HasQkvBias(spec)) {
      plan.push_back({layer + "self_attn.q_proj.bias", {q_out}, Init::kBias});
      plan.push_back({layer + "self_attn.k_proj.bias", {kv_out}, Init::kBias});
      plan.push_back({layer + "self_attn.v_proj.bias", {kv_out}, Init::kBias});
    }
    plan.push_back({layer + "self_attn.o_proj.weight", {d, q_out}, Init::kMatrix});
    plan.push_back({layer + "post_attention_layernorm.weight", {d}, Init::kNorm});
    plan.push_back({layer + "mlp.gate_proj.weight", {f, d}, Init::kMatrix});
    plan.push_back({layer + "mlp.up_proj.weight", {f, d}, Init::kMatrix});
    plan.push_back({layer + "mlp.down_proj.weight", {d, f}, Init::kMatrix});
  }
  plan.push_back({"model.norm.weight", {d}, Init::kNorm});
  if (!spec.tie_word_embeddings)
    plan.push_back({"lm_head.weight", {spec.vocab_size, d}, Init::kMatrix});
  return plan;
}

// Uniform in [-1, 1) from the top 53 bits: the same stream on every standard library, unlike
// std::uniform_real_distribution whose algorithm is unspecified.
double SignedUniform(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-52 - 1.0;
}

// Draws the tensor's values (in plan order, from one seeded stream) and encodes them in `dtype`.
std::string MakeTensorBytes(const TensorPlan& tensor, const RandomCheckpointSpec& spec,
                            std::mt19937_64& rng) {
  const int64_t numel = ShapeNumel(tensor.shape);
  const double in_features = static_cast<double>(tensor.shape.back());
  const double matrix_scale =
      spec.weight_scale > 0.0f ? spec.weight_scale : 1.0 / std::sqrt(in_features);
  std::string bytes(static_cast<size_t>(numel) * DTypeSize(spec.dtype), '\0');
  for (int64_t i = 0; i < numel; ++i) {
    const double u = SignedUniform(rng);
    float value = 0.0f;
    switch (tensor.init) {
      case Init::kMatrix:
        value = static_cast<float>(matrix_scale * u);
        break;
      case Init::kNorm:  // RMSNorm weights sit around 1.
        value = static_cast<float>(1.0 + 0.1 * u);
        break;
      case Init::kBias:
        value = static_cast<float>(0.05 * u);
        break;
    }
    char* out = bytes.data() + static_cast<size_t>(i) * DTypeSize(spec.dtype);
    if (spec.dtype == DType::kF32) {
      std::memcpy(out, &value,
                  4);  // safetensors data is little-endian, as is every host we build for
    } else {
      const uint16_t half = spec.dtype == DType::kBF16 ? FloatToBF16(value) : FloatToHalf(value);
      std::memcpy(out, &half, 2);
    }
  }
  return bytes;
}

const char* SafetensorsDTypeName(DType dtype) {
  return dtype == DType::kF32 ? "F32" : dtype == DType::kBF16 ? "BF16" : "F16";
}

const char* TorchDTypeName(DType dtype) {
  return dtype == DType::kF32 ? "float32" : dtype == DType::kBF16 ? "bfloat16" : "float16";
}

absl::Status WriteFile(const std::filesystem::path& path, const std::string& bytes) {
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot create ", path.string(), ": ", std::strerror(errno)));
  }
  const size_t written = std::fwrite(bytes.data(), 1, bytes.size(), file);
  const int write_errno = errno;
  const bool closed = std::fclose(file) == 0;
  if (written != bytes.size() || !closed) {
    return absl::UnavailableError(
        absl::StrCat("cannot write ", path.string(), ": ", std::strerror(write_errno)));
  }
  return absl::OkStatus();
}

// One safetensors file: header (tensors in the given order, padded with spaces to a multiple of
// 8 bytes as Hugging Face does) followed by the tensors' bytes back to back, with no gaps.
absl::Status WriteSafetensors(const std::filesystem::path& path,
                              const std::vector<TensorPlan>& plan,
                              const std::vector<std::string>& data,
                              const std::vector<size_t>& members, DType dtype) {
  ordered_json header = ordered_json::object();
  header["__metadata__"] = {{"format", "pt"}};
  uint64_t offset = 0;
  for (size_t index : members) {
    const uint64_t end = offset + data[index].size();
    header[plan[index].name] = {{"dtype", SafetensorsDTypeName(dtype)},
                                {"shape", plan[index].shape},
                                {"data_offsets", {offset, end}}};
    offset = end;
  }
  std::string header_text = header.dump();
  header_text.append((8 - header_text.size() % 8) % 8, ' ');
  std::string bytes;
  bytes.reserve(8 + header_text.size() + offset);
  uint64_t header_size = header_text.size();
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((header_size >> (8 * i)) & 0xff));
  bytes += header_text;
  for (size_t index : members) bytes += data[index];
  return WriteFile(path, bytes);
}

std::string ConfigJson(const RandomCheckpointSpec& spec) {
  ordered_json config;
  const std::string& arch = spec.architecture;
  config["architectures"] = {arch};
  config["model_type"] = arch == "LlamaForCausalLM"     ? "llama"
                         : arch == "MistralForCausalLM" ? "mistral"
                                                        : "qwen2";
  config["vocab_size"] = spec.vocab_size;
  config["hidden_size"] = spec.hidden_size;
  config["intermediate_size"] = spec.intermediate_size;
  config["num_hidden_layers"] = spec.num_layers;
  config["num_attention_heads"] = spec.num_heads;
  config["num_key_value_heads"] = spec.num_kv_heads;
  if (spec.head_dim) config["head_dim"] = *spec.head_dim;
  config["hidden_act"] = "silu";
  config["max_position_embeddings"] = spec.max_position_embeddings;
  config["rms_norm_eps"] = spec.rms_norm_eps;
  config["rope_theta"] = spec.rope_theta;
  if (spec.rope_scaling) {
    config["rope_scaling"] = {
        {"rope_type", spec.rope_scaling->type},
        {"factor", spec.rope_scaling->factor},
        {"low_freq_factor", spec.rope_scaling->low_freq_factor},
        {"high_freq_factor", spec.rope_scaling->high_freq_factor},
        {"original_max_position_embeddings", spec.rope_scaling->original_max_position_embeddings}};
  } else {
    config["rope_scaling"] = nullptr;
  }
  if (arch == "LlamaForCausalLM") config["attention_bias"] = spec.qkv_bias;
  if (arch == "MistralForCausalLM") config["sliding_window"] = nullptr;
  if (arch == "Qwen2ForCausalLM") {
    // As in released Qwen2 configs: a window value that is switched off.
    config["use_sliding_window"] = false;
    config["sliding_window"] = spec.max_position_embeddings;
  }
  config["tie_word_embeddings"] = spec.tie_word_embeddings;
  config["torch_dtype"] = TorchDTypeName(spec.dtype);
  config["bos_token_id"] = spec.bos_token_id;
  config["eos_token_id"] = spec.eos_token_id;
  config["initializer_range"] = 0.02;
  config["use_cache"] = true;
  return config.dump(2) + "\n";
}

std::string ShardName(int index, int count) {
  return absl::StrFormat("model-%05d-of-%05d.safetensors", index + 1, count);
}

// Removes weight files of an earlier write, so the folder never mixes two layouts (an old
// index would otherwise shadow a new model.safetensors).
absl::Status RemoveOldWeights(const std::filesystem::path& dir) {
  std::error_code ec;
  std::vector<std::filesystem::path> stale;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    const bool is_shard = name.rfind("model-", 0) == 0 && name.find("-of-") != std::string::npos &&
                          entry.path().extension() == ".safetensors";
    if (name == "model.safetensors" || name == "model.safetensors.index.json" || is_shard) {
      stale.push_back(entry.path());
    }
  }
  if (ec)
    return absl::UnavailableError(absl::StrCat("cannot list ", dir.string(), ": ", ec.message()));
  for (const auto& path : stale) {
    if (!std::filesystem::remove(path, ec) && ec) {
      return absl::UnavailableError(
          absl::StrCat("cannot remove ", path.string(), ": ", ec.message()));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteRandomCheckpoint(const std::filesystem::path& dir,
                                   const RandomCheckpointSpec& spec) {
  RETURN_IF_ERROR(ValidateSpec(spec));
  const std::vector<TensorPlan> plan = PlanTensors(spec);
  if (static_cast<size_t>(spec.num_shards) > plan.size()) {
    return absl::InvalidArgumentError(absl::StrCat("num_shards (", spec.num_shards,
                                                   ") exceeds the ", plan.size(),
                                                   " tensors of the checkpoint"));
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    return absl::UnavailableError(
        absl::StrCat("cannot create folder ", dir.string(), ": ", ec.message()));
  RETURN_IF_ERROR(RemoveOldWeights(dir));

  std::mt19937_64 rng(spec.seed);
  std::vector<std::string> data;
  data.reserve(plan.size());
  uint64_t total_size = 0;
  for (const TensorPlan& tensor : plan) {
    data.push_back(MakeTensorBytes(tensor, spec, rng));
    total_size += data.back().size();
  }

  if (spec.num_shards == 1) {
    std::vector<size_t> all(plan.size());
    for (size_t i = 0; i < all.size(); ++i) all[i] = i;
    RETURN_IF_ERROR(WriteSafetensors(dir / "model.safetensors", plan, data, all, spec.dtype));
  } else {
    // Tensor i goes to shard i * n / count: contiguous runs in HF order, none empty.
    const size_t n = static_cast<size_t>(spec.num_shards);
    std::vector<std::vector<size_t>> members(n);
    for (size_t i = 0; i < plan.size(); ++i) members[i * n / plan.size()].push_back(i);
    json weight_map = json::object();
    for (size_t s = 0; s < n; ++s) {
      const std::string shard = ShardName(static_cast<int>(s), spec.num_shards);
      RETURN_IF_ERROR(WriteSafetensors(dir / shard, plan, data, members[s], spec.dtype));
      for (size_t index : members[s]) weight_map[plan[index].name] = shard;
    }
    json index = {{"metadata", {{"total_size", total_size}}}, {"weight_map", weight_map}};
    RETURN_IF_ERROR(WriteFile(dir / "model.safetensors.index.json", index.dump(2) + "\n"));
  }

  RETURN_IF_ERROR(WriteFile(dir / "config.json", ConfigJson(spec)));
  ordered_json generation = {{"bos_token_id", spec.bos_token_id},
                             {"eos_token_id", spec.eos_token_id}};
  return WriteFile(dir / "generation_config.json", generation.dump(2) + "\n");
}

}  // namespace zigzag
