// The server's life cycle over gRPC: loading (live, not ready), client cancel, deadlines and
// Abort() mid-prefill and mid-decode (every block back in the pool, the server still serving),
// the bounded waiting queue, duplicate ids, and draining (readiness NOT_SERVING while liveness
// stays SERVING, UNAVAILABLE for new requests, running ones finish; the drain timeout cuts off
// the rest). A passed deadline ends a request DEADLINE_EXCEEDED, never CANCELLED. WorkerGate holds
// the scheduler's worker between iterations, so "mid-prefill" and "mid-decode" are exact.
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server_test_support.h"

namespace zigzag::testing {
namespace {

using ::testing::HasSubstr;

bool InPrefill(const IterationMetrics& m) {
  return m.prefill_sequences > 0 && m.decode_sequences == 0;
}
bool InDecode(const IterationMetrics& m) { return m.decode_sequences > 0; }

class ServerLifecycleTest : public ::testing::Test {
 protected:
  // A 600-token prompt prefills in 64-token chunks: ten iterations of "mid-prefill".
  static constexpr size_t kLongPrompt = 600;

  void StartWith(ServerOptions options) {
    options.extra_observers.push_back(&gate_);
    options.max_prefill_tokens_per_step = 64;
    server_ = StartServer(std::move(options));
    ASSERT_NE(server_, nullptr);
  }
  void SetUp() override { StartWith(TestServerOptions()); }
  void TearDown() override {
    gate_.Release();
    server_.reset();
  }

  std::unique_ptr<v1::Engine::Stub> Stub() { return NewStub(server_->port()); }

  // After an interrupted request: every block is free and a new request is served.
  void ExpectPoolFreeAndServing() {
    EXPECT_TRUE(WaitForIdlePool(*server_));
    auto stub = Stub();
    grpc::ClientContext context;
    v1::GenerateResponse response;
    const grpc::Status status = stub->Generate(&context, GreedyRequest({7, 8, 9}, 3), &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.token_ids_size(), 3);
    EXPECT_TRUE(WaitForIdlePool(*server_));
  }

  v1::GenerateRequest Named(const std::string& id, size_t prompt, uint32_t max_tokens) {
    v1::GenerateRequest request = GreedyRequest(RandomPrompt(prompt, prompt), max_tokens);
    request.set_request_id(id);
    return request;
  }

  // Client threads are std::jthread with this deadline on their call: when an ASSERT returns from
  // the test body while the worker is held, the thread's join ends at the deadline (a plain
  // std::thread would std::terminate the whole binary). Far longer than any call here takes.
  static void SetBackstop(grpc::ClientContext& context) {
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  }

  WorkerGate gate_;
  std::unique_ptr<ZigzagServer> server_;
};

TEST_F(ServerLifecycleTest, WhileLoadingHealthIsLiveButNotReadyAndGenerationIsUnavailable) {
  ServerOptions options = TestServerOptions();
  absl::StatusOr<std::unique_ptr<ZigzagServer>> loading = ZigzagServer::Start(options);
  ASSERT_TRUE(loading.ok()) << loading.status();
  const int port = (*loading)->port();
  EXPECT_EQ(HealthCheck(port, "").value_or(-1), 1);
  EXPECT_EQ(HealthCheck(port, kEngineServiceName).value_or(-1), 2);
  auto stub = NewStub(port);
  {
    grpc::ClientContext context;
    v1::GenerateResponse response;
    const grpc::Status status = stub->Generate(&context, GreedyRequest({5}, 1), &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_THAT(status.error_message(), HasSubstr("still loading"));
    grpc::ClientContext info_context;
    v1::GetServerInfoResponse info;
    ASSERT_TRUE(stub->GetServerInfo(&info_context, {}, &info).ok());
    EXPECT_EQ(info.state(), v1::SERVER_STATE_LOADING);
  }
  ASSERT_TRUE((*loading)->LoadModel().ok());
  EXPECT_EQ(HealthCheck(port, kEngineServiceName).value_or(-1), 1);
  grpc::ClientContext context;
  v1::GenerateResponse response;
  EXPECT_TRUE(stub->Generate(&context, GreedyRequest({5}, 1), &response).ok());
}

TEST_F(ServerLifecycleTest, ClientCancelMidPrefillFreesEveryBlock) {
  gate_.HoldWhen(InPrefill);
  grpc::ClientContext context;
  SetBackstop(context);
  StreamResult result;
  std::jthread client([&] {
    auto stub = Stub();
    result = RunStream(*stub, Named("cancel-prefill", kLongPrompt, 20), &context);
  });
  ASSERT_TRUE(gate_.WaitUntilHeld());
  EXPECT_EQ(server_->scheduler()->Load().running, 1);
  EXPECT_GT(server_->scheduler()->Load().kv_blocks_used, 0);
  context.TryCancel();
  client.join();
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_EQ(result.num_chunks, 0);
  ASSERT_TRUE(gate_.StepUntilFinished("cancel-prefill"));
  const auto finished = gate_.finished("cancel-prefill");
  ASSERT_TRUE(finished.has_value());
  EXPECT_EQ(finished->status.code(), absl::StatusCode::kCancelled);
  EXPECT_THAT(std::string(finished->status.message()), HasSubstr("while prefilling"));
  EXPECT_EQ(finished->tokens, 0u);
  gate_.Release();
  ExpectPoolFreeAndServing();
}

TEST_F(ServerLifecycleTest, ClientCancelMidDecodeFreesEveryBlock) {
  gate_.HoldWhen(InDecode);
  grpc::ClientContext context;
  SetBackstop(context);
  StreamResult result;
  std::jthread client([&] {
    auto stub = Stub();
    result = RunStream(*stub, Named("cancel-decode", 40, 200), &context);
  });
  ASSERT_TRUE(gate_.WaitUntilHeld());
  context.TryCancel();
  client.join();
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::CANCELLED);
  ASSERT_TRUE(gate_.StepUntilFinished("cancel-decode"));
  const auto finished = gate_.finished("cancel-decode");
  ASSERT_TRUE(finished.has_value());
  EXPECT_EQ(finished->status.code(), absl::StatusCode::kCancelled);
  EXPECT_THAT(std::string(finished->status.message()), HasSubstr("while decoding"));
  EXPECT_GE(finished->tokens, 2u);
  EXPECT_LT(finished->tokens, 200u);
  gate_.Release();
  ExpectPoolFreeAndServing();
}

TEST_F(ServerLifecycleTest, DeadlineMidPrefillEndsTheCallAndFreesEveryBlock) {
  gate_.HoldWhen(InPrefill);
  grpc::Status status;
  std::jthread client([&] {
    auto stub = Stub();
    grpc::ClientContext context;
    // Long enough to reach the held step under TSan (channel set-up and prefill included; 300 ms
    // was not, once); the held worker makes the deadline pass there however long it is. The
    // deadline also ends the call when an ASSERT returns early, so the jthread's join cannot hang.
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    v1::GenerateResponse response;
    status = stub->Generate(&context, Named("deadline-prefill", kLongPrompt, 20), &response);
  });
  ASSERT_TRUE(gate_.WaitUntilHeld());
  client.join();  // the worker is held: the deadline passes mid-prefill
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  ASSERT_TRUE(gate_.StepUntilFinished("deadline-prefill"));
  const auto finished = gate_.finished("deadline-prefill");
  ASSERT_TRUE(finished.has_value());
  // gRPC cancels the call at its deadline; the reactor leaves that to the scheduler, which ends
  // the request as DEADLINE_EXCEEDED (a failure), not CANCELLED (an abort).
  EXPECT_EQ(finished->status.code(), absl::StatusCode::kDeadlineExceeded) << finished->status;
  EXPECT_THAT(std::string(finished->status.message()), HasSubstr("while prefilling"));
  gate_.Release();
  ExpectPoolFreeAndServing();
}

TEST_F(ServerLifecycleTest, DeadlineMidDecodeEndsTheCallAndFreesEveryBlock) {
  gate_.HoldWhen(InDecode);
  grpc::Status status;
  std::jthread client([&] {
    auto stub = Stub();
    grpc::ClientContext context;
    // Long enough to reach the held step under TSan (channel set-up and prefill included; 300 ms
    // was not, once); the held worker makes the deadline pass there however long it is. The
    // deadline also ends the call when an ASSERT returns early, so the jthread's join cannot hang.
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    v1::GenerateResponse response;
    status = stub->Generate(&context, Named("deadline-decode", 30, 200), &response);
  });
  ASSERT_TRUE(gate_.WaitUntilHeld());
  client.join();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  ASSERT_TRUE(gate_.StepUntilFinished("deadline-decode"));
  const auto finished = gate_.finished("deadline-decode");
  ASSERT_TRUE(finished.has_value());
  EXPECT_EQ(finished->status.code(), absl::StatusCode::kDeadlineExceeded) << finished->status;
  EXPECT_THAT(std::string(finished->status.message()), HasSubstr("while decoding"));
  gate_.Release();
  ExpectPoolFreeAndServing();
}

TEST_F(ServerLifecycleTest, AbortMidPrefillEndsTheStreamWithFinishReasonAborted) {
  gate_.HoldWhen(InPrefill);
  grpc::ClientContext context;
  SetBackstop(context);
  StreamResult result;
  std::jthread client([&] {
    auto stub = Stub();
    result = RunStream(*stub, Named("abort-prefill", kLongPrompt, 20), &context);
  });
  ASSERT_TRUE(gate_.WaitUntilHeld());
  auto stub = Stub();
  {
    grpc::ClientContext abort_context;
    v1::AbortRequest abort;
    abort.set_request_id("abort-prefill");
    v1::AbortResponse response;
    ASSERT_TRUE(stub->Abort(&abort_context, abort, &response).ok());
    EXPECT_TRUE(response.found());
  }
  ASSERT_TRUE(gate_.StepUntilFinished("abort-prefill", std::chrono::milliseconds(0)));
  client.join();
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  ASSERT_TRUE(result.complete.has_value());
  EXPECT_EQ(result.complete->finish_reason(), v1::FINISH_REASON_ABORTED);
  EXPECT_EQ(result.complete->token_ids_size(), 0);
  EXPECT_EQ(result.complete->usage().prompt_tokens(), kLongPrompt);
  EXPECT_FALSE(result.complete->kv_stats().compressed());
  EXPECT_THAT(std::string(gate_.finished("abort-prefill")->status.message()),
              HasSubstr("while prefilling"));
  gate_.Release();

  grpc::ClientContext unknown_context;
  v1::AbortRequest unknown;
  unknown.set_request_id("abort-prefill");  // finished: no longer live
  v1::AbortResponse response;
  ASSERT_TRUE(stub->Abort(&unknown_context, unknown, &response).ok());
  EXPECT_FALSE(response.found());
  ExpectPoolFreeAndServing();
}

TEST_F(ServerLifecycleTest, AbortMidDecodeReturnsTheTokensSoFar) {
  gate_.HoldWhen(InDecode);
  grpc::Status status;
  v1::GenerateResponse response;
  std::jthread client([&] {
    auto stub = Stub();
    grpc::ClientContext context;
    SetBackstop(context);
    status = stub->Generate(&context, Named("abort-decode", 30, 200), &response);
  });
  ASSERT_TRUE(gate_.WaitUntilHeld());
  auto stub = Stub();
  grpc::ClientContext abort_context;
  v1::AbortRequest abort;
  abort.set_request_id("abort-decode");
  v1::AbortResponse aborted;
  ASSERT_TRUE(stub->Abort(&abort_context, abort, &aborted).ok());
  EXPECT_TRUE(aborted.found());
  ASSERT_TRUE(gate_.StepUntilFinished("abort-decode", std::chrono::milliseconds(0)));
  client.join();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.finish_reason(), v1::FINISH_REASON_ABORTED);
  EXPECT_GE(response.token_ids_size(), 2);
  EXPECT_LT(response.token_ids_size(), 200);
  EXPECT_EQ(response.usage().completion_tokens(), static_cast<uint32_t>(response.token_ids_size()));
  EXPECT_EQ(response.kv_stats().prompt_tokens(), 30);
  gate_.Release();
  ExpectPoolFreeAndServing();
}

class ServerQueueTest : public ServerLifecycleTest {
 protected:
  void SetUp() override {
    ServerOptions options = TestServerOptions();
    options.max_running = 1;
    options.max_waiting = 2;
    StartWith(std::move(options));
  }
};

TEST_F(ServerQueueTest, FullQueueIsResourceExhaustedAndDuplicateIdsAreRefused) {
  gate_.HoldWhen([](const IterationMetrics&) { return true; });
  std::vector<grpc::Status> statuses(3);
  std::vector<std::jthread> clients;
  clients.emplace_back([&] {
    auto stub = Stub();
    grpc::ClientContext context;
    SetBackstop(context);
    v1::GenerateResponse response;
    statuses[0] = stub->Generate(&context, Named("running", 20, 4), &response);
  });
  ASSERT_TRUE(gate_.WaitUntilHeld());  // "running" was admitted; the worker is held
  for (int i = 1; i <= 2; ++i) {
    clients.emplace_back([&, i] {
      auto stub = Stub();
      grpc::ClientContext context;
      SetBackstop(context);
      v1::GenerateResponse response;
      statuses[i] =
          stub->Generate(&context, Named("waiting-" + std::to_string(i), 20, 4), &response);
    });
  }
  while (server_->scheduler()->Load().waiting < 2)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));

  auto stub = Stub();
  {
    grpc::ClientContext context;
    v1::GenerateResponse response;
    const grpc::Status status = stub->Generate(&context, Named("one-too-many", 20, 4), &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_THAT(status.error_message(), HasSubstr("waiting queue is full (2 requests)"));
  }
  {
    grpc::ClientContext context;
    const StreamResult stream = RunStream(*stub, Named("running", 20, 4), &context);
    EXPECT_EQ(stream.status.error_code(), grpc::StatusCode::ALREADY_EXISTS);
    EXPECT_THAT(stream.status.error_message(), HasSubstr("request_id running is already in use"));
  }
  gate_.Release();
  for (std::jthread& t : clients) t.join();
  for (const grpc::Status& status : statuses) EXPECT_TRUE(status.ok()) << status.error_message();
  ExpectPoolFreeAndServing();
}

TEST_F(ServerLifecycleTest, DrainRefusesNewRequestsStaysLiveAndLetsRunningOnesFinish) {
  gate_.HoldWhen(InDecode);
  grpc::ClientContext context;
  SetBackstop(context);
  StreamResult result;
  std::jthread client([&] {
    auto stub = Stub();
    result = RunStream(*stub, Named("finishes", 20, 8), &context);
  });
  ASSERT_TRUE(gate_.WaitUntilHeld());

  int aborted = -1;
  std::jthread drainer([&] { aborted = server_->Drain(std::chrono::seconds(30)); });
  while (HealthCheck(server_->port(), kEngineServiceName).value_or(-1) != 2) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  // Not ready, but alive: "" stays SERVING so that the liveness probe leaves a draining pod be.
  EXPECT_EQ(HealthCheck(server_->port(), "").value_or(-1), 1);
  auto stub = Stub();
  {
    grpc::ClientContext refused;
    v1::GenerateResponse response;
    const grpc::Status status = stub->Generate(&refused, GreedyRequest({5, 6}, 2), &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_THAT(status.error_message(), HasSubstr("draining"));
    grpc::ClientContext info_context;
    v1::GetServerInfoResponse info;
    ASSERT_TRUE(stub->GetServerInfo(&info_context, {}, &info).ok());
    EXPECT_EQ(info.state(), v1::SERVER_STATE_DRAINING);
    EXPECT_EQ(info.num_requests_running(), 1);
  }
  gate_.Release();
  client.join();
  drainer.join();
  EXPECT_EQ(aborted, 0);
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.chunk_tokens.size(), 8u);
  ASSERT_TRUE(result.complete.has_value());
  EXPECT_EQ(result.complete->finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_TRUE(WaitForIdlePool(*server_));
}

TEST_F(ServerLifecycleTest, DrainTimeoutCutsOffRequestsStillRunning) {
  gate_.HoldWhen(InDecode);
  grpc::Status status;
  std::jthread client([&] {
    auto stub = Stub();
    grpc::ClientContext context;
    SetBackstop(context);
    v1::GenerateResponse response;
    status = stub->Generate(&context, Named("cut-off", 20, 300), &response);
  });
  ASSERT_TRUE(gate_.WaitUntilHeld());
  int aborted = -1;
  std::jthread drainer([&] { aborted = server_->Drain(std::chrono::milliseconds(50)); });
  // The drain times out while the worker is held; once let go, the worker aborts what is left.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  gate_.Release();
  drainer.join();
  client.join();
  EXPECT_EQ(aborted, 1);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("drain timeout"));
  EXPECT_TRUE(WaitForIdlePool(*server_));
}

}  // namespace
}  // namespace zigzag::testing
