// Helpers shared by the benchmark programs: the backend a run uses (ZIGZAG_BENCH_BACKEND), the
// device-to-device copy rate that every roofline is measured against, random tensors, a paged KV
// pool filled with random keys and values, and a wall clock. Benchmarks only: no library code
// depends on this, and it adds nothing to the Backend interface.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace zigzag::bench {

// ZIGZAG_BENCH_BACKEND, or "auto" when unset: "auto", "cpu" or "cuda".
std::string BackendNameFromEnv();

// CreateBackend(name) with CUDA in float32 (`fp32`) or bf16. The CPU backend is float32 whatever
// `fp32` says.
absl::StatusOr<std::unique_ptr<Backend>> CreateBenchBackend(const std::string& name, bool fp32);

// Seconds on a monotonic clock.
double NowSeconds();

// A copy rate counts the bytes read plus the bytes written, per second: the memory traffic a
// copy causes. A kernel that only reads B bytes at the same traffic rate needs B / rate seconds,
// so "bytes read / copy rate" is the time floor (the roofline) for reading.
struct CopyRate {
  double bytes_per_second = 0.0;  // (read + written) / s
  int64_t buffer_bytes = 0;       // size of one copy's source
  int repetitions = 0;
  std::string method;  // how it was measured, for the report
};

// CUDA backends: cudaMemcpyAsync device-to-device between two tensors from Backend::Allocate,
// timed with CUDA events on a stream of its own (the Backend interface has no device-to-device
// copy). FailedPrecondition on any other backend or in a build without CUDA.
absl::StatusOr<CopyRate> MeasureCudaMemcpyRate(Backend& backend, int64_t bytes, int repetitions);

// Any backend: Backend::CopyRows with the identity row list over [rows, 4096] tensors, a
// streaming copy through the interface (gather kernel on CUDA, row loops on the CPU). Includes
// the op's host-side work and its metadata upload (rows x 4 bytes, 1/4096 of the data).
absl::StatusOr<CopyRate> MeasureCopyRowsRate(Backend& backend, int64_t bytes, int repetitions);

// The rate rooflines use: cudaMemcpy on CUDA, CopyRows elsewhere.
absl::StatusOr<CopyRate> MeasureCopyRate(Backend& backend, int64_t bytes, int repetitions);

// Host floats uniform in [-scale, scale) from a seeded generator (not zeros: zeros can run faster
// than real data and hide unwritten outputs).
std::vector<float> RandomFloats(int64_t count, uint64_t seed, float scale);

// A tensor of `dtype` (a float dtype) on the backend, filled with RandomFloats.
absl::StatusOr<Tensor> RandomTensor(Backend& backend, DType dtype, const Shape& shape,
                                    uint64_t seed, float scale = 1.0f);

// Token ids uniform in [0, vocab), seeded.
std::vector<int32_t> RandomTokens(int64_t count, int64_t vocab, uint64_t seed);

// A paged KV pool [num_blocks, 2, block_size, head_dim] (one KV head per block) in the backend's
// activation dtype, every slot written (through WriteKv) with random keys and values.
absl::StatusOr<Tensor> RandomKvPool(Backend& backend, int64_t num_blocks, int64_t block_size,
                                    int64_t head_dim, uint64_t seed);

// Per-KV-head tables of one sequence whose heads all hold `kv_len` entries in consecutive runs
// of `blocks_per_head` ids of `ids` starting at `first` (for AttentionSequence).
struct BenchSequenceTables {
  std::vector<int32_t> kv_lens, block_offsets, block_ids;
};
BenchSequenceTables UniformHeadTables(std::span<const int32_t> ids, size_t first, int64_t kv_heads,
                                      int64_t blocks_per_head, int32_t kv_len);

// A random permutation of [0, count), so that block tables are scattered through the pool as
// they are after real allocation and release.
std::vector<int32_t> ShuffledIds(int32_t count, uint64_t seed);

// "1024" -> 1024, "1,8,32" -> {1, 8, 32}; InvalidArgument naming `what` for anything else.
absl::StatusOr<std::vector<int64_t>> ParseIntList(const std::string& text, const char* what);

}  // namespace zigzag::bench
