// ZigzagServer: one serving process put together: the gRPC server (Engine service, grpc.health.v1,
// reflection, TLS, message-size, connection and idle limits), the Prometheus endpoint, the
// liveness self-check, and, once loaded, the backend, model, tokenizer pool, KV cache and
// Scheduler. It drives the life cycle: listening while the model loads (health: "" SERVING,
// "zigzag.v1.Engine" NOT_SERVING), serving, draining ("zigzag.v1.Engine" NOT_SERVING, new requests
// UNAVAILABLE, running ones finish; "" stays SERVING, since a draining server is alive), shut
// down. "" turns NOT_SERVING only when the self-check finds the gRPC port no longer accepts.
// Signals and process limits are main()'s business.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "core/kv/kv_cache.h"
#include "core/model/llama_model.h"
#include "core/scheduler/scheduler.h"
#include "core/tokenizer/tokenizer.h"
#include "grpcpp/server.h"
#include "kernels/backend.h"
#include "server/connection_acceptor.h"
#include "server/engine_service.h"
#include "server/liveness_self_check.h"
#include "server/metrics.h"
#include "server/server_options.h"
#include "server/tokenizer_pool.h"

namespace zigzag {

// The health-checking service name that means "ready to generate".
inline constexpr char kEngineServiceName[] = "zigzag.v1.Engine";

// InvalidArgument naming the option (as its flag) for options the server cannot run with.
absl::Status ValidateServerOptions(const ServerOptions& options);

class ZigzagServer {
 public:
  // Validates the options and starts listening (gRPC and, when enabled, /metrics). Generation
  // answers UNAVAILABLE until LoadModel() succeeds. Unavailable when a port cannot be bound or
  // a TLS file cannot be read.
  static absl::StatusOr<std::unique_ptr<ZigzagServer>> Start(ServerOptions options);
  ~ZigzagServer();  // Shutdown()
  ZigzagServer(const ZigzagServer&) = delete;
  ZigzagServer& operator=(const ZigzagServer&) = delete;

  // Creates the backend, loads the model, allocates the KV cache, starts the scheduler and
  // marks the server ready. Once only.
  absl::Status LoadModel();

  // Health "zigzag.v1.Engine" NOT_SERVING and new generation refused with UNAVAILABLE; returns
  // at once.
  void BeginDrain();
  // BeginDrain, then waits up to `timeout` for the requests in flight; the rest end with
  // UNAVAILABLE. Returns how many were cut off that way.
  int Drain(std::chrono::milliseconds timeout);
  // Stops the gRPC server, /metrics and the scheduler (requests still live end UNAVAILABLE).
  // Idempotent.
  void Shutdown();

  int port() const { return port_; }  // the bound gRPC port (useful with port 0)
  // The self-check's verdict (health ""); true when the self-check is off.
  bool live() const { return self_check_ == nullptr || self_check_->alive(); }
  // The connection cap in force (--max-connections, lowered to fit the open-file limit), and the
  // plaintext listener; null with TLS.
  int max_connections() const { return max_connections_; }
  ConnectionAcceptor* acceptor() { return acceptor_.get(); }
  int metrics_port() const { return metrics_->http_port(); }
  const std::string& model_name() const { return model_name_; }
  const ServerOptions& options() const { return options_; }
  ServerMetrics& metrics() { return *metrics_; }
  // Null until LoadModel() succeeded.
  Scheduler* scheduler() { return scheduler_.get(); }
  const KvCache* kv_cache() const { return cache_.get(); }
  TokenizerPool* tokenizer_pool() { return tokenizer_pool_.get(); }
  const LlamaModel* model() const { return model_.get(); }

 private:
  class FanOutObserver;

  explicit ZigzagServer(ServerOptions options);
  absl::Status StartGrpc();
  void StartSelfCheck();

  const ServerOptions options_;
  const std::string model_name_;
  std::unique_ptr<ServerMetrics> metrics_;
  std::unique_ptr<FanOutObserver> observer_;
  std::unique_ptr<EngineService> service_;
  std::unique_ptr<ConnectionAcceptor> acceptor_;  // plaintext only
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<LivenessSelfCheck> self_check_;
  int port_ = 0;
  int max_connections_ = 0;

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  // Created before the engine is attached, stopped after the gRPC server: its jobs finish calls.
  std::unique_ptr<TokenizerPool> tokenizer_pool_;
  std::unique_ptr<KvCache> cache_;
  std::unique_ptr<Scheduler> scheduler_;
  EngineHandles handles_;
  // scheduler_ once started, for BeginDrain, which may run while LoadModel does.
  std::atomic<Scheduler*> running_scheduler_{nullptr};

  std::mutex lifecycle_mu_;  // serialises LoadModel, Drain and Shutdown
  bool loading_started_ = false;
  bool shut_down_ = false;
};

}  // namespace zigzag
