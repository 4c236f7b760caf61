// The scheduler gives every request exactly what offline generation gives it alone
// (GenerateBatch with a batch of one): concurrent requests of different lengths under continuous
// batching, chunked prefill, preemption by recompute in a pool too small for everyone, and KV
// compression (the same KvStats). Every test ends with the pool all free.
#include <algorithm>
#include <atomic>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/scheduler_harness.h"

namespace zigzag {
namespace {

using testing::Greedy;
using testing::OutcomeCollector;

// Records what each iteration's forward call held.
class RecordingObserver : public SchedulerObserver {
 public:
  void OnIteration(const IterationMetrics& metrics) override {
    std::lock_guard<std::mutex> lock(mu_);
    iterations_.push_back(metrics);
  }
  void OnPreemption(const std::string& request_id) override {
    std::lock_guard<std::mutex> lock(mu_);
    preempted_.push_back(request_id);
  }
  void OnRequestFinished(const std::string& request_id, const RequestOutcome& outcome,
                         std::span<const double> inter_token_seconds) override {
    std::lock_guard<std::mutex> lock(mu_);
    finished_.push_back(request_id);
    // One gap between each pair of consecutive tokens.
    EXPECT_EQ(inter_token_seconds.size(), outcome.tokens.empty() ? 0 : outcome.tokens.size() - 1);
  }
  std::vector<IterationMetrics> iterations() const {
    std::lock_guard<std::mutex> lock(mu_);
    return iterations_;
  }
  size_t preemptions() const {
    std::lock_guard<std::mutex> lock(mu_);
    return preempted_.size();
  }
  size_t finished() const {
    std::lock_guard<std::mutex> lock(mu_);
    return finished_.size();
  }

 private:
  mutable std::mutex mu_;
  std::vector<IterationMetrics> iterations_;
  std::vector<std::string> preempted_;
  std::vector<std::string> finished_;
};

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override { harness_.Init(); }

  // Submits every request before Start (so the batches do not depend on thread timing), runs
  // them to completion and checks each against GenerateBatch alone.
  void RunAndCompare(std::vector<EngineRequest> requests, int32_t pool_blocks,
                     SchedulerOptions options) {
    std::vector<GenerationResult> expected;
    for (const EngineRequest& request : requests) {
      expected.push_back(harness_.GenerateAlone(request));  // before the worker owns the model
    }
    cache_ = harness_.MakeCache(pool_blocks);
    ASSERT_NE(cache_, nullptr);
    options.observer = &observer_;
    auto scheduler = Scheduler::Create(&harness_.model(), cache_.get(), options);
    ASSERT_TRUE(scheduler.ok()) << scheduler.status();
    std::vector<std::string> ids;
    for (EngineRequest& request : requests) {
      ids.push_back(request.request_id);
      ASSERT_TRUE((*scheduler)->Submit(std::move(request)).ok());
    }
    EXPECT_EQ((*scheduler)->Load().waiting, static_cast<int32_t>(ids.size()));
    (*scheduler)->Start();
    ASSERT_TRUE(collector_.WaitForFinished(ids.size()));
    load_ = (*scheduler)->Load();
    EXPECT_EQ(load_.kv_blocks_used, 0);
    EXPECT_EQ(load_.running, 0);
    EXPECT_EQ(load_.waiting, 0);
    (*scheduler)->Stop();
    EXPECT_EQ(cache_->pool().num_free(), pool_blocks);

    for (size_t i = 0; i < ids.size(); ++i) {
      SCOPED_TRACE(ids[i]);
      const RequestOutcome outcome = collector_.outcome(ids[i]);
      ASSERT_TRUE(outcome.status.ok()) << outcome.status;
      EXPECT_EQ(outcome.tokens, expected[i].tokens);
      EXPECT_EQ(outcome.finish_reason, expected[i].finish_reason);
      EXPECT_EQ(collector_.record(ids[i]).streamed, outcome.tokens);
      ASSERT_EQ(outcome.logprobs.size(), expected[i].logprobs.size());
      for (size_t t = 0; t < outcome.logprobs.size(); ++t) {
        EXPECT_NEAR(outcome.logprobs[t], expected[i].logprobs[t], 1e-4) << "token " << t;
      }
      testing::ExpectSameKvStats(outcome.kv_stats, expected[i].kv_stats, ids[i]);
      total_preemptions_ += outcome.num_preemptions;
      EXPECT_GE(outcome.timings.e2e_seconds, outcome.timings.ttft_seconds);
    }
    EXPECT_EQ(observer_.finished(), ids.size());
    EXPECT_EQ(load_.counters.preemptions, total_preemptions_);
    EXPECT_EQ(static_cast<int64_t>(observer_.preemptions()), total_preemptions_);
  }

  testing::SchedulerHarness harness_;
  OutcomeCollector collector_;
  RecordingObserver observer_;
  std::unique_ptr<KvCache> cache_;
  SchedulerLoad load_;
  int64_t total_preemptions_ = 0;
};

TEST_F(SchedulerTest, ConcurrentGreedyRequestsGetWhatEachGetsAlone) {
  std::vector<EngineRequest> requests;
  const size_t prompt_lengths[] = {1, 5, 9, 16, 23, 30};
  const int32_t max_tokens[] = {12, 1, 20, 7, 15, 4};
  for (size_t i = 0; i < 6; ++i) {
    SamplingParams sampling = Greedy(max_tokens[i]);
    sampling.logprobs = i % 2 == 0;
    requests.push_back(collector_.Make(
        absl::StrCat("r", i), harness_.RandomPrompt(prompt_lengths[i], 100 + i), sampling));
  }
  RunAndCompare(std::move(requests), 512, SchedulerOptions{});
  // Continuous batching: everyone was prefilled in the first forward call, then decoded together.
  const auto iterations = observer_.iterations();
  ASSERT_FALSE(iterations.empty());
  EXPECT_EQ(iterations.front().prefill_sequences, 6);
  EXPECT_EQ(iterations.front().prefill_tokens, 1 + 5 + 9 + 16 + 23 + 30);
  EXPECT_EQ(iterations[1].decode_sequences, 5);  // the max_tokens = 1 request is done
  EXPECT_EQ(load_.counters.finished_length, 6);
  EXPECT_EQ(load_.counters.prompt_tokens, 1 + 5 + 9 + 16 + 23 + 30);
  EXPECT_EQ(load_.counters.generation_tokens, 12 + 1 + 20 + 7 + 15 + 4);
}

TEST_F(SchedulerTest, StopTokensAndEosEndRequestsAsOfflineGeneration) {
  // Let the model run free, then stop on a token it is known to produce.
  EngineRequest probe = collector_.Make("probe", harness_.RandomPrompt(11, 7), Greedy(30));
  const GenerationResult free_run = harness_.GenerateAlone(probe);
  ASSERT_GE(free_run.tokens.size(), 6u);
  std::vector<EngineRequest> requests;
  SamplingParams stop = Greedy(30);
  stop.stop_token_ids = {free_run.tokens[5]};
  requests.push_back(collector_.Make("stop", harness_.RandomPrompt(11, 7), stop));
  // This prompt makes the tiny model produce its EOS id (2) as its 45th token.
  requests.push_back(collector_.Make("eos", harness_.RandomPrompt(17, 14), Greedy(60, false)));
  requests.push_back(collector_.Make("other", harness_.RandomPrompt(4, 9), Greedy(9)));
  RunAndCompare(std::move(requests), 512, SchedulerOptions{});
  EXPECT_EQ(collector_.outcome("stop").finish_reason, FinishReason::kStop);
  EXPECT_EQ(collector_.outcome("eos").finish_reason, FinishReason::kEos);
}

TEST_F(SchedulerTest, ChunkedPrefillGivesTheSameTokens) {
  std::vector<EngineRequest> requests;
  const size_t prompt_lengths[] = {3, 17, 40, 26, 11};
  for (size_t i = 0; i < 5; ++i) {
    requests.push_back(collector_.Make(absl::StrCat("c", i),
                                       harness_.RandomPrompt(prompt_lengths[i], 200 + i),
                                       Greedy(static_cast<int32_t>(6 + 3 * i))));
  }
  SchedulerOptions options;
  options.max_prefill_tokens_per_step = 5;
  RunAndCompare(std::move(requests), 1024, options);
  bool mixed = false;
  for (const IterationMetrics& it : observer_.iterations()) {
    EXPECT_LE(it.prefill_tokens, 5);
    mixed = mixed || (it.prefill_sequences > 0 && it.decode_sequences > 0);
  }
  EXPECT_TRUE(mixed) << "no iteration ran prefill chunks next to decodes";
}

TEST_F(SchedulerTest, PreemptionByRecomputeKeepsTokensAndSeededSamples) {
  // 2 layers x 2 KV heads x 4-token blocks: each request peaks at 4 * ceil((10 + 24 - 1) / 4) =
  // 36 blocks, 48 blocks admit all four prompts (12 each) and then decoding runs out.
  std::vector<EngineRequest> requests;
  for (size_t i = 0; i < 4; ++i) {
    SamplingParams sampling = Greedy(24);
    if (i == 2) {  // a seeded sampled request: its random stream must survive preemption
      sampling.temperature = 0.9f;
      sampling.top_k = 20;
      sampling.seed = 1234;
      sampling.logprobs = true;
    }
    requests.push_back(
        collector_.Make(absl::StrCat("p", i), harness_.RandomPrompt(10, 300 + i), sampling));
  }
  SchedulerOptions options;
  options.max_prefill_tokens_per_step = 8;  // recomputes are chunked too
  RunAndCompare(std::move(requests), 48, options);
  EXPECT_GT(total_preemptions_, 0);
}

TEST_F(SchedulerTest, PreemptedCompressedRequestRecompressesTheSamePrompt) {
  CompressionParams snapkv;
  snapkv.policy = KvPolicy::kSnapKv;
  snapkv.tokens_per_layer = 8;
  snapkv.window = 4;
  CompressionParams zigzag = snapkv;
  zigzag.policy = KvPolicy::kZigZag;
  std::vector<EngineRequest> requests;
  requests.push_back(collector_.Make("full", harness_.RandomPrompt(14, 400), Greedy(26)));
  requests.push_back(collector_.Make("snapkv", harness_.RandomPrompt(22, 401), Greedy(26), snapkv));
  requests.push_back(collector_.Make("zigzag", harness_.RandomPrompt(20, 402), Greedy(26), zigzag));
  SchedulerOptions options;
  options.max_prefill_tokens_per_step = 6;
  RunAndCompare(std::move(requests), 52, options);  // 26 blocks of both heads
  // The newest admitted go first, so a compressed request was preempted and re-compressed.
  EXPECT_GT(collector_.outcome("zigzag").num_preemptions, 0);
}

TEST_F(SchedulerTest, CompressionPoliciesReportTheKvStatsOfOfflineGeneration) {
  struct Policy {
    std::string name;
    CompressionParams params;
  };
  std::vector<Policy> policies;
  CompressionParams base;
  base.window = 4;
  base.kernel = 3;
  policies.push_back({"full", base});
  CompressionParams streaming = base;
  streaming.policy = KvPolicy::kStreaming;
  streaming.tokens_per_layer = 10;
  streaming.sink_tokens = 2;
  policies.push_back({"streaming", streaming});
  CompressionParams snapkv = base;
  snapkv.policy = KvPolicy::kSnapKv;
  snapkv.tokens_per_layer = 12;
  policies.push_back({"snapkv", snapkv});
  CompressionParams pyramid = base;
  pyramid.policy = KvPolicy::kPyramidKv;
  pyramid.ratio = 0.4;
  policies.push_back({"pyramidkv", pyramid});
  CompressionParams zigzag = base;
  zigzag.policy = KvPolicy::kZigZag;
  zigzag.ratio = 0.3;
  policies.push_back({"zigzag", zigzag});
  CompressionParams short_prompt = snapkv;  // T <= B_avg: nothing to compress
  policies.push_back({"snapkv_short", short_prompt});

  std::vector<EngineRequest> requests;
  for (size_t i = 0; i < policies.size(); ++i) {
    const size_t length = policies[i].name == "snapkv_short" ? 9 : 33 + 2 * i;
    requests.push_back(collector_.Make(policies[i].name, harness_.RandomPrompt(length, 500 + i),
                                       Greedy(10), policies[i].params));
  }
  SchedulerOptions options;
  options.max_prefill_tokens_per_step = 7;  // the window straddles chunk boundaries
  RunAndCompare(std::move(requests), 1024, options);
  for (const Policy& policy : policies) {
    const KvStats stats = collector_.outcome(policy.name).kv_stats;
    const bool expect_compressed = policy.name != "full" && policy.name != "snapkv_short";
    EXPECT_EQ(stats.compressed, expect_compressed) << policy.name;
    if (expect_compressed) {
      EXPECT_GT(stats.saved_kv_bytes, 0) << policy.name;
    }
  }
  int64_t saved = 0;
  for (const Policy& policy : policies) {
    saved += collector_.outcome(policy.name).kv_stats.saved_kv_bytes;
  }
  EXPECT_EQ(load_.counters.kv_saved_bytes, saved);
}

}  // namespace
}  // namespace zigzag
