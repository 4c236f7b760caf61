// The time KV compression adds to a prefill, as a ratio to the prefill itself, for prompts of 1K,
// 4K and 16K tokens and the policies full (baseline), snapkv, pyramidkv and zigzag at a 20%
// budget, on the backend chosen by ZIGZAG_BENCH_BACKEND (cpu, cuda or auto; default auto).
//
// The checkpoint is generated (random BF16 weights): a small Llama shape, hidden 256, 4 layers,
// 8 heads / 2 KV heads, head_dim 32, intermediate 704, vocab 4096, chosen so that one 16K-token
// prefill (attention is quadratic in T) stays within about a minute on 2 idle CPU cores (an
// estimate from 4K). Compression costs depend on T, the layers and the heads, not on the GEMM
// sizes, so next to a wider model with the same layers and heads the ratio here is on the high
// side.
//
// Every iteration of one (prompt length, policy) benchmark measures, one after another:
//   (a) prefill_ms: the prompt's prefill without window summaries;
//   (b) the same prefill with the policy's window summaries (PrefillCompression::Create allocating
//       them plus the attention's extra mass accumulation); full and streaming measure none, so
//       for full (b) - (a) is the noise floor;
//   (c) plan_compact_ms: PrefillCompression::Apply (download summaries, plan, compact the cache).
// Counters (per-iteration means): prefill_ms, summary_overhead_ms = b - a, plan_compact_ms,
// overhead_ratio = (b - a + c) / a, the same on process CPU time (cpu_overhead_ratio, CPU backend
// only) and the KV bytes of the prompt before and after Apply.
// The benchmark's own time is b + c, the prefill with compression.
//   ./build/bench/bench_compression --benchmark_counters_tabular=true
//   ./build/bench/bench_compression --benchmark_filter='tokens:(1024|4096)/'
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "core/compress/compression_params.h"
#include "core/engine/prefill_compression.h"
#include "core/kv/kv_cache.h"
#include "core/kv/kv_stats.h"
#include "core/kv/sequence_kv.h"
#include "core/model/checkpoint_writer.h"
#include "core/model/llama_model.h"
#include "core/util/status_macros.h"
#include "kernels/backend_registry.h"

namespace zigzag {
namespace {

constexpr int64_t kMaxPromptTokens = 16384;
constexpr double kBudgetRatio = 0.2;

struct Engine {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<LlamaModel> model;
  std::unique_ptr<KvCache> cache;
};

absl::StatusOr<std::unique_ptr<Engine>> CreateEngine() {
  auto engine = std::make_unique<Engine>();
  const char* backend_name = std::getenv("ZIGZAG_BENCH_BACKEND");
  ASSIGN_OR_RETURN(engine->backend, CreateBackend(backend_name ? backend_name : "auto"));
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / "zigzag-bench-compression-model";
  RandomCheckpointSpec spec;
  spec.vocab_size = 4096;
  spec.hidden_size = 256;
  spec.intermediate_size = 704;
  spec.num_layers = 4;
  spec.num_heads = 8;
  spec.num_kv_heads = 2;
  spec.head_dim = 32;
  spec.max_position_embeddings = kMaxPromptTokens;
  spec.dtype = DType::kBF16;
  RETURN_IF_ERROR(WriteRandomCheckpoint(dir, spec));
  ASSIGN_OR_RETURN(engine->model, LlamaModel::LoadFromDir(dir, engine->backend.get()));
  // Two sequences of the longest prompt at most are alive at once; 256 MiB leaves room for a
  // 16-bit or 32-bit cache alike (one 16K prompt is 32 MiB in float32 here).
  ASSIGN_OR_RETURN(engine->cache,
                   KvCache::CreateWithBytes(engine->backend.get(), engine->model->kv_layout(16),
                                            int64_t{256} << 20));
  return engine;
}

// One engine for the whole run, created on first use; a failure is reported by every benchmark.
absl::StatusOr<Engine*> GetEngine() {
  static absl::StatusOr<std::unique_ptr<Engine>>* engine =
      new absl::StatusOr<std::unique_ptr<Engine>>(CreateEngine());
  if (!engine->ok()) return engine->status();
  return engine->value().get();
}

std::vector<int32_t> Tokens(int64_t n, int64_t vocab) {
  std::mt19937 rng(7);
  std::vector<int32_t> out(n);
  for (auto& t : out) t = static_cast<int32_t>(rng() % vocab);
  return out;
}

// Wall-clock and whole-process CPU time of one phase, in milliseconds.
struct Elapsed {
  double wall_ms = 0;
  double cpu_ms = 0;
  Elapsed& operator+=(const Elapsed& other) {
    wall_ms += other.wall_ms;
    cpu_ms += other.cpu_ms;
    return *this;
  }
};

double ProcessCpuMs() {
  timespec now{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) * 1e3 + static_cast<double>(now.tv_nsec) / 1e6;
}

class Stopwatch {
 public:
  Stopwatch() : wall_start_(std::chrono::steady_clock::now()), cpu_start_(ProcessCpuMs()) {}
  Elapsed Stop() const {
    return {
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - wall_start_)
            .count(),
        ProcessCpuMs() - cpu_start_};
  }

 private:
  std::chrono::steady_clock::time_point wall_start_;
  double cpu_start_;
};

// Prefills `tokens` into a fresh `kv`, with the summaries of `compression` when given; the
// clock stops only once the backend has finished.
absl::StatusOr<Elapsed> TimedPrefill(Engine& e, std::span<const int32_t> tokens, SequenceKv& kv,
                                     const CompressionParams* compression_params,
                                     std::optional<PrefillCompression>* compression) {
  const int64_t prompt_tokens = static_cast<int64_t>(tokens.size());
  const Stopwatch stopwatch;
  RETURN_IF_ERROR(kv.AppendAllLayers(prompt_tokens));
  ForwardSequence seq{.tokens = tokens, .first_position = 0, .kv = &kv};
  if (compression_params != nullptr) {
    ASSIGN_OR_RETURN(*compression,
                     PrefillCompression::Create(*compression_params, e.model->config(), *e.backend,
                                                prompt_tokens));
    seq.window_mass = (*compression)->window_mass();
    seq.window_begin = (*compression)->window_begin();
  }
  RETURN_IF_ERROR(e.model->Forward({&seq, 1}, e.cache.get()).status());
  RETURN_IF_ERROR(e.backend->Synchronize());
  return stopwatch.Stop();
}

// What the sequence's prompt occupies in the cache, counted per token as KvStats does.
int64_t RetainedKvBytes(const SequenceKv& kv, const KvLayout& layout, int64_t prompt_tokens) {
  KvStats stats;
  stats.prompt_tokens = prompt_tokens;
  FillKvMemoryStats(kv, layout, &stats);
  return stats.retained_kv_bytes;
}

struct IterationTimes {
  Elapsed prefill;       // (a)
  Elapsed with_summary;  // (b)
  Elapsed apply;         // (c)
  int64_t kv_bytes_before = 0;
  int64_t kv_bytes_after = 0;
};

// (a) alone: the sequence's blocks go back to the pool at the end.
absl::StatusOr<Elapsed> PlainPrefill(Engine& e, std::span<const int32_t> tokens) {
  SequenceKv kv(&e.cache->pool(), static_cast<int>(e.model->config().num_layers),
                static_cast<int>(e.model->config().num_kv_heads));
  return TimedPrefill(e, tokens, kv, nullptr, nullptr);
}

// (b) then (c) on the same sequence, which is released at the end.
absl::Status CompressedPrefill(Engine& e, std::span<const int32_t> tokens,
                               const CompressionParams& params, IterationTimes& times) {
  const int64_t prompt_tokens = static_cast<int64_t>(tokens.size());
  SequenceKv kv(&e.cache->pool(), static_cast<int>(e.model->config().num_layers),
                static_cast<int>(e.model->config().num_kv_heads));
  std::optional<PrefillCompression> compression;
  ASSIGN_OR_RETURN(times.with_summary, TimedPrefill(e, tokens, kv, &params, &compression));
  times.kv_bytes_before = RetainedKvBytes(kv, e.cache->layout(), prompt_tokens);
  KvStats stats;
  const Stopwatch stopwatch;
  RETURN_IF_ERROR(compression->Apply(*e.backend, *e.cache, kv, &stats).status());
  RETURN_IF_ERROR(e.backend->Synchronize());
  times.apply = stopwatch.Stop();
  times.kv_bytes_after = RetainedKvBytes(kv, e.cache->layout(), prompt_tokens);
  return absl::OkStatus();
}

// Odd iterations run (b) before (a), so that drift in the machine's speed (caches, other load)
// does not always favour the same side of b - a.
absl::StatusOr<IterationTimes> RunIteration(Engine& e, std::span<const int32_t> tokens,
                                            const CompressionParams& params,
                                            bool compressed_first) {
  IterationTimes times;
  if (compressed_first) RETURN_IF_ERROR(CompressedPrefill(e, tokens, params, times));
  ASSIGN_OR_RETURN(times.prefill, PlainPrefill(e, tokens));
  if (!compressed_first) RETURN_IF_ERROR(CompressedPrefill(e, tokens, params, times));
  return times;
}

void BM_CompressionOverhead(benchmark::State& state, int64_t prompt_tokens, KvPolicy policy) {
  absl::StatusOr<Engine*> engine = GetEngine();
  if (!engine.ok()) {
    state.SkipWithError(engine.status().ToString().c_str());
    return;
  }
  Engine& e = **engine;
  const auto tokens = Tokens(prompt_tokens, e.model->config().vocab_size);
  CompressionParams params;
  params.policy = policy;
  if (policy != KvPolicy::kFull) params.ratio = kBudgetRatio;

  IterationTimes sum;
  bool compressed_first = false;
  for (auto _ : state) {
    absl::StatusOr<IterationTimes> times = RunIteration(e, tokens, params, compressed_first);
    compressed_first = !compressed_first;
    if (!times.ok()) {
      state.SkipWithError(times.status().ToString().c_str());
      return;
    }
    state.SetIterationTime((times->with_summary.wall_ms + times->apply.wall_ms) / 1e3);
    sum.prefill += times->prefill;
    sum.with_summary += times->with_summary;
    sum.apply += times->apply;
    sum.kv_bytes_before = times->kv_bytes_before;
    sum.kv_bytes_after = times->kv_bytes_after;
  }
  using benchmark::Counter;
  state.counters["prefill_ms"] = Counter(sum.prefill.wall_ms, Counter::kAvgIterations);
  state.counters["summary_overhead_ms"] =
      Counter(sum.with_summary.wall_ms - sum.prefill.wall_ms, Counter::kAvgIterations);
  state.counters["plan_compact_ms"] = Counter(sum.apply.wall_ms, Counter::kAvgIterations);
  state.counters["overhead_ratio"] =
      (sum.with_summary.wall_ms - sum.prefill.wall_ms + sum.apply.wall_ms) / sum.prefill.wall_ms;
  // On the CPU backend the process's CPU time counts the work done whatever else the machine
  // runs, so this ratio stays readable on a shared machine where wall-clock noise hides a few
  // percent. (On a GPU it would only count the host's share, so it is left out there.)
  if (e.backend->device() == Device::kCpu) {
    state.counters["cpu_overhead_ratio"] =
        (sum.with_summary.cpu_ms - sum.prefill.cpu_ms + sum.apply.cpu_ms) / sum.prefill.cpu_ms;
  }
  state.counters["kv_bytes_before"] = static_cast<double>(sum.kv_bytes_before);
  state.counters["kv_bytes_after"] = static_cast<double>(sum.kv_bytes_after);
}

// Longer prompts get fewer iterations: a 16K prefill takes tens of seconds on 2 CPU cores and
// every iteration runs two of them. Even counts, so that each order of (a) and (b) runs as often.
void RegisterAll() {
  const struct {
    int64_t tokens;
    int iterations;
  } lengths[] = {{1024, 10}, {4096, 4}, {kMaxPromptTokens, 2}};
  const KvPolicy policies[] = {KvPolicy::kFull, KvPolicy::kSnapKv, KvPolicy::kPyramidKv,
                               KvPolicy::kZigZag};
  for (const auto& length : lengths) {
    for (KvPolicy policy : policies) {
      const std::string name = absl::StrCat("CompressionOverhead/tokens:", length.tokens,
                                            "/policy:", KvPolicyName(policy));
      benchmark::RegisterBenchmark(name.c_str(), BM_CompressionOverhead, length.tokens, policy)
          ->Iterations(length.iterations)
          ->Unit(benchmark::kMillisecond)
          ->UseManualTime();
    }
  }
}

}  // namespace
}  // namespace zigzag

int main(int argc, char** argv) {
  zigzag::RegisterAll();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
