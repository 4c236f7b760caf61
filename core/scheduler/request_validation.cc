#include "core/scheduler/request_validation.h"

#include "absl/strings/str_cat.h"
#include "core/engine/generation.h"
#include "core/kv/block_pool.h"

namespace zigzag {

absl::Status ValidateEngineRequest(const EngineRequest& request, const ModelConfig& config) {
  if (request.request_id.empty()) return absl::InvalidArgumentError("request_id is empty");
  if (!request.on_finish) {
    return absl::InvalidArgumentError(
        absl::StrCat("request ", request.request_id, ": on_finish callback is required"));
  }
  // The prompt, sampling, compression and context checks are offline generation's, so both paths
  // accept exactly the same requests.
  GenerationRequest as_generation;
  as_generation.prompt = request.prompt;
  as_generation.sampling = request.sampling;
  as_generation.compression = request.compression;
  return ValidateGenerationRequest(as_generation, config);
}

int64_t PeakKvBlocks(int64_t prompt_tokens, int32_t max_tokens, const KvLayout& layout) {
  const int64_t entries = prompt_tokens + max_tokens - 1;
  return layout.BlocksForTokensAllStreams(entries);
}

absl::Status CheckFitsInPool(const EngineRequest& request, const KvLayout& layout,
                             int32_t pool_blocks) {
  const int64_t prompt_tokens = static_cast<int64_t>(request.prompt.size());
  const int64_t peak = PeakKvBlocks(prompt_tokens, request.sampling.max_tokens, layout);
  if (peak > pool_blocks) {
    return absl::ResourceExhaustedError(
        absl::StrCat("request ", request.request_id, " can never fit in the KV cache: a prompt of ",
                     prompt_tokens, " tokens + max_tokens ", request.sampling.max_tokens,
                     " needs up to ", peak, " blocks (", layout.num_layers, " layers x ",
                     layout.num_kv_heads, " KV heads x ", layout.block_size,
                     " tokens per block, uncompressed) but the pool has ", pool_blocks, " blocks"));
  }
  return absl::OkStatus();
}

}  // namespace zigzag
