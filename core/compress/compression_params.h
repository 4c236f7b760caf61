// Per-request KV compression parameters (policy, budget, window, kernel, tau, rho, head split and
// alpha), their defaults and validation. Plain data; the policies that use them live in policy.h.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace zigzag {

enum class KvPolicy { kFull, kStreaming, kSnapKv, kPyramidKv, kZigZag };

const char* KvPolicyName(KvPolicy policy);  // "full", "streaming", "snapkv", "pyramidkv", "zigzag"
// InvalidArgument naming the accepted names for anything else.
absl::StatusOr<KvPolicy> ParseKvPolicy(const std::string& name);

// How a layer's budget B_l is split across its KV heads (ZIGZAG.md section 8): uniform (every head
// keeps B_l) or adaptive (AdaKV: a per-head floor, the rest to the best scores of all heads).
enum class HeadBudgets { kUniform, kAdaptive };

const char* HeadBudgetsName(HeadBudgets head_budgets);  // "uniform", "adaptive"
// InvalidArgument naming the accepted names for anything else.
absl::StatusOr<HeadBudgets> ParseHeadBudgets(const std::string& name);

struct CompressionParams {
  KvPolicy policy = KvPolicy::kFull;
  // The average budget B_avg, window included: exactly one of the two for every policy but full.
  std::optional<int64_t> tokens_per_layer;
  std::optional<double> ratio;  // B_avg = ceil(ratio * T), ratio in (0, 1]
  int32_t window = 32;          // observation window w (w_eff = min(w, T))
  int32_t kernel = 7;           // max-pool kernel k, odd
  double tau = 0.9;             // LMBA attention-mass threshold, (0, 1]
  double rho = 0.2;             // ZigZag floor as a fraction of B_avg, [0, 1]
  double pyramid_beta = 20.0;   // PyramidKV: min = m / beta, > 1
  int32_t sink_tokens = 4;      // StreamingLLM attention sinks, >= 0
  // The split of each layer's budget across its KV heads. Adaptive applies to the scoring policies
  // (snapkv, pyramidkv, zigzag). full and streaming ignore it and keep the same positions in every
  // head: they have no scores to split by. Ignoring (not rejecting) it is what a vLLM user expects
  // of a setting that does not apply to the chosen mode (vLLM drops top_k/top_p under greedy
  // sampling), and it lets a server default of adaptive coexist with requests for full or
  // streaming; the plan reports the split it actually applied (EffectiveHeadBudgets).
  HeadBudgets head_budgets = HeadBudgets::kUniform;
  double alpha = 0.2;  // adaptive: per-head floor as a fraction of B_l - w_eff, [0, 1]
};

// InvalidArgument naming the field: both or neither budget (for non-full policies), ratio outside
// (0, 1], tokens_per_layer < window (the budget includes the window), window < 1, even or
// non-positive kernel, tau outside (0, 1], rho outside [0, 1], beta <= 1, sink_tokens < 0 or
// sink_tokens >= tokens_per_layer (streaming), head_budgets not a known value, alpha outside
// [0, 1] (checked for every policy, as rho is, so a bad server default fails at start-up).
absl::Status ValidateCompressionParams(const CompressionParams& params);

// The head split a plan with these params applies: head_budgets for snapkv, pyramidkv and zigzag;
// uniform for full and streaming, which ignore it (see CompressionParams::head_budgets).
HeadBudgets EffectiveHeadBudgets(const CompressionParams& params);

// B_avg for a prompt of T tokens: tokens_per_layer, or ceil(ratio * T) (at least 1). For full: T.
// (ours) Never below w_eff = min(window, T): the window is always kept, so a small ratio is raised.
int64_t AverageBudget(const CompressionParams& params, int64_t prompt_tokens);

}  // namespace zigzag
