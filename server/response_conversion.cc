#include "server/response_conversion.h"

namespace zigzag {
v1::KvPolicy ToProtoPolicy(KvPolicy policy) {
  switch (policy) {
    case KvPolicy::kFull:
      return v1::KV_POLICY_FULL;
    case KvPolicy::kStreaming:
      return v1::KV_POLICY_STREAMING;
    case KvPolicy::kSnapKv:
      return v1::KV_POLICY_SNAPKV;
    case KvPolicy::kPyramidKv:
      return v1::KV_POLICY_PYRAMIDKV;
    case KvPolicy::kZigZag:
      return v1::KV_POLICY_ZIGZAG;
  }
  return v1::KV_POLICY_UNSPECIFIED;
}

namespace {

// KvCompression and KvStats spell the policy and its parameters with the same field names.
template <typename Message>
void SetCompressionFields(const CompressionParams& params, Message* out) {
  out->set_policy(ToProtoPolicy(params.policy));
  if (params.policy != KvPolicy::kFull) {
    if (params.tokens_per_layer.has_value()) {
      out->set_tokens_per_layer(static_cast<uint32_t>(*params.tokens_per_layer));
    } else if (params.ratio.has_value()) {
      out->set_ratio(static_cast<float>(*params.ratio));
    }
  }
  out->set_window(static_cast<uint32_t>(params.window));
  out->set_kernel(static_cast<uint32_t>(params.kernel));
  out->set_tau(static_cast<float>(params.tau));
  out->set_rho(static_cast<float>(params.rho));
  out->set_head_budgets(params.head_budgets == HeadBudgets::kAdaptive ? v1::HEAD_BUDGETS_ADAPTIVE
                                                                      : v1::HEAD_BUDGETS_UNIFORM);
  out->set_alpha(static_cast<float>(params.alpha));
}

}  // namespace

v1::FinishReason ToProtoFinishReason(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength:
      return v1::FINISH_REASON_LENGTH;
    case FinishReason::kStop:
      return v1::FINISH_REASON_STOP;
    case FinishReason::kEos:
      return v1::FINISH_REASON_EOS;
    case FinishReason::kAborted:
      return v1::FINISH_REASON_ABORTED;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

void ToProtoCompression(const CompressionParams& params, v1::KvCompression* out) {
  SetCompressionFields(params, out);
}

void ToProtoKvStats(const KvStats& stats, int64_t num_preemptions, v1::KvStats* out) {
  SetCompressionFields(stats.params, out);
  out->set_compressed(stats.compressed);
  out->set_average_budget(stats.average_budget);
  out->set_effective_window(stats.window);
  out->set_prompt_tokens(stats.prompt_tokens);
  out->mutable_prompt_kept_per_layer()->Add(stats.prompt_kept_per_layer.begin(),
                                            stats.prompt_kept_per_layer.end());
  // The split applied: full and streaming ignore an adaptive request.
  out->set_head_budgets(EffectiveHeadBudgets(stats.params) == HeadBudgets::kAdaptive
                            ? v1::HEAD_BUDGETS_ADAPTIVE
                            : v1::HEAD_BUDGETS_UNIFORM);
  out->set_num_kv_heads(stats.prompt_kept_per_head.empty()
                            ? 0
                            : static_cast<int32_t>(stats.prompt_kept_per_head[0].size()));
  for (const std::vector<int64_t>& heads : stats.prompt_kept_per_head) {
    out->mutable_prompt_kept_per_head()->Add(heads.begin(), heads.end());
  }
  out->set_appended_tokens(stats.appended_tokens);
  out->set_full_kv_bytes(stats.full_kv_bytes);
  out->set_retained_kv_bytes(stats.retained_kv_bytes);
  out->set_full_kv_block_bytes(stats.full_kv_block_bytes);
  out->set_retained_kv_block_bytes(stats.retained_kv_block_bytes);
  out->set_saved_kv_bytes(stats.saved_kv_bytes);
  out->set_retained_ratio(stats.retained_ratio);
  out->set_blocks_held(stats.blocks_held);
  out->set_num_preemptions(num_preemptions);
}

void ToProtoResponse(const std::string& request_id, const RequestOutcome& outcome,
                     v1::GenerateResponse* out) {
  out->set_request_id(request_id);
  out->mutable_token_ids()->Add(outcome.tokens.begin(), outcome.tokens.end());
  out->mutable_logprobs()->Add(outcome.logprobs.begin(), outcome.logprobs.end());
  out->set_finish_reason(ToProtoFinishReason(outcome.finish_reason));
  v1::Usage* usage = out->mutable_usage();
  usage->set_prompt_tokens(static_cast<uint32_t>(outcome.prompt_tokens));
  usage->set_completion_tokens(static_cast<uint32_t>(outcome.tokens.size()));
  v1::Timings* timings = out->mutable_timings();
  timings->set_queue_seconds(outcome.timings.queue_seconds);
  timings->set_prefill_seconds(outcome.timings.prefill_seconds);
  timings->set_decode_seconds(outcome.timings.decode_seconds);
  timings->set_ttft_seconds(outcome.timings.ttft_seconds);
  timings->set_e2e_seconds(outcome.timings.e2e_seconds);
  ToProtoKvStats(outcome.kv_stats, outcome.num_preemptions, out->mutable_kv_stats());
}

}  // namespace zigzag
