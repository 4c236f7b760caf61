// What a client asks of the engine and what it gets back: the request as the scheduler queues
// it (ids, sampling, compression, deadline, callbacks) and its outcome (tokens, finish reason,
// timings, KvStats). Plain data shared by server/ and core/scheduler; no behaviour.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/compress/compression_params.h"
#include "core/engine/generation.h"
#include "core/kv/kv_stats.h"
#include "core/sampling/sampling_params.h"

namespace zigzag {

using SteadyTime = std::chrono::steady_clock::time_point;

struct RequestTimings {
  double queue_seconds = 0;    // submitted -> first scheduled
  double prefill_seconds = 0;  // first scheduled -> prompt fully prefilled (and compressed)
  double decode_seconds = 0;   // prefill done -> finished
  double ttft_seconds = 0;     // submitted -> first token
  double e2e_seconds = 0;      // submitted -> finished
};

// New tokens for a streaming client, delivered in order on the worker thread.
struct TokenDelta {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;  // when sampling.logprobs
};

struct RequestOutcome {
  // OK with a finish reason, or CANCELLED / DEADLINE_EXCEEDED / RESOURCE_EXHAUSTED / INTERNAL /
  // UNAVAILABLE with a message. Tokens produced before an error are still reported.
  absl::Status status;
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  FinishReason finish_reason = FinishReason::kLength;
  int64_t prompt_tokens = 0;
  int64_t num_preemptions = 0;
  RequestTimings timings;
  KvStats kv_stats;
};

struct EngineRequest {
  std::string request_id;  // unique among live requests; Abort() uses it
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  CompressionParams compression;
  std::optional<SteadyTime> deadline;
  // Optional: stop strings, checked over the detokenized text by the server (on the worker
  // thread, once per generated token).
  TextStopCheck text_stop;
  // Called on the worker thread; must be quick. They may call Scheduler::Abort, Load and Submit,
  // never Drain or Stop (see scheduler.h).
  std::function<void(const TokenDelta&)> on_tokens;  // optional (streaming)
  std::function<void(RequestOutcome)> on_finish;     // required; called exactly once
};

}  // namespace zigzag
