#include "core/kv/kv_compaction.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"

namespace zigzag {

absl::Status CompactSequenceKv(const CompressionPlan& plan, Backend& backend, KvCache& cache,
                               SequenceKv& kv) {
  if (!plan.compressed) return absl::OkStatus();
  const int num_layers = kv.num_layers();
  const int64_t kv_heads = cache.layout().num_kv_heads;
  if (static_cast<int>(plan.budgets.size()) != num_layers ||
      static_cast<int>(plan.kept.size()) != num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("compaction: the plan has ", plan.budgets.size(),
                                                   " layers, the sequence ", num_layers));
  }
  // Check everything before moving anything, so a bad plan leaves the cache as it was.
  for (int l = 0; l < num_layers; ++l) {
    if (plan.budgets[l] > kv.length(l) || plan.budgets[l] < 0) {
      return absl::InvalidArgumentError(absl::StrCat("compaction: layer ", l, " budget ",
                                                     plan.budgets[l], " exceeds its length ",
                                                     kv.length(l)));
    }
    if (static_cast<int64_t>(plan.kept[l].size()) != kv_heads) {
      return absl::InvalidArgumentError(absl::StrCat("compaction: layer ", l, " plan has ",
                                                     plan.kept[l].size(), " KV heads, the cache ",
                                                     kv_heads));
    }
    for (const std::vector<int32_t>& head : plan.kept[l]) {
      if (static_cast<int64_t>(head.size()) != plan.budgets[l]) {
        return absl::InvalidArgumentError(
            absl::StrCat("compaction: layer ", l, " keeps ", head.size(),
                         " entries for a KV head, its budget is ", plan.budgets[l]));
      }
    }
  }
  std::vector<int32_t> flat;
  for (int l = 0; l < num_layers; ++l) {
    const int64_t budget = plan.budgets[l];
    flat.clear();
    for (const std::vector<int32_t>& head : plan.kept[l])
      flat.insert(flat.end(), head.begin(), head.end());
    RETURN_IF_ERROR(
        backend.CompactKv(kv.blocks(l), flat, static_cast<int32_t>(budget), &cache.pool_tensor()));
    kv.Truncate(l, budget);
  }
  return absl::OkStatus();
}

}  // namespace zigzag
