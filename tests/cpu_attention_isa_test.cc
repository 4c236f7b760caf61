// The CPU attention kernels one instruction set at a time (scalar, AVX2 + FMA, AVX-512; forced
// through attention_dispatch.h, skipped with a message where this CPU lacks the set), on 1 and 3
// threads, against the float64 reference of attention_scenario.h: long decode caches (3000
// entries) whole and split-K (forced chunk counts and the automatic rule), odd head dims (40, 72)
// that leave partial vectors, GQA ratios 1, 3 and 4, block sizes that put tile and block
// boundaries in different places, multi-tile prefill chunks, KV heads of unequal lengths and the
// window-mass rows.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/attention_dispatch.h"
#include "kernels/cpu/attention_runner.h"
#include "tests/attention_scenario.h"
#include "tests/backend_ops_harness.h"

namespace zigzag::testing {
namespace {

using cpu::attn::AttentionIsa;
using cpu::attn::AttentionIsaName;
using cpu::attn::AttentionOverrides;
using cpu::attn::AttentionRunStats;

struct IsaCase {
  AttentionIsa isa;
  int threads;
};

std::string CaseLabel(const IsaCase& c) {
  return std::string(AttentionIsaName(c.isa)) + "_" + std::to_string(c.threads) + "threads";
}

const std::vector<IsaCase>& IsaCases() {
  static const std::vector<IsaCase> cases = {
      {AttentionIsa::kScalar, 1}, {AttentionIsa::kScalar, 3}, {AttentionIsa::kAvx2, 1},
      {AttentionIsa::kAvx2, 3},   {AttentionIsa::kAvx512, 1}, {AttentionIsa::kAvx512, 3}};
  return cases;
}

std::vector<BackendConfig> IsaConfigs() {
  std::vector<BackendConfig> configs;
  for (const IsaCase& c : IsaCases()) {
    configs.push_back({CaseLabel(c), "cpu", BackendOptions{.num_threads = c.threads}});
  }
  return configs;
}

class CpuAttentionIsaTest : public BackendAttentionTest {
 protected:
  void SetUp() override {
    BackendAttentionTest::SetUp();
    for (const IsaCase& c : IsaCases()) {
      if (CaseLabel(c) == GetParam().label) case_ = c;
    }
    if (!cpu::attn::CpuSupports(case_.isa)) {
      GTEST_SKIP() << "this CPU lacks " << AttentionIsaName(case_.isa)
                   << ": its attention kernels are not tested here";
    }
    Force(0);
  }
  void TearDown() override { EXPECT_TRUE(cpu::attn::SetAttentionOverrides({}).ok()); }

  // This case's ISA, and `splits` chunks per decode stream (0: the automatic rule).
  void Force(int32_t splits) {
    const absl::Status status =
        cpu::attn::SetAttentionOverrides({.isa = case_.isa, .decode_splits = splits});
    ASSERT_TRUE(status.ok()) << status;
  }

  // The stats of the last Attention call on this thread, checked to have used this case's ISA.
  AttentionRunStats Stats() {
    const AttentionRunStats stats = cpu::attn::LastAttentionRunStats();
    EXPECT_STREQ(stats.isa, AttentionIsaName(case_.isa));
    return stats;
  }

  IsaCase case_{AttentionIsa::kScalar, 1};
};

TEST_P(CpuAttentionIsaTest, LongDecodeCachesWholeAndSplitK) {
  uint64_t seed = 7000;
  for (int64_t head_dim : {40, 72, 64}) {
    for (int64_t group : {1, 3, 4}) {
      for (int32_t bs : {16, 5}) {
        const PagedLayout layout{
            .kv_heads = 2, .group = group, .head_dim = head_dim, .block_size = bs};
        // 3000 entries; one entry; a cache ending exactly on a block boundary; 257 (a chunk of
        // 256 and one key); heads of unequal length.
        const Scenario s =
            MakeScenario(layout,
                         {{.kv_len = 3000, .num_queries = 1},
                          {.kv_len = 1, .num_queries = 1},
                          {.kv_len = 7 * bs, .num_queries = 1},
                          {.kv_len = 257, .num_queries = 1, .shorter = {0, 190}}},
                         ++seed, act_, 1.0f / std::sqrt(static_cast<float>(head_dim)), 2.0f);
        const std::string what = "head_dim " + std::to_string(head_dim) + " group " +
                                 std::to_string(group) + " block_size " + std::to_string(bs);
        // Forced: 7 chunks per stream (one-entry streams cannot split); 1: none.
        Force(7);
        RunScenario(s, what + " 7 splits");
        EXPECT_EQ(Stats().split_streams, 3 * layout.kv_heads) << what;
        Force(1);
        RunScenario(s, what + " unsplit");
        EXPECT_EQ(Stats().split_streams, 0) << what;
        Force(0);
        RunScenario(s, what + " automatic splits");
      }
    }
  }
}

// One KV head (no other stream to keep a second thread busy): the automatic rule splits its
// 3000-entry decode over the pool's threads (chunks of max(256, 3000 / (2 threads))), and runs
// it whole on one thread.
TEST_P(CpuAttentionIsaTest, AutomaticSplitKFollowsTheThreadCount) {
  const PagedLayout layout{.kv_heads = 1, .group = 4, .head_dim = 64, .block_size = 16};
  const Scenario s =
      MakeScenario(layout, {{.kv_len = 3000, .num_queries = 1}}, 7100, act_, 0.125f, 2.0f);
  RunScenario(s, "one KV head, 3000 entries");
  const AttentionRunStats stats = Stats();
  if (case_.threads == 1) {
    EXPECT_EQ(stats.split_streams, 0);
    EXPECT_EQ(stats.tile_units, 1);
  } else {
    EXPECT_EQ(stats.split_streams, 1);
    EXPECT_EQ(stats.split_chunks, 6);  // 3000 keys in chunks of 500 for 3 threads
  }
}

TEST_P(CpuAttentionIsaTest, PrefillTilesOddHeadDimsAndWindowMass) {
  uint64_t seed = 7200;
  for (int64_t head_dim : {40, 72}) {
    for (int64_t group : {1, 3, 4}) {
      for (int32_t bs : {5, 16}) {
        const PagedLayout layout{
            .kv_heads = 2, .group = group, .head_dim = head_dim, .block_size = bs};
        const std::vector<SequenceSpec> specs = {
            // a whole prompt over several query tiles, its last 20 queries in the window
            {.kv_len = 150, .num_queries = 150, .window_begin = 130},
            // a chunk of 70 queries after 230 cached entries, no window
            {.kv_len = 300, .num_queries = 70},
            // heads of unequal length, a window from the middle of the chunk
            {.kv_len = 90, .num_queries = 40, .window_begin = 75, .shorter = {0, 33}},
            // a decode whose query adds window mass (the window path, not split-K)
            {.kv_len = 200, .num_queries = 1, .window_begin = 180},
        };
        const Scenario s = MakeScenario(layout, specs, ++seed, act_,
                                        1.0f / std::sqrt(static_cast<float>(head_dim)), 3.0f);
        RunScenario(s, "prefill head_dim " + std::to_string(head_dim) + " group " +
                           std::to_string(group) + " block_size " + std::to_string(bs));
        const AttentionRunStats stats = Stats();
        // Window rows: queries 130..149 of sequence 0; queries 25..39 of sequence 2 (its
        // longest head's indices 50..89 reach 75 at query 25); the decode.
        const int64_t heads = layout.num_heads();
        EXPECT_EQ(stats.window_rows, (20 + 15 + 1) * heads);
        EXPECT_EQ(stats.split_streams, 0);
      }
    }
  }
}

TEST_P(CpuAttentionIsaTest, LargeLogitsDoNotOverflowAnyKernel) {
  const PagedLayout layout{.kv_heads = 1, .group = 3, .head_dim = 40, .block_size = 4};
  const Scenario s = MakeScenario(
      layout,
      {{.kv_len = 70, .num_queries = 70, .window_begin = 60}, {.kv_len = 600, .num_queries = 1}},
      7300, act_, 20.0f);
  Force(5);
  RunScenario(s, "large logits");
}

TEST(CpuAttentionOverridesTest, NegativeSplitCountIsInvalidArgument) {
  const absl::Status status = cpu::attn::SetAttentionOverrides({.decode_splits = -1});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), ::testing::HasSubstr("decode_splits"));
  EXPECT_EQ(cpu::attn::GetAttentionOverrides().decode_splits, 0);
}

INSTANTIATE_TEST_SUITE_P(EachIsa, CpuAttentionIsaTest, ::testing::ValuesIn(IsaConfigs()),
                         BackendConfigLabel);

}  // namespace
}  // namespace zigzag::testing
