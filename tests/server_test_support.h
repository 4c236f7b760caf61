// Shared pieces of the server tests: a tiny generated checkpoint, a ZigzagServer started
// in-process on loopback ports chosen by the kernel, gRPC stubs, a gRPC health probe, an HTTP GET
// for /metrics and a parser for its text, the offline engine as reference (GenerateBatch), and
// WorkerGate, an observer that holds the scheduler's worker between iterations so that a test can
// act "mid-prefill" or "mid-decode" deterministically.
#pragma once

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/engine/generation.h"
#include "core/model/checkpoint_writer.h"
#include "core/scheduler/observer.h"
#include "grpcpp/grpcpp.h"
#include "server/zigzag_server.h"
#include "zigzag/v1/engine.grpc.pb.h"

namespace zigzag::testing {

inline constexpr std::chrono::seconds kServerHangGuard{60};

// 3 layers (so ZigZag's per-layer budgets differ), vocab 256, context 1024, seeded.
RandomCheckpointSpec ServerTestSpec();
// The checkpoint of ServerTestSpec(), written once per test binary.
const std::filesystem::path& ServerTestCheckpoint();

// Loopback, port 0, 1 CPU thread, block size 16, 4 MiB of KV, no /metrics endpoint, at most 256
// connections, no liveness self-check.
ServerOptions TestServerOptions();

// Start() + LoadModel(); a test failure (and nullptr) on error.
std::unique_ptr<ZigzagServer> StartServer(ServerOptions options);

std::shared_ptr<grpc::Channel> Connect(int port);
std::unique_ptr<v1::Engine::Stub> NewStub(int port);

// grpc.health.v1.Health/Check for `service` (generic call, hand-encoded messages):
// 1 = SERVING, 2 = NOT_SERVING, 3 = SERVICE_UNKNOWN; the call's error otherwise.
absl::StatusOr<int> HealthCheck(int port, const std::string& service);

// HTTP/1.0 GET http://127.0.0.1:port/path over a plain socket; the body (an error unless 200).
absl::StatusOr<std::string> HttpGet(int port, const std::string& path);
// The same GET's status code (200, 503, ...), or -1 when there is no HTTP answer.
int HttpStatus(int port, const std::string& path);
// The value of one sample in Prometheus text, e.g. Metric(text, "zigzag_kv_blocks_free",
// {{"model","m"}}) or with suffix "_count" / "_sum" on a histogram name; nullopt when absent.
std::optional<double> Metric(const std::string& text, const std::string& name,
                             const std::vector<std::pair<std::string, std::string>>& labels);

// A greedy request for `prompt` (ignore_eos, so it runs max_tokens).
v1::GenerateRequest GreedyRequest(const std::vector<int32_t>& prompt, uint32_t max_tokens);
// Ids in [3, vocab): never BOS/EOS.
std::vector<int32_t> RandomPrompt(size_t length, uint64_t seed);

// Streams the request and collects what came: chunks' tokens and the final message.
struct StreamResult {
  grpc::Status status;
  std::vector<int32_t> chunk_tokens;
  std::vector<float> chunk_logprobs;
  int num_chunks = 0;
  std::optional<v1::GenerateResponse> complete;
};
StreamResult RunStream(v1::Engine::Stub& stub, const v1::GenerateRequest& request,
                       grpc::ClientContext* context);

// The offline engine on its own backend, model and cache (same checkpoint and block size as
// TestServerOptions): what the server's answers are checked against.
class EngineReference {
 public:
  EngineReference();
  GenerationResult Generate(const v1::GenerateRequest& request);
  const ModelConfig& config() const { return model_->config(); }

 private:
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<KvCache> cache_;
};

// Holds the worker thread inside OnIteration (after the iteration's work) while armed and the
// iteration matches, until the test steps or releases it. Also records finished outcomes.
class WorkerGate : public SchedulerObserver {
 public:
  using Predicate = std::function<bool(const IterationMetrics&)>;

  // Holds at every iteration that matches `when` from now on.
  void HoldWhen(Predicate when);
  // Blocks until the worker is held; false after the hang guard.
  bool WaitUntilHeld();
  // Lets the held iteration go (the next matching one is held again).
  void Step();
  // Disarms and lets the worker go.
  void Release();
  // Steps the worker, pausing `pause` before each step (time for a cancel to reach the server),
  // until `request_id` finished; false after the hang guard.
  bool StepUntilFinished(const std::string& request_id,
                         std::chrono::milliseconds pause = std::chrono::milliseconds(20));

  // Outcomes seen through OnRequestFinished (status code and message, tokens) by request id.
  struct Finished {
    absl::Status status;
    size_t tokens = 0;
  };
  std::optional<Finished> finished(const std::string& request_id) const;
  // Blocks until `request_id` finished; false after the hang guard.
  bool WaitFinished(const std::string& request_id);

  void OnIteration(const IterationMetrics& metrics) override;
  void OnRequestFinished(const std::string& request_id, const RequestOutcome& outcome,
                         std::span<const double> inter_token_seconds) override;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  Predicate when_;
  bool held_ = false;
  uint64_t steps_ = 0;
  bool FinishedLocked(const std::string& request_id) const;

  std::vector<std::pair<std::string, Finished>> finished_;
};

// Polls `condition` every 5 ms until it holds (true) or `within` has passed (false).
bool WaitUntil(const std::function<bool()>& condition,
               std::chrono::milliseconds within = kServerHangGuard);

// Polls until the scheduler has nothing running or waiting and every block is free.
bool WaitForIdlePool(ZigzagServer& server);

}  // namespace zigzag::testing
