#include "kernels/cpu/cpu_step.h"

#include "core/util/status_macros.h"
#include "kernels/cpu/cpu_attention.h"
#include "kernels/cpu/cpu_checks.h"

namespace zigzag::cpu {

absl::Status StepPlan::Plan(const StepTables& tables, const Tensor& kv_pool) {
  planned_ = false;
  RETURN_IF_ERROR(CheckF32("PlanStep", "kv_pool", kv_pool, 4,
                           "[num_blocks, 2, block_size, "
                           "head_dim]"));
  RETURN_IF_ERROR(tables.Validate(kv_pool.dim(2), kv_pool.dim(0)));
  tables_ = tables;
  pool_data_ = kv_pool.data();
  pool_shape_ = kv_pool.shape();
  planned_ = true;
  return absl::OkStatus();
}

absl::Status StepPlan::CheckPlanned(const char* op) const {
  if (!planned_) return ArgError(op, "plan", "is missing: call PlanStep first");
  return absl::OkStatus();
}

absl::Status StepPlan::CheckLayer(const char* op, int32_t layer, const Tensor& kv_pool) const {
  RETURN_IF_ERROR(CheckPlanned(op));
  if (layer < 0 || layer >= tables_.num_layers) {
    return ArgError(op, "layer", layer, " is outside the plan's [0, ", tables_.num_layers, ")");
  }
  if (kv_pool.data() != pool_data_ || kv_pool.shape() != pool_shape_) {
    return ArgError(op, "kv_pool", "is ", kv_pool.DebugString(),
                    ", not the pool the step was planned against");
  }
  return absl::OkStatus();
}

absl::Status StepPlan::WriteKv(int32_t layer, const Tensor& k, const Tensor& v,
                               Tensor* kv_pool) const {
  if (kv_pool == nullptr) return ArgError("WriteKvStep", "kv_pool", "is null");
  RETURN_IF_ERROR(CheckLayer("WriteKvStep", layer, *kv_pool));
  return cpu::WriteKv(k, v, tables_.LayerSlots(layer), kv_pool);
}

absl::Status StepPlan::Attention(ThreadPool& pool, int32_t layer, const Tensor& q,
                                 const Tensor& kv_pool, Tensor* out) const {
  RETURN_IF_ERROR(CheckLayer("AttentionStep", layer, kv_pool));
  if (q.rank() != 3 || q.dim(0) != tables_.num_rows() || q.dim(1) != tables_.num_heads) {
    return ArgError("AttentionStep", "q", "is ", q.DebugString(), ", expected [",
                    tables_.num_rows(), ", ", tables_.num_heads,
                    ", head_dim] (the plan's rows "
                    "and heads)");
  }
  std::vector<AttentionSequence> views;
  return cpu::Attention(pool, tables_.LayerBatch(layer, &views), q, kv_pool, out);
}

}  // namespace zigzag::cpu
