// LMBO (core/compress/lmbo.h) on hand-built layers: output cosines worked out by hand (scale,
// causal mask, GQA head mapping), the budget grid, a layer whose attention sits on 3 tokens (small
// LMBO), uniform attention (LMBO = T), SnapKV's selection, and errors naming the field.
#include "core/compress/lmbo.h"

#include <cmath>
#include <vector>

#include "core/compress/compression_params.h"
#include "core/compress/policy.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_support.h"

namespace zigzag {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A layer sample that owns its buffers.
struct Layer {
  int64_t tokens = 0;
  int32_t window = 0, heads = 0, kv_heads = 0, head_dim = 0;
  std::vector<float> queries, keys, values, mass;

  Layer(int64_t t, int32_t w, int32_t h, int32_t g, int32_t d)
      : tokens(t),
        window(w),
        heads(h),
        kv_heads(g),
        head_dim(d),
        queries(static_cast<size_t>(w * h * d), 0.0f),
        keys(static_cast<size_t>(t * g * d), 0.0f),
        values(static_cast<size_t>(t * g * d), 0.0f),
        mass(static_cast<size_t>(h * t), 0.0f) {}

  float& query(int64_t i, int64_t h, int64_t c) { return queries[(i * heads + h) * head_dim + c]; }
  float& key(int64_t j, int64_t g, int64_t c) { return keys[(j * kv_heads + g) * head_dim + c]; }
  float& value(int64_t j, int64_t g, int64_t c) {
    return values[(j * kv_heads + g) * head_dim + c];
  }

  // The window mass as prefill would measure it, recomputed here with a naive float64 softmax.
  void FillMassFromAttention() {
    const int32_t group = heads / kv_heads;
    const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
    std::fill(mass.begin(), mass.end(), 0.0f);
    for (int64_t i = 0; i < window; ++i) {
      const int64_t index = tokens - window + i;
      for (int64_t h = 0; h < heads; ++h) {
        std::vector<double> p(index + 1);
        double max_logit = -1e300, total = 0.0;
        for (int64_t j = 0; j <= index; ++j) {
          double dot = 0.0;
          for (int64_t c = 0; c < head_dim; ++c)
            dot += double{query(i, h, c)} * key(j, h / group, c);
          p[j] = dot * scale;
          max_logit = std::max(max_logit, p[j]);
        }
        for (double& x : p) total += (x = std::exp(x - max_logit));
        for (int64_t j = 0; j <= index; ++j)
          mass[h * tokens + j] += static_cast<float>(p[j] / total);
      }
    }
  }

  LayerAttentionSample sample() const {
    return LayerAttentionSample{.prompt_tokens = tokens,
                                .window = window,
                                .num_heads = heads,
                                .num_kv_heads = kv_heads,
                                .head_dim = head_dim,
                                .window_queries = queries,
                                .keys = keys,
                                .values = values,
                                .window_mass = mass};
  }
};

double Cos(std::vector<double> a, std::vector<double> b) {
  double dot = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size(); ++i) dot += a[i] * b[i], na += a[i] * a[i], nb += b[i] * b[i];
  return dot / std::sqrt(na * nb);
}

TEST(OutputBudgetGridTest, PowersOfTwoFromTheWindowUpToThePrompt) {
  EXPECT_THAT(OutputBudgetGrid(600, 32), ElementsAre(32, 64, 128, 256, 512, 600));
  EXPECT_THAT(OutputBudgetGrid(256, 8), ElementsAre(8, 16, 32, 64, 128, 256));
  EXPECT_THAT(OutputBudgetGrid(100, 24), ElementsAre(24, 32, 64, 100));
  EXPECT_THAT(OutputBudgetGrid(64, 32), ElementsAre(32, 64));
  EXPECT_THAT(OutputBudgetGrid(20, 20), ElementsAre(20));
}

// Uniform attention (zero queries) over V = (1,0), (0,1), (1,1): the full output of the last
// query is (2/3, 2/3); keeping {0, 2} gives (1, 1/2), cosine 1.5 / sqrt(2.5); {2} alone points
// the same way as the full output; {0} is at 45 degrees.
TEST(MeanOutputCosineTest, MatchesHandComputedCosines) {
  Layer layer(3, 1, 1, 1, 2);
  layer.value(0, 0, 0) = 1;
  layer.value(1, 0, 1) = 1;
  layer.value(2, 0, 0) = layer.value(2, 0, 1) = 1;
  const LayerAttentionSample sample = layer.sample();
  using Kept = std::vector<std::vector<int32_t>>;
  EXPECT_NEAR(*MeanOutputCosine(sample, Kept{{0, 2}}), 1.5 / std::sqrt(2.5), 1e-12);
  EXPECT_NEAR(*MeanOutputCosine(sample, Kept{{2}}), 1.0, 1e-12);
  EXPECT_NEAR(*MeanOutputCosine(sample, Kept{{0}}), 1.0 / std::sqrt(2.0), 1e-12);
  EXPECT_NEAR(*MeanOutputCosine(sample, Kept{{2, 0}}), 1.5 / std::sqrt(2.5), 1e-12);  // any order
  EXPECT_NEAR(*MeanOutputCosine(sample, Kept{}), 1.0, 1e-12);  // empty = everything kept
}

// Two window queries at cache indices 1 and 2. Query 1 sees keys 0 and 1 only: full output
// (1/2, 1/2), kept {0} -> (1, 0), cosine 1/sqrt(2). Without the causal mask it would see key 2
// as well and score 1.5 / sqrt(2.5).
TEST(MeanOutputCosineTest, WindowQueriesAreCausal) {
  Layer layer(3, 2, 1, 1, 2);
  layer.value(0, 0, 0) = 1;
  layer.value(1, 0, 1) = 1;
  layer.value(2, 0, 0) = layer.value(2, 0, 1) = 1;
  auto cosine = MeanOutputCosine(layer.sample(), std::vector<std::vector<int32_t>>{{0, 2}});
  ASSERT_TRUE(cosine.ok()) << cosine.status();
  EXPECT_NEAR(*cosine, (1.0 / std::sqrt(2.0) + 1.5 / std::sqrt(2.5)) / 2.0, 1e-12);
}

// Scale 1/sqrt(d) and GQA: 4 query heads over 2 KV heads (heads 0, 1 read KV head 0). Only head 1
// has a query, (2, 0, 0, 0); KV head 0's key 0 is (1, 0, 0, 0), so head 1's logits are
// (2 * 1 / sqrt(4), 0) = (1, 0). Every other head attends uniformly. Keeping only position 1
// leaves v1 = (0, 1, 0, 0) against the full p0 v0 + p1 v1.
TEST(MeanOutputCosineTest, ScalesLogitsAndMapsQueryHeadsToTheirKvHead) {
  Layer layer(2, 1, 4, 2, 4);
  layer.query(0, 1, 0) = 2;
  layer.key(0, 0, 0) = 1;
  for (int g = 0; g < 2; ++g) layer.value(0, g, 0) = layer.value(1, g, 1) = 1;
  const double p0 = std::exp(1.0) / (std::exp(1.0) + 1.0), p1 = 1.0 - p0;
  const double peaked = Cos({0, 1}, {p0, p1});
  const double uniform = Cos({0, 1}, {0.5, 0.5});
  auto cosine = MeanOutputCosine(layer.sample(), std::vector<std::vector<int32_t>>{{1}, {1}});
  ASSERT_TRUE(cosine.ok()) << cosine.status();
  EXPECT_NEAR(*cosine, (peaked + 3 * uniform) / 4.0, 1e-12);
}

// Every window query of both heads puts nearly all its attention on prefix tokens 40, 120, 200
// (logit 20 against 0 elsewhere), so a budget of w_eff + 8 keeps the output, w_eff alone does not.
Layer ConcentratedLayer(std::vector<int64_t> hot) {
  Layer layer(256, 8, 2, 1, 4);
  for (int64_t i = 0; i < layer.window; ++i) {
    for (int64_t h = 0; h < layer.heads; ++h) layer.query(i, h, 0) = 40.0f;  // 40 / sqrt(4) = 20
  }
  for (int64_t j : hot) layer.key(j, 0, 0) = 1.0f;
  layer.values = testing::RandomFloats(layer.values.size(), 7);
  layer.FillMassFromAttention();
  return layer;
}

TEST(MeasureLayerOutputBudgetTest, AttentionOnThreeTokensNeedsASmallBudget) {
  const Layer layer = ConcentratedLayer({40, 120, 200});
  auto result = MeasureLayerOutputBudget(layer.sample(), /*kernel=*/1, /*tau_o=*/0.99);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(result->budgets, ElementsAre(8, 16, 32, 64, 128, 256));
  EXPECT_EQ(result->lmbo, 16);
  EXPECT_LT(result->mean_cosine[0], 0.9);  // the window alone misses the three tokens
  EXPECT_GT(result->mean_cosine[1], 0.9999);
  EXPECT_NEAR(result->mean_cosine.back(), 1.0, 1e-12);  // b = T keeps everything
}

// With SnapKV's default kernel 7 the pooled neighbours tie with a hot token (ties go to the lower
// position), so three adjacent hot tokens still fit in 8 prefix slots.
TEST(MeasureLayerOutputBudgetTest, PoolingKernelKeepsAdjacentHotTokens) {
  const Layer layer = ConcentratedLayer({120, 121, 122});
  auto result = MeasureLayerOutputBudget(layer.sample(), /*kernel=*/7, /*tau_o=*/0.99);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->lmbo, 16);
}

// Zero queries attend uniformly; with zero-mean random values every dropped token moves the
// output, so no budget below T keeps the cosine at 0.99.
TEST(MeasureLayerOutputBudgetTest, UniformAttentionNeedsThePromptLength) {
  Layer layer(256, 8, 2, 1, 4);
  layer.keys = testing::RandomFloats(layer.keys.size(), 3);
  layer.values = testing::RandomFloats(layer.values.size(), 4);
  layer.FillMassFromAttention();
  auto result = MeasureLayerOutputBudget(layer.sample(), /*kernel=*/7, /*tau_o=*/0.99);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->lmbo, 256);
  for (size_t s = 0; s + 1 < result->budgets.size(); ++s) {
    EXPECT_LT(result->mean_cosine[s], 0.99) << "budget " << result->budgets[s];
  }
  EXPECT_NEAR(result->mean_cosine.back(), 1.0, 1e-12);
}

// At every grid budget the kept positions are SnapKV's: the cosine equals that of the plan
// PlanCompression makes for policy snapkv with B_avg = b.
TEST(MeasureLayerOutputBudgetTest, KeepsWhatSnapKvKeepsAtEachBudget) {
  Layer layer(100, 8, 4, 2, 4);
  layer.queries = testing::RandomFloats(layer.queries.size(), 11, -3.0f, 3.0f);
  layer.keys = testing::RandomFloats(layer.keys.size(), 12, -3.0f, 3.0f);
  layer.values = testing::RandomFloats(layer.values.size(), 13);
  layer.FillMassFromAttention();
  auto result = MeasureLayerOutputBudget(layer.sample(), /*kernel=*/5, /*tau_o=*/0.999);
  ASSERT_TRUE(result.ok()) << result.status();
  WindowSummary summary{.num_layers = 1,
                        .prompt_tokens = layer.tokens,
                        .window = layer.window,
                        .num_heads = layer.heads,
                        .num_kv_heads = layer.kv_heads,
                        .window_mass = {layer.mass}};
  for (size_t s = 0; s + 1 < result->budgets.size(); ++s) {
    CompressionParams params{.policy = KvPolicy::kSnapKv,
                             .tokens_per_layer = result->budgets[s],
                             .window = layer.window,
                             .kernel = 5};
    auto plan = PlanCompression(params, summary);
    ASSERT_TRUE(plan.ok()) << plan.status();
    auto cosine = MeanOutputCosine(layer.sample(), plan->kept[0]);
    ASSERT_TRUE(cosine.ok()) << cosine.status();
    EXPECT_DOUBLE_EQ(result->mean_cosine[s], *cosine) << "budget " << result->budgets[s];
  }
  // LMBO is the first grid budget reaching tau_o.
  size_t first = 0;
  while (first < result->budgets.size() && result->mean_cosine[first] < 0.999) ++first;
  EXPECT_EQ(result->lmbo, first < result->budgets.size() ? result->budgets[first] : 100);
}

TEST(LmboErrorsTest, BadInputsNameTheField) {
  Layer layer(10, 4, 2, 1, 4);
  LayerAttentionSample sample = layer.sample();
  sample.keys = std::span<const float>(layer.keys).first(5);
  EXPECT_THAT(MeanOutputCosine(sample, {}).status().message(), HasSubstr("keys has 5 values"));
  sample = layer.sample();
  sample.window_mass = {};
  EXPECT_THAT(MeasureLayerOutputBudget(sample, 7, 0.99).status().message(),
              HasSubstr("window_mass"));
  sample = layer.sample();
  sample.window = 11;
  EXPECT_THAT(MeanOutputCosine(sample, {}).status().message(), HasSubstr("window must be in"));
  sample = layer.sample();
  sample.num_kv_heads = 3;
  EXPECT_THAT(MeanOutputCosine(sample, {}).status().message(), HasSubstr("num_kv_heads"));

  EXPECT_THAT(MeasureLayerOutputBudget(layer.sample(), 4, 0.99).status().message(),
              HasSubstr("kernel"));
  EXPECT_THAT(MeasureLayerOutputBudget(layer.sample(), 7, 0.0).status().message(),
              HasSubstr("tau_o"));
  EXPECT_THAT(MeasureLayerOutputBudget(layer.sample(), 7, 1.5).status().message(),
              HasSubstr("tau_o"));
  using Kept = std::vector<std::vector<int32_t>>;
  EXPECT_THAT(MeanOutputCosine(layer.sample(), Kept{{1}, {2}}).status().message(),
              HasSubstr("kept has 2 KV heads"));
  EXPECT_THAT(MeanOutputCosine(layer.sample(), Kept{{10}}).status().message(),
              HasSubstr("position 10"));
}

}  // namespace
}  // namespace zigzag
