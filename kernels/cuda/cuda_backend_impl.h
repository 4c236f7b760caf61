// CudaBackend: the class behind CreateCudaBackend, shared by the files that implement it
// (cuda_backend.cc: creation and memory; cuda_ops.cc: the ops; cuda_attention.cc: attention;
// cuda_step.cc: the planned step).
// Internal to kernels/cuda: everything outside uses the Backend interface.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "kernels/cuda/attention_plan.h"
#include "kernels/resident_block_table.h"
#include "kernels/step_tables.h"

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

  absl::Status PlanStep(const StepTables& tables, const Tensor& kv_pool) override;
  absl::Status RopeStep(const Tensor& inv_freq, Tensor* x) override;
  absl::Status WriteKvStep(int32_t layer, const Tensor& k, const Tensor& v,
                           Tensor* kv_pool) override;
  absl::Status AttentionStep(int32_t layer, const Tensor& q, const Tensor& kv_pool,
                             Tensor* out) override;

 private:
  // The current step plan (cuda_step.cc). Its metadata lives in plan_buffer_, laid out as
  // [positions | slots of every layer | layer 0's attention metadata | layer 1's | ...], every
  // section 16-byte aligned; layers[l] holds layer l's offsets into it.
  struct StepPlanState {
    bool planned = false;
    int64_t num_rows = 0;
    int32_t num_layers = 0;
    int32_t num_heads = 0;
    int32_t num_kv_heads = 0;
    size_t positions_offset = 0;
    size_t slots_offset = 0;  // layer l's slots start num_rows * num_kv_heads ints further
    // Resident steps: the changed entries' destinations and values, scattered by PlanStep.
    size_t scatter_dest_offset = 0;
    size_t scatter_values_offset = 0;
    std::vector<cuda_internal::AttentionLaunch> layers;
    cuda_internal::AttentionLayout layout;  // num_rows, heads and the pool's dims
    const void* pool_data = nullptr;
    Shape pool_shape;
  };

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

  // PlanStep's second half: sizes the resident table and the plan buffer, uploads plan_host_ in
  // one copy, scatters the changed block-list entries and makes `plan` current.
  absl::Status UploadPlan(StepPlanState* plan, const StepTables& tables);

  // The plan exists, `layer` is one of its layers, kv_pool is the pool it was checked against.
  absl::Status CheckPlannedLayer(const char* op, int32_t layer, const Tensor& kv_pool) const;
  // Argument checks shared by the span and planned forms of Rope and WriteKv, and their launches
  // over positions / slots already in device memory.
  absl::Status CheckRope(int64_t num_positions, const Tensor& inv_freq, const Tensor* x);
  absl::Status LaunchRopeKernel(const int32_t* device_positions, const Tensor& inv_freq, Tensor* x);
  absl::Status CheckWriteKv(int64_t num_slots, const Tensor& k, const Tensor& v,
                            const Tensor* kv_pool);
  absl::Status LaunchWriteKvKernel(const int32_t* device_slots, const Tensor& k, const Tensor& v,
                                   Tensor* kv_pool);
  // Launches a built attention plan whose metadata starts at device_metadata.
  absl::Status LaunchAttentionPlan(const cuda_internal::AttentionLaunch& launch,
                                   const cuda_internal::AttentionLayout& layout,
                                   const void* device_metadata, const Tensor& q,
                                   const Tensor& kv_pool, Tensor* out);

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
  int num_sms_ = 1;
  // The step plan's device copy (grown on demand, like scratch_) and its host staging.
  void* plan_buffer_ = nullptr;
  size_t plan_buffer_bytes_ = 0;
  std::vector<uint8_t> plan_host_;
  // The resident block table (one row per (layer, sequence, KV head) stream, kept across steps),
  // the host's record of it, and the step's scatter records (kernels/resident_block_table.h).
  int32_t* resident_table_ = nullptr;
  size_t resident_entries_ = 0;
  ResidentBlockTable resident_;
  std::vector<int32_t> scatter_;
  std::vector<int32_t> scatter_dest_, scatter_values_;
  StepPlanState plan_;  // streaming multiprocessors, for sizing split-K decode attention
};

}  // namespace zigzag
