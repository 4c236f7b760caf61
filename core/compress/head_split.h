// The adaptive split of a layer's budget across its KV heads (ZIGZAG.md section 8, after AdaKV):
// which positions each KV head keeps when heads may keep different counts. Host-side selection
// on pooled scores only; layer budgets come from policy.h, moving KV is core/kv's job.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace zigzag {

// The per-head floor f = floor(alpha * prefix_budget), clamped to [0, prefix_budget]. A product
// within 1e-9 (relative) of an integer counts as that integer, so that a decimal alpha means what
// it says: 0.29 * 100 is 28.999999999999996 in binary and must give 29, not 28.
int64_t AdaptiveHeadFloor(double alpha, int64_t prefix_budget);

// Kept positions of every KV head of one layer under the adaptive split. scores[g] holds KV head
// g's pooled scores (TokenScores) of the T - w_eff prefix positions; with m = B_l - w_eff:
//   - every head keeps the w_eff window positions;
//   - every head keeps its own top f = AdaptiveHeadFloor(alpha, m) prefix positions by score
//     (ties: lower position first);
//   - the remaining G * (m - f) prefix slots go to the best of all heads' remaining (head,
//     position) pairs (score descending; ties: lower head, then lower position). A head whose
//     prefix is used up simply has no candidates left, so the slots go to other heads.
// So head g keeps w_eff + f + extra_g positions, at most T, and the sizes sum to exactly G * B_l.
// B_l is first clamped to [w_eff, T] as in SelectPositions. NaN scores rank lowest. Returns [G]
// ascending positions. alpha = 1 (or G = 1) gives SelectPositions' answer for every head.
// Cost: O(G * T) expected (two nth_element passes per head, one over the pooled candidates) plus
// sorting the kept positions; never quadratic, so T = 128K is fine.
std::vector<std::vector<int32_t>> AdaptiveHeadPositions(std::span<const std::vector<float>> scores,
                                                        int64_t prompt_tokens, int32_t window,
                                                        int64_t budget, double alpha);

}  // namespace zigzag
