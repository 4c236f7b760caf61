#include "kernels/step_tables.h"

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "kernels/attention_args.h"

namespace zigzag {

void StepTables::Reset(int32_t layers, int32_t kv_heads, int32_t heads, float attention_scale) {
  num_layers = layers;
  num_kv_heads = kv_heads;
  num_heads = heads;
  scale = attention_scale;
  sequences.clear();
  positions.clear();
  slots.clear();
  kv_lens.clear();
  block_offsets.clear();
  table_begin.clear();
  block_ids.clear();
  window_mass.clear();
  stream_rows.clear();
  stream_versions.clear();
  row_reset.clear();
  resident_rows = 0;
  row_capacity = 0;
}

void StepTables::AppendStream(int32_t kv_len, std::span<const int32_t> stream_blocks) {
  if (table_begin.empty() ||
      (num_kv_heads > 0 && kv_lens.size() % static_cast<size_t>(num_kv_heads) == 0)) {
    table_begin.push_back(static_cast<int32_t>(block_ids.size()));
    block_offsets.push_back(0);
  }
  kv_lens.push_back(kv_len);
  block_ids.insert(block_ids.end(), stream_blocks.begin(), stream_blocks.end());
  block_offsets.push_back(static_cast<int32_t>(block_ids.size()) - table_begin.back());
}

std::span<const int32_t> StepTables::LayerSlots(int32_t layer) const {
  const size_t per_layer = static_cast<size_t>(num_rows()) * static_cast<size_t>(num_kv_heads);
  return std::span<const int32_t>(slots).subspan(static_cast<size_t>(layer) * per_layer, per_layer);
}

AttentionBatch StepTables::LayerBatch(int32_t layer, std::vector<AttentionSequence>* views) const {
  const size_t num_seqs = sequences.size();
  const size_t g = static_cast<size_t>(num_kv_heads);
  views->resize(num_seqs);
  for (size_t s = 0; s < num_seqs; ++s) {
    const size_t pair = static_cast<size_t>(layer) * num_seqs + s;
    AttentionSequence& view = (*views)[s];
    view.query_begin = sequences[s].query_begin;
    view.num_queries = sequences[s].num_queries;
    view.window_begin = sequences[s].window_begin;
    view.kv_lens = std::span<const int32_t>(kv_lens).subspan(pair * g, g);
    view.block_offsets = std::span<const int32_t>(block_offsets).subspan(pair * (g + 1), g + 1);
    view.block_ids = std::span<const int32_t>(block_ids).subspan(
        static_cast<size_t>(table_begin[pair]), static_cast<size_t>(view.block_offsets[g]));
    view.window_mass = window_mass.empty() ? nullptr : window_mass[pair];
  }
  return AttentionBatch{.sequences = *views, .num_kv_heads = num_kv_heads, .scale = scale};
}

int64_t StepTables::metadata_bytes() const {
  // Sequence descriptors travel as three int32 each.
  const size_t ints = 3 * sequences.size() + positions.size() + slots.size() + kv_lens.size() +
                      block_offsets.size() + table_begin.size() + block_ids.size();
  return static_cast<int64_t>(ints * sizeof(int32_t));
}

int64_t StepTables::resident_metadata_bytes() const {
  const size_t ints =
      3 * sequences.size() + positions.size() + slots.size() + kv_lens.size() + stream_rows.size();
  return static_cast<int64_t>(ints * sizeof(int32_t));
}

absl::Status StepTables::Validate(int64_t block_size, int64_t num_blocks) const {
  const auto error = [](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat("PlanStep: ", parts...));
  };
  if (num_layers < 1 || num_kv_heads < 1 || num_heads < 1 || num_heads % num_kv_heads != 0) {
    return error("num_layers ", num_layers, ", num_kv_heads ", num_kv_heads, " and num_heads ",
                 num_heads, " must be >= 1, with num_kv_heads dividing num_heads");
  }
  if (block_size < 1) return error("kv_pool's block_size ", block_size, " must be >= 1");
  const int64_t layers = num_layers, seqs = num_sequences(), heads = num_kv_heads;
  const auto expect_size = [&](const char* field, size_t size, int64_t expected,
                               const char* formula) -> absl::Status {
    if (static_cast<int64_t>(size) == expected) return absl::OkStatus();
    return error(field, " has ", size, " entries, expected ", formula, " = ", expected);
  };
  absl::Status status = expect_size("kv_lens", kv_lens.size(), layers * seqs * heads,
                                    "num_layers * sequences * num_kv_heads");
  if (status.ok()) {
    status = expect_size("block_offsets", block_offsets.size(), layers * seqs * (heads + 1),
                         "num_layers * sequences * (num_kv_heads + 1)");
  }
  if (status.ok()) {
    status =
        expect_size("table_begin", table_begin.size(), layers * seqs, "num_layers * sequences");
  }
  if (status.ok()) {
    status = expect_size("slots", slots.size(), layers * num_rows() * heads,
                         "num_layers * rows * num_kv_heads");
  }
  if (status.ok() && !window_mass.empty()) {
    status = expect_size("window_mass", window_mass.size(), layers * seqs,
                         "num_layers * sequences (or empty)");
  }
  if (!status.ok()) return status;
  for (size_t pair = 0; pair < table_begin.size(); ++pair) {
    const int64_t begin = table_begin[pair];
    const int64_t last = block_offsets[pair * static_cast<size_t>(heads + 1) + heads];
    if (begin < 0 || last < 0 || begin + last > static_cast<int64_t>(block_ids.size())) {
      return error("table_begin[", pair, "] = ", begin, " with ", last,
                   " blocks lies outside block_ids' ", block_ids.size(), " entries");
    }
  }
  const int64_t num_slots = num_blocks * block_size;
  for (size_t n = 0; n < slots.size(); ++n) {
    if (slots[n] < 0 || slots[n] >= num_slots) {
      return error("slots[", n, "] = ", slots[n],
                   " is outside [0, num_blocks * block_size = ", num_slots, ")");
    }
  }
  std::vector<AttentionSequence> views;
  for (int32_t l = 0; l < num_layers; ++l) {
    const absl::Status layer =
        ValidateAttentionBatch(LayerBatch(l, &views), {.num_rows = num_rows(),
                                                       .num_heads = num_heads,
                                                       .block_size = block_size,
                                                       .num_blocks = num_blocks});
    if (!layer.ok()) return error("layer ", l, ": ", layer.message());
  }
  if (resident()) return ValidateResidency();
  return absl::OkStatus();
}

absl::Status StepTables::ValidateResidency() const {
  const auto error = [](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat("PlanStep: ", parts...));
  };
  const size_t streams = kv_lens.size();
  if (stream_rows.size() != streams || stream_versions.size() != streams ||
      row_reset.size() != streams) {
    return error("stream_rows, stream_versions and row_reset have ", stream_rows.size(), ", ",
                 stream_versions.size(), " and ", row_reset.size(),
                 " entries, expected one per stream (", streams, ")");
  }
  // The table's size is bounded before anyone allocates it: 2^26 block ids (256 MiB).
  constexpr int64_t kMaxEntries = int64_t{1} << 26;
  if (resident_rows < 1 || row_capacity < 1 ||
      static_cast<int64_t>(resident_rows) * row_capacity > kMaxEntries) {
    return error("resident_rows ", resident_rows, " x row_capacity ", row_capacity,
                 " must be >= 1 each and hold at most ", kMaxEntries, " block ids");
  }
  const size_t g = static_cast<size_t>(num_kv_heads);
  absl::flat_hash_set<int32_t> seen;
  for (size_t i = 0; i < streams; ++i) {
    const int32_t row = stream_rows[i];
    if (row < 0 || row >= resident_rows) {
      return error("stream_rows[", i, "] = ", row,
                   " is outside [0, resident_rows = ", resident_rows, ")");
    }
    if (!seen.insert(row).second) {
      return error("stream_rows[", i, "] = ", row, " is used by two streams of the step");
    }
    const size_t pair = i / g, head = i % g;
    const int32_t count =
        block_offsets[pair * (g + 1) + head + 1] - block_offsets[pair * (g + 1) + head];
    if (count > row_capacity) {
      return error("stream ", i, " holds ", count, " blocks, more than row_capacity ",
                   row_capacity);
    }
  }
  return absl::OkStatus();
}

}  // namespace zigzag
