#include "server/engine_service.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/generate_reactors.h"
#include "server/grpc_status.h"
#include "server/log_text.h"
#include "server/request_id.h"
#include "server/request_validation.h"
#include "server/response_conversion.h"
#include "server/tokenizer_calls.h"
#include "spdlog/spdlog.h"

#ifndef ZIGZAG_VERSION
#define ZIGZAG_VERSION "dev"
#endif

namespace zigzag {
namespace {

grpc::ServerUnaryReactor* FinishNow(grpc::CallbackServerContext* context,
                                    const grpc::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

grpc::Status QueueFull(const TokenizerPool& pool) {
  return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                      absl::StrCat("the tokenizer queue is full (", pool.queue_capacity(),
                                   " texts waiting); retry later"));
}

grpc::Status CancelledWhileQueued() {
  return grpc::Status(grpc::StatusCode::CANCELLED,
                      "the call was cancelled while its text waited for the tokenizer");
}

}  // namespace

EngineService::EngineService(EngineServiceOptions options)
    : options_(std::move(options)),
      auth_(options_.auth_token),
      started_(std::chrono::steady_clock::now()) {}

void EngineService::AttachEngine(const EngineHandles* engine) { engine_.store(engine); }

void EngineService::BeginDrain() { draining_.store(true); }

v1::ServerState EngineService::state() const {
  if (draining_.load()) return v1::SERVER_STATE_DRAINING;
  return engine_.load() == nullptr ? v1::SERVER_STATE_LOADING : v1::SERVER_STATE_SERVING;
}

grpc::Status EngineService::Admit(const grpc::CallbackServerContext& context, bool for_generation,
                                  const EngineHandles** engine) const {
  grpc::Status status = auth_.Check(context);
  if (!status.ok()) return status;
  if (for_generation && draining_.load()) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "the server is draining and accepts no new requests; retry elsewhere");
  }
  *engine = engine_.load();
  if (*engine == nullptr) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the model is still loading");
  }
  return grpc::Status::OK;
}

grpc::Status EngineService::AdmitGeneration(const grpc::CallbackServerContext& context,
                                            const v1::GenerateRequest& request,
                                            const EngineHandles** engine) const {
  grpc::Status status = Admit(context, /*for_generation=*/true, engine);
  if (!status.ok()) return status;
  return ToGrpcStatus(CheckRequestBounds(request, (*engine)->limits));
}

grpc::Status EngineService::AdmitWithTokenizer(const grpc::CallbackServerContext& context,
                                               const char* rpc,
                                               const EngineHandles** engine) const {
  grpc::Status status = Admit(context, /*for_generation=*/false, engine);
  if (!status.ok()) return status;
  if ((*engine)->tokenizer == nullptr) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        absl::StrCat(rpc,
                                     " needs a tokenizer, and this model folder has none (no "
                                     "tokenizer.json or tokenizer.model)"));
  }
  return grpc::Status::OK;
}

template <typename Reactor>
void EngineService::ConvertAndStartNow(const v1::GenerateRequest& request,
                                       const EngineHandles& engine, Reactor* reactor) {
  absl::StatusOr<ConvertedRequest> converted =
      ToEngineRequest(request, options_.defaults, engine.config, engine.tokenizer);
  if (!converted.ok()) {
    spdlog::debug("request {} refused: {}", ForLog(request.request_id()),
                  ForLog(converted.status().message(), 512));
    reactor->Refuse(ToGrpcStatus(converted.status()));
    return;
  }
  if (converted->request.request_id.empty()) {
    absl::StatusOr<std::string> id = NewRequestId();
    if (!id.ok()) {
      spdlog::error("{}", id.status().ToString());
      reactor->Refuse(ToGrpcStatus(id.status()));
      return;
    }
    converted->request.request_id = *std::move(id);
  }
  reactor->Start(*std::move(converted));
}

template <typename Reactor>
void EngineService::ConvertAndStart(const v1::GenerateRequest& request, const EngineHandles& engine,
                                    Reactor* reactor) {
  // Token ids (checked against the context already) convert in time linear in that bound, here;
  // text goes to the pool. The job may use `request` and `reactor` until it finishes the call:
  // gRPC keeps both until then.
  if (request.input_case() != v1::GenerateRequest::kText || engine.tokenizer == nullptr) {
    ConvertAndStartNow(request, engine, reactor);
    return;
  }
  const bool queued = engine.tokenizer_pool->TrySubmit([this, &request, &engine, reactor] {
    if (reactor->cancelled()) {
      if (CancelledByDeadline(reactor->deadline())) {
        // A deadline failure like any other (DESIGN: deadlines are failures), though the
        // request never reached the scheduler.
        engine.scheduler->CountDeadlineExceededBeforeSubmit();
        reactor->Refuse(
            grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                         "the deadline passed while the text waited for the tokenizer"));
      } else {
        reactor->Refuse(CancelledWhileQueued());
      }
      return;
    }
    ConvertAndStartNow(request, engine, reactor);
  });
  if (!queued) reactor->Refuse(QueueFull(*engine.tokenizer_pool));
}

grpc::ServerUnaryReactor* EngineService::FinishOnTokenizerPool(const EngineHandles& engine,
                                                               grpc::CallbackServerContext* context,
                                                               std::function<grpc::Status()> work) {
  // DefaultReactor() sets up a new reactor on every call: once only.
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const bool queued = engine.tokenizer_pool->TrySubmit([context, reactor, work = std::move(work)] {
    reactor->Finish(context->IsCancelled() ? CancelledWhileQueued() : work());
  });
  if (!queued) reactor->Finish(QueueFull(*engine.tokenizer_pool));
  return reactor;
}

grpc::ServerUnaryReactor* EngineService::Generate(grpc::CallbackServerContext* context,
                                                  const v1::GenerateRequest* request,
                                                  v1::GenerateResponse* response) {
  const EngineHandles* engine = nullptr;
  const grpc::Status status = AdmitGeneration(*context, *request, &engine);
  if (!status.ok()) return FinishNow(context, status);
  auto* reactor =
      new UnaryGenerateReactor(engine->scheduler, response, SchedulerDeadline(*context));
  ConvertAndStart(*request, *engine, reactor);
  return reactor;
}

grpc::ServerWriteReactor<v1::GenerateStreamResponse>* EngineService::GenerateStream(
    grpc::CallbackServerContext* context, const v1::GenerateRequest* request) {
  const EngineHandles* engine = nullptr;
  const grpc::Status status = AdmitGeneration(*context, *request, &engine);
  if (!status.ok()) return new FailedStreamReactor(status);
  auto* reactor = new StreamGenerateReactor(engine->scheduler, SchedulerDeadline(*context));
  ConvertAndStart(*request, *engine, reactor);
  return reactor;
}

grpc::ServerUnaryReactor* EngineService::Abort(grpc::CallbackServerContext* context,
                                               const v1::AbortRequest* request,
                                               v1::AbortResponse* response) {
  const EngineHandles* engine = nullptr;
  const grpc::Status status = Admit(*context, /*for_generation=*/false, &engine);
  if (!status.ok()) return FinishNow(context, status);
  if (request->request_id().empty()) {
    return FinishNow(context,
                     grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "request_id is empty"));
  }
  if (absl::Status valid = ValidateRequestId(request->request_id(), "request_id"); !valid.ok()) {
    return FinishNow(context, ToGrpcStatus(valid));
  }
  response->set_found(engine->scheduler->Abort(request->request_id()));
  return FinishNow(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* EngineService::Tokenize(grpc::CallbackServerContext* context,
                                                  const v1::TokenizeRequest* request,
                                                  v1::TokenizeResponse* response) {
  const EngineHandles* engine = nullptr;
  grpc::Status status = AdmitWithTokenizer(*context, "Tokenize", &engine);
  if (status.ok()) {
    status = ToGrpcStatus(CheckTextBytes(request->text(), engine->limits.max_text_bytes, "text"));
  }
  if (!status.ok()) return FinishNow(context, status);
  return FinishOnTokenizerPool(*engine, context, [engine, request, response] {
    absl::StatusOr<std::vector<int32_t>> ids =
        EncodeField(*engine->tokenizer, request->text(), request->add_special_tokens(), "text");
    if (!ids.ok()) return ToGrpcStatus(ids.status());
    response->mutable_token_ids()->Add(ids->begin(), ids->end());
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* EngineService::Detokenize(grpc::CallbackServerContext* context,
                                                    const v1::DetokenizeRequest* request,
                                                    v1::DetokenizeResponse* response) {
  const EngineHandles* engine = nullptr;
  grpc::Status status = AdmitWithTokenizer(*context, "Detokenize", &engine);
  if (status.ok() && request->token_ids_size() > engine->limits.max_prompt_tokens) {
    status = grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        absl::StrCat("token_ids has ", request->token_ids_size(), " ids; at most ",
                     engine->limits.max_prompt_tokens, " (the model's context) are accepted"));
  }
  if (!status.ok()) return FinishNow(context, status);
  return FinishOnTokenizerPool(*engine, context, [engine, request, response] {
    const std::vector<int32_t> ids(request->token_ids().begin(), request->token_ids().end());
    absl::StatusOr<std::string> text =
        DecodeField(*engine->tokenizer, ids, request->skip_special_tokens(), "token_ids");
    if (!text.ok()) return ToGrpcStatus(text.status());
    response->set_text(*std::move(text));
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* EngineService::GetModelInfo(grpc::CallbackServerContext* context,
                                                      const v1::GetModelInfoRequest* request,
                                                      v1::GetModelInfoResponse* response) {
  (void)request;
  const EngineHandles* engine = nullptr;
  const grpc::Status status = Admit(*context, /*for_generation=*/false, &engine);
  if (!status.ok()) return FinishNow(context, status);
  const ModelConfig& config = engine->config;
  response->set_model_name(options_.model_name);
  response->set_architecture(config.architecture);
  response->set_model_type(config.model_type);
  response->set_vocab_size(config.vocab_size);
  response->set_num_layers(config.num_layers);
  response->set_hidden_size(config.hidden_size);
  response->set_num_heads(config.num_heads);
  response->set_num_kv_heads(config.num_kv_heads);
  response->set_head_dim(config.head_dim);
  response->set_max_context(config.max_context());
  if (config.bos_token_id.has_value()) response->set_bos_token_id(*config.bos_token_id);
  response->mutable_eos_token_ids()->Add(config.eos_token_ids.begin(), config.eos_token_ids.end());
  response->set_tokenizer(engine->tokenizer_file);
  response->set_backend(engine->backend_name);
  response->set_kv_dtype(DTypeName(engine->kv_layout.dtype));
  response->set_kv_block_size(static_cast<uint32_t>(engine->kv_layout.block_size));
  response->set_kv_bytes_per_block(engine->kv_layout.bytes_per_block());
  response->set_kv_num_blocks(engine->kv_num_blocks);
  ToProtoCompression(options_.defaults.compression, response->mutable_default_kv_compression());
  response->set_default_max_tokens(static_cast<uint32_t>(options_.defaults.default_max_tokens));
  response->set_max_tokens_limit(static_cast<uint32_t>(options_.defaults.max_tokens_limit));
  return FinishNow(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* EngineService::GetServerInfo(grpc::CallbackServerContext* context,
                                                       const v1::GetServerInfoRequest* request,
                                                       v1::GetServerInfoResponse* response) {
  (void)request;
  const grpc::Status status = auth_.Check(*context);
  if (!status.ok()) return FinishNow(context, status);
  response->set_version(ZIGZAG_VERSION);
  response->set_state(state());
  response->set_max_running(options_.max_running);
  response->set_max_waiting(options_.max_waiting);
  response->set_uptime_seconds(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count());
  const EngineHandles* engine = engine_.load();
  if (engine != nullptr) {
    const SchedulerLoad load = engine->scheduler->Load();
    const SchedulerCounters& c = load.counters;
    response->set_num_requests_running(load.running);
    response->set_num_requests_waiting(load.waiting);
    response->set_kv_blocks_used(load.kv_blocks_used);
    response->set_kv_blocks_free(load.kv_blocks_free);
    response->set_kv_blocks_total(load.kv_blocks_total);
    response->set_kv_cache_usage_ratio(load.kv_usage_ratio());
    response->set_prompt_tokens_total(c.prompt_tokens);
    response->set_generation_tokens_total(c.generation_tokens);
    response->set_num_preemptions_total(c.preemptions);
    response->set_kv_bytes_saved_total(c.kv_saved_bytes);
    response->set_requests_finished_total(c.finished_length + c.finished_stop + c.finished_eos);
    response->set_requests_aborted_total(c.cancelled);
    response->set_requests_failed_total(c.deadline_exceeded + c.unavailable + c.failed);
  }
  return FinishNow(context, grpc::Status::OK);
}

}  // namespace zigzag
