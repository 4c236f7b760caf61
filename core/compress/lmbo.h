// LMBO (ZIGZAG.md section 7): the smallest KV budget that keeps one layer's attention output for
// the observation window intact, measured on a profiling prompt. Pure host math in float64 over
// K, V and queries already copied off the backend; analysis for zigzag-profile, never allocation.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace zigzag {

// One layer of one prefilled prompt, on the host, as float32 copies of what the backend held.
struct LayerAttentionSample {
  int64_t prompt_tokens = 0;  // T
  int32_t window = 0;         // w_eff: the window queries are cache entries T - w_eff ... T - 1
  int32_t num_heads = 0;      // H
  int32_t num_kv_heads = 0;   // G
  int32_t head_dim = 0;       // d
  std::span<const float> window_queries;  // [w_eff][H][d], post-RoPE
  std::span<const float> keys;            // [T][G][d], post-RoPE (as cached)
  std::span<const float> values;          // [T][G][d]
  // [H][T]: the layer's window summary (WindowSummary::window_mass), used only to select tokens.
  std::span<const float> window_mass;
};

// InvalidArgument naming the field when the sizes do not fit the dimensions.
absl::Status ValidateLayerAttentionSample(const LayerAttentionSample& sample);

// For window query i (cache index T - w_eff + i) and head h (KV head g = h / (H / G)), compares
// attention over the causal keys j <= T - w_eff + i that kv head g keeps (kept[g], positions in
// [0, T); empty `kept` = every position) with attention over all causal keys: float64 softmax,
// scale 1 / sqrt(d), cosine of the two outputs (1 when both are zero vectors, 0 when only one
// is). Returns the mean over all (i, h). InvalidArgument for a bad sample, kept.size() != G or a
// position outside [0, T).
absl::StatusOr<double> MeanOutputCosine(const LayerAttentionSample& sample,
                                        std::span<const std::vector<int32_t>> kept);

// The budgets LMBO tries, ascending: w_eff, the powers of two strictly between w_eff and T, T.
std::vector<int64_t> OutputBudgetGrid(int64_t prompt_tokens, int32_t window);

struct LayerOutputBudget {
  std::vector<int64_t> budgets;     // OutputBudgetGrid
  std::vector<double> mean_cosine;  // MeanOutputCosine at each budget
  int64_t lmbo = 0;                 // the smallest budget with mean cosine >= tau_o; T if none
};

// LMBO of one layer: at every grid budget b, each KV head keeps what SnapKV would keep at b
// (TokenScores of the window mass with `kernel`, then SelectPositions), scored by
// MeanOutputCosine. InvalidArgument for a bad sample, an even or non-positive kernel, or tau_o
// outside (0, 1].
absl::StatusOr<LayerOutputBudget> MeasureLayerOutputBudget(const LayerAttentionSample& sample,
                                                           int32_t kernel, double tau_o);

}  // namespace zigzag
