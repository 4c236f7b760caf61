#include "bench/bench_support.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <numeric>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/util/status_macros.h"
#include "kernels/backend_registry.h"

#ifdef ZIGZAG_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace zigzag::bench {
namespace {

// splitmix64: fast, seedable, good enough for benchmark data.
uint64_t NextRandom(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

#ifdef ZIGZAG_HAVE_CUDA
absl::Status CudaStatus(cudaError_t error, const char* call) {
  if (error == cudaSuccess) return absl::OkStatus();
  (void)cudaGetLastError();
  return absl::InternalError(absl::StrCat("bench: ", call, " failed: ", cudaGetErrorName(error),
                                          " (", cudaGetErrorString(error), ")"));
}
#define BENCH_CUDA(call) RETURN_IF_ERROR(CudaStatus((call), #call))
#endif

}  // namespace

std::string BackendNameFromEnv() {
  const char* name = std::getenv("ZIGZAG_BENCH_BACKEND");
  return name != nullptr && name[0] != '\0' ? name : "auto";
}

absl::StatusOr<std::unique_ptr<Backend>> CreateBenchBackend(const std::string& name, bool fp32) {
  BackendOptions options;
  options.cuda_fp32 = fp32;
  return CreateBackend(name, options);
}

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

absl::StatusOr<CopyRate> MeasureCudaMemcpyRate(Backend& backend, int64_t bytes, int repetitions) {
  if (backend.device() != Device::kCuda) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the cudaMemcpy copy rate needs the cuda backend; this run uses '", backend.name(), "'"));
  }
#ifdef ZIGZAG_HAVE_CUDA
  ASSIGN_OR_RETURN(Tensor src, backend.Allocate(DType::kI32, {bytes / 4}));
  ASSIGN_OR_RETURN(Tensor dst, backend.Allocate(DType::kI32, {bytes / 4}));
  RETURN_IF_ERROR(backend.Synchronize());
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  BENCH_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  BENCH_CUDA(cudaEventCreate(&start));
  BENCH_CUDA(cudaEventCreate(&stop));
  // Non-zero source bytes (METHOD: never time zeros), then warm up.
  BENCH_CUDA(cudaMemsetAsync(src.data(), 0x5a, src.bytes(), stream));
  for (int i = 0; i < 2; ++i) {
    BENCH_CUDA(
        cudaMemcpyAsync(dst.data(), src.data(), src.bytes(), cudaMemcpyDeviceToDevice, stream));
  }
  BENCH_CUDA(cudaEventRecord(start, stream));
  for (int i = 0; i < repetitions; ++i) {
    BENCH_CUDA(
        cudaMemcpyAsync(dst.data(), src.data(), src.bytes(), cudaMemcpyDeviceToDevice, stream));
  }
  BENCH_CUDA(cudaEventRecord(stop, stream));
  BENCH_CUDA(cudaEventSynchronize(stop));
  float ms = 0.0f;
  BENCH_CUDA(cudaEventElapsedTime(&ms, start, stop));
  BENCH_CUDA(cudaEventDestroy(start));
  BENCH_CUDA(cudaEventDestroy(stop));
  BENCH_CUDA(cudaStreamDestroy(stream));
  CopyRate rate;
  rate.buffer_bytes = static_cast<int64_t>(src.bytes());
  rate.repetitions = repetitions;
  rate.bytes_per_second =
      2.0 * static_cast<double>(src.bytes()) * repetitions / (static_cast<double>(ms) * 1e-3);
  rate.method = absl::StrCat("cudaMemcpyAsync device-to-device, ", src.bytes() >> 20, " MiB x ",
                             repetitions, ", CUDA events; read + written bytes");
  return rate;
#else
  (void)bytes;
  (void)repetitions;
  return absl::FailedPreconditionError("this build has no CUDA support");
#endif
}

absl::StatusOr<CopyRate> MeasureCopyRowsRate(Backend& backend, int64_t bytes, int repetitions) {
  constexpr int64_t kRowElements = 4096;
  const DType dtype = backend.activation_dtype();
  const int64_t rows = std::max<int64_t>(1, bytes / (kRowElements * DTypeSize(dtype)));
  // The source: 64 random rows repeated (gathered by CopyRows itself), not gigabytes generated
  // on the host.
  const int64_t seed_rows = std::min<int64_t>(rows, 64);
  ASSIGN_OR_RETURN(Tensor seed, RandomTensor(backend, dtype, {seed_rows, kRowElements}, 11));
  ASSIGN_OR_RETURN(Tensor src, backend.Allocate(dtype, {rows, kRowElements}));
  ASSIGN_OR_RETURN(Tensor dst, backend.Allocate(dtype, {rows, kRowElements}));
  std::vector<int32_t> identity(static_cast<size_t>(rows));
  std::iota(identity.begin(), identity.end(), 0);
  std::vector<int32_t> repeat(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) repeat[r] = static_cast<int32_t>(r % seed_rows);
  RETURN_IF_ERROR(backend.CopyRows(seed, repeat, &src));
  RETURN_IF_ERROR(backend.CopyRows(src, identity, &dst));  // warm-up (and first touch on CPU)
  RETURN_IF_ERROR(backend.Synchronize());
  const double start = NowSeconds();
  for (int i = 0; i < repetitions; ++i) RETURN_IF_ERROR(backend.CopyRows(src, identity, &dst));
  RETURN_IF_ERROR(backend.Synchronize());
  const double seconds = NowSeconds() - start;
  CopyRate rate;
  rate.buffer_bytes = static_cast<int64_t>(src.bytes());
  rate.repetitions = repetitions;
  rate.bytes_per_second = 2.0 * static_cast<double>(src.bytes()) * repetitions / seconds;
  rate.method =
      absl::StrCat("Backend::CopyRows identity gather (streaming-copy proxy), ", src.bytes() >> 20,
                   " MiB x ", repetitions, ", wall clock; read + written bytes");
  return rate;
}

absl::StatusOr<CopyRate> MeasureCopyRate(Backend& backend, int64_t bytes, int repetitions) {
  if (backend.device() == Device::kCuda) {
    return MeasureCudaMemcpyRate(backend, bytes, repetitions);
  }
  return MeasureCopyRowsRate(backend, bytes, repetitions);
}

std::vector<float> RandomFloats(int64_t count, uint64_t seed, float scale) {
  std::vector<float> out(static_cast<size_t>(count));
  uint64_t state = seed * 0x2545f4914f6cdd1dull + 1;
  for (float& value : out) {
    // Top 24 bits -> [0, 1) -> [-1, 1).
    const float unit = static_cast<float>(NextRandom(state) >> 40) * 0x1.0p-24f;
    value = (2.0f * unit - 1.0f) * scale;
  }
  return out;
}

absl::StatusOr<Tensor> RandomTensor(Backend& backend, DType dtype, const Shape& shape,
                                    uint64_t seed, float scale) {
  ASSIGN_OR_RETURN(Tensor tensor, backend.Allocate(dtype, shape));
  const std::vector<float> host = RandomFloats(tensor.numel(), seed, scale);
  RETURN_IF_ERROR(backend.CopyToDevice(host.data(), DType::kF32, &tensor));
  return tensor;
}

std::vector<int32_t> RandomTokens(int64_t count, int64_t vocab, uint64_t seed) {
  std::vector<int32_t> out(static_cast<size_t>(count));
  uint64_t state = seed * 0x9e3779b97f4a7c15ull + 7;
  for (int32_t& id : out)
    id = static_cast<int32_t>(NextRandom(state) % static_cast<uint64_t>(vocab));
  return out;
}

absl::StatusOr<Tensor> RandomKvPool(Backend& backend, int64_t num_blocks, int64_t block_size,
                                    int64_t head_dim, uint64_t seed) {
  const DType dtype = backend.activation_dtype();
  ASSIGN_OR_RETURN(Tensor pool, backend.Allocate(dtype, {num_blocks, 2, block_size, head_dim}));
  // One random chunk of keys and values (one KV head per row), written over every slot chunk by
  // chunk: the pool holds non-trivial data without generating gigabytes on the host.
  const int64_t slots = num_blocks * block_size;
  const int64_t chunk = std::min<int64_t>(slots, 4096);
  ASSIGN_OR_RETURN(Tensor k, RandomTensor(backend, dtype, {chunk, 1, head_dim}, seed));
  ASSIGN_OR_RETURN(Tensor v, RandomTensor(backend, dtype, {chunk, 1, head_dim}, seed + 1));
  std::vector<int32_t> slot_ids(static_cast<size_t>(chunk));
  for (int64_t begin = 0; begin < slots; begin += chunk) {
    const int64_t n = std::min(chunk, slots - begin);
    slot_ids.resize(static_cast<size_t>(n));
    std::iota(slot_ids.begin(), slot_ids.end(), static_cast<int32_t>(begin));
    const Tensor k_rows = k.Rows(0, n);
    const Tensor v_rows = v.Rows(0, n);
    RETURN_IF_ERROR(backend.WriteKv(k_rows, v_rows, slot_ids, &pool));
  }
  RETURN_IF_ERROR(backend.Synchronize());
  return pool;
}

BenchSequenceTables UniformHeadTables(std::span<const int32_t> ids, size_t first, int64_t kv_heads,
                                      int64_t blocks_per_head, int32_t kv_len) {
  BenchSequenceTables t;
  t.block_offsets.push_back(0);
  const size_t count = static_cast<size_t>(kv_heads * blocks_per_head);
  t.block_ids.assign(ids.begin() + first, ids.begin() + first + count);
  for (int64_t g = 0; g < kv_heads; ++g) {
    t.kv_lens.push_back(kv_len);
    t.block_offsets.push_back(static_cast<int32_t>((g + 1) * blocks_per_head));
  }
  return t;
}

std::vector<int32_t> ShuffledIds(int32_t count, uint64_t seed) {
  std::vector<int32_t> ids(static_cast<size_t>(count));
  std::iota(ids.begin(), ids.end(), 0);
  std::mt19937_64 rng(seed);
  std::shuffle(ids.begin(), ids.end(), rng);
  return ids;
}

absl::StatusOr<std::vector<int64_t>> ParseIntList(const std::string& text, const char* what) {
  std::vector<int64_t> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    int64_t value = 0;
    if (!absl::SimpleAtoi(part, &value) || value <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": '", std::string(part), "' is not a positive integer (list: '", text, "')"));
    }
    out.push_back(value);
  }
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat(what, " is empty"));
  return out;
}

}  // namespace zigzag::bench
