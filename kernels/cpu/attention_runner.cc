#include "kernels/cpu/attention_runner.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "kernels/cpu/attention_dispatch.h"

namespace zigzag::cpu::attn {
namespace {

// Split-K for single-query streams (decode). A decode step has one unit per (sequence, KV head);
// when those are fewer than the threads, or few and long, the threads idle. Each stream is then
// cut into chunks of about total_keys / (2 * threads) keys (so that every thread gets about two
// items and the dynamic queue below can balance them), but never shorter than kMinSplitKeys: a
// chunk costs a (head_dim + 2)-float partial per head, written and merged. One 124M-model layer
// (4 KV heads) at 4K context on 2 threads: 16384 keys / 4 = 4096 per chunk, so the 4 streams stay
// whole (4 even items for 2 threads); a single KV head (MQA) of 4096 keys becomes 4 chunks of 1024.
constexpr int64_t kMinSplitKeys = 256;
// Below about this many multiply-adds in a phase, waking the pool costs more than it saves.
constexpr int64_t kMinParallelMacs = int64_t{1} << 16;

struct PlannedUnit {
  TileUnit unit;
  int64_t cost = 0;             // multiply-adds / head_dim: rows x keys
  int64_t partial_offset = -1;  // into Plan::partials, for split-K chunks
};

// One split stream: `chunks` partial blocks of [group][head_dim + 2] from partial_offset.
struct SplitMerge {
  int64_t query_row = 0;
  int32_t head0 = 0;
  int32_t chunks = 0;
  int64_t partial_offset = 0;
};

struct WindowQuery {
  int32_t sequence = 0;
  int32_t r = 0;
};

// The calling thread's plan, reused by its next call (the vectors keep their capacity).
struct Plan {
  std::vector<PlannedUnit> units;
  std::vector<SplitMerge> merges;
  std::vector<WindowQuery> window;
  std::vector<float> partials;
  AttentionRunStats stats;
};

Plan& CallerPlan() {
  thread_local Plan plan;
  return plan;
}

// Per-thread kernel scratch: the pool's workers live as long as the backend, so after the first
// call of a given size no call allocates.
struct Scratch {
  std::vector<float> floats;
  std::vector<int32_t> ints;
};

Scratch& ThreadScratch(int64_t floats, int64_t ints) {
  thread_local Scratch scratch;
  if (static_cast<int64_t>(scratch.floats.size()) < floats) scratch.floats.resize(floats);
  if (static_cast<int64_t>(scratch.ints.size()) < ints) scratch.ints.resize(ints);
  return scratch;
}

// The first query of `seq` that adds window mass in some head (num_queries if none): query r's
// cache index in the longest stream is longest - num_queries + r. Queries from there on take the
// window path; their index only grows with r.
int32_t FirstWindowQuery(const StreamSequence& seq) {
  if (seq.window_mass == nullptr) return seq.num_queries;
  int32_t longest = 0;
  for (const KvStream& stream : seq.streams) longest = std::max(longest, stream.kv_len);
  const int64_t first = static_cast<int64_t>(seq.window_begin) - (longest - seq.num_queries);
  return static_cast<int32_t>(std::clamp<int64_t>(first, 0, seq.num_queries));
}

void BuildPlan(const PagedAttentionArgs& a, int num_threads, int32_t forced_splits, Plan& plan) {
  plan.units.clear();
  plan.merges.clear();
  plan.window.clear();
  plan.stats = AttentionRunStats{};
  const int32_t group = static_cast<int32_t>(a.num_heads / a.kv_heads);
  const int64_t d = a.pool.head_dim;
  // Rows per query tile: enough to fill the score vectors, few enough that the tile's q, scores
  // and accumulators stay in L1 (64 rows of head_dim 64: 16 KiB each of q and acc).
  const int64_t row_target = d <= 64 ? 64 : 32;
  const int32_t tile_queries = static_cast<int32_t>(std::max<int64_t>(1, row_target / group));

  int64_t decode_keys = 0;
  for (const StreamSequence& seq : a.sequences) {
    if (seq.num_queries != 1 || FirstWindowQuery(seq) != 1) continue;
    for (const KvStream& stream : seq.streams) decode_keys += stream.kv_len;
  }
  const int64_t split_keys =
      std::max(kMinSplitKeys, (decode_keys + 2 * num_threads - 1) / (2 * num_threads));

  int64_t partial_floats = 0;
  for (size_t s = 0; s < a.sequences.size(); ++s) {
    const StreamSequence& seq = a.sequences[s];
    const int32_t nq = seq.num_queries;
    if (nq == 0) continue;
    const int32_t w0 = FirstWindowQuery(seq);
    for (int32_t r = w0; r < nq; ++r) plan.window.push_back({static_cast<int32_t>(s), r});
    if (w0 == 0) continue;
    for (int64_t g = 0; g < a.kv_heads; ++g) {
      const KvStream& stream = seq.streams[g];
      TileUnit base;
      base.q = a.q;
      base.out = a.out;
      base.num_heads = a.num_heads;
      base.head0 = static_cast<int32_t>(g * group);
      base.group = group;
      base.blocks = stream.block_ids.data();
      base.scale = a.scale;
      const int32_t first_index = stream.kv_len - nq;  // cache index of query 0
      if (nq == 1) {
        // A decode stream (w0 == 1 here): whole, or split-K.
        const int64_t kv_len = stream.kv_len;
        int64_t count = forced_splits > 0
                            ? std::min<int64_t>(forced_splits, kv_len)
                            : (num_threads > 1 ? (kv_len + split_keys - 1) / split_keys : 1);
        base.query_row = seq.query_begin;
        base.num_queries = 1;
        base.first_index = first_index;
        if (count <= 1) {
          base.key_begin = 0;
          base.key_end = stream.kv_len;
          plan.units.push_back({base, kv_len * group, -1});
          continue;
        }
        const int64_t keys_each = (kv_len + count - 1) / count;  // every chunk non-empty
        count = (kv_len + keys_each - 1) / keys_each;
        plan.merges.push_back(
            {seq.query_begin, base.head0, static_cast<int32_t>(count), partial_floats});
        for (int64_t begin = 0; begin < kv_len; begin += keys_each) {
          TileUnit chunk = base;
          chunk.key_begin = static_cast<int32_t>(begin);
          chunk.key_end = static_cast<int32_t>(std::min(kv_len, begin + keys_each));
          plan.units.push_back(
              {chunk, (chunk.key_end - chunk.key_begin) * int64_t{group}, partial_floats});
          partial_floats += group * (d + 2);
        }
        ++plan.stats.split_streams;
        plan.stats.split_chunks += count;
        continue;
      }
      for (int32_t qb = 0; qb < w0; qb += tile_queries) {
        TileUnit tile = base;
        tile.query_row = seq.query_begin + qb;
        tile.num_queries = std::min(tile_queries, w0 - qb);
        tile.first_index = first_index + qb;
        tile.key_begin = 0;
        tile.key_end = tile.first_index + tile.num_queries;
        plan.units.push_back({tile, tile.rows() * tile.key_end, -1});
      }
    }
  }
  if (static_cast<int64_t>(plan.partials.size()) < partial_floats) {
    plan.partials.resize(partial_floats);
  }
  for (PlannedUnit& planned : plan.units) {
    if (planned.partial_offset >= 0) {
      planned.unit.partial = plan.partials.data() + planned.partial_offset;
    }
  }
  // Longest first: the dynamic queue then ends on short items, which balances the threads.
  std::sort(plan.units.begin(), plan.units.end(),
            [](const PlannedUnit& x, const PlannedUnit& y) { return x.cost > y.cost; });
  plan.stats.tile_units = static_cast<int64_t>(plan.units.size()) - plan.stats.split_chunks;
  plan.stats.window_rows = static_cast<int64_t>(plan.window.size()) * a.num_heads;
}

// Shared by the threads of one phase; captured by pointer so that the std::function that
// ParallelFor takes stores it inline (no allocation).
struct PhaseContext {
  const PagedAttentionArgs* args = nullptr;
  const Plan* plan = nullptr;
  const AttentionKernels* kernels = nullptr;
  std::atomic<int64_t> next{0};
  int64_t scratch_floats = 0;
  int64_t scratch_ints = 0;
};

void RunUnits(PhaseContext* ctx) {
  Scratch& scratch = ThreadScratch(ctx->scratch_floats, ctx->scratch_ints);
  const std::vector<PlannedUnit>& units = ctx->plan->units;
  const int64_t n = static_cast<int64_t>(units.size());
  for (int64_t i = ctx->next.fetch_add(1, std::memory_order_relaxed); i < n;
       i = ctx->next.fetch_add(1, std::memory_order_relaxed)) {
    ctx->kernels->tile_unit(units[i].unit, ctx->args->pool, scratch.floats.data(),
                            scratch.ints.data());
  }
}

// Query heads [h_begin, h_end) of every window query (each head's mass row has one writer).
void RunWindowHeads(const PhaseContext* ctx, int64_t h_begin, int64_t h_end) {
  const PagedAttentionArgs& a = *ctx->args;
  Scratch& scratch = ThreadScratch(ctx->scratch_floats, 0);
  const int64_t d = a.pool.head_dim;
  const int64_t group = a.num_heads / a.kv_heads;
  for (int64_t h = h_begin; h < h_end; ++h) {
    for (const WindowQuery& wq : ctx->plan->window) {
      const StreamSequence& seq = a.sequences[wq.sequence];
      const KvStream& stream = seq.streams[h / group];
      const int64_t visible = stream.kv_len - seq.num_queries + wq.r + 1;
      const int64_t offset = ((seq.query_begin + wq.r) * a.num_heads + h) * d;
      float* mass_row =
          visible - 1 >= seq.window_begin ? seq.window_mass + h * seq.window_mass_stride : nullptr;
      ctx->kernels->window_row(a.pool, stream.block_ids.data(), visible, a.scale, a.q + offset,
                               a.out + offset, mass_row, scratch.floats.data());
    }
  }
}

// out = sum_c acc_c e^(m_c - M) / sum_c l_c e^(m_c - M), M = max_c m_c: the combine of
// decode_attention_kernels.cu. Exact, because each chunk's state is scaled by its own e^(-m_c) and
// the merge rescales all of them to the common e^(-M). A chunk that saw no key (m = -inf; none
// does here, every chunk is non-empty) would be skipped rather than produce -inf - -inf.
void MergeSplits(const PagedAttentionArgs& a, const Plan& plan) {
  const int64_t d = a.pool.head_dim;
  const int64_t group = a.num_heads / a.kv_heads;
  const int64_t state = d + 2;
  for (const SplitMerge& merge : plan.merges) {
    for (int64_t hg = 0; hg < group; ++hg) {
      const float* first = plan.partials.data() + merge.partial_offset + hg * state;
      const int64_t chunk_stride = group * state;
      float max_logit = -INFINITY;
      for (int32_t c = 0; c < merge.chunks; ++c) {
        max_logit = std::max(max_logit, first[c * chunk_stride]);
      }
      float* dst = a.out + (merge.query_row * a.num_heads + merge.head0 + hg) * d;
      std::fill(dst, dst + d, 0.0f);
      float total = 0.0f;
      for (int32_t c = 0; c < merge.chunks; ++c) {
        const float* chunk = first + c * chunk_stride;
        if (chunk[0] == -INFINITY) continue;
        const float factor = std::exp(chunk[0] - max_logit);
        total += chunk[1] * factor;
        for (int64_t t = 0; t < d; ++t) dst[t] += chunk[2 + t] * factor;
      }
      for (int64_t t = 0; t < d; ++t) dst[t] /= total;
    }
  }
}

}  // namespace

void RunPagedAttention(ThreadPool& pool, const PagedAttentionArgs& args) {
  Plan& plan = CallerPlan();
  if (args.num_heads == 0) {  // no query head: nothing to compute (and no group to divide by)
    plan.stats = AttentionRunStats{.isa = ActiveKernels().name};
    return;
  }
  const AttentionOverrides overrides = GetAttentionOverrides();
  const int num_threads = std::max(1, pool.num_threads());
  BuildPlan(args, num_threads, overrides.decode_splits, plan);
  const AttentionKernels& kernels = ActiveKernels();
  plan.stats.isa = kernels.name;
  const int64_t d = args.pool.head_dim;

  PhaseContext ctx;
  ctx.args = &args;
  ctx.plan = &plan;
  ctx.kernels = &kernels;
  if (!plan.units.empty()) {
    int64_t max_rows = 0;
    int64_t work = 0;
    for (const PlannedUnit& planned : plan.units) {
      max_rows = std::max(max_rows, planned.unit.rows());
      work += planned.cost;
    }
    ctx.scratch_floats = TileScratchFloats(max_rows, d);
    ctx.scratch_ints = PadToLanes(max_rows);
    const int64_t n = static_cast<int64_t>(plan.units.size());
    const int64_t workers = work * d >= kMinParallelMacs ? std::min<int64_t>(n, num_threads) : 1;
    PhaseContext* shared = &ctx;
    pool.ParallelFor(workers, [shared](int64_t, int64_t) { RunUnits(shared); });
    MergeSplits(args, plan);
  }

  if (!plan.window.empty()) {
    int64_t longest = 0;
    int64_t keys_per_head = 0;
    for (const WindowQuery& wq : plan.window) {
      for (const KvStream& stream : args.sequences[wq.sequence].streams) {
        longest = std::max<int64_t>(longest, stream.kv_len);
      }
      keys_per_head += longest;
    }
    ctx.scratch_floats = WindowScratchFloats(longest, d);
    const int64_t min_heads =
        std::max<int64_t>(1, kMinParallelMacs / std::max<int64_t>(1, keys_per_head * d));
    const PhaseContext* shared = &ctx;
    pool.ParallelFor(
        args.num_heads,
        [shared](int64_t begin, int64_t end) { RunWindowHeads(shared, begin, end); }, min_heads);
  }
}

AttentionRunStats LastAttentionRunStats() { return CallerPlan().stats; }

}  // namespace zigzag::cpu::attn
