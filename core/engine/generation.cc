#include "core/engine/generation.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "core/engine/prefill_compression.h"
#include "core/kv/kv_fork.h"
#include "core/kv/sequence_kv.h"
#include "core/sampling/sampler.h"
#include "core/util/status_macros.h"

namespace zigzag {

absl::Status ValidateGenerationRequest(const GenerationRequest& request,
                                       const ModelConfig& config) {
  if (request.prompt.empty()) return absl::InvalidArgumentError("prompt is empty");
  for (size_t i = 0; i < request.prompt.size(); ++i) {
    const int32_t id = request.prompt[i];
    if (id < 0 || id >= config.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("prompt token ", i, " has id ", id,
                                                     ", outside the vocabulary [0, ",
                                                     config.vocab_size, ")"));
    }
  }
  RETURN_IF_ERROR(ValidateSamplingParams(request.sampling, config.vocab_size));
  RETURN_IF_ERROR(ValidateCompressionParams(request.compression));
  const int64_t needed = static_cast<int64_t>(request.prompt.size()) + request.sampling.max_tokens;
  if (needed > config.max_context()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt of ", request.prompt.size(), " tokens + max_tokens ", request.sampling.max_tokens,
        " exceeds the model's context of ", config.max_context(), " tokens"));
  }
  return absl::OkStatus();
}

namespace {

struct ActiveSequence {
  const GenerationRequest* request;
  GenerationResult* result;
  SequenceKv kv;
  Sampler sampler;
  std::vector<int32_t> context;  // prompt + generated, for the repetition penalty
  int64_t next_position = 0;
  bool done = false;
  std::optional<PrefillCompression> compression;
};

// Appends the sampled token and decides whether the sequence stops.
void Accept(ActiveSequence& seq, const SampledToken& sampled, const ModelConfig& config) {
  const SamplingParams& params = seq.request->sampling;
  seq.result->tokens.push_back(sampled.token);
  if (params.logprobs) seq.result->logprobs.push_back(sampled.logprob);
  seq.context.push_back(sampled.token);
  const std::optional<FinishReason> reason =
      StopReason(params, config.eos_token_ids, sampled.token,
                 static_cast<int64_t>(seq.result->tokens.size()), seq.request->text_stop);
  if (reason.has_value()) {
    seq.result->finish_reason = *reason;
    seq.done = true;
  }
}

// Samples each sequence's first token from its row of the prefill logits, then decodes every
// unfinished sequence by one token per step until all stop; blocks are released as each stops.
absl::Status SampleFirstAndDecode(LlamaModel& model, KvCache& cache,
                                  std::span<const float> prefill_logits,
                                  std::vector<ActiveSequence>& active) {
  const ModelConfig& config = model.config();
  std::vector<ForwardSequence> batch;
  std::vector<float> logits;
  const size_t vocab = static_cast<size_t>(config.vocab_size);
  for (size_t s = 0; s < active.size(); ++s) {
    std::span<const float> row(prefill_logits.data() + s * vocab, vocab);
    Accept(active[s], active[s].sampler.Sample(row, active[s].context), config);
  }

  // Decode: every unfinished sequence advances by one token per step.
  std::vector<ActiveSequence*> running;
  while (true) {
    running.clear();
    batch.clear();
    for (ActiveSequence& seq : active) {
      if (seq.done) {
        if (seq.kv.blocks_held() > 0) {
          // Finished: record what it held, then give the blocks back at once.
          KvStats& stats = seq.result->kv_stats;
          stats.appended_tokens = seq.kv.length(0, 0) - stats.prompt_kept_per_head[0][0];
          FillKvMemoryStats(seq.kv, cache.layout(), &stats);
          seq.kv.Release();
        }
        continue;
      }
      RETURN_IF_ERROR(seq.kv.AppendAllLayers(1));
      running.push_back(&seq);
    }
    if (running.empty()) break;
    for (ActiveSequence* seq : running) {
      batch.push_back(ForwardSequence{.tokens = std::span<const int32_t>(&seq->context.back(), 1),
                                      .first_position = seq->next_position,
                                      .kv = &seq->kv});
    }
    ASSIGN_OR_RETURN(logits, model.Forward(batch, &cache));
    for (size_t s = 0; s < running.size(); ++s) {
      ActiveSequence& seq = *running[s];
      ++seq.next_position;
      std::span<const float> row(logits.data() + s * vocab, vocab);
      Accept(seq, seq.sampler.Sample(row, seq.context), config);
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<GenerationResult>> GenerateBatch(
    LlamaModel& model, KvCache& cache, std::span<const GenerationRequest> requests) {
  const ModelConfig& config = model.config();
  for (size_t i = 0; i < requests.size(); ++i) {
    absl::Status valid = ValidateGenerationRequest(requests[i], config);
    if (!valid.ok()) {
      return absl::Status(valid.code(), absl::StrCat("request ", i, ": ", valid.message()));
    }
  }
  std::vector<GenerationResult> results(requests.size());
  if (requests.empty()) return results;

  // SequenceKv releases its blocks when `active` goes out of scope, on every return path.
  std::vector<ActiveSequence> active;
  active.reserve(requests.size());
  const int num_layers = static_cast<int>(config.num_layers);
  const int num_kv_heads = static_cast<int>(config.num_kv_heads);
  for (size_t i = 0; i < requests.size(); ++i) {
    active.push_back(ActiveSequence{&requests[i], &results[i],
                                    SequenceKv(&cache.pool(), num_layers, num_kv_heads),
                                    Sampler(requests[i].sampling), requests[i].prompt, 0, false});
  }

  // Prefill every prompt in one ragged batch, measuring what compression needs on the way.
  std::vector<ForwardSequence> batch;
  for (ActiveSequence& seq : active) {
    const int64_t prompt_tokens = static_cast<int64_t>(seq.request->prompt.size());
    RETURN_IF_ERROR(seq.kv.AppendAllLayers(prompt_tokens));
    ASSIGN_OR_RETURN(seq.compression, PrefillCompression::Create(seq.request->compression, config,
                                                                 *model.backend(), prompt_tokens));
    batch.push_back(ForwardSequence{.tokens = seq.request->prompt,
                                    .first_position = 0,
                                    .kv = &seq.kv,
                                    .window_mass = seq.compression->window_mass(),
                                    .window_begin = seq.compression->window_begin()});
    seq.next_position = prompt_tokens;
  }
  ASSIGN_OR_RETURN(std::vector<float> logits, model.Forward(batch, &cache));
  // Compress each sequence's cache now that its whole prompt is in it; freed blocks go back to
  // the pool before decoding starts.
  for (ActiveSequence& seq : active) {
    ASSIGN_OR_RETURN(CompressionPlan plan, seq.compression->Apply(*model.backend(), cache, seq.kv,
                                                                  &seq.result->kv_stats));
    if (seq.request->return_plan) seq.result->plan = std::move(plan);
    seq.compression.reset();
  }
  RETURN_IF_ERROR(SampleFirstAndDecode(model, cache, logits, active));
  return results;
}

absl::StatusOr<std::vector<GenerationResult>> GenerateFromSharedPrefill(
    LlamaModel& model, KvCache& cache, std::span<const GenerationRequest> requests) {
  const ModelConfig& config = model.config();
  std::vector<GenerationResult> results(requests.size());
  if (requests.empty()) return results;
  std::optional<int32_t> scoring_window;
  for (size_t i = 0; i < requests.size(); ++i) {
    absl::Status valid = ValidateGenerationRequest(requests[i], config);
    if (valid.ok() && requests[i].prompt != requests[0].prompt) {
      valid = absl::InvalidArgumentError("its prompt differs from request 0's");
    }
    const CompressionParams& params = requests[i].compression;
    if (valid.ok() && PrefillCompression::NeedsWindowSummary(params, requests[i].prompt.size())) {
      if (scoring_window.has_value() && *scoring_window != params.window) {
        valid = absl::InvalidArgumentError(absl::StrCat("its compression window ", params.window,
                                                        " differs from another's ", *scoring_window,
                                                        "; one prefill measures one window"));
      }
      scoring_window = params.window;
    }
    if (!valid.ok()) {
      return absl::Status(valid.code(), absl::StrCat("request ", i, ": ", valid.message()));
    }
  }
  Backend& backend = *model.backend();
  const std::vector<int32_t>& prompt = requests[0].prompt;
  const int64_t prompt_tokens = static_cast<int64_t>(prompt.size());
  const int num_layers = static_cast<int>(config.num_layers);
  const int num_kv_heads = static_cast<int>(config.num_kv_heads);

  // One prefill, measuring the window summaries with the parameters of a policy that needs them.
  CompressionParams measuring;
  for (const GenerationRequest& request : requests) {
    if (PrefillCompression::NeedsWindowSummary(request.compression, prompt_tokens)) {
      measuring = request.compression;
      break;
    }
  }
  WindowSummary summary;
  std::vector<float> logits;
  SequenceKv prefilled(&cache.pool(), num_layers, num_kv_heads);
  {
    RETURN_IF_ERROR(prefilled.AppendAllLayers(prompt_tokens));
    ASSIGN_OR_RETURN(PrefillCompression measured,
                     PrefillCompression::Create(measuring, config, backend, prompt_tokens));
    const ForwardSequence sequence{.tokens = prompt,
                                   .first_position = 0,
                                   .kv = &prefilled,
                                   .window_mass = measured.window_mass(),
                                   .window_begin = measured.window_begin()};
    ASSIGN_OR_RETURN(logits, model.Forward({&sequence, 1}, &cache));
    ASSIGN_OR_RETURN(summary, measured.ReadSummary(backend));
  }

  // Each request gets a copy of the prefilled cache, compressed at once so that the pool only
  // ever holds the prefill plus one uncompressed copy.
  std::vector<ActiveSequence> active;
  active.reserve(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    ASSIGN_OR_RETURN(SequenceKv kv, ForkSequenceKv(prefilled, backend, cache));
    ASSIGN_OR_RETURN(
        PrefillCompression compression,
        PrefillCompression::Create(requests[i].compression, config, backend, prompt_tokens));
    ASSIGN_OR_RETURN(CompressionPlan plan, compression.ApplyWithSummary(summary, backend, cache, kv,
                                                                        &results[i].kv_stats));
    if (requests[i].return_plan) results[i].plan = std::move(plan);
    active.push_back(ActiveSequence{&requests[i], &results[i], std::move(kv),
                                    Sampler(requests[i].sampling), prompt, prompt_tokens, false});
  }
  prefilled.Release();

  // Every request continues from the same last-position logits.
  const size_t vocab = static_cast<size_t>(config.vocab_size);
  std::vector<float> repeated(vocab * active.size());
  for (size_t s = 0; s < active.size(); ++s) {
    std::copy(logits.end() - vocab, logits.end(), repeated.begin() + s * vocab);
  }
  RETURN_IF_ERROR(SampleFirstAndDecode(model, cache, repeated, active));
  return results;
}

}  // namespace zigzag
