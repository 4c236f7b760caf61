// Causal paged attention on the CPU over per-(sequence, KV head) streams: plans the work (query
// tiles of every (sequence, KV head) with its whole GQA group, split-K chunks for single-query
// streams, the rows that add window mass), runs it on the backend's thread pool with the
// kernels attention_dispatch.h picks, and merges split-K partials. Inputs are already validated
// (cpu_attention.cc); this file checks nothing and knows nothing of how block tables are stored
// upstream: each stream is just a length and a span of block ids.
#pragma once

#include <cstdint>
#include <span>

#include "kernels/cpu/attention_kernels.h"
#include "kernels/cpu/thread_pool.h"

namespace zigzag::cpu::attn {

// One (sequence, KV head) stream: kv_len entries in block_ids[0 .. ceil(kv_len / block_size)).
struct KvStream {
  int32_t kv_len = 0;
  std::span<const int32_t> block_ids;
};

// One sequence: its queries are rows [query_begin, query_begin + num_queries) of q and the newest
// num_queries entries of every one of its streams; query r of a head reading stream g sees
// entries [0, streams[g].kv_len - num_queries + r]. window_mass (optional, [num_heads,
// >= the longest kv_len] with row stride window_mass_stride): every query whose cache index in
// its head's stream is >= window_begin adds its probabilities into window_mass[h, j].
struct StreamSequence {
  int32_t query_begin = 0;
  int32_t num_queries = 0;
  std::span<const KvStream> streams;  // [kv_heads]
  float* window_mass = nullptr;
  int64_t window_mass_stride = 0;
  int32_t window_begin = 0;
};

struct PagedAttentionArgs {
  std::span<const StreamSequence> sequences;
  int64_t num_heads = 0;  // query heads; a multiple of kv_heads
  int64_t kv_heads = 0;
  PoolRef pool;
  const float* q = nullptr;  // [N, num_heads, head_dim]
  float* out = nullptr;      // [N, num_heads, head_dim]; may alias q
  float scale = 1.0f;
};

// What the calling thread's last RunPagedAttention did (for tests and benchmarks).
struct AttentionRunStats {
  const char* isa = "";
  int64_t tile_units = 0;     // units run whole (query tiles and unsplit decode streams)
  int64_t split_streams = 0;  // decode streams cut into chunks and merged
  int64_t split_chunks = 0;
  int64_t window_rows = 0;  // (query, head) rows that took the window-mass path
};

// Runs attention as described above. No allocation once the calling thread and the pool's
// workers have seen a call of at least this size: plans and scratch are per thread and reused.
void RunPagedAttention(ThreadPool& pool, const PagedAttentionArgs& args);

AttentionRunStats LastAttentionRunStats();

}  // namespace zigzag::cpu::attn
