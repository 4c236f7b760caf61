#include "core/compress/head_split.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/util/check.h"

namespace zigzag {
namespace {

// Selection treats NaN as the lowest score, as SelectPositions does.
float SortableScore(float score) {
  return std::isnan(score) ? -std::numeric_limits<float>::infinity() : score;
}

// One (head, position) pair competing for the shared slots.
struct Candidate {
  float score;
  int32_t head;
  int32_t position;
};

}  // namespace

int64_t AdaptiveHeadFloor(double alpha, int64_t prefix_budget) {
  if (prefix_budget <= 0 || !(alpha > 0.0)) return 0;  // NaN alpha: no floor
  const double product = alpha * static_cast<double>(prefix_budget);
  const double nearest = std::round(product);
  const double whole =
      std::abs(product - nearest) <= 1e-9 * std::max(1.0, product) ? nearest : std::floor(product);
  return std::clamp<int64_t>(static_cast<int64_t>(whole), 0, prefix_budget);
}

std::vector<std::vector<int32_t>> AdaptiveHeadPositions(std::span<const std::vector<float>> scores,
                                                        int64_t prompt_tokens, int32_t window,
                                                        int64_t budget, double alpha) {
  const int64_t tokens = std::max<int64_t>(prompt_tokens, 0);
  const int64_t window_tokens = std::clamp<int64_t>(window, 0, tokens);
  const int64_t prefix = tokens - window_tokens;
  const int64_t num_heads = static_cast<int64_t>(scores.size());
  for (const std::vector<float>& head_scores : scores) {
    ZZ_CHECK(static_cast<int64_t>(head_scores.size()) == prefix)
        << head_scores.size() << " scores for a prefix of " << prefix << " positions";
  }
  const int64_t per_head = std::clamp(budget, window_tokens, tokens) - window_tokens;  // m
  const int64_t floor_tokens = AdaptiveHeadFloor(alpha, per_head);                     // f
  const int64_t shared = num_heads * (per_head - floor_tokens);  // slots all heads compete for

  // A head can win at most `shared` of the shared slots, so only its best f + shared prefix
  // positions can ever be kept: candidates beyond them are never looked at again. That bounds the
  // pooled candidates by G * min(T, f + shared) and keeps the work linear in T.
  const int64_t reach = std::min(prefix, floor_tokens + shared);
  std::vector<std::vector<int32_t>> kept(num_heads);
  std::vector<Candidate> candidates;
  candidates.reserve(num_heads * (reach - floor_tokens));
  std::vector<int32_t> order(prefix);
  for (int64_t g = 0; g < num_heads; ++g) {
    const std::vector<float>& head_scores = scores[g];
    // Within one head, (score descending, position ascending) is the pooled order restricted to
    // that head, so the head's own top-f and its best leftovers agree with the pooled ranking.
    auto better = [&](int32_t a, int32_t b) {
      const float score_a = SortableScore(head_scores[a]);
      const float score_b = SortableScore(head_scores[b]);
      return score_a != score_b ? score_a > score_b : a < b;
    };
    std::iota(order.begin(), order.end(), 0);
    if (reach < prefix) std::nth_element(order.begin(), order.begin() + reach, order.end(), better);
    if (floor_tokens < reach) {
      std::nth_element(order.begin(), order.begin() + floor_tokens, order.begin() + reach, better);
    }
    kept[g].reserve(floor_tokens + window_tokens);
    kept[g].assign(order.begin(), order.begin() + floor_tokens);
    for (int64_t r = floor_tokens; r < reach; ++r) {
      candidates.push_back(
          {SortableScore(head_scores[order[r]]), static_cast<int32_t>(g), order[r]});
    }
  }

  // The pooled order is total (no two candidates share head and position), so nth_element's
  // first `shared` entries are exactly the winners, whatever the ties.
  auto pooled_better = [](const Candidate& a, const Candidate& b) {
    if (a.score != b.score) return a.score > b.score;
    return a.head != b.head ? a.head < b.head : a.position < b.position;
  };
  const int64_t winners = std::min<int64_t>(shared, static_cast<int64_t>(candidates.size()));
  ZZ_CHECK_EQ(winners, shared);  // m <= T - w_eff leaves every head at least m - f candidates
  if (winners < static_cast<int64_t>(candidates.size())) {
    std::nth_element(candidates.begin(), candidates.begin() + winners, candidates.end(),
                     pooled_better);
  }
  for (int64_t r = 0; r < winners; ++r) kept[candidates[r].head].push_back(candidates[r].position);

  for (std::vector<int32_t>& head : kept) {
    std::sort(head.begin(), head.end());
    for (int64_t j = prefix; j < tokens; ++j) head.push_back(static_cast<int32_t>(j));
  }
  return kept;
}

}  // namespace zigzag
