// CudaBackend's planned step: PlanStep lays out the whole step's metadata — positions, every
// layer's WriteKv slots, and every layer's attention descriptors, work items and block table
// (BuildAttentionLaunch; for a resident step no table, but the (destination, value) pairs of the
// changed block-list entries, scattered into resident_table_ by one small kernel after the copy,
// and descriptors pointing at each stream's row) — in one host buffer and uploads it with one
// cudaMemcpyAsync into
// plan_buffer_, a device buffer of its own (the per-op scratch buffer is overwritten by every
// span-taking op, so a plan there would not survive the step's Embedding or CopyRows). The
// *Step ops launch the usual kernels on pointers into that buffer and upload nothing.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"
#include "kernels/cuda/attention_plan.h"
#include "kernels/cuda/cuda_backend_impl.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/op_checks.h"
#include "kernels/cuda/resident_table_kernels.cuh"

namespace zigzag {

using cuda_internal::CheckDeviceOutput;
using cuda_internal::CheckDeviceTensor;
using cuda_internal::CheckDim;
using cuda_internal::CheckSameShape;

absl::Status CudaBackend::PlanStep(const StepTables& tables, const Tensor& kv_pool) {
  plan_.planned = false;  // a failed plan leaves none behind
  RETURN_IF_ERROR(CheckDeviceTensor("PlanStep", "kv_pool", kv_pool, dtype_, 4));
  RETURN_IF_ERROR(CheckDim("PlanStep", "kv_pool", kv_pool, 1, 2, "K and V"));
  RETURN_IF_ERROR(tables.Validate(kv_pool.dim(2), kv_pool.dim(0)));
  cuda_internal::AttentionLayout layout;
  layout.num_rows = tables.num_rows();
  layout.num_heads = tables.num_heads;
  layout.kv_heads = tables.num_kv_heads;
  layout.head_dim = kv_pool.dim(3);
  layout.num_blocks = kv_pool.dim(0);
  layout.block_size = kv_pool.dim(2);
  RETURN_IF_ERROR(cuda_internal::CheckAttentionLayout("PlanStep", layout));
  const bool pool_aligned = reinterpret_cast<uintptr_t>(kv_pool.data()) % 16 == 0;

  StepPlanState plan;
  plan_host_.clear();
  plan.positions_offset = cuda_internal::AppendAligned(tables.positions, &plan_host_);
  plan.slots_offset = cuda_internal::AppendAligned(tables.slots, &plan_host_);
  std::vector<AttentionSequence> views;
  const bool resident = tables.resident();
  const size_t layer_streams =
      static_cast<size_t>(tables.num_sequences()) * static_cast<size_t>(tables.num_kv_heads);
  std::vector<int64_t> begins(resident ? layer_streams : 0);
  for (int32_t l = 0; l < tables.num_layers; ++l) {
    for (size_t i = 0; i < begins.size(); ++i) {
      begins[i] = int64_t{tables.stream_rows[static_cast<size_t>(l) * layer_streams + i]} *
                  tables.row_capacity;
    }
    absl::StatusOr<cuda_internal::AttentionLaunch> launch =
        cuda_internal::BuildAttentionLaunch(tables.LayerBatch(l, &views), layout, pool_aligned,
                                            num_sms_, /*validated=*/true, &plan_host_, begins);
    if (!launch.ok()) {
      return absl::Status(launch.status().code(),
                          absl::StrCat("PlanStep: layer ", l, ": ", launch.status().message()));
    }
    plan.layers.push_back(*launch);
  }

  plan.num_rows = tables.num_rows();
  plan.num_layers = tables.num_layers;
  plan.num_heads = tables.num_heads;
  plan.num_kv_heads = tables.num_kv_heads;
  plan.layout = layout;
  plan.pool_data = kv_pool.data();
  plan.pool_shape = kv_pool.shape();
  if (resident) {
    // The lists that changed since their rows' last upload, as (destination, value) pairs in the
    // same buffer: one copy, then one scatter kernel into the resident table.
    scatter_.clear();
    RETURN_IF_ERROR(resident_.Update(tables, &scatter_));
    scatter_dest_.clear();
    scatter_values_.clear();
    for (size_t at = 0; at < scatter_.size();) {
      const int64_t row = scatter_[at], first = scatter_[at + 1], count = scatter_[at + 2];
      for (int64_t j = 0; j < count; ++j) {
        scatter_dest_.push_back(static_cast<int32_t>(row * tables.row_capacity + first + j));
        scatter_values_.push_back(scatter_[at + 3 + static_cast<size_t>(j)]);
      }
      at += 3 + static_cast<size_t>(count);
    }
    plan.scatter_dest_offset = cuda_internal::AppendAligned(scatter_dest_, &plan_host_);
    plan.scatter_values_offset = cuda_internal::AppendAligned(scatter_values_, &plan_host_);
    // The device table must now receive these records; if anything below fails it may not have,
    // so the record is dropped and the next step sends every list.
    const absl::Status uploaded = UploadPlan(&plan, tables);
    if (!uploaded.ok()) resident_.Forget();
    return uploaded;
  }
  return UploadPlan(&plan, tables);
}

absl::Status CudaBackend::UploadPlan(StepPlanState* plan_in, const StepTables& tables) {
  StepPlanState& plan = *plan_in;
  RETURN_IF_ERROR(Activate());
  if (tables.resident()) {
    const size_t entries =
        static_cast<size_t>(tables.resident_rows) * static_cast<size_t>(tables.row_capacity);
    if (entries != resident_entries_) {
      if (resident_table_ != nullptr) {
        CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));  // the last step may still read it
        CUDA_RETURN_IF_ERROR(cudaFree(resident_table_));
        resident_table_ = nullptr;
        resident_entries_ = 0;
      }
      void* table = nullptr;
      CUDA_RETURN_IF_ERROR(cudaMalloc(&table, entries * sizeof(int32_t)));
      resident_table_ = static_cast<int32_t*>(table);
      resident_entries_ = entries;
    }
  }
  const size_t bytes = plan_host_.size();
  if (bytes > plan_buffer_bytes_) {
    const size_t capacity = std::max({bytes, 2 * plan_buffer_bytes_, size_t{64} << 10});
    if (plan_buffer_ != nullptr) {
      CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));  // the last step may still read it
      CUDA_RETURN_IF_ERROR(cudaFree(plan_buffer_));
      plan_buffer_ = nullptr;
      plan_buffer_bytes_ = 0;
    }
    CUDA_RETURN_IF_ERROR(cudaMalloc(&plan_buffer_, capacity));
    plan_buffer_bytes_ = capacity;
  }
  // Stream-ordered after the previous step's kernels, so they read the old plan to the end; from
  // pageable memory the copy stages plan_host_ before returning, so it may be reused at once.
  if (bytes > 0) {
    CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(plan_buffer_, plan_host_.data(), bytes, cudaMemcpyHostToDevice, stream_));
    CountHostToDevice(static_cast<int64_t>(bytes));
  }
  if (tables.resident() && !scatter_dest_.empty()) {
    const auto* base = static_cast<const uint8_t*>(plan_buffer_);
    CUDA_RETURN_IF_ERROR(cuda::LaunchScatterInts(
        reinterpret_cast<const int32_t*>(base + plan.scatter_dest_offset),
        reinterpret_cast<const int32_t*>(base + plan.scatter_values_offset),
        static_cast<int32_t>(scatter_dest_.size()), resident_table_, stream_));
  }
  plan.planned = true;
  plan_ = std::move(plan);
  return absl::OkStatus();
}

absl::Status CudaBackend::CheckPlannedLayer(const char* op, int32_t layer,
                                            const Tensor& kv_pool) const {
  if (!plan_.planned) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": plan is missing: call PlanStep first"));
  }
  if (layer < 0 || layer >= plan_.num_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": layer ", layer, " is outside the plan's [0, ", plan_.num_layers, ")"));
  }
  if (kv_pool.data() != plan_.pool_data || kv_pool.shape() != plan_.pool_shape) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": kv_pool is ", kv_pool.DebugString(),
                                                   ", not the pool the step was planned against"));
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::RopeStep(const Tensor& inv_freq, Tensor* x) {
  if (!plan_.planned) {
    return absl::InvalidArgumentError("RopeStep: plan is missing: call PlanStep first");
  }
  RETURN_IF_ERROR(CheckRope(plan_.num_rows, inv_freq, x));
  if (x->numel() == 0) return absl::OkStatus();
  RETURN_IF_ERROR(Activate());
  const auto* base = static_cast<const uint8_t*>(plan_buffer_);
  return LaunchRopeKernel(reinterpret_cast<const int32_t*>(base + plan_.positions_offset), inv_freq,
                          x);
}

absl::Status CudaBackend::WriteKvStep(int32_t layer, const Tensor& k, const Tensor& v,
                                      Tensor* kv_pool) {
  if (kv_pool == nullptr) return absl::InvalidArgumentError("WriteKvStep: kv_pool is null");
  RETURN_IF_ERROR(CheckPlannedLayer("WriteKvStep", layer, *kv_pool));
  const int64_t layer_slots = plan_.num_rows * plan_.num_kv_heads;
  RETURN_IF_ERROR(CheckWriteKv(layer_slots, k, v, kv_pool));
  if (layer_slots == 0 || k.numel() == 0) return absl::OkStatus();
  RETURN_IF_ERROR(Activate());
  const auto* slots = reinterpret_cast<const int32_t*>(static_cast<const uint8_t*>(plan_buffer_) +
                                                       plan_.slots_offset);
  return LaunchWriteKvKernel(slots + layer * layer_slots, k, v, kv_pool);
}

absl::Status CudaBackend::AttentionStep(int32_t layer, const Tensor& q, const Tensor& kv_pool,
                                        Tensor* out) {
  RETURN_IF_ERROR(CheckPlannedLayer("AttentionStep", layer, kv_pool));
  RETURN_IF_ERROR(CheckDeviceTensor("AttentionStep", "q", q, dtype_, 3));
  RETURN_IF_ERROR(CheckDeviceOutput("AttentionStep", "out", out, dtype_, 3));
  if (q.dim(0) != plan_.num_rows || q.dim(1) != plan_.num_heads ||
      q.dim(2) != plan_.layout.head_dim) {
    return absl::InvalidArgumentError(absl::StrCat(
        "AttentionStep: q is ", q.DebugString(), ", expected [", plan_.num_rows, ", ",
        plan_.num_heads, ", ", plan_.layout.head_dim, "] (the plan's rows and heads)"));
  }
  RETURN_IF_ERROR(CheckSameShape("AttentionStep", "q", q, "out", *out));
  return LaunchAttentionPlan(plan_.layers[static_cast<size_t>(layer)], plan_.layout, plan_buffer_,
                             q, kv_pool, out);
}

}  // namespace zigzag
