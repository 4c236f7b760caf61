// The CPU backend's planned step (Backend::PlanStep and the *Step ops): PlanStep checks the
// step's tables once and keeps a copy of them, the CPU's stand-in for the device copy. Resident
// steps keep their block lists in a table of their own across steps, updated only through the
// scatter records a device would receive (kernels/resident_block_table.h), and the step ops read
// block lists from that table; the others read them from the tables. It owns no kernel code.
// Internal to kernels/cpu.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "kernels/backend.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/resident_block_table.h"
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
  // What the last successful Plan would upload to a device, in bytes: the whole tables, or for a
  // resident step its small metadata plus the scatter records of the lists that changed.
  int64_t upload_bytes() const { return upload_bytes_; }

 private:
  // The plan exists, `layer` is one of its layers and kv_pool is the pool it was checked against.
  absl::Status CheckLayer(const char* op, int32_t layer, const Tensor& kv_pool) const;

  // Layer `layer`'s attention batch; resident steps gather each head's list from table_.
  AttentionBatch LayerBatch(int32_t layer, std::vector<AttentionSequence>* views,
                            std::vector<int32_t>* gathered, std::vector<int32_t>* offsets) const;

  bool planned_ = false;
  StepTables tables_;
  int64_t upload_bytes_ = 0;
  ResidentBlockTable shadow_;     // what the host believes the resident table holds
  std::vector<int32_t> table_;    // the resident table itself, [rows * capacity]
  std::vector<int32_t> scatter_;  // the last step's scatter records
  const void* pool_data_ = nullptr;
  Shape pool_shape_;
};

}  // namespace zigzag::cpu
