#include "core/compress/compression_params.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace zigzag {
namespace {

constexpr KvPolicy kAllPolicies[] = {KvPolicy::kFull, KvPolicy::kStreaming, KvPolicy::kSnapKv,
                                     KvPolicy::kPyramidKv, KvPolicy::kZigZag};
constexpr HeadBudgets kAllHeadBudgets[] = {HeadBudgets::kUniform, HeadBudgets::kAdaptive};

absl::Status Invalid(const std::string& message) {
  return absl::InvalidArgumentError(absl::StrCat("kv_compression.", message));
}

}  // namespace

const char* KvPolicyName(KvPolicy policy) {
  switch (policy) {
    case KvPolicy::kFull:
      return "full";
    case KvPolicy::kStreaming:
      return "streaming";
    case KvPolicy::kSnapKv:
      return "snapkv";
    case KvPolicy::kPyramidKv:
      return "pyramidkv";
    case KvPolicy::kZigZag:
      return "zigzag";
  }
  return "unknown";
}

absl::StatusOr<KvPolicy> ParseKvPolicy(const std::string& name) {
  std::string accepted;
  for (KvPolicy policy : kAllPolicies) {
    if (name == KvPolicyName(policy)) return policy;
    absl::StrAppend(&accepted, accepted.empty() ? "" : ", ", KvPolicyName(policy));
  }
  return Invalid(absl::StrCat("policy \"", name, "\" is unknown; accepted: ", accepted));
}

const char* HeadBudgetsName(HeadBudgets head_budgets) {
  switch (head_budgets) {
    case HeadBudgets::kUniform:
      return "uniform";
    case HeadBudgets::kAdaptive:
      return "adaptive";
  }
  return "unknown";
}

absl::StatusOr<HeadBudgets> ParseHeadBudgets(const std::string& name) {
  std::string accepted;
  for (HeadBudgets head_budgets : kAllHeadBudgets) {
    if (name == HeadBudgetsName(head_budgets)) return head_budgets;
    absl::StrAppend(&accepted, accepted.empty() ? "" : ", ", HeadBudgetsName(head_budgets));
  }
  return Invalid(absl::StrCat("head_budgets \"", name, "\" is unknown; accepted: ", accepted));
}

absl::Status ValidateCompressionParams(const CompressionParams& params) {
  if (params.window < 1) {
    return Invalid(absl::StrCat("window must be >= 1, got ", params.window));
  }
  if (params.kernel < 1 || params.kernel % 2 == 0) {
    return Invalid(absl::StrCat("kernel must be an odd number >= 1, got ", params.kernel));
  }
  // Written as !(inside) so that NaN is rejected too.
  if (!(params.tau > 0.0 && params.tau <= 1.0)) {
    return Invalid(absl::StrFormat("tau must be in (0, 1], got %g", params.tau));
  }
  if (!(params.rho >= 0.0 && params.rho <= 1.0)) {
    return Invalid(absl::StrFormat("rho must be in [0, 1], got %g", params.rho));
  }
  if (!(params.pyramid_beta > 1.0 && std::isfinite(params.pyramid_beta))) {
    return Invalid(
        absl::StrFormat("pyramid_beta must be a finite number > 1, got %g", params.pyramid_beta));
  }
  if (params.sink_tokens < 0) {
    return Invalid(absl::StrCat("sink_tokens must be >= 0, got ", params.sink_tokens));
  }
  // An enum is only as good as the integer it was cast from (a proto value, a flag).
  if (params.head_budgets != HeadBudgets::kUniform &&
      params.head_budgets != HeadBudgets::kAdaptive) {
    return Invalid(absl::StrCat("head_budgets must be uniform or adaptive, got value ",
                                static_cast<int>(params.head_budgets)));
  }
  if (!(params.alpha >= 0.0 && params.alpha <= 1.0)) {
    return Invalid(absl::StrFormat("alpha must be in [0, 1], got %g", params.alpha));
  }
  // Full keeps everything: a budget, if one is sent, is ignored rather than judged.
  if (params.policy == KvPolicy::kFull) return absl::OkStatus();

  const char* policy = KvPolicyName(params.policy);
  if (params.tokens_per_layer.has_value() && params.ratio.has_value()) {
    return Invalid(absl::StrCat("tokens_per_layer and ratio are both set; policy ", policy,
                                " takes exactly one of them"));
  }
  if (!params.tokens_per_layer.has_value() && !params.ratio.has_value()) {
    return Invalid(absl::StrCat("policy ", policy,
                                " needs a budget: set tokens_per_layer or ratio (neither is set)"));
  }
  if (params.ratio.has_value() && !(*params.ratio > 0.0 && *params.ratio <= 1.0)) {
    return Invalid(absl::StrFormat("ratio must be in (0, 1], got %g", *params.ratio));
  }
  if (params.tokens_per_layer.has_value()) {
    const int64_t tokens = *params.tokens_per_layer;
    if (tokens < params.window) {
      return Invalid(absl::StrCat("tokens_per_layer (", tokens, ") is below the window (",
                                  params.window, "): the budget includes the window"));
    }
    if (params.policy == KvPolicy::kStreaming && params.sink_tokens >= tokens) {
      return Invalid(absl::StrCat("sink_tokens (", params.sink_tokens,
                                  ") must be below tokens_per_layer (", tokens,
                                  ") for streaming, which keeps recent tokens after the sinks"));
    }
  }
  return absl::OkStatus();
}

HeadBudgets EffectiveHeadBudgets(const CompressionParams& params) {
  switch (params.policy) {
    case KvPolicy::kSnapKv:
    case KvPolicy::kPyramidKv:
    case KvPolicy::kZigZag:
      return params.head_budgets;
    case KvPolicy::kFull:
    case KvPolicy::kStreaming:
      break;
  }
  return HeadBudgets::kUniform;
}

int64_t AverageBudget(const CompressionParams& params, int64_t prompt_tokens) {
  if (params.policy == KvPolicy::kFull) return prompt_tokens;
  int64_t budget = prompt_tokens;  // no budget at all (invalid params): compress nothing
  if (params.tokens_per_layer.has_value()) {
    budget = *params.tokens_per_layer;
  } else if (params.ratio.has_value()) {
    // ratio * T is rounded up, but a product within 1e-9 (relative) of an integer counts as that
    // integer: 0.1 * 30 is 3.0000000000000004 in binary and must give 3, not 4.
    const double product = *params.ratio * static_cast<double>(prompt_tokens);
    const double below = std::floor(product);
    budget = static_cast<int64_t>(
        product - below <= 1e-9 * std::max(1.0, product) ? below : std::ceil(product));
    budget = std::max<int64_t>(budget, 1);
  }
  // (ours) The window is always kept, so a budget below it (only a ratio can give one: a
  // tokens_per_layer below the window is rejected) is raised to w_eff = min(window, T).
  const int64_t window = std::min<int64_t>(std::max<int32_t>(params.window, 0), prompt_tokens);
  return std::max(budget, window);
}

}  // namespace zigzag
