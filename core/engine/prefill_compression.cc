#include "core/engine/prefill_compression.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/kv/kv_compaction.h"
#include "core/util/status_macros.h"

namespace zigzag {

absl::StatusOr<PrefillCompression> PrefillCompression::Create(const CompressionParams& params,
                                                              const ModelConfig& config,
                                                              Backend& backend,
                                                              int64_t prompt_tokens) {
  RETURN_IF_ERROR(ValidateCompressionParams(params));
  PrefillCompression compression;
  compression.params_ = params;
  compression.num_layers_ = static_cast<int32_t>(config.num_layers);
  compression.num_heads_ = static_cast<int32_t>(config.num_heads);
  compression.num_kv_heads_ = static_cast<int32_t>(config.num_kv_heads);
  compression.prompt_tokens_ = prompt_tokens;
  compression.window_ = static_cast<int32_t>(std::min<int64_t>(params.window, prompt_tokens));
  compression.window_begin_ = static_cast<int32_t>(prompt_tokens - compression.window_);
  if (NeedsWindowSummary(params, prompt_tokens)) {
    for (int32_t l = 0; l < compression.num_layers_; ++l) {
      ASSIGN_OR_RETURN(Tensor mass,
                       backend.AllocateZeros(DType::kF32, {config.num_heads, prompt_tokens}));
      compression.window_mass_.push_back(std::move(mass));
    }
  }
  return compression;
}

bool PrefillCompression::NeedsWindowSummary(const CompressionParams& params,
                                            int64_t prompt_tokens) {
  const bool scores_tokens = params.policy == KvPolicy::kSnapKv ||
                             params.policy == KvPolicy::kPyramidKv ||
                             params.policy == KvPolicy::kZigZag;
  return scores_tokens && prompt_tokens > AverageBudget(params, prompt_tokens);
}

WindowSummary PrefillCompression::SummaryShape() const {
  WindowSummary summary;
  summary.num_layers = num_layers_;
  summary.prompt_tokens = prompt_tokens_;
  summary.window = window_;
  summary.num_heads = num_heads_;
  summary.num_kv_heads = num_kv_heads_;
  return summary;
}

absl::StatusOr<WindowSummary> PrefillCompression::ReadSummary(Backend& backend) const {
  WindowSummary summary = SummaryShape();
  for (const Tensor& mass : window_mass_) {
    std::vector<float>& host = summary.window_mass.emplace_back(mass.numel());
    RETURN_IF_ERROR(backend.CopyToHost(mass, host));
  }
  return summary;
}

absl::StatusOr<CompressionPlan> PrefillCompression::Apply(Backend& backend, KvCache& cache,
                                                          SequenceKv& kv, KvStats* stats) {
  ASSIGN_OR_RETURN(WindowSummary summary, ReadSummary(backend));
  window_mass_.clear();  // the device summaries are not needed any more
  return ApplyWithSummary(summary, backend, cache, kv, stats);
}

absl::StatusOr<CompressionPlan> PrefillCompression::ApplyWithSummary(const WindowSummary& measured,
                                                                     Backend& backend,
                                                                     KvCache& cache, SequenceKv& kv,
                                                                     KvStats* stats) {
  WindowSummary summary = SummaryShape();
  if (NeedsWindowSummary(params_, prompt_tokens_)) {
    if (measured.window != window_ || measured.prompt_tokens != prompt_tokens_ ||
        static_cast<int32_t>(measured.window_mass.size()) != num_layers_) {
      return absl::InvalidArgumentError(
          absl::StrCat("window summaries measured for a window of ", measured.window, " over ",
                       measured.prompt_tokens, " tokens in ", measured.window_mass.size(),
                       " layers; this compression needs a window of ", window_, " over ",
                       prompt_tokens_, " tokens in ", num_layers_, " layers"));
    }
    summary.window_mass = measured.window_mass;
  }
  ASSIGN_OR_RETURN(CompressionPlan plan, PlanCompression(params_, summary));
  RETURN_IF_ERROR(CompactSequenceKv(plan, backend, cache, kv));
  stats->params = params_;
  stats->average_budget = plan.average_budget;
  stats->window = window_;
  stats->compressed = plan.compressed;
  stats->prompt_tokens = prompt_tokens_;
  stats->prompt_kept_per_layer = plan.budgets;
  stats->prompt_kept_per_head.assign(num_layers_, {});
  for (int32_t l = 0; l < num_layers_; ++l) {
    // head_counts is filled whenever the plan compresses; otherwise every head keeps the layer's.
    stats->prompt_kept_per_head[l] = plan.head_counts.empty()
                                         ? std::vector<int64_t>(num_kv_heads_, plan.budgets[l])
                                         : plan.head_counts[l];
  }
  return plan;
}

}  // namespace zigzag
