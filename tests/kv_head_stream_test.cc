// The head-granular paged KV cache (issue 12): every (sequence, layer, KV head) has its own block
// list and length. Per-head block accounting on tiny pools with exact ids and free counts, KvStats
// from the real per-head block lists, attention after a compaction that kept different counts per
// head against a naive float64 attention over exactly each head's kept positions, and an end-to-end
// ADAPTIVE compression whose freed per-head tail blocks return to the pool.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "core/compress/policy.h"
#include "core/engine/prefill_compression.h"
#include "core/kv/block_pool.h"
#include "core/kv/kv_cache.h"
#include "core/kv/kv_compaction.h"
#include "core/kv/kv_stats.h"
#include "core/kv/sequence_kv.h"
#include "core/model/llama_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/backend_registry.h"
#include "tests/test_support.h"
#include "tests/tiny_engine.h"

namespace zigzag {
namespace {

using ::testing::ElementsAre;

std::vector<int32_t> ToVector(std::span<const int32_t> s) { return {s.begin(), s.end()}; }

// Per-head accounting ----------------------------------------------------------------------------

TEST(KvHeadStreamTest, EveryHeadOfEveryLayerHasItsOwnBlocks) {
  BlockPool pool(16, 4);
  SequenceKv seq(&pool, 2, 3);
  EXPECT_EQ(seq.num_kv_heads(), 3);
  // 5 tokens: ceil(5 / 4) = 2 blocks in each of 2 x 3 streams, handed out stream by stream.
  EXPECT_EQ(seq.BlocksNeededToAppend(5), 12);
  ASSERT_TRUE(seq.AppendAllLayers(5).ok());
  EXPECT_THAT(ToVector(seq.blocks(0, 0)), ElementsAre(0, 1));
  EXPECT_THAT(ToVector(seq.blocks(0, 2)), ElementsAre(4, 5));
  EXPECT_THAT(ToVector(seq.blocks(1, 1)), ElementsAre(8, 9));
  EXPECT_EQ(seq.length(1, 2), 5);
  EXPECT_EQ(seq.blocks_held(), 12);
  EXPECT_EQ(seq.tokens_held(), 30);
  EXPECT_EQ(pool.num_free(), 4);
  // Entry 4 of layer 0's head 1 (blocks 2, 3) is block 3, offset 0.
  EXPECT_EQ(seq.Slot(0, 1, 4), 3 * 4);

  // As after an adaptive split: layer 0's heads keep 4, 1 and 0 of their 5 entries.
  seq.Truncate(0, 0, 4);  // still 1 block of its 2 (block 1 back)
  seq.Truncate(0, 1, 1);  // 1 block (block 3 back)
  seq.Truncate(0, 2, 0);  // no block (4 and 5 back)
  EXPECT_EQ(seq.min_length(0), 0);
  EXPECT_EQ(seq.max_length(0), 4);
  EXPECT_THAT(ToVector(seq.blocks(0, 0)), ElementsAre(0));
  EXPECT_THAT(ToVector(seq.blocks(0, 1)), ElementsAre(2));
  EXPECT_THAT(ToVector(seq.blocks(0, 2)), ElementsAre());
  EXPECT_EQ(seq.blocks_held(), 8);
  EXPECT_EQ(pool.num_free(), 8);

  // One more token in every stream: layer 0's heads at 4, 1, 0 need 1 + 0 + 1 blocks, layer 1's
  // heads at 5 need none. Freed ids are reused lowest first.
  EXPECT_EQ(seq.BlocksNeededToAppend(1), 2);
  ASSERT_TRUE(seq.AppendAllLayers(1).ok());
  EXPECT_THAT(ToVector(seq.blocks(0, 0)), ElementsAre(0, 1));
  EXPECT_THAT(ToVector(seq.blocks(0, 2)), ElementsAre(3));
  EXPECT_EQ(seq.length(0, 2), 1);
  EXPECT_EQ(seq.length(1, 0), 6);

  // Every freed block serves another request: it can take exactly all that are free.
  SequenceKv other(&pool, 1, 1);
  ASSERT_TRUE(other.Append(0, 0, int64_t{pool.num_free()} * 4).ok());
  EXPECT_EQ(pool.num_free(), 0);
  EXPECT_THAT(ToVector(other.blocks(0, 0)), ElementsAre(4, 5, 12, 13, 14, 15));
  other.Release();
  seq.Release();
  EXPECT_EQ(pool.num_free(), 16);
}

TEST(KvHeadStreamTest, KvStatsCountEveryHeadsOwnBlocks) {
  KvLayout layout;
  layout.num_layers = 2;
  layout.num_kv_heads = 2;
  layout.head_dim = 8;
  layout.block_size = 4;
  layout.dtype = DType::kF32;  // 2 x 8 x 4 = 64 bytes per token per head, 256 per block
  BlockPool pool(32, 4);
  SequenceKv seq(&pool, 2, 2);
  ASSERT_TRUE(seq.AppendAllLayers(10).ok());
  // Keep 9, 2 (layer 0) and 5, 5 (layer 1) of the 10-token prompt, then 3 decode entries.
  seq.Truncate(0, 0, 9);
  seq.Truncate(0, 1, 2);
  seq.Truncate(1, 0, 5);
  seq.Truncate(1, 1, 5);
  ASSERT_TRUE(seq.AppendAllLayers(3).ok());
  KvStats stats;
  stats.prompt_tokens = 10;
  stats.appended_tokens = 3;
  FillKvMemoryStats(seq, layout, &stats);
  // Lengths 12, 5, 8, 8: blocks 3 + 2 + 2 + 2 = 9, tokens 33.
  EXPECT_EQ(stats.blocks_held, 9);
  EXPECT_EQ(stats.blocks_held, pool.num_used());
  EXPECT_EQ(stats.retained_kv_bytes, 33 * 64);
  EXPECT_EQ(stats.retained_kv_block_bytes, 9 * 256);
  // Full: 13 tokens in every one of the 4 streams: 4 x ceil(13 / 4) = 16 blocks.
  EXPECT_EQ(stats.full_kv_bytes, 4 * 13 * 64);
  EXPECT_EQ(stats.full_kv_block_bytes, 16 * 256);
  EXPECT_EQ(stats.saved_kv_bytes, 7 * 256);
  EXPECT_DOUBLE_EQ(stats.retained_ratio, 33.0 / 52.0);
}

// Attention after an unequal compaction ----------------------------------------------------------

// K/V of a 13-token prompt in 2 layers x 2 KV heads (head_dim 8, 4 query heads), compacted with a
// hand-made adaptive plan, then one decode token: every query head's output must equal naive
// float64 attention over its KV head's kept positions (original K/V) plus the new token.
TEST(KvHeadStreamTest, AttentionAfterUnequalCompactionReadsExactlyEachHeadsKeptPositions) {
  absl::StatusOr<std::unique_ptr<Backend>> backend_or = CreateBackend("cpu");
  ASSERT_TRUE(backend_or.ok()) << backend_or.status();
  Backend& backend = **backend_or;
  const int64_t layers = 2, kv_heads = 2, heads = 4, group = 2, hd = 8, prompt = 13;
  KvLayout layout{.num_layers = 2, .num_kv_heads = 2, .head_dim = 8, .block_size = 4};
  absl::StatusOr<std::unique_ptr<KvCache>> cache_or = KvCache::Create(&backend, layout, 24);
  ASSERT_TRUE(cache_or.ok()) << cache_or.status();
  KvCache& cache = **cache_or;
  SequenceKv kv(&cache.pool(), 2, 2);
  ASSERT_TRUE(kv.AppendAllLayers(prompt).ok());  // 4 streams x 4 blocks
  EXPECT_EQ(cache.pool().num_free(), 8);

  // Original keys and values [layer][token][head][d], written with one WriteKv per layer.
  std::vector<std::vector<float>> keys, values;
  for (int64_t l = 0; l < layers; ++l) {
    keys.push_back(testing::RandomFloats(prompt * kv_heads * hd, 10 + l));
    values.push_back(testing::RandomFloats(prompt * kv_heads * hd, 20 + l));
    Tensor k = *backend.Allocate(DType::kF32, {prompt, kv_heads, hd});
    Tensor v = *backend.Allocate(DType::kF32, {prompt, kv_heads, hd});
    ASSERT_TRUE(backend.CopyToDevice(keys[l].data(), DType::kF32, &k).ok());
    ASSERT_TRUE(backend.CopyToDevice(values[l].data(), DType::kF32, &v).ok());
    std::vector<int32_t> slots;
    for (int64_t t = 0; t < prompt; ++t) {
      for (int g = 0; g < kv_heads; ++g) slots.push_back(kv.Slot(static_cast<int>(l), g, t));
    }
    ASSERT_TRUE(backend.WriteKv(k, v, slots, &cache.pool_tensor()).ok());
  }

  // Layer 0 keeps 11 and 3 entries, layer 1 keeps 6 and 8 (mean 7 each).
  CompressionPlan plan;
  plan.policy = KvPolicy::kSnapKv;
  plan.head_budgets = HeadBudgets::kAdaptive;
  plan.compressed = true;
  plan.budgets = {7, 7};
  plan.kept = {{{0, 1, 2, 3, 4, 6, 7, 9, 10, 11, 12}, {5, 11, 12}},
               {{0, 3, 8, 10, 11, 12}, {1, 2, 4, 5, 7, 10, 11, 12}}};
  plan.head_counts = {{11, 3}, {6, 8}};
  ASSERT_TRUE(CompactSequenceKv(plan, backend, cache, kv).ok());
  // Blocks now: ceil(11/4) + ceil(3/4) + ceil(6/4) + ceil(8/4) = 3 + 1 + 2 + 2 = 8 of 24.
  EXPECT_EQ(kv.blocks_held(), 8);
  EXPECT_EQ(cache.pool().num_free(), 16);

  ASSERT_TRUE(kv.AppendAllLayers(1).ok());  // heads at 12, 4, 7, 9: 0 + 0 + 0 + 1 new blocks
  EXPECT_EQ(cache.pool().num_free(), 15);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (int l = 0; l < layers; ++l) {
    const std::vector<float> k_new = testing::RandomFloats(kv_heads * hd, 30 + l);
    const std::vector<float> v_new = testing::RandomFloats(kv_heads * hd, 40 + l);
    const std::vector<float> q_new = testing::RandomFloats(heads * hd, 50 + l, -2, 2);
    Tensor k = *backend.Allocate(DType::kF32, {1, kv_heads, hd});
    Tensor v = *backend.Allocate(DType::kF32, {1, kv_heads, hd});
    Tensor q = *backend.Allocate(DType::kF32, {1, heads, hd});
    Tensor out = *backend.Allocate(DType::kF32, {1, heads, hd});
    ASSERT_TRUE(backend.CopyToDevice(k_new.data(), DType::kF32, &k).ok());
    ASSERT_TRUE(backend.CopyToDevice(v_new.data(), DType::kF32, &v).ok());
    ASSERT_TRUE(backend.CopyToDevice(q_new.data(), DType::kF32, &q).ok());
    std::vector<int32_t> lens, offsets = {0}, blocks, slots;
    for (int g = 0; g < kv_heads; ++g) {
      EXPECT_EQ(kv.length(l, g), static_cast<int64_t>(plan.kept[l][g].size()) + 1);
      lens.push_back(static_cast<int32_t>(kv.length(l, g)));
      blocks.insert(blocks.end(), kv.blocks(l, g).begin(), kv.blocks(l, g).end());
      offsets.push_back(static_cast<int32_t>(blocks.size()));
      slots.push_back(kv.Slot(l, g, kv.length(l, g) - 1));
    }
    ASSERT_TRUE(backend.WriteKv(k, v, slots, &cache.pool_tensor()).ok());
    const AttentionSequence seq{.query_begin = 0,
                                .num_queries = 1,
                                .kv_lens = lens,
                                .block_offsets = offsets,
                                .block_ids = blocks};
    ASSERT_TRUE(backend
                    .Attention({.sequences = {&seq, 1}, .num_kv_heads = 2, .scale = scale}, q,
                               cache.pool_tensor(), &out)
                    .ok());
    std::vector<float> got(heads * hd);
    ASSERT_TRUE(backend.CopyToHost(out, got).ok());

    for (int64_t h = 0; h < heads; ++h) {
      const int64_t g = h / group;
      auto key = [&](int64_t j) { return &keys[l][(j * kv_heads + g) * hd]; };
      auto value = [&](int64_t j) { return &values[l][(j * kv_heads + g) * hd]; };
      std::vector<double> logits;
      for (int32_t j : plan.kept[l][g]) {
        double dot = 0;
        for (int64_t e = 0; e < hd; ++e) dot += double{q_new[h * hd + e]} * key(j)[e];
        logits.push_back(dot * scale);
      }
      double dot = 0;
      for (int64_t e = 0; e < hd; ++e) dot += double{q_new[h * hd + e]} * k_new[g * hd + e];
      logits.push_back(dot * scale);
      const double mx = *std::max_element(logits.begin(), logits.end());
      double sum = 0;
      for (double& z : logits) sum += (z = std::exp(z - mx));
      for (int64_t e = 0; e < hd; ++e) {
        double want = logits.back() / sum * v_new[g * hd + e];
        for (size_t a = 0; a < plan.kept[l][g].size(); ++a) {
          want += logits[a] / sum * value(plan.kept[l][g][a])[e];
        }
        EXPECT_NEAR(got[h * hd + e], want, 1e-5) << "layer " << l << " head " << h << " dim " << e;
      }
    }
  }
  kv.Release();
  EXPECT_EQ(cache.pool().num_free(), 24);
}

// End to end: ADAPTIVE compression through the engine ---------------------------------------------

TEST(KvHeadStreamTest, AdaptiveCompressionFreesEachHeadsTailBlocks) {
  RandomCheckpointSpec spec;
  spec.vocab_size = 97;
  spec.hidden_size = 48;
  spec.intermediate_size = 80;
  spec.num_layers = 3;
  spec.num_heads = 4;
  spec.num_kv_heads = 2;
  spec.seed = 33;
  constexpr int32_t kBlockSize = 4, kPoolBlocks = 200;
  absl::StatusOr<testing::TinyEngine> engine_or =
      testing::MakeTinyEngine(spec, kBlockSize, kPoolBlocks, "kv_head_stream");
  ASSERT_TRUE(engine_or.ok()) << engine_or.status();
  testing::TinyEngine& engine = *engine_or;
  KvCache& cache = *engine.cache;

  std::mt19937_64 rng(7);
  std::vector<int32_t> prompt(45);
  for (int32_t& t : prompt) t = static_cast<int32_t>(rng() % spec.vocab_size);
  CompressionParams params;
  params.policy = KvPolicy::kSnapKv;
  params.head_budgets = HeadBudgets::kAdaptive;
  params.alpha = 0.0;  // no per-head floor: the split follows the scores alone
  params.tokens_per_layer = 14;
  params.window = 4;
  params.kernel = 3;

  SequenceKv kv(&cache.pool(), 3, 2);
  ASSERT_TRUE(kv.AppendAllLayers(45).ok());
  // 45 tokens: ceil(45 / 4) = 12 blocks in each of 3 x 2 streams.
  EXPECT_EQ(cache.pool().num_free(), kPoolBlocks - 72);
  auto compression =
      PrefillCompression::Create(params, engine.model->config(), *engine.backend, 45);
  ASSERT_TRUE(compression.ok()) << compression.status();
  ForwardSequence seq{.tokens = prompt,
                      .kv = &kv,
                      .window_mass = compression->window_mass(),
                      .window_begin = compression->window_begin()};
  ASSERT_TRUE(engine.model->Forward({&seq, 1}, &cache).ok());
  KvStats stats;
  absl::StatusOr<CompressionPlan> plan = compression->Apply(*engine.backend, cache, kv, &stats);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_TRUE(plan->compressed);
  ASSERT_FALSE(plan->HeadCountsUniform()) << "the random model should split unevenly";

  // Each stream holds its own count in ceil(count / 4) blocks; the rest went back to the pool.
  int64_t held = 0;
  for (int l = 0; l < 3; ++l) {
    EXPECT_EQ(plan->head_counts[l][0] + plan->head_counts[l][1], 2 * 14) << "layer " << l;
    for (int g = 0; g < 2; ++g) {
      EXPECT_EQ(kv.length(l, g), plan->head_counts[l][g]);
      EXPECT_EQ(stats.prompt_kept_per_head[l][g], plan->head_counts[l][g]);
      const int64_t blocks = (plan->head_counts[l][g] + kBlockSize - 1) / kBlockSize;
      EXPECT_EQ(static_cast<int64_t>(kv.blocks(l, g).size()), blocks);
      held += blocks;
    }
  }
  EXPECT_EQ(cache.pool().num_free(), kPoolBlocks - held);
  // A uniform split would hold 6 x ceil(14 / 4) = 24 blocks; a per-head split of 28 entries per
  // layer into two heads needs at least 7 and at most 8 blocks per layer.
  EXPECT_GE(held, 21);
  EXPECT_LE(held, 24);
  stats.appended_tokens = 0;
  FillKvMemoryStats(kv, cache.layout(), &stats);
  EXPECT_EQ(stats.blocks_held, cache.pool().num_used());
  EXPECT_EQ(stats.retained_kv_block_bytes, cache.bytes_in_use());
  // Tokens held: 3 layers x 28 entries, 2 x 12 (head_dim) x 4 = 96 bytes each.
  EXPECT_EQ(stats.retained_kv_bytes, 3 * 28 * 96);

  // Decode continues from each head's own length.
  const int32_t token = 5;
  ASSERT_TRUE(kv.AppendAllLayers(1).ok());
  ForwardSequence decode{.tokens = {&token, 1}, .first_position = 45, .kv = &kv};
  ASSERT_TRUE(engine.model->Forward({&decode, 1}, &cache).ok());
  kv.Release();
  EXPECT_EQ(cache.pool().num_free(), kPoolBlocks);
}

}  // namespace
}  // namespace zigzag
