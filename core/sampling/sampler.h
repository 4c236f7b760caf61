// Sampler: picks one token from a row of logits for one sequence, following its SamplingParams,
// with its own seeded random stream (so a seeded request reproduces whatever it is batched with).
// Order, as in Hugging Face: repetition penalty -> temperature -> top-k -> top-p -> min-p -> draw.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "core/sampling/sampling_params.h"

namespace zigzag {

struct SampledToken {
  int32_t token = 0;
  float logprob = 0.0f;  // log-softmax of the processed distribution the token was drawn from
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);

  // `logits` is one row [vocab]; `context` the prompt and tokens generated so far (for the
  // repetition penalty). Greedy (temperature 0) takes the highest logit, lowest id on ties.
  SampledToken Sample(std::span<const float> logits, std::span<const int32_t> context);

  // The processing steps, exposed for tests. Each leaves masked tokens at -infinity.
  static void ApplyRepetitionPenalty(float penalty, std::span<const int32_t> context,
                                     std::span<float> logits);
  // Keeps the k highest logits (ties at the boundary: all tokens equal to the k-th are kept).
  static void ApplyTopK(int32_t k, std::span<float> logits);
  // Keeps the smallest set of most probable tokens whose probability reaches top_p (HF semantics:
  // a token is removed when the cumulative probability of the tokens above it already >= top_p).
  static void ApplyTopP(float top_p, std::span<float> logits);
  // Removes tokens with probability < min_p * max probability.
  static void ApplyMinP(float min_p, std::span<float> logits);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<float> scratch_;
};

}  // namespace zigzag
