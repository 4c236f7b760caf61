// StepTables: one forward step's integer metadata for every layer at once (query positions, the
// WriteKv slots of every layer, every (layer, sequence, KV head) stream's length and block list
// in CSR form), the input of Backend::PlanStep. It only describes and checks the tables; when and
// how a backend uploads them is the backend's business (kernels/backend.h, docs/architecture.md).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "kernels/backend.h"
#include "kernels/tensor.h"

namespace zigzag {

// One sequence's rows of the step (the same in every layer).
struct StepSequence {
  int32_t query_begin = 0;  // first row of q
  int32_t num_queries = 0;
  int32_t window_begin = 0;  // see AttentionSequence::window_begin
};

// Layer-major tables: stream (l, s, g) = layer l, sequence s, KV head g has index
// (l * S + s) * G + g. Every (l, s) pair has its own CSR row set over its G heads, exactly an
// AttentionSequence's: block_offsets[(l * S + s) * (G + 1) + g] (starting at 0 for each pair)
// into the pair's block list, which starts at block_ids[table_begin[l * S + s]].
struct StepTables {
  int32_t num_layers = 0;    // L
  int32_t num_kv_heads = 0;  // G
  int32_t num_heads = 0;     // query heads of q (GQA: G divides it)
  float scale = 1.0f;
  std::vector<StepSequence> sequences;  // S
  std::vector<int32_t> positions;       // [rows]: the RoPE position of every row
  std::vector<int32_t> slots;           // [L][rows][G]: WriteKv's slot of row n, head g
  std::vector<int32_t> kv_lens;         // [L * S * G]
  std::vector<int32_t> block_offsets;   // [L * S * (G + 1)]
  std::vector<int32_t> table_begin;     // [L * S]
  std::vector<int32_t> block_ids;
  // Optional window summaries, [L * S] (null: none) or empty for none at all. Not uploaded as
  // integers: the tensors are the caller's and must outlive the step.
  std::vector<Tensor*> window_mass;

  int64_t num_rows() const { return static_cast<int64_t>(positions.size()); }
  int64_t num_sequences() const { return static_cast<int64_t>(sequences.size()); }

  // Starts an empty step for L layers, G KV heads and H query heads.
  void Reset(int32_t layers, int32_t kv_heads, int32_t heads, float attention_scale);
  // Appends sequence s of layer l's tables: per head g its length and its stream's blocks
  // (all of them; kernels read the first ceil(len / block_size)). Call for l = 0.. in order, and
  // for each l every sequence in order, after the sequences and rows are set.
  void AppendStream(int32_t kv_len, std::span<const int32_t> stream_blocks);

  // Layer l's slots, [rows * G].
  std::span<const int32_t> LayerSlots(int32_t layer) const;
  // Layer l's attention batch as views into these tables (valid while they are unchanged).
  // `views` is resized to S and holds the AttentionSequence storage the batch points at.
  AttentionBatch LayerBatch(int32_t layer, std::vector<AttentionSequence>* views) const;

  // The integers a backend uploads: every vector above but window_mass, in bytes.
  int64_t metadata_bytes() const;

  // Checks the structure (sizes, CSR, rows) and, per layer, everything ValidateAttentionBatch
  // checks, plus every slot against the pool's num_blocks * block_size. InvalidArgument
  // "PlanStep: <field> ..." naming the field, layer and sequence on the first violation.
  absl::Status Validate(int64_t block_size, int64_t num_blocks) const;
};

}  // namespace zigzag
