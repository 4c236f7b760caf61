// Writes a small random Llama / Mistral / Qwen2-shaped checkpoint in the real Hugging Face format
// (config.json, generation_config.json, model.safetensors or shards + index). For tests,
// benchmarks and smoke tests; the weights are seeded and reproducible.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "core/model/model_config.h"
#include "kernels/dtype.h"

namespace zigzag {

struct RandomCheckpointSpec {
  std::string architecture = "LlamaForCausalLM";  // or MistralForCausalLM, Qwen2ForCausalLM
  int64_t vocab_size = 256;
  int64_t hidden_size = 64;
  int64_t intermediate_size = 128;
  int64_t num_layers = 2;
  int64_t num_heads = 4;
  int64_t num_kv_heads = 2;
  std::optional<int64_t> head_dim;  // written to config.json only when set
  int64_t max_position_embeddings = 2048;
  double rope_theta = 10000.0;
  std::optional<RopeScaling> rope_scaling;  // llama3
  bool qkv_bias = false;                    // Llama: attention_bias; Qwen2 always has it
  bool tie_word_embeddings = false;
  double rms_norm_eps = 1e-5;
  DType dtype = DType::kF32;  // F32, BF16 or F16 on disk
  int num_shards = 1;         // > 1 writes model-0000i-of-0000n.safetensors + index
  uint64_t seed = 0;
  float weight_scale = 0.0f;  // 0 = 1/sqrt(in_features) per matrix
  int32_t bos_token_id = 1;
  int32_t eos_token_id = 2;
};

// Creates `dir` if needed and writes the checkpoint into it, replacing the weight files
// (model.safetensors, shards, index) of any earlier checkpoint there. InvalidArgument for a spec
// that ParseModelConfig would reject; Unavailable when a file cannot be written.
absl::Status WriteRandomCheckpoint(const std::filesystem::path& dir,
                                   const RandomCheckpointSpec& spec);

}  // namespace zigzag
