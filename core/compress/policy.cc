#include "core/compress/policy.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <functional>
#include <limits>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "core/compress/head_split.h"
#include "core/util/check.h"
#include "core/util/status_macros.h"

namespace zigzag {
namespace {

// A prefix sum of probabilities counts as reaching its target when it is within this relative
// distance of it. Inputs come from float32 attention (about 1e-7 relative), while summing in
// float64 drifts by about 1e-16 per term, so 1e-9 absorbs the float64 drift (eight 0.1s sum to
// 0.7999999999999999, which must reach 0.8) without changing any answer float32 can express.
constexpr double kReachTolerance = 1e-9;

// Remainders are compared after rounding to this many steps per token, so that two layers whose
// remainders differ only by float64 noise tie, and ties go to the lower layer.
constexpr double kRemainderSteps = 1e9;

int64_t EffectiveWindow(int64_t window, int64_t prompt_tokens) {
  return std::clamp<int64_t>(window, 0, std::max<int64_t>(prompt_tokens, 0));
}

// Selection treats NaN as the lowest score so that sorting stays well defined.
float SortableScore(float score) {
  return std::isnan(score) ? -std::numeric_limits<float>::infinity() : score;
}

// out[j] = max of values[i] over |i - j| <= radius, i inside [0, n): max-pooling with stride 1
// and "same" padding where the padding never wins. O(n) with a monotone deque of candidates.
std::vector<double> SlidingMax(std::span<const float> values, int64_t radius) {
  const int64_t n = static_cast<int64_t>(values.size());
  radius = std::min(radius, n);  // a wider kernel sees the whole row anyway
  std::vector<double> out(n);
  std::deque<int64_t> candidates;  // indices with strictly decreasing values
  for (int64_t i = 0; i < n + radius; ++i) {
    if (i < n) {
      while (!candidates.empty() && values[candidates.back()] <= values[i]) candidates.pop_back();
      candidates.push_back(i);
    }
    const int64_t j = i - radius;  // the output whose window [j - radius, j + radius] is complete
    if (j < 0) continue;
    while (candidates.front() < j - radius) candidates.pop_front();
    out[j] = values[candidates.front()];
  }
  return out;
}

absl::Status ValidateSummary(const CompressionParams& params, const WindowSummary& summary) {
  const int64_t tokens = summary.prompt_tokens;
  if (tokens < 1 || tokens > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat("window summary: prompt_tokens must be in [1, 2^31 - 1], got ", tokens));
  }
  if (summary.num_heads < 1 || summary.num_kv_heads < 1 ||
      summary.num_heads % summary.num_kv_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("window summary: num_heads (", summary.num_heads,
                     ") must be a positive multiple of num_kv_heads (", summary.num_kv_heads, ")"));
  }
  if (summary.window < 1 || summary.window > tokens) {
    return absl::InvalidArgumentError(absl::StrCat("window summary: window must be in [1, ", tokens,
                                                   "] (prompt_tokens), got ", summary.window));
  }
  const int64_t expected_window = std::min<int64_t>(params.window, tokens);
  if (summary.window != expected_window) {
    return absl::InvalidArgumentError(absl::StrCat(
        "window summary: window (", summary.window, ") must equal min(kv_compression.window (",
        params.window, "), prompt_tokens (", tokens, ")) = ", expected_window));
  }
  if (summary.num_layers < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("window summary: num_layers must be >= 1, got ", summary.num_layers));
  }
  // Scores are needed only when something will be evicted (T > B_avg).
  const bool needs_scores =
      (params.policy == KvPolicy::kSnapKv || params.policy == KvPolicy::kPyramidKv ||
       params.policy == KvPolicy::kZigZag) &&
      tokens > AverageBudget(params, tokens);
  if ((needs_scores || !summary.window_mass.empty()) &&
      static_cast<int64_t>(summary.window_mass.size()) != summary.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat(
        "window summary: window_mass has ", summary.window_mass.size(),
        " layers, expected num_layers = ", summary.num_layers, " (policy ",
        KvPolicyName(params.policy), " needs one [num_heads * prompt_tokens] entry per layer)"));
  }
  const int64_t per_layer = static_cast<int64_t>(summary.num_heads) * tokens;
  for (size_t l = 0; l < summary.window_mass.size(); ++l) {
    const std::vector<float>& mass = summary.window_mass[l];
    if (static_cast<int64_t>(mass.size()) != per_layer) {
      return absl::InvalidArgumentError(
          absl::StrCat("window summary: window_mass[", l, "] has ", mass.size(),
                       " values, expected num_heads * prompt_tokens = ", summary.num_heads, " * ",
                       tokens, " = ", per_layer));
    }
    for (int64_t index = 0; index < per_layer; ++index) {
      if (!(mass[index] >= 0.0f && std::isfinite(mass[index]))) {
        return absl::InvalidArgumentError(absl::StrCat(
            "window summary: window_mass[", l, "] holds ", mass[index], " at head ", index / tokens,
            ", position ", index % tokens, "; attention mass must be finite and >= 0"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

int64_t HeadMinimumBudget(std::span<const double> probabilities, double tau) {
  // Only positive entries can help; NaN fails "> 0" and is dropped with the zeros.
  std::vector<double> values;
  values.reserve(probabilities.size());
  double total = 0.0;
  for (double p : probabilities) {
    if (p > 0.0) {
      values.push_back(p);
      total += p;
    }
  }
  if (values.empty()) return 0;  // a head with no mass needs no token
  // The rule: the smallest k whose k largest values sum to >= min(tau, total), up to
  // kReachTolerance. min() makes tau = 1 mean "all the mass there is" when float rounding left
  // the total a hair below 1; then k is the number of nonzero entries (any tail under 1e-9 of the
  // mass aside).
  const double target = std::min(tau, total) * (1.0 - kReachTolerance);
  if (target <= 0.0) return 0;

  // Sort only as much as needed: order the top `sorted` values, doubling the prefix until the
  // running sum reaches the target. Each round partitions the unsorted rest, so the prefix stays
  // descending and the running sum equals a full descending sort's.
  const int64_t n = static_cast<int64_t>(values.size());
  int64_t sorted = 0;
  double sum = 0.0;
  for (int64_t chunk = 64; sorted < n; chunk *= 2) {
    const int64_t end = std::min(n, sorted + chunk);
    auto first = values.begin() + sorted;
    std::nth_element(first, values.begin() + end - 1, values.end(), std::greater<>());
    std::sort(first, values.begin() + end, std::greater<>());
    for (int64_t k = sorted; k < end; ++k) {
      sum += values[k];
      if (sum >= target) return k + 1;
    }
    sorted = end;
  }
  return n;  // unreachable in exact arithmetic: the whole sum is the total
}

double LayerMinimumBudget(std::span<const float> mass, int32_t num_heads, int64_t prompt_tokens,
                          int32_t window, double tau) {
  ZZ_CHECK(num_heads >= 1 && static_cast<int64_t>(mass.size()) == num_heads * prompt_tokens)
      << "mass has " << mass.size() << " values for " << num_heads << " heads x " << prompt_tokens;
  const double window_queries = static_cast<double>(EffectiveWindow(window, prompt_tokens));
  if (window_queries <= 0.0) return 0.0;
  std::vector<double> probabilities(prompt_tokens);
  double sum_mba = 0.0;
  for (int32_t h = 0; h < num_heads; ++h) {
    const float* row = mass.data() + h * prompt_tokens;
    for (int64_t j = 0; j < prompt_tokens; ++j) probabilities[j] = row[j] / window_queries;
    sum_mba += static_cast<double>(HeadMinimumBudget(probabilities, tau));
  }
  return sum_mba / num_heads;
}

std::vector<int64_t> ZigZagBudgets(std::span<const double> lmba, int64_t average_budget,
                                   int32_t window, double rho, int64_t prompt_tokens) {
  const int64_t num_layers = static_cast<int64_t>(lmba.size());
  const int64_t cap = std::max<int64_t>(prompt_tokens, 0);
  const int64_t floor_tokens = EffectiveWindow(window, prompt_tokens);
  // (ours) The window is always kept: B_avg below w_eff is raised to it. At B_avg >= T every
  // layer keeps T, which is also min(L * B_avg, L * T).
  const int64_t average = std::max(average_budget, floor_tokens);
  if (average >= cap) return std::vector<int64_t>(num_layers, cap);

  // Layer uncertainty u_l; negative or NaN LMBA count as 0.
  std::vector<double> share(num_layers);
  double lmba_total = 0.0;
  for (int64_t l = 0; l < num_layers; ++l) {
    share[l] = lmba[l] > 0.0 ? lmba[l] : 0.0;
    lmba_total += share[l];
  }
  if (!(lmba_total > 0.0)) return std::vector<int64_t>(num_layers, average);
  for (double& u : share) u /= lmba_total;

  // The paper's bounded minimum: every layer gets B_min, the rest is split by uncertainty.
  const double minimum =
      std::max(std::clamp(rho, 0.0, 1.0) * average, static_cast<double>(floor_tokens));
  const double spread = (static_cast<double>(average) - minimum) * static_cast<double>(num_layers);
  std::vector<double> budget(num_layers);
  for (int64_t l = 0; l < num_layers; ++l) budget[l] = minimum + spread * share[l];

  // (ours) Cap at T and pour the excess into the uncapped layers by their u_l (equally when they
  // all have u_l = 0), until nothing exceeds T. Each round caps at least one more layer, and
  // L * B_avg < L * T guarantees room, so this ends within L rounds.
  std::vector<bool> capped(num_layers, false);
  for (int64_t round = 0; round <= num_layers; ++round) {
    double excess = 0.0;
    for (int64_t l = 0; l < num_layers; ++l) {
      if (!capped[l] && budget[l] > static_cast<double>(cap)) {
        excess += budget[l] - static_cast<double>(cap);
        budget[l] = static_cast<double>(cap);
        capped[l] = true;
      }
    }
    if (excess <= 0.0) break;
    double open_share = 0.0;
    int64_t open_layers = 0;
    for (int64_t l = 0; l < num_layers; ++l) {
      if (!capped[l]) {
        open_share += share[l];
        ++open_layers;
      }
    }
    if (open_layers == 0) break;
    for (int64_t l = 0; l < num_layers; ++l) {
      if (capped[l]) continue;
      budget[l] += open_share > 0.0 ? excess * share[l] / open_share
                                    : excess / static_cast<double>(open_layers);
    }
  }

  // Largest remainder rounding to exactly L * B_avg: floors first, then one more token to the
  // layers with the largest remainders (ties: lower layer first), never past T.
  const int64_t target = num_layers * average;
  std::vector<int64_t> result(num_layers);
  std::vector<int64_t> remainder_key(num_layers);
  int64_t assigned = 0;
  for (int64_t l = 0; l < num_layers; ++l) {
    const double whole = std::floor(budget[l]);
    result[l] = std::clamp(static_cast<int64_t>(whole), floor_tokens, cap);
    remainder_key[l] = std::llround((budget[l] - whole) * kRemainderSteps);
    assigned += result[l];
  }
  std::vector<int64_t> order(num_layers);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return remainder_key[a] > remainder_key[b]; });
  // Float64 noise can only move the deficit by a token or so; the loops still end exactly on the
  // target because the layers always have room between w_eff and T.
  while (assigned < target) {
    int64_t given = 0;
    for (int64_t l : order) {
      if (assigned == target) break;
      if (result[l] < cap) ++result[l], ++assigned, ++given;
    }
    if (given == 0) break;
  }
  while (assigned > target) {
    int64_t taken = 0;
    for (auto it = order.rbegin(); it != order.rend() && assigned > target; ++it) {
      if (result[*it] > floor_tokens) --result[*it], --assigned, ++taken;
    }
    if (taken == 0) break;
  }
  ZZ_CHECK_EQ(assigned, target);
  return result;
}

std::vector<int64_t> PyramidBudgets(int64_t num_layers, int64_t average_budget, int32_t window,
                                    double beta, int64_t prompt_tokens) {
  const int64_t cap = std::max<int64_t>(prompt_tokens, 0);
  const int64_t floor_tokens = EffectiveWindow(window, prompt_tokens);
  const int64_t average = std::max(average_budget, floor_tokens);  // (ours) as in ZigZagBudgets
  std::vector<int64_t> result(std::max<int64_t>(num_layers, 0), std::min(average, cap));
  if (num_layers <= 1) return result;
  // Layer 0 gets the most: from max down to min, linearly; every layer also keeps the window.
  const double m = static_cast<double>(average - floor_tokens);
  const double lowest = m / beta;
  const double highest = 2.0 * m - lowest;
  for (int64_t l = 0; l < num_layers; ++l) {
    const double above_window =
        highest - static_cast<double>(l) * (highest - lowest) / static_cast<double>(num_layers - 1);
    result[l] = std::min(cap, floor_tokens + static_cast<int64_t>(std::llround(above_window)));
  }
  return result;
}

std::vector<std::vector<float>> TokenScores(std::span<const float> mass, int32_t num_heads,
                                            int32_t num_kv_heads, int64_t prompt_tokens,
                                            int32_t window, int32_t kernel) {
  ZZ_CHECK(num_heads >= 1 && num_kv_heads >= 1 && num_heads % num_kv_heads == 0)
      << num_heads << " heads, " << num_kv_heads << " KV heads";
  ZZ_CHECK(static_cast<int64_t>(mass.size()) == num_heads * prompt_tokens)
      << "mass has " << mass.size() << " values for " << num_heads << " heads x " << prompt_tokens;
  const int64_t prefix = prompt_tokens - EffectiveWindow(window, prompt_tokens);
  const int64_t radius = std::max<int32_t>(kernel, 1) / 2;
  const int32_t group = num_heads / num_kv_heads;
  std::vector<std::vector<float>> scores(num_kv_heads, std::vector<float>(prefix));
  std::vector<double> sum(prefix);
  for (int32_t g = 0; g < num_kv_heads; ++g) {
    std::fill(sum.begin(), sum.end(), 0.0);
    // Query heads g * group ... (g + 1) * group - 1 share KV head g (as repeat_kv lays them out).
    for (int32_t h = g * group; h < (g + 1) * group; ++h) {
      // Only prefix positions are pooled: window tokens are kept anyway and must not spill their
      // (large) mass onto their neighbours.
      const std::vector<double> pooled =
          SlidingMax(mass.subspan(static_cast<size_t>(h * prompt_tokens), prefix), radius);
      for (int64_t j = 0; j < prefix; ++j) sum[j] += pooled[j];
    }
    for (int64_t j = 0; j < prefix; ++j) scores[g][j] = static_cast<float>(sum[j] / group);
  }
  return scores;
}

std::vector<int32_t> SelectPositions(std::span<const float> scores, int64_t prompt_tokens,
                                     int32_t window, int64_t budget) {
  const int64_t window_tokens = EffectiveWindow(window, prompt_tokens);
  const int64_t prefix = prompt_tokens - window_tokens;
  ZZ_CHECK(static_cast<int64_t>(scores.size()) == prefix)
      << scores.size() << " scores for a prefix of " << prefix << " positions";
  // A budget below the window still keeps the window; above T keeps everything.
  const int64_t chosen = std::clamp(budget, window_tokens, prompt_tokens) - window_tokens;
  std::vector<int32_t> positions(prefix);
  std::iota(positions.begin(), positions.end(), 0);
  if (chosen < prefix) {
    auto better = [&](int32_t a, int32_t b) {
      const float score_a = SortableScore(scores[a]);
      const float score_b = SortableScore(scores[b]);
      return score_a != score_b ? score_a > score_b : a < b;
    };
    std::nth_element(positions.begin(), positions.begin() + chosen, positions.end(), better);
    positions.resize(chosen);
    std::sort(positions.begin(), positions.end());
  }
  for (int64_t j = prefix; j < prompt_tokens; ++j) positions.push_back(static_cast<int32_t>(j));
  return positions;
}

std::vector<int32_t> StreamingPositions(int64_t prompt_tokens, int32_t sink_tokens,
                                        int64_t budget) {
  const int64_t tokens = std::max<int64_t>(prompt_tokens, 0);
  const int64_t kept = std::clamp<int64_t>(budget, 0, tokens);
  const int64_t sinks = std::clamp<int64_t>(sink_tokens, 0, kept);
  std::vector<int32_t> positions;
  positions.reserve(kept);
  for (int64_t j = 0; j < sinks; ++j) positions.push_back(static_cast<int32_t>(j));
  for (int64_t j = tokens - (kept - sinks); j < tokens; ++j) {
    positions.push_back(static_cast<int32_t>(j));
  }
  return positions;
}

absl::StatusOr<CompressionPlan> PlanCompression(const CompressionParams& params,
                                                const WindowSummary& summary) {
  RETURN_IF_ERROR(ValidateCompressionParams(params));
  RETURN_IF_ERROR(ValidateSummary(params, summary));
  const int64_t tokens = summary.prompt_tokens;
  const int64_t num_layers = summary.num_layers;
  const int32_t window = summary.window;

  CompressionPlan plan;
  plan.policy = params.policy;
  plan.head_budgets = EffectiveHeadBudgets(params);
  plan.average_budget = AverageBudget(params, tokens);  // already >= w_eff (ours)
  // (ours) With T <= B_avg nothing would be evicted under any policy: keep the cache as it is.
  if (params.policy == KvPolicy::kFull || tokens <= plan.average_budget) {
    plan.budgets.assign(num_layers, tokens);
    return plan;
  }
  plan.compressed = true;

  switch (params.policy) {
    case KvPolicy::kStreaming:
    case KvPolicy::kSnapKv:
      plan.budgets.assign(num_layers, plan.average_budget);
      break;
    case KvPolicy::kPyramidKv:
      plan.budgets =
          PyramidBudgets(num_layers, plan.average_budget, window, params.pyramid_beta, tokens);
      break;
    case KvPolicy::kZigZag:
      plan.lmba.reserve(num_layers);
      for (const std::vector<float>& mass : summary.window_mass) {
        plan.lmba.push_back(
            LayerMinimumBudget(mass, summary.num_heads, tokens, window, params.tau));
      }
      plan.budgets = ZigZagBudgets(plan.lmba, plan.average_budget, window, params.rho, tokens);
      break;
    case KvPolicy::kFull:
      break;  // handled above
  }

  plan.kept.resize(num_layers);
  for (int64_t l = 0; l < num_layers; ++l) {
    if (params.policy == KvPolicy::kStreaming) {
      plan.kept[l].assign(summary.num_kv_heads,
                          StreamingPositions(tokens, params.sink_tokens, plan.budgets[l]));
      continue;
    }
    const std::vector<std::vector<float>> scores =
        TokenScores(summary.window_mass[l], summary.num_heads, summary.num_kv_heads, tokens, window,
                    params.kernel);
    if (plan.head_budgets == HeadBudgets::kAdaptive) {
      plan.kept[l] = AdaptiveHeadPositions(scores, tokens, window, plan.budgets[l], params.alpha);
      continue;
    }
    plan.kept[l].reserve(summary.num_kv_heads);
    for (const std::vector<float>& head_scores : scores) {
      plan.kept[l].push_back(SelectPositions(head_scores, tokens, window, plan.budgets[l]));
    }
  }
  plan.head_counts.resize(num_layers);
  for (int64_t l = 0; l < num_layers; ++l) {
    for (const std::vector<int32_t>& head : plan.kept[l]) {
      plan.head_counts[l].push_back(static_cast<int64_t>(head.size()));
    }
  }
  return plan;
}

bool CompressionPlan::HeadCountsUniform() const {
  for (size_t l = 0; l < head_counts.size() && l < budgets.size(); ++l) {
    for (int64_t count : head_counts[l]) {
      if (count != budgets[l]) return false;
    }
  }
  return true;
}

}  // namespace zigzag
