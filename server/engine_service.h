// EngineService: zigzag.v1.Engine on gRPC's callback API. It authenticates each call, refuses
// work while the model loads or the server drains (UNAVAILABLE), bounds and validates requests
// (request_validation.h), sends every text to the tokenizer pool (tokenizer_pool.h) so that no
// gRPC thread tokenizes, and hands generation to the reactors (generate_reactors.h). It owns no
// engine state: ZigzagServer attaches the loaded engine and drives draining.
//
// Abort is not scoped to the caller: anyone who may call the Engine (with auth on, any holder of
// the one bearer token, who is trusted alike) may abort any request whose id they know. Ids the
// server picks are 128 random bits (request_id.h), so only the caller and those it tells the id
// can name a request; a client that picks its own ids must make them as hard to guess.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "core/kv/kv_cache.h"
#include "core/model/model_config.h"
#include "core/scheduler/scheduler.h"
#include "core/tokenizer/tokenizer.h"
#include "server/auth.h"
#include "server/request_validation.h"
#include "server/server_options.h"
#include "server/tokenizer_pool.h"
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
  // Runs every Encode and Decode of client input; not null. Must keep running until the gRPC
  // server stopped (its jobs finish calls).
  TokenizerPool* tokenizer_pool = nullptr;
  RequestLimits limits;  // resolved for the loaded model
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
  // Admit for generation, then CheckRequestBounds: everything that is checked on gRPC's thread.
  grpc::Status AdmitGeneration(const grpc::CallbackServerContext& context,
                               const v1::GenerateRequest& request,
                               const EngineHandles** engine) const;
  // Admit (not for generation), then the engine's tokenizer or FAILED_PRECONDITION.
  grpc::Status AdmitWithTokenizer(const grpc::CallbackServerContext& context, const char* rpc,
                                  const EngineHandles** engine) const;
  // Converts the request (on the tokenizer pool when it has text to tokenize) and starts the
  // reactor with it, or refuses the call: RESOURCE_EXHAUSTED when the pool's queue is full,
  // CANCELLED when the call was cancelled while it waited, else the conversion's status.
  template <typename Reactor>
  void ConvertAndStart(const v1::GenerateRequest& request, const EngineHandles& engine,
                       Reactor* reactor);
  template <typename Reactor>
  void ConvertAndStartNow(const v1::GenerateRequest& request, const EngineHandles& engine,
                          Reactor* reactor);
  // The call's reactor, finished with the status of `work` run on the tokenizer pool (CANCELLED
  // without running it when the call was cancelled meanwhile; RESOURCE_EXHAUSTED when the queue
  // is full).
  grpc::ServerUnaryReactor* FinishOnTokenizerPool(const EngineHandles& engine,
                                                  grpc::CallbackServerContext* context,
                                                  std::function<grpc::Status()> work);

  const EngineServiceOptions options_;
  const BearerTokenAuth auth_;
  const std::chrono::steady_clock::time_point started_;
  std::atomic<const EngineHandles*> engine_{nullptr};
  std::atomic<bool> draining_{false};
};

}  // namespace zigzag
