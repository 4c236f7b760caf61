// Admission rules the scheduler applies to an EngineRequest before queueing it: the field checks
// (shared with offline generation) and whether the request could ever fit in the KV pool.
// Stateless; the queue, draining and duplicate-id checks are the Scheduler's.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "core/kv/kv_cache.h"
#include "core/model/model_config.h"
#include "core/scheduler/request.h"

namespace zigzag {

// InvalidArgument naming the field: empty request_id, no on_finish, an empty prompt or a token
// outside the vocabulary, bad sampling or kv_compression parameters, prompt + max_tokens beyond
// the model's context.
absl::Status ValidateEngineRequest(const EngineRequest& request, const ModelConfig& config);

// The most KV blocks one request can ever need at once, with every layer uncompressed:
// L * ceil((T + max_tokens - 1) / block_size). The cache holds at most T + max_tokens - 1 entries
// because the last sampled token is never fed back. It covers the prompt's transient full KV
// before compression, a recompute after preemption (prompt + generated tokens) and a full-policy
// request at its longest. Compression may need less later, but admission and recompute need this
// much, so it is the bound we admit against.
int64_t PeakKvBlocks(int64_t prompt_tokens, int32_t max_tokens, const KvLayout& layout);

// ResourceExhausted when PeakKvBlocks exceeds the whole pool: such a request could never run,
// even alone, so it is refused at once instead of waiting forever.
absl::Status CheckFitsInPool(const EngineRequest& request, const KvLayout& layout,
                             int32_t pool_blocks);

}  // namespace zigzag
