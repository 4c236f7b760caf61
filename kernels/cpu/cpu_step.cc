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
  if (tables.resident()) {
    scatter_.clear();
    RETURN_IF_ERROR(shadow_.Update(tables, &scatter_));
    const size_t entries =
        static_cast<size_t>(shadow_.rows()) * static_cast<size_t>(shadow_.capacity());
    if (table_.size() != entries) table_.assign(entries, 0);  // a new table, as Update started
    // The device's side: the table changes only through the records it is sent.
    RETURN_IF_ERROR(ApplyScatter(scatter_, shadow_.rows(), shadow_.capacity(), table_));
    upload_bytes_ =
        tables.resident_metadata_bytes() + static_cast<int64_t>(scatter_.size() * sizeof(int32_t));
  } else {
    upload_bytes_ = tables.metadata_bytes();
  }
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
  std::vector<int32_t> gathered, offsets;
  return cpu::Attention(pool, LayerBatch(layer, &views, &gathered, &offsets), q, kv_pool, out);
}

AttentionBatch StepPlan::LayerBatch(int32_t layer, std::vector<AttentionSequence>* views,
                                    std::vector<int32_t>* gathered,
                                    std::vector<int32_t>* offsets) const {
  AttentionBatch batch = tables_.LayerBatch(layer, views);
  if (!tables_.resident()) return batch;
  // Each sequence's heads get their first ceil(kv_len / block_size) entries from their rows, the
  // entries a kernel reads, in the CSR form the span-taking kernels take. Sized first: the views
  // point into these vectors.
  const size_t seqs = views->size(), g = static_cast<size_t>(tables_.num_kv_heads);
  const int64_t bs = pool_shape_[2];
  const size_t first_stream = static_cast<size_t>(layer) * seqs * g;
  size_t total = 0;
  for (size_t i = 0; i < seqs * g; ++i) {
    total += static_cast<size_t>((tables_.kv_lens[first_stream + i] + bs - 1) / bs);
  }
  gathered->clear();
  gathered->reserve(total);
  offsets->assign(seqs * (g + 1), 0);
  const size_t capacity = static_cast<size_t>(shadow_.capacity());
  for (size_t s = 0; s < seqs; ++s) {
    const size_t begin = gathered->size();
    for (size_t h = 0; h < g; ++h) {
      const size_t stream = first_stream + s * g + h;
      const size_t count = static_cast<size_t>((tables_.kv_lens[stream] + bs - 1) / bs);
      const auto row =
          table_.begin() +
          static_cast<ptrdiff_t>(static_cast<size_t>(tables_.stream_rows[stream]) * capacity);
      gathered->insert(gathered->end(), row, row + static_cast<ptrdiff_t>(count));
      (*offsets)[s * (g + 1) + h + 1] = static_cast<int32_t>(gathered->size() - begin);
    }
    AttentionSequence& view = (*views)[s];
    view.block_offsets = std::span<const int32_t>(*offsets).subspan(s * (g + 1), g + 1);
    view.block_ids = std::span<const int32_t>(*gathered).subspan(begin, gathered->size() - begin);
  }
  return batch;
}

}  // namespace zigzag::cpu
