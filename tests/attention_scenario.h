// Paged-attention scenarios for the backend tests: ragged batches of sequences with per-(sequence,
// KV head) shuffled block tables and K/V, their float64 reference (outputs and window mass), and a
// fixture that writes a scenario with WriteKv and checks Attention against the reference. Shared by
// backend_attention_test.cc (every backend) and cpu_attention_isa_test.cc (each CPU kernel).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "tests/backend_ops_harness.h"
#include "tests/test_support.h"

namespace zigzag::testing {

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

inline SequenceTables Tables(const Scenario& s, size_t i) {
  SequenceTables t;
  t.block_offsets.push_back(0);
  for (int64_t g = 0; g < s.layout.kv_heads; ++g) {
    t.kv_lens.push_back(s.specs[i].HeadLen(g));
    t.block_ids.insert(t.block_ids.end(), s.block_ids[i][g].begin(), s.block_ids[i][g].end());
    t.block_offsets.push_back(static_cast<int32_t>(t.block_ids.size()));
  }
  return t;
}

inline Scenario MakeScenario(const PagedLayout& layout, std::vector<SequenceSpec> specs,
                             uint64_t seed, DType dtype, float scale, float q_range = 1.0f) {
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
inline void RefAttention(const Scenario& s, std::vector<double>* out,
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

}  // namespace zigzag::testing
