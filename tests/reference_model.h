// A naive float64 Llama-family forward pass for tests: whole-sequence causal attention recomputed
// from scratch, no KV cache, no Backend, written straight from the Hugging Face definitions in
// DESIGN.md. It shares nothing with core/model except reading tensors through Checkpoint.
#pragma once

#include <cstdint>
#include <vector>

#include "core/model/checkpoint.h"

namespace zigzag::testing {

class ReferenceModel {
 public:
  explicit ReferenceModel(const Checkpoint& checkpoint);

  // Logits [tokens.size()][vocab] for every position of the sequence (positions 0..T-1).
  std::vector<std::vector<double>> Logits(const std::vector<int32_t>& tokens) const;

  // The same as a compressed cache sees it: prompt queries (< prompt_length) see the whole prompt
  // (prefill runs before compression); later queries in layer l, head group g see, among prompt
  // positions, only kept_per_layer_head[l][g] (sorted), and every position after the prompt.
  // An empty outer vector means every position is visible.
  std::vector<std::vector<double>> LogitsWithKeptPositions(
      const std::vector<int32_t>& tokens, int64_t prompt_length,
      const std::vector<std::vector<std::vector<int64_t>>>& kept_per_layer_head) const;

  const ModelConfig& config() const { return config_; }

 private:
  struct Layer {
    std::vector<double> input_norm, q, k, v, q_bias, k_bias, v_bias, o, post_norm, gate, up, down;
  };
  ModelConfig config_;
  std::vector<double> embed_, final_norm_, lm_head_, inv_freq_;
  std::vector<Layer> layers_;
};

}  // namespace zigzag::testing
