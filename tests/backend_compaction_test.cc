// Backend::CompactKv and CopyBlocks on every backend present, over a pool paged per KV head.
// CompactKv: kept entries of each stream move to the front of its own blocks, entries past the
// stream's count stay untouched. CopyBlocks: whole blocks are duplicated, nothing else changes. Bad
// arguments get clear errors. The reference is a copy of the pool rearranged in the test.
#include <algorithm>
#include <numeric>
#include <random>

#include "tests/backend_ops_harness.h"
#include "tests/test_support.h"

namespace zigzag::testing {
namespace {

class CompactKvTest : public BackendOpsTest {};

// Index of element (block, kv, offset, dim) in a pool [num_blocks, 2, bs, hd].
size_t PoolIndex(int64_t block, int kv, int64_t offset, int64_t dim, int64_t bs, int64_t hd) {
  return static_cast<size_t>(((block * 2 + kv) * bs + offset) * hd + dim);
}

// Three streams (e.g. the KV heads of one layer) of 27, 10 and 5 entries in their own shuffled
// blocks, compacted in one call to different counts each; entries past a stream's count and
// blocks of no stream stay as they were.
TEST_P(CompactKvTest, MovesEachStreamsKeptEntriesToTheFront) {
  const int64_t num_blocks = 16, bs = 4, hd = 5;
  const std::vector<int64_t> lengths = {27, 10, 5};
  const std::vector<std::vector<int32_t>> blocks = {{9, 2, 11, 0, 5, 7, 3}, {14, 1, 8}, {12, 6}};
  std::mt19937 rng(3);
  for (const std::vector<int64_t>& counts :
       std::vector<std::vector<int64_t>>{{0, 0, 0}, {1, 10, 0}, {4, 3, 5}, {9, 1, 2}, {27, 0, 5}}) {
    const std::vector<float> initial =
        RoundTo(RandomFloats(num_blocks * 2 * bs * hd, counts[0] + 1), act_);
    Tensor pool = Upload(initial, act_, {num_blocks, 2, bs, hd});
    std::vector<std::vector<int32_t>> kept(lengths.size());
    std::vector<KvStreamCompaction> streams;
    for (size_t s = 0; s < lengths.size(); ++s) {
      std::vector<int32_t> all(lengths[s]);
      std::iota(all.begin(), all.end(), 0);
      std::shuffle(all.begin(), all.end(), rng);
      kept[s].assign(all.begin(), all.begin() + counts[s]);
      std::sort(kept[s].begin(), kept[s].end());
      streams.push_back({.block_ids = blocks[s], .kept = kept[s]});
    }
    ASSERT_TRUE(backend_->CompactKv(streams, &pool).ok());
    const std::vector<float> after = Download(pool);

    std::vector<double> expected(initial.begin(), initial.end());
    for (size_t s = 0; s < lengths.size(); ++s) {
      for (size_t i = 0; i < kept[s].size(); ++i) {
        const int64_t source = kept[s][i];
        for (int kv = 0; kv < 2; ++kv) {
          for (int64_t e = 0; e < hd; ++e) {
            expected[PoolIndex(blocks[s][i / bs], kv, i % bs, e, bs, hd)] =
                initial[PoolIndex(blocks[s][source / bs], kv, source % bs, e, bs, hd)];
          }
        }
      }
    }
    ExpectClose(after, expected, 0.0,
                "CompactKv counts " + std::to_string(counts[0]) + "," + std::to_string(counts[1]) +
                    "," + std::to_string(counts[2]));
  }
}

TEST_P(CompactKvTest, RejectsBadArguments) {
  Tensor pool = Zeros(act_, {4, 2, 4, 8});
  const std::vector<int32_t> blocks = {1, 3};
  const std::vector<int32_t> other_blocks = {0};
  const std::vector<int32_t> kept = {0, 5};
  auto one = [&](std::span<const int32_t> b, std::span<const int32_t> k) {
    const KvStreamCompaction stream{.block_ids = b, .kept = k};
    return backend_->CompactKv({&stream, 1}, &pool);
  };
  EXPECT_TRUE(one(blocks, kept).ok());
  const std::vector<int32_t> descending = {5, 0};
  ExpectInvalidArgument(one(blocks, descending), "CompactKv", "streams[0].kept must be strictly");
  const std::vector<int32_t> beyond = {0, 8};
  ExpectInvalidArgument(one(blocks, beyond), "CompactKv",
                        "streams[0].kept[1] = 8 is outside the stream's 8 entries");
  const std::vector<int32_t> bad_blocks = {1, 4};
  ExpectInvalidArgument(one(bad_blocks, kept), "CompactKv", "streams[0].block_ids[1] = 4");
  // Two streams sharing block 3 could not be compacted independently.
  const std::vector<int32_t> sharing = {3};
  const std::vector<int32_t> first = {0};
  const KvStreamCompaction shared[] = {{.block_ids = blocks, .kept = kept},
                                       {.block_ids = sharing, .kept = first}};
  ExpectInvalidArgument(backend_->CompactKv(shared, &pool), "CompactKv",
                        "streams[1].block_ids[0] = 3 already belongs to a stream");
  const KvStreamCompaction fine[] = {{.block_ids = blocks, .kept = kept},
                                     {.block_ids = other_blocks, .kept = first}};
  EXPECT_TRUE(backend_->CompactKv(fine, &pool).ok());
  ExpectInvalidArgument(backend_->CompactKv(fine, nullptr), "CompactKv", "kv_pool");
  Tensor old_layout = Zeros(act_, {4, 2, 4, 2, 8});
  ExpectInvalidArgument(backend_->CompactKv(fine, &old_layout), "CompactKv", "kv_pool");
}

class CopyBlocksTest : public BackendOpsTest {};

TEST_P(CopyBlocksTest, DuplicatesWholeBlocksAndLeavesTheRest) {
  const int64_t num_blocks = 10, bs = 4, hd = 5;
  const int64_t block_elems = 2 * bs * hd;
  const std::vector<float> initial = RoundTo(RandomFloats(num_blocks * block_elems, 7), act_);
  // A run of consecutive ids (one copy on CUDA), then scattered ones.
  const std::vector<int32_t> src = {2, 3, 4, 9, 0};
  const std::vector<int32_t> dst = {5, 6, 7, 1, 8};
  Tensor pool = Upload(initial, act_, {num_blocks, 2, bs, hd});
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
  Tensor pool = Zeros(act_, {4, 2, 4, 8});
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
