// The adaptive head split (ZIGZAG.md section 8): hand-worked allocations, a brute-force reference
// that applies the rule literally over many random small layers (ties on purpose), the params
// that select it, PlanCompression with it (uniform unchanged), and the head-granular KV
// compaction applying a plan whose heads keep different counts.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/compress/compression_params.h"
#include "core/compress/head_split.h"
#include "core/compress/policy.h"
#include "core/kv/kv_cache.h"
#include "core/kv/kv_compaction.h"
#include "core/kv/sequence_kv.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/backend_registry.h"

namespace zigzag {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Positions = std::vector<std::vector<int32_t>>;

int64_t Total(const Positions& kept) {
  int64_t total = 0;
  for (const std::vector<int32_t>& head : kept) total += static_cast<int64_t>(head.size());
  return total;
}

// ---------------------------------------------------------------------------------------------
// Hand-worked allocations. Layouts: T prompt tokens, window w, prefix P = T - w, m = B_l - w.

// G = 2, T = 8, w = 2 (window positions 6, 7), P = 6, B_l = 5, m = 3.
const std::vector<std::vector<float>> kTwoHeads = {
    {0.9f, 0.5f, 0.8f, 0.5f, 0.0f, 0.7f},
    {0.1f, 0.5f, 0.2f, 0.0f, 0.6f, 0.1f},
};

TEST(AdaptiveHeadPositionsTest, FloorThenPooledSlotsWithTiesGoingToTheLowerHead) {
  // alpha 0.34: f = floor(1.02) = 1, so head 0 keeps 0 (0.9) and head 1 keeps 4 (0.6); the
  // 2 * (3 - 1) = 4 pooled slots go to 0.8 (h0, 2), 0.7 (h0, 5), then two of the three 0.5s:
  // (h0, 1), (h0, 3) and (h1, 1) tie, and the lower head goes first, so (h1, 1) is left out
  // although its position is lower than (h0, 3)'s.
  const Positions kept = AdaptiveHeadPositions(kTwoHeads, 8, 2, 5, 0.34);
  EXPECT_THAT(kept, ElementsAre(ElementsAre(0, 1, 2, 3, 5, 6, 7), ElementsAre(4, 6, 7)));
  EXPECT_EQ(Total(kept), 2 * 5);
}

TEST(AdaptiveHeadPositionsTest, LargerFloorProtectsTheWeakerHead) {
  // alpha 0.67: f = floor(2.01) = 2: head 0 keeps 0, 2; head 1 keeps 4 (0.6) and 1 (0.5). The
  // 2 pooled slots: 0.7 (h0, 5), then 0.5 (h0, 1) before 0.5 (h0, 3) (same head: lower position).
  const Positions kept = AdaptiveHeadPositions(kTwoHeads, 8, 2, 5, 0.67);
  EXPECT_THAT(kept, ElementsAre(ElementsAre(0, 1, 2, 5, 6, 7), ElementsAre(1, 4, 6, 7)));
}

TEST(AdaptiveHeadPositionsTest, AlphaZeroIsOnePooledTopAcrossHeads) {
  // f = 0: the 6 best of all 12 (head, position) pairs: 0.9 (h0, 0), 0.8 (h0, 2), 0.7 (h0, 5),
  // 0.6 (h1, 4), 0.5 (h0, 1), 0.5 (h0, 3); (h1, 1) at 0.5 loses the tie to the lower head.
  const Positions kept = AdaptiveHeadPositions(kTwoHeads, 8, 2, 5, 0.0);
  EXPECT_THAT(kept, ElementsAre(ElementsAre(0, 1, 2, 3, 5, 6, 7), ElementsAre(4, 6, 7)));
}

TEST(AdaptiveHeadPositionsTest, AlphaOneIsTheUniformSplit) {
  // f = m = 3, nothing pooled: each head its own top 3, exactly as SelectPositions.
  const Positions kept = AdaptiveHeadPositions(kTwoHeads, 8, 2, 5, 1.0);
  EXPECT_THAT(kept, ElementsAre(ElementsAre(0, 2, 5, 6, 7), ElementsAre(1, 2, 4, 6, 7)));
  for (size_t g = 0; g < kTwoHeads.size(); ++g) {
    EXPECT_EQ(kept[g], SelectPositions(kTwoHeads[g], 8, 2, 5)) << "head " << g;
  }
}

TEST(AdaptiveHeadPositionsTest, ThreeHeadsWithTiesWithinAndAcrossHeads) {
  // G = 3, T = 7, w = 2 (positions 5, 6), P = 5, B_l = 4, m = 2, alpha 0.5: f = 1, 3 pooled.
  // Floors: h0 ties 0.3 at 0, 1, 4 -> 0; h1 all 0 -> 0; h2 ties 0.4 at 1, 2 -> 1.
  // Pooled: 0.4 (h2, 2), then 0.3 (h0, 1), (h0, 4), (h2, 4) tie for two slots: head 0 wins both.
  const std::vector<std::vector<float>> scores = {
      {0.3f, 0.3f, 0.1f, 0.0f, 0.3f},
      {0.0f, 0.0f, 0.0f, 0.0f, 0.0f},
      {0.2f, 0.4f, 0.4f, 0.1f, 0.3f},
  };
  const Positions kept = AdaptiveHeadPositions(scores, 7, 2, 4, 0.5);
  EXPECT_THAT(
      kept, ElementsAre(ElementsAre(0, 1, 4, 5, 6), ElementsAre(0, 5, 6), ElementsAre(1, 2, 5, 6)));
  EXPECT_EQ(Total(kept), 3 * 4);
}

TEST(AdaptiveHeadPositionsTest, HeadCappedAtTSendsItsSlotsToTheOtherHead) {
  // G = 2, T = 6, w = 1 (position 5), P = 5, B_l = 5, m = 4, alpha 0: 8 pooled slots. Head 0
  // outscores head 1 everywhere, takes its whole prefix (6 entries = T) and can take no more; the
  // other 3 slots go to head 1: 0.2 at 2, then the 0.1s at 0 and 1 (0.1 at 3 loses: higher
  // position).
  const std::vector<std::vector<float>> scores = {
      {0.9f, 0.8f, 0.7f, 0.6f, 0.5f},
      {0.1f, 0.1f, 0.2f, 0.1f, 0.0f},
  };
  const Positions kept = AdaptiveHeadPositions(scores, 6, 1, 5, 0.0);
  EXPECT_THAT(kept, ElementsAre(ElementsAre(0, 1, 2, 3, 4, 5), ElementsAre(0, 1, 2, 5)));
  EXPECT_EQ(Total(kept), 2 * 5);
}

TEST(AdaptiveHeadPositionsTest, BudgetEqualToWindowKeepsOnlyTheWindow) {
  for (double alpha : {0.0, 0.2, 1.0}) {
    const Positions kept = AdaptiveHeadPositions(kTwoHeads, 8, 2, 2, alpha);
    EXPECT_THAT(kept, ElementsAre(ElementsAre(6, 7), ElementsAre(6, 7))) << alpha;
  }
}

TEST(AdaptiveHeadPositionsTest, BudgetEqualToPromptKeepsEverything) {
  for (double alpha : {0.0, 0.2, 1.0}) {
    const Positions kept = AdaptiveHeadPositions(kTwoHeads, 8, 2, 8, alpha);
    EXPECT_THAT(
        kept, ElementsAre(ElementsAre(0, 1, 2, 3, 4, 5, 6, 7), ElementsAre(0, 1, 2, 3, 4, 5, 6, 7)))
        << alpha;
  }
}

TEST(AdaptiveHeadPositionsTest, BudgetOutsideWindowToPromptIsClampedAsInSelectPositions) {
  // Below w_eff still keeps the window; above T keeps T (never more).
  EXPECT_THAT(AdaptiveHeadPositions(kTwoHeads, 8, 2, 1, 0.2),
              ElementsAre(ElementsAre(6, 7), ElementsAre(6, 7)));
  EXPECT_EQ(Total(AdaptiveHeadPositions(kTwoHeads, 8, 2, 100, 0.2)), 2 * 8);
}

TEST(AdaptiveHeadPositionsTest, WholePromptInTheWindow) {
  // T = 3, w = 3: no prefix at all; every head keeps the three window positions.
  const std::vector<std::vector<float>> empty(2);
  EXPECT_THAT(AdaptiveHeadPositions(empty, 3, 3, 3, 0.2),
              ElementsAre(ElementsAre(0, 1, 2), ElementsAre(0, 1, 2)));
}

TEST(AdaptiveHeadPositionsTest, NanScoresRankBelowZero) {
  // T = 4, w = 1, B_l = 2, m = 1, alpha 0: 2 pooled slots. NaN (h0, 0) ranks lowest, so 0.0
  // (h0, 1) and 0.0 (h0, 2) beat it; head 1's -1 ranks below both zeros but above NaN.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<std::vector<float>> scores = {{nan, 0.0f, 0.0f}, {-1.0f, -1.0f, nan}};
  EXPECT_THAT(AdaptiveHeadPositions(scores, 4, 1, 2, 0.0),
              ElementsAre(ElementsAre(1, 2, 3), ElementsAre(3)));
}

TEST(AdaptiveHeadFloorTest, DecimalAlphaMeansWhatItSays) {
  EXPECT_EQ(AdaptiveHeadFloor(0.29, 100), 29);  // 28.999999999999996 in binary
  EXPECT_EQ(AdaptiveHeadFloor(0.1, 30), 3);     // 3.0000000000000004 in binary
  EXPECT_EQ(AdaptiveHeadFloor(0.2, 7), 1);      // 1.4
  EXPECT_EQ(AdaptiveHeadFloor(0.34, 3), 1);     // 1.02
  EXPECT_EQ(AdaptiveHeadFloor(0.67, 3), 2);     // 2.01
  EXPECT_EQ(AdaptiveHeadFloor(0.999, 1000), 999);
  EXPECT_EQ(AdaptiveHeadFloor(1.0, 17), 17);
  EXPECT_EQ(AdaptiveHeadFloor(0.0, 17), 0);
  EXPECT_EQ(AdaptiveHeadFloor(0.5, 0), 0);
}

// ---------------------------------------------------------------------------------------------
// Brute-force reference: section 8 enumerated literally, one linear scan per kept slot, scores
// compared exactly in float64. alpha = twentieths / 20, so f is exact integer arithmetic.
Positions BruteForceSplit(const std::vector<std::vector<float>>& scores, int64_t T, int64_t w_eff,
                          int64_t budget, int64_t twentieths) {
  const int64_t G = static_cast<int64_t>(scores.size());
  const int64_t prefix = T - w_eff;
  const int64_t m = budget - w_eff;
  const int64_t f = twentieths * m / 20;
  std::vector<std::vector<bool>> taken(G, std::vector<bool>(prefix, false));
  // Floors: f times, the head's best untaken position; a strict > keeps the lower position on ties.
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t k = 0; k < f; ++k) {
      int64_t best = -1;
      for (int64_t j = 0; j < prefix; ++j) {
        if (!taken[g][j] && (best < 0 || double{scores[g][j]} > double{scores[g][best]})) best = j;
      }
      taken[g][best] = true;
    }
  }
  // Pooled slots: scanning head-major with a strict > keeps the lower head, then lower position.
  for (int64_t k = 0; k < G * (m - f); ++k) {
    int64_t best_g = -1, best_j = -1;
    for (int64_t g = 0; g < G; ++g) {
      for (int64_t j = 0; j < prefix; ++j) {
        if (taken[g][j]) continue;
        if (best_g < 0 || double{scores[g][j]} > double{scores[best_g][best_j]}) {
          best_g = g;
          best_j = j;
        }
      }
    }
    taken[best_g][best_j] = true;
  }
  Positions kept(G);
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t j = 0; j < T; ++j) {
      if (j >= prefix || taken[g][j]) kept[g].push_back(static_cast<int32_t>(j));
    }
  }
  return kept;
}

TEST(AdaptiveHeadPositionsTest, MatchesBruteForceOnRandomLayersWithTies) {
  std::mt19937_64 rng(20241212);
  // Few distinct values, so ties within and across heads are frequent; some layers continuous.
  const float levels[] = {0.0f, 0.125f, 0.25f, 0.5f, 1.0f};
  std::uniform_real_distribution<float> continuous(0.0f, 1.0f);
  int unequal_heads = 0;
  int heads_at_prompt = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    const int64_t G = 1 + static_cast<int64_t>(rng() % 4);
    const int64_t T = 1 + static_cast<int64_t>(rng() % 40);
    const int32_t window = 1 + static_cast<int32_t>(rng() % (T + 3));  // sometimes above T
    const int64_t w_eff = std::min<int64_t>(window, T);
    const int64_t budget = w_eff + static_cast<int64_t>(rng() % (T - w_eff + 1));
    const int64_t twentieths = static_cast<int64_t>(rng() % 21);
    const bool tied = trial % 4 != 0;
    std::vector<std::vector<float>> scores(G, std::vector<float>(T - w_eff));
    for (std::vector<float>& head : scores) {
      for (float& s : head) s = tied ? levels[rng() % 5] : continuous(rng);
    }
    SCOPED_TRACE(absl::StrCat("trial ", trial, ": G=", G, " T=", T, " w=", window, " B=", budget,
                              " alpha=", twentieths, "/20"));
    const Positions kept =
        AdaptiveHeadPositions(scores, T, window, budget, static_cast<double>(twentieths) / 20.0);
    const Positions expected = BruteForceSplit(scores, T, w_eff, budget, twentieths);
    ASSERT_EQ(kept, expected);
    EXPECT_EQ(Total(kept), G * budget);
    bool unequal = false;
    for (const std::vector<int32_t>& head : kept) {
      unequal |= head.size() != kept[0].size();
      heads_at_prompt += budget < T && static_cast<int64_t>(head.size()) == T;
    }
    unequal_heads += unequal;
  }
  // The random cases really exercise unequal splits and heads capped at T.
  EXPECT_GT(unequal_heads, 500);
  EXPECT_GT(heads_at_prompt, 50);
}

TEST(AdaptiveHeadPositionsTest, OneHeadOrAlphaOneEqualsSelectPositions) {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 300; ++trial) {
    const int64_t G = trial % 2 == 0 ? 1 : 1 + static_cast<int64_t>(rng() % 4);
    const double alpha = G == 1 ? static_cast<double>(rng() % 11) / 10.0 : 1.0;
    const int64_t T = 2 + static_cast<int64_t>(rng() % 60);
    const int32_t window = 1 + static_cast<int32_t>(rng() % T);
    const int64_t budget = window + static_cast<int64_t>(rng() % (T - window + 1));
    std::vector<std::vector<float>> scores(G, std::vector<float>(T - window));
    for (std::vector<float>& head : scores) {
      for (float& s : head) s = static_cast<float>(rng() % 4);
    }
    const Positions kept = AdaptiveHeadPositions(scores, T, window, budget, alpha);
    for (int64_t g = 0; g < G; ++g) {
      ASSERT_EQ(kept[g], SelectPositions(scores[g], T, window, budget))
          << "trial " << trial << " head " << g;
    }
  }
}

TEST(AdaptiveHeadPositionsTest, LongPromptSplitsExactlyInLinearishTime) {
  // T = 128K with G = 4: a quadratic selection would not finish; this checks the invariants.
  const int64_t T = int64_t{1} << 17;
  const int32_t window = 32;
  const int64_t budget = 2048;
  const int64_t prefix = T - window;
  const int64_t floor_tokens = AdaptiveHeadFloor(0.2, budget - window);  // 403
  std::mt19937_64 rng(3);
  std::vector<std::vector<float>> scores(4, std::vector<float>(prefix));
  for (size_t g = 0; g < scores.size(); ++g) {
    // Heads with very different spreads, so the pooled slots go mostly to the peaky ones.
    for (float& s : scores[g]) {
      s = static_cast<float>(rng() % 1000) * std::pow(0.1f, static_cast<float>(g));
    }
  }
  const Positions kept = AdaptiveHeadPositions(scores, T, window, budget, 0.2);
  EXPECT_EQ(Total(kept), 4 * budget);
  for (size_t g = 0; g < kept.size(); ++g) {
    const std::vector<int32_t>& head = kept[g];
    ASSERT_GE(static_cast<int64_t>(head.size()), window + floor_tokens);
    EXPECT_TRUE(std::is_sorted(head.begin(), head.end()));
    EXPECT_EQ(std::adjacent_find(head.begin(), head.end()), head.end());
    EXPECT_EQ(head[head.size() - window], prefix);  // the window closes every head
    // Within a head the kept prefix is the head's own top count: the worst kept beats the best
    // dropped (score descending, then position ascending).
    std::vector<bool> in(prefix, false);
    for (int32_t j : head) {
      if (j < prefix) in[j] = true;
    }
    float worst_kept = std::numeric_limits<float>::infinity();
    float best_dropped = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < prefix; ++j) {
      if (in[j]) worst_kept = std::min(worst_kept, scores[g][j]);
      if (!in[j]) best_dropped = std::max(best_dropped, scores[g][j]);
    }
    EXPECT_GE(worst_kept, best_dropped) << "head " << g;
  }
  EXPECT_GT(kept[0].size(), kept[3].size());  // the split really is uneven
}

// ---------------------------------------------------------------------------------------------
// Params.

TEST(HeadBudgetsParamsTest, DefaultsAreUniformAndAlphaPointTwo) {
  const CompressionParams params;
  EXPECT_EQ(params.head_budgets, HeadBudgets::kUniform);
  EXPECT_EQ(params.alpha, 0.2);
}

TEST(HeadBudgetsParamsTest, NamesParseBothWays) {
  EXPECT_STREQ(HeadBudgetsName(HeadBudgets::kUniform), "uniform");
  EXPECT_STREQ(HeadBudgetsName(HeadBudgets::kAdaptive), "adaptive");
  EXPECT_EQ(*ParseHeadBudgets("uniform"), HeadBudgets::kUniform);
  EXPECT_EQ(*ParseHeadBudgets("adaptive"), HeadBudgets::kAdaptive);
  const absl::StatusOr<HeadBudgets> bad = ParseHeadBudgets("ADAPTIVE");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(),
            "kv_compression.head_budgets \"ADAPTIVE\" is unknown; accepted: uniform, adaptive");
}

TEST(HeadBudgetsParamsTest, AlphaOutsideZeroToOneIsInvalidArgumentNamingAlpha) {
  CompressionParams params;
  params.policy = KvPolicy::kSnapKv;
  params.tokens_per_layer = 64;
  params.head_budgets = HeadBudgets::kAdaptive;
  for (double alpha : {0.0, 0.5, 1.0}) {
    params.alpha = alpha;
    EXPECT_TRUE(ValidateCompressionParams(params).ok()) << alpha;
  }
  const struct {
    double alpha;
    const char* message;
  } cases[] = {
      {-0.1, "kv_compression.alpha must be in [0, 1], got -0.1"},
      {1.5, "kv_compression.alpha must be in [0, 1], got 1.5"},
      {std::numeric_limits<double>::quiet_NaN(), "kv_compression.alpha must be in [0, 1], got nan"},
      {std::numeric_limits<double>::infinity(), "kv_compression.alpha must be in [0, 1], got inf"},
  };
  for (const auto& c : cases) {
    params.alpha = c.alpha;
    const absl::Status status = ValidateCompressionParams(params);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_EQ(status.message(), c.message);
  }
  // Like rho, alpha is judged for every policy, so a bad server default fails at start-up.
  CompressionParams full;
  full.alpha = 2.0;
  EXPECT_EQ(ValidateCompressionParams(full).message(),
            "kv_compression.alpha must be in [0, 1], got 2");
}

TEST(HeadBudgetsParamsTest, UnknownHeadBudgetsValueIsInvalidArgumentNamingTheField) {
  CompressionParams params;
  params.head_budgets = static_cast<HeadBudgets>(7);
  const absl::Status status = ValidateCompressionParams(params);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "kv_compression.head_budgets must be uniform or adaptive, got value 7");
}

TEST(HeadBudgetsParamsTest, AdaptiveAppliesToScoringPoliciesAndIsIgnoredByFullAndStreaming) {
  CompressionParams params;
  params.head_budgets = HeadBudgets::kAdaptive;
  params.tokens_per_layer = 64;
  const struct {
    KvPolicy policy;
    HeadBudgets effective;
  } cases[] = {{KvPolicy::kFull, HeadBudgets::kUniform},
               {KvPolicy::kStreaming, HeadBudgets::kUniform},
               {KvPolicy::kSnapKv, HeadBudgets::kAdaptive},
               {KvPolicy::kPyramidKv, HeadBudgets::kAdaptive},
               {KvPolicy::kZigZag, HeadBudgets::kAdaptive}};
  for (const auto& c : cases) {
    params.policy = c.policy;
    EXPECT_TRUE(ValidateCompressionParams(params).ok()) << KvPolicyName(c.policy);
    EXPECT_EQ(EffectiveHeadBudgets(params), c.effective) << KvPolicyName(c.policy);
  }
  params.head_budgets = HeadBudgets::kUniform;
  params.policy = KvPolicy::kZigZag;
  EXPECT_EQ(EffectiveHeadBudgets(params), HeadBudgets::kUniform);
}

// ---------------------------------------------------------------------------------------------
// PlanCompression with either split.

// Random window mass (finite, >= 0; a third of the values on a coarse grid so scores tie).
WindowSummary RandomSummary(int64_t T, int32_t H, int32_t G, int32_t L, int32_t w_eff,
                            uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  WindowSummary summary;
  summary.num_layers = L;
  summary.prompt_tokens = T;
  summary.window = w_eff;
  summary.num_heads = H;
  summary.num_kv_heads = G;
  for (int32_t l = 0; l < L; ++l) {
    std::vector<float>& mass = summary.window_mass.emplace_back(H * T);
    // Layers differ in how peaked they are, so zigzag gives them different budgets.
    const float power = 1.0f + 3.0f * static_cast<float>(l);
    for (float& x : mass) {
      x = rng() % 3 == 0 ? static_cast<float>(rng() % 4) / 4.0f : std::pow(uniform(rng), power);
    }
  }
  return summary;
}

struct PlanInput {
  CompressionParams params;
  WindowSummary summary;
};

std::vector<PlanInput> RandomPlanInputs() {
  std::vector<PlanInput> inputs;
  std::mt19937_64 rng(12);
  const KvPolicy policies[] = {KvPolicy::kSnapKv, KvPolicy::kPyramidKv, KvPolicy::kZigZag};
  for (int trial = 0; trial < 60; ++trial) {
    const int32_t G = 1 + static_cast<int32_t>(rng() % 3);
    const int32_t H = G * (1 + static_cast<int32_t>(rng() % 3));
    const int32_t L = 1 + static_cast<int32_t>(rng() % 4);
    const int64_t T = 8 + static_cast<int64_t>(rng() % 90);
    PlanInput input;
    input.params.policy = policies[trial % 3];
    input.params.window = 1 + static_cast<int32_t>(rng() % 12);
    input.params.kernel = 1 + 2 * static_cast<int32_t>(rng() % 4);
    input.params.tokens_per_layer =
        input.params.window + static_cast<int64_t>(rng() % static_cast<uint64_t>(T));
    input.params.alpha = static_cast<double>(rng() % 11) / 10.0;
    const int32_t w_eff = static_cast<int32_t>(std::min<int64_t>(input.params.window, T));
    input.summary = RandomSummary(T, H, G, L, w_eff, 100 + trial);
    inputs.push_back(std::move(input));
  }
  return inputs;
}

TEST(PlanCompressionHeadSplitTest, UniformIsTheSelectPositionsPlanOfEveryHead) {
  // Uniform (the default) keeps the pre-change path: every head is SelectPositions of its
  // TokenScores at the layer's budget from the kept budget functions.
  int compressed = 0;
  for (const PlanInput& input : RandomPlanInputs()) {
    const CompressionParams& p = input.params;
    const WindowSummary& s = input.summary;
    const absl::StatusOr<CompressionPlan> plan = PlanCompression(p, s);
    ASSERT_TRUE(plan.ok()) << plan.status();
    EXPECT_EQ(plan->head_budgets, HeadBudgets::kUniform);
    EXPECT_TRUE(plan->HeadCountsUniform());
    const int64_t T = s.prompt_tokens;
    const int64_t average = AverageBudget(p, T);
    if (T <= average) {
      EXPECT_FALSE(plan->compressed);
      continue;
    }
    ++compressed;
    std::vector<int64_t> budgets(s.num_layers, average);
    if (p.policy == KvPolicy::kPyramidKv) {
      budgets = PyramidBudgets(s.num_layers, average, s.window, p.pyramid_beta, T);
    } else if (p.policy == KvPolicy::kZigZag) {
      std::vector<double> lmba;
      for (const std::vector<float>& mass : s.window_mass) {
        lmba.push_back(LayerMinimumBudget(mass, s.num_heads, T, s.window, p.tau));
      }
      budgets = ZigZagBudgets(lmba, average, s.window, p.rho, T);
    }
    ASSERT_EQ(plan->budgets, budgets);
    ASSERT_EQ(plan->kept.size(), static_cast<size_t>(s.num_layers));
    ASSERT_EQ(plan->head_counts.size(), static_cast<size_t>(s.num_layers));
    for (int32_t l = 0; l < s.num_layers; ++l) {
      const std::vector<std::vector<float>> scores =
          TokenScores(s.window_mass[l], s.num_heads, s.num_kv_heads, T, s.window, p.kernel);
      for (int32_t g = 0; g < s.num_kv_heads; ++g) {
        EXPECT_EQ(plan->kept[l][g], SelectPositions(scores[g], T, s.window, budgets[l]));
        EXPECT_EQ(plan->head_counts[l][g], budgets[l]);
      }
    }
  }
  EXPECT_GT(compressed, 30);
}

TEST(PlanCompressionHeadSplitTest, AdaptiveKeepsLayerBudgetsAndSplitsEachLayerAcrossHeads) {
  int uneven_layers = 0;
  for (PlanInput input : RandomPlanInputs()) {
    const WindowSummary& s = input.summary;
    const absl::StatusOr<CompressionPlan> uniform = PlanCompression(input.params, s);
    input.params.head_budgets = HeadBudgets::kAdaptive;
    const absl::StatusOr<CompressionPlan> plan = PlanCompression(input.params, s);
    ASSERT_TRUE(uniform.ok() && plan.ok()) << plan.status();
    EXPECT_EQ(plan->head_budgets, HeadBudgets::kAdaptive);
    EXPECT_EQ(plan->compressed, uniform->compressed);
    EXPECT_EQ(plan->budgets, uniform->budgets);  // the layer split does not change
    EXPECT_EQ(plan->lmba, uniform->lmba);
    if (!plan->compressed) continue;
    const int64_t T = s.prompt_tokens;
    for (int32_t l = 0; l < s.num_layers; ++l) {
      const std::vector<std::vector<float>> scores = TokenScores(
          s.window_mass[l], s.num_heads, s.num_kv_heads, T, s.window, input.params.kernel);
      EXPECT_EQ(plan->kept[l],
                AdaptiveHeadPositions(scores, T, s.window, plan->budgets[l], input.params.alpha));
      int64_t total = 0;
      for (int32_t g = 0; g < s.num_kv_heads; ++g) {
        EXPECT_EQ(plan->head_counts[l][g], static_cast<int64_t>(plan->kept[l][g].size()));
        total += plan->head_counts[l][g];
      }
      EXPECT_EQ(total, s.num_kv_heads * plan->budgets[l]);
      uneven_layers += *std::max_element(plan->head_counts[l].begin(),
                                         plan->head_counts[l].end()) != plan->budgets[l];
    }
  }
  EXPECT_GT(uneven_layers, 10);
}

TEST(PlanCompressionHeadSplitTest, AdaptiveWithAlphaOneIsTheUniformPlan) {
  for (PlanInput input : RandomPlanInputs()) {
    const absl::StatusOr<CompressionPlan> uniform = PlanCompression(input.params, input.summary);
    input.params.head_budgets = HeadBudgets::kAdaptive;
    input.params.alpha = 1.0;
    const absl::StatusOr<CompressionPlan> adaptive = PlanCompression(input.params, input.summary);
    ASSERT_TRUE(uniform.ok() && adaptive.ok());
    EXPECT_EQ(adaptive->kept, uniform->kept);
    EXPECT_EQ(adaptive->head_counts, uniform->head_counts);
  }
}

TEST(PlanCompressionHeadSplitTest, StreamingAndFullIgnoreAdaptive) {
  const WindowSummary summary = RandomSummary(50, 4, 2, 2, 8, 1);
  for (KvPolicy policy : {KvPolicy::kStreaming, KvPolicy::kFull}) {
    CompressionParams params;
    params.policy = policy;
    params.window = 8;
    if (policy == KvPolicy::kStreaming) params.tokens_per_layer = 12;
    const absl::StatusOr<CompressionPlan> uniform = PlanCompression(params, summary);
    params.head_budgets = HeadBudgets::kAdaptive;
    const absl::StatusOr<CompressionPlan> adaptive = PlanCompression(params, summary);
    ASSERT_TRUE(uniform.ok() && adaptive.ok()) << adaptive.status();
    EXPECT_EQ(adaptive->head_budgets, HeadBudgets::kUniform) << KvPolicyName(policy);
    EXPECT_EQ(adaptive->budgets, uniform->budgets);
    EXPECT_EQ(adaptive->kept, uniform->kept);
    EXPECT_EQ(adaptive->head_counts, uniform->head_counts);
  }
}

// ---------------------------------------------------------------------------------------------
// The head-granular cache applies unequal head counts: each KV head's stream is compacted to its
// own count and returns its own tail blocks (issue 12; end-to-end: kv_head_stream_test.cc).
TEST(PlanCompressionHeadSplitTest, CompactionAppliesUnequalHeadCountsPerHead) {
  absl::StatusOr<std::unique_ptr<Backend>> backend = CreateBackend("cpu");
  ASSERT_TRUE(backend.ok()) << backend.status();
  KvLayout layout;
  layout.num_layers = 1;
  layout.num_kv_heads = 2;
  layout.head_dim = 4;
  layout.block_size = 4;
  absl::StatusOr<std::unique_ptr<KvCache>> cache = KvCache::Create(backend->get(), layout, 8);
  ASSERT_TRUE(cache.ok()) << cache.status();
  SequenceKv kv(&(*cache)->pool(), 1, 2);
  ASSERT_TRUE(kv.AppendAllLayers(8).ok());  // 2 blocks in each of the 2 heads' streams
  EXPECT_EQ((*cache)->pool().num_used(), 4);

  CompressionPlan plan;
  plan.policy = KvPolicy::kSnapKv;
  plan.head_budgets = HeadBudgets::kAdaptive;
  plan.compressed = true;
  plan.budgets = {5};
  plan.kept = {AdaptiveHeadPositions(kTwoHeads, 8, 2, 5, 0.34)};  // 7 and 3 entries
  plan.head_counts = {{7, 3}};
  EXPECT_FALSE(plan.HeadCountsUniform());

  const absl::Status status = CompactSequenceKv(plan, **backend, **cache, kv);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(kv.length(0, 0), 7);
  EXPECT_EQ(kv.length(0, 1), 3);
  // Head 0 keeps ceil(7 / 4) = 2 blocks, head 1 ceil(3 / 4) = 1: one block back in the pool.
  EXPECT_EQ(kv.blocks(0, 0).size(), 2u);
  EXPECT_EQ(kv.blocks(0, 1).size(), 1u);
  EXPECT_EQ(kv.blocks_held(), 3);
  EXPECT_EQ((*cache)->pool().num_used(), 3);

  // head_counts that disagree with the kept rows are refused and change nothing.
  plan.kept = {{{0, 1}, {0}}};
  plan.head_counts = {{1, 1}};
  const absl::Status mismatch = CompactSequenceKv(plan, **backend, **cache, kv);
  EXPECT_EQ(mismatch.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(mismatch.message()), HasSubstr("head_counts"));
  EXPECT_EQ(kv.length(0, 0), 7);
  EXPECT_EQ((*cache)->pool().num_used(), 3);
}

}  // namespace
}  // namespace zigzag
