// CudaBackend: the class behind CreateCudaBackend, shared by the files that implement it
// (cuda_backend.cc: creation and memory; cuda_ops.cc: the ops; cuda_attention.cc: attention).
// Internal to kernels/cuda: everything outside uses the Backend interface.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <memory>
#include <span>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace zigzag {

class CudaBackend final : public Backend {
 public:
  // Sets up a stream and a cuBLAS handle on `device`. FailedPrecondition when the device cannot
  // be used (no driver, no such device, architecture this build has no code for).
  static absl::StatusOr<std::unique_ptr<CudaBackend>> Create(int device, bool fp32);
  ~CudaBackend() override;

  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  const char* name() const override { return "cuda"; }
  Device device() const override { return Device::kCuda; }
  DType activation_dtype() const override { return dtype_; }
  DType weight_dtype() const override { return dtype_; }

  absl::StatusOr<Tensor> Allocate(DType dtype, const Shape& shape) override;
  absl::StatusOr<Tensor> AllocateZeros(DType dtype, const Shape& shape) override;
  absl::Status CopyToDevice(const void* host, DType host_dtype, Tensor* dst) override;
  absl::Status CopyToHost(const Tensor& src, std::span<float> host) override;
  absl::Status Synchronize() override;

  absl::Status Embedding(const Tensor& table, std::span<const int32_t> ids, Tensor* out) override;
  absl::Status Matmul(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor* y) override;
  absl::Status RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor* y) override;
  absl::Status Rope(std::span<const int32_t> positions, const Tensor& inv_freq, Tensor* x) override;
  absl::Status SiluMul(const Tensor& gate, const Tensor& up, Tensor* out) override;
  absl::Status Add(const Tensor& a, const Tensor& b, Tensor* out) override;
  absl::Status CopyRows(const Tensor& src, std::span<const int32_t> rows, Tensor* dst) override;
  absl::Status WriteKv(const Tensor& k, const Tensor& v, std::span<const int32_t> slots,
                       Tensor* kv_pool) override;
  absl::Status CompactKv(std::span<const KvStreamCompaction> streams, Tensor* kv_pool) override;
  absl::Status CopyBlocks(std::span<const int32_t> src_blocks, std::span<const int32_t> dst_blocks,
                          Tensor* kv_pool) override;
  absl::Status Attention(const AttentionBatch& batch, const Tensor& q, const Tensor& kv_pool,
                         Tensor* out) override;

 private:
  CudaBackend(int device, DType dtype) : device_(device), dtype_(dtype) {}

  // Makes this backend's device current on the calling thread (the serving worker thread may not
  // be the thread that created the backend).
  absl::Status Activate();

  // Copies `bytes` of host metadata (ids, slots, descriptors...) into the backend's device
  // scratch buffer and returns its device address. Stream-ordered: the previous op's kernels have
  // read the old contents before the copy lands, so one buffer serves every op. The buffer grows
  // on demand and is valid until the next UploadMetadata call.
  absl::StatusOr<void*> UploadMetadata(const void* host, size_t bytes);

  // At least `bytes` of device memory that kernels use as scratch within one op (the split-K
  // partial results of decode attention). Grows like the metadata buffer and is reused the same
  // stream-ordered way; valid until the next Workspace call, contents undefined.
  absl::StatusOr<void*> Workspace(size_t bytes);

  // cublasGemmEx for y = x w^T (row-major), no bias. Shapes already checked.
  absl::Status Gemm(const Tensor& x, const Tensor& w, Tensor* y);

  // dst[r, ...] = src[rows[r], ...] (Embedding and CopyRows). Shapes and rows already checked.
  absl::Status GatherRows(const Tensor& src, std::span<const int32_t> rows, Tensor* dst);

  const int device_;
  const DType dtype_;  // weights and activations: f32 or bf16
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  int num_sms_ = 1;  // streaming multiprocessors, for sizing split-K decode attention
};

}  // namespace zigzag
