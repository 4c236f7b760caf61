// Prometheus /metrics scraped over HTTP from the running server: every DESIGN.md metric is
// exported with the `model` label and vLLM's buckets, and counters and histograms move by exactly
// what the requests in between account for (token counts, per-request timings and KvStats as
// the responses report them). Aborts count as aborts; expired deadlines as failures.
#include <numeric>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server_test_support.h"

namespace zigzag::testing {
namespace {

using ::testing::HasSubstr;
using Labels = std::vector<std::pair<std::string, std::string>>;

const Labels kModel = {{"model", "tiny"}};

class ServerMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions options = TestServerOptions();
    options.metrics_port = 0;
    options.extra_observers.push_back(&gate_);
    server_ = StartServer(std::move(options));
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(server_->metrics_port(), 0);
  }
  void TearDown() override {
    gate_.Release();
    server_.reset();
  }

  std::string Scrape() {
    absl::StatusOr<std::string> text = HttpGet(server_->metrics_port(), "/metrics");
    EXPECT_TRUE(text.ok()) << text.status();
    return text.ok() ? *text : std::string();
  }

  WorkerGate gate_;
  std::unique_ptr<ZigzagServer> server_;
};

double Value(const std::string& text, const std::string& name, const Labels& labels = kModel) {
  const std::optional<double> value = Metric(text, name, labels);
  EXPECT_TRUE(value.has_value()) << name << " is missing";
  return value.value_or(-1);
}

Labels With(const char* name, const char* value) {
  Labels labels = kModel;
  labels.emplace_back(name, value);
  return labels;
}

TEST_F(ServerMetricsTest, EveryDesignMetricIsExportedWithVllmBuckets) {
  const std::string text = Scrape();
  for (const char* gauge : {"zigzag_num_requests_running", "zigzag_num_requests_waiting",
                            "zigzag_kv_cache_usage_ratio", "zigzag_kv_blocks_free"}) {
    EXPECT_THAT(text, HasSubstr(std::string("# TYPE ") + gauge + " gauge"));
  }
  for (const char* counter : {"zigzag_prompt_tokens_total", "zigzag_generation_tokens_total",
                              "zigzag_request_success_total", "zigzag_num_preemptions_total",
                              "zigzag_kv_bytes_saved_total"}) {
    EXPECT_THAT(text, HasSubstr(std::string("# TYPE ") + counter + " counter"));
  }
  for (const char* histogram :
       {"zigzag_time_to_first_token_seconds", "zigzag_inter_token_latency_seconds",
        "zigzag_e2e_request_latency_seconds", "zigzag_request_queue_time_seconds",
        "zigzag_request_kv_retained_ratio", "zigzag_request_kv_saved_bytes"}) {
    EXPECT_THAT(text, HasSubstr(std::string("# TYPE ") + histogram + " histogram"));
  }
  // vLLM's boundaries (vllm/v1/metrics/loggers.py), written out independently here.
  const std::vector<const char*> ttft = {
      "0.001", "0.005", "0.01", "0.02", "0.04", "0.06", "0.08", "0.1", "0.25", "0.5",  "0.75", "1",
      "2.5",   "5",     "7.5",  "10",   "20",   "40",   "80",   "160", "640",  "2560", "+Inf"};
  for (const char* le : ttft) {
    EXPECT_EQ(Value(text, "zigzag_time_to_first_token_seconds_bucket", With("le", le)), 0) << le;
  }
  const std::vector<const char*> itl = {"0.01", "0.025", "0.05", "0.075", "0.1", "0.15", "0.2",
                                        "0.3",  "0.4",   "0.5",  "0.75",  "1",   "2.5",  "5",
                                        "7.5",  "10",    "20",   "40",    "80",  "+Inf"};
  for (const char* le : itl) {
    EXPECT_EQ(Value(text, "zigzag_inter_token_latency_seconds_bucket", With("le", le)), 0) << le;
  }
  const std::vector<const char*> latency = {"0.3", "0.5", "0.8", "1",   "1.5", "2",    "2.5",
                                            "5",   "10",  "15",  "20",  "30",  "40",   "50",
                                            "60",  "120", "240", "480", "960", "1920", "7680"};
  for (const char* le : latency) {
    EXPECT_EQ(Value(text, "zigzag_e2e_request_latency_seconds_bucket", With("le", le)), 0) << le;
    EXPECT_EQ(Value(text, "zigzag_request_queue_time_seconds_bucket", With("le", le)), 0) << le;
  }
  EXPECT_EQ(Value(text, "zigzag_kv_blocks_free"), 2048);
  EXPECT_EQ(Value(text, "zigzag_kv_cache_usage_ratio"), 0);
}

TEST_F(ServerMetricsTest, CountersAndHistogramsMoveByExactlyWhatRequestsReport) {
  const std::string before = Scrape();

  struct Call {
    size_t prompt;
    uint32_t max_tokens;
    v1::KvPolicy policy;
    std::optional<uint32_t> tokens;
    std::optional<float> ratio;
    bool stream;
  };
  const std::vector<Call> calls = {
      {30, 5, v1::KV_POLICY_FULL, {}, {}, false},
      {150, 6, v1::KV_POLICY_SNAPKV, 32u, {}, false},
      {120, 4, v1::KV_POLICY_ZIGZAG, {}, 0.25f, true},
      {64, 1, v1::KV_POLICY_PYRAMIDKV, 24u, {}, true},
  };
  std::vector<v1::GenerateResponse> responses;
  for (const Call& call : calls) {
    v1::GenerateRequest request =
        GreedyRequest(RandomPrompt(call.prompt, call.prompt), call.max_tokens);
    v1::KvCompression* kv = request.mutable_kv_compression();
    kv->set_policy(call.policy);
    kv->set_window(8);
    if (call.tokens) kv->set_tokens_per_layer(*call.tokens);
    if (call.ratio) kv->set_ratio(*call.ratio);
    auto stub = NewStub(server_->port());
    grpc::ClientContext context;
    if (call.stream) {
      StreamResult result = RunStream(*stub, request, &context);
      ASSERT_TRUE(result.status.ok()) << result.status.error_message();
      ASSERT_TRUE(result.complete.has_value());
      responses.push_back(*result.complete);
    } else {
      v1::GenerateResponse response;
      const grpc::Status status = stub->Generate(&context, request, &response);
      ASSERT_TRUE(status.ok()) << status.error_message();
      responses.push_back(response);
    }
  }
  const std::string after = Scrape();
  const auto delta = [&](const std::string& name, const Labels& labels = kModel) {
    return Value(after, name, labels) - Value(before, name, labels);
  };

  double prompt_tokens = 0, generated = 0, gaps = 0, e2e = 0, queue = 0, ttft = 0, ratios = 0,
         saved = 0;
  for (const v1::GenerateResponse& r : responses) {
    prompt_tokens += r.usage().prompt_tokens();
    generated += r.usage().completion_tokens();
    gaps += r.usage().completion_tokens() - 1;
    e2e += r.timings().e2e_seconds();
    queue += r.timings().queue_seconds();
    ttft += r.timings().ttft_seconds();
    ratios += r.kv_stats().retained_ratio();
    saved += static_cast<double>(r.kv_stats().saved_kv_bytes());
  }
  ASSERT_EQ(prompt_tokens, 30 + 150 + 120 + 64);
  ASSERT_EQ(generated, 5 + 6 + 4 + 1);
  ASSERT_GT(saved, 0);  // snapkv and the others do free whole blocks here

  EXPECT_EQ(delta("zigzag_prompt_tokens_total"), prompt_tokens);
  EXPECT_EQ(delta("zigzag_generation_tokens_total"), generated);
  EXPECT_EQ(delta("zigzag_request_success_total", With("finished_reason", "length")), 4);
  EXPECT_EQ(delta("zigzag_request_success_total", With("finished_reason", "stop")), 0);
  EXPECT_EQ(delta("zigzag_request_success_total", With("finished_reason", "eos")), 0);
  EXPECT_EQ(delta("zigzag_request_success_total", With("finished_reason", "abort")), 0);
  EXPECT_EQ(delta("zigzag_num_preemptions_total"), 0);
  EXPECT_EQ(delta("zigzag_kv_bytes_saved_total"), saved);

  EXPECT_EQ(delta("zigzag_time_to_first_token_seconds_count"), 4);
  EXPECT_NEAR(delta("zigzag_time_to_first_token_seconds_sum"), ttft, 1e-9);
  EXPECT_EQ(delta("zigzag_inter_token_latency_seconds_count"), gaps);
  EXPECT_EQ(delta("zigzag_e2e_request_latency_seconds_count"), 4);
  EXPECT_NEAR(delta("zigzag_e2e_request_latency_seconds_sum"), e2e, 1e-9);
  EXPECT_EQ(delta("zigzag_request_queue_time_seconds_count"), 4);
  EXPECT_NEAR(delta("zigzag_request_queue_time_seconds_sum"), queue, 1e-9);
  EXPECT_EQ(delta("zigzag_request_kv_retained_ratio_count"), 4);
  EXPECT_NEAR(delta("zigzag_request_kv_retained_ratio_sum"), ratios, 1e-12);
  EXPECT_EQ(delta("zigzag_request_kv_saved_bytes_count"), 4);
  EXPECT_EQ(delta("zigzag_request_kv_saved_bytes_sum"), saved);
  // Only the full request kept everything: ratio 1 falls in no bucket below 1.
  EXPECT_EQ(delta("zigzag_request_kv_retained_ratio_bucket", With("le", "0.95")), 3);
  EXPECT_EQ(delta("zigzag_request_kv_retained_ratio_bucket", With("le", "1")), 4);

  EXPECT_EQ(Value(after, "zigzag_num_requests_running"), 0);
  EXPECT_EQ(Value(after, "zigzag_num_requests_waiting"), 0);
  EXPECT_EQ(Value(after, "zigzag_kv_blocks_free"), 2048);
  EXPECT_EQ(Value(after, "zigzag_kv_cache_usage_ratio"), 0);
}

TEST_F(ServerMetricsTest, AbortedRequestsCountAsAbortAndKeepOutOfRequestHistograms) {
  gate_.HoldWhen([](const IterationMetrics& m) { return m.decode_sequences > 0; });
  v1::GenerateRequest request = GreedyRequest(RandomPrompt(40, 40), 200);
  request.set_request_id("to-abort");
  grpc::Status status;
  v1::GenerateResponse response;
  std::thread client([&] {
    auto stub = NewStub(server_->port());
    grpc::ClientContext context;
    status = stub->Generate(&context, request, &response);
  });
  ASSERT_TRUE(gate_.WaitUntilHeld());
  // Mid-decode: the gauges show the running request and the blocks it holds.
  const std::string running = Scrape();
  EXPECT_EQ(Value(running, "zigzag_num_requests_running"), 1);
  const SchedulerLoad load = server_->scheduler()->Load();
  EXPECT_EQ(Value(running, "zigzag_kv_blocks_free"), load.kv_blocks_free);
  EXPECT_NEAR(Value(running, "zigzag_kv_cache_usage_ratio"), load.kv_blocks_used / 2048.0, 1e-12);

  const std::string before = running;
  auto stub = NewStub(server_->port());
  grpc::ClientContext abort_context;
  v1::AbortRequest abort;
  abort.set_request_id("to-abort");
  v1::AbortResponse found;
  ASSERT_TRUE(stub->Abort(&abort_context, abort, &found).ok());
  ASSERT_TRUE(found.found());
  ASSERT_TRUE(gate_.StepUntilFinished("to-abort", std::chrono::milliseconds(0)));
  gate_.Release();
  client.join();
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.finish_reason(), v1::FINISH_REASON_ABORTED);

  const std::string after = Scrape();
  const auto delta = [&](const std::string& name, const Labels& labels = kModel) {
    return Value(after, name, labels) - Value(before, name, labels);
  };
  EXPECT_EQ(delta("zigzag_request_success_total", With("finished_reason", "abort")), 1);
  EXPECT_EQ(delta("zigzag_request_success_total", With("finished_reason", "length")), 0);
  EXPECT_EQ(delta("zigzag_e2e_request_latency_seconds_count"), 0);
  EXPECT_EQ(delta("zigzag_request_kv_saved_bytes_count"), 0);
  // Every token the aborted request produced counts, and the gaps between them.
  EXPECT_EQ(Value(after, "zigzag_generation_tokens_total"), response.token_ids_size());
  EXPECT_EQ(Value(after, "zigzag_inter_token_latency_seconds_count"),
            response.token_ids_size() - 1);
  EXPECT_EQ(Value(after, "zigzag_time_to_first_token_seconds_count"), 1);
  EXPECT_EQ(Value(after, "zigzag_kv_blocks_free"), 2048);
}

TEST_F(ServerMetricsTest, ExpiredDeadlinesCountAsFailuresNotAborts) {
  // Both calls are held in the scheduler (the worker stopped mid-decode) until their deadlines
  // pass: gRPC cancels them, and the scheduler must still end them as DEADLINE_EXCEEDED (the
  // proto's "failed"), not as aborts. The deadline is long enough for both calls to reach the
  // scheduler first on a slow machine (TSan, CI): a call whose deadline passes before it arrives
  // never reaches it.
  gate_.HoldWhen([](const IterationMetrics& m) { return m.decode_sequences > 0; });
  const std::string before = Scrape();
  const auto deadline = [] {
    return std::chrono::system_clock::now() + std::chrono::milliseconds(2000);
  };
  grpc::Status unary_status;
  std::thread unary([&] {
    v1::GenerateRequest request = GreedyRequest(RandomPrompt(30, 30), 200);
    request.set_request_id("deadline-unary");
    auto stub = NewStub(server_->port());
    grpc::ClientContext context;
    context.set_deadline(deadline());
    v1::GenerateResponse response;
    unary_status = stub->Generate(&context, request, &response);
  });
  StreamResult stream_result;
  std::thread stream([&] {
    v1::GenerateRequest request = GreedyRequest(RandomPrompt(31, 31), 200);
    request.set_request_id("deadline-stream");
    auto stub = NewStub(server_->port());
    grpc::ClientContext context;
    context.set_deadline(deadline());
    stream_result = RunStream(*stub, request, &context);
  });
  ASSERT_TRUE(gate_.WaitUntilHeld());
  // The worker is held with the first call decoding; the second is decoding or waiting.
  const bool both_in_scheduler = WaitUntil(
      [&] {
        const SchedulerLoad load = server_->scheduler()->Load();
        return load.running + load.waiting == 2;
      },
      std::chrono::milliseconds(1500));
  unary.join();  // both deadlines pass while the worker is held
  stream.join();
  ASSERT_TRUE(both_in_scheduler) << "a call did not reach the scheduler before its deadline";
  // Time for the server's own deadline timers to cancel both calls before the worker moves on
  // (else the scheduler could see the deadline first whatever the reactors do).
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(unary_status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(stream_result.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  ASSERT_TRUE(gate_.StepUntilFinished("deadline-unary", std::chrono::milliseconds(0)));
  ASSERT_TRUE(gate_.StepUntilFinished("deadline-stream", std::chrono::milliseconds(0)));
  gate_.Release();
  EXPECT_EQ(gate_.finished("deadline-unary")->status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(gate_.finished("deadline-stream")->status.code(), absl::StatusCode::kDeadlineExceeded);

  const std::string after = Scrape();
  const auto delta = [&](const std::string& name, const Labels& labels) {
    return Value(after, name, labels) - Value(before, name, labels);
  };
  EXPECT_EQ(delta("zigzag_request_failure_total", With("reason", "deadline_exceeded")), 2);
  EXPECT_EQ(delta("zigzag_request_success_total", With("finished_reason", "abort")), 0);
  EXPECT_EQ(delta("zigzag_request_failure_total", With("reason", "internal")), 0);
  EXPECT_EQ(delta("zigzag_e2e_request_latency_seconds_count", kModel), 0);
  // GetServerInfo's totals say the same.
  auto stub = NewStub(server_->port());
  grpc::ClientContext context;
  v1::GetServerInfoResponse info;
  ASSERT_TRUE(stub->GetServerInfo(&context, {}, &info).ok());
  EXPECT_EQ(info.requests_aborted_total(), 0);
  EXPECT_EQ(info.requests_failed_total(), 2);
  EXPECT_TRUE(WaitForIdlePool(*server_));
}

}  // namespace
}  // namespace zigzag::testing
