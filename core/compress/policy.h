// The compression policies of ZIGZAG.md behind one function: window attention summaries of a
// finished prefill in, per-layer budgets and per-(layer, KV head) kept positions out. The adaptive
// head split itself is head_split.h. Pure host-side math; moving KV memory is core/kv's job.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "core/compress/compression_params.h"

namespace zigzag {

// What prefill measured for one sequence: for every layer l, window_mass[l][h * T + j] =
// sum over the last w_eff prompt queries i of A[h, i, j] (float32 attention probabilities;
// zero where j > i). Layers' masses are [num_heads, T], row-major.
struct WindowSummary {
  int32_t num_layers = 0;     // L
  int64_t prompt_tokens = 0;  // T
  int32_t window = 0;         // w_eff = min(w, T)
  int32_t num_heads = 0;      // H
  int32_t num_kv_heads = 0;   // G
  // [L][H * T]; may be empty for policies without scores (full, streaming) and whenever
  // T <= B_avg, when the prefill need not measure anything.
  std::vector<std::vector<float>> window_mass;
};

struct CompressionPlan {
  KvPolicy policy = KvPolicy::kFull;
  // The split applied across KV heads: EffectiveHeadBudgets(params) (uniform for full/streaming).
  HeadBudgets head_budgets = HeadBudgets::kUniform;
  int64_t average_budget = 0;  // B_avg
  bool compressed = false;     // false when T <= B_avg or policy full
  // [L] the layer budget B_l: kept tokens of every KV head under uniform (T when not compressed);
  // under adaptive the mean over the layer's KV heads (they keep G * B_l in all).
  std::vector<int64_t> budgets;
  std::vector<double> lmba;  // [L] (zigzag when compressed; empty otherwise)
  // [L][G] ascending kept positions of every (layer, KV head); empty when not compressed. Under
  // uniform every head of layer l keeps budgets[l]; under adaptive the sizes may differ.
  std::vector<std::vector<std::vector<int32_t>>> kept;
  // [L][G] kept[l][g].size(): the count each (layer, KV head) keeps; empty when not compressed.
  // core/kv's CompactSequenceKv compacts each (layer, KV head) stream to its own count, so an
  // adaptive plan frees each head's own tail blocks.
  std::vector<std::vector<int64_t>> head_counts;

  // True when every head of every compressed layer keeps budgets[l] (always under uniform).
  bool HeadCountsUniform() const;
};

// Validates the summary's shape against itself and runs the policy: per-layer budgets, then the
// kept positions of every KV head, split uniformly (SelectPositions, sections 4-5) or adaptively
// (AdaptiveHeadPositions, section 8) as EffectiveHeadBudgets(params) says.
absl::StatusOr<CompressionPlan> PlanCompression(const CompressionParams& params,
                                                const WindowSummary& summary);

// The pieces, exposed for tests and the profiling tool ----------------------------------------

// MBA of one head: the smallest number of tokens whose largest probabilities p[j] sum to >= tau.
int64_t HeadMinimumBudget(std::span<const double> probabilities, double tau);
// LMBA of a layer: mean over heads of MBA, with p[h, j] = mass[h, j] / w_eff over all j < T.
double LayerMinimumBudget(std::span<const float> mass, int32_t num_heads, int64_t prompt_tokens,
                          int32_t window, double tau);

// ZigZag's bounded-minimum allocation with cap-at-T, proportional redistribution and largest-
// remainder rounding; sums exactly to min(L * B_avg, L * T). Uniform B_avg if all LMBA are 0.
std::vector<int64_t> ZigZagBudgets(std::span<const double> lmba, int64_t average_budget,
                                   int32_t window, double rho, int64_t prompt_tokens);
// PyramidKV: m = B_avg - w_eff, min = m / beta, max = 2m - min,
// B_l = w_eff + round(max - l (max - min) / (L - 1)), capped at T.
std::vector<int64_t> PyramidBudgets(int64_t num_layers, int64_t average_budget, int32_t window,
                                    double beta, int64_t prompt_tokens);

// SnapKV scores of one layer: [G][T - w_eff]: per head, the window mass of prefix positions,
// max-pooled (kernel k, stride 1, same padding), then averaged over the heads of each KV head.
std::vector<std::vector<float>> TokenScores(std::span<const float> mass, int32_t num_heads,
                                            int32_t num_kv_heads, int64_t prompt_tokens,
                                            int32_t window, int32_t kernel);
// The last w_eff positions plus the top (budget - w_eff) prefix positions by score (ties: lower
// position first), ascending. scores.size() == T - w_eff.
std::vector<int32_t> SelectPositions(std::span<const float> scores, int64_t prompt_tokens,
                                     int32_t window, int64_t budget);
// StreamingLLM: the first min(sink, budget) positions plus the most recent ones, ascending.
std::vector<int32_t> StreamingPositions(int64_t prompt_tokens, int32_t sink_tokens, int64_t budget);

}  // namespace zigzag
