#include "kernels/resident_block_table.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace zigzag {

absl::Status ApplyScatter(std::span<const int32_t> scatter, int32_t rows, int32_t capacity,
                          std::span<int32_t> table) {
  size_t at = 0;
  while (at < scatter.size()) {
    if (scatter.size() - at < 3) {
      return absl::InvalidArgumentError(absl::StrCat("scatter: record at ", at, " is cut short (",
                                                     scatter.size() - at,
                                                     " of its 3 header entries)"));
    }
    const int32_t row = scatter[at], first = scatter[at + 1], count = scatter[at + 2];
    if (row < 0 || row >= rows || first < 0 || count < 0 ||
        static_cast<int64_t>(first) + count > capacity ||
        static_cast<int64_t>(scatter.size() - at - 3) < count) {
      return absl::InvalidArgumentError(absl::StrCat(
          "scatter: record at ", at, " (row ", row, ", first ", first, ", count ", count,
          ") lies outside the table's ", rows, " rows of ", capacity, " or the buffer"));
    }
    std::copy_n(
        scatter.begin() + static_cast<ptrdiff_t>(at + 3), count,
        table.begin() + static_cast<ptrdiff_t>(static_cast<int64_t>(row) * capacity + first));
    at += 3 + static_cast<size_t>(count);
  }
  return absl::OkStatus();
}

absl::Status ResidentBlockTable::Update(const StepTables& t, std::vector<int32_t>* scatter) {
  const size_t g = static_cast<size_t>(t.num_kv_heads);
  const size_t streams = t.stream_rows.size();
  const bool fresh = t.resident_rows != rows_ || t.row_capacity != capacity_;
  // Check first, change after, so a rejected step leaves the table as it was.
  if (!fresh) {
    for (size_t i = 0; i < streams; ++i) {
      const size_t row = static_cast<size_t>(t.stream_rows[i]);
      if (t.row_reset[i] == 0 && t.stream_versions[i] < versions_[row]) {
        return absl::InvalidArgumentError(absl::StrCat(
            "PlanStep: stream_versions[", i, "] = ", t.stream_versions[i], " is older than row ",
            row, "'s last upload (version ", versions_[row],
            "): stale tables, or the row belongs to another stream without row_reset"));
      }
    }
  }
  if (fresh) {
    rows_ = t.resident_rows;
    capacity_ = t.row_capacity;
    entries_.assign(static_cast<size_t>(rows_) * static_cast<size_t>(capacity_), 0);
    lengths_.assign(static_cast<size_t>(rows_), 0);
    versions_.assign(static_cast<size_t>(rows_), 0);
  }
  for (size_t i = 0; i < streams; ++i) {
    const size_t row = static_cast<size_t>(t.stream_rows[i]);
    if (t.row_reset[i] != 0) {
      lengths_[row] = 0;
    } else if (t.stream_versions[i] == versions_[row]) {
      continue;  // unchanged since its last upload
    }
    versions_[row] = t.stream_versions[i];
    const size_t pair = i / g, head = i % g;
    const int32_t* offsets = &t.block_offsets[pair * (g + 1)];
    const std::span<const int32_t> list(t.block_ids.data() + t.table_begin[pair] + offsets[head],
                                        static_cast<size_t>(offsets[head + 1] - offsets[head]));
    int32_t* resident = entries_.data() + row * static_cast<size_t>(capacity_);
    const size_t held = static_cast<size_t>(lengths_[row]);
    size_t first = 0;
    while (first < std::min(held, list.size()) && resident[first] == list[first]) ++first;
    if (first < list.size()) {
      const int32_t count = static_cast<int32_t>(list.size() - first);
      scatter->insert(scatter->end(),
                      {static_cast<int32_t>(row), static_cast<int32_t>(first), count});
      scatter->insert(scatter->end(), list.begin() + static_cast<ptrdiff_t>(first), list.end());
      std::copy(list.begin() + static_cast<ptrdiff_t>(first), list.end(), resident + first);
    }
    lengths_[row] = static_cast<int32_t>(list.size());
  }
  return absl::OkStatus();
}

}  // namespace zigzag
