// The gRPC callback reactors of Generate (unary) and GenerateStream (server streaming): each
// submits one EngineRequest to the Scheduler and turns its callbacks (on the worker thread) into
// writes and the call's final status. A reactor is created on gRPC's thread and started (or
// refused) later, possibly from the tokenizer pool: gRPC cannot be done with it before then, since
// its call is not finished. A client cancel aborts the request in the scheduler; a passed
// deadline is left to the scheduler, which ends the request DEADLINE_EXCEEDED (a failure, not an
// abort); an Abort() RPC ends the call with OK and FINISH_REASON_ABORTED. Validation is the
// service's job; each reactor deletes itself when gRPC is done with it.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/scheduler/request.h"
#include "core/scheduler/scheduler.h"
#include "core/tokenizer/text_output.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/server_callback.h"
#include "server/request_validation.h"
#include "zigzag/v1/engine.pb.h"

namespace zigzag {

// The scheduler deadline for a call's gRPC deadline (none when the client set none).
std::optional<SteadyTime> SchedulerDeadline(const grpc::CallbackServerContext& context);

// True when a call cancelled now was cancelled by its deadline rather than by its client: the
// deadline is at most a few milliseconds away (gRPC's timer and our steady-clock copy of the
// deadline may differ by that much). A client cancel that close to the deadline counts as a
// deadline too.
bool CancelledByDeadline(const std::optional<SteadyTime>& deadline);

// The final status and response (when OK) for an outcome. `cancelled_by_client`: the call itself
// was cancelled (client cancel or deadline), as opposed to an Abort() RPC.
// `text` (may be null) gives the response its text.
grpc::Status FinalStatus(const std::string& request_id, const RequestOutcome& outcome,
                         bool cancelled_by_client, TextOutput* text,
                         v1::GenerateResponse* response);

// One log line per finished request: id, status, token counts, timings, policy, KV saved.
void LogFinishedRequest(const std::string& request_id, const RequestOutcome& outcome,
                        const grpc::Status& status);

class UnaryGenerateReactor final : public grpc::ServerUnaryReactor {
 public:
  // `deadline`: the call's (SchedulerDeadline), also set on the request Start submits.
  UnaryGenerateReactor(Scheduler* scheduler, v1::GenerateResponse* response,
                       std::optional<SteadyTime> deadline);

  // Exactly one of Start and Refuse, once, from any thread. Start submits the request (its
  // callbacks are set here; converted.text, when set, gives the response its text); when the
  // scheduler refuses it, the call ends at once with the scheduler's status. Refuse ends the call
  // with `status` without submitting anything. Neither may touch the reactor afterwards.
  void Start(ConvertedRequest converted);
  void Refuse(const grpc::Status& status) { Finish(status); }
  // The client cancelled the call or its deadline passed (so far).
  bool cancelled() const { return cancelled_.load(); }
  const std::optional<SteadyTime>& deadline() const { return deadline_; }

  void OnCancel() override;
  void OnDone() override { delete this; }

 private:
  void OnFinished(RequestOutcome outcome);  // worker thread

  Scheduler* const scheduler_;
  v1::GenerateResponse* const response_;
  const std::optional<SteadyTime> deadline_;
  std::shared_ptr<TextOutput> text_;  // set by Start before Submit; null without a tokenizer
  std::string request_id_;
  std::atomic<bool> submitted_{false};
  std::atomic<bool> finished_{false};
  std::atomic<bool> cancelled_{false};
};

class StreamGenerateReactor final : public grpc::ServerWriteReactor<v1::GenerateStreamResponse> {
 public:
  StreamGenerateReactor(Scheduler* scheduler, std::optional<SteadyTime> deadline);

  // As UnaryGenerateReactor's: exactly one of them, once, from any thread.
  void Start(ConvertedRequest converted);
  void Refuse(const grpc::Status& status);
  bool cancelled() const { return cancelled_.load(); }
  const std::optional<SteadyTime>& deadline() const { return deadline_; }

  void OnCancel() override;
  void OnWriteDone(bool ok) override;
  void OnDone() override { delete this; }

 private:
  void OnTokens(const TokenDelta& delta);   // worker thread
  void OnFinished(RequestOutcome outcome);  // worker thread
  void AbortInScheduler();
  // Starts the next write or the Finish when nothing is in flight; releases `lock` first.
  void Pump(std::unique_lock<std::mutex> lock);

  Scheduler* const scheduler_;
  const std::optional<SteadyTime> deadline_;
  std::shared_ptr<TextOutput> text_;  // set by Start before Submit
  std::string request_id_;
  std::atomic<bool> submitted_{false};
  std::atomic<bool> finished_{false};
  std::atomic<bool> cancelled_{false};

  std::mutex mu_;
  // Tokens not yet written; consecutive deltas are merged into one chunk while a write is busy.
  std::vector<int32_t> pending_tokens_;                 // guarded by mu_
  std::vector<float> pending_logprobs_;                 // guarded by mu_
  std::string pending_text_;                            // guarded by mu_
  std::optional<v1::GenerateStreamResponse> complete_;  // guarded by mu_
  std::optional<grpc::Status> final_status_;            // guarded by mu_
  bool write_in_flight_ = false;                        // guarded by mu_
  bool finish_called_ = false;                          // guarded by mu_
  bool broken_ = false;  // a write failed or the call was cancelled; guarded by mu_
  v1::GenerateStreamResponse in_flight_;  // the message being written
};

// A stream that ends at once with `status` (refused before anything was submitted).
class FailedStreamReactor final : public grpc::ServerWriteReactor<v1::GenerateStreamResponse> {
 public:
  explicit FailedStreamReactor(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace zigzag
