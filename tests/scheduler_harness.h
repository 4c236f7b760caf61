// Shared pieces of the scheduler tests: a tiny random checkpoint on the CPU backend with one KV
// cache for the scheduler and one for the offline reference (GenerateBatch, one request at a
// time), and a thread-safe collector of what each request streamed and how it finished.
// Waits are on condition variables; their timeouts only guard against hangs.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "core/engine/generation.h"
#include "core/model/checkpoint_writer.h"
#include "core/model/llama_model.h"
#include "core/scheduler/scheduler.h"
#include "gtest/gtest.h"
#include "kernels/backend_registry.h"
#include "tests/test_support.h"

namespace zigzag::testing {

inline constexpr std::chrono::seconds kHangGuard{60};

// What one request saw: streamed deltas and every on_finish call (exactly one is expected).
struct RequestRecord {
  std::vector<int32_t> streamed;
  std::vector<float> streamed_logprobs;
  std::vector<RequestOutcome> outcomes;
};

class OutcomeCollector {
 public:
  // A request whose callbacks record into this collector. `on_token` (optional) runs on the
  // worker thread after a streamed token is recorded, with the number streamed so far.
  EngineRequest Make(const std::string& id, std::vector<int32_t> prompt,
                     const SamplingParams& sampling, const CompressionParams& compression = {},
                     std::function<void(size_t)> on_token = nullptr) {
    EngineRequest request;
    request.request_id = id;
    request.prompt = std::move(prompt);
    request.sampling = sampling;
    request.compression = compression;
    request.on_tokens = [this, id, on_token](const TokenDelta& delta) {
      size_t count;
      {
        std::lock_guard<std::mutex> lock(mu_);
        RequestRecord& record = records_[id];
        record.streamed.insert(record.streamed.end(), delta.tokens.begin(), delta.tokens.end());
        record.streamed_logprobs.insert(record.streamed_logprobs.end(), delta.logprobs.begin(),
                                        delta.logprobs.end());
        count = record.streamed.size();
      }
      if (on_token) on_token(count);
    };
    request.on_finish = [this, id](RequestOutcome outcome) {
      std::lock_guard<std::mutex> lock(mu_);
      records_[id].outcomes.push_back(std::move(outcome));
      ++finished_;
      cv_.notify_all();
    };
    return request;
  }

  // Blocks until `count` on_finish calls arrived in total; false after the hang guard.
  bool WaitForFinished(size_t count) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, kHangGuard, [&] { return finished_ >= count; });
  }

  size_t finished() const {
    std::lock_guard<std::mutex> lock(mu_);
    return finished_;
  }
  RequestRecord record(const std::string& id) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = records_.find(id);
    return it == records_.end() ? RequestRecord{} : it->second;
  }
  // The single outcome of `id` (a test failure when there is not exactly one).
  RequestOutcome outcome(const std::string& id) const {
    RequestRecord r = record(id);
    EXPECT_EQ(r.outcomes.size(), 1u) << "on_finish calls for " << id;
    return r.outcomes.empty() ? RequestOutcome{} : r.outcomes.front();
  }
  std::map<std::string, RequestRecord> all() const {
    std::lock_guard<std::mutex> lock(mu_);
    return records_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, RequestRecord> records_;
  size_t finished_ = 0;
};

// The tiny model, its backend, and a large cache for reference runs.
class SchedulerHarness {
 public:
  static constexpr int32_t kBlockSize = 4;

  static RandomCheckpointSpec TinySpec() {
    RandomCheckpointSpec spec;
    spec.vocab_size = 96;
    spec.hidden_size = 32;
    spec.intermediate_size = 64;
    spec.num_layers = 2;
    spec.num_heads = 4;
    spec.num_kv_heads = 2;
    spec.max_position_embeddings = 256;
    spec.seed = 5;
    spec.eos_token_id = 2;
    return spec;
  }

  void Init(const RandomCheckpointSpec& spec = TinySpec(), std::unique_ptr<Backend> backend = {}) {
    const auto dir = MakeTempDir("scheduler");
    ASSERT_TRUE(WriteRandomCheckpoint(dir, spec).ok());
    if (backend == nullptr) {
      auto cpu = CreateBackend("cpu", BackendOptions{.num_threads = 1});
      ASSERT_TRUE(cpu.ok()) << cpu.status();
      backend = std::move(*cpu);
    }
    backend_ = std::move(backend);
    auto model = LlamaModel::LoadFromDir(dir, backend_.get());
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
    auto reference_cache = KvCache::Create(backend_.get(), layout(), 4096);
    ASSERT_TRUE(reference_cache.ok()) << reference_cache.status();
    reference_cache_ = std::move(*reference_cache);
  }

  KvLayout layout() const { return model_->kv_layout(kBlockSize); }
  LlamaModel& model() { return *model_; }
  Backend& backend() { return *backend_; }

  std::unique_ptr<KvCache> MakeCache(int32_t num_blocks) {
    auto cache = KvCache::Create(backend_.get(), layout(), num_blocks);
    EXPECT_TRUE(cache.ok()) << cache.status();
    return cache.ok() ? std::move(*cache) : nullptr;
  }

  // The reference: GenerateBatch with the request alone.
  GenerationResult GenerateAlone(const EngineRequest& request) {
    GenerationRequest alone;
    alone.prompt = request.prompt;
    alone.sampling = request.sampling;
    alone.compression = request.compression;
    auto results = GenerateBatch(*model_, *reference_cache_, {&alone, 1});
    EXPECT_TRUE(results.ok()) << results.status();
    EXPECT_EQ(reference_cache_->pool().num_used(), 0);
    return results.ok() ? results->front() : GenerationResult{};
  }

  std::vector<int32_t> RandomPrompt(size_t length, uint64_t seed) const {
    std::mt19937_64 rng(seed);
    // Ids from 3 up: never the EOS id (2), so prompts are plain text.
    std::uniform_int_distribution<int32_t> dist(
        3, static_cast<int32_t>(model_->config().vocab_size) - 1);
    std::vector<int32_t> prompt(length);
    for (int32_t& id : prompt) id = dist(rng);
    return prompt;
  }

 private:
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<KvCache> reference_cache_;
};

inline SamplingParams Greedy(int32_t max_tokens, bool ignore_eos = true) {
  SamplingParams params;
  params.temperature = 0.0f;
  params.max_tokens = max_tokens;
  params.ignore_eos = ignore_eos;
  return params;
}

// Field-by-field comparison of two KvStats (the scheduler's against GenerateBatch's).
inline void ExpectSameKvStats(const KvStats& got, const KvStats& want, const std::string& what) {
  SCOPED_TRACE(what);
  EXPECT_EQ(got.params.policy, want.params.policy);
  EXPECT_EQ(got.average_budget, want.average_budget);
  EXPECT_EQ(got.window, want.window);
  EXPECT_EQ(got.compressed, want.compressed);
  EXPECT_EQ(got.prompt_tokens, want.prompt_tokens);
  EXPECT_EQ(got.prompt_kept_per_layer, want.prompt_kept_per_layer);
  EXPECT_EQ(got.appended_tokens, want.appended_tokens);
  EXPECT_EQ(got.full_kv_bytes, want.full_kv_bytes);
  EXPECT_EQ(got.retained_kv_bytes, want.retained_kv_bytes);
  EXPECT_EQ(got.full_kv_block_bytes, want.full_kv_block_bytes);
  EXPECT_EQ(got.retained_kv_block_bytes, want.retained_kv_block_bytes);
  EXPECT_EQ(got.saved_kv_bytes, want.saved_kv_bytes);
  EXPECT_DOUBLE_EQ(got.retained_ratio, want.retained_ratio);
  EXPECT_EQ(got.blocks_held, want.blocks_held);
}

}  // namespace zigzag::testing
