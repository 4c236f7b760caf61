// ModelConfig: the architecture of a Llama-family checkpoint, parsed from its config.json
// (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM) and generation_config.json.
// It holds numbers only; loading tensors is checkpoint.h's job.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace zigzag {

struct RopeScaling {
  // "llama3" is the only scaling type supported; others are rejected when parsing.
  std::string type;
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string architecture;  // e.g. "LlamaForCausalLM"
  std::string model_type;    // e.g. "llama"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;    // num_hidden_layers
  int64_t num_heads = 0;     // num_attention_heads
  int64_t num_kv_heads = 0;  // num_key_value_heads (defaults to num_heads)
  int64_t head_dim = 0;      // "head_dim" or hidden_size / num_heads
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  std::optional<RopeScaling> rope_scaling;
  bool qkv_bias = false;  // attention_bias, or always for Qwen2
  bool tie_word_embeddings = false;
  std::optional<int64_t> sliding_window;  // Mistral / Qwen2 when the config enables it
  std::string torch_dtype;                // informational ("bfloat16", ...)
  std::optional<int32_t> bos_token_id;
  std::vector<int32_t> eos_token_ids;  // config.json, extended by generation_config.json

  // Longest sequence (prompt + generated) the engine accepts for this model.
  int64_t max_context() const;
};

// Parses config.json text. `source` names the file in error messages.
absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text, std::string_view source);

// Merges generation_config.json text into `config`: its eos_token_id values are added to
// eos_token_ids; its bos_token_id wins when config.json has none. `source` names the file in
// error messages. LoadModelConfig's step, public for in-memory callers (the fuzz targets).
absl::Status ApplyGenerationConfig(std::string_view json_text, std::string_view source,
                                   ModelConfig* config);

// Reads DIR/config.json and, when present, DIR/generation_config.json (its eos_token_id values are
// added to eos_token_ids; its bos_token_id wins when config.json has none).
absl::StatusOr<ModelConfig> LoadModelConfig(const std::filesystem::path& model_dir);

}  // namespace zigzag
