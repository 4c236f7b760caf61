#include "kernels/cpu/cpu_backend.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"
#include "kernels/cpu/cpu_attention.h"
#include "kernels/cpu/cpu_checks.h"
#include "kernels/cpu/cpu_step.h"
#include "kernels/cpu/thread_pool.h"

namespace zigzag {
namespace {

using cpu::ArgError;
using cpu::CheckF32;
using cpu::CheckF32Output;
using cpu::CheckShape;

constexpr size_t kAlignment = 64;
// Below about this many floats of work per chunk, threads cost more than they save.
constexpr int64_t kMinFloatsPerChunk = 16384;

int64_t MinRowsPerChunk(int64_t row_floats) {
  return std::max<int64_t>(1, kMinFloatsPerChunk / std::max<int64_t>(1, row_floats));
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int num_threads) : pool_(num_threads) {}

  const char* name() const override { return "cpu"; }
  Device device() const override { return Device::kCpu; }
  DType activation_dtype() const override { return DType::kF32; }
  DType weight_dtype() const override { return DType::kF32; }

  absl::StatusOr<Tensor> Allocate(DType dtype, const Shape& shape) override;
  absl::StatusOr<Tensor> AllocateZeros(DType dtype, const Shape& shape) override;
  absl::Status CopyToDevice(const void* host, DType host_dtype, Tensor* dst) override;
  absl::Status CopyToHost(const Tensor& src, std::span<float> host) override;
  absl::Status Synchronize() override { return absl::OkStatus(); }

  absl::Status Embedding(const Tensor& table, std::span<const int32_t> ids, Tensor* out) override;
  absl::Status Matmul(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor* y) override;
  absl::Status RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor* y) override;
  absl::Status Rope(std::span<const int32_t> positions, const Tensor& inv_freq,
                    Tensor* x) override {
    RETURN_IF_ERROR(RopeRows(positions, inv_freq, x));
    CountHostToDevice(static_cast<int64_t>(positions.size_bytes()));
    return absl::OkStatus();
  }
  absl::Status SiluMul(const Tensor& gate, const Tensor& up, Tensor* out) override;
  absl::Status Add(const Tensor& a, const Tensor& b, Tensor* out) override;
  absl::Status CopyRows(const Tensor& src, std::span<const int32_t> rows, Tensor* dst) override;
  absl::Status WriteKv(const Tensor& k, const Tensor& v, std::span<const int32_t> slots,
                       Tensor* kv_pool) override {
    RETURN_IF_ERROR(cpu::WriteKv(k, v, slots, kv_pool));
    CountHostToDevice(static_cast<int64_t>(slots.size_bytes()));
    return absl::OkStatus();
  }
  absl::Status CompactKv(std::span<const KvStreamCompaction> streams, Tensor* kv_pool) override {
    RETURN_IF_ERROR(cpu::CompactKv(streams, kv_pool));
    CountHostToDevice(CompactionBytes(streams));
    return absl::OkStatus();
  }
  absl::Status CopyBlocks(std::span<const int32_t> src_blocks, std::span<const int32_t> dst_blocks,
                          Tensor* kv_pool) override {
    return cpu::CopyBlocks(src_blocks, dst_blocks, kv_pool);
  }
  absl::Status Attention(const AttentionBatch& batch, const Tensor& q, const Tensor& kv_pool,
                         Tensor* out) override {
    RETURN_IF_ERROR(cpu::Attention(pool_, batch, q, kv_pool, out));
    CountHostToDevice(TableBytes(batch));
    return absl::OkStatus();
  }

  // The planned step (kernels/cpu/cpu_step.h): one logical upload per PlanStep.
  absl::Status PlanStep(const StepTables& tables, const Tensor& kv_pool) override {
    RETURN_IF_ERROR(step_.Plan(tables, kv_pool));
    CountHostToDevice(tables.metadata_bytes());
    return absl::OkStatus();
  }
  absl::Status RopeStep(const Tensor& inv_freq, Tensor* x) override {
    RETURN_IF_ERROR(step_.CheckPlanned("RopeStep"));
    return RopeRows(step_.tables().positions, inv_freq, x);
  }
  absl::Status WriteKvStep(int32_t layer, const Tensor& k, const Tensor& v,
                           Tensor* kv_pool) override {
    return step_.WriteKv(layer, k, v, kv_pool);
  }
  absl::Status AttentionStep(int32_t layer, const Tensor& q, const Tensor& kv_pool,
                             Tensor* out) override {
    return step_.Attention(pool_, layer, q, kv_pool, out);
  }

 private:
  absl::Status RopeRows(std::span<const int32_t> positions, const Tensor& inv_freq, Tensor* x);
  // The bytes a device backend would upload for these span arguments.
  static int64_t TableBytes(const AttentionBatch& batch) {
    int64_t ints = 0;
    for (const AttentionSequence& seq : batch.sequences) {
      ints += 3 + static_cast<int64_t>(seq.kv_lens.size() + seq.block_offsets.size() +
                                       seq.block_ids.size());
    }
    return ints * static_cast<int64_t>(sizeof(int32_t));
  }
  static int64_t CompactionBytes(std::span<const KvStreamCompaction> streams) {
    int64_t ints = 0;
    for (const KvStreamCompaction& stream : streams) {
      ints += 2 * static_cast<int64_t>(stream.kept.size());
    }
    return ints * static_cast<int64_t>(sizeof(int32_t));
  }

  cpu::StepPlan step_;
  ThreadPool pool_;
};

// Memory ------------------------------------------------------------------------------------------

absl::StatusOr<Tensor> CpuBackend::Allocate(DType dtype, const Shape& shape) {
  int64_t numel = 1;
  for (int64_t d : shape) {
    if (d < 0)
      return ArgError("Allocate", "shape", ShapeToString(shape), " has a negative dimension");
    if (__builtin_mul_overflow(numel, d, &numel)) {
      return absl::ResourceExhaustedError(
          absl::StrCat("Allocate: shape ", ShapeToString(shape), " is too large"));
    }
  }
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(static_cast<uint64_t>(numel), DTypeSize(dtype), &bytes) ||
      bytes > (uint64_t{1} << 62)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("Allocate: shape ", ShapeToString(shape), " is too large"));
  }
  // aligned_alloc wants a multiple of the alignment; empty tensors still get a real address.
  const size_t padded =
      std::max<size_t>(kAlignment, (bytes + kAlignment - 1) / kAlignment * kAlignment);
  void* data = std::aligned_alloc(kAlignment, padded);
  if (data == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat("Allocate: cannot allocate ", bytes,
                                                     " bytes for ", DTypeName(dtype),
                                                     ShapeToString(shape), " in host memory"));
  }
  std::shared_ptr<void> storage(data, [](void* p) { std::free(p); });
  return Tensor(std::move(storage), data, dtype, shape, Device::kCpu);
}

absl::StatusOr<Tensor> CpuBackend::AllocateZeros(DType dtype, const Shape& shape) {
  ASSIGN_OR_RETURN(Tensor tensor, Allocate(dtype, shape));
  std::memset(tensor.data(), 0, tensor.bytes());
  return tensor;
}

absl::Status CpuBackend::CopyToDevice(const void* host, DType host_dtype, Tensor* dst) {
  if (dst == nullptr || !dst->defined())
    return ArgError("CopyToDevice", "dst", "is null or undefined");
  if (dst->device() != Device::kCpu) {
    return ArgError("CopyToDevice", "dst", "is ", dst->DebugString(), ", not in host memory");
  }
  const int64_t n = dst->numel();
  if (n == 0) return absl::OkStatus();
  if (host == nullptr) return ArgError("CopyToDevice", "host", "is null");
  if (dst->dtype() == DType::kI32 || host_dtype == DType::kI32) {
    if (dst->dtype() != host_dtype) {
      return ArgError("CopyToDevice", "host_dtype", DTypeName(host_dtype),
                      " cannot be copied into ", dst->DebugString(), " (i32 copies only into i32)");
    }
  }
  if (dst->dtype() == host_dtype) {
    std::memcpy(dst->data(), host, dst->bytes());
    return absl::OkStatus();
  }
  if (!IsFloatDType(host_dtype) || !IsFloatDType(dst->dtype())) {
    return ArgError("CopyToDevice", "host_dtype", "has an unknown dtype");
  }
  void* out = dst->data();
  const DType out_dtype = dst->dtype();
  pool_.ParallelFor(
      n,
      [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          StoreFromFloat(LoadAsFloat(host, host_dtype, i), out_dtype, out, i);
        }
      },
      kMinFloatsPerChunk * 4);
  return absl::OkStatus();
}

absl::Status CpuBackend::CopyToHost(const Tensor& src, std::span<float> host) {
  if (!src.defined()) return ArgError("CopyToHost", "src", "is an undefined tensor");
  if (src.device() != Device::kCpu || !IsFloatDType(src.dtype())) {
    return ArgError("CopyToHost", "src", "is ", src.DebugString(),
                    "; only float tensors in host memory can be copied out as float");
  }
  if (static_cast<int64_t>(host.size()) != src.numel()) {
    return ArgError("CopyToHost", "host", "has ", host.size(), " floats but src ",
                    src.DebugString(), " has ", src.numel());
  }
  if (src.dtype() == DType::kF32) {
    if (!host.empty()) std::memcpy(host.data(), src.data(), src.bytes());
    return absl::OkStatus();
  }
  pool_.ParallelFor(
      src.numel(),
      [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) host[i] = LoadAsFloat(src.data(), src.dtype(), i);
      },
      kMinFloatsPerChunk * 4);
  return absl::OkStatus();
}

// Ops ---------------------------------------------------------------------------------------------

absl::Status CpuBackend::Embedding(const Tensor& table, std::span<const int32_t> ids, Tensor* out) {
  RETURN_IF_ERROR(CheckF32("Embedding", "table", table, 2, "[vocab, hidden]"));
  RETURN_IF_ERROR(CheckF32Output("Embedding", "out", out, 2, "[N, hidden]"));
  const int64_t vocab = table.dim(0);
  const int64_t hidden = table.dim(1);
  RETURN_IF_ERROR(CheckShape("Embedding", "out", *out, {static_cast<int64_t>(ids.size()), hidden}));
  for (size_t n = 0; n < ids.size(); ++n) {
    if (ids[n] < 0 || ids[n] >= vocab) {
      return ArgError("Embedding", absl::StrCat("ids[", n, "]"), "= ", ids[n],
                      " is outside the vocabulary [0, ", vocab, ")");
    }
  }
  const float* src = table.data_as<const float>();
  float* dst = out->data_as<float>();
  pool_.ParallelFor(
      static_cast<int64_t>(ids.size()),
      [&](int64_t begin, int64_t end) {
        for (int64_t n = begin; n < end; ++n) {
          std::memcpy(dst + n * hidden, src + ids[n] * hidden, hidden * sizeof(float));
        }
      },
      MinRowsPerChunk(hidden));
  CountHostToDevice(static_cast<int64_t>(ids.size_bytes()));
  return absl::OkStatus();
}

absl::Status CpuBackend::Matmul(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor* y) {
  RETURN_IF_ERROR(CheckF32("Matmul", "x", x, 2, "[N, K]"));
  RETURN_IF_ERROR(CheckF32("Matmul", "w", w, 2, "[M, K]"));
  RETURN_IF_ERROR(CheckF32Output("Matmul", "y", y, 2, "[N, M]"));
  const int64_t n = x.dim(0);
  const int64_t k = x.dim(1);
  const int64_t m = w.dim(0);
  if (w.dim(1) != k) {
    return ArgError("Matmul", "w", "is ", w.DebugString(),
                    "; its dimension 1 must equal x's K = ", k,
                    " (w is [M, K], the Hugging Face Linear layout)");
  }
  if (bias != nullptr) {
    RETURN_IF_ERROR(CheckF32("Matmul", "bias", *bias, 1, "[M]"));
    RETURN_IF_ERROR(CheckShape("Matmul", "bias", *bias, {m}));
  }
  RETURN_IF_ERROR(CheckShape("Matmul", "y", *y, {n, m}));
  if (cpu::Overlaps(x, *y)) return ArgError("Matmul", "y", "must not alias x");
  if (n == 0 || m == 0) return absl::OkStatus();
  float* out = y->data_as<float>();
  if (k == 0) {
    std::fill(out, out + n * m, 0.0f);
  } else {
    // y[N, M] = x[N, K] * w[M, K]^T, all row-major.
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), static_cast<int>(m),
                static_cast<int>(k), 1.0f, x.data_as<const float>(), static_cast<int>(k),
                w.data_as<const float>(), static_cast<int>(k), 0.0f, out, static_cast<int>(m));
  }
  if (bias != nullptr) {
    const float* b = bias->data_as<const float>();
    pool_.ParallelFor(
        n,
        [&](int64_t begin, int64_t end) {
          for (int64_t row = begin; row < end; ++row) {
            for (int64_t col = 0; col < m; ++col) out[row * m + col] += b[col];
          }
        },
        MinRowsPerChunk(m));
  }
  return absl::OkStatus();
}

absl::Status CpuBackend::RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor* y) {
  RETURN_IF_ERROR(CheckF32("RmsNorm", "x", x, 2, "[N, D]"));
  RETURN_IF_ERROR(CheckF32("RmsNorm", "weight", weight, 1, "[D]"));
  RETURN_IF_ERROR(CheckF32Output("RmsNorm", "y", y, 2, "[N, D]"));
  const int64_t d = x.dim(1);
  RETURN_IF_ERROR(CheckShape("RmsNorm", "weight", weight, {d}));
  RETURN_IF_ERROR(CheckShape("RmsNorm", "y", *y, x.shape()));
  const float* in = x.data_as<const float>();
  const float* scale = weight.data_as<const float>();
  float* out = y->data_as<float>();
  pool_.ParallelFor(
      x.dim(0),
      [&](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end; ++row) {
          const float* xr = in + row * d;
          float sum_sq = 0.0f;
          for (int64_t i = 0; i < d; ++i) sum_sq += xr[i] * xr[i];
          const float inv_rms = 1.0f / std::sqrt(sum_sq / static_cast<float>(d) + eps);
          float* yr = out + row * d;  // may be xr: each element is read before it is written
          for (int64_t i = 0; i < d; ++i) yr[i] = xr[i] * inv_rms * scale[i];
        }
      },
      MinRowsPerChunk(d));
  return absl::OkStatus();
}

absl::Status CpuBackend::RopeRows(std::span<const int32_t> positions, const Tensor& inv_freq,
                                  Tensor* x) {
  RETURN_IF_ERROR(CheckF32Output("Rope", "x", x, 3, "[N, heads, head_dim]"));
  RETURN_IF_ERROR(CheckF32("Rope", "inv_freq", inv_freq, 1, "[head_dim / 2]"));
  const int64_t tokens = x->dim(0);
  const int64_t heads = x->dim(1);
  const int64_t head_dim = x->dim(2);
  if (head_dim % 2 != 0) return ArgError("Rope", "x", "has an odd head_dim ", head_dim);
  const int64_t half = head_dim / 2;
  RETURN_IF_ERROR(CheckShape("Rope", "inv_freq", inv_freq, {half}));
  if (static_cast<int64_t>(positions.size()) != tokens) {
    return ArgError("Rope", "positions", "has ", positions.size(), " entries but x has ", tokens,
                    " tokens");
  }
  const float* freq = inv_freq.data_as<const float>();
  float* data = x->data_as<float>();
  pool_.ParallelFor(
      tokens,
      [&](int64_t begin, int64_t end) {
        std::vector<float> cos_table(half);
        std::vector<float> sin_table(half);
        for (int64_t n = begin; n < end; ++n) {
          // The angle is rounded to float32 before cos/sin, as Hugging Face computes it.
          for (int64_t i = 0; i < half; ++i) {
            const float angle = static_cast<float>(positions[n]) * freq[i];
            cos_table[i] = std::cos(angle);
            sin_table[i] = std::sin(angle);
          }
          for (int64_t h = 0; h < heads; ++h) {
            float* v = data + (n * heads + h) * head_dim;
            for (int64_t i = 0; i < half; ++i) {
              const float first = v[i];
              const float second = v[i + half];
              v[i] = first * cos_table[i] - second * sin_table[i];
              v[i + half] = second * cos_table[i] + first * sin_table[i];
            }
          }
        }
      },
      MinRowsPerChunk(heads * head_dim));
  return absl::OkStatus();
}

// Shared checks of the element-wise binary ops: a, b and out are [N, F] of equal shape.
absl::Status CheckBinary(const char* op, const char* a_name, const Tensor& a, const char* b_name,
                         const Tensor& b, const Tensor* out) {
  RETURN_IF_ERROR(CheckF32(op, a_name, a, 2, "[N, F]"));
  RETURN_IF_ERROR(CheckF32(op, b_name, b, 2, "[N, F]"));
  RETURN_IF_ERROR(CheckShape(op, b_name, b, a.shape()));
  RETURN_IF_ERROR(CheckF32Output(op, "out", out, 2, "[N, F]"));
  return CheckShape(op, "out", *out, a.shape());
}

absl::Status CpuBackend::SiluMul(const Tensor& gate, const Tensor& up, Tensor* out) {
  RETURN_IF_ERROR(CheckBinary("SiluMul", "gate", gate, "up", up, out));
  const float* g = gate.data_as<const float>();
  const float* u = up.data_as<const float>();
  float* o = out->data_as<float>();
  pool_.ParallelFor(
      gate.numel(),
      [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) o[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
      },
      kMinFloatsPerChunk);
  return absl::OkStatus();
}

absl::Status CpuBackend::Add(const Tensor& a, const Tensor& b, Tensor* out) {
  RETURN_IF_ERROR(CheckBinary("Add", "a", a, "b", b, out));
  const float* pa = a.data_as<const float>();
  const float* pb = b.data_as<const float>();
  float* o = out->data_as<float>();
  pool_.ParallelFor(
      a.numel(),
      [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) o[i] = pa[i] + pb[i];
      },
      kMinFloatsPerChunk);
  return absl::OkStatus();
}

absl::Status CpuBackend::CopyRows(const Tensor& src, std::span<const int32_t> rows, Tensor* dst) {
  RETURN_IF_ERROR(CheckF32("CopyRows", "src", src, 2, "[N, D]"));
  RETURN_IF_ERROR(CheckF32Output("CopyRows", "dst", dst, 2, "[rows, D]"));
  const int64_t d = src.dim(1);
  RETURN_IF_ERROR(CheckShape("CopyRows", "dst", *dst, {static_cast<int64_t>(rows.size()), d}));
  for (size_t r = 0; r < rows.size(); ++r) {
    if (rows[r] < 0 || rows[r] >= src.dim(0)) {
      return ArgError("CopyRows", absl::StrCat("rows[", r, "]"), "= ", rows[r],
                      " is outside src's rows [0, ", src.dim(0), ")");
    }
  }
  if (cpu::Overlaps(src, *dst)) return ArgError("CopyRows", "dst", "must not overlap src");
  const float* in = src.data_as<const float>();
  float* out = dst->data_as<float>();
  pool_.ParallelFor(
      static_cast<int64_t>(rows.size()),
      [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          std::memcpy(out + r * d, in + rows[r] * d, d * sizeof(float));
        }
      },
      MinRowsPerChunk(d));
  CountHostToDevice(static_cast<int64_t>(rows.size_bytes()));
  return absl::OkStatus();
}

}  // namespace

std::unique_ptr<Backend> CreateCpuBackend(int num_threads) {
  return std::make_unique<CpuBackend>(num_threads);
}

}  // namespace zigzag
