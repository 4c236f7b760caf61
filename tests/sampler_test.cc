// Tests of sampling: each logits processor on hand-made distributions and against naive float64
// references written here, greedy tie-breaking, seeded reproducibility, the empirical distribution
// of draws, logprobs, and SamplingParams validation.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/sampling/sampler.h"
#include "core/sampling/sampling_params.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_support.h"

namespace zigzag {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr float kInf = std::numeric_limits<float>::infinity();

// Independent float64 references ---------------------------------------------------------------

std::vector<double> Softmax64(const std::vector<double>& logits) {
  double max = -std::numeric_limits<double>::infinity();
  for (double v : logits) max = std::max(max, v);
  std::vector<double> probs(logits.size(), 0.0);
  double sum = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (std::isinf(logits[i]) && logits[i] < 0) continue;
    probs[i] = std::exp(logits[i] - max);
    sum += probs[i];
  }
  for (double& p : probs) p /= sum;
  return probs;
}

std::vector<double> ToDouble(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// Ids whose logit is not -inf.
std::vector<int32_t> KeptIds(const std::vector<float>& logits) {
  std::vector<int32_t> ids;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (logits[i] != -kInf) ids.push_back(static_cast<int32_t>(i));
  }
  return ids;
}

// Keep i when fewer than k tokens have a strictly higher logit.
std::vector<bool> RefTopK(const std::vector<double>& logits, int k) {
  std::vector<bool> keep(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) {
    int higher = 0;
    for (double v : logits) higher += v > logits[i] ? 1 : 0;
    keep[i] = k <= 0 || higher < k;
  }
  return keep;
}

// Keep i when the probability of the strictly more probable tokens is still below top_p.
std::vector<bool> RefTopP(const std::vector<double>& logits, double top_p) {
  const std::vector<double> probs = Softmax64(logits);
  std::vector<bool> keep(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) {
    double above = 0.0;
    for (size_t j = 0; j < logits.size(); ++j) {
      if (probs[j] > probs[i]) above += probs[j];
    }
    keep[i] = top_p >= 1.0 || above < top_p;
  }
  return keep;
}

// Keep i when p_i >= min_p * p_max.
std::vector<bool> RefMinP(const std::vector<double>& logits, double min_p) {
  const std::vector<double> probs = Softmax64(logits);
  const double max = *std::max_element(probs.begin(), probs.end());
  std::vector<bool> keep(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) keep[i] = probs[i] >= min_p * max;
  return keep;
}

void Mask(const std::vector<bool>& keep, std::vector<double>& logits) {
  for (size_t i = 0; i < logits.size(); ++i) {
    if (!keep[i]) logits[i] = -std::numeric_limits<double>::infinity();
  }
}

// The whole pipeline in float64: penalty, temperature, top-k, top-p, min-p. Returns the final
// log-probabilities (-inf for removed tokens).
std::vector<double> RefProcessed(const std::vector<float>& raw, const std::vector<int32_t>& context,
                                 const SamplingParams& params) {
  std::vector<double> logits = ToDouble(raw);
  std::set<int32_t> distinct(context.begin(), context.end());
  for (int32_t id : distinct) {
    double& v = logits[id];
    v = v < 0 ? v * params.repetition_penalty : v / params.repetition_penalty;
  }
  for (double& v : logits) v /= params.temperature;
  Mask(RefTopK(logits, params.top_k), logits);
  Mask(RefTopP(logits, params.top_p), logits);
  Mask(RefMinP(logits, params.min_p), logits);
  std::vector<double> logprobs = Softmax64(logits);
  for (double& p : logprobs) p = std::log(p);
  return logprobs;
}

std::vector<float> LogitsFromProbs(const std::vector<double>& probs) {
  std::vector<float> logits;
  for (double p : probs) logits.push_back(static_cast<float>(std::log(p)));
  return logits;
}

// Repetition penalty ---------------------------------------------------------------------------

TEST(RepetitionPenaltyTest, MatchesHuggingFaceDefinition) {
  std::vector<float> logits = {2.0f, -1.0f, 0.5f, -3.0f, 4.0f, 0.0f};
  const std::vector<int32_t> context = {0, 1, 1, 1, 3, 0, 5};
  Sampler::ApplyRepetitionPenalty(2.0f, context, logits);
  // Positive logits are divided, negative multiplied; id 1 occurs three times, penalised once.
  EXPECT_THAT(logits, ElementsAre(1.0f, -2.0f, 0.5f, -6.0f, 4.0f, 0.0f));
}

TEST(RepetitionPenaltyTest, BelowOneRewardsRepeats) {
  std::vector<float> logits = {2.0f, -1.0f, 3.0f};
  Sampler::ApplyRepetitionPenalty(0.5f, std::vector<int32_t>{0, 1, 0}, logits);
  EXPECT_THAT(logits, ElementsAre(4.0f, -0.5f, 3.0f));
}

TEST(RepetitionPenaltyTest, OneOrEmptyContextIsANoOp) {
  std::vector<float> logits = {2.0f, -1.0f, 3.0f};
  Sampler::ApplyRepetitionPenalty(1.0f, std::vector<int32_t>{0, 1}, logits);
  Sampler::ApplyRepetitionPenalty(1.3f, std::vector<int32_t>{}, logits);
  EXPECT_THAT(logits, ElementsAre(2.0f, -1.0f, 3.0f));
}

// Top-k ----------------------------------------------------------------------------------------

TEST(TopKTest, KeepsTheKHighest) {
  std::vector<float> logits = {1.0f, 5.0f, 3.0f, 4.0f, 2.0f};
  Sampler::ApplyTopK(2, logits);
  EXPECT_THAT(KeptIds(logits), ElementsAre(1, 3));
  EXPECT_EQ(logits[1], 5.0f);  // kept values are untouched
  EXPECT_EQ(logits[3], 4.0f);
}

TEST(TopKTest, TiesAtTheBoundaryAreAllKept) {
  std::vector<float> logits = {1.0f, 3.0f, 3.0f, 3.0f, 0.0f};
  Sampler::ApplyTopK(2, logits);
  EXPECT_THAT(KeptIds(logits), ElementsAre(1, 2, 3));
  std::vector<float> tied_max = {7.0f, 1.0f, 7.0f};
  Sampler::ApplyTopK(1, tied_max);
  EXPECT_THAT(KeptIds(tied_max), ElementsAre(0, 2));
}

TEST(TopKTest, ZeroOrLargeKIsOff) {
  std::vector<float> logits = {1.0f, 2.0f, 3.0f};
  Sampler::ApplyTopK(0, logits);
  EXPECT_THAT(KeptIds(logits), ElementsAre(0, 1, 2));
  Sampler::ApplyTopK(3, logits);
  Sampler::ApplyTopK(100, logits);
  EXPECT_THAT(KeptIds(logits), ElementsAre(0, 1, 2));
  Sampler::ApplyTopK(1, logits);  // at least one token
  EXPECT_THAT(KeptIds(logits), ElementsAre(2));
}

TEST(TopKTest, MatchesReferenceOnRandomLogits) {
  for (uint64_t seed = 0; seed < 50; ++seed) {
    std::vector<float> logits = testing::RandomFloats(64, seed, -4.0f, 4.0f);
    // Round to create ties.
    for (float& v : logits) v = std::round(v * 4.0f) / 4.0f;
    const int k = 1 + static_cast<int>(seed % 20);
    const std::vector<bool> expected = RefTopK(ToDouble(logits), k);
    Sampler::ApplyTopK(k, logits);
    for (size_t i = 0; i < logits.size(); ++i) {
      EXPECT_EQ(logits[i] != -kInf, expected[i]) << "seed " << seed << " id " << i;
    }
  }
}

// Top-p ----------------------------------------------------------------------------------------

TEST(TopPTest, KeepsSmallestSetReachingTopP) {
  // Probabilities 0.1, 0.4, 0.2, 0.3: in order id1 (0.4), id3 (0.3), id2 (0.2), id0 (0.1).
  const std::vector<double> probs = {0.1, 0.4, 0.2, 0.3};
  const std::vector<std::pair<float, std::vector<int32_t>>> cases = {
      {0.35f, {1}},           // 0.4 alone reaches 0.35
      {0.5f, {1, 3}},         // 0.4 < 0.5, 0.7 >= 0.5
      {0.69f, {1, 3}},        // 0.7 >= 0.69
      {0.75f, {1, 2, 3}},     // 0.9 >= 0.75
      {0.95f, {0, 1, 2, 3}},  // everything
      {1.0f, {0, 1, 2, 3}},   // off
  };
  for (const auto& [top_p, expected] : cases) {
    std::vector<float> logits = LogitsFromProbs(probs);
    Sampler::ApplyTopP(top_p, logits);
    EXPECT_EQ(KeptIds(logits), expected) << "top_p " << top_p;
  }
}

TEST(TopPTest, AlwaysKeepsTheMostProbableToken) {
  std::vector<float> logits = LogitsFromProbs({0.05, 0.9, 0.05});
  Sampler::ApplyTopP(0.01f, logits);
  EXPECT_THAT(KeptIds(logits), ElementsAre(1));
  std::vector<float> tiny = LogitsFromProbs({0.2, 0.8});
  Sampler::ApplyTopP(std::numeric_limits<float>::min(), tiny);
  EXPECT_THAT(KeptIds(tiny), ElementsAre(1));
}

TEST(TopPTest, TiedTokensShareOneFate) {
  // Three tokens of 0.3: nothing is above any of them, so all stay even though two reach 0.5.
  std::vector<float> logits = {1.0f, 1.0f, 1.0f, static_cast<float>(1.0 + std::log(1.0 / 3.0))};
  Sampler::ApplyTopP(0.5f, logits);
  EXPECT_THAT(KeptIds(logits), ElementsAre(0, 1, 2));
  // A tie just below the cut: 0.5, then two of 0.2, then 0.1. top_p 0.6: above the 0.2s is 0.5.
  std::vector<float> second = LogitsFromProbs({0.2, 0.5, 0.1, 0.2});
  second[3] = second[0];  // exactly equal
  Sampler::ApplyTopP(0.6f, second);
  EXPECT_THAT(KeptIds(second), ElementsAre(0, 1, 3));
}

TEST(TopPTest, IgnoresAlreadyMaskedTokens) {
  std::vector<float> logits = LogitsFromProbs({0.5, 0.3, 0.2});
  logits.push_back(-kInf);
  Sampler::ApplyTopP(0.7f, logits);
  EXPECT_THAT(KeptIds(logits), ElementsAre(0, 1));
}

TEST(TopPTest, MatchesReferenceOnRandomLogits) {
  for (uint64_t seed = 0; seed < 100; ++seed) {
    std::vector<float> logits = testing::RandomFloats(50, seed, -3.0f, 3.0f);
    const float top_p = 0.05f + 0.9f * static_cast<float>(seed) / 100.0f;
    const std::vector<bool> expected = RefTopP(ToDouble(logits), top_p);
    Sampler::ApplyTopP(top_p, logits);
    for (size_t i = 0; i < logits.size(); ++i) {
      EXPECT_EQ(logits[i] != -kInf, expected[i]) << "seed " << seed << " id " << i;
    }
  }
}

// Min-p ----------------------------------------------------------------------------------------

TEST(MinPTest, RemovesBelowFractionOfMax) {
  // Max 0.5: min_p 0.4 -> threshold 0.2 keeps 0.5 and 0.25.
  std::vector<float> logits = LogitsFromProbs({0.5, 0.25, 0.15, 0.1});
  Sampler::ApplyMinP(0.4f, logits);
  EXPECT_THAT(KeptIds(logits), ElementsAre(0, 1));
  std::vector<float> more = LogitsFromProbs({0.5, 0.25, 0.15, 0.1});
  Sampler::ApplyMinP(0.25f, more);  // threshold 0.125
  EXPECT_THAT(KeptIds(more), ElementsAre(0, 1, 2));
}

TEST(MinPTest, OneKeepsExactlyTheTiedMaximum) {
  std::vector<float> logits = {2.0f, 2.0f, 1.999f, -1.0f};
  Sampler::ApplyMinP(1.0f, logits);
  EXPECT_THAT(KeptIds(logits), ElementsAre(0, 1));
  std::vector<float> single = {0.0f, 3.0f, 2.0f};
  Sampler::ApplyMinP(1.0f, single);
  EXPECT_THAT(KeptIds(single), ElementsAre(1));
}

TEST(MinPTest, ZeroIsOff) {
  std::vector<float> logits = {0.0f, -50.0f, 10.0f};
  Sampler::ApplyMinP(0.0f, logits);
  EXPECT_THAT(KeptIds(logits), ElementsAre(0, 1, 2));
}

TEST(MinPTest, MatchesReferenceOnRandomLogits) {
  for (uint64_t seed = 0; seed < 50; ++seed) {
    std::vector<float> logits = testing::RandomFloats(40, seed + 1000, -5.0f, 5.0f);
    const float min_p = 0.02f * static_cast<float>(seed);
    const std::vector<bool> expected = RefMinP(ToDouble(logits), min_p);
    Sampler::ApplyMinP(min_p, logits);
    for (size_t i = 0; i < logits.size(); ++i) {
      EXPECT_EQ(logits[i] != -kInf, expected[i]) << "seed " << seed << " id " << i;
    }
  }
}

// Greedy ---------------------------------------------------------------------------------------

TEST(SamplerGreedyTest, ArgmaxWithLowestIdOnTies) {
  SamplingParams params;
  params.temperature = 0.0f;
  params.top_k = 1;  // ignored by greedy
  params.top_p = 0.1f;
  Sampler sampler(params);
  const std::vector<float> logits = {1.0f, 3.0f, 3.0f, 2.0f};
  const SampledToken token = sampler.Sample(logits, {});
  EXPECT_EQ(token.token, 1);
  const double expected = 3.0 - std::log(std::exp(1.0) + 2.0 * std::exp(3.0) + std::exp(2.0));
  EXPECT_NEAR(token.logprob, expected, 1e-6);
  // Same answer every time: greedy does not depend on a random stream.
  for (int i = 0; i < 10; ++i) EXPECT_EQ(sampler.Sample(logits, {}).token, 1);
}

TEST(SamplerGreedyTest, UsesPenalisedLogits) {
  SamplingParams params;
  params.temperature = 0.0f;
  params.repetition_penalty = 2.0f;
  Sampler sampler(params);
  const std::vector<float> logits = {3.0f, 2.5f, -1.0f};
  const std::vector<int32_t> context = {0, 0, 2};
  const SampledToken token = sampler.Sample(logits, context);
  // Penalised: {1.5, 2.5, -2.0}.
  EXPECT_EQ(token.token, 1);
  const double expected = 2.5 - std::log(std::exp(1.5) + std::exp(2.5) + std::exp(-2.0));
  EXPECT_NEAR(token.logprob, expected, 1e-6);
}

TEST(SamplerGreedyTest, NaNLogitsAreNeverChosen) {
  SamplingParams params;
  params.temperature = 0.0f;
  Sampler greedy(params);
  const std::vector<float> logits = {std::nanf(""), 1.0f, 0.5f};
  EXPECT_EQ(greedy.Sample(logits, {}).token, 1);
  params.temperature = 1.0f;
  params.seed = 3;
  Sampler random(params);
  for (int i = 0; i < 200; ++i) EXPECT_NE(random.Sample(logits, {}).token, 0);
}

// Random draws ---------------------------------------------------------------------------------

std::vector<int32_t> DrawMany(const SamplingParams& params, const std::vector<float>& logits,
                              int n) {
  Sampler sampler(params);
  std::vector<int32_t> tokens;
  for (int i = 0; i < n; ++i) tokens.push_back(sampler.Sample(logits, {}).token);
  return tokens;
}

TEST(SamplerTest, SeededRunsReproduceAndSeedsDiffer) {
  const std::vector<float> logits = testing::RandomFloats(32, 7, -1.0f, 1.0f);
  SamplingParams params;
  params.seed = 42;
  const std::vector<int32_t> first = DrawMany(params, logits, 200);
  EXPECT_EQ(DrawMany(params, logits, 200), first);
  params.seed = 43;
  EXPECT_NE(DrawMany(params, logits, 200), first);
}

// The documented draw: u = top 53 bits of the next mt19937_64 output, then the first token whose
// cumulative probability exceeds u. mt19937_64 is fully specified by the standard, so this
// fixes seeded output across standard libraries.
TEST(SamplerTest, SeededDrawsFollowTheDocumentedInverseCdf) {
  const std::vector<float> logits = testing::RandomFloats(16, 11, -2.0f, 2.0f);
  const std::vector<double> probs = Softmax64(ToDouble(logits));
  for (uint64_t seed : {0ull, 1ull, 12345ull, 0xdeadbeefcafeull}) {
    SamplingParams params;
    params.seed = seed;
    Sampler sampler(params);
    std::mt19937_64 rng(seed);
    for (int i = 0; i < 100; ++i) {
      const double u = static_cast<double>(rng() >> 11) / 9007199254740992.0;  // 2^53
      double cumulative = 0.0;
      int32_t expected = static_cast<int32_t>(probs.size()) - 1;
      for (size_t t = 0; t < probs.size(); ++t) {
        cumulative += probs[t];
        if (u < cumulative) {
          expected = static_cast<int32_t>(t);
          break;
        }
      }
      ASSERT_EQ(sampler.Sample(logits, {}).token, expected) << "seed " << seed << " draw " << i;
    }
  }
}

double MaxAbsDiffOfFrequencies(const std::vector<int32_t>& draws,
                               const std::vector<double>& probs) {
  std::vector<double> counts(probs.size(), 0.0);
  for (int32_t t : draws) counts[t] += 1.0;
  double max_diff = 0.0;
  for (size_t i = 0; i < probs.size(); ++i) {
    max_diff = std::max(max_diff, std::abs(counts[i] / draws.size() - probs[i]));
  }
  return max_diff;
}

TEST(SamplerTest, EmpiricalDistributionMatchesSoftmax) {
  const std::vector<float> logits = {0.5f, -1.0f, 1.5f, 0.0f, 1.0f, -0.3f};
  const std::vector<double> probs = Softmax64(ToDouble(logits));
  SamplingParams params;
  params.seed = 2024;
  const std::vector<int32_t> draws = DrawMany(params, logits, 20000);
  EXPECT_LT(MaxAbsDiffOfFrequencies(draws, probs), 0.02);
}

TEST(SamplerTest, TemperatureScalesLogits) {
  const std::vector<float> logits = {0.5f, -1.0f, 1.5f, 0.0f, 1.0f};
  for (float temperature : {0.5f, 2.0f}) {
    std::vector<double> scaled = ToDouble(logits);
    for (double& v : scaled) v /= temperature;
    const std::vector<double> probs = Softmax64(scaled);
    SamplingParams params;
    params.temperature = temperature;
    params.seed = 99;
    const std::vector<int32_t> draws = DrawMany(params, logits, 20000);
    EXPECT_LT(MaxAbsDiffOfFrequencies(draws, probs), 0.02) << "temperature " << temperature;
    // The reported logprob is that of the scaled distribution, exactly.
    Sampler sampler(params);
    for (int i = 0; i < 20; ++i) {
      const SampledToken token = sampler.Sample(logits, {});
      EXPECT_NEAR(token.logprob, std::log(probs[token.token]), 1e-5);
    }
  }
  // A very small temperature behaves like greedy and does not overflow.
  SamplingParams cold;
  cold.temperature = 1e-30f;
  cold.seed = 1;
  for (int32_t token : DrawMany(cold, logits, 50)) EXPECT_EQ(token, 2);
}

TEST(SamplerTest, DrawsStayInTheFilteredSetWithRenormalisedFrequencies) {
  // top_k 3 keeps ids 2, 4, 0; top_p 0.8 then drops id 0 (0.51 + 0.31 of the renormalised mass is
  // above it); draws follow the renormalised distribution of ids 2 and 4.
  const std::vector<float> logits = {0.5f, -1.0f, 1.5f, 0.0f, 1.0f};
  SamplingParams params;
  params.top_k = 3;
  params.top_p = 0.8f;
  params.seed = 5;
  const std::vector<double> ref = RefProcessed(logits, {}, params);
  ASSERT_TRUE(std::isinf(ref[0]) && std::isinf(ref[1]) && std::isinf(ref[3]));
  std::vector<double> probs(ref.size());
  for (size_t i = 0; i < ref.size(); ++i) probs[i] = std::exp(ref[i]);
  const std::vector<int32_t> draws = DrawMany(params, logits, 20000);
  for (int32_t t : draws) ASSERT_TRUE(t == 2 || t == 4) << t;
  EXPECT_LT(MaxAbsDiffOfFrequencies(draws, probs), 0.02);
}

// The chosen token's logprob is the log-softmax of the fully processed distribution, and the token
// is one the float64 reference pipeline keeps, across random logits and parameters.
TEST(SamplerTest, LogprobMatchesReferencePipeline) {
  std::mt19937_64 rng(77);
  for (int trial = 0; trial < 200; ++trial) {
    const std::vector<float> logits = testing::RandomFloats(40, 500 + trial, -4.0f, 4.0f);
    std::vector<int32_t> context;
    for (int i = 0; i < 10; ++i) context.push_back(static_cast<int32_t>(rng() % 40));
    SamplingParams params;
    params.temperature = 0.3f + static_cast<float>(rng() % 100) / 50.0f;
    params.top_k = static_cast<int32_t>(rng() % 15);
    params.top_p = 0.2f + static_cast<float>(rng() % 81) / 100.0f;
    params.min_p = static_cast<float>(rng() % 30) / 100.0f;
    params.repetition_penalty = 0.8f + static_cast<float>(rng() % 8) / 10.0f;
    params.seed = trial;
    const std::vector<double> ref = RefProcessed(logits, context, params);
    Sampler sampler(params);
    for (int draw = 0; draw < 5; ++draw) {
      const SampledToken token = sampler.Sample(logits, context);
      ASSERT_GE(token.token, 0);
      ASSERT_LT(token.token, 40);
      ASSERT_FALSE(std::isinf(ref[token.token])) << "trial " << trial << " drew a removed token";
      EXPECT_NEAR(token.logprob, ref[token.token], 1e-4) << "trial " << trial;
    }
  }
}

TEST(SamplerTest, UnseededSamplersDiffer) {
  const std::vector<float> logits(1000, 0.0f);  // uniform over 1000 tokens
  SamplingParams params;
  const std::vector<int32_t> a = DrawMany(params, logits, 20);
  const std::vector<int32_t> b = DrawMany(params, logits, 20);
  EXPECT_NE(a, b);  // equal with probability 1000^-20
}

// Validation -----------------------------------------------------------------------------------

TEST(ValidateSamplingParamsTest, DefaultsAndBoundariesAreValid) {
  SamplingParams params;
  EXPECT_TRUE(ValidateSamplingParams(params, 100).ok());
  params.temperature = 0.0f;
  params.top_k = 100000;
  params.top_p = 1.0f;
  params.min_p = 1.0f;
  params.repetition_penalty = 0.01f;
  params.max_tokens = 1;
  params.stop_token_ids = {0, 99};
  EXPECT_TRUE(ValidateSamplingParams(params, 100).ok());
}

TEST(ValidateSamplingParamsTest, EachBadFieldIsNamed) {
  struct Case {
    const char* name;
    void (*corrupt)(SamplingParams&);
    const char* message;
  };
  static const float nan_value = std::nanf("");
  const std::vector<Case> cases = {
      {"nan temperature", [](SamplingParams& p) { p.temperature = nan_value; }, "temperature"},
      {"negative temperature", [](SamplingParams& p) { p.temperature = -1.0f; },
       "temperature must be a finite number >= 0, got -1"},
      {"infinite temperature", [](SamplingParams& p) { p.temperature = kInf; }, "temperature"},
      {"negative top_k", [](SamplingParams& p) { p.top_k = -1; }, "top_k must be >= 0"},
      {"zero top_p", [](SamplingParams& p) { p.top_p = 0.0f; }, "top_p must be in (0, 1]"},
      {"large top_p", [](SamplingParams& p) { p.top_p = 1.5f; },
       "top_p must be in (0, 1] (1 = off), got 1.5"},
      {"nan top_p", [](SamplingParams& p) { p.top_p = nan_value; }, "top_p"},
      {"negative min_p", [](SamplingParams& p) { p.min_p = -0.1f; }, "min_p must be in [0, 1]"},
      {"large min_p", [](SamplingParams& p) { p.min_p = 1.01f; }, "min_p"},
      {"nan min_p", [](SamplingParams& p) { p.min_p = nan_value; }, "min_p"},
      {"zero penalty", [](SamplingParams& p) { p.repetition_penalty = 0.0f; },
       "repetition_penalty must be a finite number > 0"},
      {"negative penalty", [](SamplingParams& p) { p.repetition_penalty = -1.0f; },
       "repetition_penalty"},
      {"nan penalty", [](SamplingParams& p) { p.repetition_penalty = nan_value; },
       "repetition_penalty"},
      {"zero max_tokens", [](SamplingParams& p) { p.max_tokens = 0; },
       "max_tokens must be >= 1, got 0"},
      {"stop token too large",
       [](SamplingParams& p) {
         p.stop_token_ids = {5, 100};
       },
       "stop_token_ids[1] = 100 is outside the vocabulary [0, 100)"},
      {"negative stop token", [](SamplingParams& p) { p.stop_token_ids = {-1}; },
       "stop_token_ids[0] = -1"},
  };
  for (const Case& c : cases) {
    SamplingParams params;
    c.corrupt(params);
    const absl::Status status = ValidateSamplingParams(params, 100);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_THAT(std::string(status.message()), HasSubstr(c.message)) << c.name;
  }
}

}  // namespace
}  // namespace zigzag
