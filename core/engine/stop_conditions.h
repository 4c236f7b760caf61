// When a generated sequence stops: its stop token ids, the model's EOS, a caller's text check
// (stop strings need the detokenized text, and the engine has no tokenizer) and max_tokens.
// Shared by offline generation and the scheduler so both stop on the same token; it owns no state.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>

#include "core/sampling/sampling_params.h"

namespace zigzag {

enum class FinishReason { kLength, kStop, kEos, kAborted };
const char* FinishReasonName(FinishReason reason);

// Called once for every generated token, in order, on the thread that samples; true ends the
// sequence with kStop. A request's check may keep state (an incremental detokenizer): it is
// never called twice for one token, even when the sequence is recomputed after a preemption.
using TextStopCheck = std::function<bool(int32_t token)>;

// The reason `token`, the sequence's `generated_count`-th generated token, ends it, checked in
// this order: stop token ids, EOS (unless ignore_eos), the text check, max_tokens. The text check
// sees every token, including one that ends the sequence for another reason.
std::optional<FinishReason> StopReason(const SamplingParams& params,
                                       std::span<const int32_t> eos_token_ids, int32_t token,
                                       int64_t generated_count, const TextStopCheck& text_stop);

}  // namespace zigzag
