// The paged-KV ops on every backend this machine can create: WriteKv (each KV head of a token
// into its own stream's slot), and causal Attention over a ragged batch (decode, prefill, chunked
// prefill; GQA groups 1, 2, 4; block sizes 1, 4, 16; shuffled non-contiguous blocks per (sequence,
// KV head); KV heads of unequal lengths) with the window-mass summary, against a float64 reference
// written here. Harness: backend_ops_harness.h.
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
#include "tests/backend_ops_harness.h"
#include "tests/test_support.h"

namespace zigzag::testing {
namespace {

struct PagedLayout {
  int64_t kv_heads;
  int64_t group;  // query heads per KV head
  int64_t head_dim;
  int64_t block_size;
  int64_t num_heads() const { return kv_heads * group; }
};

struct SequenceSpec {
  int32_t kv_len;
  int32_t num_queries;
  std::optional<int32_t> window_begin = std::nullopt;  // set: the sequence has a window_mass
  int32_t extra_blocks = 0;                            // block ids past the ones a head needs
  // Per KV head: how many entries fewer than kv_len its stream holds (as after a compaction that
  // kept different counts per head); empty: every head holds kv_len.
  std::vector<int32_t> shorter = {};
  int32_t HeadLen(int64_t g) const { return shorter.empty() ? kv_len : kv_len - shorter[g]; }
};

// One attention scenario in host memory: per-sequence K/V, per-(sequence, KV head) block tables
// and the batch's queries. Values are already rounded to the backend's activation dtype. Head g
// of a sequence holds entries [0, HeadLen(g)) of the sequence's keys and values.
struct Scenario {
  PagedLayout layout;
  std::vector<SequenceSpec> specs;
  float scale = 1.0f;
  int64_t num_blocks = 0;
  std::vector<std::vector<std::vector<int32_t>>> block_ids;  // [sequence][KV head]
  std::vector<std::vector<float>> keys;  // per sequence [kv_len, kv_heads, head_dim]
  std::vector<std::vector<float>> values;
  std::vector<int32_t> query_begin;  // per sequence
  int64_t rows = 0;
  std::vector<float> q;  // [rows, num_heads, head_dim]

  int64_t MassWidth(size_t s) const { return specs[s].kv_len + 2; }  // wider than needed
  int32_t Slot(size_t s, int64_t g, int64_t j) const {
    return static_cast<int32_t>(block_ids[s][g][j / layout.block_size] * layout.block_size +
                                j % layout.block_size);
  }
  // A slot of the last spare block (owned by nobody, read by nobody): where WriteKv puts the
  // entries a shorter head does not hold.
  int32_t SpareSlot() const { return static_cast<int32_t>((num_blocks - 1) * layout.block_size); }
};

// The CSR tables of one sequence for AttentionSequence.
struct SequenceTables {
  std::vector<int32_t> kv_lens, block_offsets, block_ids;
};

SequenceTables Tables(const Scenario& s, size_t i) {
  SequenceTables t;
  t.block_offsets.push_back(0);
  for (int64_t g = 0; g < s.layout.kv_heads; ++g) {
    t.kv_lens.push_back(s.specs[i].HeadLen(g));
    t.block_ids.insert(t.block_ids.end(), s.block_ids[i][g].begin(), s.block_ids[i][g].end());
    t.block_offsets.push_back(static_cast<int32_t>(t.block_ids.size()));
  }
  return t;
}

Scenario MakeScenario(const PagedLayout& layout, std::vector<SequenceSpec> specs, uint64_t seed,
                      DType dtype, float scale, float q_range = 1.0f) {
  Scenario s;
  s.layout = layout;
  s.specs = std::move(specs);
  s.scale = scale;
  for (const SequenceSpec& spec : s.specs) {
    for (int64_t g = 0; g < layout.kv_heads; ++g) {
      s.num_blocks +=
          (spec.HeadLen(g) + layout.block_size - 1) / layout.block_size + spec.extra_blocks;
    }
  }
  s.num_blocks += 3;                                // spare blocks nobody owns
  std::vector<int32_t> shuffled(s.num_blocks - 1);  // the last block stays spare
  std::iota(shuffled.begin(), shuffled.end(), 0);
  std::mt19937_64 rng(seed);
  std::shuffle(shuffled.begin(), shuffled.end(), rng);
  size_t next_block = 0;
  const int64_t row = layout.kv_heads * layout.head_dim;
  for (size_t i = 0; i < s.specs.size(); ++i) {
    std::vector<std::vector<int32_t>>& heads = s.block_ids.emplace_back();
    for (int64_t g = 0; g < layout.kv_heads; ++g) {
      const int64_t count = (s.specs[i].HeadLen(g) + layout.block_size - 1) / layout.block_size +
                            s.specs[i].extra_blocks;
      heads.emplace_back(shuffled.begin() + next_block, shuffled.begin() + next_block + count);
      next_block += count;
    }
    s.keys.push_back(RoundTo(RandomFloats(s.specs[i].kv_len * row, seed * 31 + 2 * i), dtype));
    s.values.push_back(
        RoundTo(RandomFloats(s.specs[i].kv_len * row, seed * 31 + 2 * i + 1), dtype));
    s.query_begin.push_back(static_cast<int32_t>(s.rows));
    s.rows += s.specs[i].num_queries;
  }
  s.q = RoundTo(RandomFloats(s.rows * layout.num_heads() * layout.head_dim, seed * 31 + 999,
                             -q_range, q_range),
                dtype);
  return s;
}

// Float64 reference: out [rows, num_heads, head_dim] and one [num_heads, MassWidth(s)] window
// mass per sequence (zeros for sequences without one) after a single call. Query r of head h
// (KV head g) sees entries [0, HeadLen(g) - num_queries + r] of its head's stream.
void RefAttention(const Scenario& s, std::vector<double>* out,
                  std::vector<std::vector<double>>* masses) {
  const PagedLayout& l = s.layout;
  const int64_t heads = l.num_heads(), d = l.head_dim;
  out->assign(s.rows * heads * d, 0.0);
  masses->clear();
  for (size_t i = 0; i < s.specs.size(); ++i) {
    const SequenceSpec& spec = s.specs[i];
    std::vector<double> mass(heads * s.MassWidth(i), 0.0);
    for (int32_t r = 0; r < spec.num_queries; ++r) {
      const int64_t row = s.query_begin[i] + r;
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t g = h / l.group;
        const int64_t cache_index = spec.HeadLen(g) - spec.num_queries + r;
        const float* q = &s.q[(row * heads + h) * d];
        std::vector<double> logits(cache_index + 1);
        for (int64_t j = 0; j <= cache_index; ++j) {
          const float* k = &s.keys[i][(j * l.kv_heads + g) * d];
          double dot = 0.0;
          for (int64_t t = 0; t < d; ++t) dot += double{q[t]} * k[t];
          logits[j] = s.scale * dot;
        }
        const double max_logit = *std::max_element(logits.begin(), logits.end());
        double sum = 0.0;
        for (double& x : logits) sum += (x = std::exp(x - max_logit));
        for (int64_t j = 0; j <= cache_index; ++j) {
          const double p = logits[j] / sum;
          const float* v = &s.values[i][(j * l.kv_heads + g) * d];
          for (int64_t t = 0; t < d; ++t) (*out)[(row * heads + h) * d + t] += p * v[t];
          if (spec.window_begin && cache_index >= *spec.window_begin) {
            mass[h * s.MassWidth(i) + j] += p;
          }
        }
      }
    }
    masses->push_back(std::move(mass));
  }
}

class BackendAttentionTest : public BackendOpsTest {
 protected:
  // A pool whose every slot holds garbage (K = 0, V = 1000), so any read of a slot the op should
  // not see moves the output far outside tolerance.
  Tensor GarbagePool(const Scenario& s) {
    const PagedLayout& l = s.layout;
    const int64_t slot_floats = l.head_dim;
    std::vector<float> host(s.num_blocks * 2 * l.block_size * slot_floats, 0.0f);
    for (int64_t b = 0; b < s.num_blocks; ++b) {
      auto v_begin = host.begin() + ((b * 2 + 1) * l.block_size) * slot_floats;
      std::fill(v_begin, v_begin + l.block_size * slot_floats, 1000.0f);
    }
    return Upload(host, act_, {s.num_blocks, 2, l.block_size, l.head_dim});
  }

  // Writes tokens [begin, end) of every sequence (clamped to its kv_len) with one WriteKv call;
  // entries a head's stream does not hold go to the spare block.
  void WriteTokens(const Scenario& s, int64_t begin, int64_t end, Tensor* pool) {
    const int64_t row = s.layout.kv_heads * s.layout.head_dim;
    std::vector<float> k, v;
    std::vector<int32_t> slots;
    for (size_t i = 0; i < s.specs.size(); ++i) {
      for (int64_t j = begin; j < std::min<int64_t>(end, s.specs[i].kv_len); ++j) {
        k.insert(k.end(), s.keys[i].begin() + j * row, s.keys[i].begin() + (j + 1) * row);
        v.insert(v.end(), s.values[i].begin() + j * row, s.values[i].begin() + (j + 1) * row);
        for (int64_t g = 0; g < s.layout.kv_heads; ++g) {
          slots.push_back(j < s.specs[i].HeadLen(g) ? s.Slot(i, g, j) : s.SpareSlot());
        }
      }
    }
    const int64_t tokens = static_cast<int64_t>(slots.size()) / s.layout.kv_heads;
    const Shape shape = {tokens, s.layout.kv_heads, s.layout.head_dim};
    Tensor k_t = Upload(k, act_, shape);
    Tensor v_t = Upload(v, act_, shape);
    const absl::Status status = backend_->WriteKv(k_t, v_t, slots, pool);
    ASSERT_TRUE(status.ok()) << status;
  }

  // The whole scenario as one batch: WriteKv all tokens, Attention twice (the second call must
  // give the same output and double every window mass).
  void RunScenario(const Scenario& s, const std::string& what) {
    std::vector<double> expected_out;
    std::vector<std::vector<double>> expected_mass;
    RefAttention(s, &expected_out, &expected_mass);

    Tensor pool = GarbagePool(s);
    WriteTokens(s, 0, INT64_MAX, &pool);
    const PagedLayout& l = s.layout;
    Tensor q = Upload(s.q, act_, {s.rows, l.num_heads(), l.head_dim});
    Tensor out = Zeros(act_, {s.rows, l.num_heads(), l.head_dim});
    std::vector<Tensor> masses(s.specs.size());
    std::vector<SequenceTables> tables;
    for (size_t i = 0; i < s.specs.size(); ++i) tables.push_back(Tables(s, i));
    std::vector<AttentionSequence> sequences;
    for (size_t i = 0; i < s.specs.size(); ++i) {
      AttentionSequence seq;
      seq.query_begin = s.query_begin[i];
      seq.num_queries = s.specs[i].num_queries;
      seq.kv_lens = tables[i].kv_lens;
      seq.block_offsets = tables[i].block_offsets;
      seq.block_ids = tables[i].block_ids;
      if (s.specs[i].window_begin) {
        masses[i] = Zeros(DType::kF32, {l.num_heads(), s.MassWidth(i)});
        seq.window_mass = &masses[i];
        seq.window_begin = *s.specs[i].window_begin;
      }
      sequences.push_back(seq);
    }
    const AttentionBatch batch{
        .sequences = sequences, .num_kv_heads = static_cast<int32_t>(l.kv_heads), .scale = s.scale};
    for (int call = 1; call <= 2; ++call) {
      const absl::Status status = backend_->Attention(batch, q, pool, &out);
      ASSERT_TRUE(status.ok()) << status;
      const std::string label = what + " call " + std::to_string(call);
      ExpectClose(Download(out), expected_out, tolerance(), label + " out");
      for (size_t i = 0; i < s.specs.size(); ++i) {
        if (!s.specs[i].window_begin) continue;
        std::vector<double> expected = expected_mass[i];
        for (double& m : expected) m *= call;
        ExpectClose(Download(masses[i]), expected, tolerance(),
                    label + " window_mass of sequence " + std::to_string(i));
      }
    }
  }
};

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
