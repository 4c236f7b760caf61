#include "core/engine/stop_conditions.h"

#include <algorithm>

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

std::optional<FinishReason> StopReason(const SamplingParams& params,
                                       std::span<const int32_t> eos_token_ids, int32_t token,
                                       int64_t generated_count, const TextStopCheck& text_stop) {
  // The text check runs first so that its detokenizer sees every token.
  const bool text_says_stop = text_stop ? text_stop(token) : false;
  const auto contains = [token](std::span<const int32_t> ids) {
    return std::find(ids.begin(), ids.end(), token) != ids.end();
  };
  if (contains(params.stop_token_ids)) return FinishReason::kStop;
  if (!params.ignore_eos && contains(eos_token_ids)) return FinishReason::kEos;
  if (text_says_stop) return FinishReason::kStop;
  if (generated_count >= params.max_tokens) return FinishReason::kLength;
  return std::nullopt;
}

}  // namespace zigzag
