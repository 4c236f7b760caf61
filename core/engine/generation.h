// Offline generation: prefill a set of prompts together, then decode them step by step as one
// batch until each stops. For the CLI, tests and benchmarks; the serving path uses the scheduler.
// Owns nothing between calls: every sequence's KV blocks are returned before it returns.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "core/compress/compression_params.h"
#include "core/compress/policy.h"
#include "core/engine/stop_conditions.h"
#include "core/kv/kv_cache.h"
#include "core/kv/kv_stats.h"
#include "core/model/llama_model.h"
#include "core/sampling/sampling_params.h"

namespace zigzag {

struct GenerationRequest {
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  CompressionParams compression;  // applied once, at the end of the prompt's prefill
  bool return_plan = false;       // copy the compression plan (kept positions) into the result
  TextStopCheck text_stop;        // optional: stop strings, checked by the caller's detokenizer
};

struct GenerationResult {
  // Generated tokens; a stop or EOS token that ended the sequence is included (as in vLLM's
  // token ids), and finish_reason says which it was.
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;  // filled when sampling.logprobs
  FinishReason finish_reason = FinishReason::kLength;
  // The sequence's KV memory when it finished, next to what a full cache would hold.
  KvStats kv_stats;
  CompressionPlan plan;  // when request.return_plan
};

// InvalidArgument for an empty prompt, an id outside the vocabulary, bad sampling or compression
// parameters, or prompt + max_tokens beyond the model's context; ResourceExhausted when the KV pool
// cannot hold the batch (the pool is left as it was).
absl::Status ValidateGenerationRequest(const GenerationRequest& request, const ModelConfig& config);

absl::StatusOr<std::vector<GenerationResult>> GenerateBatch(
    LlamaModel& model, KvCache& cache, std::span<const GenerationRequest> requests);

// One prompt continued under several requests' sampling and compression, with its prefill
// computed once: after the prefill the cache is forked for each request (Backend::CopyBlocks) and
// compressed by that request's policy. The results equal GenerateBatch's on the same requests,
// since the prefill's logits, KV and window summaries do not depend on the policy; it is only
// cheaper (for policy comparisons such as needle-in-a-haystack grids). InvalidArgument also when
// the prompts differ, or when policies that score tokens ask for different windows.
absl::StatusOr<std::vector<GenerationResult>> GenerateFromSharedPrefill(
    LlamaModel& model, KvCache& cache, std::span<const GenerationRequest> requests);

}  // namespace zigzag
