// One sequence's KV compression at the end of its prefill: it allocates the per-layer window
// summaries the prefill must fill (only for policies that score tokens, and only when the prompt
// exceeds the budget), then plans with core/compress and compacts with core/kv. Used once per
// sequence by whoever runs prefills (offline generation, the scheduler).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "core/compress/compression_params.h"
#include "core/compress/policy.h"
#include "core/kv/kv_cache.h"
#include "core/kv/kv_stats.h"
#include "core/kv/sequence_kv.h"
#include "core/model/model_config.h"
#include "kernels/backend.h"

namespace zigzag {

class PrefillCompression {
 public:
  // InvalidArgument for bad params (ValidateCompressionParams); ResourceExhausted when the
  // summaries ([num_heads, T] float32 per layer) cannot be allocated.
  static absl::StatusOr<PrefillCompression> Create(const CompressionParams& params,
                                                   const ModelConfig& config, Backend& backend,
                                                   int64_t prompt_tokens);

  // What ForwardSequence needs: the summaries (empty when none are measured) and the first cache
  // index of the observation window.
  std::span<Tensor> window_mass() { return window_mass_; }
  int32_t window_begin() const { return window_begin_; }

  // Whether a prompt of `prompt_tokens` under `params` needs window summaries measured during
  // its prefill (policies that score tokens, when the prompt exceeds the budget).
  static bool NeedsWindowSummary(const CompressionParams& params, int64_t prompt_tokens);

  // After the prompt's last prefill chunk: reads the summaries, plans, compacts the sequence's
  // cache and fills the policy part of `stats` (params, budget, per-layer kept tokens).
  absl::StatusOr<CompressionPlan> Apply(Backend& backend, KvCache& cache, SequenceKv& kv,
                                        KvStats* stats);

  // The summaries measured so far, on the host (empty window_mass when none are measured).
  absl::StatusOr<WindowSummary> ReadSummary(Backend& backend) const;
  // Apply with summaries read earlier, possibly measured for another policy with the same
  // window over the same prefill; ignored when this compression needs none.
  absl::StatusOr<CompressionPlan> ApplyWithSummary(const WindowSummary& measured, Backend& backend,
                                                   KvCache& cache, SequenceKv& kv, KvStats* stats);

 private:
  // A summary with this compression's dimensions and no masses.
  WindowSummary SummaryShape() const;

  CompressionParams params_;
  int32_t num_layers_ = 0;
  int32_t num_heads_ = 0;
  int32_t num_kv_heads_ = 0;
  int64_t prompt_tokens_ = 0;
  int32_t window_ = 0;  // w_eff
  int32_t window_begin_ = 0;
  std::vector<Tensor> window_mass_;
};

}  // namespace zigzag
