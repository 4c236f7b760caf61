#include "core/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/util/check.h"

namespace zigzag {

namespace {

constexpr float kMasked = -std::numeric_limits<float>::infinity();

uint64_t SeedFor(const SamplingParams& params) {
  if (params.seed.has_value()) return *params.seed;
  std::random_device device;
  return (static_cast<uint64_t>(device()) << 32) ^ static_cast<uint64_t>(device());
}

// A uniform double in [0, 1) from the top 53 bits of one draw. Written out (rather than
// std::uniform_real_distribution) because mt19937_64 is fully specified by the standard but the
// distributions are not, so this keeps seeded results identical across standard libraries.
double UniformUnit(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

float MaxLogit(std::span<const float> logits) {
  float max = kMasked;
  for (float value : logits) max = std::max(max, value);
  return max;
}

// Sum of exp(logit - max) in float64; masked tokens add 0.
double ExpSum(std::span<const float> logits, float max) {
  double sum = 0.0;
  for (float value : logits) {
    if (value != kMasked) sum += std::exp(static_cast<double>(value) - max);
  }
  return sum;
}

// Lowest id among the highest logits (id 0 when every logit is masked).
int32_t ArgMax(std::span<const float> logits) {
  int32_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i) {
    if (logits[i] > logits[best]) best = static_cast<int32_t>(i);
  }
  return best;
}

float LogSoftmaxAt(std::span<const float> logits, int32_t token) {
  const float max = MaxLogit(logits);
  if (max == kMasked) return 0.0f;  // nothing left to normalise over; the token was forced
  const double sum = ExpSum(logits, max);
  return static_cast<float>(static_cast<double>(logits[token]) - max - std::log(sum));
}

}  // namespace

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(SeedFor(params)) {}

void Sampler::ApplyRepetitionPenalty(float penalty, std::span<const int32_t> context,
                                     std::span<float> logits) {
  if (penalty == 1.0f || context.empty()) return;
  // HF RepetitionPenaltyLogitsProcessor gathers each id's original logit once, so a token that
  // occurs many times is penalised once.
  std::vector<bool> seen(logits.size(), false);
  for (int32_t id : context) {
    // Context ids are validated against the vocabulary upstream; ignore any that are not.
    if (id < 0 || static_cast<size_t>(id) >= logits.size() || seen[id]) continue;
    seen[id] = true;
    float& logit = logits[id];
    logit = logit < 0.0f ? logit * penalty : logit / penalty;
  }
}

void Sampler::ApplyTopK(int32_t k, std::span<float> logits) {
  if (k <= 0 || static_cast<size_t>(k) >= logits.size()) return;
  std::vector<float> sorted(logits.begin(), logits.end());
  std::nth_element(sorted.begin(), sorted.begin() + (k - 1), sorted.end(), std::greater<float>());
  const float kth = sorted[k - 1];
  // As HF TopKLogitsWarper: remove what is strictly below the k-th value, so ties stay.
  for (float& value : logits) {
    if (value < kth) value = kMasked;
  }
}

void Sampler::ApplyTopP(float top_p, std::span<float> logits) {
  if (!(top_p < 1.0f) || logits.empty()) return;
  const float max = MaxLogit(logits);
  if (max == kMasked) return;
  const double sum = ExpSum(logits, max);
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  // Walk groups of equal logits from the most probable down. A group is removed when the tokens
  // strictly above it already reach top_p; tied tokens share one fate, and the first group is
  // always kept (mass above it is 0), which is the "at least one token" rule.
  double mass_above = 0.0;
  size_t begin = 0;
  while (begin < order.size()) {
    const float group_logit = logits[order[begin]];
    size_t end = begin;
    while (end < order.size() && logits[order[end]] == group_logit) ++end;
    if (begin > 0 && mass_above >= static_cast<double>(top_p)) {
      for (size_t i = begin; i < order.size(); ++i) logits[order[i]] = kMasked;
      return;
    }
    if (group_logit != kMasked) {
      mass_above +=
          static_cast<double>(end - begin) * std::exp(static_cast<double>(group_logit) - max) / sum;
    }
    begin = end;
  }
}

void Sampler::ApplyMinP(float min_p, std::span<float> logits) {
  if (!(min_p > 0.0f)) return;
  const float max = MaxLogit(logits);
  if (max == kMasked) return;
  // prob_i < min_p * prob_max  <=>  exp(logit_i - logit_max) < min_p: no normalisation needed.
  for (float& value : logits) {
    if (value != max && std::exp(static_cast<double>(value) - max) < min_p) value = kMasked;
  }
}

SampledToken Sampler::Sample(std::span<const float> logits, std::span<const int32_t> context) {
  ZZ_CHECK(!logits.empty()) << "Sample on an empty logits row";
  scratch_.assign(logits.begin(), logits.end());
  std::span<float> work(scratch_);
  // A NaN logit (a model fault) must never be drawn and would break every comparison below.
  for (float& value : work) {
    if (std::isnan(value)) value = kMasked;
  }
  ApplyRepetitionPenalty(params_.repetition_penalty, context, work);

  if (params_.temperature == 0.0f) {
    const int32_t token = ArgMax(work);
    return {token, LogSoftmaxAt(work, token)};
  }

  // Shift by the max before dividing so that a tiny temperature cannot overflow to inf - inf.
  // Every later step (and the softmax) is invariant to the shift.
  const float max = MaxLogit(work);
  if (max == kMasked) return {0, 0.0f};
  for (float& value : work) {
    if (value != kMasked) value = (value - max) / params_.temperature;
  }
  ApplyTopK(params_.top_k, work);
  ApplyTopP(params_.top_p, work);
  ApplyMinP(params_.min_p, work);

  // Inverse-CDF walk in id order over the unnormalised float64 weights.
  const float shifted_max = MaxLogit(work);
  const double sum = ExpSum(work, shifted_max);
  const double target = UniformUnit(rng_) * sum;
  double cumulative = 0.0;
  int32_t chosen = -1;
  for (size_t i = 0; i < work.size(); ++i) {
    if (work[i] == kMasked) continue;
    const double weight = std::exp(static_cast<double>(work[i]) - shifted_max);
    if (weight == 0.0) continue;
    cumulative += weight;
    chosen = static_cast<int32_t>(i);  // also the fallback when rounding leaves target >= sum
    if (target < cumulative) break;
  }
  ZZ_CHECK(chosen >= 0) << "no token left to sample";
  return {chosen, LogSoftmaxAt(work, chosen)};
}

}  // namespace zigzag
