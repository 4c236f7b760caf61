// Issue 12, item 2: block lists stay resident on the backend across steps (docs/architecture.md,
// "How block tables reach the device"), seen through LlamaModel::Forward on the CPU backend.
// - Steps where no stream grew a block send no block id (exact, hand-computed bytes); the others
//   exactly the new entries of the streams that did. Logits follow tests/reference_model.
// - Row sets reused after a sequence finishes and after one is preempted and recomputed: logits
//   follow the reference and, bit for bit, a run with residency off.
// (The per-step byte formula on compressed batches and the backend-level checks are in
// step_tables_test.cc.)
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/compress/policy.h"
#include "core/kv/kv_compaction.h"
#include "core/kv/sequence_kv.h"
#include "core/model/checkpoint_writer.h"
#include "gtest/gtest.h"
#include "tests/reference_model.h"
#include "tests/tiny_engine.h"

namespace zigzag {
namespace {

constexpr int32_t kBlockSize = 4;
constexpr int kKvHeads = 2;

// [layer][KV head] kept prompt positions, as tests/reference_model takes them.
using KeptSets = std::vector<std::vector<std::vector<int64_t>>>;

// Bytes of a resident decode step with no block-list change, by hand: Embedding's ids (S), the
// logits rows (S), PlanStep's three int32 per sequence, positions (S), slots, lengths and row
// indices (L * S * G each).
int64_t MetadataBytesPerDecodeStep(int64_t layers, int64_t seqs) {
  return 4 * (seqs + seqs + 3 * seqs + seqs + 3 * layers * seqs * kKvHeads);
}
// A stream that grew a block sends one scatter record: row, first, count and its new block id.
constexpr int64_t kBytesPerCrossing = 4 * (3 + 1);

// Uncompressed prompts of 5 and 7 tokens (block size 4) decode four steps: before steps 0 and 2
// no stream sits at a block boundary, so those steps send no block id at all (exactly the
// hand-computed metadata); step 1 grows sequence 1's streams into a new block and step 3
// sequence 0's, and each sends exactly those L * G streams' one new entry. Logits follow the
// float64 reference.
TEST(StepTablesTest, ResidentStepsSendBlockIdsOnlyForStreamsThatGrewABlock) {
  for (int layers : {2, 6}) {
    SCOPED_TRACE(absl::StrCat(layers, " layers"));
    RandomCheckpointSpec spec;
    spec.vocab_size = 61;
    spec.hidden_size = 32;
    spec.intermediate_size = 48;
    spec.num_layers = layers;
    spec.num_heads = 4;
    spec.num_kv_heads = kKvHeads;
    spec.seed = 5 + static_cast<uint64_t>(layers);
    absl::StatusOr<testing::TinyEngine> engine =
        testing::MakeTinyEngine(spec, kBlockSize, 8 * layers * kKvHeads, "resident_growth");
    ASSERT_TRUE(engine.ok()) << engine.status();
    const std::vector<int64_t> prompts = {5, 7};
    constexpr int kSteps = 4;
    std::mt19937_64 rng(31);
    std::vector<std::vector<int32_t>> tokens(prompts.size());
    std::vector<SequenceKv> kvs;
    std::vector<ForwardSequence> prefill(prompts.size());
    for (size_t s = 0; s < prompts.size(); ++s) {
      for (int64_t i = 0; i < prompts[s] + kSteps; ++i) {
        tokens[s].push_back(static_cast<int32_t>(rng() % spec.vocab_size));
      }
      kvs.emplace_back(&engine->cache->pool(), layers, kKvHeads);
    }
    for (size_t s = 0; s < prompts.size(); ++s) {
      ASSERT_TRUE(kvs[s].AppendAllLayers(prompts[s]).ok());
      prefill[s] = {.tokens = std::span<const int32_t>(tokens[s]).first(prompts[s]), .kv = &kvs[s]};
    }
    ASSERT_TRUE(engine->model->Forward(prefill, engine->cache.get()).ok());
    testing::ReferenceModel reference(*engine->checkpoint);
    const std::vector<int64_t> crossing_sequences = {0, 1, 0, 1};  // per step
    for (int step = 0; step < kSteps; ++step) {
      std::vector<ForwardSequence> batch(prompts.size());
      for (size_t s = 0; s < prompts.size(); ++s) {
        ASSERT_TRUE(kvs[s].AppendAllLayers(1).ok());
        batch[s] = {.tokens = std::span<const int32_t>(tokens[s]).subspan(prompts[s] + step, 1),
                    .first_position = prompts[s] + step,
                    .kv = &kvs[s]};
      }
      const int64_t bytes = engine->backend->host_to_device_bytes();
      absl::StatusOr<std::vector<float>> logits =
          engine->model->Forward(batch, engine->cache.get());
      ASSERT_TRUE(logits.ok()) << logits.status();
      EXPECT_EQ(engine->backend->host_to_device_bytes() - bytes,
                MetadataBytesPerDecodeStep(layers, 2) +
                    kBytesPerCrossing * layers * kKvHeads * crossing_sequences[step])
          << "step " << step;
      for (size_t s = 0; s < prompts.size(); ++s) {
        const std::vector<double> want =
            reference.Logits(tokens[s])[static_cast<size_t>(prompts[s] + step)];
        for (int64_t v = 0; v < spec.vocab_size; ++v) {
          EXPECT_NEAR((*logits)[s * spec.vocab_size + v], want[v], 1e-4 * (1.0 + std::abs(want[v])))
              << "step " << step << ", sequence " << s << ", token " << v;
        }
      }
    }
  }
}

// A sequence's rows through its life, with room for only two sequences: A and B prefill, are
// compacted per head and decode; A finishes (Release) and C's prefill takes a row set; B is
// preempted (Release) and recomputed from its tokens, so it takes a row set again, evicting
// whichever the LRU picks. Every Forward's logits, in order; bytes of each call.
struct LifeRun {
  std::vector<std::vector<float>> logits;
  std::vector<int64_t> bytes;
};

LifeRun RunLife(int32_t resident_sequences) {
  LifeRun run;
  RandomCheckpointSpec spec;
  spec.vocab_size = 53;
  spec.hidden_size = 32;
  spec.intermediate_size = 48;
  spec.num_layers = 3;
  spec.num_heads = 4;
  spec.num_kv_heads = kKvHeads;
  spec.seed = 404;
  absl::StatusOr<testing::TinyEngine> engine_or =
      testing::MakeTinyEngine(spec, kBlockSize, 120, "resident_life");
  EXPECT_TRUE(engine_or.ok()) << engine_or.status();
  if (!engine_or.ok()) return run;
  testing::TinyEngine& engine = *engine_or;
  engine.model->SetResidentSequences(resident_sequences);
  testing::ReferenceModel reference(*engine.checkpoint);
  std::mt19937_64 rng(8);
  const auto draw = [&](int n) {
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (int32_t& x : t) x = static_cast<int32_t>(rng() % spec.vocab_size);
    return t;
  };
  const std::vector<int32_t> tokens_a = draw(11), tokens_b = draw(12), tokens_c = draw(8);
  SequenceKv a(&engine.cache->pool(), spec.num_layers, kKvHeads);
  SequenceKv b(&engine.cache->pool(), spec.num_layers, kKvHeads);
  SequenceKv c(&engine.cache->pool(), spec.num_layers, kKvHeads);

  // One Forward of (kv, tokens[begin, begin + n)) pieces, appending n first; checks each piece's
  // last logits against `want` (a reference row) and records the call.
  struct Piece {
    SequenceKv* kv;
    const std::vector<int32_t>* tokens;
    int64_t begin, n;
    std::vector<double> want;
  };
  const auto forward = [&](std::vector<Piece> pieces, const std::string& what) {
    std::vector<ForwardSequence> batch;
    for (const Piece& p : pieces) {
      EXPECT_TRUE(p.kv->AppendAllLayers(p.n).ok());
      batch.push_back({.tokens = std::span<const int32_t>(*p.tokens).subspan(p.begin, p.n),
                       .first_position = p.begin,
                       .kv = p.kv});
    }
    const int64_t bytes = engine.backend->host_to_device_bytes();
    absl::StatusOr<std::vector<float>> logits = engine.model->Forward(batch, engine.cache.get());
    EXPECT_TRUE(logits.ok()) << what << ": " << logits.status();
    if (!logits.ok()) return;
    run.bytes.push_back(engine.backend->host_to_device_bytes() - bytes);
    for (size_t s = 0; s < pieces.size(); ++s) {
      for (int64_t v = 0; v < spec.vocab_size; ++v) {
        const double want = pieces[s].want[static_cast<size_t>(v)];
        EXPECT_NEAR((*logits)[s * spec.vocab_size + v], want, 1e-4 * (1.0 + std::abs(want)))
            << what << ", piece " << s << ", token " << v;
      }
    }
    run.logits.push_back(*std::move(logits));
  };
  const auto full = [&](const std::vector<int32_t>& t, int64_t p) {
    return reference.Logits(t)[static_cast<size_t>(p)];
  };

  forward({{&a, &tokens_a, 0, 9, full(tokens_a, 8)}, {&b, &tokens_b, 0, 7, full(tokens_b, 6)}},
          "prefill A, B");
  // Compact A and B per (layer, head), as RunDepth does.
  std::vector<KeptSets> kept(2);
  for (int which = 0; which < 2; ++which) {
    SequenceKv& kv = which == 0 ? a : b;
    const int32_t prompt = which == 0 ? 9 : 7;
    CompressionPlan plan;
    plan.compressed = true;
    plan.head_budgets = HeadBudgets::kAdaptive;
    plan.budgets.assign(spec.num_layers, 0);
    plan.kept.resize(spec.num_layers);
    plan.head_counts.resize(spec.num_layers);
    kept[which].resize(spec.num_layers);
    for (int l = 0; l < spec.num_layers; ++l) {
      for (int g = 0; g < kKvHeads; ++g) {
        std::vector<int32_t> keep;
        for (int32_t i = 0; i < prompt; ++i) {
          if (i == prompt - 1 || rng() % 10 < 5) keep.push_back(i);
        }
        plan.kept[l].push_back(keep);
        plan.head_counts[l].push_back(static_cast<int64_t>(keep.size()));
        kept[which][l].emplace_back(keep.begin(), keep.end());
      }
    }
    EXPECT_TRUE(CompactSequenceKv(plan, *engine.backend, *engine.cache, kv).ok());
  }
  const auto compressed_a = reference.LogitsWithKeptPositions(tokens_a, 9, kept[0]);
  const auto compressed_b = reference.LogitsWithKeptPositions(tokens_b, 7, kept[1]);
  for (int step = 0; step < 2; ++step) {
    forward({{&a, &tokens_a, 9 + step, 1, compressed_a[9 + step]},
             {&b, &tokens_b, 7 + step, 1, compressed_b[7 + step]}},
            absl::StrCat("compressed decode ", step));
  }
  a.Release();  // A finished
  forward({{&c, &tokens_c, 0, 5, full(tokens_c, 4)}}, "prefill C into a used row set");
  forward({{&b, &tokens_b, 9, 1, compressed_b[9]}, {&c, &tokens_c, 5, 1, full(tokens_c, 5)}},
          "decode B, C");
  b.Release();  // B preempted: recomputed from its tokens, uncompressed
  forward({{&b, &tokens_b, 0, 10, full(tokens_b, 9)}}, "recompute B");
  for (int step = 0; step < 2; ++step) {
    forward({{&b, &tokens_b, 10 + step, 1, full(tokens_b, 10 + step)},
             {&c, &tokens_c, 6 + step, 1, full(tokens_c, 6 + step)}},
            absl::StrCat("decode recomputed B, C ", step));
  }
  return run;
}

TEST(StepTablesTest, RowsReusedAfterReleaseAndPreemptionMatchTheReferenceAndTheSpanPath) {
  const LifeRun resident = RunLife(2);
  const LifeRun span = RunLife(0);  // residency off: every list sent each step
  ASSERT_EQ(resident.logits.size(), 8u);
  ASSERT_EQ(span.logits.size(), 8u);
  for (size_t call = 0; call < resident.logits.size(); ++call) {
    EXPECT_EQ(resident.logits[call], span.logits[call]) << "call " << call << ", bit for bit";
  }
  // The resident decode steps send less than the span path's whole tables.
  EXPECT_LT(resident.bytes[2], span.bytes[2]);
}

}  // namespace
}  // namespace zigzag
