// What KV compression costs after a prefill, per-layer versus per-head: planning (scores, layer
// budgets, each KV head's kept positions) and compaction of the cache, for snapkv, pyramidkv and
// zigzag with the uniform head split (every head of a layer keeps the layer's budget: the
// per-layer cache of before) and the adaptive one (ZIGZAG.md section 8: each head its own count),
// at 4K and 16K prompt tokens, on the backend ZIGZAG_BENCH_BACKEND names (default auto).
//
// No prefill runs: what planning reads is a window summary, generated here with a skewed,
// head-dependent distribution (a few heavy tokens plus a power-law tail whose steepness differs
// by head, so the adaptive split really gives heads different counts), and compaction moves
// whatever the cache holds. That keeps a 16K row to seconds on 2 CPU cores and lets the shapes be
// those of real models: the bench_compression shape (4 layers, 8/2 heads, head_dim 32) and a
// Llama-3.2-1B-like one (16 layers, 32/8 heads, head_dim 64; 1 GiB of float32 KV at 16K).
//
// Counters (means per iteration): plan_ms (PlanCompression alone), apply_ms (plan + compaction,
// PrefillCompression::ApplyWithSummary, synchronised), compact_ms = apply_ms - plan_ms, the same
// two on process CPU time (plan_cpu_ms, compact_cpu_ms: readable on a busy machine), kept_tokens
// (sum over every (layer, KV head) stream), blocks_freed.
//   ./build/bench/bench_plan_compact --benchmark_counters_tabular=true
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "core/compress/compression_params.h"
#include "core/compress/policy.h"
#include "core/engine/prefill_compression.h"
#include "core/kv/kv_cache.h"
#include "core/kv/kv_stats.h"
#include "core/kv/sequence_kv.h"
#include "core/model/model_config.h"
#include "core/util/status_macros.h"
#include "kernels/backend_registry.h"
#include "spdlog/spdlog.h"

namespace zigzag {
namespace {

constexpr double kBudgetRatio = 0.2;
constexpr int32_t kBlockSize = 16;

struct Shape {
  const char* name;
  int32_t layers;
  int32_t heads;
  int32_t kv_heads;
  int32_t head_dim;
};

constexpr Shape kShapes[] = {
    {"small", 4, 8, 2, 32},      // bench_compression's checkpoint
    {"llama1b", 16, 32, 8, 64},  // Llama-3.2-1B's attention shape
};

// A window summary for `shape` and `tokens`: per head, each of the w_eff window queries spreads
// probability 1 over the prompt, so a head's masses sum to w_eff. Heads differ in how peaked they
// are (exponent 0.6 to 1.6), and each has a few heavy tokens of its own.
WindowSummary SyntheticSummary(const Shape& shape, int64_t tokens, int32_t window) {
  WindowSummary summary;
  summary.num_layers = shape.layers;
  summary.prompt_tokens = tokens;
  summary.window = static_cast<int32_t>(std::min<int64_t>(window, tokens));
  summary.num_heads = shape.heads;
  summary.num_kv_heads = shape.kv_heads;
  std::mt19937 rng(11);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::uniform_int_distribution<int64_t> position(0, tokens - 1);
  std::vector<double> weights(tokens);
  for (int32_t l = 0; l < shape.layers; ++l) {
    std::vector<float> mass(static_cast<size_t>(shape.heads) * tokens);
    for (int32_t h = 0; h < shape.heads; ++h) {
      const double exponent = 0.6 + unit(rng);
      std::vector<int64_t> order(tokens);
      for (int64_t j = 0; j < tokens; ++j) order[j] = j;
      std::shuffle(order.begin(), order.end(), rng);
      double sum = 0;
      for (int64_t r = 0; r < tokens; ++r) {
        weights[order[r]] = 1.0 / std::pow(static_cast<double>(r + 1), exponent);
        sum += weights[order[r]];
      }
      for (int i = 0; i < 4; ++i) weights[position(rng)] += 0.05 * sum;  // heavy hitters
      sum = 0;
      for (double w : weights) sum += w;
      for (int64_t j = 0; j < tokens; ++j) {
        mass[static_cast<size_t>(h) * tokens + j] =
            static_cast<float>(weights[j] / sum * summary.window);
      }
    }
    summary.window_mass.push_back(std::move(mass));
  }
  return summary;
}

double ProcessCpuMs() {
  timespec now{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) * 1e3 + static_cast<double>(now.tv_nsec) / 1e6;
}

struct Setup {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<KvCache> cache;
  WindowSummary summary;
  ModelConfig config;
};

// One backend, cache and summary per (shape, tokens), made on first use and kept for the run.
absl::StatusOr<Setup*> GetSetup(const Shape& shape, int64_t tokens) {
  static auto* setups = new std::map<std::tuple<std::string, int64_t>, std::unique_ptr<Setup>>;
  const std::tuple<std::string, int64_t> key{shape.name, tokens};
  if (auto it = setups->find(key); it != setups->end()) return it->second.get();
  setups->clear();  // one at a time: the 16K llama1b cache alone is 1 GiB
  auto setup = std::make_unique<Setup>();
  const char* backend_name = std::getenv("ZIGZAG_BENCH_BACKEND");
  ASSIGN_OR_RETURN(setup->backend, CreateBackend(backend_name ? backend_name : "auto"));
  KvLayout layout;
  layout.num_layers = shape.layers;
  layout.num_kv_heads = shape.kv_heads;
  layout.head_dim = shape.head_dim;
  layout.block_size = kBlockSize;
  layout.dtype = setup->backend->activation_dtype();
  const int64_t blocks = layout.BlocksForTokensAllStreams(tokens) + 16;
  ASSIGN_OR_RETURN(setup->cache,
                   KvCache::Create(setup->backend.get(), layout, static_cast<int32_t>(blocks)));
  setup->config.num_layers = shape.layers;
  setup->config.num_heads = shape.heads;
  setup->config.num_kv_heads = shape.kv_heads;
  setup->config.head_dim = shape.head_dim;
  setup->summary = SyntheticSummary(shape, tokens, CompressionParams{}.window);
  Setup* const made = setup.get();
  (*setups)[key] = std::move(setup);
  return made;
}

void BM_PlanCompact(benchmark::State& state, Shape shape, int64_t tokens, KvPolicy policy,
                    HeadBudgets head_budgets) {
  absl::StatusOr<Setup*> got = GetSetup(shape, tokens);
  if (!got.ok()) {
    state.SkipWithError(got.status().ToString().c_str());
    return;
  }
  Setup& s = **got;
  CompressionParams params;
  params.policy = policy;
  params.ratio = kBudgetRatio;
  params.head_budgets = head_budgets;
  double plan_ms = 0, apply_ms = 0, plan_cpu_ms = 0, apply_cpu_ms = 0;
  int64_t kept = 0, freed = 0;
  for (auto _ : state) {
    SequenceKv kv(&s.cache->pool(), shape.layers, shape.kv_heads);
    if (absl::Status status = kv.AppendAllLayers(tokens); !status.ok()) {
      state.SkipWithError(status.ToString().c_str());
      return;
    }
    const int64_t used_before = s.cache->pool().num_used();
    absl::StatusOr<PrefillCompression> compression =
        PrefillCompression::Create(params, s.config, *s.backend, tokens);
    if (!compression.ok()) {
      state.SkipWithError(compression.status().ToString().c_str());
      return;
    }

    const double cpu_start = ProcessCpuMs();
    const auto plan_start = std::chrono::steady_clock::now();
    absl::StatusOr<CompressionPlan> plan = PlanCompression(params, s.summary);
    const auto plan_end = std::chrono::steady_clock::now();
    const double cpu_plan_end = ProcessCpuMs();
    KvStats stats;
    absl::StatusOr<CompressionPlan> applied =
        compression->ApplyWithSummary(s.summary, *s.backend, *s.cache, kv, &stats);
    absl::Status synced = s.backend->Synchronize();
    const auto apply_end = std::chrono::steady_clock::now();
    const double cpu_apply_end = ProcessCpuMs();
    if (!plan.ok() || !applied.ok() || !synced.ok()) {
      state.SkipWithError((!plan.ok()      ? plan.status()
                           : !applied.ok() ? applied.status()
                                           : synced)
                              .ToString()
                              .c_str());
      return;
    }
    const double this_plan =
        std::chrono::duration<double, std::milli>(plan_end - plan_start).count();
    const double this_apply =
        std::chrono::duration<double, std::milli>(apply_end - plan_end).count();
    state.SetIterationTime(this_apply / 1e3);
    plan_ms += this_plan;
    apply_ms += this_apply;
    plan_cpu_ms += cpu_plan_end - cpu_start;
    apply_cpu_ms += cpu_apply_end - cpu_plan_end;
    kept = 0;
    for (const auto& layer : applied->kept) {
      for (const auto& head : layer) kept += static_cast<int64_t>(head.size());
    }
    freed = used_before - s.cache->pool().num_used();
  }
  using benchmark::Counter;
  state.counters["plan_ms"] = Counter(plan_ms, Counter::kAvgIterations);
  state.counters["apply_ms"] = Counter(apply_ms, Counter::kAvgIterations);
  state.counters["compact_ms"] = Counter(apply_ms - plan_ms, Counter::kAvgIterations);
  // Process CPU time reads the work whatever else the machine runs (CPU backend; on a GPU it
  // counts only the host's share).
  state.counters["plan_cpu_ms"] = Counter(plan_cpu_ms, Counter::kAvgIterations);
  state.counters["compact_cpu_ms"] = Counter(apply_cpu_ms - plan_cpu_ms, Counter::kAvgIterations);
  state.counters["kept_tokens"] = static_cast<double>(kept);
  state.counters["blocks_freed"] = static_cast<double>(freed);
}

void RegisterAll() {
  for (const Shape& shape : kShapes) {
    for (int64_t tokens : {int64_t{4096}, int64_t{16384}}) {
      for (KvPolicy policy : {KvPolicy::kSnapKv, KvPolicy::kPyramidKv, KvPolicy::kZigZag}) {
        for (HeadBudgets split : {HeadBudgets::kUniform, HeadBudgets::kAdaptive}) {
          benchmark::RegisterBenchmark(
              absl::StrCat("plan_compact/", shape.name, "/tokens:", tokens, "/",
                           KvPolicyName(policy), "/", HeadBudgetsName(split))
                  .c_str(),
              [=](benchmark::State& state) { BM_PlanCompact(state, shape, tokens, policy, split); })
              ->UseManualTime()
              ->Unit(benchmark::kMillisecond)
              ->Iterations(tokens >= 16384 ? 3 : 5);
        }
      }
    }
  }
}

}  // namespace
}  // namespace zigzag

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);
  zigzag::RegisterAll();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
