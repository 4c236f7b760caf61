// The Scheduler's public API, its worker thread and how requests finish. One iteration of the
// worker loop is in scheduler_iteration.cc.
#include "core/scheduler/scheduler.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/scheduler/request_validation.h"
#include "core/util/status_macros.h"
#include "spdlog/spdlog.h"

namespace zigzag {

absl::StatusOr<std::unique_ptr<Scheduler>> Scheduler::Create(LlamaModel* model, KvCache* cache,
                                                             SchedulerOptions options) {
  if (model == nullptr) return absl::InvalidArgumentError("Scheduler: model is null");
  if (cache == nullptr) return absl::InvalidArgumentError("Scheduler: KV cache is null");
  const KvLayout& layout = cache->layout();
  const ModelConfig& config = model->config();
  if (layout.num_layers != config.num_layers || layout.num_kv_heads != config.num_kv_heads ||
      layout.head_dim != config.head_dim) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Scheduler: KV cache layout (", layout.num_layers, " layers, ", layout.num_kv_heads,
        " KV heads, head_dim ", layout.head_dim, ") does not match the model (", config.num_layers,
        " layers, ", config.num_kv_heads, " KV heads, head_dim ", config.head_dim, ")"));
  }
  if (options.max_waiting < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("Scheduler: max_waiting must be >= 1, got ", options.max_waiting));
  }
  if (options.max_running < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("Scheduler: max_running must be >= 1, got ", options.max_running));
  }
  if (options.max_prefill_tokens_per_step < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("Scheduler: max_prefill_tokens_per_step must be >= 1, got ",
                     options.max_prefill_tokens_per_step));
  }
  if (!options.clock) options.clock = [] { return std::chrono::steady_clock::now(); };
  return std::unique_ptr<Scheduler>(new Scheduler(model, cache, std::move(options)));
}

Scheduler::Scheduler(LlamaModel* model, KvCache* cache, SchedulerOptions options)
    : model_(model), cache_(cache), options_(std::move(options)) {
  std::lock_guard<std::mutex> lock(mu_);
  PublishLoadLocked();
}

Scheduler::~Scheduler() { Stop(); }

void Scheduler::Start() {
  std::lock_guard<std::mutex> control(control_mu_);
  std::lock_guard<std::mutex> lock(mu_);
  if (started_ || stop_) return;
  started_ = true;
  worker_ = std::thread([this] { WorkerLoop(); });
}

absl::Status Scheduler::Submit(EngineRequest request) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!accepting_) {
      return absl::UnavailableError("the scheduler is draining or stopped; not accepting requests");
    }
  }
  RETURN_IF_ERROR(ValidateEngineRequest(request, model_->config()));
  RETURN_IF_ERROR(CheckFitsInPool(request, cache_->layout(), cache_->pool().num_blocks()));
  const SteadyTime now = Now();
  if (request.deadline.has_value() && *request.deadline <= now) {
    CountDeadlineExceededBeforeSubmit();
    return absl::DeadlineExceededError(
        absl::StrCat("request ", request.request_id, ": deadline passed before it was queued"));
  }
  auto seq = std::make_unique<ScheduledSequence>(
      std::move(request), &cache_->pool(), static_cast<int>(model_->config().num_layers),
      static_cast<int>(model_->config().num_kv_heads), now);
  const std::string& id = seq->request.request_id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!accepting_) {
      return absl::UnavailableError("the scheduler is draining or stopped; not accepting requests");
    }
    if (live_.contains(id)) {
      return absl::AlreadyExistsError(
          absl::StrCat("request_id ", id, " is already in use by a live request"));
    }
    if (static_cast<int64_t>(waiting_.size()) >= options_.max_waiting) {
      return absl::ResourceExhaustedError(
          absl::StrCat("waiting queue is full (", options_.max_waiting, " requests)"));
    }
    live_[id] = seq.get();
    waiting_.push_back(std::move(seq));
  }
  work_cv_.notify_one();
  return absl::OkStatus();
}

bool Scheduler::Abort(const std::string& request_id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(request_id);
    if (it == live_.end()) return false;
    it->second->abort_requested.store(true);
  }
  work_cv_.notify_one();
  return true;
}

void Scheduler::BeginDrain() {
  std::lock_guard<std::mutex> lock(mu_);
  accepting_ = false;
}

int Scheduler::Drain(std::chrono::milliseconds timeout) {
  std::lock_guard<std::mutex> control(control_mu_);
  std::unique_lock<std::mutex> lock(mu_);
  accepting_ = false;
  if (!started_ || stop_) {
    // No worker: nothing can finish by itself (after Stop nothing is live any more).
    lock.unlock();
    return FinishAll(absl::UnavailableError("the server is draining; request aborted"));
  }
  if (timeout.count() > 0) {
    drain_cv_.wait_for(lock, timeout, [this] { return DrainedLocked(); });
  }
  if (DrainedLocked()) return 0;
  abort_all_ = true;
  drain_aborted_ = 0;
  work_cv_.notify_one();
  // abort_all_ is cleared by the worker after it counted what it aborted.
  drain_cv_.wait(lock, [this] { return DrainedLocked() && !abort_all_; });
  return drain_aborted_;
}

void Scheduler::Stop() {
  std::lock_guard<std::mutex> control(control_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    accepting_ = false;
    stop_ = true;
  }
  work_cv_.notify_one();
  if (worker_.joinable()) {
    worker_.join();  // the worker finishes what is live on its way out
  } else {
    FinishAll(absl::UnavailableError("the scheduler was stopped; request aborted"));
  }
}

void Scheduler::CountDeadlineExceededBeforeSubmit() {
  std::lock_guard<std::mutex> lock(mu_);
  ++deadline_exceeded_before_submit_;
}

SchedulerLoad Scheduler::Load() const {
  std::lock_guard<std::mutex> lock(mu_);
  SchedulerLoad load = published_;
  load.counters.deadline_exceeded += deadline_exceeded_before_submit_;
  load.waiting = static_cast<int32_t>(waiting_.size());
  load.accepting = accepting_;
  return load;
}

void Scheduler::PublishLoadLocked() {
  const BlockPool& pool = cache_->pool();
  published_.running = static_cast<int32_t>(running_.size());
  published_.kv_blocks_used = pool.num_used();
  published_.kv_blocks_free = pool.num_free();
  published_.kv_blocks_total = pool.num_blocks();
  published_.counters = counters_;
}

void Scheduler::WorkerLoop() {
  while (true) {
    bool abort_all = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      // Idle means nothing waits and nothing runs: sleep until Submit, Abort, Drain or Stop.
      work_cv_.wait(
          lock, [this] { return stop_ || abort_all_ || !waiting_.empty() || !running_.empty(); });
      if (stop_) break;
      abort_all = abort_all_;
    }
    if (abort_all) {
      const int aborted = FinishAll(absl::UnavailableError(
          "the server is draining and the drain timeout passed; request aborted"));
      std::lock_guard<std::mutex> lock(mu_);
      abort_all_ = false;
      drain_aborted_ += aborted;
      drain_cv_.notify_all();
      continue;
    }
    RunIteration();
  }
  FinishAll(absl::UnavailableError("the scheduler was stopped; request aborted"));
}

int Scheduler::FinishAll(const absl::Status& status) {
  std::vector<std::unique_ptr<ScheduledSequence>> all = std::move(running_);
  running_.clear();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& seq : waiting_) all.push_back(std::move(seq));
    waiting_.clear();
  }
  const int count = static_cast<int>(all.size());
  for (auto& seq : all) Finish(std::move(seq), status);
  return count;
}

void Scheduler::Finish(std::unique_ptr<ScheduledSequence> seq, absl::Status status,
                       FinishReason reason) {
  RequestOutcome& outcome = seq->outcome;
  outcome.finish_reason = status.ok() ? reason : FinishReason::kAborted;
  outcome.status = std::move(status);
  FillFinalKvStats(*seq, cache_->layout());
  seq->kv.Release();  // all its blocks return at once
  seq->compression.reset();
  FillFinalTimings(*seq, Now());

  switch (outcome.status.code()) {
    case absl::StatusCode::kOk:
      counters_.kv_saved_bytes += outcome.kv_stats.saved_kv_bytes;
      if (outcome.finish_reason == FinishReason::kStop) ++counters_.finished_stop;
      if (outcome.finish_reason == FinishReason::kEos) ++counters_.finished_eos;
      if (outcome.finish_reason == FinishReason::kLength) ++counters_.finished_length;
      break;
    case absl::StatusCode::kCancelled:
      ++counters_.cancelled;
      break;
    case absl::StatusCode::kDeadlineExceeded:
      ++counters_.deadline_exceeded;
      break;
    case absl::StatusCode::kUnavailable:
      ++counters_.unavailable;
      break;
    default:
      ++counters_.failed;
      break;
  }
  if (!outcome.status.ok() && outcome.status.code() != absl::StatusCode::kCancelled) {
    spdlog::info("request {} finished with {} after {} tokens", seq->request.request_id,
                 outcome.status.ToString(), outcome.tokens.size());
  }
  {
    // Published and forgotten before on_finish: a client that saw its request finish also sees
    // its blocks free, and Abort of that id answers false from then on.
    std::lock_guard<std::mutex> lock(mu_);
    PublishLoadLocked();
    live_.erase(seq->request.request_id);
    ++finishing_;
  }
  if (options_.observer != nullptr) {
    options_.observer->OnRequestFinished(seq->request.request_id, outcome,
                                         seq->inter_token_seconds);
  }
  std::function<void(RequestOutcome)> on_finish = std::move(seq->request.on_finish);
  on_finish(std::move(outcome));
  std::lock_guard<std::mutex> lock(mu_);
  --finishing_;  // Drain returns only once every on_finish has returned
  if (DrainedLocked()) drain_cv_.notify_all();
}

}  // namespace zigzag
