// A bounded soak over gRPC: 500 requests from 16 client threads against a small KV pool (so
// admission has to wait for blocks), random prompt lengths, output lengths and policies, unary
// and streamed, 20% of them cancelled by the client or cut by a short deadline. Every call must
// end with a definite status, every completed greedy request must give the offline engine's
// tokens, and at the end the pool must be entirely free.
#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server_test_support.h"

namespace zigzag::testing {
namespace {

struct SoakCall {
  v1::GenerateRequest request;
  bool stream = false;
  enum class Interrupt { kNone, kDeadline, kCancelAfterFirstChunk } interrupt = Interrupt::kNone;
  int deadline_ms = 0;
};

struct SoakResult {
  grpc::Status status;
  std::vector<int32_t> tokens;
  v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
};

std::vector<SoakCall> MakeCalls(int count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<SoakCall> calls(count);
  for (int i = 0; i < count; ++i) {
    SoakCall& call = calls[i];
    const size_t prompt = std::uniform_int_distribution<size_t>(1, 160)(rng);
    const uint32_t max_tokens = std::uniform_int_distribution<uint32_t>(1, 40)(rng);
    call.request = GreedyRequest(RandomPrompt(prompt, rng()), max_tokens);
    call.request.set_request_id("soak-" + std::to_string(i));
    v1::KvCompression* kv = call.request.mutable_kv_compression();
    switch (rng() % 4) {
      case 0:
        kv->set_policy(v1::KV_POLICY_FULL);
        break;
      case 1:
        kv->set_policy(v1::KV_POLICY_SNAPKV);
        kv->set_window(8);
        kv->set_tokens_per_layer(16);
        break;
      case 2:
        kv->set_policy(v1::KV_POLICY_ZIGZAG);
        kv->set_window(8);
        kv->set_ratio(0.3f);
        break;
      default:
        kv->set_policy(v1::KV_POLICY_STREAMING);
        kv->set_window(4);
        kv->set_tokens_per_layer(12);
        break;
    }
    call.stream = rng() % 2 == 0;
    const uint64_t roll = rng() % 10;  // 2 in 10 interrupted
    if (roll == 0) {
      call.interrupt = SoakCall::Interrupt::kDeadline;
      call.deadline_ms = std::uniform_int_distribution<int>(1, 40)(rng);
    } else if (roll == 1) {
      call.stream = true;
      call.interrupt = SoakCall::Interrupt::kCancelAfterFirstChunk;
    }
  }
  return calls;
}

SoakResult RunCall(v1::Engine::Stub& stub, const SoakCall& call) {
  SoakResult result;
  grpc::ClientContext context;
  // Sixteen clients opening connections at once on a loaded CI machine can see a transient
  // connect failure; like a production client, wait for the channel instead of failing fast.
  context.set_wait_for_ready(true);
  if (call.interrupt == SoakCall::Interrupt::kDeadline) {
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(call.deadline_ms));
  } else {
    context.set_deadline(std::chrono::system_clock::now() + kServerHangGuard);
  }
  if (!call.stream) {
    v1::GenerateResponse response;
    result.status = stub.Generate(&context, call.request, &response);
    result.tokens.assign(response.token_ids().begin(), response.token_ids().end());
    result.finish = response.finish_reason();
    return result;
  }
  std::unique_ptr<grpc::ClientReader<v1::GenerateStreamResponse>> reader =
      stub.GenerateStream(&context, call.request);
  v1::GenerateStreamResponse message;
  std::vector<int32_t> streamed;
  while (reader->Read(&message)) {
    if (message.has_chunk()) {
      streamed.insert(streamed.end(), message.chunk().token_ids().begin(),
                      message.chunk().token_ids().end());
      if (call.interrupt == SoakCall::Interrupt::kCancelAfterFirstChunk) context.TryCancel();
    } else {
      result.tokens.assign(message.complete().token_ids().begin(),
                           message.complete().token_ids().end());
      result.finish = message.complete().finish_reason();
      EXPECT_EQ(result.tokens, streamed) << call.request.request_id();
    }
  }
  result.status = reader->Finish();
  return result;
}

TEST(ServerSoakTest, FiveHundredRequestsWithCancellationsLeaveThePoolFree) {
  constexpr int kCalls = 500;
  constexpr int kClients = 16;
  ServerOptions options = TestServerOptions();
  // 512 one-KV-head blocks: 16 clients at up to 3 x 26 blocks each contend.
  options.kv_memory_mb = 1;
  options.max_prefill_tokens_per_step = 96;
  std::unique_ptr<ZigzagServer> server = StartServer(options);
  ASSERT_NE(server, nullptr);
  ASSERT_EQ(server->kv_cache()->pool().num_blocks(), 512);

  const std::vector<SoakCall> calls = MakeCalls(kCalls, 2024);
  std::vector<SoakResult> results(kCalls);
  std::atomic<int> next{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&] {
      auto stub = NewStub(server->port());
      for (int i; (i = next.fetch_add(1)) < kCalls;) results[i] = RunCall(*stub, calls[i]);
    });
  }
  for (std::thread& t : clients) t.join();

  EngineReference reference;
  std::map<grpc::StatusCode, int> by_code;
  int completed = 0;
  for (int i = 0; i < kCalls; ++i) {
    const SoakCall& call = calls[i];
    const SoakResult& result = results[i];
    ++by_code[result.status.error_code()];
    SCOPED_TRACE(call.request.request_id());
    if (call.interrupt == SoakCall::Interrupt::kNone) {
      ASSERT_TRUE(result.status.ok()) << result.status.error_message();
    } else {
      EXPECT_THAT(result.status.error_code(),
                  ::testing::AnyOf(grpc::StatusCode::OK, grpc::StatusCode::CANCELLED,
                                   grpc::StatusCode::DEADLINE_EXCEEDED))
          << result.status.error_message();
    }
    if (!result.status.ok()) continue;
    ++completed;
    EXPECT_EQ(result.finish, v1::FINISH_REASON_LENGTH);
    EXPECT_EQ(result.tokens, reference.Generate(call.request).tokens);
  }
  ASSERT_TRUE(WaitForIdlePool(*server));
  const SchedulerLoad load = server->scheduler()->Load();
  EXPECT_EQ(load.kv_blocks_used, 0);
  EXPECT_EQ(load.kv_blocks_free, 512);
  // Every queued request ended once, as finished, cancelled or expired (a call can end OK in the
  // server while its client has just cancelled it); nothing failed inside the server.
  const SchedulerCounters& counters = load.counters;
  EXPECT_GE(counters.finished_length, completed);
  EXPECT_LE(counters.finished_length + counters.cancelled + counters.deadline_exceeded, kCalls);
  EXPECT_EQ(load.counters.failed, 0);
  EXPECT_EQ(load.counters.unavailable, 0);
  EXPECT_GE(completed, kCalls * 7 / 10);
  std::string summary;
  for (const auto& [code, count] : by_code) {
    summary += std::to_string(code) + ":" + std::to_string(count) + " ";
  }
  std::printf("soak: status code counts %s; preemptions %lld\n", summary.c_str(),
              static_cast<long long>(load.counters.preemptions));
}

}  // namespace
}  // namespace zigzag::testing
