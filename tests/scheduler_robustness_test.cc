// The scheduler under failure and load: a forward pass that fails (injected through a wrapping
// backend) finishes exactly the affected requests with INTERNAL and the scheduler keeps serving;
// a bounded soak of random requests in a tiny pool (chunked prefill, compression, preemption,
// random aborts from another thread and from the request's own stream, random deadlines) ends with
// every on_finish called exactly once, every block free, and every request that finished OK holding
// the tokens offline generation gives it alone.
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/scheduler_harness.h"

namespace zigzag {
namespace {

using testing::Greedy;
using ::testing::HasSubstr;
using testing::OutcomeCollector;

// Delegates every op to a CPU backend; Attention or AttentionStep fails once after Arm().
class FailingBackend : public Backend {
 public:
  explicit FailingBackend(std::unique_ptr<Backend> inner) : inner_(std::move(inner)) {}
  void Arm() { armed_ = true; }

  const char* name() const override { return "failing-cpu"; }
  Device device() const override { return inner_->device(); }
  DType activation_dtype() const override { return inner_->activation_dtype(); }
  DType weight_dtype() const override { return inner_->weight_dtype(); }
  absl::StatusOr<Tensor> Allocate(DType dtype, const Shape& shape) override {
    return inner_->Allocate(dtype, shape);
  }
  absl::StatusOr<Tensor> AllocateZeros(DType dtype, const Shape& shape) override {
    return inner_->AllocateZeros(dtype, shape);
  }
  absl::Status CopyToDevice(const void* host, DType host_dtype, Tensor* dst) override {
    return inner_->CopyToDevice(host, host_dtype, dst);
  }
  absl::Status CopyToHost(const Tensor& src, std::span<float> host) override {
    return inner_->CopyToHost(src, host);
  }
  absl::Status Synchronize() override { return inner_->Synchronize(); }
  absl::Status Embedding(const Tensor& table, std::span<const int32_t> ids, Tensor* out) override {
    return inner_->Embedding(table, ids, out);
  }
  absl::Status Matmul(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor* y) override {
    return inner_->Matmul(x, w, bias, y);
  }
  absl::Status RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor* y) override {
    return inner_->RmsNorm(x, weight, eps, y);
  }
  absl::Status Rope(std::span<const int32_t> positions, const Tensor& inv_freq,
                    Tensor* x) override {
    return inner_->Rope(positions, inv_freq, x);
  }
  absl::Status SiluMul(const Tensor& gate, const Tensor& up, Tensor* out) override {
    return inner_->SiluMul(gate, up, out);
  }
  absl::Status Add(const Tensor& a, const Tensor& b, Tensor* out) override {
    return inner_->Add(a, b, out);
  }
  absl::Status CopyRows(const Tensor& src, std::span<const int32_t> rows, Tensor* dst) override {
    return inner_->CopyRows(src, rows, dst);
  }
  absl::Status WriteKv(const Tensor& k, const Tensor& v, std::span<const int32_t> slots,
                       Tensor* kv_pool) override {
    return inner_->WriteKv(k, v, slots, kv_pool);
  }
  absl::Status CompactKv(std::span<const KvStreamCompaction> streams, Tensor* kv_pool) override {
    return inner_->CompactKv(streams, kv_pool);
  }
  absl::Status CopyBlocks(std::span<const int32_t> src_blocks, std::span<const int32_t> dst_blocks,
                          Tensor* kv_pool) override {
    return inner_->CopyBlocks(src_blocks, dst_blocks, kv_pool);
  }
  absl::Status Attention(const AttentionBatch& batch, const Tensor& q, const Tensor& kv_pool,
                         Tensor* out) override {
    if (armed_.exchange(false)) return absl::InternalError("injected attention failure");
    return inner_->Attention(batch, q, kv_pool, out);
  }
  absl::Status PlanStep(const StepTables& tables, const Tensor& kv_pool) override {
    return inner_->PlanStep(tables, kv_pool);
  }
  absl::Status RopeStep(const Tensor& inv_freq, Tensor* x) override {
    return inner_->RopeStep(inv_freq, x);
  }
  absl::Status WriteKvStep(int32_t layer, const Tensor& k, const Tensor& v,
                           Tensor* kv_pool) override {
    return inner_->WriteKvStep(layer, k, v, kv_pool);
  }
  // The model runs attention through the planned step, so that is where the failure goes.
  absl::Status AttentionStep(int32_t layer, const Tensor& q, const Tensor& kv_pool,
                             Tensor* out) override {
    if (armed_.exchange(false)) return absl::InternalError("injected attention failure");
    return inner_->AttentionStep(layer, q, kv_pool, out);
  }

 private:
  std::unique_ptr<Backend> inner_;
  std::atomic<bool> armed_{false};
};

TEST(SchedulerRobustnessTest, ForwardFailureFinishesTheBatchWithInternalAndKeepsServing) {
  auto cpu = CreateBackend("cpu", BackendOptions{.num_threads = 1});
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  auto owned = std::make_unique<FailingBackend>(std::move(*cpu));
  FailingBackend* failing = owned.get();
  testing::SchedulerHarness harness;
  harness.Init(testing::SchedulerHarness::TinySpec(), std::move(owned));
  OutcomeCollector collector;
  std::vector<EngineRequest> requests;
  requests.push_back(collector.Make("a", harness.RandomPrompt(7, 1), Greedy(5)));
  requests.push_back(collector.Make("b", harness.RandomPrompt(9, 2), Greedy(5)));
  requests.push_back(collector.Make("c", harness.RandomPrompt(6, 3), Greedy(5)));
  // "d" fails mid-decode: its 2nd token arms the failure for the next forward call.
  requests.push_back(
      collector.Make("d", harness.RandomPrompt(8, 4), Greedy(9), {}, [failing](size_t streamed) {
        if (streamed == 2) failing->Arm();
      }));
  requests.push_back(collector.Make("e", harness.RandomPrompt(5, 5), Greedy(6)));
  const GenerationResult expected_c = harness.GenerateAlone(requests[2]);
  const GenerationResult expected_e = harness.GenerateAlone(requests[4]);

  auto cache = harness.MakeCache(128);
  SchedulerOptions options;
  options.max_running = 2;  // a and b share the failing first call; c waits for it
  auto scheduler = Scheduler::Create(&harness.model(), cache.get(), options);
  ASSERT_TRUE(scheduler.ok()) << scheduler.status();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*scheduler)->Submit(std::move(requests[i])).ok());
  failing->Arm();
  (*scheduler)->Start();
  ASSERT_TRUE(collector.WaitForFinished(3));
  for (const char* id : {"a", "b"}) {
    const RequestOutcome outcome = collector.outcome(id);
    EXPECT_EQ(outcome.status.code(), absl::StatusCode::kInternal) << id;
    EXPECT_THAT(std::string(outcome.status.message()), HasSubstr("injected attention failure"));
    EXPECT_TRUE(outcome.tokens.empty());
  }
  EXPECT_TRUE(collector.outcome("c").status.ok());
  EXPECT_EQ(collector.outcome("c").tokens, expected_c.tokens);

  // Mid-decode: d fails with the tokens it had.
  ASSERT_TRUE((*scheduler)->Submit(std::move(requests[3])).ok());
  ASSERT_TRUE(collector.WaitForFinished(4));
  const RequestOutcome d = collector.outcome("d");
  EXPECT_EQ(d.status.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(d.tokens.size(), 2u);
  // And it keeps serving.
  ASSERT_TRUE((*scheduler)->Submit(std::move(requests[4])).ok());
  ASSERT_TRUE(collector.WaitForFinished(5));
  EXPECT_TRUE(collector.outcome("e").status.ok());
  EXPECT_EQ(collector.outcome("e").tokens, expected_e.tokens);
  const SchedulerLoad load = (*scheduler)->Load();
  EXPECT_EQ(load.kv_blocks_used, 0);
  EXPECT_EQ(load.counters.failed, 3);
  EXPECT_EQ(load.counters.finished_length, 2);
}

TEST(SchedulerRobustnessTest, SoakOfRandomRequestsWithAbortsEndsClean) {
  testing::SchedulerHarness harness;
  harness.Init();
  OutcomeCollector collector;
  // 2 layers x 2 KV heads x 4-token blocks; the longest request peaks at
  // 4 * ceil((40 + 16 - 1) / 4) = 56.
  auto cache = harness.MakeCache(80);
  SchedulerOptions options;
  options.max_running = 6;
  options.max_waiting = 24;
  options.max_prefill_tokens_per_step = 16;
  auto created = Scheduler::Create(&harness.model(), cache.get(), options);
  ASSERT_TRUE(created.ok()) << created.status();
  Scheduler& scheduler = **created;
  scheduler.Start();

  constexpr int kRequests = 200;
  std::mt19937_64 rng(2024);
  std::vector<EngineRequest> copies;  // what each accepted request asked (callbacks aside)
  // Aborted from another thread at a moment picked at submission (often still waiting or
  // prefilling: the queue is kept full)...
  std::vector<std::pair<std::string, std::chrono::steady_clock::time_point>> to_abort;
  std::mutex abort_mu;
  std::condition_variable abort_cv;
  bool submitting_done = false;
  std::thread aborter([&] {
    size_t next = 0;
    while (true) {
      std::pair<std::string, std::chrono::steady_clock::time_point> target;
      {
        std::unique_lock<std::mutex> lock(abort_mu);
        abort_cv.wait(lock, [&] { return next < to_abort.size() || submitting_done; });
        if (next >= to_abort.size()) break;
        target = to_abort[next++];
      }
      std::this_thread::sleep_until(target.second);
      scheduler.Abort(target.first);
    }
  });

  const auto stop_aborter = [&] {
    {
      std::lock_guard<std::mutex> lock(abort_mu);
      submitting_done = true;
      abort_cv.notify_one();
    }
    if (aborter.joinable()) aborter.join();
  };
  // Joins the aborter on every way out of this test, failed assertions included.
  struct Joiner {
    std::function<void()> join;
    ~Joiner() { join(); }
  } joiner{stop_aborter};

  int queue_full = 0;
  int late = 0;  // deadline gone before Submit: refused, never heard of again
  for (int i = 0; i < kRequests; ++i) {
    SamplingParams sampling = Greedy(1 + static_cast<int32_t>(rng() % 16), rng() % 2 == 0);
    if (rng() % 3 == 0) {
      sampling.temperature = 0.8f;
      sampling.top_p = 0.9f;
      sampling.seed = rng();
    }
    CompressionParams compression;
    compression.window = 4;
    compression.kernel = 3;
    switch (rng() % 4) {
      case 0:
        break;  // full
      case 1:
        compression.policy = KvPolicy::kSnapKv;
        compression.tokens_per_layer = 8;
        break;
      case 2:
        compression.policy = KvPolicy::kZigZag;
        compression.ratio = 0.5;
        break;
      default:
        compression.policy = KvPolicy::kStreaming;
        compression.tokens_per_layer = 6;
        compression.sink_tokens = 2;
        break;
    }
    const std::string id = absl::StrCat("s", i);
    // ... or from its own stream after a random number of tokens (mid-decode for sure).
    std::function<void(size_t)> on_token;
    const uint64_t abort_kind = rng() % 10;
    if (abort_kind == 0) {
      const size_t after = 1 + rng() % 8;
      on_token = [&scheduler, id, after](size_t streamed) {
        if (streamed == after) scheduler.Abort(id);
      };
    }
    EngineRequest request = collector.Make(id, harness.RandomPrompt(1 + rng() % 40, 1000 + i),
                                           sampling, compression, on_token);
    if (rng() % 20 == 0) {
      request.deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(rng() % 20);
    }
    EngineRequest copy = request;
    absl::Status status = scheduler.Submit(std::move(request));
    while (absl::IsResourceExhausted(status)) {  // queue full: wait for one to finish, retry
      ASSERT_THAT(std::string(status.message()), HasSubstr("waiting queue is full (24 requests)"));
      ++queue_full;
      ASSERT_TRUE(collector.WaitForFinished(collector.finished() + 1));
      EngineRequest retry = copy;
      status = scheduler.Submit(std::move(retry));
    }
    if (absl::IsDeadlineExceeded(status)) {
      ++late;
      continue;
    }
    ASSERT_TRUE(status.ok()) << status;
    copies.push_back(std::move(copy));
    if (abort_kind == 1) {
      std::lock_guard<std::mutex> lock(abort_mu);
      to_abort.emplace_back(
          id, std::chrono::steady_clock::now() + std::chrono::microseconds(rng() % 400));
      abort_cv.notify_one();
    }
  }
  stop_aborter();
  const int accepted = static_cast<int>(copies.size());
  EXPECT_EQ(accepted + late, kRequests);
  ASSERT_TRUE(collector.WaitForFinished(accepted));
  const SchedulerLoad load = scheduler.Load();
  scheduler.Stop();  // the model is the test's again
  EXPECT_EQ(collector.finished(), static_cast<size_t>(accepted));
  EXPECT_EQ(load.kv_blocks_used, 0);
  EXPECT_EQ(load.running, 0);
  EXPECT_EQ(load.waiting, 0);
  EXPECT_EQ(cache->pool().num_used(), 0);
  const SchedulerCounters& c = load.counters;
  // Every request is counted once: the accepted ones by how they finished, the late ones (refused
  // by Submit, deadline already passed) as deadline failures.
  EXPECT_EQ(c.finished_length + c.finished_stop + c.finished_eos + c.cancelled +
                c.deadline_exceeded + c.unavailable + c.failed,
            accepted + late);
  EXPECT_GE(c.deadline_exceeded, late);
  EXPECT_EQ(c.failed, 0);
  EXPECT_EQ(c.unavailable, 0);

  int ok = 0;
  for (const EngineRequest& request : copies) {
    SCOPED_TRACE(request.request_id);
    const testing::RequestRecord record = collector.record(request.request_id);
    ASSERT_EQ(record.outcomes.size(), 1u);  // exactly once, also after Stop
    const RequestOutcome& outcome = record.outcomes.front();
    EXPECT_EQ(record.streamed, outcome.tokens);
    EXPECT_LE(outcome.tokens.size(), static_cast<size_t>(request.sampling.max_tokens));
    if (!outcome.status.ok()) {
      EXPECT_TRUE(absl::IsCancelled(outcome.status) || absl::IsDeadlineExceeded(outcome.status))
          << outcome.status;
      continue;
    }
    ++ok;
    const GenerationResult expected = harness.GenerateAlone(request);
    EXPECT_EQ(outcome.tokens, expected.tokens);
    testing::ExpectSameKvStats(outcome.kv_stats, expected.kv_stats, request.request_id);
  }
  EXPECT_GT(ok, accepted / 2);
  EXPECT_GT(c.preemptions, 0);
  std::printf(
      "soak: %d accepted, %d ok, %lld cancelled, %lld deadline, %d late, "
      "%lld preemptions, %d queue-full\n",
      accepted, ok, static_cast<long long>(c.cancelled),
      static_cast<long long>(c.deadline_exceeded), late, static_cast<long long>(c.preemptions),
      queue_full);
}

}  // namespace
}  // namespace zigzag
