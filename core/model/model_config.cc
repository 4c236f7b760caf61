#include "core/model/model_config.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/tokenizer/tokenizer_limits.h"
#include "core/util/json_fields.h"
#include "core/util/read_file.h"
#include "core/util/status_macros.h"
#include "nlohmann/json.hpp"

namespace zigzag {
namespace {

using nlohmann::json;

// Bounds on the architecture numbers: far above any real model (Llama-3.1 405B: hidden 16384,
// intermediate 53248, 126 layers, 128 heads), low enough that products of them (a weight's
// element count, a KV cache size) cannot overflow int64.
constexpr int64_t kMaxModelWidth = int64_t{1} << 20;
constexpr int64_t kMaxLayers = 4096;
constexpr int64_t kMaxHeads = 4096;
constexpr int64_t kMaxHeadDim = 16384;
constexpr int64_t kMaxPositions = int64_t{1} << 28;
constexpr double kMaxRopeNumber = 1e12;
constexpr size_t kMaxEosTokenIds = 1024;
constexpr size_t kMaxConfigFileBytes = size_t{16} << 20;

constexpr const char* kSupportedArchitectures =
    "LlamaForCausalLM, MistralForCausalLM or Qwen2ForCausalLM";

// Reads fields of one JSON object and turns every problem into a Status naming the file and field.
class FieldReader {
 public:
  FieldReader(const json& object, std::string source)
      : object_(object), source_(std::move(source)) {}

  bool Has(const char* field) const { return object_.contains(field) && !object_[field].is_null(); }

  absl::Status Error(const char* field, const std::string& problem) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": field '", field, "' ", problem));
  }

  // An integer field that must be present and in [1, max].
  absl::StatusOr<int64_t> RequiredPositiveInt(const char* field, int64_t max) const {
    if (!Has(field)) return Error(field, "is required but missing");
    return PositiveInt(field, max);
  }

  // An integer field that is present (checked by the caller) and in [1, max].
  absl::StatusOr<int64_t> PositiveInt(const char* field, int64_t max) const {
    ASSIGN_OR_RETURN(int64_t value, Int(field));
    if (value <= 0) return Error(field, absl::StrCat("must be positive, got ", value));
    if (value > max) return Error(field, absl::StrCat("must be at most ", max, ", got ", value));
    return value;
  }

  absl::StatusOr<int64_t> Int(const char* field) const {
    const json& value = object_[field];
    if (!value.is_number_integer()) {
      return Error(field, absl::StrCat("must be an integer, got ", DescribeJson(value)));
    }
    if (value.is_number_unsigned() &&
        value.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Error(field, absl::StrCat("is out of range: ", DescribeJson(value)));
    }
    return value.get<int64_t>();
  }

  // A finite number; `default_value` when absent or null.
  absl::StatusOr<double> Number(const char* field, double default_value) const {
    if (!Has(field)) return default_value;
    const json& value = object_[field];
    if (!value.is_number() || !std::isfinite(value.get<double>())) {
      return Error(field, absl::StrCat("must be a number, got ", DescribeJson(value)));
    }
    return value.get<double>();
  }

  // A number in (0, max].
  absl::StatusOr<double> PositiveNumber(const char* field, double default_value, double max) const {
    ASSIGN_OR_RETURN(double value, Number(field, default_value));
    if (!(value > 0.0)) return Error(field, absl::StrCat("must be positive, got ", value));
    if (value > max) return Error(field, absl::StrCat("must be at most ", max, ", got ", value));
    return value;
  }

  absl::StatusOr<bool> Bool(const char* field, bool default_value) const {
    if (!Has(field)) return default_value;
    const json& value = object_[field];
    if (!value.is_boolean()) {
      return Error(field, absl::StrCat("must be true or false, got ", DescribeJson(value)));
    }
    return value.get<bool>();
  }

  // A string; `default_value` when absent or null.
  absl::StatusOr<std::string> String(const char* field, std::string default_value) const {
    if (!Has(field)) return default_value;
    const json& value = object_[field];
    if (!value.is_string()) {
      return Error(field, absl::StrCat("must be a string, got ", DescribeJson(value)));
    }
    return value.get<std::string>();
  }

  // A token id: absent/null gives nullopt.
  absl::StatusOr<std::optional<int32_t>> TokenId(const char* field) const {
    if (!Has(field)) return std::optional<int32_t>();
    return TokenIdValue(field, object_[field]);
  }

  // eos_token_id: an int, a list of ints, or null.
  absl::StatusOr<std::vector<int32_t>> TokenIdList(const char* field) const {
    std::vector<int32_t> ids;
    if (!Has(field)) return ids;
    const json& value = object_[field];
    if (value.is_array()) {
      if (value.size() > kMaxEosTokenIds) {
        return Error(field, absl::StrCat("has ", value.size(), " ids, more than the limit of ",
                                         kMaxEosTokenIds));
      }
      for (const json& item : value) {
        ASSIGN_OR_RETURN(int32_t id, TokenIdValue(field, item));
        ids.push_back(id);
      }
    } else {
      ASSIGN_OR_RETURN(int32_t id, TokenIdValue(field, value));
      ids.push_back(id);
    }
    return ids;
  }

 private:
  absl::StatusOr<int32_t> TokenIdValue(const char* field, const json& value) const {
    const bool in_range = value.is_number_unsigned()
                              ? value.get<uint64_t>() <= static_cast<uint64_t>(kMaxTokenId)
                          : value.is_number_integer()
                              ? value.get<int64_t>() >= 0 && value.get<int64_t>() <= kMaxTokenId
                              : false;
    if (!in_range) {
      return Error(field, absl::StrCat("must be a token id in [0, ", kMaxTokenId, "], got ",
                                       DescribeJson(value)));
    }
    return static_cast<int32_t>(value.get<int64_t>());
  }

  const json& object_;
  std::string source_;
};

absl::StatusOr<json> ParseJsonObject(std::string_view text, const std::string& source) {
  return ParseJson(text, source, /*require_object=*/true);
}

absl::StatusOr<std::string> ReadArchitecture(const json& config, const std::string& source) {
  if (!config.contains("architectures") || !config["architectures"].is_array() ||
      config["architectures"].empty() || !config["architectures"][0].is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": field 'architectures' must be a non-empty list of strings, expected one of ",
        kSupportedArchitectures));
  }
  std::string architecture = config["architectures"][0].get<std::string>();
  if (architecture != "LlamaForCausalLM" && architecture != "MistralForCausalLM" &&
      architecture != "Qwen2ForCausalLM") {
    return absl::InvalidArgumentError(absl::StrCat("unsupported architecture '", architecture,
                                                   "' in ", source, ": expected ",
                                                   kSupportedArchitectures));
  }
  return architecture;
}

absl::StatusOr<std::optional<RopeScaling>> ReadRopeScaling(const FieldReader& fields,
                                                           const json& config,
                                                           const std::string& source) {
  if (!fields.Has("rope_scaling")) return std::optional<RopeScaling>();
  const json& scaling = config["rope_scaling"];
  if (!scaling.is_object()) {
    return fields.Error("rope_scaling",
                        absl::StrCat("must be an object or null, got ", DescribeJson(scaling)));
  }
  // Newer transformers write "rope_type", older ones "type".
  const char* type_key = scaling.contains("rope_type") ? "rope_type" : "type";
  if (!scaling.contains(type_key) || !scaling[type_key].is_string()) {
    return fields.Error("rope_scaling", "has no string 'rope_type' (or 'type')");
  }
  const std::string type = scaling[type_key].get<std::string>();
  // "default" is how transformers spells "no scaling".
  if (type == "default") return std::optional<RopeScaling>();
  if (type != "llama3") {
    return absl::InvalidArgumentError(absl::StrCat(source, ": unsupported rope_scaling type '",
                                                   type, "' (only 'llama3' is supported)"));
  }
  const std::string scaling_source = absl::StrCat(source, " rope_scaling");
  FieldReader scaling_fields(scaling, scaling_source);
  RopeScaling out;
  out.type = type;
  for (const char* required :
       {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}) {
    if (!scaling_fields.Has(required)) {
      return scaling_fields.Error(required, "is required for llama3 rope scaling but missing");
    }
  }
  ASSIGN_OR_RETURN(out.factor, scaling_fields.PositiveNumber("factor", 1.0, kMaxRopeNumber));
  ASSIGN_OR_RETURN(out.low_freq_factor,
                   scaling_fields.PositiveNumber("low_freq_factor", 1.0, kMaxRopeNumber));
  ASSIGN_OR_RETURN(out.high_freq_factor,
                   scaling_fields.PositiveNumber("high_freq_factor", 4.0, kMaxRopeNumber));
  ASSIGN_OR_RETURN(out.original_max_position_embeddings,
                   scaling_fields.PositiveInt("original_max_position_embeddings", kMaxPositions));
  // The blend between the two wavelength bands divides by their difference.
  if (!(out.high_freq_factor > out.low_freq_factor)) {
    return scaling_fields.Error(
        "high_freq_factor", absl::StrCat("must be greater than low_freq_factor (",
                                         out.high_freq_factor, " vs ", out.low_freq_factor, ")"));
  }
  return std::optional<RopeScaling>(out);
}

absl::StatusOr<std::optional<int64_t>> ReadSlidingWindow(const FieldReader& fields,
                                                         const std::string& architecture) {
  bool enabled = fields.Has("sliding_window");
  if (architecture == "Qwen2ForCausalLM") {
    // Qwen2 configs carry a sliding_window value even when it is switched off.
    ASSIGN_OR_RETURN(bool use_sliding_window, fields.Bool("use_sliding_window", false));
    enabled = enabled && use_sliding_window;
  } else if (architecture != "MistralForCausalLM") {
    enabled = false;  // Llama has no sliding window.
  }
  if (!enabled) return std::optional<int64_t>();
  ASSIGN_OR_RETURN(int64_t window, fields.PositiveInt("sliding_window", kMaxPositions));
  return std::optional<int64_t>(window);
}

absl::StatusOr<std::string> ReadFile(const std::filesystem::path& path) {
  return ReadFileToString(path, kMaxConfigFileBytes);
}

void AppendUnique(std::vector<int32_t>& ids, int32_t id) {
  if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
}

}  // namespace

int64_t ModelConfig::max_context() const {
  // The engine does not implement sliding-window masking yet, so a model with a window is only
  // exact up to the window's length: never accept longer sequences than that.
  if (sliding_window && *sliding_window < max_position_embeddings) return *sliding_window;
  return max_position_embeddings;
}

absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text,
                                             std::string_view source_view) {
  const std::string source(source_view);
  ASSIGN_OR_RETURN(json config, ParseJsonObject(json_text, source));
  FieldReader fields(config, source);

  ModelConfig out;
  ASSIGN_OR_RETURN(out.architecture, ReadArchitecture(config, source));
  ASSIGN_OR_RETURN(out.model_type, fields.String("model_type", ""));
  if (out.model_type.empty()) {
    out.model_type = out.architecture == "LlamaForCausalLM"     ? "llama"
                     : out.architecture == "MistralForCausalLM" ? "mistral"
                                                                : "qwen2";
  }

  ASSIGN_OR_RETURN(out.vocab_size, fields.RequiredPositiveInt("vocab_size", kMaxTokenId + 1));
  ASSIGN_OR_RETURN(out.hidden_size, fields.RequiredPositiveInt("hidden_size", kMaxModelWidth));
  ASSIGN_OR_RETURN(out.intermediate_size,
                   fields.RequiredPositiveInt("intermediate_size", kMaxModelWidth));
  ASSIGN_OR_RETURN(out.num_layers, fields.RequiredPositiveInt("num_hidden_layers", kMaxLayers));
  ASSIGN_OR_RETURN(out.num_heads, fields.RequiredPositiveInt("num_attention_heads", kMaxHeads));
  if (fields.Has("num_key_value_heads")) {
    ASSIGN_OR_RETURN(out.num_kv_heads, fields.PositiveInt("num_key_value_heads", kMaxHeads));
  } else {
    out.num_kv_heads = out.num_heads;
  }
  if (out.num_heads % out.num_kv_heads != 0) {
    return fields.Error("num_key_value_heads",
                        absl::StrCat("(", out.num_kv_heads, ") must divide num_attention_heads (",
                                     out.num_heads, ")"));
  }
  if (fields.Has("head_dim")) {
    ASSIGN_OR_RETURN(out.head_dim, fields.PositiveInt("head_dim", kMaxHeadDim));
  } else {
    if (out.hidden_size % out.num_heads != 0) {
      return fields.Error("hidden_size", absl::StrCat("(", out.hidden_size,
                                                      ") is not divisible by num_attention_heads (",
                                                      out.num_heads, ") and no head_dim is given"));
    }
    out.head_dim = out.hidden_size / out.num_heads;
  }
  // RoPE rotates pairs (i, i + head_dim / 2).
  if (out.head_dim % 2 != 0) {
    return fields.Error("head_dim",
                        absl::StrCat("must be even for rotary embeddings, got ", out.head_dim));
  }

  out.max_position_embeddings = 2048;
  if (fields.Has("max_position_embeddings")) {
    ASSIGN_OR_RETURN(out.max_position_embeddings,
                     fields.PositiveInt("max_position_embeddings", kMaxPositions));
  }
  ASSIGN_OR_RETURN(out.rms_norm_eps, fields.PositiveNumber("rms_norm_eps", 1e-6, 1.0));
  ASSIGN_OR_RETURN(out.rope_theta, fields.PositiveNumber("rope_theta", 10000.0, kMaxRopeNumber));
  ASSIGN_OR_RETURN(out.rope_scaling, ReadRopeScaling(fields, config, source));
  ASSIGN_OR_RETURN(out.tie_word_embeddings, fields.Bool("tie_word_embeddings", false));
  if (out.architecture == "Qwen2ForCausalLM") {
    out.qkv_bias = true;  // Qwen2's q/k/v projections always carry a bias.
  } else if (out.architecture == "LlamaForCausalLM") {
    ASSIGN_OR_RETURN(out.qkv_bias, fields.Bool("attention_bias", false));
  }
  ASSIGN_OR_RETURN(out.sliding_window, ReadSlidingWindow(fields, out.architecture));
  ASSIGN_OR_RETURN(out.torch_dtype, fields.String("torch_dtype", ""));
  ASSIGN_OR_RETURN(out.bos_token_id, fields.TokenId("bos_token_id"));
  ASSIGN_OR_RETURN(std::vector<int32_t> eos, fields.TokenIdList("eos_token_id"));
  for (int32_t id : eos) AppendUnique(out.eos_token_ids, id);
  return out;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::filesystem::path& model_dir) {
  const std::filesystem::path config_path = model_dir / "config.json";
  std::error_code ec;
  if (!std::filesystem::is_regular_file(config_path, ec)) {
    return absl::NotFoundError(absl::StrCat("config.json not found in ", model_dir.string()));
  }
  ASSIGN_OR_RETURN(std::string config_text, ReadFile(config_path));
  ASSIGN_OR_RETURN(ModelConfig config, ParseModelConfig(config_text, config_path.string()));

  const std::filesystem::path generation_path = model_dir / "generation_config.json";
  if (!std::filesystem::is_regular_file(generation_path, ec)) return config;
  ASSIGN_OR_RETURN(std::string generation_text, ReadFile(generation_path));
  RETURN_IF_ERROR(ApplyGenerationConfig(generation_text, generation_path.string(), &config));
  return config;
}

absl::Status ApplyGenerationConfig(std::string_view json_text, std::string_view source_view,
                                   ModelConfig* config) {
  const std::string source(source_view);
  ASSIGN_OR_RETURN(json generation, ParseJsonObject(json_text, source));
  FieldReader fields(generation, source);
  ASSIGN_OR_RETURN(std::vector<int32_t> eos, fields.TokenIdList("eos_token_id"));
  for (int32_t id : eos) AppendUnique(config->eos_token_ids, id);
  ASSIGN_OR_RETURN(std::optional<int32_t> bos, fields.TokenId("bos_token_id"));
  if (!config->bos_token_id) config->bos_token_id = bos;
  return absl::OkStatus();
}

}  // namespace zigzag
