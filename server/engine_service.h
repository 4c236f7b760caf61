// EngineService: zigzag.v1.Engine on gRPC's callback API. It authenticates each call, refuses
// work while the model loads or the server drains (UNAVAILABLE), validates requests
// (request_validation.h) and hands generation to the reactors (generate_reactors.h). It owns no
// engine state: ZigzagServer attaches the loaded engine and drives draining.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

#include "core/kv/kv_cache.h"
#include "core/model/model_config.h"
#include "core/scheduler/scheduler.h"
#include "core/tokenizer/tokenizer.h"
#include "server/auth.h"
#include "server/request_validation.h"
#include "server/server_options.h"
#include "zigzag/v1/engine.grpc.pb.h"

namespace zigzag {

// What the service uses of a loaded engine; must outlive the service's calls.
struct EngineHandles {
  Scheduler* scheduler = nullptr;
  ModelConfig config;
  KvLayout kv_layout;
  int32_t kv_num_blocks = 0;
  std::string backend_name;
  const Tokenizer* tokenizer = nullptr;  // null when the model folder has none
  std::string tokenizer_file;            // "tokenizer.json", "tokenizer.model" or ""
};

struct EngineServiceOptions {
  std::string model_name;
  RequestDefaults defaults;
  std::string auth_token;  // empty = no authentication
  int32_t max_running = 0;
  int32_t max_waiting = 0;
};

class EngineService final : public v1::Engine::CallbackService {
 public:
  explicit EngineService(EngineServiceOptions options);

  // Starts serving generation with `engine` (once; it must outlive the service's calls).
  void AttachEngine(const EngineHandles* engine);
  // From now on Generate and GenerateStream answer UNAVAILABLE.
  void BeginDrain();
  v1::ServerState state() const;

  grpc::ServerUnaryReactor* Generate(grpc::CallbackServerContext* context,
                                     const v1::GenerateRequest* request,
                                     v1::GenerateResponse* response) override;
  grpc::ServerWriteReactor<v1::GenerateStreamResponse>* GenerateStream(
      grpc::CallbackServerContext* context, const v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* Abort(grpc::CallbackServerContext* context,
                                  const v1::AbortRequest* request,
                                  v1::AbortResponse* response) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const v1::TokenizeRequest* request,
                                     v1::TokenizeResponse* response) override;
  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* context,
                                       const v1::DetokenizeRequest* request,
                                       v1::DetokenizeResponse* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const v1::GetModelInfoRequest* request,
                                         v1::GetModelInfoResponse* response) override;
  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* context,
                                          const v1::GetServerInfoRequest* request,
                                          v1::GetServerInfoResponse* response) override;

 private:
  // Authentication, then the engine when it is loaded (and, for generation, not draining).
  grpc::Status Admit(const grpc::CallbackServerContext& context, bool for_generation,
                     const EngineHandles** engine) const;
  // The validated request with its id and deadline, or the status that refuses it.
  grpc::Status PrepareRequest(const grpc::CallbackServerContext& context,
                              const v1::GenerateRequest& request, const EngineHandles** engine,
                              ConvertedRequest* out);
  // Admit (not for generation), then the engine's tokenizer or FAILED_PRECONDITION.
  grpc::Status AdmitWithTokenizer(const grpc::CallbackServerContext& context, const char* rpc,
                                  const Tokenizer** tokenizer) const;
  std::string NewRequestId();

  const EngineServiceOptions options_;
  const BearerTokenAuth auth_;
  const std::chrono::steady_clock::time_point started_;
  const uint64_t id_prefix_;  // random per process, so ids differ across replicas and restarts
  std::atomic<uint64_t> next_id_{1};
  std::atomic<const EngineHandles*> engine_{nullptr};
  std::atomic<bool> draining_{false};
};

}  // namespace zigzag
