// Scheduler: continuous batching over one LlamaModel and its KvCache. One worker thread owns the
// model, the backend and the pool; each iteration it drops cancelled and expired requests, admits
// waiting ones first-come first-served while the pool can hold their prompt's full KV, runs ONE
// forward call with the next prefill chunk(s) and a decode token for every running sequence,
// compresses prompts that just finished, samples and streams tokens, and finishes requests.
// When a decode step finds no free block it preempts the most recently admitted sequence by
// recompute. It does not tokenize, speak gRPC or export metrics (server/ does, via Load() and
// SchedulerObserver).
//
// Threads: Submit, Abort, BeginDrain, Drain, Stop and Load may be called from any thread.
// Callbacks (on_tokens, on_finish, the observer) run on the worker thread with no scheduler lock
// held; they must be quick, may call Submit, Abort and Load, and must never call Drain or Stop
// (both wait for the worker).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/kv/kv_cache.h"
#include "core/model/llama_model.h"
#include "core/scheduler/observer.h"
#include "core/scheduler/request.h"
#include "core/scheduler/scheduled_sequence.h"

namespace zigzag {

struct SchedulerOptions {
  int32_t max_waiting = 256;  // Submit beyond this many queued requests: RESOURCE_EXHAUSTED
  int32_t max_running = 64;   // sequences admitted at once (prefilling or decoding)
  // Prompt tokens one iteration may prefill, across sequences; longer prompts are prefilled in
  // chunks over several iterations, next to the running decodes.
  int64_t max_prefill_tokens_per_step = 512;
  SchedulerObserver* observer = nullptr;  // optional; must outlive the scheduler
  // The time source for deadlines and timings; steady_clock::now when empty (tests inject one).
  std::function<SteadyTime()> clock;
};

// Monotonic totals since start-up, for a metrics exporter.
struct SchedulerCounters {
  int64_t prompt_tokens = 0;      // prompts fully prefilled (counted once per request)
  int64_t generation_tokens = 0;  // tokens sampled
  int64_t preemptions = 0;
  int64_t kv_saved_bytes = 0;  // sum of KvStats::saved_kv_bytes over requests finished OK
  // Requests finished OK, by finish reason.
  int64_t finished_length = 0;
  int64_t finished_stop = 0;
  int64_t finished_eos = 0;
  // Requests finished with an error status.
  int64_t cancelled = 0;  // Abort()
  // Deadline passed while waiting or running, or before the request was queued (at Submit, or
  // while the server was still preparing it: CountDeadlineExceededBeforeSubmit).
  int64_t deadline_exceeded = 0;
  int64_t unavailable = 0;  // aborted by Drain's timeout or Stop
  int64_t failed = 0;       // INTERNAL (forward or compression failure) and others
};

struct SchedulerLoad {
  int32_t running = 0;
  int32_t waiting = 0;
  int32_t kv_blocks_used = 0;
  int32_t kv_blocks_free = 0;
  int32_t kv_blocks_total = 0;
  bool accepting = true;  // false once draining or stopped
  SchedulerCounters counters;

  double kv_usage_ratio() const {
    return kv_blocks_total > 0 ? static_cast<double>(kv_blocks_used) / kv_blocks_total : 0.0;
  }
};

class Scheduler {
 public:
  // InvalidArgument for a null model or cache, a cache whose layout does not match the model,
  // or non-positive limits. The scheduler does not own the model or the cache; while it runs,
  // nothing else may use them. Requests may be submitted before Start().
  static absl::StatusOr<std::unique_ptr<Scheduler>> Create(LlamaModel* model, KvCache* cache,
                                                           SchedulerOptions options);
  ~Scheduler();  // Stop()
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Starts the worker thread (once; later calls do nothing).
  void Start();

  // Queues a request. On OK, its on_finish will be called exactly once (on the worker thread);
  // on any error it is never called. Errors, checked in this order:
  //   UNAVAILABLE while draining or stopped;
  //   INVALID_ARGUMENT naming the field (ValidateEngineRequest);
  //   RESOURCE_EXHAUSTED when the request could never fit in the whole pool (PeakKvBlocks);
  //   DEADLINE_EXCEEDED when its deadline has already passed;
  //   ALREADY_EXISTS when a live request has the same request_id;
  //   RESOURCE_EXHAUSTED "waiting queue is full (N requests)".
  absl::Status Submit(EngineRequest request);

  // Asks for a live request to finish with CANCELLED at the start of the next iteration (its
  // blocks return to the pool then). False when no live request has that id.
  bool Abort(const std::string& request_id);

  // Counts, as a deadline failure, a request whose deadline passed before it could be submitted
  // (e.g. while its text waited for the tokenizer): it never reaches Submit, yet the metrics
  // must see every deadline failure.
  void CountDeadlineExceededBeforeSubmit();

  // Refuses new requests with UNAVAILABLE from now on; returns at once.
  void BeginDrain();
  // BeginDrain, then waits up to `timeout` for running and waiting requests to finish; the rest
  // are then finished with UNAVAILABLE. Returns how many were aborted that way. Without a
  // started worker nothing can finish, so the rest are aborted at once, on the calling thread.
  int Drain(std::chrono::milliseconds timeout);

  // Finishes every live request with UNAVAILABLE and joins the worker (without a started worker,
  // the queued requests are finished on the calling thread). Idempotent.
  void Stop();

  // A consistent snapshot; cheap, callable from any thread (observer callbacks included).
  SchedulerLoad Load() const;

  const SchedulerOptions& options() const { return options_; }

 private:
  // What one iteration's forward call holds for one sequence.
  struct BatchEntry {
    ScheduledSequence* seq;
    int64_t first_index;  // first context index in this call
    int64_t num_tokens;   // 1 for a decode
    bool is_decode;
  };

  Scheduler(LlamaModel* model, KvCache* cache, SchedulerOptions options);
  SteadyTime Now() const { return options_.clock(); }

  // Worker thread (scheduler.cc).
  void WorkerLoop();
  // Finishes a sequence that is in neither running_ nor waiting_: final stats, blocks released,
  // counters, its id forgotten, then the observer and on_finish.
  void Finish(std::unique_ptr<ScheduledSequence> seq, absl::Status status,
              FinishReason reason = FinishReason::kAborted);
  // Finishes every running and waiting request with `status` (Stop, Drain's timeout); returns
  // how many.
  int FinishAll(const absl::Status& status);
  void PublishLoadLocked();  // copies the worker-owned figures for Load(); mu_ held
  // Nothing live and no on_finish still running; mu_ held.
  bool DrainedLocked() const { return live_.empty() && finishing_ == 0; }

  // One iteration (scheduler_iteration.cc).
  void RunIteration();
  int ReapCancelled();  // step 1; returns how many finished
  int AdmitWaiting();   // step 2; returns how many finished (their compression setup failed)
  // Step 3a: reserves one decode entry for every decoding sequence (preempting the newest when
  // the pool runs out) and cuts prefill chunks within the step's token budget.
  std::vector<BatchEntry> PlanBatch(int* preempted);
  void Preempt(std::unique_ptr<ScheduledSequence> seq);
  // Step 3b and 4: one forward call, compression, sampling, streaming and stop checks. Returns
  // how many finished.
  int RunBatch(const std::vector<BatchEntry>& batch, double* forward_seconds);
  // Samples the next token of `seq` from `logits` and streams it; the finish reason when the
  // token ends the sequence.
  std::optional<FinishReason> SampleAndStream(ScheduledSequence& seq,
                                              std::span<const float> logits);
  // Blocks that running sequences in `phase` will take from the pool before their next token.
  int64_t ReservedBlocks(SequencePhase phase) const;

  LlamaModel* const model_;
  KvCache* const cache_;
  const SchedulerOptions options_;

  // Worker-owned: touched only by the worker thread (or by Stop/Drain once it is not running).
  std::vector<std::unique_ptr<ScheduledSequence>> running_;  // in admission order
  uint64_t next_admission_order_ = 1;
  SchedulerCounters counters_;

  mutable std::mutex mu_;
  std::condition_variable work_cv_;   // the worker sleeps here when idle
  std::condition_variable drain_cv_;  // Drain waits here for DrainedLocked()
  // Guarded by mu_:
  std::deque<std::unique_ptr<ScheduledSequence>> waiting_;
  absl::flat_hash_map<std::string, ScheduledSequence*> live_;  // submitted, not yet finishing
  int finishing_ = 0;                                          // on_finish calls in progress
  bool accepting_ = true;
  bool abort_all_ = false;  // Drain's timeout passed: the worker aborts everything
  bool stop_ = false;
  bool started_ = false;
  int drain_aborted_ = 0;                        // requests FinishAll aborted for Drain
  int64_t deadline_exceeded_before_submit_ = 0;  // refused by Submit or counted by the server
  SchedulerLoad published_;                      // running and KV figures, counters
  std::thread worker_;
  std::mutex control_mu_;  // serialises Start, Drain and Stop
};

}  // namespace zigzag
