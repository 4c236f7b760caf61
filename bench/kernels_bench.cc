// Kernel benchmarks of one backend (ZIGZAG_BENCH_BACKEND, default auto): the copy rate every
// roofline is measured against, paged decode attention (GB/s of K+V read), causal prefill
// attention (TFLOP/s) and the GEMMs of Llama-3-8B (TFLOP/s and weight GB/s), on Llama-3-8B
// attention shapes (32 query heads, 8 KV heads, head_dim 128, blocks of 16).
//
//   ZIGZAG_BENCH_BACKEND=cuda ./bench_kernels --benchmark_counters_tabular=true
//   ./bench_kernels --size=small         # tiny shapes: the CPU smoke run (default on the CPU)
//   ./bench_kernels --size=cpu124m --benchmark_filter=attention --attention-isa=avx2
//                                        # a 124M Llama's attention (12/4 heads of 64) on the CPU;
//                                        # --attention-isa forces the CPU kernels' instruction set
//
// Timing: every benchmark iteration queues `inner` calls of the op and then waits with
// Backend::Synchronize; the iteration's manual time is the wall time over `inner`, so the host
// work of each call (argument checks, metadata upload) counts when it is slower than the
// device. Inputs rotate over copies larger than the GPU's L2 (256 MiB in all) so that repeated
// calls read device memory, not cache. Decode-attention bytes are the K and V rows read; copy
// rates count bytes read plus bytes written (see bench_support.h), so pct_of_copy is the
// fraction of the memory-traffic ceiling a read-only kernel reaches.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/bench_support.h"
#include "benchmark/benchmark.h"
#include "kernels/cpu/attention_dispatch.h"

namespace zigzag::bench {
namespace {

struct Sizes {
  std::string name;
  int64_t heads = 32;
  int64_t kv_heads = 8;
  int64_t head_dim = 128;
  int64_t block_size = 16;
  std::vector<int64_t> decode_contexts;
  std::vector<int64_t> decode_batches;
  std::vector<int64_t> prefill_tokens;
  std::vector<std::pair<int64_t, int64_t>> gemm_shapes;  // (M, K): w is [M, K]
  std::vector<int64_t> gemm_rows;                        // N: x is [N, K]
  int64_t copy_bytes = 0;
  int64_t rotate_bytes = 0;  // inputs rotate over at least this many bytes
  double min_time = 0.2;
};

Sizes FullSizes() {
  Sizes s;
  s.name = "full";
  s.decode_contexts = {8192, 16384};
  s.decode_batches = {1, 8, 32};
  s.prefill_tokens = {1024, 4096};
  s.gemm_shapes = {{4096, 4096}, {4096, 14336}, {14336, 4096}};
  s.gemm_rows = {1, 8, 64, 512};
  s.copy_bytes = int64_t{1} << 30;
  s.rotate_bytes = int64_t{256} << 20;
  return s;
}

Sizes SmallSizes() {
  Sizes s;
  s.name = "small";
  s.heads = 8;
  s.kv_heads = 2;
  s.head_dim = 64;
  s.decode_contexts = {512, 1024};
  s.decode_batches = {1, 4};
  s.prefill_tokens = {64, 128};
  s.gemm_shapes = {{256, 256}, {256, 512}, {512, 256}};
  s.gemm_rows = {1, 8};
  s.copy_bytes = int64_t{16} << 20;
  s.rotate_bytes = int64_t{4} << 20;
  s.min_time = 0.05;
  return s;
}

// The attention of a 124M Llama (hidden 768, 12 query / 4 KV heads of 64) at the contexts the CPU
// serves: decode at 512 and 4K, prefill of 512 and 2K tokens. No GEMM rows (their shapes are the
// matmul benchmark's business).
Sizes Cpu124MSizes() {
  Sizes s;
  s.name = "cpu124m";
  s.heads = 12;
  s.kv_heads = 4;
  s.head_dim = 64;
  s.decode_contexts = {512, 4096};
  s.decode_batches = {1, 4};
  s.prefill_tokens = {512, 2048};
  s.copy_bytes = int64_t{64} << 20;
  s.rotate_bytes = int64_t{64} << 20;
  s.min_time = 0.2;
  return s;
}

struct Context {
  std::string backend_name;
  Sizes sizes;
  // The serving dtype's backend (bf16 on CUDA, f32 on the CPU) and, on CUDA, an fp32 one.
  std::unique_ptr<Backend> primary;
  std::unique_ptr<Backend> cuda_fp32;
  std::optional<CopyRate> copy_rate;
  // GEMM weights by (dtype, M, K), generated once and shared by the N variants.
  std::map<std::tuple<DType, int64_t, int64_t>, std::vector<Tensor>> gemm_weights;
};

Context& Ctx() {
  static Context context;
  return context;
}

bool IsCuda() { return Ctx().primary->device() == Device::kCuda; }

// The backend computing in `dtype`, or null with *why set.
Backend* BackendFor(DType dtype, std::string* why) {
  Context& c = Ctx();
  if (c.primary->activation_dtype() == dtype) return c.primary.get();
  if (c.cuda_fp32 != nullptr && dtype == DType::kF32) return c.cuda_fp32.get();
  *why = absl::StrCat(DTypeName(dtype), " needs the cuda backend; the ", c.primary->name(),
                      " backend computes in ", DTypeName(c.primary->activation_dtype()));
  return nullptr;
}

std::vector<DType> AttentionDTypes() {
  // bf16 is listed on the CPU too, so that its skip message says why it did not run.
  return {DType::kBF16, DType::kF32};
}

int64_t RotationCopies(int64_t bytes_per_copy, int64_t max_copies) {
  const int64_t rotate = Ctx().sizes.rotate_bytes;
  return std::clamp<int64_t>((rotate + bytes_per_copy - 1) / bytes_per_copy, 1, max_copies);
}

// Queues `inner` calls (call(i) for i = 0..inner-1), waits, and records the wall time per call.
// Returns false (after SkipWithError) when a call fails.
bool TimedIteration(benchmark::State& state, Backend& backend, int inner,
                    const std::function<absl::Status(int)>& call, double* seconds, int64_t* calls) {
  const double start = NowSeconds();
  for (int i = 0; i < inner; ++i) {
    absl::Status status = call(i);
    if (!status.ok()) {
      state.SkipWithError(std::string(status.ToString()).c_str());
      return false;
    }
  }
  absl::Status synced = backend.Synchronize();
  if (!synced.ok()) {
    state.SkipWithError(std::string(synced.ToString()).c_str());
    return false;
  }
  const double elapsed = NowSeconds() - start;
  state.SetIterationTime(elapsed / inner);
  *seconds += elapsed;
  *calls += inner;
  return true;
}

// Runs the benchmark loop: one warm-up call, then TimedIteration until the library stops.
// Returns the mean seconds per call, or nullopt when it was skipped.
std::optional<double> RunLoop(benchmark::State& state, Backend& backend, int inner,
                              const std::function<absl::Status(int)>& call) {
  absl::Status warm = call(0);
  if (warm.ok()) warm = backend.Synchronize();
  if (!warm.ok()) {
    state.SkipWithError(std::string(warm.ToString()).c_str());
    return std::nullopt;
  }
  double seconds = 0.0;
  int64_t calls = 0;
  for (auto _ : state) {
    if (!TimedIteration(state, backend, inner, call, &seconds, &calls)) return std::nullopt;
  }
  if (calls == 0) return std::nullopt;
  return seconds / static_cast<double>(calls);
}

void SetCopyFraction(benchmark::State& state, double bytes_per_second) {
  const Context& c = Ctx();
  if (c.copy_rate.has_value() && c.copy_rate->bytes_per_second > 0) {
    state.counters["pct_of_copy"] = 100.0 * bytes_per_second / c.copy_rate->bytes_per_second;
  }
}

// (a) Copy rates ----------------------------------------------------------------------------------

void BM_CudaMemcpy(benchmark::State& state) {
  Context& c = Ctx();
  if (!IsCuda()) {
    state.SkipWithError(
        absl::StrCat("GPU-only: cudaMemcpy device-to-device needs the cuda backend (this run: ",
                     c.primary->name(), "); see copy_rows for the interface proxy")
            .c_str());
    for (auto _ : state) {
    }
    return;
  }
  double rate_sum = 0.0;
  int runs = 0;
  for (auto _ : state) {
    auto rate = MeasureCudaMemcpyRate(*c.primary, c.sizes.copy_bytes, 10);
    if (!rate.ok()) {
      state.SkipWithError(std::string(rate.status().ToString()).c_str());
      return;
    }
    state.SetIterationTime(2.0 * static_cast<double>(rate->buffer_bytes) * rate->repetitions /
                           rate->bytes_per_second);
    rate_sum += rate->bytes_per_second;
    ++runs;
  }
  if (runs > 0) state.counters["GBps_read_plus_write"] = rate_sum / runs / 1e9;
}

void BM_CopyRows(benchmark::State& state) {
  Context& c = Ctx();
  double rate_sum = 0.0;
  int runs = 0;
  for (auto _ : state) {
    auto rate = MeasureCopyRowsRate(*c.primary, c.sizes.copy_bytes, 10);
    if (!rate.ok()) {
      state.SkipWithError(std::string(rate.status().ToString()).c_str());
      return;
    }
    state.SetIterationTime(2.0 * static_cast<double>(rate->buffer_bytes) * rate->repetitions /
                           rate->bytes_per_second);
    rate_sum += rate->bytes_per_second;
    ++runs;
  }
  if (runs > 0) {
    state.counters["GBps_read_plus_write"] = rate_sum / runs / 1e9;
    SetCopyFraction(state, rate_sum / runs);
  }
}

// (b) Paged decode attention ----------------------------------------------------------------------

// `batch` sequences of `context` tokens each, one query per sequence (a decode step of one
// layer). Block tables are scattered through the pool; `sets` disjoint copies rotate.
void BM_DecodeAttention(benchmark::State& state, DType dtype, int64_t batch, int64_t context) {
  const Sizes& s = Ctx().sizes;
  std::string why;
  Backend* backend = BackendFor(dtype, &why);
  if (backend == nullptr) {
    state.SkipWithError(why.c_str());
    for (auto _ : state) {
    }
    return;
  }
  const int64_t blocks_per_seq = (context + s.block_size - 1) / s.block_size;
  const int64_t kv_bytes = batch * context * s.kv_heads * s.head_dim * 2 *
                           static_cast<int64_t>(DTypeSize(dtype));  // K + V read per call
  const int64_t sets = RotationCopies(kv_bytes, 64);
  const int64_t num_blocks = sets * batch * s.kv_heads * blocks_per_seq;
  auto pool = RandomKvPool(*backend, num_blocks, s.block_size, s.head_dim, 3);
  auto q = RandomTensor(*backend, dtype, {batch, s.heads, s.head_dim}, 5);
  auto out = backend->Allocate(dtype, {batch, s.heads, s.head_dim});
  if (!pool.ok() || !q.ok() || !out.ok()) {
    const absl::Status& bad = !pool.ok() ? pool.status() : (!q.ok() ? q.status() : out.status());
    state.SkipWithError(std::string(bad.ToString()).c_str());
    for (auto _ : state) {
    }
    return;
  }
  const std::vector<int32_t> block_ids = ShuffledIds(static_cast<int32_t>(num_blocks), 9);
  // sequences[set][b], each KV head with its own scattered blocks.
  std::vector<std::vector<AttentionSequence>> sequences(sets);
  std::vector<BenchSequenceTables> tables;
  tables.reserve(static_cast<size_t>(sets * batch));
  for (int64_t set = 0; set < sets; ++set) {
    for (int64_t b = 0; b < batch; ++b) {
      const BenchSequenceTables& t = tables.emplace_back(UniformHeadTables(
          block_ids, static_cast<size_t>((set * batch + b) * s.kv_heads * blocks_per_seq),
          s.kv_heads, blocks_per_seq, static_cast<int32_t>(context)));
      AttentionSequence seq;
      seq.query_begin = static_cast<int32_t>(b);
      seq.num_queries = 1;
      seq.kv_lens = t.kv_lens;
      seq.block_offsets = t.block_offsets;
      seq.block_ids = t.block_ids;
      sequences[set].push_back(seq);
    }
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
  auto call = [&](int i) {
    AttentionBatch attention;
    attention.sequences = sequences[static_cast<size_t>(i) % sequences.size()];
    attention.num_kv_heads = static_cast<int32_t>(s.kv_heads);
    attention.scale = scale;
    return backend->Attention(attention, *q, *pool, &*out);
  };
  const std::optional<double> per_call = RunLoop(state, *backend, 20, call);
  if (!per_call) return;
  const double bytes_per_second = static_cast<double>(kv_bytes) / *per_call;
  state.counters["GBps"] = bytes_per_second / 1e9;
  state.counters["us_per_call"] = *per_call * 1e6;
  state.counters["rotation_sets"] = static_cast<double>(sets);
  SetCopyFraction(state, bytes_per_second);
}

// (c) Causal prefill attention --------------------------------------------------------------------

// One sequence of `tokens` queries over its own `tokens` keys (a whole-prompt prefill of one
// layer), optionally with the window summary compression measures (last 32 queries).
void BM_PrefillAttention(benchmark::State& state, DType dtype, int64_t tokens, bool window_mass) {
  const Sizes& s = Ctx().sizes;
  std::string why;
  Backend* backend = BackendFor(dtype, &why);
  if (backend == nullptr) {
    state.SkipWithError(why.c_str());
    for (auto _ : state) {
    }
    return;
  }
  const int64_t blocks_per_head = (tokens + s.block_size - 1) / s.block_size;
  const int64_t blocks = s.kv_heads * blocks_per_head;
  auto pool = RandomKvPool(*backend, blocks, s.block_size, s.head_dim, 13);
  auto q = RandomTensor(*backend, dtype, {tokens, s.heads, s.head_dim}, 15);
  auto out = backend->Allocate(dtype, {tokens, s.heads, s.head_dim});
  auto mass = backend->AllocateZeros(DType::kF32, {s.heads, tokens});
  if (!pool.ok() || !q.ok() || !out.ok() || !mass.ok()) {
    state.SkipWithError("allocation failed");
    for (auto _ : state) {
    }
    return;
  }
  const std::vector<int32_t> block_ids = ShuffledIds(static_cast<int32_t>(blocks), 17);
  const BenchSequenceTables tables =
      UniformHeadTables(block_ids, 0, s.kv_heads, blocks_per_head, static_cast<int32_t>(tokens));
  AttentionSequence seq;
  seq.query_begin = 0;
  seq.num_queries = static_cast<int32_t>(tokens);
  seq.kv_lens = tables.kv_lens;
  seq.block_offsets = tables.block_offsets;
  seq.block_ids = tables.block_ids;
  if (window_mass) {
    seq.window_mass = &*mass;
    seq.window_begin = static_cast<int32_t>(std::max<int64_t>(0, tokens - 32));
  }
  auto call = [&](int) {
    AttentionBatch attention;
    attention.sequences = {&seq, 1};
    attention.num_kv_heads = static_cast<int32_t>(s.kv_heads);
    attention.scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
    return backend->Attention(attention, *q, *pool, &*out);
  };
  const std::optional<double> per_call = RunLoop(state, *backend, 2, call);
  if (!per_call) return;
  // Causal: query i sees i + 1 keys; QK^T and PV are 2 * head_dim flops per (query, key, head)
  // each.
  const double pairs = static_cast<double>(tokens) * static_cast<double>(tokens + 1) / 2.0;
  const double flops = 4.0 * static_cast<double>(s.heads * s.head_dim) * pairs;
  state.counters["TFLOPs"] = flops / *per_call / 1e12;
  state.counters["ms_per_call"] = *per_call * 1e3;
}

// (d) GEMM ----------------------------------------------------------------------------------------

// y[N, M] = x[N, K] w[M, K]^T, the projections of one Llama-3-8B layer.
void BM_Gemm(benchmark::State& state, DType dtype, int64_t m, int64_t k, int64_t n) {
  std::string why;
  Backend* backend = BackendFor(dtype, &why);
  if (backend == nullptr) {
    state.SkipWithError(why.c_str());
    for (auto _ : state) {
    }
    return;
  }
  const int64_t w_bytes = m * k * static_cast<int64_t>(DTypeSize(dtype));
  const int64_t copies = RotationCopies(w_bytes, 8);
  std::vector<Tensor>& weights = Ctx().gemm_weights[{dtype, m, k}];
  for (int64_t i = static_cast<int64_t>(weights.size()); i < copies; ++i) {
    auto w = RandomTensor(*backend, dtype, {m, k}, 100 + static_cast<uint64_t>(i),
                          1.0f / std::sqrt(static_cast<float>(k)));
    if (!w.ok()) {
      state.SkipWithError(std::string(w.status().ToString()).c_str());
      for (auto _ : state) {
      }
      return;
    }
    weights.push_back(std::move(*w));
  }
  auto x = RandomTensor(*backend, dtype, {n, k}, 7);
  auto y = backend->Allocate(dtype, {n, m});
  if (!x.ok() || !y.ok()) {
    state.SkipWithError("allocation failed");
    for (auto _ : state) {
    }
    return;
  }
  auto call = [&](int i) {
    return backend->Matmul(*x, weights[static_cast<size_t>(i) % weights.size()], nullptr, &*y);
  };
  const std::optional<double> per_call = RunLoop(state, *backend, 20, call);
  if (!per_call) return;
  const double flops = 2.0 * static_cast<double>(m) * static_cast<double>(k) * n;
  const double bytes = static_cast<double>(w_bytes + (n * k + n * m) * DTypeSize(dtype));
  state.counters["TFLOPs"] = flops / *per_call / 1e12;
  state.counters["GBps"] = bytes / *per_call / 1e9;
  state.counters["us_per_call"] = *per_call * 1e6;
  SetCopyFraction(state, bytes / *per_call);
}

void RegisterAll() {
  const Sizes& s = Ctx().sizes;
  const auto finish = [&](benchmark::internal::Benchmark* b) {
    b->UseManualTime()->Unit(benchmark::kMicrosecond)->MinTime(s.min_time);
  };
  for (auto* copy : {benchmark::RegisterBenchmark("copy/cuda_memcpy_d2d", BM_CudaMemcpy),
                     benchmark::RegisterBenchmark("copy/copy_rows_proxy", BM_CopyRows)}) {
    copy->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(3);
  }
  for (DType dtype : AttentionDTypes()) {
    for (int64_t context : s.decode_contexts) {
      for (int64_t batch : s.decode_batches) {
        const std::string name =
            absl::StrCat("decode_attention/", DTypeName(dtype), "/batch:", batch, "/ctx:", context);
        finish(
            benchmark::RegisterBenchmark(name.c_str(), BM_DecodeAttention, dtype, batch, context));
      }
    }
  }
  for (DType dtype : AttentionDTypes()) {
    for (int64_t tokens : s.prefill_tokens) {
      const std::string name =
          absl::StrCat("prefill_attention/", DTypeName(dtype), "/tokens:", tokens);
      finish(benchmark::RegisterBenchmark(name.c_str(), BM_PrefillAttention, dtype, tokens, false));
    }
  }
  // The window summary (compression) and the GEMMs in the serving dtype: bf16 on CUDA, f32 on
  // the CPU.
  const DType serving = Ctx().primary->activation_dtype();
  const std::string mass_name = absl::StrCat("prefill_attention/", DTypeName(serving),
                                             "/tokens:", s.prefill_tokens.back(), "/window_mass");
  finish(benchmark::RegisterBenchmark(mass_name.c_str(), BM_PrefillAttention, serving,
                                      s.prefill_tokens.back(), true));
  const DType gemm_dtype = serving;
  for (const auto& [m, k] : s.gemm_shapes) {
    for (int64_t n : s.gemm_rows) {
      const std::string name =
          absl::StrCat("gemm/", DTypeName(gemm_dtype), "/M:", m, "/K:", k, "/N:", n);
      finish(benchmark::RegisterBenchmark(name.c_str(), BM_Gemm, gemm_dtype, m, k, n));
    }
  }
}

// Removes `--<name>=X` from argv and returns X (Google Benchmark rejects flags it does not know).
std::string TakeFlag(const char* name, int* argc, char** argv) {
  const std::string prefix = absl::StrCat("--", name, "=");
  std::string value;
  int out = 1;
  for (int i = 1; i < *argc; ++i) {
    if (std::strncmp(argv[i], prefix.c_str(), prefix.size()) == 0) {
      value = argv[i] + prefix.size();
    } else {
      argv[out++] = argv[i];
    }
  }
  *argc = out;
  return value;
}

// --attention-isa=auto|scalar|avx2|avx512: the CPU attention kernels to time (auto: the widest this
// CPU has). Returns false, after a message, for an unknown or unsupported set.
bool ApplyAttentionIsaFlag(const std::string& isa) {
  if (isa.empty() || isa == "auto") return true;
  for (cpu::attn::AttentionIsa candidate :
       {cpu::attn::AttentionIsa::kScalar, cpu::attn::AttentionIsa::kAvx2,
        cpu::attn::AttentionIsa::kAvx512}) {
    if (isa != cpu::attn::AttentionIsaName(candidate)) continue;
    const absl::Status status = cpu::attn::SetAttentionOverrides({.isa = candidate});
    if (!status.ok()) {
      std::fprintf(stderr, "bench_kernels: --attention-isa: %s\n", status.ToString().c_str());
      return false;
    }
    return true;
  }
  std::fprintf(stderr,
               "bench_kernels: --attention-isa must be auto, scalar, avx2 or avx512, got '%s'\n",
               isa.c_str());
  return false;
}

int Main(int argc, char** argv) {
  std::string size = TakeFlag("size", &argc, argv);
  if (!ApplyAttentionIsaFlag(TakeFlag("attention-isa", &argc, argv))) return 2;
  if (size.empty() && std::getenv("ZIGZAG_BENCH_SIZE") != nullptr) {
    size = std::getenv("ZIGZAG_BENCH_SIZE");
  }
  Context& c = Ctx();
  c.backend_name = BackendNameFromEnv();
  auto primary = CreateBenchBackend(c.backend_name, /*fp32=*/false);
  if (!primary.ok()) {
    std::fprintf(stderr, "bench_kernels: %s\n", std::string(primary.status().ToString()).c_str());
    return 1;
  }
  c.primary = std::move(*primary);
  if (c.primary->device() == Device::kCuda) {
    auto fp32 = CreateBenchBackend("cuda", /*fp32=*/true);
    if (!fp32.ok()) {
      std::fprintf(stderr, "bench_kernels: %s\n", std::string(fp32.status().ToString()).c_str());
      return 1;
    }
    c.cuda_fp32 = std::move(*fp32);
  }
  if (size.empty()) size = IsCuda() ? "full" : "small";
  if (size != "full" && size != "small" && size != "cpu124m") {
    std::fprintf(stderr, "bench_kernels: --size must be full, small or cpu124m, got '%s'\n",
                 size.c_str());
    return 2;
  }
  c.sizes = size == "full" ? FullSizes() : (size == "small" ? SmallSizes() : Cpu124MSizes());
  auto rate = MeasureCopyRate(*c.primary, c.sizes.copy_bytes, 10);
  if (rate.ok()) {
    c.copy_rate = *rate;
    std::fprintf(stderr, "bench_kernels: copy rate %.1f GB/s (%s)\n", rate->bytes_per_second / 1e9,
                 rate->method.c_str());
    benchmark::AddCustomContext("copy_rate_GBps", absl::StrCat(rate->bytes_per_second / 1e9));
    benchmark::AddCustomContext("copy_rate_method", rate->method);
  } else {
    std::fprintf(stderr, "bench_kernels: no copy rate: %s\n",
                 std::string(rate.status().ToString()).c_str());
  }
  benchmark::AddCustomContext("zigzag_backend", c.primary->name());
  benchmark::AddCustomContext("zigzag_sizes", c.sizes.name);
  if (!IsCuda()) {
    benchmark::AddCustomContext(
        "cpu_attention_isa",
        cpu::attn::AttentionIsaName(
            cpu::attn::GetAttentionOverrides().isa.value_or(cpu::attn::BestSupportedIsa())));
  }
  std::fprintf(stderr, "bench_kernels: backend %s, %s sizes (heads %lld/%lld, head_dim %lld)\n",
               c.primary->name(), c.sizes.name.c_str(), static_cast<long long>(c.sizes.heads),
               static_cast<long long>(c.sizes.kv_heads), static_cast<long long>(c.sizes.head_dim));
  RegisterAll();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  c.gemm_weights.clear();
  c.cuda_fp32.reset();
  c.primary.reset();
  return 0;
}

}  // namespace
}  // namespace zigzag::bench

int main(int argc, char** argv) { return zigzag::bench::Main(argc, argv); }
