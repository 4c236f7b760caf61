// Turning the scheduler's results into zigzag.v1 messages: finish reasons, KvStats, timings and
// the final GenerateResponse. Pure conversion; no validation and no I/O.
#pragma once

#include <string>

#include "core/compress/compression_params.h"
#include "core/engine/generation.h"
#include "core/kv/kv_stats.h"
#include "core/scheduler/request.h"
#include "zigzag/v1/engine.pb.h"

namespace zigzag {

v1::KvPolicy ToProtoPolicy(KvPolicy policy);
v1::FinishReason ToProtoFinishReason(FinishReason reason);

// Policy, budget (when the policy has one) and parameters.
void ToProtoCompression(const CompressionParams& params, v1::KvCompression* out);

void ToProtoKvStats(const KvStats& stats, int64_t num_preemptions, v1::KvStats* out);

// The complete response for an outcome that ended OK (or CANCELLED by Abort, which the caller
// reports as FINISH_REASON_ABORTED): tokens, logprobs, usage, timings and KvStats.
void ToProtoResponse(const std::string& request_id, const RequestOutcome& outcome,
                     v1::GenerateResponse* out);

}  // namespace zigzag
