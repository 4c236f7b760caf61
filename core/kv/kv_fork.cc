#include "core/kv/kv_fork.h"

#include <vector>

#include "core/util/status_macros.h"

namespace zigzag {

absl::StatusOr<SequenceKv> ForkSequenceKv(const SequenceKv& source, Backend& backend,
                                          KvCache& cache) {
  SequenceKv copy(&cache.pool(), source.num_layers(), source.num_kv_heads());
  std::vector<int32_t> src_blocks;
  std::vector<int32_t> dst_blocks;
  for (int layer = 0; layer < source.num_layers(); ++layer) {
    for (int head = 0; head < source.num_kv_heads(); ++head) {
      // On failure `copy` returns what it already took when it goes out of scope.
      RETURN_IF_ERROR(copy.Append(layer, head, source.length(layer, head)));
      const auto from = source.blocks(layer, head);
      const auto to = copy.blocks(layer, head);
      src_blocks.insert(src_blocks.end(), from.begin(), from.end());
      dst_blocks.insert(dst_blocks.end(), to.begin(), to.end());
    }
  }
  RETURN_IF_ERROR(backend.CopyBlocks(src_blocks, dst_blocks, &cache.pool_tensor()));
  return copy;
}

}  // namespace zigzag
