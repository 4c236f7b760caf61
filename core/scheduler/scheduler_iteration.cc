// One iteration of the scheduler's worker loop:
//   1. drop aborted and expired requests (their blocks return at once);
//   2. admit waiting requests first-come first-served while the pool can hold their transient
//      full KV next to what running sequences will still take;
//   3. give every decoding sequence one more cache entry (preempting the newest sequence by
//      recompute when the pool is out), cut prefill chunks within the step's token budget, and
//      run them all in ONE forward call;
//   4. compress prompts that just got their last chunk, sample, stream, check stop conditions
//      and finish what is done.
//
// Block accounting. Every block is held by a running sequence or free. A prefilling sequence
// has a claim on the blocks its remaining prefill needs (BlocksToReserve: before its prompt is
// compressed, every (layer, KV head) stream's full length), and a decoding one on its next entry.
// Admission only hands out blocks beyond all claims, and a decode may only take blocks beyond the
// prefill claims, so a prefill chunk's allocation always succeeds. Compression never raises a claim
// by more than the blocks it frees (kept <= T in every stream).
#include <algorithm>
#include <chrono>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "core/scheduler/scheduler.h"
#include "core/util/check.h"
#include "spdlog/spdlog.h"

namespace zigzag {

void Scheduler::RunIteration() {
  IterationMetrics metrics;
  metrics.finished += ReapCancelled();
  metrics.finished += AdmitWaiting();
  const std::vector<BatchEntry> batch = PlanBatch(&metrics.preempted);
  for (const BatchEntry& entry : batch) {
    if (entry.is_decode) {
      ++metrics.decode_sequences;
    } else {
      ++metrics.prefill_sequences;
      metrics.prefill_tokens += entry.num_tokens;
    }
  }
  if (!batch.empty()) metrics.finished += RunBatch(batch, &metrics.forward_seconds);
  {
    std::lock_guard<std::mutex> lock(mu_);
    PublishLoadLocked();
    metrics.running = published_.running;
    metrics.waiting = static_cast<int32_t>(waiting_.size());
    metrics.kv_blocks_used = published_.kv_blocks_used;
    metrics.kv_blocks_total = published_.kv_blocks_total;
  }
  if (options_.observer != nullptr) options_.observer->OnIteration(metrics);
}

int Scheduler::ReapCancelled() {
  const SteadyTime now = Now();
  const auto verdict = [now](const ScheduledSequence& seq, const char* where) {
    if (seq.abort_requested.load()) {
      return absl::CancelledError(
          absl::StrCat("request ", seq.request.request_id, " was aborted while ", where));
    }
    if (seq.request.deadline.has_value() && *seq.request.deadline <= now) {
      return absl::DeadlineExceededError(
          absl::StrCat("request ", seq.request.request_id, " passed its deadline while ", where,
                       " (", seq.generated_tokens(), " tokens generated)"));
    }
    return absl::OkStatus();
  };
  std::vector<std::pair<std::unique_ptr<ScheduledSequence>, absl::Status>> dropped;
  for (auto it = running_.begin(); it != running_.end();) {
    absl::Status status =
        verdict(**it, (*it)->phase == SequencePhase::kPrefill ? "prefilling" : "decoding");
    if (status.ok()) {
      ++it;
      continue;
    }
    dropped.emplace_back(std::move(*it), std::move(status));
    it = running_.erase(it);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      absl::Status status = verdict(**it, "waiting");
      if (status.ok()) {
        ++it;
        continue;
      }
      dropped.emplace_back(std::move(*it), std::move(status));
      it = waiting_.erase(it);
    }
  }
  for (auto& [seq, status] : dropped) Finish(std::move(seq), std::move(status));
  return static_cast<int>(dropped.size());
}

int64_t Scheduler::ReservedBlocks(SequencePhase phase) const {
  int64_t reserved = 0;
  for (const auto& seq : running_) {
    if (seq->phase == phase) reserved += seq->BlocksToReserve();
  }
  return reserved;
}

int Scheduler::AdmitWaiting() {
  int failed = 0;
  const KvLayout& layout = cache_->layout();
  const BlockPool& pool = cache_->pool();
  int64_t claimed =
      ReservedBlocks(SequencePhase::kPrefill) + ReservedBlocks(SequencePhase::kDecode);
  int64_t pending_prefill = 0;
  for (const auto& seq : running_) {
    if (seq->phase == SequencePhase::kPrefill) {
      pending_prefill += seq->prefill_target - seq->prefilled;
    }
  }
  // Admit only while this step still has prefill budget: a sequence admitted now starts its
  // prefill now instead of holding a claim on blocks while it waits for the budget.
  while (static_cast<int64_t>(running_.size()) < options_.max_running &&
         pending_prefill < options_.max_prefill_tokens_per_step) {
    std::unique_ptr<ScheduledSequence> seq;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (waiting_.empty()) break;
      // Its whole context (prompt, plus generated tokens after a preemption), every (layer,
      // KV head) stream, uncompressed: the most it holds before its next sampled token.
      const int64_t need =
          layout.BlocksForTokensAllStreams(static_cast<int64_t>(waiting_.front()->context.size()));
      if (need > pool.num_free() - claimed) break;  // first come, first served: no overtaking
      seq = std::move(waiting_.front());
      waiting_.pop_front();
    }
    seq->BeginPrefill(next_admission_order_++, Now());
    absl::StatusOr<PrefillCompression> compression = PrefillCompression::Create(
        seq->request.compression, model_->config(), *model_->backend(), seq->prompt_tokens());
    if (!compression.ok()) {  // e.g. no memory for the window summaries
      Finish(std::move(seq), compression.status());
      ++failed;
      continue;
    }
    seq->compression = std::move(*compression);
    claimed += seq->BlocksToReserve();
    pending_prefill += seq->prefill_target;
    running_.push_back(std::move(seq));
  }
  return failed;
}

void Scheduler::Preempt(std::unique_ptr<ScheduledSequence> seq) {
  // Recompute: drop its KV (blocks back to the pool now) but keep the generated tokens and the
  // sampler, so that on re-admission it prefills prompt + generated tokens and continues its
  // random stream exactly where it was.
  seq->ResetForRecompute();
  ++seq->outcome.num_preemptions;
  ++counters_.preemptions;
  spdlog::debug("preempted request {} after {} tokens", seq->request.request_id,
                seq->generated_tokens());
  if (options_.observer != nullptr) options_.observer->OnPreemption(seq->request.request_id);
  std::lock_guard<std::mutex> lock(mu_);
  waiting_.push_front(std::move(seq));
}

std::vector<Scheduler::BatchEntry> Scheduler::PlanBatch(int* preempted) {
  BlockPool& pool = cache_->pool();
  std::vector<BatchEntry> batch;
  // Decodes, oldest first; the victim is always the newest (running_.back()), so the oldest
  // sequences keep making progress and a victim is never one already in this batch.
  for (size_t i = 0; i < running_.size(); ++i) {
    ScheduledSequence& seq = *running_[i];
    if (seq.phase != SequencePhase::kDecode) continue;
    bool preempted_self = false;
    while (seq.kv.BlocksNeededToAppend(1) >
           pool.num_free() - ReservedBlocks(SequencePhase::kPrefill)) {
      std::unique_ptr<ScheduledSequence> victim = std::move(running_.back());
      running_.pop_back();
      preempted_self = victim.get() == &seq;
      Preempt(std::move(victim));
      ++*preempted;
      if (preempted_self) break;
    }
    if (preempted_self) break;  // it was the newest: nothing after it is left
    const absl::Status grown = seq.kv.AppendAllLayers(1);
    ZZ_CHECK(grown.ok()) << "decode reservation: " << grown.ToString();
    batch.push_back(BatchEntry{&seq, static_cast<int64_t>(seq.context.size()) - 1, 1, true});
  }
  // Prefill chunks in admission order within the step's token budget.
  int64_t budget = options_.max_prefill_tokens_per_step;
  for (const auto& ptr : running_) {
    if (budget == 0) break;
    ScheduledSequence& seq = *ptr;
    if (seq.phase != SequencePhase::kPrefill) continue;
    const int64_t chunk = std::min(budget, seq.PrefillChunkLimit() - seq.prefilled);
    ZZ_CHECK(chunk > 0) << "empty prefill chunk for request " << seq.request.request_id;
    const absl::Status grown = seq.kv.AppendAllLayers(chunk);
    // Claims guarantee this (see the block accounting note at the top of this file).
    ZZ_CHECK(grown.ok()) << "prefill reservation: " << grown.ToString();
    batch.push_back(BatchEntry{&seq, seq.prefilled, chunk, false});
    budget -= chunk;
  }
  return batch;
}

int Scheduler::RunBatch(const std::vector<BatchEntry>& batch, double* forward_seconds) {
  std::vector<ForwardSequence> forward;
  forward.reserve(batch.size());
  for (const BatchEntry& entry : batch) {
    ScheduledSequence& seq = *entry.seq;
    ForwardSequence f{.tokens = std::span<const int32_t>(seq.context.data() + entry.first_index,
                                                         entry.num_tokens),
                      .first_position = entry.first_index,
                      .kv = &seq.kv};
    // Prompt chunks fill the window summaries compression needs (queries at or after
    // window_begin add their attention, so chunks accumulate).
    if (!entry.is_decode && seq.compression.has_value()) {
      f.window_mass = seq.compression->window_mass();
      f.window_begin = seq.compression->window_begin();
    }
    forward.push_back(f);
  }
  const auto started = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<float>> logits = model_->Forward(forward, cache_);
  *forward_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  struct Done {
    absl::Status status;
    FinishReason reason = FinishReason::kAborted;
  };
  absl::flat_hash_map<ScheduledSequence*, Done> done;
  if (!logits.ok()) {
    spdlog::error("forward pass over {} sequences failed: {}", batch.size(),
                  std::string(logits.status().message()));
    for (const BatchEntry& entry : batch) {
      done[entry.seq] = Done{
          absl::InternalError(absl::StrCat("forward pass failed: ", logits.status().message()))};
    }
  } else {
    const size_t vocab = static_cast<size_t>(model_->config().vocab_size);
    for (size_t row = 0; row < batch.size(); ++row) {
      const BatchEntry& entry = batch[row];
      ScheduledSequence& seq = *entry.seq;
      const std::span<const float> row_logits(logits->data() + row * vocab, vocab);
      if (!entry.is_decode) {
        seq.prefilled += entry.num_tokens;
        if (!seq.prompt_compressed && seq.prefilled == seq.prompt_tokens()) {
          // The whole prompt is in: compress now, so the blocks it frees are back in the pool
          // before the next admission. After a preemption this re-runs on the same prompt.
          absl::StatusOr<CompressionPlan> plan =
              seq.compression->Apply(*model_->backend(), *cache_, seq.kv, &seq.outcome.kv_stats);
          seq.compression.reset();
          if (!plan.ok()) {
            done[&seq] = Done{absl::InternalError(
                absl::StrCat("KV compression failed: ", plan.status().message()))};
            continue;
          }
          seq.prompt_compressed = true;
        }
        if (seq.prefilled < seq.prefill_target) continue;  // more chunks to come
        seq.phase = SequencePhase::kDecode;
        if (!seq.prefill_done.has_value()) seq.prefill_done = Now();
        if (!seq.prompt_counted) {
          counters_.prompt_tokens += seq.prompt_tokens();
          seq.prompt_counted = true;
        }
      }
      if (std::optional<FinishReason> reason = SampleAndStream(seq, row_logits)) {
        done[&seq] = Done{absl::OkStatus(), *reason};
      }
    }
  }
  if (done.empty()) return 0;
  // Out of running_ first (keeping the admission order of the rest), then finish.
  std::vector<std::unique_ptr<ScheduledSequence>> finished;
  auto kept = std::stable_partition(running_.begin(), running_.end(),
                                    [&done](const auto& seq) { return !done.contains(seq.get()); });
  std::move(kept, running_.end(), std::back_inserter(finished));
  running_.erase(kept, running_.end());
  for (auto& seq : finished) {
    Done& result = done[seq.get()];
    Finish(std::move(seq), std::move(result.status), result.reason);
  }
  return static_cast<int>(finished.size());
}

std::optional<FinishReason> Scheduler::SampleAndStream(ScheduledSequence& seq,
                                                       std::span<const float> logits) {
  const SampledToken sampled = seq.sampler.Sample(logits, seq.context);
  std::optional<FinishReason> reason = AcceptToken(seq, sampled, model_->config());
  ++counters_.generation_tokens;
  const SteadyTime now = Now();
  if (seq.last_token.has_value()) {
    seq.inter_token_seconds.push_back(std::chrono::duration<double>(now - *seq.last_token).count());
  } else {
    seq.first_token = now;
    if (options_.observer != nullptr) {
      options_.observer->OnFirstToken(seq.request.request_id,
                                      std::chrono::duration<double>(now - seq.submitted).count());
    }
  }
  seq.last_token = now;
  if (seq.request.on_tokens) {
    TokenDelta delta;
    delta.tokens.push_back(sampled.token);
    if (seq.request.sampling.logprobs) delta.logprobs.push_back(sampled.logprob);
    seq.request.on_tokens(delta);
  }
  return reason;
}

}  // namespace zigzag
