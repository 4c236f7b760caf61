// ScheduledSequence: one request's state inside the scheduler, from Submit to on_finish: its KV
// blocks, sampler (whose random stream survives preemption), prompt + generated tokens, progress
// of the current prefill (or recompute after preemption) and timestamps. Plain state plus the
// small rules that touch only it (stop conditions, final KvStats and timings); the Scheduler
// decides when sequences run, wait or finish.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <vector>

#include "core/engine/prefill_compression.h"
#include "core/kv/kv_cache.h"
#include "core/kv/sequence_kv.h"
#include "core/model/model_config.h"
#include "core/sampling/sampler.h"
#include "core/scheduler/request.h"

namespace zigzag {

enum class SequencePhase {
  kWaiting,  // in the waiting queue (new, or preempted: no KV held)
  kPrefill,  // admitted; context[0, prefill_target) is being written into the cache in chunks
  kDecode,   // one new token per iteration
};

struct ScheduledSequence {
  ScheduledSequence(EngineRequest request, BlockPool* pool, int num_layers, int num_kv_heads,
                    SteadyTime submitted);

  int64_t prompt_tokens() const { return static_cast<int64_t>(request.prompt.size()); }
  int64_t generated_tokens() const { return static_cast<int64_t>(outcome.tokens.size()); }
  // Blocks the pool must still supply before this sequence's next sampled token: the rest of its
  // prefill (every layer, uncompressed until the prompt's last chunk) or one decode entry.
  int64_t BlocksToReserve() const;
  // The end (exclusive, in context indices) of the next prefill chunk: a chunk never crosses the
  // prompt's end while compression is pending, because compression runs right after it.
  int64_t PrefillChunkLimit() const;
  // Prepares a (re)computation from the start of `context`; called on admission.
  void BeginPrefill(uint64_t order, SteadyTime now);
  // Releases every block and forgets the current computation; generated tokens, the sampler and
  // the timings stay, so a recompute continues exactly where the sequence was.
  void ResetForRecompute();

  EngineRequest request;
  SequenceKv kv;
  Sampler sampler;
  std::vector<int32_t> context;  // prompt + generated: the recompute input and the penalty context
  RequestOutcome outcome;        // tokens, logprobs, kv_stats, ... as they accumulate
  SequencePhase phase = SequencePhase::kWaiting;
  uint64_t admission_order = 0;  // larger = admitted more recently (the preemption victim)

  int64_t prefilled = 0;       // context entries already in the cache in this computation
  int64_t prefill_target = 0;  // context.size() when admitted: decoding resumes after these
  std::optional<PrefillCompression> compression;  // from admission until the prompt is in
  bool prompt_compressed = false;  // the cache holds the prompt as compression left it

  std::atomic<bool> abort_requested{false};  // set by Abort() from any thread
  bool prompt_counted = false;               // prompt tokens added to the counters once

  SteadyTime submitted;
  std::optional<SteadyTime> first_scheduled;
  std::optional<SteadyTime> prefill_done;  // the first time the prompt was fully prefilled
  std::optional<SteadyTime> first_token;
  std::optional<SteadyTime> last_token;
  std::vector<double> inter_token_seconds;
};

// Appends a sampled token to the outcome and the context; returns the finish reason when it ends
// the sequence (stop token ids, then EOS unless ignore_eos, then max_tokens; as GenerateBatch).
std::optional<FinishReason> AcceptToken(ScheduledSequence& seq, const SampledToken& sampled,
                                        const ModelConfig& config);

// Fills outcome.kv_stats' memory figures from what the sequence holds now (call before its blocks
// are released). Before the prompt was compressed (cancelled mid-prefill, or waiting after a
// preemption) the policy fields say what was asked and the figures count what is held.
void FillFinalKvStats(ScheduledSequence& seq, const KvLayout& layout);

// Fills outcome.timings for a sequence finishing at `now`.
void FillFinalTimings(ScheduledSequence& seq, SteadyTime now);

}  // namespace zigzag
