// SchedulerObserver: an optional hook through which the scheduler reports what each iteration
// did and how each request went (TTFT, inter-token latency, end-to-end and queue time, token
// counts, KV saved). A metrics exporter implements it; it knows nothing of Prometheus, and the
// scheduler works the same with no observer at all.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "core/scheduler/request.h"

namespace zigzag {

// One iteration of the worker loop: what went into its forward call and the state after it.
struct IterationMetrics {
  int32_t prefill_sequences = 0;  // sequences with a prefill chunk in the forward call
  int64_t prefill_tokens = 0;     // tokens of those chunks
  int32_t decode_sequences = 0;   // sequences that decoded one token
  int32_t preempted = 0;          // sequences sent back to the waiting queue this iteration
  int32_t finished = 0;           // requests finished this iteration (any status)
  int32_t running = 0;            // after the iteration
  int32_t waiting = 0;
  int32_t kv_blocks_used = 0;
  int32_t kv_blocks_total = 0;
  double forward_seconds = 0;  // 0 when the iteration had nothing to run
};

// All methods are called on the scheduler's worker thread with no scheduler lock held. They must
// be quick; Scheduler::Abort and Scheduler::Load may be called from them, Drain and Stop may not.
class SchedulerObserver {
 public:
  virtual ~SchedulerObserver() = default;

  virtual void OnIteration(const IterationMetrics& metrics) { (void)metrics; }
  // A request's first token was sampled `ttft_seconds` after it was submitted.
  virtual void OnFirstToken(const std::string& request_id, double ttft_seconds) {
    (void)request_id;
    (void)ttft_seconds;
  }
  // A running request lost its KV blocks and went back to the front of the waiting queue.
  virtual void OnPreemption(const std::string& request_id) { (void)request_id; }
  // Called once per request, just before its on_finish, with the outcome it will receive and
  // the time between each pair of consecutive tokens it produced.
  virtual void OnRequestFinished(const std::string& request_id, const RequestOutcome& outcome,
                                 std::span<const double> inter_token_seconds) {
    (void)request_id;
    (void)outcome;
    (void)inter_token_seconds;
  }
};

}  // namespace zigzag
