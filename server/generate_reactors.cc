#include "server/generate_reactors.h"

#include <utility>

#include "core/engine/generation.h"
#include "server/grpc_status.h"
#include "server/log_text.h"
#include "server/response_conversion.h"
#include "spdlog/spdlog.h"

namespace zigzag {
namespace {

// How far ahead of our copy of the deadline gRPC's own deadline timer may fire.
constexpr std::chrono::milliseconds kDeadlineSlack{50};

}  // namespace

std::optional<SteadyTime> SchedulerDeadline(const grpc::CallbackServerContext& context) {
  const auto deadline = context.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return std::nullopt;
  const auto remaining = deadline - std::chrono::system_clock::now();
  return std::chrono::steady_clock::now() +
         std::chrono::duration_cast<std::chrono::steady_clock::duration>(remaining);
}

bool CancelledByDeadline(const std::optional<SteadyTime>& deadline) {
  return deadline.has_value() && std::chrono::steady_clock::now() + kDeadlineSlack >= *deadline;
}

grpc::Status FinalStatus(const std::string& request_id, const RequestOutcome& outcome,
                         bool cancelled_by_client, TextOutput* text,
                         v1::GenerateResponse* response) {
  if (outcome.status.ok()) {
    ToProtoResponse(request_id, outcome, response);
    if (text != nullptr) response->set_text(text->Finish());
    return grpc::Status::OK;
  }
  // CANCELLED from the scheduler means Abort(): either ours after the client went away (nobody
  // is listening any more) or an Abort() RPC, which is a normal end with what was produced.
  if (outcome.status.code() == absl::StatusCode::kCancelled && !cancelled_by_client) {
    ToProtoResponse(request_id, outcome, response);
    if (text != nullptr) response->set_text(text->Finish());
    response->set_finish_reason(v1::FINISH_REASON_ABORTED);
    return grpc::Status::OK;
  }
  return ToGrpcStatus(outcome.status);
}

void LogFinishedRequest(const std::string& request_id, const RequestOutcome& outcome,
                        const grpc::Status& status) {
  const RequestTimings& t = outcome.timings;
  const KvStats& kv = outcome.kv_stats;
  const char* finish = status.ok() && !outcome.status.ok() ? "aborted"
                       : status.ok()                       ? FinishReasonName(outcome.finish_reason)
                                                           : "-";
  spdlog::info(
      "request {} status={} finish={} prompt_tokens={} generated_tokens={} queue={:.3f}s "
      "prefill={:.3f}s decode={:.3f}s ttft={:.3f}s e2e={:.3f}s preemptions={} kv_policy={} "
      "kv_saved_bytes={} kv_retained_ratio={:.4f}",
      ForLog(request_id), status.ok() ? "OK" : GrpcCodeName(status.error_code()), finish,
      outcome.prompt_tokens, outcome.tokens.size(), t.queue_seconds, t.prefill_seconds,
      t.decode_seconds, t.ttft_seconds, t.e2e_seconds, outcome.num_preemptions,
      KvPolicyName(kv.params.policy), kv.saved_kv_bytes, kv.retained_ratio);
}

// UnaryGenerateReactor ---------------------------------------------------------------------------

UnaryGenerateReactor::UnaryGenerateReactor(Scheduler* scheduler, v1::GenerateResponse* response,
                                           std::optional<SteadyTime> deadline)
    : scheduler_(scheduler), response_(response), deadline_(deadline) {}

void UnaryGenerateReactor::Start(ConvertedRequest converted) {
  EngineRequest& request = converted.request;
  text_ = std::move(converted.text);
  request.deadline = deadline_;
  request_id_ = request.request_id;
  request.on_finish = [this](RequestOutcome outcome) { OnFinished(std::move(outcome)); };
  // Set before Submit: on_finish may run on the worker before Submit returns.
  submitted_.store(true);
  const absl::Status status = scheduler_->Submit(std::move(request));
  if (!status.ok()) {
    submitted_.store(false);
    Finish(ToGrpcStatus(status));
  }
}

void UnaryGenerateReactor::OnCancel() {
  cancelled_.store(true);
  // At its deadline the scheduler ends the request itself, as DEADLINE_EXCEEDED.
  if (CancelledByDeadline(deadline_)) return;
  if (submitted_.load() && !finished_.load()) scheduler_->Abort(request_id_);
}

void UnaryGenerateReactor::OnFinished(RequestOutcome outcome) {
  finished_.store(true);
  const grpc::Status status =
      FinalStatus(request_id_, outcome, cancelled_.load(), text_.get(), response_);
  LogFinishedRequest(request_id_, outcome, status);
  Finish(status);  // may delete this
}

// StreamGenerateReactor --------------------------------------------------------------------------

StreamGenerateReactor::StreamGenerateReactor(Scheduler* scheduler,
                                             std::optional<SteadyTime> deadline)
    : scheduler_(scheduler), deadline_(deadline) {}

void StreamGenerateReactor::Refuse(const grpc::Status& status) {
  std::unique_lock<std::mutex> lock(mu_);
  final_status_ = status;
  Pump(std::move(lock));
}

void StreamGenerateReactor::Start(ConvertedRequest converted) {
  EngineRequest& request = converted.request;
  text_ = std::move(converted.text);
  request.deadline = deadline_;
  request_id_ = request.request_id;
  request.on_tokens = [this](const TokenDelta& delta) { OnTokens(delta); };
  request.on_finish = [this](RequestOutcome outcome) { OnFinished(std::move(outcome)); };
  submitted_.store(true);
  const absl::Status status = scheduler_->Submit(std::move(request));
  if (!status.ok()) {
    submitted_.store(false);
    std::unique_lock<std::mutex> lock(mu_);
    final_status_ = ToGrpcStatus(status);
    Pump(std::move(lock));
  }
}

void StreamGenerateReactor::AbortInScheduler() {
  // At its deadline the scheduler ends the request itself, as DEADLINE_EXCEEDED.
  if (CancelledByDeadline(deadline_)) return;
  if (submitted_.load() && !finished_.load()) scheduler_->Abort(request_id_);
}

void StreamGenerateReactor::OnCancel() {
  cancelled_.store(true);
  {
    std::lock_guard<std::mutex> lock(mu_);
    broken_ = true;
  }
  AbortInScheduler();
}

void StreamGenerateReactor::OnTokens(const TokenDelta& delta) {
  std::unique_lock<std::mutex> lock(mu_);
  if (broken_) return;
  pending_tokens_.insert(pending_tokens_.end(), delta.tokens.begin(), delta.tokens.end());
  pending_logprobs_.insert(pending_logprobs_.end(), delta.logprobs.begin(), delta.logprobs.end());
  if (text_ != nullptr) pending_text_ += text_->TakeNewText();
  Pump(std::move(lock));
}

void StreamGenerateReactor::OnFinished(RequestOutcome outcome) {
  finished_.store(true);
  v1::GenerateStreamResponse complete;
  const grpc::Status status = FinalStatus(request_id_, outcome, cancelled_.load(), text_.get(),
                                          complete.mutable_complete());
  LogFinishedRequest(request_id_, outcome, status);
  std::unique_lock<std::mutex> lock(mu_);
  // Text held back until the end (a possible stop-string prefix, an incomplete character) goes
  // in one last chunk, so that the chunks' texts add up to the complete text.
  if (text_ != nullptr && status.ok() && !broken_) pending_text_ += text_->TakeNewText();
  if (status.ok()) complete_ = std::move(complete);
  final_status_ = status;
  Pump(std::move(lock));
}

void StreamGenerateReactor::OnWriteDone(bool ok) {
  std::unique_lock<std::mutex> lock(mu_);
  write_in_flight_ = false;
  if (!ok && !broken_) {
    // The client is gone (this can come before OnCancel): stop writing, and stop generating.
    cancelled_.store(true);
    broken_ = true;
    lock.unlock();
    AbortInScheduler();
    lock.lock();
  }
  Pump(std::move(lock));
}

void StreamGenerateReactor::Pump(std::unique_lock<std::mutex> lock) {
  if (write_in_flight_ || finish_called_) return;
  if (!broken_ && (!pending_tokens_.empty() || !pending_text_.empty())) {
    in_flight_.Clear();
    v1::StreamChunk* chunk = in_flight_.mutable_chunk();
    chunk->set_request_id(request_id_);
    chunk->mutable_token_ids()->Add(pending_tokens_.begin(), pending_tokens_.end());
    chunk->mutable_logprobs()->Add(pending_logprobs_.begin(), pending_logprobs_.end());
    chunk->set_text(std::move(pending_text_));
    pending_tokens_.clear();
    pending_logprobs_.clear();
    pending_text_.clear();
    write_in_flight_ = true;
    lock.unlock();
    StartWrite(&in_flight_);
    return;
  }
  if (!broken_ && complete_.has_value()) {
    in_flight_ = std::move(*complete_);
    complete_.reset();
    write_in_flight_ = true;
    lock.unlock();
    StartWrite(&in_flight_);
    return;
  }
  if (final_status_.has_value()) {
    finish_called_ = true;
    const grpc::Status status = *final_status_;
    lock.unlock();
    Finish(status);  // may delete this
  }
}

}  // namespace zigzag
