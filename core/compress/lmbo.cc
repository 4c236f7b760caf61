#include "core/compress/lmbo.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "core/compress/policy.h"
#include "core/util/status_macros.h"

namespace zigzag {
namespace {

// One candidate cache: for every KV head its kept positions, ascending.
using KeptSet = std::vector<std::vector<int32_t>>;

absl::Status CheckSize(const char* field, size_t actual, int64_t expected, const char* shape) {
  if (static_cast<int64_t>(actual) != expected) {
    return absl::InvalidArgumentError(absl::StrCat("layer attention sample: ", field, " has ",
                                                   actual, " values, expected ", shape, " = ",
                                                   expected));
  }
  return absl::OkStatus();
}

// Cosine of two d-vectors; 1 when both are zero (nothing changed), 0 when only one is.
double Cosine(const std::vector<double>& a, const std::vector<double>& b) {
  double dot = 0.0, norm_a = 0.0, norm_b = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    dot += a[i] * b[i];
    norm_a += a[i] * a[i];
    norm_b += b[i] * b[i];
  }
  if (norm_a == 0.0 && norm_b == 0.0) return 1.0;
  if (norm_a == 0.0 || norm_b == 0.0) return 0.0;
  return dot / (std::sqrt(norm_a) * std::sqrt(norm_b));
}

// out = softmax-weighted sum of the values at `positions` (all <= the query's cache index),
// given the query's logits over every causal position. Zero when `positions` is empty.
void WeightedValues(std::span<const double> logits, std::span<const int32_t> positions,
                    const LayerAttentionSample& sample, int32_t kv_head, std::vector<double>* out) {
  std::fill(out->begin(), out->end(), 0.0);
  if (positions.empty()) return;
  double max_logit = -std::numeric_limits<double>::infinity();
  for (int32_t j : positions) max_logit = std::max(max_logit, logits[j]);
  const int64_t d = sample.head_dim;
  double total = 0.0;
  for (int32_t j : positions) {
    const double weight = std::exp(logits[j] - max_logit);
    total += weight;
    const float* value = sample.values.data() + (j * sample.num_kv_heads + kv_head) * d;
    for (int64_t c = 0; c < d; ++c) (*out)[c] += weight * value[c];
  }
  for (double& x : *out) x /= total;
}

// Mean output cosine of every candidate cache against the full one, one pass over the window
// queries: each query's logits are computed once and reused for all candidates.
std::vector<double> MeanCosines(const LayerAttentionSample& sample,
                                const std::vector<KeptSet>& candidates) {
  const int64_t tokens = sample.prompt_tokens;
  const int32_t window = sample.window;
  const int32_t heads = sample.num_heads;
  const int32_t group = sample.num_heads / sample.num_kv_heads;
  const int64_t d = sample.head_dim;
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));

  std::vector<double> cosine_sum(candidates.size(), 0.0);
  std::vector<double> logits(tokens);
  std::vector<int32_t> all_causal, kept_causal;
  std::vector<double> full(d), partial(d);
  for (int32_t i = 0; i < window; ++i) {
    const int64_t index = tokens - window + i;  // the query's own cache index
    all_causal.resize(index + 1);
    for (int64_t j = 0; j <= index; ++j) all_causal[j] = static_cast<int32_t>(j);
    for (int32_t h = 0; h < heads; ++h) {
      const int32_t g = h / group;
      const float* query = sample.window_queries.data() + (int64_t{i} * heads + h) * d;
      for (int64_t j = 0; j <= index; ++j) {
        const float* key = sample.keys.data() + (j * sample.num_kv_heads + g) * d;
        double dot = 0.0;
        for (int64_t c = 0; c < d; ++c) dot += static_cast<double>(query[c]) * key[c];
        logits[j] = dot * scale;
      }
      WeightedValues(logits, all_causal, sample, g, &full);
      for (size_t s = 0; s < candidates.size(); ++s) {
        const std::vector<int32_t>& kept = candidates[s][g];
        // Kept positions are ascending: the causal ones are a prefix.
        const auto end = std::upper_bound(kept.begin(), kept.end(), static_cast<int32_t>(index));
        WeightedValues(logits, std::span<const int32_t>(kept.begin(), end), sample, g, &partial);
        cosine_sum[s] += Cosine(partial, full);
      }
    }
  }
  const double pairs = static_cast<double>(window) * heads;
  for (double& sum : cosine_sum) sum /= pairs;
  return cosine_sum;
}

}  // namespace

absl::Status ValidateLayerAttentionSample(const LayerAttentionSample& sample) {
  const int64_t tokens = sample.prompt_tokens;
  if (tokens < 1 || tokens > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "layer attention sample: prompt_tokens must be in [1, 2^31 - 1], got ", tokens));
  }
  if (sample.window < 1 || sample.window > tokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer attention sample: window must be in [1, prompt_tokens = ", tokens,
                     "], got ", sample.window));
  }
  if (sample.num_heads < 1 || sample.num_kv_heads < 1 ||
      sample.num_heads % sample.num_kv_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer attention sample: num_heads (", sample.num_heads,
                     ") must be a positive multiple of num_kv_heads (", sample.num_kv_heads, ")"));
  }
  if (sample.head_dim < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer attention sample: head_dim must be >= 1, got ", sample.head_dim));
  }
  const int64_t w = sample.window, h = sample.num_heads, g = sample.num_kv_heads,
                d = sample.head_dim;
  RETURN_IF_ERROR(CheckSize("window_queries", sample.window_queries.size(), w * h * d,
                            "window * num_heads * head_dim"));
  RETURN_IF_ERROR(CheckSize("keys", sample.keys.size(), tokens * g * d,
                            "prompt_tokens * num_kv_heads * head_dim"));
  RETURN_IF_ERROR(CheckSize("values", sample.values.size(), tokens * g * d,
                            "prompt_tokens * num_kv_heads * head_dim"));
  RETURN_IF_ERROR(
      CheckSize("window_mass", sample.window_mass.size(), h * tokens, "num_heads * prompt_tokens"));
  return absl::OkStatus();
}

absl::StatusOr<double> MeanOutputCosine(const LayerAttentionSample& sample,
                                        std::span<const std::vector<int32_t>> kept) {
  RETURN_IF_ERROR(ValidateLayerAttentionSample(sample));
  KeptSet candidate;
  if (kept.empty()) {
    std::vector<int32_t> every(sample.prompt_tokens);
    for (int64_t j = 0; j < sample.prompt_tokens; ++j) every[j] = static_cast<int32_t>(j);
    candidate.assign(sample.num_kv_heads, every);
  } else {
    if (static_cast<int64_t>(kept.size()) != sample.num_kv_heads) {
      return absl::InvalidArgumentError(absl::StrCat(
          "kept has ", kept.size(), " KV heads, expected num_kv_heads = ", sample.num_kv_heads));
    }
    for (size_t g = 0; g < kept.size(); ++g) {
      for (int32_t j : kept[g]) {
        if (j < 0 || j >= sample.prompt_tokens) {
          return absl::InvalidArgumentError(
              absl::StrCat("kept[", g, "] holds position ", j,
                           ", outside [0, prompt_tokens = ", sample.prompt_tokens, ")"));
        }
      }
      std::vector<int32_t>& sorted = candidate.emplace_back(kept[g]);
      std::sort(sorted.begin(), sorted.end());
      sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
    }
  }
  return MeanCosines(sample, {candidate})[0];
}

std::vector<int64_t> OutputBudgetGrid(int64_t prompt_tokens, int32_t window) {
  std::vector<int64_t> grid;
  if (prompt_tokens < 1) return grid;
  const int64_t first = std::clamp<int64_t>(window, 1, prompt_tokens);
  grid.push_back(first);
  for (int64_t power = 1; power < prompt_tokens; power *= 2) {
    if (power > first) grid.push_back(power);
  }
  if (grid.back() != prompt_tokens) grid.push_back(prompt_tokens);
  return grid;
}

absl::StatusOr<LayerOutputBudget> MeasureLayerOutputBudget(const LayerAttentionSample& sample,
                                                           int32_t kernel, double tau_o) {
  RETURN_IF_ERROR(ValidateLayerAttentionSample(sample));
  if (kernel < 1 || kernel % 2 == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("kernel must be a positive odd number, got ", kernel));
  }
  if (!(tau_o > 0.0 && tau_o <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("tau_o must be in (0, 1], got ", tau_o));
  }
  const std::vector<std::vector<float>> scores =
      TokenScores(sample.window_mass, sample.num_heads, sample.num_kv_heads, sample.prompt_tokens,
                  sample.window, kernel);
  LayerOutputBudget result;
  result.budgets = OutputBudgetGrid(sample.prompt_tokens, sample.window);
  std::vector<KeptSet> candidates;
  candidates.reserve(result.budgets.size());
  for (int64_t budget : result.budgets) {
    KeptSet& candidate = candidates.emplace_back();
    for (const std::vector<float>& head_scores : scores) {
      candidate.push_back(
          SelectPositions(head_scores, sample.prompt_tokens, sample.window, budget));
    }
  }
  result.mean_cosine = MeanCosines(sample, candidates);
  result.lmbo = sample.prompt_tokens;
  for (size_t s = 0; s < result.budgets.size(); ++s) {
    if (result.mean_cosine[s] >= tau_o) {
      result.lmbo = result.budgets[s];
      break;
    }
  }
  return result;
}

}  // namespace zigzag
