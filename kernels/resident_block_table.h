// ResidentBlockTable: the host's record of a backend's resident block table (one row of block ids
// per (layer, sequence, KV head) stream, kept between steps) and the diff that brings it up to
// date: which entries of which rows a step must send. It moves no memory to a device and owns no
// row assignment (the caller, LlamaModel, hands rows out); backends apply its scatter records.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "kernels/step_tables.h"

namespace zigzag {

// A scatter buffer is a sequence of records, each [row, first, count, ids[count]] (int32):
// entries [first, first + count) of row `row` become ids. ApplyScatter checks every record.
absl::Status ApplyScatter(std::span<const int32_t> scatter, int32_t rows, int32_t capacity,
                          std::span<int32_t> table);

class ResidentBlockTable {
 public:
  // For validated, resident `tables` (StepTables::Validate): checks every stream's version against
  // its row's (InvalidArgument "PlanStep: stream_versions[i] ..." when older than the row's last
  // upload, unless row_reset), then appends to `scatter` one record per stream whose list differs
  // from the row's: its entries from the first that differs to the end of the list (a compacted,
  // shorter list sends nothing: kernels read only ceil(kv_len / block_size) entries). Records the
  // new state. A change of resident_rows or row_capacity starts an empty table. On error nothing
  // changes.
  absl::Status Update(const StepTables& tables, std::vector<int32_t>* scatter);

  // Forgets the record (the next Update starts an empty table and sends every list): for a
  // backend whose upload failed after Update, so the device may not hold what was recorded.
  void Forget() { rows_ = capacity_ = 0; }

  int32_t rows() const { return rows_; }
  int32_t capacity() const { return capacity_; }

 private:
  int32_t rows_ = 0;
  int32_t capacity_ = 0;
  std::vector<int32_t> entries_;    // [rows * capacity]
  std::vector<int32_t> lengths_;    // [rows]: valid entries of each row
  std::vector<uint64_t> versions_;  // [rows]: version of the last list uploaded (0: none)
};

}  // namespace zigzag
