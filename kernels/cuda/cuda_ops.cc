// The CUDA backend's dense ops: argument checks (op_checks.h), metadata upload, then one cuBLAS
// call or kernel launch each (elementwise_kernels.cuh). Attention is in cuda_attention.cc.
#include <climits>
#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"
#include "kernels/cuda/cuda_backend_impl.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/elementwise_kernels.cuh"
#include "kernels/cuda/op_checks.h"
#include "kernels/kv_compaction_args.h"

namespace zigzag {

using cuda_internal::CheckDeviceOutput;
using cuda_internal::CheckDeviceTensor;
using cuda_internal::CheckDim;
using cuda_internal::CheckIndices;
using cuda_internal::CheckSameShape;
using cuda_internal::kAnyRank;
using cuda_internal::Overlaps;

namespace {

// Elements per row of a tensor seen as [dim(0), rest].
int64_t RowSize(const Tensor& tensor) {
  return tensor.dim(0) == 0 ? 0 : tensor.numel() / tensor.dim(0);
}

}  // namespace

absl::Status CudaBackend::GatherRows(const Tensor& src, std::span<const int32_t> rows,
                                     Tensor* dst) {
  if (rows.empty() || dst->numel() == 0) return absl::OkStatus();
  RETURN_IF_ERROR(Activate());
  ASSIGN_OR_RETURN(void* device_rows, UploadMetadata(rows.data(), rows.size_bytes()));
  cuda::GatherRowsParams params;
  params.src = src.data();
  params.rows = static_cast<const int32_t*>(device_rows);
  params.dst = dst->data();
  params.num_rows = static_cast<int64_t>(rows.size());
  params.row_size = RowSize(*dst);
  params.dtype = src.dtype();
  CUDA_RETURN_IF_ERROR(cuda::LaunchGatherRows(params, stream_));
  return absl::OkStatus();
}

absl::Status CudaBackend::Embedding(const Tensor& table, std::span<const int32_t> ids,
                                    Tensor* out) {
  RETURN_IF_ERROR(CheckDeviceTensor("Embedding", "table", table, dtype_, 2));
  RETURN_IF_ERROR(CheckDeviceOutput("Embedding", "out", out, dtype_, 2));
  RETURN_IF_ERROR(
      CheckDim("Embedding", "out", *out, 0, static_cast<int64_t>(ids.size()), "one row per id"));
  RETURN_IF_ERROR(CheckDim("Embedding", "out", *out, 1, table.dim(1), "table's hidden size"));
  RETURN_IF_ERROR(CheckIndices("Embedding", "ids", ids, table.dim(0), "table's vocabulary"));
  return GatherRows(table, ids, out);
}

absl::Status CudaBackend::CopyRows(const Tensor& src, std::span<const int32_t> rows, Tensor* dst) {
  if (dst == nullptr) return absl::InvalidArgumentError("CopyRows: dst is null");
  RETURN_IF_ERROR(CheckDeviceTensor("CopyRows", "src", src, src.dtype(), kAnyRank));
  RETURN_IF_ERROR(CheckDeviceOutput("CopyRows", "dst", dst, src.dtype(), src.rank()));
  if (src.rank() < 1) return absl::InvalidArgumentError("CopyRows: src has rank 0");
  RETURN_IF_ERROR(CheckDim("CopyRows", "dst", *dst, 0, static_cast<int64_t>(rows.size()),
                           "one row per entry of rows"));
  for (int i = 1; i < src.rank(); ++i) {
    RETURN_IF_ERROR(CheckDim("CopyRows", "dst", *dst, i, src.dim(i), "src's row shape"));
  }
  RETURN_IF_ERROR(CheckIndices("CopyRows", "rows", rows, src.dim(0), "src's rows"));
  if (Overlaps(src, *dst)) {
    return absl::InvalidArgumentError("CopyRows: dst must not overlap src");
  }
  return GatherRows(src, rows, dst);
}

absl::Status CudaBackend::Gemm(const Tensor& x, const Tensor& w, Tensor* y) {
  const int n = static_cast<int>(x.dim(0));
  const int k = static_cast<int>(x.dim(1));
  const int m = static_cast<int>(w.dim(0));
  const cudaDataType_t type = dtype_ == DType::kF32 ? CUDA_R_32F : CUDA_R_16BF;
  const float alpha = 1.0f;
  const float beta = 0.0f;
  // Row-major y[n, m] = x[n, k] w[m, k]^T. cuBLAS is column-major, and a row-major [r, c] buffer
  // is the column-major c x r matrix, i.e. its transpose. So the buffers hold x^T (k x n, ld k),
  // w^T (k x m, ld k) and y^T (m x n, ld m), and y^T = w x^T = (w^T)^T x^T:
  // C = op(A) op(B) with A = the w buffer, op = T; B = the x buffer, op = N; C = the y buffer.
  CUBLAS_RETURN_IF_ERROR(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, w.data(),
                                      type, k, x.data(), type, k, &beta, y->data(), type, m,
                                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return absl::OkStatus();
}

absl::Status CudaBackend::Matmul(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor* y) {
  RETURN_IF_ERROR(CheckDeviceTensor("Matmul", "x", x, dtype_, 2));
  RETURN_IF_ERROR(CheckDeviceTensor("Matmul", "w", w, dtype_, 2));
  RETURN_IF_ERROR(CheckDeviceOutput("Matmul", "y", y, dtype_, 2));
  RETURN_IF_ERROR(CheckDim("Matmul", "w", w, 1, x.dim(1), "x's inner dimension K"));
  RETURN_IF_ERROR(CheckDim("Matmul", "y", *y, 0, x.dim(0), "x's rows N"));
  RETURN_IF_ERROR(CheckDim("Matmul", "y", *y, 1, w.dim(0), "w's rows M"));
  if (bias != nullptr) {
    RETURN_IF_ERROR(CheckDeviceTensor("Matmul", "bias", *bias, dtype_, 1));
    RETURN_IF_ERROR(CheckDim("Matmul", "bias", *bias, 0, w.dim(0), "w's rows M"));
  }
  if (Overlaps(*y, x) || Overlaps(*y, w)) {
    return absl::InvalidArgumentError("Matmul: y must not alias (overlap) x or w");
  }
  if (x.dim(0) > INT_MAX || x.dim(1) > INT_MAX || w.dim(0) > INT_MAX) {
    return absl::InvalidArgumentError(absl::StrCat("Matmul: x ", x.DebugString(), " or w ",
                                                   w.DebugString(),
                                                   " has a dimension beyond cuBLAS's int range"));
  }
  if (y->numel() == 0) return absl::OkStatus();
  RETURN_IF_ERROR(Activate());
  if (x.dim(1) == 0) {  // empty sum; cuBLAS rejects k = 0 with ld = 0
    CUDA_RETURN_IF_ERROR(cudaMemsetAsync(y->data(), 0, y->bytes(), stream_));
  } else {
    RETURN_IF_ERROR(Gemm(x, w, y));
  }
  if (bias != nullptr) {
    cuda::AddBiasParams params;
    params.y = y->data();
    params.bias = bias->data();
    params.rows = y->dim(0);
    params.cols = y->dim(1);
    params.dtype = dtype_;
    CUDA_RETURN_IF_ERROR(cuda::LaunchAddBias(params, stream_));
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor* y) {
  RETURN_IF_ERROR(CheckDeviceTensor("RmsNorm", "x", x, dtype_, 2));
  RETURN_IF_ERROR(CheckDeviceTensor("RmsNorm", "weight", weight, dtype_, 1));
  RETURN_IF_ERROR(CheckDeviceOutput("RmsNorm", "y", y, dtype_, 2));
  RETURN_IF_ERROR(CheckDim("RmsNorm", "weight", weight, 0, x.dim(1), "x's row size"));
  RETURN_IF_ERROR(CheckSameShape("RmsNorm", "x", x, "y", *y));
  RETURN_IF_ERROR(Activate());
  cuda::RmsNormParams params;
  params.x = x.data();
  params.weight = weight.data();
  params.y = y->data();
  params.rows = x.dim(0);
  params.dim = x.dim(1);
  params.eps = eps;
  params.dtype = dtype_;
  CUDA_RETURN_IF_ERROR(cuda::LaunchRmsNorm(params, stream_));
  return absl::OkStatus();
}

absl::Status CudaBackend::CheckRope(int64_t num_positions, const Tensor& inv_freq,
                                    const Tensor* x) {
  RETURN_IF_ERROR(CheckDeviceOutput("Rope", "x", x, dtype_, 3));
  RETURN_IF_ERROR(CheckDeviceTensor("Rope", "inv_freq", inv_freq, DType::kF32, 1));
  const int64_t head_dim = x->dim(2);
  if (head_dim % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("Rope: x is ", x->DebugString(), "; head_dim must be even"));
  }
  RETURN_IF_ERROR(CheckDim("Rope", "inv_freq", inv_freq, 0, head_dim / 2, "head_dim / 2"));
  if (num_positions != x->dim(0)) {
    return absl::InvalidArgumentError(absl::StrCat("Rope: positions has ", num_positions,
                                                   " entries but x is ", x->DebugString(),
                                                   " (one position per row)"));
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::LaunchRopeKernel(const int32_t* device_positions, const Tensor& inv_freq,
                                           Tensor* x) {
  cuda::RopeParams params;
  params.x = x->data();
  params.positions = device_positions;
  params.inv_freq = inv_freq.data_as<const float>();
  params.tokens = x->dim(0);
  params.heads = x->dim(1);
  params.head_dim = x->dim(2);
  params.dtype = dtype_;
  CUDA_RETURN_IF_ERROR(cuda::LaunchRope(params, stream_));
  return absl::OkStatus();
}

absl::Status CudaBackend::Rope(std::span<const int32_t> positions, const Tensor& inv_freq,
                               Tensor* x) {
  RETURN_IF_ERROR(CheckRope(static_cast<int64_t>(positions.size()), inv_freq, x));
  if (x->numel() == 0) return absl::OkStatus();
  RETURN_IF_ERROR(Activate());
  ASSIGN_OR_RETURN(void* device_positions,
                   UploadMetadata(positions.data(), positions.size_bytes()));
  return LaunchRopeKernel(static_cast<const int32_t*>(device_positions), inv_freq, x);
}

absl::Status CudaBackend::SiluMul(const Tensor& gate, const Tensor& up, Tensor* out) {
  RETURN_IF_ERROR(CheckDeviceTensor("SiluMul", "gate", gate, dtype_, kAnyRank));
  RETURN_IF_ERROR(CheckDeviceTensor("SiluMul", "up", up, dtype_, kAnyRank));
  RETURN_IF_ERROR(CheckDeviceOutput("SiluMul", "out", out, dtype_, kAnyRank));
  RETURN_IF_ERROR(CheckSameShape("SiluMul", "gate", gate, "up", up));
  RETURN_IF_ERROR(CheckSameShape("SiluMul", "gate", gate, "out", *out));
  RETURN_IF_ERROR(Activate());
  cuda::SiluMulParams params;
  params.gate = gate.data();
  params.up = up.data();
  params.out = out->data();
  params.count = out->numel();
  params.dtype = dtype_;
  CUDA_RETURN_IF_ERROR(cuda::LaunchSiluMul(params, stream_));
  return absl::OkStatus();
}

absl::Status CudaBackend::Add(const Tensor& a, const Tensor& b, Tensor* out) {
  RETURN_IF_ERROR(CheckDeviceTensor("Add", "a", a, dtype_, kAnyRank));
  RETURN_IF_ERROR(CheckDeviceTensor("Add", "b", b, dtype_, kAnyRank));
  RETURN_IF_ERROR(CheckDeviceOutput("Add", "out", out, dtype_, kAnyRank));
  RETURN_IF_ERROR(CheckSameShape("Add", "a", a, "b", b));
  RETURN_IF_ERROR(CheckSameShape("Add", "a", a, "out", *out));
  RETURN_IF_ERROR(Activate());
  cuda::AddParams params;
  params.a = a.data();
  params.b = b.data();
  params.out = out->data();
  params.count = out->numel();
  params.dtype = dtype_;
  CUDA_RETURN_IF_ERROR(cuda::LaunchAdd(params, stream_));
  return absl::OkStatus();
}

absl::Status CudaBackend::CheckWriteKv(int64_t num_slots, const Tensor& k, const Tensor& v,
                                       const Tensor* kv_pool) {
  RETURN_IF_ERROR(CheckDeviceTensor("WriteKv", "k", k, dtype_, 3));
  RETURN_IF_ERROR(CheckDeviceTensor("WriteKv", "v", v, dtype_, 3));
  RETURN_IF_ERROR(CheckDeviceOutput("WriteKv", "kv_pool", kv_pool, dtype_, 4));
  RETURN_IF_ERROR(CheckSameShape("WriteKv", "k", k, "v", v));
  const int64_t rows = k.dim(0) * k.dim(1);  // one per (token, KV head)
  if (num_slots != rows) {
    return absl::InvalidArgumentError(absl::StrCat("WriteKv: slots has ", num_slots,
                                                   " entries but k is ", k.DebugString(),
                                                   " (one slot per token and KV head)"));
  }
  RETURN_IF_ERROR(CheckDim("WriteKv", "kv_pool", *kv_pool, 1, 2, "K and V"));
  RETURN_IF_ERROR(CheckDim("WriteKv", "kv_pool", *kv_pool, 3, k.dim(2), "k's head_dim"));
  return absl::OkStatus();
}

absl::Status CudaBackend::LaunchWriteKvKernel(const int32_t* device_slots, const Tensor& k,
                                              const Tensor& v, Tensor* kv_pool) {
  cuda::WriteKvParams params;
  params.k = k.data();
  params.v = v.data();
  params.slots = device_slots;
  params.kv_pool = kv_pool->data();
  params.tokens = k.dim(0) * k.dim(1);
  params.row_size = k.dim(2);
  params.block_size = kv_pool->dim(2);
  params.dtype = dtype_;
  CUDA_RETURN_IF_ERROR(cuda::LaunchWriteKv(params, stream_));
  return absl::OkStatus();
}

absl::Status CudaBackend::WriteKv(const Tensor& k, const Tensor& v, std::span<const int32_t> slots,
                                  Tensor* kv_pool) {
  RETURN_IF_ERROR(CheckWriteKv(static_cast<int64_t>(slots.size()), k, v, kv_pool));
  RETURN_IF_ERROR(CheckIndices("WriteKv", "slots", slots, kv_pool->dim(0) * kv_pool->dim(2),
                               "num_blocks * block_size"));
  if (slots.empty() || k.numel() == 0) return absl::OkStatus();
  RETURN_IF_ERROR(Activate());
  ASSIGN_OR_RETURN(void* device_slots, UploadMetadata(slots.data(), slots.size_bytes()));
  return LaunchWriteKvKernel(static_cast<const int32_t*>(device_slots), k, v, kv_pool);
}

absl::Status CudaBackend::CompactKv(std::span<const KvStreamCompaction> streams, Tensor* kv_pool) {
  RETURN_IF_ERROR(CheckDeviceOutput("CompactKv", "kv_pool", kv_pool, dtype_, 4));
  RETURN_IF_ERROR(CheckDim("CompactKv", "kv_pool", *kv_pool, 1, 2, "K and V"));
  const int64_t block_size = kv_pool->dim(2);
  const int64_t head_dim = kv_pool->dim(3);
  RETURN_IF_ERROR(ValidateCompactKvArgs(streams, block_size, kv_pool->dim(0)));
  // Resolve every stream's moves to pool slots on the host: one upload holds the sources, then
  // the destinations. Entries already in place are skipped.
  std::vector<int32_t> metadata;
  std::vector<int32_t> destinations;
  for (const KvStreamCompaction& stream : streams) {
    auto slot = [&](int64_t entry) {
      return static_cast<int32_t>(stream.block_ids[entry / block_size] * block_size +
                                  entry % block_size);
    };
    for (size_t i = 0; i < stream.kept.size(); ++i) {
      if (stream.kept[i] == static_cast<int32_t>(i)) continue;
      metadata.push_back(slot(stream.kept[i]));
      destinations.push_back(slot(static_cast<int64_t>(i)));
    }
  }
  const int64_t moves = static_cast<int64_t>(destinations.size());
  if (moves == 0 || head_dim == 0) return absl::OkStatus();
  RETURN_IF_ERROR(Activate());
  metadata.insert(metadata.end(), destinations.begin(), destinations.end());
  ASSIGN_OR_RETURN(void* device_metadata,
                   UploadMetadata(metadata.data(), metadata.size() * sizeof(int32_t)));
  ASSIGN_OR_RETURN(Tensor staging, Allocate(dtype_, {2, moves, head_dim}));
  cuda::CompactKvParams params;
  params.src_slots = static_cast<const int32_t*>(device_metadata);
  params.dst_slots = params.src_slots + moves;
  params.kv_pool = kv_pool->data();
  params.staging = staging.data();
  params.moves = moves;
  params.head_dim = head_dim;
  params.block_size = block_size;
  params.dtype = dtype_;
  CUDA_RETURN_IF_ERROR(cuda::LaunchCompactKv(params, stream_));
  // `staging` is freed on return; cudaFree waits for the queued kernels that use it.
  return absl::OkStatus();
}

absl::Status CudaBackend::CopyBlocks(std::span<const int32_t> src_blocks,
                                     std::span<const int32_t> dst_blocks, Tensor* kv_pool) {
  RETURN_IF_ERROR(CheckDeviceOutput("CopyBlocks", "kv_pool", kv_pool, dtype_, 4));
  RETURN_IF_ERROR(CheckDim("CopyBlocks", "kv_pool", *kv_pool, 1, 2, "K and V"));
  RETURN_IF_ERROR(ValidateCopyBlocksArgs(src_blocks, dst_blocks, kv_pool->dim(0)));
  if (src_blocks.empty()) return absl::OkStatus();
  RETURN_IF_ERROR(Activate());
  const size_t block_bytes =
      static_cast<size_t>(2 * kv_pool->dim(2) * kv_pool->dim(3) * DTypeSize(dtype_));
  char* pool = static_cast<char*>(kv_pool->data());
  // Runs of consecutive source and destination ids (the common case: blocks allocated together)
  // go in one copy each.
  size_t i = 0;
  while (i < src_blocks.size()) {
    size_t run = 1;
    while (i + run < src_blocks.size() && src_blocks[i + run] == src_blocks[i] + int32_t(run) &&
           dst_blocks[i + run] == dst_blocks[i] + int32_t(run)) {
      ++run;
    }
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(pool + dst_blocks[i] * block_bytes,
                                         pool + src_blocks[i] * block_bytes, run * block_bytes,
                                         cudaMemcpyDeviceToDevice, stream_));
    i += run;
  }
  return absl::OkStatus();
}

}  // namespace zigzag
