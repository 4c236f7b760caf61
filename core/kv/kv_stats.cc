#include "core/kv/kv_stats.h"

namespace zigzag {

void FillKvMemoryStats(const SequenceKv& kv, const KvLayout& layout, KvStats* stats) {
  const int64_t layers = kv.num_layers();
  const int64_t full_tokens = stats->prompt_tokens + stats->appended_tokens;
  stats->full_kv_bytes = layers * full_tokens * layout.bytes_per_token_layer();
  // tokens_held() counts a token once per (layer, KV head) stream that holds it.
  stats->retained_kv_bytes = kv.tokens_held() * layout.bytes_per_token_head();
  stats->full_kv_block_bytes = layers * kv.num_kv_heads() *
                               BlockPool::BlocksForTokens(full_tokens, layout.block_size) *
                               layout.bytes_per_block();
  stats->blocks_held = kv.blocks_held();
  stats->retained_kv_block_bytes = stats->blocks_held * layout.bytes_per_block();
  stats->saved_kv_bytes = stats->full_kv_block_bytes - stats->retained_kv_block_bytes;
  stats->retained_ratio = stats->full_kv_bytes > 0 ? static_cast<double>(stats->retained_kv_bytes) /
                                                         static_cast<double>(stats->full_kv_bytes)
                                                   : 1.0;
}

}  // namespace zigzag
