// The CPU backend's planned step (Backend::PlanStep and the *Step ops): PlanStep checks the
// step's tables once and keeps a copy of them, the CPU's stand-in for the device copy; the step
// ops find each layer's lengths, block lists and slots in it and run the span-taking kernels of
// cpu_attention.cc on those views. It owns no kernel code. Internal to kernels/cpu.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "kernels/backend.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/step_tables.h"
#include "kernels/tensor.h"

namespace zigzag::cpu {

class StepPlan {
 public:
  // Validates `tables` against kv_pool and keeps them. On error the previous plan is dropped, so
  // a failed PlanStep can never leave stale tables behind for the step ops.
  absl::Status Plan(const StepTables& tables, const Tensor& kv_pool);

  absl::Status WriteKv(int32_t layer, const Tensor& k, const Tensor& v, Tensor* kv_pool) const;
  absl::Status Attention(ThreadPool& pool, int32_t layer, const Tensor& q, const Tensor& kv_pool,
                         Tensor* out) const;
  // InvalidArgument "<op>: ..." unless a plan exists.
  absl::Status CheckPlanned(const char* op) const;
  const StepTables& tables() const { return tables_; }

 private:
  // The plan exists, `layer` is one of its layers and kv_pool is the pool it was checked against.
  absl::Status CheckLayer(const char* op, int32_t layer, const Tensor& kv_pool) const;

  bool planned_ = false;
  StepTables tables_;
  const void* pool_data_ = nullptr;
  Shape pool_shape_;
};

}  // namespace zigzag::cpu
