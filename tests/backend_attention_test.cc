// The paged-KV ops on every backend this machine can create: WriteKv (each KV head of a token
// into its own stream's slot), and causal Attention over a ragged batch (decode, prefill, chunked
// prefill; GQA groups 1, 2, 4; block sizes 1, 4, 16; shuffled non-contiguous blocks per (sequence,
// KV head); KV heads of unequal lengths) with the window-mass summary, against a float64 reference
// in attention_scenario.h. Harness: backend_ops_harness.h.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "tests/attention_scenario.h"
#include "tests/backend_ops_harness.h"
#include "tests/test_support.h"

namespace zigzag::testing {
namespace {

// WriteKv -----------------------------------------------------------------------------------------

TEST_P(BackendAttentionTest, WriteKvPutsEachHeadInItsOwnSlot) {
  const int64_t blocks = 5, block_size = 4, kv_heads = 2, head_dim = 64;
  const int64_t row = kv_heads * head_dim;
  // slots[n * kv_heads + g]: token n's head g; the two heads of a token go to different blocks.
  const std::vector<int32_t> slots = {19, 0, 5, 12, 6, 13, 3, 7};
  const int64_t n = static_cast<int64_t>(slots.size()) / kv_heads;
  const std::vector<float> k = RoundTo(RandomFloats(n * row, 800), act_);
  const std::vector<float> v = RoundTo(RandomFloats(n * row, 801), act_);
  Tensor pool = Zeros(act_, {blocks, 2, block_size, head_dim});
  Tensor k_t = Upload(k, act_, {n, kv_heads, head_dim});
  Tensor v_t = Upload(v, act_, {n, kv_heads, head_dim});
  ASSERT_TRUE(backend_->WriteKv(k_t, v_t, slots, &pool).ok());

  std::vector<double> expected(pool.numel(), 0.0);
  auto place = [&](int32_t slot, int kv, const std::vector<float>& src, int64_t token, int64_t g) {
    const int64_t block = slot / block_size, offset = slot % block_size;
    const auto from = src.begin() + token * row + g * head_dim;
    std::copy(from, from + head_dim,
              expected.begin() + ((block * 2 + kv) * block_size + offset) * head_dim);
  };
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t g = 0; g < kv_heads; ++g) {
      place(slots[t * kv_heads + g], 0, k, t, g);
      place(slots[t * kv_heads + g], 1, v, t, g);
    }
  }
  ExpectClose(Download(pool), expected, 0.0, "WriteKv pool");

  // Rewriting one token replaces only its two slots.
  const std::vector<float> k2 = RoundTo(RandomFloats(row, 802), act_);
  const std::vector<float> v2 = RoundTo(RandomFloats(row, 803), act_);
  Tensor k2_t = Upload(k2, act_, {1, kv_heads, head_dim});
  Tensor v2_t = Upload(v2, act_, {1, kv_heads, head_dim});
  ASSERT_TRUE(backend_->WriteKv(k2_t, v2_t, std::vector<int32_t>{5, 17}, &pool).ok());
  for (int64_t g = 0; g < kv_heads; ++g) {
    place(g == 0 ? 5 : 17, 0, k2, 0, g);
    place(g == 0 ? 5 : 17, 1, v2, 0, g);
  }
  ExpectClose(Download(pool), expected, 0.0, "WriteKv rewrite");
}

TEST_P(BackendAttentionTest, WriteKvRejectsBadArguments) {
  Tensor pool = Zeros(act_, {3, 2, 4, 64});
  Tensor k = Zeros(act_, {2, 2, 64});
  Tensor v = Zeros(act_, {2, 2, 64});
  // 2 tokens x 2 KV heads need 4 slots.
  ExpectInvalidArgument(backend_->WriteKv(k, v, std::vector<int32_t>{0, 1}, &pool), "WriteKv",
                        "slots");
  ExpectInvalidArgument(backend_->WriteKv(k, v, std::vector<int32_t>{0, 1, 2, 12}, &pool),
                        "WriteKv", "slots");
  ExpectInvalidArgument(backend_->WriteKv(k, v, std::vector<int32_t>{-1, 2, 3, 4}, &pool),
                        "WriteKv", "slots");
  Tensor v_bad = Zeros(act_, {2, 1, 64});
  ExpectInvalidArgument(backend_->WriteKv(k, v_bad, std::vector<int32_t>{0, 1, 2, 3}, &pool),
                        "WriteKv", "v");
  Tensor pool_bad_head_dim = Zeros(act_, {3, 2, 4, 32});
  ExpectInvalidArgument(
      backend_->WriteKv(k, v, std::vector<int32_t>{0, 1, 2, 3}, &pool_bad_head_dim), "WriteKv",
      "kv_pool");
  Tensor pool_bad_rank = Zeros(act_, {3, 2, 4, 2, 64});
  ExpectInvalidArgument(backend_->WriteKv(k, v, std::vector<int32_t>{0, 1, 2, 3}, &pool_bad_rank),
                        "WriteKv", "kv_pool");
}

// Attention ---------------------------------------------------------------------------------------

TEST_P(BackendAttentionTest, RaggedBatchOverGroupsAndBlockSizes) {
  uint64_t seed = 1000;
  for (int64_t group : {1, 2, 4}) {
    for (int32_t bs : {1, 4, 16}) {
      const PagedLayout layout{.kv_heads = 2, .group = group, .head_dim = 64, .block_size = bs};
      const std::vector<SequenceSpec> specs = {
          {.kv_len = 3 * bs, .num_queries = 1, .window_begin = 0},  // decode at a block boundary
          {.kv_len = 1, .num_queries = 1},                          // decode of a 1-token cache
          // prefill, window starting mid-prompt
          {.kv_len = 2 * bs + 3, .num_queries = 2 * bs + 3, .window_begin = bs + 1},
          // chunked prefill: the 5 newest of a longer cache, the block table longer than needed
          {.kv_len = 4 * bs + 2, .num_queries = 5, .window_begin = 4 * bs - 1, .extra_blocks = 1},
          {.kv_len = bs, .num_queries = bs},  // prefill of exactly one block
          // decode whose query lies before the window: its mass stays zero
          {.kv_len = 2 * bs + 5, .num_queries = 1, .window_begin = 2 * bs + 5},
      };
      const Scenario s = MakeScenario(layout, specs, ++seed, act_, 1.0f / 8.0f, 3.0f);
      RunScenario(s, "group " + std::to_string(group) + " block_size " + std::to_string(bs));
    }
  }
}

TEST_P(BackendAttentionTest, Llama8BShapedHeadsDecodeAndPrefill) {
  const PagedLayout layout{.kv_heads = 8, .group = 4, .head_dim = 128, .block_size = 16};
  const Scenario s = MakeScenario(
      layout,
      {{.kv_len = 40, .num_queries = 1}, {.kv_len = 17, .num_queries = 17, .window_begin = 9}},
      2000, act_, 1.0f / std::sqrt(128.0f), 2.0f);
  RunScenario(s, "head_dim 128");
}

// After an adaptive compaction the KV heads of one layer hold different counts: each query head
// reads its own KV head's stream up to that stream's length (decode, prefill chunk, window mass).
TEST_P(BackendAttentionTest, KvHeadsOfUnequalLengthEachReadTheirOwnStream) {
  uint64_t seed = 2500;
  for (int64_t group : {1, 2}) {
    for (int32_t bs : {1, 4}) {
      const PagedLayout layout{.kv_heads = 3, .group = group, .head_dim = 64, .block_size = bs};
      const std::vector<SequenceSpec> specs = {
          // decode: heads of 9, 2 and 1 entries (head 2 sees only the query's own entry)
          {.kv_len = 9, .num_queries = 1, .shorter = {0, 7, 8}},
          // three queries over heads of 12, 5 and 3 entries, with a window from index 2
          {.kv_len = 12, .num_queries = 3, .window_begin = 2, .shorter = {0, 7, 9}},
          // a longer head 1 than head 0, block tables longer than needed
          {.kv_len = 2 * bs + 3, .num_queries = 1, .extra_blocks = 1, .shorter = {2, 0, 1}},
      };
      const Scenario s = MakeScenario(layout, specs, ++seed, act_, 1.0f / 8.0f, 3.0f);
      RunScenario(
          s, "unequal heads group " + std::to_string(group) + " block_size " + std::to_string(bs));
    }
  }
}

// Decode-only batches (one query per sequence, no window mass) take the split-K kernel on CUDA:
// long ragged caches give several splits per sequence, the 1- and 63-token caches a single one.
TEST_P(BackendAttentionTest, DecodeOnlyBatchOverLongRaggedCaches) {
  uint64_t seed = 4000;
  for (int64_t head_dim : {64, 128}) {
    for (int64_t group : {1, 4, 6}) {
      for (int32_t bs : {1, 16}) {
        const PagedLayout layout{
            .kv_heads = 2, .group = group, .head_dim = head_dim, .block_size = bs};
        const Scenario s =
            MakeScenario(layout,
                         {{.kv_len = 3001, .num_queries = 1},
                          {.kv_len = 1, .num_queries = 1},
                          {.kv_len = 700, .num_queries = 1},
                          {.kv_len = 63, .num_queries = 1}},
                         ++seed, act_, 1.0f / std::sqrt(static_cast<float>(head_dim)), 2.0f);
        RunScenario(s, "decode-only head_dim " + std::to_string(head_dim) + " group " +
                           std::to_string(group) + " block_size " + std::to_string(bs));
      }
    }
  }
}

TEST_P(BackendAttentionTest, LargeLogitsDoNotOverflowTheSoftmax) {
  // Logits in the hundreds: exp() of them overflows float32 unless the maximum is subtracted.
  const PagedLayout layout{.kv_heads = 1, .group = 2, .head_dim = 64, .block_size = 4};
  const Scenario s = MakeScenario(
      layout, {{.kv_len = 9, .num_queries = 9, .window_begin = 0}, {.kv_len = 6, .num_queries = 1}},
      3000, act_, 20.0f);
  RunScenario(s, "large logits");
}

TEST_P(BackendAttentionTest, ChunkedPrefillAccumulatesWindowMassAcrossCalls) {
  // One 21-token prompt prefilled in chunks of 14 and 7; the window starts at cache index 12,
  // inside the first chunk. After both calls, out and window_mass equal a one-shot prefill.
  const PagedLayout layout{.kv_heads = 2, .group = 2, .head_dim = 64, .block_size = 4};
  const int32_t total = 21, first = 14, window_begin = 12;
  const Scenario s =
      MakeScenario(layout, {{.kv_len = total, .num_queries = total, .window_begin = window_begin}},
                   4000, act_, 0.125f, 3.0f);
  std::vector<double> expected_out;
  std::vector<std::vector<double>> expected_mass;
  RefAttention(s, &expected_out, &expected_mass);

  const int64_t heads = layout.num_heads(), d = layout.head_dim, row = heads * d;
  Tensor pool = GarbagePool(s);
  Tensor mass = Zeros(DType::kF32, {heads, s.MassWidth(0)});
  const int32_t chunks[2][2] = {{0, first}, {first, total}};  // [begin, end) of cache indices
  for (const auto& [begin, end] : chunks) {
    WriteTokens(s, begin, end, &pool);
    const int32_t n = end - begin;
    Tensor q = Upload(std::vector<float>(s.q.begin() + begin * row, s.q.begin() + end * row), act_,
                      {n, heads, d});
    Tensor out = Zeros(act_, {n, heads, d});
    SequenceTables tables = Tables(s, 0);
    tables.kv_lens.assign(layout.kv_heads, end);
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
    ExpectClose(
        Download(out),
        std::vector<double>(expected_out.begin() + begin * row, expected_out.begin() + end * row),
        tolerance(), "chunk [" + std::to_string(begin) + ", " + std::to_string(end) + ")");
  }
  ExpectClose(Download(mass), expected_mass[0], tolerance(), "window_mass after both chunks");
}

TEST_P(BackendAttentionTest, AttentionRejectsBadArguments) {
  // Valid: 6 blocks of 4 slots, 2 KV heads, 4 query heads of 64; one sequence whose heads hold 5
  // and 3 entries (blocks {3, 1} and {5}), its 2 newest are queries 0 and 1 of q's 6 rows.
  Tensor pool = Zeros(act_, {6, 2, 4, 64});
  Tensor q = Zeros(act_, {6, 4, 64});
  Tensor out = Zeros(act_, {6, 4, 64});
  const std::vector<int32_t> lens = {5, 3};
  const std::vector<int32_t> offsets = {0, 2, 3};
  const std::vector<int32_t> blocks = {3, 1, 5};
  const AttentionSequence valid{.query_begin = 0,
                                .num_queries = 2,
                                .kv_lens = lens,
                                .block_offsets = offsets,
                                .block_ids = blocks};
  auto run = [&](const AttentionSequence& seq, const Tensor& q_t, const Tensor& pool_t,
                 Tensor* out_t, int32_t kv_heads = 2) {
    return backend_->Attention(
        AttentionBatch{.sequences = {&seq, 1}, .num_kv_heads = kv_heads, .scale = 0.125f}, q_t,
        pool_t, out_t);
  };
  ASSERT_TRUE(run(valid, q, pool, &out).ok());

  AttentionSequence seq = valid;
  const std::vector<int32_t> block_out_of_range = {3, 1, 6};
  seq.block_ids = block_out_of_range;
  ExpectInvalidArgument(run(seq, q, pool, &out), "Attention", "block_ids");
  const std::vector<int32_t> block_negative = {-1, 0, 5};
  seq.block_ids = block_negative;
  ExpectInvalidArgument(run(seq, q, pool, &out), "Attention", "block_ids");

  seq = valid;
  const std::vector<int32_t> too_long = {5, 5};  // head 1 needs 2 blocks, has 1
  seq.kv_lens = too_long;
  ExpectInvalidArgument(run(seq, q, pool, &out), "Attention", "kv_lens[1] = 5 needs 2 blocks");
  const std::vector<int32_t> one_len = {5};
  seq.kv_lens = one_len;
  ExpectInvalidArgument(run(seq, q, pool, &out), "Attention", "kv_lens has 1 entries");

  seq = valid;
  const std::vector<int32_t> bad_offsets = {0, 2, 4};  // past block_ids' 3
  seq.block_offsets = bad_offsets;
  ExpectInvalidArgument(run(seq, q, pool, &out), "Attention", "block_offsets");
  const std::vector<int32_t> descending = {0, 2, 1};
  seq.block_offsets = descending;
  ExpectInvalidArgument(run(seq, q, pool, &out), "Attention", "block_offsets");
  const std::vector<int32_t> short_offsets = {0, 2};
  seq.block_offsets = short_offsets;
  ExpectInvalidArgument(run(seq, q, pool, &out), "Attention", "block_offsets");

  seq = valid;
  seq.num_queries = 4;  // more queries than head 1's 3 entries
  ExpectInvalidArgument(run(seq, q, pool, &out), "Attention", "num_queries 4");

  seq = valid;
  seq.query_begin = 5;  // rows 5 and 6 of a 6-row q
  ExpectInvalidArgument(run(seq, q, pool, &out), "Attention", "query_begin");

  seq = valid;
  Tensor mass_heads = Zeros(DType::kF32, {3, 5});
  seq.window_mass = &mass_heads;
  ExpectInvalidArgument(run(seq, q, pool, &out), "Attention", "window_mass");
  Tensor mass_short = Zeros(DType::kF32, {4, 4});  // narrower than the longest head's 5
  seq.window_mass = &mass_short;
  ExpectInvalidArgument(run(seq, q, pool, &out), "Attention", "window_mass");

  ExpectInvalidArgument(run(valid, q, pool, &out, 3), "Attention", "num_kv_heads");
  ExpectInvalidArgument(run(valid, q, pool, &out, 0), "Attention", "num_kv_heads");
  Tensor out_bad = Zeros(act_, {6, 4, 32});
  ExpectInvalidArgument(run(valid, q, pool, &out_bad), "Attention", "out");
  Tensor pool_not_kv = Zeros(act_, {6, 3, 4, 64});
  ExpectInvalidArgument(run(valid, q, pool_not_kv, &out), "Attention", "kv_pool");
  Tensor pool_head_dim = Zeros(act_, {6, 2, 4, 32});
  ExpectInvalidArgument(run(valid, q, pool_head_dim, &out), "Attention", "kv_pool");
  Tensor pool_old_layout = Zeros(act_, {6, 2, 4, 2, 64});
  ExpectInvalidArgument(run(valid, q, pool_old_layout, &out), "Attention", "kv_pool");
}

INSTANTIATE_TEST_SUITE_P(AllBackends, BackendAttentionTest,
                         ::testing::ValuesIn(BackendConfigsToTest()), BackendConfigLabel);

}  // namespace
}  // namespace zigzag::testing
