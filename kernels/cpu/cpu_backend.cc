#include "kernels/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"
#include "kernels/cpu/cpu_attention.h"
#include "kernels/cpu/cpu_checks.h"
#include "kernels/cpu/cpu_step.h"
#include "kernels/cpu/matmul_dnnl.h"
#include "kernels/cpu/matmul_kernels.h"
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

// Matmul splits the weight rows over the pool in units of this many rows (a multiple of every
// kernel's tile height), and gives a thread at least kMinMacsPerChunk multiply-adds.
constexpr int64_t kMatmulColumnsPerUnit = 16;
constexpr int64_t kMinMacsPerChunk = int64_t{1} << 17;
// Which kernel a matmul of N rows of x gets, from bench/results/2026-12-06-cpu-matmul.md (2
// threads): from kDnnlMinRowsF32 / kDnnlMinRowsBf16 rows on, f32 / bf16 weights go to oneDNN when
// the build has it (its blocked kernels, and AMX for bf16, win once each weight is reused across
// rows: bf16 2-10x ours at N = 512, f32 1.2-1.6x from N = 64); below that our kernels, which
// stream each weight once, win or tie. For bf16 weights vdpbf16ps wins only up to
// kDpbf16MaxRows rows (decode: 10-40% over converting the weights on load); from 4 rows on,
// converting on load is faster (and keeps x in float32).
constexpr int64_t kDnnlMinRowsF32 = 32;
constexpr int64_t kDnnlMinRowsBf16 = 8;
constexpr int64_t kDpbf16MaxRows = 3;

// ThreadPool::ParallelFor takes a std::function, which allocates for a lambda holding more than
// two pointers; a lambda holding one reference to the caller's lambda is stored inline, so the ops
// below do not allocate per call (the decode loop runs them every step).
template <class Fn>
void ParallelFor(ThreadPool& pool, int64_t n, const Fn& fn, int64_t min_chunk) {
  pool.ParallelFor(
      n, [&fn](int64_t begin, int64_t end) { fn(begin, end); }, min_chunk);
}

// CheckShape against a braced list without building a Shape (an allocation) unless it fails.
absl::Status CheckDims(const char* op, const char* argument, const Tensor& tensor,
                       std::initializer_list<int64_t> expected) {
  if (std::equal(tensor.shape().begin(), tensor.shape().end(), expected.begin(), expected.end())) {
    return absl::OkStatus();
  }
  return CheckShape(op, argument, tensor, Shape(expected));
}

int64_t MinRowsPerChunk(int64_t row_floats) {
  return std::max<int64_t>(1, kMinFloatsPerChunk / std::max<int64_t>(1, row_floats));
}

// A weight tensor (Embedding table, Matmul w and bias, RmsNorm weight) must be in the backend's
// weight dtype (f32, bf16 or f16), as the model uploads it.
absl::Status CheckWeight(const char* op, const char* argument, const Tensor& tensor, int rank,
                         const char* layout, DType weight_dtype) {
  if (!tensor.defined()) return ArgError(op, argument, "is an undefined tensor");
  if (tensor.device() != Device::kCpu) {
    return ArgError(op, argument, "is ", tensor.DebugString(),
                    ", not in the CPU backend's host memory");
  }
  if (tensor.dtype() != weight_dtype) {
    return ArgError(op, argument, "is ", tensor.DebugString(),
                    "; this CPU backend keeps weights in ", DTypeName(weight_dtype),
                    " (--cpu-weight-dtype)");
  }
  if (tensor.rank() != rank) {
    return ArgError(op, argument, "must have rank ", rank, " ", layout, ", got ",
                    tensor.DebugString());
  }
  return absl::OkStatus();
}

class CpuBackend final : public Backend {
 public:
  CpuBackend(int num_threads, DType weight_dtype, cpu::MatmulIsa isa, bool use_dnnl)
      : pool_(num_threads),
        weight_dtype_(weight_dtype),
        isa_(isa),
        use_dnnl_(use_dnnl && cpu::DnnlMatmulAvailable()) {}

  const char* name() const override { return "cpu"; }
  Device device() const override { return Device::kCpu; }
  DType activation_dtype() const override { return DType::kF32; }
  DType weight_dtype() const override { return weight_dtype_; }

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
    CountHostToDevice(step_.upload_bytes());
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
  const DType weight_dtype_;
  const cpu::MatmulIsa isa_;
  const bool use_dnnl_;
  cpu::DnnlMatmul dnnl_;
  // x rounded to bf16 for the vdpbf16ps path; grows to the largest [N, K] seen and is then
  // reused, so the decode loop does not allocate.
  std::vector<uint16_t> x_bf16_;
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
  ParallelFor(
      pool_, n,
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
  ParallelFor(
      pool_, src.numel(),
      [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) host[i] = LoadAsFloat(src.data(), src.dtype(), i);
      },
      kMinFloatsPerChunk * 4);
  return absl::OkStatus();
}

// Ops ---------------------------------------------------------------------------------------------

absl::Status CpuBackend::Embedding(const Tensor& table, std::span<const int32_t> ids, Tensor* out) {
  RETURN_IF_ERROR(CheckWeight("Embedding", "table", table, 2, "[vocab, hidden]", weight_dtype_));
  RETURN_IF_ERROR(CheckF32Output("Embedding", "out", out, 2, "[N, hidden]"));
  const int64_t vocab = table.dim(0);
  const int64_t hidden = table.dim(1);
  RETURN_IF_ERROR(CheckDims("Embedding", "out", *out, {static_cast<int64_t>(ids.size()), hidden}));
  for (size_t n = 0; n < ids.size(); ++n) {
    if (ids[n] < 0 || ids[n] >= vocab) {
      return ArgError("Embedding", absl::StrCat("ids[", n, "]"), "= ", ids[n],
                      " is outside the vocabulary [0, ", vocab, ")");
    }
  }
  float* dst = out->data_as<float>();
  ParallelFor(
      pool_, static_cast<int64_t>(ids.size()),
      [&](int64_t begin, int64_t end) {
        for (int64_t n = begin; n < end; ++n) {
          if (table.dtype() == DType::kF32) {
            std::memcpy(dst + n * hidden, table.data_as<const float>() + ids[n] * hidden,
                        hidden * sizeof(float));
            continue;
          }
          const int64_t base = ids[n] * hidden;  // 16-bit tables widen exactly to float32
          for (int64_t i = 0; i < hidden; ++i) {
            dst[n * hidden + i] = LoadAsFloat(table.data(), table.dtype(), base + i);
          }
        }
      },
      MinRowsPerChunk(hidden));
  CountHostToDevice(static_cast<int64_t>(ids.size_bytes()));
  return absl::OkStatus();
}

absl::Status CpuBackend::Matmul(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor* y) {
  RETURN_IF_ERROR(CheckF32("Matmul", "x", x, 2, "[N, K]"));
  RETURN_IF_ERROR(CheckWeight("Matmul", "w", w, 2, "[M, K]", weight_dtype_));
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
    RETURN_IF_ERROR(CheckWeight("Matmul", "bias", *bias, 1, "[M]", weight_dtype_));
    RETURN_IF_ERROR(CheckDims("Matmul", "bias", *bias, {m}));
  }
  RETURN_IF_ERROR(CheckDims("Matmul", "y", *y, {n, m}));
  if (cpu::Overlaps(x, *y)) return ArgError("Matmul", "y", "must not alias x");
  if (n == 0 || m == 0) return absl::OkStatus();

  // y[N, M] = x[N, K] * w[M, K]^T, all row-major; threads take disjoint ranges of weight rows, so
  // each weight is read by one thread only (decode is bound by reading the weights once).
  struct Job {
    cpu::MatmulIsa isa;
    cpu::MatmulProblem problem;
    const Tensor* bias;
    cpu::DnnlMatmul* dnnl;  // null: our kernels only
  } job{isa_, {}, bias, nullptr};
  if (job.isa == cpu::MatmulIsa::kMatmulIsaAvx512Bf16 && n > kDpbf16MaxRows) {
    job.isa = cpu::MatmulIsa::kMatmulIsaAvx512;
  }
  const int64_t dnnl_min_rows = w.dtype() == DType::kF32 ? kDnnlMinRowsF32 : kDnnlMinRowsBf16;
  if (use_dnnl_ && n >= dnnl_min_rows && k > 0 && cpu::DnnlMatmul::Handles(w.dtype())) {
    job.dnnl = &dnnl_;
  }
  job.problem = {.x = x.data_as<const float>(),
                 .w = w.data(),
                 .w_dtype = w.dtype(),
                 .n = n,
                 .k = k,
                 .m = m,
                 .y = y->data_as<float>()};
  // oneDNN's bf16 matmul, like vdpbf16ps, multiplies bf16 by bf16.
  const bool bf16_x =
      job.dnnl != nullptr ? w.dtype() == DType::kBF16 : cpu::MatmulNeedsBf16X(isa_, w.dtype());
  if (bf16_x && k > 0) {
    const int64_t count = n * k;
    if (static_cast<int64_t>(x_bf16_.size()) < count) x_bf16_.resize(count);
    uint16_t* dst = x_bf16_.data();
    const float* src = job.problem.x;
    const cpu::MatmulIsa isa = isa_;  // the rounding itself is fastest with AVX512_BF16
    ParallelFor(
        pool_, n,
        [&](int64_t begin, int64_t end) {
          cpu::RoundToBf16(isa, src + begin * k, dst + begin * k, (end - begin) * k);
        },
        MinRowsPerChunk(k) * 4);
    job.problem.x_bf16 = dst;
  }
  const int64_t units = (m + kMatmulColumnsPerUnit - 1) / kMatmulColumnsPerUnit;
  const int64_t macs_per_unit =
      std::max<int64_t>(1, n * std::max<int64_t>(k, 1)) * kMatmulColumnsPerUnit;
  ParallelFor(
      pool_, units,
      [&job](int64_t begin, int64_t end) {
        const cpu::MatmulProblem& p = job.problem;
        const int64_t m_begin = begin * kMatmulColumnsPerUnit;
        const int64_t m_end = std::min(end * kMatmulColumnsPerUnit, p.m);
        if (p.k == 0) {
          for (int64_t row = 0; row < p.n; ++row) {
            std::fill(p.y + row * p.m + m_begin, p.y + row * p.m + m_end, 0.0f);
          }
        } else if (job.dnnl == nullptr || !job.dnnl->Columns(p, m_begin, m_end)) {
          cpu::MatmulColumns(job.isa, p, m_begin, m_end);
        }
        if (job.bias == nullptr) return;
        const void* b = job.bias->data();
        const DType b_dtype = job.bias->dtype();
        for (int64_t row = 0; row < p.n; ++row) {
          float* yr = p.y + row * p.m;
          for (int64_t col = m_begin; col < m_end; ++col) yr[col] += LoadAsFloat(b, b_dtype, col);
        }
      },
      std::max<int64_t>(1, kMinMacsPerChunk / macs_per_unit));
  return absl::OkStatus();
}

absl::Status CpuBackend::RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor* y) {
  RETURN_IF_ERROR(CheckF32("RmsNorm", "x", x, 2, "[N, D]"));
  RETURN_IF_ERROR(CheckWeight("RmsNorm", "weight", weight, 1, "[D]", weight_dtype_));
  RETURN_IF_ERROR(CheckF32Output("RmsNorm", "y", y, 2, "[N, D]"));
  const int64_t d = x.dim(1);
  RETURN_IF_ERROR(CheckDims("RmsNorm", "weight", weight, {d}));
  RETURN_IF_ERROR(CheckShape("RmsNorm", "y", *y, x.shape()));
  const float* in = x.data_as<const float>();
  float* out = y->data_as<float>();
  ParallelFor(
      pool_, x.dim(0),
      [&](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end; ++row) {
          const float* xr = in + row * d;
          float sum_sq = 0.0f;
          for (int64_t i = 0; i < d; ++i) sum_sq += xr[i] * xr[i];
          const float inv_rms = 1.0f / std::sqrt(sum_sq / static_cast<float>(d) + eps);
          float* yr = out + row * d;  // may be xr: each element is read before it is written
          if (weight.dtype() == DType::kF32) {
            const float* scale = weight.data_as<const float>();
            for (int64_t i = 0; i < d; ++i) yr[i] = xr[i] * inv_rms * scale[i];
          } else {
            for (int64_t i = 0; i < d; ++i) {
              yr[i] = xr[i] * inv_rms * LoadAsFloat(weight.data(), weight.dtype(), i);
            }
          }
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
  RETURN_IF_ERROR(CheckDims("Rope", "inv_freq", inv_freq, {half}));
  if (static_cast<int64_t>(positions.size()) != tokens) {
    return ArgError("Rope", "positions", "has ", positions.size(), " entries but x has ", tokens,
                    " tokens");
  }
  const float* freq = inv_freq.data_as<const float>();
  float* data = x->data_as<float>();
  ParallelFor(
      pool_, tokens,
      [&](int64_t begin, int64_t end) {
        for (int64_t n = begin; n < end; ++n) {
          // The angle is rounded to float32 before cos/sin, as Hugging Face computes it. One
          // (cos, sin) per frequency serves every head, with no table (no allocation per step).
          for (int64_t i = 0; i < half; ++i) {
            const float angle = static_cast<float>(positions[n]) * freq[i];
            const float cos_angle = std::cos(angle);
            const float sin_angle = std::sin(angle);
            for (int64_t h = 0; h < heads; ++h) {
              float* v = data + (n * heads + h) * head_dim;
              const float first = v[i];
              const float second = v[i + half];
              v[i] = first * cos_angle - second * sin_angle;
              v[i + half] = second * cos_angle + first * sin_angle;
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
  ParallelFor(
      pool_, gate.numel(),
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
  ParallelFor(
      pool_, a.numel(),
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
  RETURN_IF_ERROR(CheckDims("CopyRows", "dst", *dst, {static_cast<int64_t>(rows.size()), d}));
  for (size_t r = 0; r < rows.size(); ++r) {
    if (rows[r] < 0 || rows[r] >= src.dim(0)) {
      return ArgError("CopyRows", absl::StrCat("rows[", r, "]"), "= ", rows[r],
                      " is outside src's rows [0, ", src.dim(0), ")");
    }
  }
  if (cpu::Overlaps(src, *dst)) return ArgError("CopyRows", "dst", "must not overlap src");
  const float* in = src.data_as<const float>();
  float* out = dst->data_as<float>();
  ParallelFor(
      pool_, static_cast<int64_t>(rows.size()),
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

absl::StatusOr<std::unique_ptr<Backend>> CreateCpuBackend(const CpuBackendConfig& config) {
  if (!IsFloatDType(config.weight_dtype)) {
    return absl::InvalidArgumentError(absl::StrCat("CPU backend: weight dtype ",
                                                   DTypeName(config.weight_dtype),
                                                   " is not supported (f32, bf16 or f16)"));
  }
  const cpu::MatmulIsa best = cpu::BestMatmulIsa();
  const cpu::MatmulIsa isa = config.matmul_isa.value_or(best);
  if (!cpu::MatmulIsaSupported(isa)) {
    return absl::FailedPreconditionError(
        absl::StrCat("CPU backend: matmul path ", cpu::MatmulIsaName(isa),
                     " is not supported by this CPU (best: ", cpu::MatmulIsaName(best), ")"));
  }
  return std::make_unique<CpuBackend>(config.num_threads, config.weight_dtype, isa,
                                      config.use_dnnl);
}

std::unique_ptr<Backend> CreateCpuBackend(int num_threads) {
  return std::make_unique<CpuBackend>(num_threads, DType::kF32, cpu::BestMatmulIsa(),
                                      /*use_dnnl=*/true);
}

}  // namespace zigzag
