// libFuzzer target: config.json through ParseModelConfig, generation_config.json through
// ApplyGenerationConfig, and an accepted config through RopeInverseFrequencies (what loading a
// model computes from it first). Input: "<config.json>\0<generation_config.json>" (the second
// file is optional); generator mode (shaped_input.h) is expanded first.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/model/model_config.h"
#include "core/model/rope.h"
#include "fuzz/fixed_models.h"
#include "fuzz/json_mutator.h"
#include "fuzz/shaped_input.h"

namespace {

// A config the parser accepts must satisfy what the model code relies on.
void CheckAccepted(const zigzag::ModelConfig& c) {
  if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.intermediate_size <= 0 || c.num_layers <= 0 ||
      c.num_heads <= 0 || c.num_kv_heads <= 0 || c.head_dim <= 0 || c.head_dim % 2 != 0 ||
      c.num_heads % c.num_kv_heads != 0 || c.max_position_embeddings <= 0 || c.max_context() <= 0 ||
      !(c.rms_norm_eps > 0) || !(c.rope_theta > 0)) {
    std::abort();
  }
  if (c.rope_scaling && !(c.rope_scaling->high_freq_factor > c.rope_scaling->low_freq_factor)) {
    std::abort();
  }
  for (int32_t id : c.eos_token_ids) {
    if (id < 0) std::abort();
  }
  if (c.bos_token_id && *c.bos_token_id < 0) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  zigzag::fuzz::QuietLogs();
  return 0;
}

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size,
                                          unsigned int seed) {
  return zigzag::fuzz::MutateJsonInput(data, size, max_size, seed);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input =
      zigzag::fuzz::ExpandShapedInput(std::string_view(reinterpret_cast<const char*>(data), size));
  const auto parts = zigzag::fuzz::SplitParts(input, 2);
  absl::StatusOr<zigzag::ModelConfig> config = zigzag::ParseModelConfig(parts[0], "config.json");
  if (!config.ok()) {
    if (config.status().message().empty()) std::abort();
    return 0;
  }
  CheckAccepted(*config);
  if (parts.size() > 1) {
    const absl::Status status =
        zigzag::ApplyGenerationConfig(parts[1], "generation_config.json", &*config);
    if (!status.ok() && status.message().empty()) std::abort();
    CheckAccepted(*config);
  }
  // Bounded here because the parser sets no upper limit on head_dim: the tables are head_dim / 2
  // floats, and a model that large would fail to load its weights long before.
  if (config->head_dim <= 4096) {
    const std::vector<float> inv_freq = zigzag::RopeInverseFrequencies(*config);
    if (inv_freq.size() != static_cast<size_t>(config->head_dim / 2)) std::abort();
  }
  return 0;
}
