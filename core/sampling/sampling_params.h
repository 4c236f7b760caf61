// SamplingParams: how one request picks its next tokens and when it stops, and their validation.
// Plain data; the Sampler applies it.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"

namespace zigzag {

struct SamplingParams {
  float temperature = 1.0f;         // 0 = greedy
  int32_t top_k = 0;                // 0 = off
  float top_p = 1.0f;               // in (0, 1]; 1 = off
  float min_p = 0.0f;               // in [0, 1]; 0 = off
  float repetition_penalty = 1.0f;  // > 0; 1 = off (HF: divide positive logits, multiply negative)
  std::optional<uint64_t> seed;     // unset = a random seed per request
  int32_t max_tokens = 16;          // >= 1
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  bool logprobs = false;  // report the log-probability of each chosen token
};

// InvalidArgument naming the field and the allowed range: NaN or negative temperature, top_k < 0,
// top_p outside (0, 1], min_p outside [0, 1], repetition_penalty <= 0 or NaN, max_tokens < 1,
// a stop token id outside [0, vocab_size).
absl::Status ValidateSamplingParams(const SamplingParams& params, int64_t vocab_size);

}  // namespace zigzag
