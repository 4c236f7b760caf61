// Backend::CompactKv and CopyBlocks on every backend present. CompactKv: kept entries of each KV
// head move to the front of the layer's blocks (per head, its own positions), entries past the
// budget stay untouched. CopyBlocks: whole blocks are duplicated, nothing else changes. Bad
// arguments get clear errors. The reference is a copy of the pool rearranged in the test.
#include <algorithm>
#include <numeric>
#include <random>

#include "tests/backend_ops_harness.h"
#include "tests/test_support.h"

namespace zigzag::testing {
namespace {

class CompactKvTest : public BackendOpsTest {};

// Index of element (block, kv, offset, head, dim) in a pool [num_blocks, 2, bs, heads, hd].
size_t PoolIndex(int64_t block, int kv, int64_t offset, int64_t head, int64_t dim, int64_t bs,
                 int64_t heads, int64_t hd) {
  return static_cast<size_t>((((block * 2 + kv) * bs + offset) * heads + head) * hd + dim);
}

TEST_P(CompactKvTest, MovesEachHeadsKeptEntriesToTheFront) {
  const int64_t num_blocks = 12, bs = 4, heads = 3, hd = 5;
  const int64_t length = 27;  // 7 blocks, the last one partly used
  std::mt19937 rng(3);
  std::vector<int32_t> blocks = {9, 2, 11, 0, 5, 7, 3};
  for (int32_t budget : {0, 1, 4, 9, 27}) {
    const std::vector<float> initial =
        RoundTo(RandomFloats(num_blocks * 2 * bs * heads * hd, budget + 1), act_);
    Tensor pool = Upload(initial, act_, {num_blocks, 2, bs, heads, hd});
    std::vector<int32_t> kept;
    for (int64_t g = 0; g < heads; ++g) {
      std::vector<int32_t> all(length);
      std::iota(all.begin(), all.end(), 0);
      std::shuffle(all.begin(), all.end(), rng);
      std::vector<int32_t> row(all.begin(), all.begin() + budget);
      std::sort(row.begin(), row.end());
      kept.insert(kept.end(), row.begin(), row.end());
    }
    ASSERT_TRUE(backend_->CompactKv(blocks, kept, budget, &pool).ok());
    const std::vector<float> after = Download(pool);

    std::vector<double> expected(initial.begin(), initial.end());
    for (int64_t g = 0; g < heads; ++g) {
      for (int64_t i = 0; i < budget; ++i) {
        const int64_t source = kept[g * budget + i];
        for (int kv = 0; kv < 2; ++kv) {
          for (int64_t e = 0; e < hd; ++e) {
            expected[PoolIndex(blocks[i / bs], kv, i % bs, g, e, bs, heads, hd)] =
                initial[PoolIndex(blocks[source / bs], kv, source % bs, g, e, bs, heads, hd)];
          }
        }
      }
    }
    ExpectClose(after, expected, 0.0, "CompactKv budget " + std::to_string(budget));
  }
}

TEST_P(CompactKvTest, RejectsBadArguments) {
  Tensor pool = Zeros(act_, {4, 2, 4, 2, 8});
  std::vector<int32_t> blocks = {1, 3};
  std::vector<int32_t> two_heads = {0, 5, 1, 7};
  EXPECT_TRUE(backend_->CompactKv(blocks, two_heads, 2, &pool).ok());
  ExpectInvalidArgument(backend_->CompactKv(blocks, {two_heads.data(), 3}, 2, &pool), "CompactKv",
                        "kept has 3 entries");
  std::vector<int32_t> descending = {5, 0, 1, 7};
  ExpectInvalidArgument(backend_->CompactKv(blocks, descending, 2, &pool), "CompactKv",
                        "strictly ascending");
  std::vector<int32_t> beyond = {0, 8, 1, 2};
  ExpectInvalidArgument(backend_->CompactKv(blocks, beyond, 2, &pool), "CompactKv",
                        "outside the layer's 8 entries");
  std::vector<int32_t> bad_blocks = {1, 4};
  ExpectInvalidArgument(backend_->CompactKv(bad_blocks, two_heads, 2, &pool), "CompactKv",
                        "block_ids[1] = 4");
  ExpectInvalidArgument(backend_->CompactKv(blocks, two_heads, 2, nullptr), "CompactKv", "kv_pool");
}

class CopyBlocksTest : public BackendOpsTest {};

TEST_P(CopyBlocksTest, DuplicatesWholeBlocksAndLeavesTheRest) {
  const int64_t num_blocks = 10, bs = 4, heads = 3, hd = 5;
  const int64_t block_elems = 2 * bs * heads * hd;
  const std::vector<float> initial = RoundTo(RandomFloats(num_blocks * block_elems, 7), act_);
  // A run of consecutive ids (one copy on CUDA), then scattered ones.
  const std::vector<int32_t> src = {2, 3, 4, 9, 0};
  const std::vector<int32_t> dst = {5, 6, 7, 1, 8};
  Tensor pool = Upload(initial, act_, {num_blocks, 2, bs, heads, hd});
  ASSERT_TRUE(backend_->CopyBlocks(src, dst, &pool).ok());
  std::vector<double> expected(initial.begin(), initial.end());
  for (size_t i = 0; i < src.size(); ++i) {
    for (int64_t e = 0; e < block_elems; ++e) {
      expected[dst[i] * block_elems + e] = initial[src[i] * block_elems + e];
    }
  }
  ExpectClose(Download(pool), expected, 0.0, "CopyBlocks");
  ASSERT_TRUE(backend_->CopyBlocks({}, {}, &pool).ok());
  ExpectClose(Download(pool), expected, 0.0, "CopyBlocks of nothing");
}

TEST_P(CopyBlocksTest, RejectsBadArguments) {
  Tensor pool = Zeros(act_, {4, 2, 4, 2, 8});
  const std::vector<int32_t> one = {1};
  const std::vector<int32_t> two = {2, 3};
  ExpectInvalidArgument(backend_->CopyBlocks(one, two, &pool), "CopyBlocks",
                        "1 source blocks but 2 destinations");
  const std::vector<int32_t> outside = {4};
  ExpectInvalidArgument(backend_->CopyBlocks(outside, one, &pool), "CopyBlocks",
                        "src_blocks[0] = 4 is outside [0, 4)");
  ExpectInvalidArgument(backend_->CopyBlocks(one, outside, &pool), "CopyBlocks",
                        "dst_blocks[0] = 4 is outside [0, 4)");
  const std::vector<int32_t> src = {0, 1};
  const std::vector<int32_t> overlapping = {2, 0};
  ExpectInvalidArgument(backend_->CopyBlocks(src, overlapping, &pool), "CopyBlocks",
                        "dst_blocks[1] = 0 is also a source");
  const std::vector<int32_t> repeated = {2, 2};
  ExpectInvalidArgument(backend_->CopyBlocks(src, repeated, &pool), "CopyBlocks",
                        "dst_blocks[1] = 2 is repeated");
  ExpectInvalidArgument(backend_->CopyBlocks(one, {two.data(), 1}, nullptr), "CopyBlocks",
                        "kv_pool");
}

INSTANTIATE_TEST_SUITE_P(Backends, CopyBlocksTest, ::testing::ValuesIn(BackendConfigsToTest()),
                         BackendConfigLabel);

INSTANTIATE_TEST_SUITE_P(Backends, CompactKvTest, ::testing::ValuesIn(BackendConfigsToTest()),
                         BackendConfigLabel);

}  // namespace
}  // namespace zigzag::testing
