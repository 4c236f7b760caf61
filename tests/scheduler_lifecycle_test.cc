// The scheduler's request lifecycle: what Submit refuses and why (each bad field named, a full
// queue, a request that can never fit, draining), Abort and deadlines in every phase (waiting,
// mid-prefill, mid-decode) returning all blocks at once, Drain and Stop. Deadlines use an
// injected clock, and aborts are triggered from the worker's own callbacks, so nothing depends on
// thread timing.
#include <atomic>
#include <future>
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

// A clock the test moves by hand.
class ManualClock {
 public:
  SteadyTime Now() const { return SteadyTime(std::chrono::seconds(seconds_.load())); }
  void AdvanceSeconds(int64_t s) { seconds_ += s; }
  std::function<SteadyTime()> AsFunction() {
    return [this] { return Now(); };
  }

 private:
  std::atomic<int64_t> seconds_{1000};
};

// Runs a hook after every iteration (on the worker thread).
class HookObserver : public SchedulerObserver {
 public:
  std::function<void(const IterationMetrics&)> on_iteration;
  void OnIteration(const IterationMetrics& metrics) override {
    if (on_iteration) on_iteration(metrics);
  }
};

class SchedulerLifecycleTest : public ::testing::Test {
 protected:
  void SetUp() override { harness_.Init(); }

  Scheduler& MakeScheduler(int32_t pool_blocks, SchedulerOptions options = {}) {
    cache_ = harness_.MakeCache(pool_blocks);
    if (!options.observer) options.observer = &observer_;
    if (!options.clock) options.clock = clock_.AsFunction();
    auto scheduler = Scheduler::Create(&harness_.model(), cache_.get(), options);
    EXPECT_TRUE(scheduler.ok()) << scheduler.status();
    scheduler_ = std::move(*scheduler);
    return *scheduler_;
  }

  void ExpectPoolAllFree() {
    const SchedulerLoad load = scheduler_->Load();
    EXPECT_EQ(load.kv_blocks_used, 0);
    EXPECT_EQ(load.kv_blocks_free, load.kv_blocks_total);
  }

  testing::SchedulerHarness harness_;
  OutcomeCollector collector_;
  ManualClock clock_;
  HookObserver observer_;
  std::unique_ptr<KvCache> cache_;
  std::unique_ptr<Scheduler> scheduler_;
};

TEST_F(SchedulerLifecycleTest, BadRequestsAreRefusedNamingTheField) {
  Scheduler& scheduler = MakeScheduler(128);
  const auto prompt = harness_.RandomPrompt(6, 1);
  struct Case {
    std::string field;
    std::function<void(EngineRequest&)> spoil;
  };
  const std::vector<Case> cases = {
      {"request_id", [](EngineRequest& r) { r.request_id.clear(); }},
      {"on_finish", [](EngineRequest& r) { r.on_finish = nullptr; }},
      {"prompt is empty", [](EngineRequest& r) { r.prompt.clear(); }},
      {"prompt token 2", [](EngineRequest& r) { r.prompt[2] = 96; }},
      {"temperature", [](EngineRequest& r) { r.sampling.temperature = -1.0f; }},
      {"top_p", [](EngineRequest& r) { r.sampling.top_p = 0.0f; }},
      {"top_k", [](EngineRequest& r) { r.sampling.top_k = -3; }},
      {"min_p", [](EngineRequest& r) { r.sampling.min_p = 2.0f; }},
      {"repetition_penalty", [](EngineRequest& r) { r.sampling.repetition_penalty = 0.0f; }},
      {"max_tokens", [](EngineRequest& r) { r.sampling.max_tokens = 0; }},
      {"stop_token_ids[0]", [](EngineRequest& r) { r.sampling.stop_token_ids = {-1}; }},
      {"kv_compression.window", [](EngineRequest& r) { r.compression.window = 0; }},
      {"kv_compression.kernel", [](EngineRequest& r) { r.compression.kernel = 4; }},
      {"needs a budget", [](EngineRequest& r) { r.compression.policy = KvPolicy::kSnapKv; }},
      {"kv_compression.ratio",
       [](EngineRequest& r) {
         r.compression.policy = KvPolicy::kZigZag;
         r.compression.ratio = 1.5;
       }},
      {"exceeds the model's context", [](EngineRequest& r) { r.sampling.max_tokens = 251; }},
  };
  for (const Case& c : cases) {
    EngineRequest request = collector_.Make("bad", prompt, Greedy(4));
    c.spoil(request);
    const absl::Status status = scheduler.Submit(std::move(request));
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.field << ": " << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr(c.field));
  }
  EXPECT_EQ(scheduler.Load().waiting, 0);
  scheduler.Stop();
  EXPECT_EQ(collector_.finished(), 0u);  // refused requests never hear on_finish
}

TEST_F(SchedulerLifecycleTest, QueueFullDuplicateIdAndPastDeadline) {
  SchedulerOptions options;
  options.max_waiting = 2;
  Scheduler& scheduler = MakeScheduler(128, options);
  ASSERT_TRUE(scheduler.Submit(collector_.Make("a", harness_.RandomPrompt(5, 1), Greedy(3))).ok());
  const absl::Status duplicate =
      scheduler.Submit(collector_.Make("a", harness_.RandomPrompt(5, 2), Greedy(3)));
  EXPECT_EQ(duplicate.code(), absl::StatusCode::kAlreadyExists) << duplicate;
  EXPECT_THAT(std::string(duplicate.message()), HasSubstr("request_id a"));
  EngineRequest late = collector_.Make("late", harness_.RandomPrompt(5, 3), Greedy(3));
  late.deadline = clock_.Now();
  EXPECT_EQ(scheduler.Submit(std::move(late)).code(), absl::StatusCode::kDeadlineExceeded);
  // Refused, yet a deadline failure for the metrics; so is one the server counts itself.
  EXPECT_EQ(scheduler.Load().counters.deadline_exceeded, 1);
  scheduler.CountDeadlineExceededBeforeSubmit();
  EXPECT_EQ(scheduler.Load().counters.deadline_exceeded, 2);
  ASSERT_TRUE(scheduler.Submit(collector_.Make("b", harness_.RandomPrompt(5, 4), Greedy(3))).ok());
  const absl::Status full =
      scheduler.Submit(collector_.Make("c", harness_.RandomPrompt(5, 5), Greedy(3)));
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted) << full;
  EXPECT_THAT(std::string(full.message()), HasSubstr("waiting queue is full (2 requests)"));
  // The queued ones still run to completion.
  scheduler.Start();
  ASSERT_TRUE(collector_.WaitForFinished(2));
  EXPECT_TRUE(collector_.outcome("a").status.ok());
  EXPECT_TRUE(collector_.outcome("b").status.ok());
  // A finished id may be used again.
  EXPECT_TRUE(scheduler.Submit(collector_.Make("a", harness_.RandomPrompt(5, 6), Greedy(2))).ok());
  ASSERT_TRUE(collector_.WaitForFinished(3));
  EXPECT_EQ(collector_.record("a").outcomes.size(), 2u);
  ExpectPoolAllFree();
}

TEST_F(SchedulerLifecycleTest, RequestThatCanNeverFitIsRefusedAtOnce) {
  // 2 layers x 2 KV heads, 4-token blocks: a 17-token prompt with max_tokens 5 holds up to
  // 17 + 5 - 1 = 21 entries per stream (the last token is never fed back): 4 * 6 = 24 blocks; the
  // pool has 20.
  Scheduler& scheduler = MakeScheduler(20);
  scheduler.Start();
  const absl::Status status =
      scheduler.Submit(collector_.Make("huge", harness_.RandomPrompt(17, 1), Greedy(5)));
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("can never fit"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("needs up to 24 blocks"));
  // max_tokens 4 peaks at 20 entries = 4 * 5 blocks: exactly the pool, and it runs to the end.
  ASSERT_TRUE(
      scheduler.Submit(collector_.Make("fits", harness_.RandomPrompt(17, 1), Greedy(4))).ok());
  ASSERT_TRUE(collector_.WaitForFinished(1));
  EXPECT_TRUE(collector_.outcome("fits").status.ok());
  EXPECT_EQ(collector_.outcome("fits").tokens.size(), 4u);
  EXPECT_EQ(collector_.outcome("fits").kv_stats.blocks_held, 20);
  ExpectPoolAllFree();
}

TEST_F(SchedulerLifecycleTest, AbortMidPrefillReturnsEveryBlock) {
  SchedulerOptions options;
  options.max_prefill_tokens_per_step = 4;
  Scheduler& scheduler = MakeScheduler(128, options);
  int iterations = 0;
  int32_t blocks_at_abort = 0;
  observer_.on_iteration = [&](const IterationMetrics& metrics) {
    // After the second chunk (8 of 30 prompt tokens): abort from the worker's own callback.
    if (++iterations == 2) {
      EXPECT_EQ(metrics.prefill_tokens, 4);
      blocks_at_abort = metrics.kv_blocks_used;
      EXPECT_TRUE(scheduler_->Abort("long"));
    }
  };
  ASSERT_TRUE(
      scheduler.Submit(collector_.Make("long", harness_.RandomPrompt(30, 1), Greedy(5))).ok());
  scheduler.Start();
  ASSERT_TRUE(collector_.WaitForFinished(1));
  const RequestOutcome outcome = collector_.outcome("long");
  EXPECT_EQ(outcome.status.code(), absl::StatusCode::kCancelled) << outcome.status;
  EXPECT_THAT(std::string(outcome.status.message()), HasSubstr("prefilling"));
  EXPECT_EQ(outcome.finish_reason, FinishReason::kAborted);
  EXPECT_TRUE(outcome.tokens.empty());
  EXPECT_EQ(blocks_at_abort, 2 * 2 * 2);  // 8 tokens in 4-token blocks, 2 layers x 2 KV heads
  EXPECT_EQ(outcome.kv_stats.blocks_held, 2 * 2 * 2);  // what it held when it was dropped
  // Nothing was evicted yet: a full cache would hold the same 8 tokens, so nothing was saved.
  EXPECT_FALSE(outcome.kv_stats.compressed);
  EXPECT_EQ(outcome.kv_stats.full_kv_bytes, outcome.kv_stats.retained_kv_bytes);
  EXPECT_EQ(outcome.kv_stats.saved_kv_bytes, 0);
  EXPECT_EQ(outcome.kv_stats.retained_ratio, 1.0);
  ExpectPoolAllFree();
  EXPECT_EQ(scheduler.Load().counters.cancelled, 1);
  EXPECT_FALSE(scheduler.Abort("long"));  // no longer live
  EXPECT_FALSE(scheduler.Abort("never-submitted"));
}

TEST_F(SchedulerLifecycleTest, AbortMidDecodeKeepsTheTokensSoFar) {
  Scheduler& scheduler = MakeScheduler(128);
  ASSERT_TRUE(scheduler
                  .Submit(collector_.Make("victim", harness_.RandomPrompt(9, 1), Greedy(40), {},
                                          [&](size_t streamed) {
                                            if (streamed == 3) scheduler_->Abort("victim");
                                          }))
                  .ok());
  ASSERT_TRUE(
      scheduler.Submit(collector_.Make("bystander", harness_.RandomPrompt(7, 2), Greedy(12))).ok());
  scheduler.Start();
  ASSERT_TRUE(collector_.WaitForFinished(2));
  const RequestOutcome victim = collector_.outcome("victim");
  EXPECT_EQ(victim.status.code(), absl::StatusCode::kCancelled) << victim.status;
  EXPECT_THAT(std::string(victim.status.message()), HasSubstr("decoding"));
  EXPECT_EQ(victim.tokens.size(), 3u);  // dropped before the next iteration's decode
  EXPECT_EQ(collector_.outcome("bystander").tokens.size(), 12u);
  EXPECT_TRUE(collector_.outcome("bystander").status.ok());
  ExpectPoolAllFree();
}

TEST_F(SchedulerLifecycleTest, AbortWhileWaitingBehindARunningRequest) {
  SchedulerOptions options;
  options.max_running = 1;
  Scheduler& scheduler = MakeScheduler(128, options);
  ASSERT_TRUE(scheduler
                  .Submit(collector_.Make("first", harness_.RandomPrompt(5, 1), Greedy(6), {},
                                          [&](size_t streamed) {
                                            if (streamed == 1) scheduler_->Abort("second");
                                          }))
                  .ok());
  ASSERT_TRUE(
      scheduler.Submit(collector_.Make("second", harness_.RandomPrompt(5, 2), Greedy(6))).ok());
  scheduler.Start();
  ASSERT_TRUE(collector_.WaitForFinished(2));
  EXPECT_TRUE(collector_.outcome("first").status.ok());
  const RequestOutcome second = collector_.outcome("second");
  EXPECT_EQ(second.status.code(), absl::StatusCode::kCancelled);
  EXPECT_THAT(std::string(second.status.message()), HasSubstr("waiting"));
  EXPECT_TRUE(second.tokens.empty());
  EXPECT_EQ(second.kv_stats.blocks_held, 0);
  EXPECT_EQ(second.kv_stats.full_kv_bytes, 0);
  EXPECT_EQ(second.kv_stats.saved_kv_bytes, 0);
  ExpectPoolAllFree();
}

TEST_F(SchedulerLifecycleTest, DeadlineMidPrefillAndMidDecode) {
  SchedulerOptions options;
  options.max_prefill_tokens_per_step = 4;
  Scheduler& scheduler = MakeScheduler(128, options);
  const SteadyTime start = clock_.Now();
  // "prefill" (26 tokens, 4 per step) expires after 10 s; "decode" after 100 s, and the clock
  // jumps 100 s when its 2nd token is streamed; "patient" has no deadline.
  EngineRequest prefill = collector_.Make("prefill", harness_.RandomPrompt(26, 1), Greedy(5));
  prefill.deadline = start + std::chrono::seconds(10);
  EngineRequest decode =
      collector_.Make("decode", harness_.RandomPrompt(2, 2), Greedy(30), {}, [&](size_t streamed) {
        if (streamed == 2) clock_.AdvanceSeconds(100);
      });
  decode.deadline = start + std::chrono::seconds(100);
  int iterations = 0;
  observer_.on_iteration = [&](const IterationMetrics&) {
    if (++iterations == 1) clock_.AdvanceSeconds(20);  // "prefill" has had one chunk
  };
  ASSERT_TRUE(scheduler.Submit(std::move(decode)).ok());
  ASSERT_TRUE(scheduler.Submit(std::move(prefill)).ok());
  ASSERT_TRUE(
      scheduler.Submit(collector_.Make("patient", harness_.RandomPrompt(3, 3), Greedy(8))).ok());
  scheduler.Start();
  ASSERT_TRUE(collector_.WaitForFinished(3));
  const RequestOutcome p = collector_.outcome("prefill");
  EXPECT_EQ(p.status.code(), absl::StatusCode::kDeadlineExceeded) << p.status;
  EXPECT_THAT(std::string(p.status.message()), HasSubstr("while prefilling"));
  EXPECT_TRUE(p.tokens.empty());
  const RequestOutcome d = collector_.outcome("decode");
  EXPECT_EQ(d.status.code(), absl::StatusCode::kDeadlineExceeded) << d.status;
  EXPECT_THAT(std::string(d.status.message()), HasSubstr("while decoding"));
  EXPECT_EQ(d.tokens.size(), 2u);
  EXPECT_TRUE(collector_.outcome("patient").status.ok());
  EXPECT_EQ(collector_.outcome("patient").tokens.size(), 8u);
  ExpectPoolAllFree();
  EXPECT_EQ(scheduler.Load().counters.deadline_exceeded, 2);
}

TEST_F(SchedulerLifecycleTest, DrainFinishesRunningAndRefusesNew) {
  // Ids by absl::StrCat: gcc 12 at -O3 reports a false -Wrestrict in "d" + std::to_string(i)
  // (GCC bug 105329), which failed the Release build.
  Scheduler& scheduler = MakeScheduler(128);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(scheduler
                    .Submit(collector_.Make(absl::StrCat("d", i), harness_.RandomPrompt(4 + i, i),
                                            Greedy(10)))
                    .ok());
  }
  scheduler.BeginDrain();
  const absl::Status refused =
      scheduler.Submit(collector_.Make("new", harness_.RandomPrompt(4, 9), Greedy(3)));
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable) << refused;
  EXPECT_FALSE(scheduler.Load().accepting);
  scheduler.Start();
  EXPECT_EQ(scheduler.Drain(std::chrono::milliseconds(60000)), 0);
  EXPECT_EQ(collector_.finished(), 3u);
  for (int i = 0; i < 3; ++i) {
    const RequestOutcome outcome = collector_.outcome(absl::StrCat("d", i));
    EXPECT_TRUE(outcome.status.ok()) << outcome.status;
    EXPECT_EQ(outcome.tokens.size(), 10u);
  }
  ExpectPoolAllFree();
}

TEST_F(SchedulerLifecycleTest, DrainTimeoutAbortsTheRestWithUnavailable) {
  SchedulerOptions options;
  options.max_running = 1;
  Scheduler& scheduler = MakeScheduler(128, options);
  // The worker parks after its first iteration until the drain deadline has passed, so neither
  // request can finish in time: one is running, the other waiting.
  std::promise<void> parked;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  int iterations = 0;
  observer_.on_iteration = [&](const IterationMetrics&) {
    if (++iterations == 1) {
      parked.set_value();
      released.wait();
    }
  };
  ASSERT_TRUE(
      scheduler.Submit(collector_.Make("running", harness_.RandomPrompt(6, 1), Greedy(50))).ok());
  ASSERT_TRUE(
      scheduler.Submit(collector_.Make("waiting", harness_.RandomPrompt(6, 2), Greedy(50))).ok());
  scheduler.Start();
  parked.get_future().wait();
  // Drain with no time at all marks both for abortion at once, then waits for the worker.
  std::future<int> drained =
      std::async(std::launch::async, [&] { return scheduler.Drain(std::chrono::milliseconds(0)); });
  // accepting is false from the same critical section that asks the worker to abort the rest.
  while (scheduler.Load().accepting) std::this_thread::yield();
  release.set_value();
  ASSERT_EQ(drained.wait_for(testing::kHangGuard), std::future_status::ready);
  EXPECT_EQ(drained.get(), 2);
  for (const char* id : {"running", "waiting"}) {
    const RequestOutcome outcome = collector_.outcome(id);
    EXPECT_EQ(outcome.status.code(), absl::StatusCode::kUnavailable) << id << outcome.status;
    EXPECT_LT(outcome.tokens.size(), 50u);
  }
  EXPECT_EQ(collector_.outcome("running").tokens.size(), 1u);
  EXPECT_EQ(scheduler.Load().counters.unavailable, 2);
  ExpectPoolAllFree();
}

TEST_F(SchedulerLifecycleTest, StopFinishesEverythingOnceAndSchedulerCanBeDestroyed) {
  Scheduler& scheduler = MakeScheduler(128);
  // Not started: Stop finishes the queued requests itself.
  ASSERT_TRUE(scheduler.Submit(collector_.Make("q1", harness_.RandomPrompt(4, 1), Greedy(3))).ok());
  ASSERT_TRUE(scheduler.Submit(collector_.Make("q2", harness_.RandomPrompt(4, 2), Greedy(3))).ok());
  scheduler.Stop();
  scheduler.Stop();
  EXPECT_EQ(collector_.finished(), 2u);
  EXPECT_EQ(collector_.outcome("q1").status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(scheduler.Submit(collector_.Make("q3", harness_.RandomPrompt(4, 3), Greedy(3))).code(),
            absl::StatusCode::kUnavailable);
  scheduler.Start();  // after Stop: nothing happens
  scheduler_.reset();
  EXPECT_EQ(cache_->pool().num_used(), 0);
  EXPECT_EQ(collector_.finished(), 2u);
}

TEST_F(SchedulerLifecycleTest, CreateRejectsBadOptions) {
  cache_ = harness_.MakeCache(32);
  SchedulerOptions options;
  options.max_running = 0;
  auto bad = Scheduler::Create(&harness_.model(), cache_.get(), options);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("max_running"));
  options = SchedulerOptions{};
  options.max_prefill_tokens_per_step = 0;
  bad = Scheduler::Create(&harness_.model(), cache_.get(), options);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("max_prefill_tokens_per_step"));
  options = SchedulerOptions{};
  options.max_waiting = 0;
  bad = Scheduler::Create(&harness_.model(), cache_.get(), options);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("max_waiting"));
  EXPECT_EQ(Scheduler::Create(&harness_.model(), nullptr, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace zigzag
