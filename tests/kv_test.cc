// Tests of the paged KV bookkeeping: BlockPool ids and counts on tiny pools and SequenceKv
// per-layer block lists against an independent model (KvCache sizing: kv_cache_test.cc).
#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/kv/block_pool.h"
#include "core/kv/kv_cache.h"
#include "core/kv/sequence_kv.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/backend_registry.h"

namespace zigzag {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::vector<int32_t> ToVector(std::span<const int32_t> span) {
  return std::vector<int32_t>(span.begin(), span.end());
}

// BlockPool ------------------------------------------------------------------------------------

TEST(BlockPoolTest, StartsAllFree) {
  BlockPool pool(5, 16);
  EXPECT_EQ(pool.num_blocks(), 5);
  EXPECT_EQ(pool.block_size(), 16);
  EXPECT_EQ(pool.num_free(), 5);
  EXPECT_EQ(pool.num_used(), 0);
}

TEST(BlockPoolTest, AllocatesLowestFreeIdsFirst) {
  BlockPool pool(4, 2);
  auto first = pool.Allocate(2);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_THAT(*first, ElementsAre(0, 1));
  auto second = pool.Allocate(1);
  ASSERT_TRUE(second.ok());
  EXPECT_THAT(*second, ElementsAre(2));
  EXPECT_EQ(pool.num_free(), 1);
  EXPECT_EQ(pool.num_used(), 3);

  pool.Free(1);
  EXPECT_EQ(pool.num_free(), 2);
  auto third = pool.Allocate(2);
  ASSERT_TRUE(third.ok());
  EXPECT_THAT(*third, ElementsAre(1, 3));
  EXPECT_EQ(pool.num_free(), 0);

  pool.Free(std::vector<int32_t>{3, 0});
  auto fourth = pool.Allocate(1);
  ASSERT_TRUE(fourth.ok());
  EXPECT_THAT(*fourth, ElementsAre(0));
}

TEST(BlockPoolTest, AllocateZeroReturnsNothing) {
  BlockPool pool(3, 4);
  auto none = pool.Allocate(0);
  ASSERT_TRUE(none.ok());
  EXPECT_THAT(*none, IsEmpty());
  EXPECT_EQ(pool.num_free(), 3);
  // Also when the pool is exhausted.
  ASSERT_TRUE(pool.Allocate(3).ok());
  auto still_none = pool.Allocate(0);
  ASSERT_TRUE(still_none.ok());
  EXPECT_THAT(*still_none, IsEmpty());
}

TEST(BlockPoolTest, AllOrNothingWithMessage) {
  BlockPool pool(3, 4);
  ASSERT_TRUE(pool.Allocate(2).ok());
  auto too_many = pool.Allocate(2);
  ASSERT_FALSE(too_many.ok());
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(too_many.status().message()),
              HasSubstr("KV block pool: need 2 blocks, only 1 free of 3"));
  EXPECT_EQ(pool.num_free(), 1);  // nothing taken
  auto last = pool.Allocate(1);
  ASSERT_TRUE(last.ok());
  EXPECT_THAT(*last, ElementsAre(2));
}

TEST(BlockPoolTest, EmptyPool) {
  BlockPool pool(0, 8);
  EXPECT_EQ(pool.num_free(), 0);
  EXPECT_TRUE(pool.Allocate(0).ok());
  auto one = pool.Allocate(1);
  ASSERT_FALSE(one.ok());
  EXPECT_THAT(std::string(one.status().message()), HasSubstr("need 1 blocks, only 0 free of 0"));
}

TEST(BlockPoolTest, BlocksForTokens) {
  EXPECT_EQ(BlockPool::BlocksForTokens(0, 16), 0);
  EXPECT_EQ(BlockPool::BlocksForTokens(1, 16), 1);
  EXPECT_EQ(BlockPool::BlocksForTokens(16, 16), 1);
  EXPECT_EQ(BlockPool::BlocksForTokens(17, 16), 2);
  EXPECT_EQ(BlockPool::BlocksForTokens(5, 1), 5);
}

// OpenBLAS starts worker threads when the test binary loads; fork-based death tests are only
// safe then in the "threadsafe" style (re-executes the binary).
class BlockPoolDeathTest : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};
using SequenceKvDeathTest = BlockPoolDeathTest;

TEST_F(BlockPoolDeathTest, FreeingAFreeBlockAborts) {
  BlockPool pool(2, 4);
  EXPECT_DEATH(pool.Free(0), "already free");
}

TEST_F(BlockPoolDeathTest, FreeingTwiceAborts) {
  BlockPool pool(2, 4);
  auto blocks = pool.Allocate(1);
  ASSERT_TRUE(blocks.ok());
  pool.Free(*blocks);
  EXPECT_DEATH(pool.Free(*blocks), "already free");
}

TEST_F(BlockPoolDeathTest, FreeingAnUnknownIdAborts) {
  BlockPool pool(2, 4);
  ASSERT_TRUE(pool.Allocate(2).ok());
  EXPECT_DEATH(pool.Free(2), "outside");
  EXPECT_DEATH(pool.Free(-1), "outside");
}

TEST_F(BlockPoolDeathTest, NegativeCountAborts) {
  BlockPool pool(2, 4);
  EXPECT_DEATH((void)pool.Allocate(-1), "Allocate");
}

// SequenceKv (one KV head per layer here; several heads: kv_head_stream_test.cc)
// -----------------------------------------------------------------------------------

TEST(SequenceKvTest, AppendAllLayersDistributesOneAllocation) {
  BlockPool pool(10, 4);
  SequenceKv seq(&pool, 3, 1);
  EXPECT_EQ(seq.num_layers(), 3);
  EXPECT_EQ(seq.block_size(), 4);
  EXPECT_EQ(seq.BlocksNeededToAppend(5), 6);
  ASSERT_TRUE(seq.AppendAllLayers(5).ok());
  EXPECT_THAT(ToVector(seq.blocks(0, 0)), ElementsAre(0, 1));
  EXPECT_THAT(ToVector(seq.blocks(1, 0)), ElementsAre(2, 3));
  EXPECT_THAT(ToVector(seq.blocks(2, 0)), ElementsAre(4, 5));
  for (int layer = 0; layer < 3; ++layer) EXPECT_EQ(seq.length(layer, 0), 5);
  EXPECT_EQ(seq.blocks_held(), 6);
  EXPECT_EQ(seq.tokens_held(), 15);
  EXPECT_EQ(pool.num_free(), 4);

  // 5 -> 8 fits in the blocks held.
  EXPECT_EQ(seq.BlocksNeededToAppend(3), 0);
  ASSERT_TRUE(seq.AppendAllLayers(3).ok());
  EXPECT_EQ(seq.blocks_held(), 6);
  EXPECT_EQ(pool.num_free(), 4);

  // 8 -> 9 needs one block per layer.
  EXPECT_EQ(seq.BlocksNeededToAppend(1), 3);
  ASSERT_TRUE(seq.AppendAllLayers(1).ok());
  EXPECT_THAT(ToVector(seq.blocks(0, 0)), ElementsAre(0, 1, 6));
  EXPECT_THAT(ToVector(seq.blocks(1, 0)), ElementsAre(2, 3, 7));
  EXPECT_THAT(ToVector(seq.blocks(2, 0)), ElementsAre(4, 5, 8));
  EXPECT_EQ(seq.tokens_held(), 27);
  EXPECT_EQ(pool.num_free(), 1);

  // Appending zero tokens changes nothing.
  ASSERT_TRUE(seq.AppendAllLayers(0).ok());
  EXPECT_EQ(seq.blocks_held(), 9);
}

TEST(SequenceKvTest, AppendAllLayersIsAllOrNothing) {
  BlockPool pool(7, 4);
  SequenceKv seq(&pool, 3, 1);
  ASSERT_TRUE(seq.AppendAllLayers(8).ok());            // 6 blocks, 1 left
  const absl::Status status = seq.AppendAllLayers(1);  // needs 3
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(status.message()), HasSubstr("need 3 blocks, only 1 free of 7"));
  for (int layer = 0; layer < 3; ++layer) {
    EXPECT_EQ(seq.length(layer, 0), 8);
    EXPECT_EQ(seq.blocks(layer, 0).size(), 2u);
  }
  EXPECT_EQ(pool.num_free(), 1);
}

TEST(SequenceKvTest, AppendOneLayerAndDifferentLengths) {
  BlockPool pool(8, 4);
  SequenceKv seq(&pool, 2, 1);
  ASSERT_TRUE(seq.Append(1, 0, 6).ok());
  EXPECT_EQ(seq.length(0, 0), 0);
  EXPECT_EQ(seq.length(1, 0), 6);
  EXPECT_THAT(ToVector(seq.blocks(0, 0)), IsEmpty());
  EXPECT_THAT(ToVector(seq.blocks(1, 0)), ElementsAre(0, 1));
  ASSERT_TRUE(seq.Append(0, 0, 1).ok());
  EXPECT_THAT(ToVector(seq.blocks(0, 0)), ElementsAre(2));
  // Layer 0 at 1 token, layer 1 at 6: growing both by 3 needs 0 + 1 blocks.
  EXPECT_EQ(seq.BlocksNeededToAppend(3), 1);
  ASSERT_TRUE(seq.AppendAllLayers(3).ok());
  EXPECT_THAT(ToVector(seq.blocks(0, 0)), ElementsAre(2));
  EXPECT_THAT(ToVector(seq.blocks(1, 0)), ElementsAre(0, 1, 3));
  EXPECT_EQ(seq.length(0, 0), 4);
  EXPECT_EQ(seq.length(1, 0), 9);

  // Append to one layer beyond the pool fails and changes nothing.
  const absl::Status status = seq.Append(0, 0, 100);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(seq.length(0, 0), 4);
  EXPECT_EQ(pool.num_free(), 4);
}

TEST(SequenceKvTest, TruncateReturnsTailBlocks) {
  BlockPool pool(8, 4);
  SequenceKv seq(&pool, 2, 1);
  ASSERT_TRUE(seq.AppendAllLayers(10).ok());  // 3 blocks per layer: {0,1,2} and {3,4,5}
  seq.Truncate(0, 0, 9);                      // still 3 blocks
  EXPECT_EQ(seq.blocks(0, 0).size(), 3u);
  seq.Truncate(0, 0, 8);  // 2 blocks; block 2 back
  EXPECT_THAT(ToVector(seq.blocks(0, 0)), ElementsAre(0, 1));
  EXPECT_EQ(seq.length(0, 0), 8);
  EXPECT_EQ(pool.num_free(), 3);
  seq.Truncate(1, 0, 1);
  EXPECT_THAT(ToVector(seq.blocks(1, 0)), ElementsAre(3));
  seq.Truncate(1, 0, 0);
  EXPECT_THAT(ToVector(seq.blocks(1, 0)), IsEmpty());
  EXPECT_EQ(seq.length(1, 0), 0);
  EXPECT_EQ(seq.blocks_held(), 2);
  EXPECT_EQ(pool.num_free(), 6);
  // Freed blocks serve the other layer; lowest ids first.
  ASSERT_TRUE(seq.Append(0, 0, 4).ok());
  EXPECT_THAT(ToVector(seq.blocks(0, 0)), ElementsAre(0, 1, 2));
  // Truncating to the current length is a no-op.
  seq.Truncate(0, 0, 12);
  EXPECT_EQ(seq.blocks(0, 0).size(), 3u);
}

TEST(SequenceKvTest, SlotMapsIndexThroughBlockTable) {
  BlockPool pool(8, 4);
  SequenceKv other(&pool, 1, 1);
  SequenceKv seq(&pool, 2, 1);
  ASSERT_TRUE(other.AppendAllLayers(4).ok());  // takes block 0
  ASSERT_TRUE(seq.AppendAllLayers(6).ok());    // layer 0 {1,2}, layer 1 {3,4}
  other.Release();                             // block 0 free again
  ASSERT_TRUE(seq.Append(0, 0, 3).ok());       // layer 0 grows to 9: {1,2,0}
  EXPECT_THAT(ToVector(seq.blocks(0, 0)), ElementsAre(1, 2, 0));
  EXPECT_EQ(seq.Slot(0, 0, 0), 4);   // block 1, offset 0
  EXPECT_EQ(seq.Slot(0, 0, 3), 7);   // block 1, offset 3
  EXPECT_EQ(seq.Slot(0, 0, 4), 8);   // block 2, offset 0
  EXPECT_EQ(seq.Slot(0, 0, 8), 0);   // block 0, offset 0
  EXPECT_EQ(seq.Slot(1, 0, 5), 17);  // block 4, offset 1
}

TEST_F(SequenceKvDeathTest, SlotOutOfRangeAborts) {
  BlockPool pool(4, 4);
  SequenceKv seq(&pool, 2, 1);
  ASSERT_TRUE(seq.AppendAllLayers(5).ok());
  EXPECT_DEATH((void)seq.Slot(0, 0, 5), "cache index 5");
  EXPECT_DEATH((void)seq.Slot(0, 0, -1), "cache index");
  EXPECT_DEATH((void)seq.Slot(2, 0, 0), "layer 2");
}

TEST_F(SequenceKvDeathTest, TruncateBeyondLengthAborts) {
  BlockPool pool(4, 4);
  SequenceKv seq(&pool, 1, 1);
  ASSERT_TRUE(seq.AppendAllLayers(5).ok());
  EXPECT_DEATH(seq.Truncate(0, 0, 6), "truncate");
}

TEST(SequenceKvTest, ReleaseAndDestructionReturnEverything) {
  BlockPool pool(12, 2);
  {
    SequenceKv seq(&pool, 4, 1);
    ASSERT_TRUE(seq.AppendAllLayers(3).ok());
    EXPECT_EQ(pool.num_free(), 4);
    seq.Release();
    EXPECT_EQ(pool.num_free(), 12);
    EXPECT_EQ(seq.blocks_held(), 0);
    EXPECT_EQ(seq.tokens_held(), 0);
    for (int layer = 0; layer < 4; ++layer) EXPECT_EQ(seq.length(layer, 0), 0);
    // Usable again after Release; a second Release is harmless.
    ASSERT_TRUE(seq.AppendAllLayers(1).ok());
    EXPECT_EQ(pool.num_free(), 8);
    seq.Release();
    seq.Release();
    ASSERT_TRUE(seq.AppendAllLayers(4).ok());
    EXPECT_EQ(pool.num_free(), 4);
  }
  EXPECT_EQ(pool.num_free(), 12);
}

TEST(SequenceKvTest, MoveConstructionTransfersOwnership) {
  BlockPool pool(8, 4);
  SequenceKv source(&pool, 2, 1);
  ASSERT_TRUE(source.AppendAllLayers(5).ok());
  {
    SequenceKv moved(std::move(source));
    EXPECT_EQ(moved.blocks_held(), 4);
    EXPECT_EQ(moved.length(1, 0), 5);
    EXPECT_THAT(ToVector(moved.blocks(1, 0)), ElementsAre(2, 3));
    EXPECT_EQ(source.blocks_held(), 0);  // NOLINT(bugprone-use-after-move): documented state
    EXPECT_EQ(source.tokens_held(), 0);
    EXPECT_EQ(pool.num_free(), 4);
  }
  EXPECT_EQ(pool.num_free(), 8);  // the new owner released them
  source.Release();               // the moved-from object frees nothing
  EXPECT_EQ(pool.num_free(), 8);
}

TEST(SequenceKvTest, MoveAssignmentReleasesTheTargetFirst) {
  BlockPool pool(10, 4);
  SequenceKv target(&pool, 1, 1);
  ASSERT_TRUE(target.AppendAllLayers(8).ok());  // {0,1}
  SequenceKv source(&pool, 3, 1);
  ASSERT_TRUE(source.AppendAllLayers(1).ok());  // {2},{3},{4}
  EXPECT_EQ(pool.num_free(), 5);
  target = std::move(source);
  EXPECT_EQ(pool.num_free(), 7);  // target's old blocks came back
  EXPECT_EQ(target.num_layers(), 3);
  EXPECT_THAT(ToVector(target.blocks(2, 0)), ElementsAre(4));
  EXPECT_EQ(source.blocks_held(), 0);  // NOLINT(bugprone-use-after-move)
  {
    SequenceKv sink = std::move(target);
    EXPECT_EQ(sink.blocks_held(), 3);
  }
  EXPECT_EQ(pool.num_free(), 10);
}

TEST(SequenceKvTest, DestroyingAMovedFromSequenceFreesNothing) {
  BlockPool pool(4, 4);
  auto owner = std::make_unique<SequenceKv>(&pool, 1, 1);
  ASSERT_TRUE(owner->AppendAllLayers(4).ok());
  SequenceKv keeper(&pool, 0, 1);
  {
    SequenceKv temporary(std::move(*owner));
    owner.reset();  // destroying the moved-from object must not free block 0
    EXPECT_EQ(pool.num_free(), 3);
    keeper = std::move(temporary);
  }
  EXPECT_EQ(pool.num_free(), 3);
  EXPECT_THAT(ToVector(keeper.blocks(0, 0)), ElementsAre(0));
}

// A model of one sequence written independently of SequenceKv: per-stream lengths and block lists
// (stream i is layer i / heads, KV head i % heads).
struct ModelSequence {
  std::vector<int64_t> lengths;
  std::vector<std::vector<int32_t>> blocks;
};

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Random Append / AppendAllLayers / Truncate / Release on several sequences sharing a pool,
// checked after every step against the model and against global invariants: every block is
// owned by exactly one (sequence, layer, KV head) or free, kept prefixes never move, slots are
// distinct.
TEST(SequenceKvTest, RandomOperationsMatchAModel) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    std::mt19937_64 rng(seed);
    const int32_t block_size = 1 + static_cast<int32_t>(rng() % 5);
    const int32_t num_blocks = 10 + static_cast<int32_t>(rng() % 40);
    BlockPool pool(num_blocks, block_size);
    std::vector<SequenceKv> sequences;
    std::vector<ModelSequence> models;
    for (int s = 0; s < 3; ++s) {
      const int layers = 1 + static_cast<int>(rng() % 4);
      const int heads = 1 + static_cast<int>(rng() % 3);
      sequences.emplace_back(&pool, layers, heads);
      models.push_back({std::vector<int64_t>(layers * heads, 0),
                        std::vector<std::vector<int32_t>>(layers * heads)});
    }
    int failures = 0;
    for (int step = 0; step < 400; ++step) {
      const size_t s = rng() % sequences.size();
      SequenceKv& seq = sequences[s];
      ModelSequence& model = models[s];
      const int heads = seq.num_kv_heads();
      const int layers = seq.num_layers() * heads;  // streams, layer-major
      int64_t used = 0;
      for (const ModelSequence& m : models) {
        for (const auto& b : m.blocks) used += static_cast<int64_t>(b.size());
      }
      const int64_t free_blocks = num_blocks - used;
      const int op = static_cast<int>(rng() % 10);
      if (op < 4) {  // AppendAllLayers
        const int64_t tokens = static_cast<int64_t>(rng() % (3 * block_size + 1));
        int64_t needed = 0;
        for (int l = 0; l < layers; ++l) {
          needed += CeilDiv(model.lengths[l] + tokens, block_size) -
                    static_cast<int64_t>(model.blocks[l].size());
        }
        ASSERT_EQ(seq.BlocksNeededToAppend(tokens), needed);
        const absl::Status status = seq.AppendAllLayers(tokens);
        ASSERT_EQ(status.ok(), needed <= free_blocks) << status;
        if (status.ok()) {
          for (int l = 0; l < layers; ++l) model.lengths[l] += tokens;
        } else {
          ++failures;
          ASSERT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
        }
      } else if (op < 7) {  // Append to one stream
        const int l = static_cast<int>(rng() % layers);
        const int64_t tokens = static_cast<int64_t>(rng() % (2 * block_size + 1));
        const int64_t needed = CeilDiv(model.lengths[l] + tokens, block_size) -
                               static_cast<int64_t>(model.blocks[l].size());
        const absl::Status status = seq.Append(l / heads, l % heads, tokens);
        ASSERT_EQ(status.ok(), needed <= free_blocks) << status;
        if (status.ok()) model.lengths[l] += tokens;
      } else if (op < 9) {  // Truncate one stream
        const int l = static_cast<int>(rng() % layers);
        const int64_t new_length =
            model.lengths[l] == 0 ? 0 : static_cast<int64_t>(rng() % (model.lengths[l] + 1));
        seq.Truncate(l / heads, l % heads, new_length);
        model.lengths[l] = new_length;
      } else {  // Release
        seq.Release();
        std::fill(model.lengths.begin(), model.lengths.end(), 0);
      }

      // Compare with the model: lengths, ceil(len / bs) blocks per stream, kept prefixes intact.
      for (int l = 0; l < layers; ++l) {
        ASSERT_EQ(seq.length(l / heads, l % heads), model.lengths[l]);
        const std::vector<int32_t> actual = ToVector(seq.blocks(l / heads, l % heads));
        const size_t expected_blocks = CeilDiv(model.lengths[l], block_size);
        ASSERT_EQ(actual.size(), expected_blocks) << "seed " << seed << " step " << step;
        const size_t kept = std::min(model.blocks[l].size(), actual.size());
        for (size_t i = 0; i < kept; ++i) ASSERT_EQ(actual[i], model.blocks[l][i]);
        model.blocks[l] = actual;
      }
      // Global accounting.
      std::set<int32_t> owned;
      int64_t held = 0;
      std::set<int32_t> slots;
      for (size_t i = 0; i < sequences.size(); ++i) {
        int64_t seq_blocks = 0;
        int64_t seq_tokens = 0;
        const int h = sequences[i].num_kv_heads();
        for (int l = 0; l < sequences[i].num_layers() * h; ++l) {
          const int layer = l / h, head = l % h;
          for (int32_t block : sequences[i].blocks(layer, head)) {
            ASSERT_GE(block, 0);
            ASSERT_LT(block, num_blocks);
            ASSERT_TRUE(owned.insert(block).second) << "block " << block << " owned twice";
          }
          seq_blocks += CeilDiv(sequences[i].length(layer, head), block_size);
          seq_tokens += sequences[i].length(layer, head);
          for (int64_t index = 0; index < sequences[i].length(layer, head); ++index) {
            const int32_t slot = sequences[i].Slot(layer, head, index);
            ASSERT_EQ(slot / block_size, sequences[i].blocks(layer, head)[index / block_size]);
            ASSERT_EQ(slot % block_size, index % block_size);
            ASSERT_TRUE(slots.insert(slot).second);
          }
        }
        ASSERT_EQ(sequences[i].blocks_held(), seq_blocks);
        ASSERT_EQ(sequences[i].tokens_held(), seq_tokens);
        held += seq_blocks;
      }
      ASSERT_EQ(pool.num_used(), held);
      ASSERT_EQ(pool.num_free() + static_cast<int64_t>(owned.size()), num_blocks);
    }
    EXPECT_GT(failures, 0) << "seed " << seed << ": the pool never ran out; test too easy";
    sequences.clear();
    EXPECT_EQ(pool.num_free(), num_blocks) << "seed " << seed;
  }
}

}  // namespace
}  // namespace zigzag
