// One prefill continued under several policies (GenerateFromSharedPrefill, ForkSequenceKv) against
// the independent path that prefills each request on its own (GenerateBatch, checked elsewhere
// against a float64 model): the same tokens, logprobs, plans and KvStats, every block returned.
// Also the text stop check (stop strings) in both generation paths, and what bad inputs get.
#include <random>

#include "core/engine/generation.h"
#include "core/kv/kv_fork.h"
#include "core/model/checkpoint.h"
#include "core/model/checkpoint_writer.h"
#include "core/model/llama_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/backend_registry.h"
#include "tests/test_support.h"
#include "tests/tiny_engine.h"

namespace zigzag {
namespace {

using ::testing::HasSubstr;

constexpr int32_t kBlockSize = 4;
constexpr int32_t kPoolBlocks = 3000;  // one KV head per block: the bytes of 1500 two-head blocks

class SharedPrefillTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RandomCheckpointSpec spec;
    spec.vocab_size = 97;
    spec.hidden_size = 48;
    spec.intermediate_size = 80;
    spec.num_layers = 3;
    spec.num_heads = 4;
    spec.num_kv_heads = 2;
    spec.seed = 5;
    auto engine = testing::MakeTinyEngine(spec, kBlockSize, kPoolBlocks, "shared_prefill");
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
  }

  std::vector<int32_t> RandomTokens(size_t n, uint64_t seed) const {
    std::mt19937_64 rng(seed);
    std::vector<int32_t> out(n);
    for (auto& t : out) t = static_cast<int32_t>(rng() % engine_.model->config().vocab_size);
    return out;
  }

  std::vector<float> PoolContents() {
    std::vector<float> host(engine_.cache->pool_tensor().numel());
    EXPECT_TRUE(engine_.backend->CopyToHost(engine_.cache->pool_tensor(), host).ok());
    return host;
  }

  testing::TinyEngine engine_;
};

GenerationRequest Request(std::vector<int32_t> prompt, KvPolicy policy, double ratio,
                          int32_t max_tokens) {
  GenerationRequest request;
  request.prompt = std::move(prompt);
  request.sampling.temperature = 0.0f;
  request.sampling.max_tokens = max_tokens;
  request.sampling.logprobs = true;
  request.compression.policy = policy;
  if (policy != KvPolicy::kFull) request.compression.ratio = ratio;
  request.compression.window = 8;
  request.return_plan = true;
  return request;
}

TEST_F(SharedPrefillTest, EveryPolicyEqualsItsOwnPrefill) {
  const std::vector<int32_t> prompt = RandomTokens(150, 1);
  std::vector<GenerationRequest> requests;
  for (KvPolicy policy : {KvPolicy::kFull, KvPolicy::kStreaming, KvPolicy::kSnapKv,
                          KvPolicy::kPyramidKv, KvPolicy::kZigZag}) {
    for (double ratio : {0.2, 0.5}) {
      if (policy == KvPolicy::kFull && ratio != 0.2) continue;
      requests.push_back(Request(prompt, policy, ratio, 24));
    }
  }
  // A sampled continuation too: each request keeps its own random stream.
  requests.push_back(Request(prompt, KvPolicy::kZigZag, 0.3, 24));
  requests.back().sampling.temperature = 0.9f;
  requests.back().sampling.seed = 77;
  // A budget above the prompt: nothing to compress, no summaries needed.
  requests.push_back(Request(prompt, KvPolicy::kSnapKv, 1.0, 5));

  auto shared = GenerateFromSharedPrefill(*engine_.model, *engine_.cache, requests);
  ASSERT_TRUE(shared.ok()) << shared.status();
  EXPECT_EQ(engine_.cache->pool().num_free(), kPoolBlocks);
  ASSERT_EQ(shared->size(), requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    auto alone = GenerateBatch(*engine_.model, *engine_.cache, {&requests[i], 1});
    ASSERT_TRUE(alone.ok()) << alone.status();
    const GenerationResult& a = (*alone)[0];
    const GenerationResult& s = (*shared)[i];
    SCOPED_TRACE(
        absl::StrCat("request ", i, " policy ", KvPolicyName(requests[i].compression.policy)));
    EXPECT_EQ(s.tokens, a.tokens);
    ASSERT_EQ(s.logprobs.size(), a.logprobs.size());
    for (size_t t = 0; t < a.logprobs.size(); ++t) EXPECT_NEAR(s.logprobs[t], a.logprobs[t], 1e-5);
    EXPECT_EQ(s.finish_reason, a.finish_reason);
    EXPECT_EQ(s.plan.compressed, a.plan.compressed);
    EXPECT_EQ(s.plan.budgets, a.plan.budgets);
    EXPECT_EQ(s.plan.kept, a.plan.kept);
    EXPECT_EQ(s.kv_stats.prompt_kept_per_layer, a.kv_stats.prompt_kept_per_layer);
    EXPECT_EQ(s.kv_stats.retained_kv_bytes, a.kv_stats.retained_kv_bytes);
    EXPECT_EQ(s.kv_stats.saved_kv_bytes, a.kv_stats.saved_kv_bytes);
    EXPECT_EQ(s.kv_stats.blocks_held, a.kv_stats.blocks_held);
    EXPECT_EQ(s.kv_stats.compressed, a.kv_stats.compressed);
  }
  // The policies do differ, so the comparison above is not between identical copies.
  EXPECT_NE((*shared)[2].plan.kept, (*shared)[1].plan.kept);
  EXPECT_EQ(engine_.cache->pool().num_free(), kPoolBlocks);
}

TEST_F(SharedPrefillTest, ForkCopiesEveryStreamIntoItsOwnBlocks) {
  const int heads = static_cast<int>(engine_.cache->layout().num_kv_heads);
  SequenceKv source(&engine_.cache->pool(), 3, heads);
  ASSERT_TRUE(source.AppendAllLayers(10).ok());
  ASSERT_TRUE(source.Append(1, 0, 7).ok());  // streams of different lengths
  std::vector<float> initial = testing::RandomFloats(engine_.cache->pool_tensor().numel(), 3);
  ASSERT_TRUE(
      engine_.backend->CopyToDevice(initial.data(), DType::kF32, &engine_.cache->pool_tensor())
          .ok());
  const int32_t free_before = engine_.cache->pool().num_free();

  auto fork = ForkSequenceKv(source, *engine_.backend, *engine_.cache);
  ASSERT_TRUE(fork.ok()) << fork.status();
  EXPECT_EQ(engine_.cache->pool().num_free(), free_before - source.blocks_held());
  const std::vector<float> after = PoolContents();
  const KvLayout& layout = engine_.cache->layout();
  const size_t block_floats = 2 * kBlockSize * layout.head_dim;
  for (int layer = 0; layer < 3; ++layer) {
    for (int head = 0; head < heads; ++head) {
      ASSERT_EQ(fork->length(layer, head), source.length(layer, head));
      ASSERT_EQ(fork->blocks(layer, head).size(), source.blocks(layer, head).size());
      for (size_t b = 0; b < source.blocks(layer, head).size(); ++b) {
        const int32_t from = source.blocks(layer, head)[b];
        const int32_t to = fork->blocks(layer, head)[b];
        EXPECT_NE(from, to);
        for (size_t e = 0; e < block_floats; ++e) {
          ASSERT_EQ(after[to * block_floats + e], initial[from * block_floats + e])
              << "layer " << layer << " head " << head << " block " << b;
        }
      }
    }
  }
  fork->Release();
  source.Release();
  EXPECT_EQ(engine_.cache->pool().num_free(), kPoolBlocks);
}

TEST_F(SharedPrefillTest, ForkWithoutRoomFailsAndTakesNothing) {
  const int heads = static_cast<int>(engine_.cache->layout().num_kv_heads);
  SequenceKv source(&engine_.cache->pool(), 3, heads);
  // Holds all but 10 blocks per stream's share of the pool: the copy cannot fit.
  ASSERT_TRUE(source.AppendAllLayers(kBlockSize * (kPoolBlocks / (3 * heads) - 10)).ok());
  const int32_t free_before = engine_.cache->pool().num_free();
  auto fork = ForkSequenceKv(source, *engine_.backend, *engine_.cache);
  EXPECT_EQ(fork.status().code(), absl::StatusCode::kResourceExhausted) << fork.status();
  EXPECT_EQ(engine_.cache->pool().num_free(), free_before);
}

TEST_F(SharedPrefillTest, BadRequestsAreRefusedNamingTheRequest) {
  const std::vector<int32_t> prompt = RandomTokens(40, 2);
  std::vector<GenerationRequest> requests = {Request(prompt, KvPolicy::kSnapKv, 0.3, 4),
                                             Request(RandomTokens(40, 3), KvPolicy::kFull, 0, 4)};
  auto different_prompts = GenerateFromSharedPrefill(*engine_.model, *engine_.cache, requests);
  EXPECT_EQ(different_prompts.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(different_prompts.status().message(),
              HasSubstr("request 1: its prompt differs from request 0's"));

  requests[1] = Request(prompt, KvPolicy::kZigZag, 0.3, 4);
  requests[1].compression.window = 4;
  auto different_windows = GenerateFromSharedPrefill(*engine_.model, *engine_.cache, requests);
  EXPECT_EQ(different_windows.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(different_windows.status().message(),
              HasSubstr("request 1: its compression window 4 differs from another's 8"));

  requests[1] = Request(prompt, KvPolicy::kZigZag, 0.3, 4);
  requests[1].prompt[3] = 5000;
  requests[0].prompt[3] = 5000;
  auto bad_token = GenerateFromSharedPrefill(*engine_.model, *engine_.cache, requests);
  EXPECT_EQ(bad_token.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_token.status().message(), HasSubstr("request 0: prompt token 3 has id 5000"));

  // More continuations than the pool can hold: refused with every block returned.
  std::vector<GenerationRequest> many(12, Request(RandomTokens(600, 4), KvPolicy::kFull, 0, 4));
  auto too_many = GenerateFromSharedPrefill(*engine_.model, *engine_.cache, many);
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kResourceExhausted) << too_many.status();
  EXPECT_EQ(engine_.cache->pool().num_free(), kPoolBlocks);
  EXPECT_TRUE(GenerateFromSharedPrefill(*engine_.model, *engine_.cache, {}).ok());
}

TEST_F(SharedPrefillTest, TextStopCheckSeesEveryTokenAndStopsBothPaths) {
  const std::vector<int32_t> prompt = RandomTokens(30, 6);
  GenerationRequest request = Request(prompt, KvPolicy::kFull, 0, 20);
  auto unstopped = GenerateBatch(*engine_.model, *engine_.cache, {&request, 1});
  ASSERT_TRUE(unstopped.ok()) << unstopped.status();
  ASSERT_EQ((*unstopped)[0].tokens.size(), 20u);

  for (bool shared : {false, true}) {
    auto seen = std::make_shared<std::vector<int32_t>>();
    request.text_stop = [seen](int32_t token) {
      seen->push_back(token);
      return seen->size() == 6;
    };
    auto result = shared ? GenerateFromSharedPrefill(*engine_.model, *engine_.cache, {&request, 1})
                         : GenerateBatch(*engine_.model, *engine_.cache, {&request, 1});
    ASSERT_TRUE(result.ok()) << result.status();
    const std::vector<int32_t> expected((*unstopped)[0].tokens.begin(),
                                        (*unstopped)[0].tokens.begin() + 6);
    EXPECT_EQ((*result)[0].tokens, expected) << "shared " << shared;
    EXPECT_EQ((*result)[0].finish_reason, FinishReason::kStop);
    EXPECT_EQ(*seen, expected);
  }
  EXPECT_EQ(engine_.cache->pool().num_free(), kPoolBlocks);
}

TEST(StopReasonTest, OrderIsStopIdsEosTextThenLength) {
  SamplingParams params;
  params.max_tokens = 3;
  params.stop_token_ids = {7};
  const std::vector<int32_t> eos = {2};
  int calls = 0;
  TextStopCheck always = [&calls](int32_t) {
    ++calls;
    return true;
  };
  EXPECT_EQ(StopReason(params, eos, 7, 1, always), FinishReason::kStop);
  EXPECT_EQ(StopReason(params, eos, 2, 1, always), FinishReason::kEos);
  EXPECT_EQ(StopReason(params, eos, 5, 1, always), FinishReason::kStop);
  EXPECT_EQ(calls, 3);  // the check saw every token
  EXPECT_EQ(StopReason(params, eos, 5, 3, nullptr), FinishReason::kLength);
  EXPECT_EQ(StopReason(params, eos, 5, 2, nullptr), std::nullopt);
  params.ignore_eos = true;
  EXPECT_EQ(StopReason(params, eos, 2, 1, nullptr), std::nullopt);
}

}  // namespace
}  // namespace zigzag
