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

  // Residency (optional; empty stream_rows: every block list is uploaded with the step, the
  // layout above). Otherwise each stream's block list stays in the backend's resident block
  // table (kernels/resident_block_table.h) between steps: stream i lives in row stream_rows[i]
  // of a table of resident_rows rows of row_capacity block ids, and only lists whose
  // stream_versions[i] (SequenceKv::version) moved since their row's last upload are sent.
  // row_reset[i] != 0: the row was handed to this stream this step, so what it held belongs to
  // someone else and is not compared (no stale check). Versions and resets are never uploaded.
  std::vector<int32_t> stream_rows;       // [L * S * G]
  std::vector<uint64_t> stream_versions;  // [L * S * G]
  std::vector<uint8_t> row_reset;         // [L * S * G]
  int32_t resident_rows = 0;
  int32_t row_capacity = 0;
  bool resident() const { return !stream_rows.empty(); }

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

  // The integers a backend uploads without residency: every table vector but window_mass and
  // the residency fields, in bytes.
  int64_t metadata_bytes() const;
  // What a resident step uploads besides the changed block lists: three int32 per sequence,
  // positions, slots, kv_lens and stream_rows, in bytes. No block ids, no CSR offsets.
  int64_t resident_metadata_bytes() const;

  // Checks the structure (sizes, CSR, rows) and, per layer, everything ValidateAttentionBatch
  // checks, plus every slot against the pool's num_blocks * block_size, plus (when resident) the
  // residency fields: sizes, rows in range and distinct, lists within row_capacity. InvalidArgument
  // "PlanStep: <field> ..." naming the field, layer and sequence on the first violation.
  absl::Status Validate(int64_t block_size, int64_t num_blocks) const;

 private:
  absl::Status ValidateResidency() const;
};

}  // namespace zigzag
