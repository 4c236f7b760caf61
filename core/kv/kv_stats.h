// KvStats: what one sequence's KV cache holds next to what a full (uncompressed) cache would
// hold at the same point, in tokens, bytes and whole blocks. Computed from the SequenceKv's own
// block lists, so the figures are the memory actually held. Knows nothing of policies' math.
#pragma once

#include <cstdint>
#include <vector>

#include "core/compress/compression_params.h"
#include "core/kv/kv_cache.h"
#include "core/kv/sequence_kv.h"

namespace zigzag {

struct KvStats {
  CompressionParams params;    // policy and parameters as used
  int64_t average_budget = 0;  // B_avg (T when not compressed)
  int32_t window = 0;          // w_eff
  bool compressed = false;
  int64_t prompt_tokens = 0;                   // T
  std::vector<int64_t> prompt_kept_per_layer;  // tokens of the prompt each layer kept (per head,
                                               // mean over KV heads under an adaptive split)
  // [L][G] tokens of the prompt each (layer, KV head) kept; empty until the prompt is compressed
  // (or found not to need it).
  std::vector<std::vector<int64_t>> prompt_kept_per_head;
  int64_t appended_tokens = 0;          // entries written after the prompt (decode)
  int64_t full_kv_bytes = 0;            // L * (T + appended) tokens
  int64_t retained_kv_bytes = 0;        // sum over (layer, KV head) of its length
  int64_t full_kv_block_bytes = 0;      // L * G * ceil((T + appended) / block) blocks
  int64_t retained_kv_block_bytes = 0;  // blocks held x bytes per block
  int64_t saved_kv_bytes = 0;           // full_kv_block_bytes - retained_kv_block_bytes
  double retained_ratio = 1.0;          // retained_kv_bytes / full_kv_bytes
  int64_t blocks_held = 0;              // one block holds one KV head of block_size tokens
};

// Fills the byte and block figures of `stats` from `kv` (its current lengths and blocks);
// stats.prompt_tokens and appended_tokens must be set by the caller.
void FillKvMemoryStats(const SequenceKv& kv, const KvLayout& layout, KvStats* stats);

}  // namespace zigzag
