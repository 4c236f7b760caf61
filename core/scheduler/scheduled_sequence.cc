#include "core/scheduler/scheduled_sequence.h"

#include <algorithm>
#include <chrono>
#include <utility>

namespace zigzag {
namespace {

double SecondsBetween(SteadyTime from, SteadyTime to) {
  return std::chrono::duration<double>(to - from).count();
}

}  // namespace

ScheduledSequence::ScheduledSequence(EngineRequest request_in, BlockPool* pool, int num_layers,
                                     int num_kv_heads, SteadyTime submitted_at)
    : request(std::move(request_in)),
      kv(pool, num_layers, num_kv_heads),
      sampler(request.sampling),
      context(request.prompt),
      submitted(submitted_at) {
  outcome.prompt_tokens = prompt_tokens();
}

int64_t ScheduledSequence::BlocksToReserve() const {
  switch (phase) {
    case SequencePhase::kWaiting:
      return 0;
    case SequencePhase::kPrefill:
      // Before compression every (layer, KV head) stream holds `prefilled` entries, so this is
      // L * G * ceil(prefill_target / block) - held: the transient full KV. After it, the exact
      // growth of the compressed layers by the generated tokens still to recompute.
      return kv.BlocksNeededToAppend(prefill_target - prefilled);
    case SequencePhase::kDecode:
      return kv.BlocksNeededToAppend(1);
  }
  return 0;
}

int64_t ScheduledSequence::PrefillChunkLimit() const {
  return prompt_compressed ? prefill_target : std::min(prefill_target, prompt_tokens());
}

void ScheduledSequence::BeginPrefill(uint64_t order, SteadyTime now) {
  phase = SequencePhase::kPrefill;
  admission_order = order;
  prefilled = 0;
  prefill_target = static_cast<int64_t>(context.size());
  prompt_compressed = false;
  if (!first_scheduled.has_value()) first_scheduled = now;
}

void ScheduledSequence::ResetForRecompute() {
  kv.Release();
  compression.reset();
  phase = SequencePhase::kWaiting;
  prefilled = 0;
  prefill_target = 0;
  prompt_compressed = false;
}

std::optional<FinishReason> AcceptToken(ScheduledSequence& seq, const SampledToken& sampled,
                                        const ModelConfig& config) {
  const SamplingParams& params = seq.request.sampling;
  seq.outcome.tokens.push_back(sampled.token);
  if (params.logprobs) seq.outcome.logprobs.push_back(sampled.logprob);
  seq.context.push_back(sampled.token);
  return StopReason(params, config.eos_token_ids, sampled.token, seq.generated_tokens(),
                    seq.request.text_stop);
}

void FillFinalKvStats(ScheduledSequence& seq, const KvLayout& layout) {
  KvStats& stats = seq.outcome.kv_stats;
  const int64_t prompt_tokens = seq.prompt_tokens();
  if (!seq.prompt_compressed) {
    // Never (or not since its last preemption) got past its prompt: report the policy asked for
    // and whatever part of the prompt is held.
    stats.params = seq.request.compression;
    stats.average_budget = AverageBudget(seq.request.compression, prompt_tokens);
    stats.window =
        static_cast<int32_t>(std::min<int64_t>(seq.request.compression.window, prompt_tokens));
    stats.compressed = false;
    // Uncompressed: every stream holds the same length.
    const int64_t held =
        seq.kv.num_layers() > 0 && seq.kv.num_kv_heads() > 0 ? seq.kv.length(0, 0) : 0;
    stats.prompt_kept_per_layer.assign(seq.kv.num_layers(), held);
    stats.prompt_kept_per_head.assign(seq.kv.num_layers(),
                                      std::vector<int64_t>(seq.kv.num_kv_heads(), held));
    stats.appended_tokens = 0;
  } else {
    stats.appended_tokens = seq.kv.length(0, 0) - stats.prompt_kept_per_head[0][0];
  }
  stats.prompt_tokens = prompt_tokens;
  FillKvMemoryStats(seq.kv, layout, &stats);
  if (!seq.prompt_compressed) {
    // Nothing was evicted: a full cache would hold exactly what this one holds (possibly only
    // part of the prompt, or nothing), so nothing was saved.
    stats.full_kv_bytes = stats.retained_kv_bytes;
    stats.full_kv_block_bytes = stats.retained_kv_block_bytes;
    stats.saved_kv_bytes = 0;
    stats.retained_ratio = 1.0;
  }
}

void FillFinalTimings(ScheduledSequence& seq, SteadyTime now) {
  RequestTimings& timings = seq.outcome.timings;
  timings = RequestTimings{};
  timings.e2e_seconds = SecondsBetween(seq.submitted, now);
  if (!seq.first_scheduled.has_value()) {
    timings.queue_seconds = timings.e2e_seconds;
    return;
  }
  timings.queue_seconds = SecondsBetween(seq.submitted, *seq.first_scheduled);
  if (!seq.prefill_done.has_value()) {
    timings.prefill_seconds = SecondsBetween(*seq.first_scheduled, now);
    return;
  }
  timings.prefill_seconds = SecondsBetween(*seq.first_scheduled, *seq.prefill_done);
  timings.decode_seconds = SecondsBetween(*seq.prefill_done, now);
  if (seq.first_token.has_value()) {
    timings.ttft_seconds = SecondsBetween(seq.submitted, *seq.first_token);
  }
}

}  // namespace zigzag
