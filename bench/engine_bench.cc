// Prefill and decode throughput of the engine on a generated checkpoint (random weights, the
// shape set by flags below), on the backend chosen by ZIGZAG_BENCH_BACKEND (default auto).
// Reports tokens/s as the benchmark's items_per_second.
//   ./build/bench/bench_engine --benchmark_counters_tabular=true
#include <cstdlib>
#include <filesystem>
#include <random>

#include "benchmark/benchmark.h"
#include "core/engine/generation.h"
#include "core/kv/kv_cache.h"
#include "core/model/checkpoint_writer.h"
#include "core/model/llama_model.h"
#include "kernels/backend_registry.h"

namespace zigzag {
namespace {

struct Engine {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<LlamaModel> model;
  std::unique_ptr<KvCache> cache;
};

// One engine for the whole run: a ~25M-parameter Llama-shaped model (hidden 512, 8 layers,
// GQA 8/2, vocab 8192), big enough for GEMMs to dominate and small enough for 2 CPU cores.
Engine& GetEngine() {
  static Engine* engine = [] {
    auto* e = new Engine();
    const char* backend_name = std::getenv("ZIGZAG_BENCH_BACKEND");
    auto backend = CreateBackend(backend_name ? backend_name : "auto");
    if (!backend.ok()) {
      std::fprintf(stderr, "bench: %s\n", backend.status().ToString().c_str());
      std::exit(1);
    }
    e->backend = std::move(*backend);
    const std::filesystem::path dir = std::filesystem::temp_directory_path() / "zigzag-bench-model";
    RandomCheckpointSpec spec;
    spec.vocab_size = 8192;
    spec.hidden_size = 512;
    spec.intermediate_size = 1408;
    spec.num_layers = 8;
    spec.num_heads = 8;
    spec.num_kv_heads = 2;
    spec.max_position_embeddings = 8192;
    spec.dtype = DType::kBF16;
    if (auto written = WriteRandomCheckpoint(dir, spec); !written.ok()) {
      std::fprintf(stderr, "bench: %s\n", written.ToString().c_str());
      std::exit(1);
    }
    auto model = LlamaModel::LoadFromDir(dir, e->backend.get());
    if (!model.ok()) {
      std::fprintf(stderr, "bench: %s\n", model.status().ToString().c_str());
      std::exit(1);
    }
    e->model = std::move(*model);
    auto cache =
        KvCache::CreateWithBytes(e->backend.get(), e->model->kv_layout(16), int64_t{1} << 30);
    if (!cache.ok()) {
      std::fprintf(stderr, "bench: %s\n", cache.status().ToString().c_str());
      std::exit(1);
    }
    e->cache = std::move(*cache);
    return e;
  }();
  return *engine;
}

std::vector<int32_t> Tokens(int64_t n, int64_t vocab) {
  std::mt19937 rng(7);
  std::vector<int32_t> out(n);
  for (auto& t : out) t = static_cast<int32_t>(rng() % vocab);
  return out;
}

// Prefill of one prompt of state.range(0) tokens.
void BM_Prefill(benchmark::State& state) {
  Engine& e = GetEngine();
  const auto tokens = Tokens(state.range(0), e.model->config().vocab_size);
  for (auto _ : state) {
    SequenceKv kv(&e.cache->pool(), static_cast<int>(e.model->config().num_layers),
                  static_cast<int>(e.model->config().num_kv_heads));
    if (!kv.AppendAllLayers(static_cast<int64_t>(tokens.size())).ok()) {
      state.SkipWithError("KV pool too small");
      return;
    }
    ForwardSequence seq{.tokens = tokens, .first_position = 0, .kv = &kv};
    auto logits = e.model->Forward({&seq, 1}, e.cache.get());
    if (!logits.ok()) {
      state.SkipWithError(logits.status().ToString().c_str());
      return;
    }
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
  state.counters["tokens_per_s"] = benchmark::Counter(
      static_cast<double>(state.range(0)), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Prefill)->Arg(128)->Arg(512)->Arg(2048)->Unit(benchmark::kMillisecond)->UseRealTime();

// One decode step for a batch of state.range(0) sequences, each with state.range(1) tokens of
// context already in the cache.
void BM_Decode(benchmark::State& state) {
  Engine& e = GetEngine();
  const int batch = static_cast<int>(state.range(0));
  const int64_t context = state.range(1);
  const int num_layers = static_cast<int>(e.model->config().num_layers);
  std::vector<SequenceKv> kvs;
  const auto prompt = Tokens(context, e.model->config().vocab_size);
  for (int b = 0; b < batch; ++b) {
    kvs.emplace_back(&e.cache->pool(), num_layers,
                     static_cast<int>(e.model->config().num_kv_heads));
    if (!kvs.back().AppendAllLayers(context).ok()) {
      state.SkipWithError("KV pool too small");
      return;
    }
    ForwardSequence seq{.tokens = prompt, .first_position = 0, .kv = &kvs.back()};
    if (!e.model->Forward({&seq, 1}, e.cache.get()).ok()) {
      state.SkipWithError("prefill failed");
      return;
    }
  }
  const int32_t token = 5;
  int64_t position = context;
  for (auto _ : state) {
    state.PauseTiming();
    std::vector<ForwardSequence> step;
    for (auto& kv : kvs) {
      if (!kv.AppendAllLayers(1).ok()) {
        state.SkipWithError("KV pool too small");
        return;
      }
      step.push_back(ForwardSequence{.tokens = {&token, 1}, .first_position = position, .kv = &kv});
    }
    ++position;
    state.ResumeTiming();
    auto logits = e.model->Forward(step, e.cache.get());
    if (!logits.ok()) {
      state.SkipWithError(logits.status().ToString().c_str());
      return;
    }
  }
  state.SetItemsProcessed(state.iterations() * batch);
  state.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(batch), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Decode)
    ->Args({1, 512})
    ->Args({8, 512})
    ->Args({32, 512})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(32);

}  // namespace
}  // namespace zigzag

BENCHMARK_MAIN();
