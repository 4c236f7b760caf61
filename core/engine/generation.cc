#include "core/engine/generation.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "core/engine/prefill_compression.h"
#include "core/kv/sequence_kv.h"
#include "core/sampling/sampler.h"
#include "core/util/status_macros.h"

namespace zigzag {

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength:
      return "length";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kEos:
      return "eos";
    case FinishReason::kAborted:
      return "aborted";
  }
  return "?";
}

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
  if (std::find(params.stop_token_ids.begin(), params.stop_token_ids.end(), sampled.token) !=
      params.stop_token_ids.end()) {
    seq.result->finish_reason = FinishReason::kStop;
    seq.done = true;
  } else if (!params.ignore_eos &&
             std::find(config.eos_token_ids.begin(), config.eos_token_ids.end(), sampled.token) !=
                 config.eos_token_ids.end()) {
    seq.result->finish_reason = FinishReason::kEos;
    seq.done = true;
  } else if (static_cast<int32_t>(seq.result->tokens.size()) >= params.max_tokens) {
    seq.result->finish_reason = FinishReason::kLength;
    seq.done = true;
  }
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
  for (size_t i = 0; i < requests.size(); ++i) {
    active.push_back(ActiveSequence{&requests[i], &results[i],
                                    SequenceKv(&cache.pool(), num_layers),
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
  const size_t vocab = static_cast<size_t>(config.vocab_size);
  for (size_t s = 0; s < active.size(); ++s) {
    std::span<const float> row(logits.data() + s * vocab, vocab);
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
          stats.appended_tokens = seq.kv.length(0) - stats.prompt_kept_per_layer[0];
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
  return results;
}

}  // namespace zigzag
