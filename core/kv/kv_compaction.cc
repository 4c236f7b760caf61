#include "core/kv/kv_compaction.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"

namespace zigzag {

absl::Status CompactSequenceKv(const CompressionPlan& plan, Backend& backend, KvCache& cache,
                               SequenceKv& kv) {
  if (!plan.compressed) return absl::OkStatus();
  const int num_layers = kv.num_layers();
  const int kv_heads = kv.num_kv_heads();
  if (static_cast<int>(plan.budgets.size()) != num_layers ||
      static_cast<int>(plan.kept.size()) != num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("compaction: the plan has ", plan.budgets.size(),
                                                   " layers, the sequence ", num_layers));
  }
  if (!plan.head_counts.empty() && static_cast<int>(plan.head_counts.size()) != num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("compaction: the plan's head_counts has ",
                                                   plan.head_counts.size(),
                                                   " layers, the sequence ", num_layers));
  }
  // Check everything before moving anything, so a bad plan leaves the cache as it was. Each
  // stream's entries are validated (ascending, inside its blocks) by CompactKv itself before it
  // moves anything.
  for (int l = 0; l < num_layers; ++l) {
    if (static_cast<int>(plan.kept[l].size()) != kv_heads) {
      return absl::InvalidArgumentError(absl::StrCat("compaction: layer ", l, " plan has ",
                                                     plan.kept[l].size(), " KV heads, the cache ",
                                                     kv_heads));
    }
    for (int g = 0; g < kv_heads; ++g) {
      const int64_t count = static_cast<int64_t>(plan.kept[l][g].size());
      if (count > kv.length(l, g)) {
        return absl::InvalidArgumentError(
            absl::StrCat("compaction: layer ", l, " KV head ", g, " keeps ", count,
                         " entries, its stream holds ", kv.length(l, g)));
      }
      if (!plan.head_counts.empty() && (static_cast<int>(plan.head_counts[l].size()) != kv_heads ||
                                        plan.head_counts[l][g] != count)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "compaction: layer ", l, " KV head ", g, " keeps ", count,
            " entries but the plan's head_counts says ",
            g < static_cast<int>(plan.head_counts[l].size()) ? plan.head_counts[l][g] : -1));
      }
    }
  }
  std::vector<KvStreamCompaction> streams;
  streams.reserve(static_cast<size_t>(num_layers) * kv_heads);
  for (int l = 0; l < num_layers; ++l) {
    for (int g = 0; g < kv_heads; ++g) {
      streams.push_back({.block_ids = kv.blocks(l, g), .kept = plan.kept[l][g]});
    }
  }
  RETURN_IF_ERROR(backend.CompactKv(streams, &cache.pool_tensor()));
  for (int l = 0; l < num_layers; ++l) {
    for (int g = 0; g < kv_heads; ++g) {
      kv.Truncate(l, g, static_cast<int64_t>(plan.kept[l][g].size()));
    }
  }
  return absl::OkStatus();
}

}  // namespace zigzag
