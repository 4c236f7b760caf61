// The CPU attention kernels one instruction set at a time (scalar, AVX2 + FMA, AVX-512; forced
// through attention_dispatch.h, skipped with a message where this CPU lacks the set), on 1 and 3
// threads, against the float64 reference of attention_scenario.h: long decode caches (3000
// entries) whole and split-K (forced chunk counts and the automatic rule), odd head dims (40, 72)
// that leave partial vectors, GQA ratios 1, 3 and 4, block sizes that put tile and block
// boundaries in different places, multi-tile prefill chunks, KV heads of unequal lengths and the
// window-mass rows (also against the previous kernel's float32 loop: bit for bit on the scalar
// kernel).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
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

// The previous CPU kernel's per-row loop (float32: logits = scale * sequential dot, running max,
// exp and sequential sum, p = e * (1 / sum), out += p v, mass += p), kept here as the definition
// of "the window mass compression has always seen". The scalar kernel must reproduce it bit for
// bit; the SIMD kernels differ only in the summation order of the dot products and the sum.
void PreviousWindowRow(const Scenario& s, int64_t g, int64_t visible, const float* q, float* out,
                       float* mass) {
  const int64_t d = s.layout.head_dim, kv_heads = s.layout.kv_heads;
  std::vector<float> logits(visible);
  float max_logit = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < visible; ++j) {
    const float* key = &s.keys[0][(j * kv_heads + g) * d];
    float dot = 0.0f;
    for (int64_t i = 0; i < d; ++i) dot += q[i] * key[i];
    logits[j] = s.scale * dot;
    max_logit = std::max(max_logit, logits[j]);
  }
  float sum = 0.0f;
  for (int64_t j = 0; j < visible; ++j) {
    logits[j] = std::exp(logits[j] - max_logit);
    sum += logits[j];
  }
  const float inv_sum = 1.0f / sum;
  std::fill(out, out + d, 0.0f);
  for (int64_t j = 0; j < visible; ++j) {
    const float p = logits[j] * inv_sum;
    const float* value = &s.values[0][(j * kv_heads + g) * d];
    for (int64_t i = 0; i < d; ++i) out[i] += p * value[i];
    mass[j] += p;
  }
}

TEST_P(CpuAttentionIsaTest, WindowMassIsThePreviousKernelsOnEveryIsa) {
  const PagedLayout layout{.kv_heads = 2, .group = 3, .head_dim = 40, .block_size = 5};
  const int32_t n = 100, window_begin = 80;
  const Scenario s = MakeScenario(layout, {{.kv_len = n, .num_queries = n}}, 7400, act_,
                                  1.0f / std::sqrt(40.0f), 3.0f);
  const int64_t heads = layout.num_heads(), d = layout.head_dim, width = s.MassWidth(0);
  std::vector<float> expected_mass(heads * width, 0.0f);
  std::vector<float> expected_out(n * heads * d, 0.0f);
  for (int64_t h = 0; h < heads; ++h) {
    for (int32_t r = window_begin; r < n; ++r) {
      const int64_t offset = (r * heads + h) * d;
      PreviousWindowRow(s, h / layout.group, r + 1, &s.q[offset], &expected_out[offset],
                        &expected_mass[h * width]);
    }
  }

  Tensor pool = GarbagePool(s);
  WriteTokens(s, 0, n, &pool);
  Tensor q = Upload(s.q, act_, {n, heads, d});
  Tensor out = Zeros(act_, {n, heads, d});
  Tensor mass = Zeros(DType::kF32, {heads, width});
  const SequenceTables tables = Tables(s, 0);
  const AttentionSequence seq{.query_begin = 0,
                              .num_queries = n,
                              .kv_lens = tables.kv_lens,
                              .block_offsets = tables.block_offsets,
                              .block_ids = tables.block_ids,
                              .window_mass = &mass,
                              .window_begin = window_begin};
  const absl::Status status = backend_->Attention(
      AttentionBatch{.sequences = {&seq, 1}, .num_kv_heads = 2, .scale = s.scale}, q, pool, &out);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(Stats().window_rows, (n - window_begin) * heads);
  const std::vector<float> got_mass = Download(mass);
  const std::vector<float> got_out = Download(out);
  // Bit for bit on the scalar kernel; to float32 summation-order differences on the SIMD ones.
  const double tol = case_.isa == AttentionIsa::kScalar ? 0.0 : 2e-6;
  int mismatches = 0;
  for (int64_t i = 0; i < heads * width; ++i) {
    const double bound = tol * std::fabs(expected_mass[i]);
    if (!(std::fabs(double{got_mass[i]} - expected_mass[i]) <= bound) && ++mismatches <= 5) {
      ADD_FAILURE() << "window_mass[" << i / width << ", " << i % width << "] = " << got_mass[i]
                    << ", the previous kernel gave " << expected_mass[i];
    }
  }
  for (int64_t i = window_begin * heads * d; i < n * heads * d; ++i) {
    const double bound = tol * (1.0 + std::fabs(expected_out[i]));
    if (!(std::fabs(double{got_out[i]} - expected_out[i]) <= bound) && ++mismatches <= 5) {
      ADD_FAILURE() << "out element " << i << " (a window row) = " << got_out[i]
                    << ", the previous kernel gave " << expected_out[i];
    }
  }
  EXPECT_EQ(mismatches, 0);
}

// q [N, 0, head_dim]: 0 query heads (so 0 per KV head) is valid and computes nothing.
TEST_P(CpuAttentionIsaTest, ZeroQueryHeadsComputeNothing) {
  Tensor pool = Zeros(act_, {2, 2, 4, 8});
  Tensor q = Zeros(act_, {3, 0, 8});
  Tensor out = Zeros(act_, {3, 0, 8});
  const std::vector<int32_t> lens = {3, 3}, offsets = {0, 1, 2}, blocks = {0, 1};
  const AttentionSequence seq{.query_begin = 0,
                              .num_queries = 3,
                              .kv_lens = lens,
                              .block_offsets = offsets,
                              .block_ids = blocks};
  const absl::Status status = backend_->Attention(
      AttentionBatch{.sequences = {&seq, 1}, .num_kv_heads = 2, .scale = 1.0f}, q, pool, &out);
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(Stats().tile_units, 0);
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
