// Rotary-embedding inverse frequencies of a model: theta^(-2i/d) for i < d/2, with Llama-3
// ("llama3") rope scaling applied when the config asks for it. Pure math, no tensors.
#pragma once

#include <vector>

#include "core/model/model_config.h"

namespace zigzag {

// head_dim / 2 values, computed in double and rounded to float once.
std::vector<float> RopeInverseFrequencies(const ModelConfig& config);

}  // namespace zigzag
