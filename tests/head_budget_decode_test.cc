// Issue 12's end-to-end check of per-head KV budgets: greedy decoding of 100+ tokens after
// compressing with UNIFORM and ADAPTIVE head splits (snapkv, pyramidkv, zigzag) follows a float64
// model that, in every (layer, KV head), attends only over exactly that head's kept prompt
// positions plus everything generated after. The kept positions come from the engine's own plan
// (GenerationRequest::return_plan, the plan CompactSequenceKv applied); the float64 side is
// tests/reference_model (naive loops that just mask), sharing nothing with the engine's attention
// or compaction. compression_engine_test holds the per-layer (uniform) version of this test.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/compress/compression_params.h"
#include "core/compress/policy.h"
#include "core/engine/generation.h"
#include "core/model/checkpoint_writer.h"
#include "gtest/gtest.h"
#include "tests/reference_model.h"
#include "tests/tiny_engine.h"

namespace zigzag {
namespace {

constexpr int32_t kBlockSize = 4;
constexpr int64_t kPromptTokens = 40;
constexpr int32_t kWindow = 4;
constexpr int64_t kAverageBudget = 16;  // of 40: 12 prefix slots per head besides the window
constexpr int32_t kSteps = 100;
constexpr int kLayers = 3;
constexpr int kKvHeads = 2;
constexpr int64_t kHeadDim = 8;  // hidden 32 / 4 query heads

// Kept positions of every (layer, KV head), as the reference model takes them.
using KeptSets = std::vector<std::vector<std::vector<int64_t>>>;

KeptSets ToKeptSets(const CompressionPlan& plan) {
  KeptSets kept(plan.kept.size());
  for (size_t l = 0; l < plan.kept.size(); ++l) {
    for (const std::vector<int32_t>& head : plan.kept[l]) {
      kept[l].emplace_back(head.begin(), head.end());
    }
  }
  return kept;
}

// Log-softmax of `token` under float64 logits, and the largest logit.
double LogProb(const std::vector<double>& logits, int32_t token, double* max_logit) {
  const double mx = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (double z : logits) sum += std::exp(z - mx);
  *max_logit = mx;
  return logits[token] - mx - std::log(sum);
}

struct Case {
  KvPolicy policy;
  HeadBudgets head_budgets;
  std::string Name() const {
    return absl::StrCat(KvPolicyName(policy), "/", HeadBudgetsName(head_budgets));
  }
};

TEST(HeadBudgetDecodeTest, GreedyDecodingFollowsFloat64ModelMaskedToEachHeadsKeptPositions) {
  RandomCheckpointSpec spec;
  spec.vocab_size = 97;
  spec.hidden_size = 32;
  spec.intermediate_size = 48;
  spec.num_layers = kLayers;
  spec.num_heads = 4;
  spec.num_kv_heads = kKvHeads;
  spec.seed = 12;
  // 6 sequences x 6 streams x at most ceil((40 + 100) / 4) = 35 blocks = 1260; room to spare.
  absl::StatusOr<testing::TinyEngine> engine_or =
      testing::MakeTinyEngine(spec, kBlockSize, 1400, "head_budget_decode");
  ASSERT_TRUE(engine_or.ok()) << engine_or.status();
  testing::TinyEngine& engine = *engine_or;
  ASSERT_EQ(engine.model->config().head_dim, kHeadDim);

  std::mt19937_64 rng(2024);
  std::vector<int32_t> prompt(kPromptTokens);
  for (int32_t& t : prompt) t = static_cast<int32_t>(rng() % spec.vocab_size);

  std::vector<Case> cases;
  for (KvPolicy policy : {KvPolicy::kSnapKv, KvPolicy::kPyramidKv, KvPolicy::kZigZag}) {
    for (HeadBudgets split : {HeadBudgets::kUniform, HeadBudgets::kAdaptive}) {
      cases.push_back({policy, split});
    }
  }
  // One batch: the decode steps mix sequences whose (layer, head) streams all differ in length.
  std::vector<GenerationRequest> requests(cases.size());
  for (size_t c = 0; c < cases.size(); ++c) {
    GenerationRequest& request = requests[c];
    request.prompt = prompt;
    request.sampling.temperature = 0;
    request.sampling.max_tokens = kSteps;
    request.sampling.ignore_eos = true;
    request.sampling.logprobs = true;
    request.compression.policy = cases[c].policy;
    request.compression.head_budgets = cases[c].head_budgets;
    request.compression.alpha = 0.2;  // the default floor: f = floor(0.2 * (B_l - 4))
    request.compression.tokens_per_layer = kAverageBudget;
    request.compression.window = kWindow;
    request.compression.kernel = 3;
    request.return_plan = true;
  }
  absl::StatusOr<std::vector<GenerationResult>> results =
      GenerateBatch(*engine.model, *engine.cache, requests);
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_EQ(engine.cache->pool().num_used(), 0) << "every sequence's blocks went back";

  testing::ReferenceModel reference(*engine.checkpoint);
  bool adaptive_counts_differ = false;
  for (size_t c = 0; c < cases.size(); ++c) {
    SCOPED_TRACE(cases[c].Name());
    const GenerationResult& result = (*results)[c];
    const CompressionPlan& plan = result.plan;
    ASSERT_TRUE(plan.compressed);
    ASSERT_EQ(plan.head_budgets, cases[c].head_budgets);
    ASSERT_EQ(result.tokens.size(), static_cast<size_t>(kSteps));
    ASSERT_EQ(result.logprobs.size(), static_cast<size_t>(kSteps));
    ASSERT_EQ(plan.kept.size(), static_cast<size_t>(kLayers));
    ASSERT_EQ(plan.budgets.size(), static_cast<size_t>(kLayers));

    // The kept sets are real evictions, head by head: each is ascending, holds the window, sums
    // with its layer's other heads to G x B_l, and the heads of every layer keep different
    // positions (else masking per head would prove nothing beyond the per-layer test).
    int64_t kept_entries = 0;
    for (int l = 0; l < kLayers; ++l) {
      SCOPED_TRACE(absl::StrCat("layer ", l));
      ASSERT_EQ(plan.kept[l].size(), static_cast<size_t>(kKvHeads));
      int64_t layer_sum = 0;
      for (int g = 0; g < kKvHeads; ++g) {
        const std::vector<int32_t>& head = plan.kept[l][g];
        EXPECT_TRUE(std::is_sorted(head.begin(), head.end()));
        EXPECT_EQ(std::adjacent_find(head.begin(), head.end()), head.end()) << "a repeat";
        ASSERT_GE(head.size(), static_cast<size_t>(kWindow));
        EXPECT_LE(head.size(), static_cast<size_t>(kPromptTokens));
        for (int32_t j = 0; j < kWindow; ++j) {
          EXPECT_EQ(head[head.size() - kWindow + j], kPromptTokens - kWindow + j);
        }
        EXPECT_EQ(result.kv_stats.prompt_kept_per_head[l][g], static_cast<int64_t>(head.size()));
        if (cases[c].head_budgets == HeadBudgets::kUniform) {
          EXPECT_EQ(static_cast<int64_t>(head.size()), plan.budgets[l]);
        } else {
          // Hand-computed floor: w_eff + floor(0.2 * (B_l - w_eff)).
          EXPECT_GE(
              static_cast<int64_t>(head.size()),
              kWindow + static_cast<int64_t>(0.2 * static_cast<double>(plan.budgets[l] - kWindow)));
        }
        layer_sum += static_cast<int64_t>(head.size());
      }
      EXPECT_EQ(layer_sum, kKvHeads * plan.budgets[l]);
      EXPECT_LT(layer_sum, kKvHeads * kPromptTokens) << "the layer evicted nothing";
      EXPECT_NE(plan.kept[l][0], plan.kept[l][1]) << "both heads kept the same positions";
      if (cases[c].head_budgets == HeadBudgets::kAdaptive &&
          plan.kept[l][0].size() != plan.kept[l][1].size()) {
        adaptive_counts_differ = true;
      }
      kept_entries += layer_sum;
    }
    // The memory held follows each head's own count: at the end every stream held its kept
    // prompt entries plus the 99 tokens fed back after the first (the last token is never fed);
    // K and V of one entry of one head are 2 x 8 floats = 64 bytes.
    EXPECT_EQ(result.kv_stats.appended_tokens, kSteps - 1);
    EXPECT_EQ(result.kv_stats.retained_kv_bytes,
              (kept_entries + int64_t{kLayers} * kKvHeads * (kSteps - 1)) * 2 * kHeadDim * 4);

    // Step by step against the float64 model masked to each head's kept positions; the engine's
    // own tokens are fed back, so one near-tie cannot derail the rest of the comparison.
    const KeptSets kept = ToKeptSets(plan);
    std::vector<int32_t> sequence = prompt;
    for (int i = 0; i < kSteps; ++i) {
      const std::vector<double> logits =
          reference.LogitsWithKeptPositions(sequence, kPromptTokens, kept).back();
      double max_logit = 0.0;
      const double want = LogProb(logits, result.tokens[i], &max_logit);
      EXPECT_NEAR(result.logprobs[i], want, 1e-3) << "step " << i;
      // Greedy picks the reference's argmax (or a token within float noise of it).
      EXPECT_GE(logits[result.tokens[i]], max_logit - 1e-4) << "step " << i;
      sequence.push_back(result.tokens[i]);
    }
  }
  EXPECT_TRUE(adaptive_counts_differ)
      << "no ADAPTIVE plan gave the heads of a layer different counts: pick another seed";
}

// The comparison above has teeth: the same float64 model with the two KV heads' kept sets swapped
// (each head masked to its neighbour's positions) disagrees with the engine's logprobs, so a
// compaction that moved the wrong head's entries, or one set for the whole layer, would fail it.
TEST(HeadBudgetDecodeTest, SwappingTheHeadsKeptSetsIsDetected) {
  RandomCheckpointSpec spec;
  spec.vocab_size = 97;
  spec.hidden_size = 32;
  spec.intermediate_size = 48;
  spec.num_layers = kLayers;
  spec.num_heads = 4;
  spec.num_kv_heads = kKvHeads;
  spec.seed = 12;
  absl::StatusOr<testing::TinyEngine> engine_or =
      testing::MakeTinyEngine(spec, kBlockSize, 400, "head_budget_swap");
  ASSERT_TRUE(engine_or.ok()) << engine_or.status();
  testing::TinyEngine& engine = *engine_or;

  std::mt19937_64 rng(2024);
  std::vector<int32_t> prompt(kPromptTokens);
  for (int32_t& t : prompt) t = static_cast<int32_t>(rng() % spec.vocab_size);
  GenerationRequest request;
  request.prompt = prompt;
  request.sampling.temperature = 0;
  request.sampling.max_tokens = 12;
  request.sampling.ignore_eos = true;
  request.sampling.logprobs = true;
  request.compression.policy = KvPolicy::kSnapKv;
  request.compression.head_budgets = HeadBudgets::kAdaptive;
  request.compression.tokens_per_layer = kAverageBudget;
  request.compression.window = kWindow;
  request.compression.kernel = 3;
  request.return_plan = true;
  absl::StatusOr<std::vector<GenerationResult>> results =
      GenerateBatch(*engine.model, *engine.cache, {&request, 1});
  ASSERT_TRUE(results.ok()) << results.status();
  const GenerationResult& result = (*results)[0];
  ASSERT_TRUE(result.plan.compressed);

  const KeptSets kept = ToKeptSets(result.plan);
  KeptSets swapped = kept;
  for (auto& layer : swapped) std::swap(layer[0], layer[1]);
  testing::ReferenceModel reference(*engine.checkpoint);
  std::vector<int32_t> sequence = prompt;
  double worst_right = 0.0, worst_swapped = 0.0;
  // Step 0 is sampled from the prefill, which saw the whole prompt; masks matter from step 1.
  sequence.push_back(result.tokens[0]);
  for (size_t i = 1; i < result.tokens.size(); ++i) {
    double max_logit = 0.0;
    const double right =
        LogProb(reference.LogitsWithKeptPositions(sequence, kPromptTokens, kept).back(),
                result.tokens[i], &max_logit);
    const double wrong =
        LogProb(reference.LogitsWithKeptPositions(sequence, kPromptTokens, swapped).back(),
                result.tokens[i], &max_logit);
    worst_right = std::max(worst_right, std::abs(result.logprobs[i] - right));
    worst_swapped = std::max(worst_swapped, std::abs(result.logprobs[i] - wrong));
    sequence.push_back(result.tokens[i]);
  }
  EXPECT_LT(worst_right, 1e-3);
  EXPECT_GT(worst_swapped, 1e-2) << "swapped kept sets should change the logprobs";
}

}  // namespace
}  // namespace zigzag
