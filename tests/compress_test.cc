// Tests of the compression policies (core/compress) against references written here: brute-force
// MBA counts over subsets, hand-worked budget examples, an exact water-filling solution for the
// ZigZag allocation, and a naive float64 attention -> window mass -> scores -> selection pipeline.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/compress/compression_params.h"
#include "core/compress/policy.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace zigzag {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Parameters ------------------------------------------------------------------------------------

TEST(CompressionParamsTest, PolicyNamesRoundTrip) {
  for (KvPolicy policy : {KvPolicy::kFull, KvPolicy::kStreaming, KvPolicy::kSnapKv,
                          KvPolicy::kPyramidKv, KvPolicy::kZigZag}) {
    absl::StatusOr<KvPolicy> parsed = ParseKvPolicy(KvPolicyName(policy));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, policy);
  }
  EXPECT_STREQ(KvPolicyName(KvPolicy::kPyramidKv), "pyramidkv");
  absl::StatusOr<KvPolicy> bad = ParseKvPolicy("ZigZag");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()),
              HasSubstr("\"ZigZag\" is unknown; accepted: full, streaming, snapkv, pyramidkv, "
                        "zigzag"));
}

CompressionParams Snap(int64_t tokens) {
  CompressionParams params;
  params.policy = KvPolicy::kSnapKv;
  params.tokens_per_layer = tokens;
  return params;
}

TEST(CompressionParamsTest, DefaultsAndFullAreValid) {
  EXPECT_TRUE(ValidateCompressionParams(CompressionParams{}).ok());
  EXPECT_TRUE(ValidateCompressionParams(Snap(64)).ok());
  CompressionParams ratio = Snap(64);
  ratio.tokens_per_layer.reset();
  ratio.ratio = 1.0;
  EXPECT_TRUE(ValidateCompressionParams(ratio).ok());
}

TEST(CompressionParamsTest, EveryBadFieldIsNamed) {
  struct Case {
    CompressionParams params;
    std::string message;
  };
  std::vector<Case> cases;
  auto add = [&](auto edit, std::string message) {
    CompressionParams params = Snap(64);
    edit(params);
    cases.push_back({params, std::move(message)});
  };
  add([](auto& p) { p.window = 0; }, "kv_compression.window must be >= 1, got 0");
  add([](auto& p) { p.kernel = 6; }, "kv_compression.kernel must be an odd number >= 1, got 6");
  add([](auto& p) { p.kernel = -1; }, "kv_compression.kernel must be an odd number >= 1, got -1");
  add([](auto& p) { p.tau = 0.0; }, "kv_compression.tau must be in (0, 1], got 0");
  add([](auto& p) { p.tau = 1.5; }, "kv_compression.tau must be in (0, 1], got 1.5");
  add([](auto& p) { p.tau = std::nan(""); }, "kv_compression.tau must be in (0, 1]");
  add([](auto& p) { p.rho = -0.1; }, "kv_compression.rho must be in [0, 1], got -0.1");
  add([](auto& p) { p.rho = 1.25; }, "kv_compression.rho must be in [0, 1], got 1.25");
  add([](auto& p) { p.pyramid_beta = 1.0; },
      "kv_compression.pyramid_beta must be a finite number > 1, got 1");
  add([](auto& p) { p.sink_tokens = -2; }, "kv_compression.sink_tokens must be >= 0, got -2");
  add([](auto& p) { p.ratio = 0.5; },
      "kv_compression.tokens_per_layer and ratio are both set; policy snapkv takes exactly one");
  add([](auto& p) { p.tokens_per_layer.reset(); },
      "kv_compression.policy snapkv needs a budget: set tokens_per_layer or ratio");
  add(
      [](auto& p) {
        p.tokens_per_layer.reset();
        p.ratio = 0.0;
      },
      "kv_compression.ratio must be in (0, 1], got 0");
  add(
      [](auto& p) {
        p.tokens_per_layer.reset();
        p.ratio = 1.5;
      },
      "kv_compression.ratio must be in (0, 1], got 1.5");
  add([](auto& p) { p.tokens_per_layer = 16; },
      "kv_compression.tokens_per_layer (16) is below the window (32): the budget includes the "
      "window");
  add(
      [](auto& p) {
        p.policy = KvPolicy::kStreaming;
        p.sink_tokens = 64;
      },
      "kv_compression.sink_tokens (64) must be below tokens_per_layer (64) for streaming");
  for (const Case& c : cases) {
    absl::Status status = ValidateCompressionParams(c.params);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_THAT(std::string(status.message()), HasSubstr(c.message));
  }
}

TEST(CompressionParamsTest, AverageBudget) {
  CompressionParams params = Snap(48);
  EXPECT_EQ(AverageBudget(params, 1000), 48);
  params.tokens_per_layer.reset();
  params.window = 1;
  params.ratio = 0.1;
  EXPECT_EQ(AverageBudget(params, 30), 3);  // 0.1 * 30 = 3.0000000000000004 in binary: still 3
  params.ratio = 0.25;
  EXPECT_EQ(AverageBudget(params, 10), 3);  // ceil(2.5)
  params.ratio = 1e-6;
  EXPECT_EQ(AverageBudget(params, 10), 1);  // at least one token
  params.window = 32;
  params.ratio = 0.5;
  EXPECT_EQ(AverageBudget(params, 100), 50);
  params.ratio = 0.1;
  EXPECT_EQ(AverageBudget(params, 100), 32);  // ceil(10) raised to the window
  EXPECT_EQ(AverageBudget(params, 20), 20);   // ... which is min(w, T) = T here
  params.policy = KvPolicy::kFull;
  EXPECT_EQ(AverageBudget(params, 77), 77);
}

// MBA and LMBA ----------------------------------------------------------------------------------

// Brute force: the smallest subset (any subset, not just the largest values) whose units sum to
// >= tau * total_units. Exact because units are integers.
int64_t BruteForceMba(const std::vector<int>& units, int total_units, double tau) {
  const int n = static_cast<int>(units.size());
  int best = n + 1;
  for (uint32_t subset = 0; subset < (1u << n); ++subset) {
    int sum = 0;
    for (int j = 0; j < n; ++j) {
      if (subset & (1u << j)) sum += units[j];
    }
    if (sum >= tau * total_units) best = std::min(best, std::popcount(subset));
  }
  return best;
}

TEST(HeadMinimumBudgetTest, MatchesSubsetBruteForceWithTies) {
  // Distributions of 64 units (probabilities are multiples of 1/64, exact in binary) over up to
  // 12 tokens, many of them equal or zero.
  std::mt19937 rng(7);
  int checked = 0;
  for (int trial = 0; trial < 300; ++trial) {
    const int n = 1 + static_cast<int>(rng() % 12);
    std::vector<int> units(n, 0);
    const int spread = 1 + static_cast<int>(rng() % n);  // few bins -> more zeros and ties
    for (int unit = 0; unit < 64; ++unit) units[rng() % spread] += 1;
    std::shuffle(units.begin(), units.end(), rng);
    std::vector<double> p(n);
    for (int j = 0; j < n; ++j) p[j] = units[j] / 64.0;
    for (double tau : {1.0 / 64, 0.25, 0.5, 0.9, 63.0 / 64, 1.0}) {
      EXPECT_EQ(HeadMinimumBudget(p, tau), BruteForceMba(units, 64, tau))
          << "trial " << trial << " tau " << tau;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 1800);
}

TEST(HeadMinimumBudgetTest, HandMadeDistributions) {
  // Ties: four equal quarters need 4 for tau = 1, 3 for 0.75 exactly, 4 for anything above.
  EXPECT_EQ(HeadMinimumBudget(std::vector<double>{0.25, 0.25, 0.25, 0.25}, 0.75), 3);
  EXPECT_EQ(HeadMinimumBudget(std::vector<double>{0.25, 0.25, 0.25, 0.25}, 0.76), 4);
  EXPECT_EQ(HeadMinimumBudget(std::vector<double>{0.25, 0.25, 0.25, 0.25}, 1.0), 4);
  // Order does not matter: the largest come first.
  EXPECT_EQ(HeadMinimumBudget(std::vector<double>{0.05, 0.7, 0.05, 0.2}, 0.9), 2);
  // tau = 1 counts nonzero entries even though ten 0.1s sum to 0.9999999999999999 in float64.
  const std::vector<double> tenths(10, 0.1);
  EXPECT_EQ(HeadMinimumBudget(tenths, 1.0), 10);
  // ... and eight 0.1s (0.7999999999999999) reach 0.8.
  EXPECT_EQ(HeadMinimumBudget(tenths, 0.8), 8);
  EXPECT_EQ(HeadMinimumBudget(tenths, 0.81), 9);
  // Zeros never count; tau = 1 stops at the last nonzero entry.
  EXPECT_EQ(HeadMinimumBudget(std::vector<double>{0.0, 0.5, 0.0, 0.5, 0.0}, 1.0), 2);
  // Thirds from float32 (sum 1.0000000298...) and a tiny tau.
  const double third = static_cast<float>(1.0 / 3.0);
  EXPECT_EQ(HeadMinimumBudget(std::vector<double>{third, third, third}, 1.0), 3);
  EXPECT_EQ(HeadMinimumBudget(std::vector<double>{third, third, third}, 1e-6), 1);
  // A head with no mass needs nothing; an empty head too.
  EXPECT_EQ(HeadMinimumBudget(std::vector<double>(5, 0.0), 0.9), 0);
  EXPECT_EQ(HeadMinimumBudget(std::vector<double>{}, 0.9), 0);
  // More entries than one partial-sort round (64): 200 equal values need ceil(0.9 * 200) = 180.
  EXPECT_EQ(HeadMinimumBudget(std::vector<double>(200, 1.0 / 200), 0.9), 180);
  EXPECT_EQ(HeadMinimumBudget(std::vector<double>(200, 1.0 / 200), 1.0), 200);
}

TEST(LayerMinimumBudgetTest, MeanOfHeadsOnRawProbabilities) {
  // H = 2, T = 4, w_eff = 2, so p = mass / 2 over all positions (window included).
  // head 0: mass 1, 0.5, 0.25, 0.25 -> p .5 .25 .125 .125 -> tau 0.7 needs 2 (0.75).
  // head 1: mass .5 each -> p .25 each -> tau 0.7 needs 3 (0.75). LMBA = 2.5.
  const std::vector<float> mass = {1.0f, 0.5f, 0.25f, 0.25f, 0.5f, 0.5f, 0.5f, 0.5f};
  EXPECT_DOUBLE_EQ(LayerMinimumBudget(mass, 2, 4, 2, 0.7), 2.5);
  // window 32 > T: w_eff = T = 4 halves every p: head 0 p .25 .125 .0625 .0625 sums to 0.5.
  // min(tau, total) = 0.5 -> all 4 tokens; head 1 p .125 each -> 4. LMBA = 4.
  EXPECT_DOUBLE_EQ(LayerMinimumBudget(mass, 2, 4, 32, 0.7), 4.0);
}

// ZigZag allocation ------------------------------------------------------------------------------

TEST(ZigZagBudgetsTest, HandWorkedExamples) {
  // A. L = 4, B_avg = 64, w = 16, rho = 0.2, T = 1000: B_min = max(12.8, 16) = 16.
  //    LMBA 10 30 20 40 -> u .1 .3 .2 .4; B = 16 + (64 - 16) * 4 * u = 35.2 73.6 54.4 92.8 (256).
  //    Floors 35 73 54 92 (254); the 2 left go to the largest remainders .8 (layer 3), .6 (1).
  EXPECT_THAT(ZigZagBudgets(std::vector<double>{10, 30, 20, 40}, 64, 16, 0.2, 1000),
              ElementsAre(35, 74, 54, 93));
  // B. L = 3, B_avg = 41, w = 8, rho = 0.5, T = 60: B_min = 20.5, spread (41 - 20.5) * 3 = 61.5.
  //    LMBA 1 1 6 -> u .125 .125 .75 -> B = 28.1875 28.1875 66.625. Layer 2 capped at 60; its
  //    6.625 goes to layers 0 and 1 by u (half each): 31.5 31.5 60 (123 = 3 * 41).
  //    Floors 31 31 60, one token left, remainders tie at .5: the lower layer wins.
  EXPECT_THAT(ZigZagBudgets(std::vector<double>{1, 1, 6}, 41, 8, 0.5, 60), ElementsAre(32, 31, 60));
  // C. L = 4, B_avg = 50, w = 4, rho = 0, T = 80: B_min = max(0, 4) = 4, spread 46 * 4 = 184.
  //    LMBA 0 0 1 3 -> u 0 0 .25 .75 -> B = 4 4 50 142. Round 1: layer 3 capped, 62 extra all to
  //    layer 2 (the only uncapped u > 0): 112. Round 2: layer 2 capped, 32 extra shared equally
  //    by layers 0 and 1 (u = 0): 20 20 80 80.
  EXPECT_THAT(ZigZagBudgets(std::vector<double>{0, 0, 1, 3}, 50, 4, 0.0, 80),
              ElementsAre(20, 20, 80, 80));
}

TEST(ZigZagBudgetsTest, FallbacksAndRaisedAverage) {
  // All LMBA zero: uniform B_avg.
  EXPECT_THAT(ZigZagBudgets(std::vector<double>{0, 0, 0}, 40, 8, 0.2, 100),
              ElementsAre(40, 40, 40));
  // B_avg below the window is raised to w_eff (ours): 5 -> 8.
  EXPECT_THAT(ZigZagBudgets(std::vector<double>{0, 0}, 5, 8, 0.2, 100), ElementsAre(8, 8));
  // B_avg >= T: every layer keeps T (the sum is min(L * B_avg, L * T)).
  EXPECT_THAT(ZigZagBudgets(std::vector<double>{1, 9}, 120, 8, 0.2, 100), ElementsAre(100, 100));
  // rho = 1: the floor is B_avg itself, so the allocation is uniform whatever the LMBA.
  EXPECT_THAT(ZigZagBudgets(std::vector<double>{1, 2, 30}, 40, 8, 1.0, 100),
              ElementsAre(40, 40, 40));
  EXPECT_THAT(ZigZagBudgets(std::vector<double>{}, 40, 8, 0.2, 100), IsEmpty());
}

// The real-valued allocation solved in closed form rather than by rounds: redistribution adds to
// every uncapped layer in proportion to u, so the answer is min(T, B0_l + lambda * u_l) with the
// lambda that makes the sum L * B_avg (layers with u = 0 share equally once every u > 0 layer is
// capped). Try each "first k capped" set in the order layers would cap.
std::vector<double> ReferenceRealBudgets(const std::vector<double>& lmba, double average,
                                         double minimum, double cap) {
  const size_t num_layers = lmba.size();
  const double total = std::accumulate(lmba.begin(), lmba.end(), 0.0);
  std::vector<double> u(num_layers), base(num_layers);
  for (size_t l = 0; l < num_layers; ++l) {
    u[l] = lmba[l] / total;
    base[l] = minimum + (average - minimum) * num_layers * u[l];
  }
  std::vector<size_t> positive;
  for (size_t l = 0; l < num_layers; ++l) {
    if (u[l] > 0) positive.push_back(l);
  }
  std::sort(positive.begin(), positive.end(),
            [&](size_t a, size_t b) { return (cap - base[a]) / u[a] < (cap - base[b]) / u[b]; });
  const double goal = average * num_layers;
  for (size_t capped = 0; capped <= positive.size(); ++capped) {
    std::vector<double> result(num_layers);
    double fixed = 0.0, open_u = 0.0;
    for (size_t i = 0; i < positive.size(); ++i) {
      if (i < capped) {
        fixed += cap;
      } else {
        fixed += base[positive[i]];
        open_u += u[positive[i]];
      }
    }
    const size_t zero_layers = num_layers - positive.size();
    fixed += zero_layers * minimum;
    if (capped < positive.size()) {
      const double lambda = (goal - fixed) / open_u;
      bool consistent = lambda >= -1e-9;
      for (size_t i = 0; i < positive.size(); ++i) {
        const double value = base[positive[i]] + lambda * u[positive[i]];
        if (i < capped) consistent &= value >= cap - 1e-9;
        if (i >= capped) consistent &= value <= cap + 1e-9;
        result[positive[i]] = std::min(cap, value);
      }
      for (size_t l = 0; l < num_layers; ++l) {
        if (u[l] == 0) result[l] = minimum;
      }
      if (consistent) return result;
    } else {
      for (size_t l : positive) result[l] = cap;
      for (size_t l = 0; l < num_layers; ++l) {
        if (u[l] == 0) result[l] = minimum + (goal - fixed) / zero_layers;
      }
      return result;
    }
  }
  ADD_FAILURE() << "reference found no consistent capped set";
  return {};
}

// Largest remainder written as repeated "give one token to the lowest layer among those with the
// largest remainder"; values within 1e-9 of an integer count as that integer.
std::vector<int64_t> ReferenceRounding(const std::vector<double>& real, int64_t goal) {
  std::vector<int64_t> result(real.size());
  std::vector<double> remainder(real.size());
  int64_t assigned = 0;
  for (size_t l = 0; l < real.size(); ++l) {
    double value = real[l];
    if (std::abs(value - std::round(value)) < 1e-9) value = std::round(value);
    result[l] = static_cast<int64_t>(std::floor(value));
    remainder[l] = value - std::floor(value);
    assigned += result[l];
  }
  for (; assigned < goal; ++assigned) {
    size_t best = real.size();
    for (size_t l = 0; l < real.size(); ++l) {
      if (remainder[l] < 0) continue;  // already given one
      if (best == real.size() || remainder[l] > remainder[best] + 1e-9) best = l;
    }
    ++result[best];
    remainder[best] = -1;
  }
  return result;
}

TEST(ZigZagBudgetsTest, MatchesClosedFormOnRandomInputs) {
  std::mt19937 rng(2024);
  for (int trial = 0; trial < 2000; ++trial) {
    const int num_layers = 1 + static_cast<int>(rng() % 12);
    const int heads = 1 + static_cast<int>(rng() % 8);
    std::vector<double> lmba(num_layers);
    for (double& value : lmba) {
      // LMBA are means of integer counts over heads; sometimes zero, sometimes very skewed.
      const int kind = static_cast<int>(rng() % 4);
      value = kind == 0 ? 0.0 : static_cast<double>(rng() % (kind == 3 ? 2000 : 60)) / heads;
    }
    const int64_t tokens = 8 + static_cast<int64_t>(rng() % 400);
    const int32_t window = 1 + static_cast<int32_t>(rng() % 40);
    const int64_t average = 1 + static_cast<int64_t>(rng() % (tokens + 20));
    const double rho = (rng() % 5) * 0.25;
    const std::vector<int64_t> budgets = ZigZagBudgets(lmba, average, window, rho, tokens);
    EXPECT_EQ(budgets, ZigZagBudgets(lmba, average, window, rho, tokens)) << "deterministic";

    const int64_t w_eff = std::min<int64_t>(window, tokens);
    const int64_t raised = std::max(average, w_eff);
    const int64_t goal = std::min(num_layers * raised, num_layers * tokens);
    ASSERT_EQ(budgets.size(), static_cast<size_t>(num_layers));
    EXPECT_EQ(std::accumulate(budgets.begin(), budgets.end(), int64_t{0}), goal)
        << "trial " << trial;
    for (int64_t budget : budgets) {
      EXPECT_GE(budget, w_eff);
      EXPECT_LE(budget, tokens);
    }
    std::vector<int64_t> expected;
    const bool all_zero = std::all_of(lmba.begin(), lmba.end(), [](double v) { return v == 0; });
    if (raised >= tokens) {
      expected.assign(num_layers, tokens);
    } else if (all_zero) {
      expected.assign(num_layers, raised);
    } else {
      const double minimum = std::max(rho * raised, static_cast<double>(w_eff));
      expected = ReferenceRounding(
          ReferenceRealBudgets(lmba, static_cast<double>(raised), minimum, tokens), goal);
    }
    EXPECT_EQ(budgets, expected) << "trial " << trial;
  }
}

// PyramidKV and StreamingLLM ---------------------------------------------------------------------

TEST(PyramidBudgetsTest, HandComputed) {
  // L = 3, B_avg = 62, w = 32, beta = 20: m = 30, min = 1.5, max = 58.5, step 28.5:
  // 58.5 -> 59 (half away from zero), 30, 1.5 -> 2; plus the window 32.
  EXPECT_THAT(PyramidBudgets(3, 62, 32, 20.0, 1000), ElementsAre(91, 62, 34));
  // L = 5, B_avg = 132, w = 32: m = 100, min = 5, max = 195, step 47.5:
  // 195, 147.5 -> 148, 100, 52.5 -> 53, 5 -> + 32: 227 180 132 85 37; capped at T = 200.
  EXPECT_THAT(PyramidBudgets(5, 132, 32, 20.0, 1000), ElementsAre(227, 180, 132, 85, 37));
  EXPECT_THAT(PyramidBudgets(5, 132, 32, 20.0, 200), ElementsAre(200, 180, 132, 85, 37));
  // beta = 2: m = 40, min = 20, max = 60: 60, 40, 20 + 8.
  EXPECT_THAT(PyramidBudgets(3, 48, 8, 2.0, 1000), ElementsAre(68, 48, 28));
  // One layer: B_avg (capped at T).
  EXPECT_THAT(PyramidBudgets(1, 62, 32, 20.0, 1000), ElementsAre(62));
  EXPECT_THAT(PyramidBudgets(1, 62, 32, 20.0, 50), ElementsAre(50));
}

TEST(StreamingPositionsTest, SinksPlusRecent) {
  EXPECT_THAT(StreamingPositions(10, 4, 6), ElementsAre(0, 1, 2, 3, 8, 9));
  EXPECT_THAT(StreamingPositions(10, 8, 6), ElementsAre(0, 1, 2, 3, 4, 5));
  EXPECT_THAT(StreamingPositions(10, 0, 3), ElementsAre(7, 8, 9));
  EXPECT_THAT(StreamingPositions(5, 4, 9), ElementsAre(0, 1, 2, 3, 4));
  EXPECT_THAT(StreamingPositions(5, 2, 0), IsEmpty());
}

// Scores and selection ---------------------------------------------------------------------------

TEST(TokenScoresTest, PoolsPrefixOnlyAndAveragesGroups) {
  // H = 2, G = 1, T = 8, w = 3: prefix 5. Kernel 3 (radius 1), out-of-range ignored:
  // head 0 prefix .1 .5 .2 0 .3 -> .5 .5 .5 .3 .3; head 1 .4 0 0 0 .1 -> .4 .4 0 .1 .1.
  // The window's large mass (2.0) must not leak into position 4. Mean: .45 .45 .25 .2 .2.
  const std::vector<float> mass = {0.1f, 0.5f, 0.2f, 0.0f, 0.3f, 2.0f, 2.0f, 2.0f,
                                   0.4f, 0.0f, 0.0f, 0.0f, 0.1f, 2.0f, 2.0f, 2.0f};
  const auto one_group = TokenScores(mass, 2, 1, 8, 3, 3);
  ASSERT_EQ(one_group.size(), 1u);
  const std::vector<float> expected = {0.45f, 0.45f, 0.25f, 0.2f, 0.2f};
  for (size_t j = 0; j < expected.size(); ++j) EXPECT_FLOAT_EQ(one_group[0][j], expected[j]) << j;
  // G = 2: each head is its own group.
  const auto two_groups = TokenScores(mass, 2, 2, 8, 3, 3);
  ASSERT_EQ(two_groups.size(), 2u);
  EXPECT_THAT(two_groups[0], ElementsAre(0.5f, 0.5f, 0.5f, 0.3f, 0.3f));
  EXPECT_THAT(two_groups[1], ElementsAre(0.4f, 0.4f, 0.0f, 0.1f, 0.1f));
  // Kernel 1 is the identity; a kernel wider than the row gives the row's max everywhere.
  EXPECT_THAT(TokenScores(mass, 2, 2, 8, 3, 1)[0], ElementsAre(0.1f, 0.5f, 0.2f, 0.0f, 0.3f));
  EXPECT_THAT(TokenScores(mass, 2, 2, 8, 3, 99)[1], ElementsAre(0.4f, 0.4f, 0.4f, 0.4f, 0.4f));
  // Window covering the prompt: no prefix, nothing to score.
  EXPECT_THAT(TokenScores(mass, 2, 2, 8, 8, 3)[0], IsEmpty());
}

TEST(SelectPositionsTest, TopByScoreTiesLowerFirst) {
  // T = 9, w = 3: prefix 0..5, window 6 7 8.
  const std::vector<float> scores = {0.2f, 0.7f, 0.2f, 0.9f, 0.2f, 0.1f};
  EXPECT_THAT(SelectPositions(scores, 9, 3, 5), ElementsAre(1, 3, 6, 7, 8));
  // Three-way tie at 0.2 for the last slot: position 0 wins, then 2.
  EXPECT_THAT(SelectPositions(scores, 9, 3, 6), ElementsAre(0, 1, 3, 6, 7, 8));
  EXPECT_THAT(SelectPositions(scores, 9, 3, 7), ElementsAre(0, 1, 2, 3, 6, 7, 8));
  // Budget at or below the window keeps just the window; at or above T keeps everything.
  EXPECT_THAT(SelectPositions(scores, 9, 3, 3), ElementsAre(6, 7, 8));
  EXPECT_THAT(SelectPositions(scores, 9, 3, 1), ElementsAre(6, 7, 8));
  EXPECT_THAT(SelectPositions(scores, 9, 3, 12), ElementsAre(0, 1, 2, 3, 4, 5, 6, 7, 8));
}

}  // namespace
}  // namespace zigzag
