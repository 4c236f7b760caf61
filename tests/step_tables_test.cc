// Issue 12, item 2: a step's tables reach the backend once, not once per layer.
// - Decode steps of 2- and 6-layer random checkpoints over a batch of compressed sequences whose
//   (layer, KV head) streams all differ in length: the backend's metadata upload counter grows by
//   the same constant per step at both depths (PlanStep, the embedding ids, the logits rows),
//   while the logits follow tests/reference_model (float64, masked to each head's kept positions).
// - On every backend: AttentionStep / WriteKvStep / RopeStep give bit for bit what the
//   span-taking ops give for the same layer's tables, upload nothing, and PlanStep uploads once;
//   bad plans and step calls get InvalidArgument naming the field.
// - Resident block lists (docs/architecture.md): every decode step of those batches sends exactly
//   the hand-computed metadata plus 16 bytes per stream that crossed a block boundary, the same
//   at both depths once the per-stream parts are taken off; on every backend resident plans equal
//   the span ops bit for bit and send only changed lists, and bad residency fields or stale
//   versions are InvalidArgument naming the field. More in resident_tables_test.cc.
#include <algorithm>
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
#include "kernels/step_tables.h"
#include "tests/backend_ops_harness.h"
#include "tests/reference_model.h"
#include "tests/tiny_engine.h"

namespace zigzag {
namespace {

using testing::BackendConfigsToTest;
using testing::ExpectInvalidArgument;

constexpr int32_t kBlockSize = 4;
constexpr int kKvHeads = 2;
constexpr int kDecodeSteps = 6;  // crosses a block boundary in every stream
// Uploads of one Forward call, whatever the depth: Embedding's ids, PlanStep's tables, the
// logits rows (CopyRows). Before PlanStep each layer added four (two Rope positions, WriteKv's
// slots, Attention's tables), so a step made 2 + 4 * L: 10 at 2 layers, 26 at 6.
constexpr int64_t kUploadsPerForward = 3;

// [layer][KV head] kept prompt positions, as tests/reference_model takes them.
using KeptSets = std::vector<std::vector<std::vector<int64_t>>>;

struct DepthRun {
  std::vector<int64_t> uploads_per_step;
  std::vector<int64_t> bytes_per_step;
  std::vector<int64_t> crossings_per_step;  // streams that took a new block in the step
};

// Bytes of a resident decode step (one token per sequence, no block list changed), by hand:
// Embedding's ids (S) and the logits rows (S), plus PlanStep's three int32 per sequence,
// positions (S), slots (L * S * G), lengths (L * S * G) and row indices (L * S * G). No block ids.
int64_t MetadataBytesPerDecodeStep(int64_t layers, int64_t seqs) {
  return 4 * (seqs + seqs + 3 * seqs + seqs + 3 * layers * seqs * kKvHeads);
}
// A stream that crossed a block boundary sends one scatter record: row, first entry, count (3
// int32) and its one new block id.
constexpr int64_t kBytesPerCrossing = 4 * (3 + 1);

// Prefills three prompts, compacts every (layer, KV head) stream of each to its own kept set
// (different counts per head), then decodes teacher-forced tokens; checks logits against the
// float64 model masked the same way and returns the counter's growth per decode step.
DepthRun RunDepth(int layers) {
  DepthRun run;
  RandomCheckpointSpec spec;
  spec.vocab_size = 61;
  spec.hidden_size = 32;
  spec.intermediate_size = 48;
  spec.num_layers = layers;
  spec.num_heads = 4;
  spec.num_kv_heads = kKvHeads;
  spec.seed = 77 + static_cast<uint64_t>(layers);
  absl::StatusOr<testing::TinyEngine> engine_or = testing::MakeTinyEngine(
      spec, kBlockSize, 40 * layers * kKvHeads, absl::StrCat("step_tables_", layers));
  EXPECT_TRUE(engine_or.ok()) << engine_or.status();
  if (!engine_or.ok()) return run;
  testing::TinyEngine& engine = *engine_or;
  Backend& backend = *engine.backend;

  const std::vector<int64_t> prompt_lengths = {11, 6, 14};
  const size_t num_seqs = prompt_lengths.size();
  std::mt19937_64 rng(1234 + static_cast<uint64_t>(layers));
  std::vector<std::vector<int32_t>> tokens(num_seqs);
  std::vector<SequenceKv> kvs;
  for (size_t s = 0; s < num_seqs; ++s) {
    for (int64_t i = 0; i < prompt_lengths[s] + kDecodeSteps; ++i) {
      tokens[s].push_back(static_cast<int32_t>(rng() % spec.vocab_size));
    }
    kvs.emplace_back(&engine.cache->pool(), layers, kKvHeads);
  }

  // Prefill all three in one batch.
  std::vector<ForwardSequence> prefill(num_seqs);
  for (size_t s = 0; s < num_seqs; ++s) {
    EXPECT_TRUE(kvs[s].AppendAllLayers(prompt_lengths[s]).ok());
    prefill[s].tokens = std::span<const int32_t>(tokens[s]).first(prompt_lengths[s]);
    prefill[s].kv = &kvs[s];
  }
  const int64_t before_prefill = backend.host_to_device_copies();
  absl::StatusOr<std::vector<float>> prefilled = engine.model->Forward(prefill, engine.cache.get());
  EXPECT_TRUE(prefilled.ok()) << prefilled.status();
  EXPECT_EQ(backend.host_to_device_copies() - before_prefill, kUploadsPerForward)
      << "prefill of " << layers << " layers";

  // Kept sets: each prompt position stays with probability 0.6 (the last always), drawn per
  // (sequence, layer, KV head), so heads of one layer keep different counts.
  std::vector<KeptSets> kept_for_reference(num_seqs);
  for (size_t s = 0; s < num_seqs; ++s) {
    CompressionPlan plan;
    plan.compressed = true;
    plan.head_budgets = HeadBudgets::kAdaptive;
    plan.budgets.assign(layers, 0);
    plan.kept.resize(layers);
    plan.head_counts.resize(layers);
    kept_for_reference[s].resize(layers);
    bool heads_differ = false;
    for (int l = 0; l < layers; ++l) {
      for (int g = 0; g < kKvHeads; ++g) {
        std::vector<int32_t> kept;
        for (int32_t i = 0; i < prompt_lengths[s]; ++i) {
          if (i == prompt_lengths[s] - 1 || rng() % 10 < 6) kept.push_back(i);
        }
        plan.kept[l].push_back(kept);
        plan.head_counts[l].push_back(static_cast<int64_t>(kept.size()));
        kept_for_reference[s][l].emplace_back(kept.begin(), kept.end());
      }
      heads_differ = heads_differ || plan.head_counts[l][0] != plan.head_counts[l][1];
    }
    EXPECT_TRUE(heads_differ) << "sequence " << s << ": the draw kept equal counts everywhere";
    EXPECT_TRUE(CompactSequenceKv(plan, backend, *engine.cache, kvs[s]).ok());
  }

  // Teacher-forced decode, the whole batch per step.
  std::vector<std::vector<std::vector<float>>> decoded(num_seqs);  // [s][step][vocab]
  for (int step = 0; step < kDecodeSteps; ++step) {
    std::vector<ForwardSequence> batch(num_seqs);
    int64_t crossings = 0;
    for (size_t s = 0; s < num_seqs; ++s) {
      const int64_t position = prompt_lengths[s] + step;
      for (int l = 0; l < layers; ++l) {
        for (int g = 0; g < kKvHeads; ++g) crossings += kvs[s].length(l, g) % kBlockSize == 0;
      }
      EXPECT_TRUE(kvs[s].AppendAllLayers(1).ok());
      batch[s].tokens = std::span<const int32_t>(tokens[s]).subspan(position, 1);
      batch[s].first_position = position;
      batch[s].kv = &kvs[s];
    }
    const int64_t copies = backend.host_to_device_copies();
    const int64_t bytes = backend.host_to_device_bytes();
    absl::StatusOr<std::vector<float>> logits = engine.model->Forward(batch, engine.cache.get());
    EXPECT_TRUE(logits.ok()) << logits.status();
    if (!logits.ok()) return run;
    run.uploads_per_step.push_back(backend.host_to_device_copies() - copies);
    run.bytes_per_step.push_back(backend.host_to_device_bytes() - bytes);
    run.crossings_per_step.push_back(crossings);
    for (size_t s = 0; s < num_seqs; ++s) {
      decoded[s].emplace_back(logits->begin() + s * spec.vocab_size,
                              logits->begin() + (s + 1) * spec.vocab_size);
    }
  }

  testing::ReferenceModel reference(*engine.checkpoint);
  for (size_t s = 0; s < num_seqs; ++s) {
    const std::vector<std::vector<double>> expected =
        reference.LogitsWithKeptPositions(tokens[s], prompt_lengths[s], kept_for_reference[s]);
    for (int step = 0; step < kDecodeSteps; ++step) {
      const std::vector<double>& want = expected[prompt_lengths[s] + step];
      for (int64_t v = 0; v < spec.vocab_size; ++v) {
        EXPECT_NEAR(decoded[s][step][v], want[v], 1e-4 * (1.0 + std::abs(want[v])))
            << layers << " layers, sequence " << s << ", decode step " << step << ", token " << v;
      }
    }
  }
  return run;
}

TEST(StepTablesTest, DecodeStepUploadsMetadataAConstantNumberOfTimesWhateverTheDepth) {
  const DepthRun shallow = RunDepth(2);
  const DepthRun deep = RunDepth(6);
  ASSERT_EQ(shallow.uploads_per_step.size(), static_cast<size_t>(kDecodeSteps));
  ASSERT_EQ(deep.uploads_per_step.size(), static_cast<size_t>(kDecodeSteps));
  for (int step = 0; step < kDecodeSteps; ++step) {
    EXPECT_EQ(shallow.uploads_per_step[step], kUploadsPerForward) << "2 layers, step " << step;
    EXPECT_EQ(deep.uploads_per_step[step], kUploadsPerForward) << "6 layers, step " << step;
  }
}

// Block lists stay resident across steps: a decode step sends the small metadata and, for each
// stream that crossed a block boundary (the per-head lengths differ after compaction, so single
// streams cross), that stream's one new block id; compaction itself (tail blocks freed) sends
// none. Without the crossings, bytes grow with depth only by the per-stream slots, lengths and
// rows (3 int32 per (layer, sequence, KV head)).
TEST(StepTablesTest, ResidentDecodeStepsSendOnlyMetadataAndTheNewBlocksOfStreamsThatCrossed) {
  constexpr int64_t kSeqs = 3;
  const DepthRun shallow = RunDepth(2);
  const DepthRun deep = RunDepth(6);
  ASSERT_EQ(shallow.bytes_per_step.size(), static_cast<size_t>(kDecodeSteps));
  ASSERT_EQ(deep.bytes_per_step.size(), static_cast<size_t>(kDecodeSteps));
  int64_t partial_steps = 0;
  for (int step = 0; step < kDecodeSteps; ++step) {
    for (const auto& [layers, run] : {std::pair<int64_t, const DepthRun&>{2, shallow},
                                      std::pair<int64_t, const DepthRun&>{6, deep}}) {
      EXPECT_EQ(run.bytes_per_step[step], MetadataBytesPerDecodeStep(layers, kSeqs) +
                                              kBytesPerCrossing * run.crossings_per_step[step])
          << layers << " layers, step " << step << ", " << run.crossings_per_step[step]
          << " streams crossed a block boundary";
      // Only some streams crossed, so most rows sent nothing.
      partial_steps += run.crossings_per_step[step] > 0 &&
                       run.crossings_per_step[step] < layers * kSeqs * kKvHeads;
    }
    const auto no_growth = [](const DepthRun& run, int64_t layers, int step) {
      return run.bytes_per_step[step] - kBytesPerCrossing * run.crossings_per_step[step] -
             4 * 3 * layers * kSeqs * kKvHeads;
    };
    EXPECT_EQ(no_growth(shallow, 2, step), no_growth(deep, 6, step)) << "step " << step;
  }
  // The draw must exercise what the name claims: steps where only some streams crossed.
  EXPECT_GT(partial_steps, 0);
}

// Random ragged step tables over a pool of random K/V: 3 layers, 3 sequences (a 3-query prefill
// chunk, two single decode queries), 2 KV heads of different lengths per (layer, sequence).
struct RaggedStep {
  StepTables tables;
  std::vector<float> q;  // [rows, heads, head_dim]
};

constexpr int kLayers = 3;
constexpr int kHeads = 4;
constexpr int64_t kHeadDim = 8;
constexpr int64_t kPoolBlocks = 64;

RaggedStep MakeRaggedStep(std::mt19937_64& rng) {
  RaggedStep step;
  StepTables& t = step.tables;
  t.Reset(kLayers, kKvHeads, kHeads, 0.35f);
  const std::vector<int32_t> queries = {3, 1, 1};
  int32_t row = 0;
  for (int32_t n : queries) {
    t.sequences.push_back({.query_begin = row, .num_queries = n, .window_begin = 0});
    for (int32_t i = 0; i < n; ++i) t.positions.push_back(100 + row + i);
    row += n;
  }
  // Every stream takes distinct blocks from a shuffled list, so no two streams share one.
  std::vector<int32_t> free_blocks(kPoolBlocks);
  for (int32_t b = 0; b < kPoolBlocks; ++b) free_blocks[b] = b;
  std::shuffle(free_blocks.begin(), free_blocks.end(), rng);
  size_t next_block = 0;
  std::vector<std::vector<std::vector<int32_t>>> stream_blocks;  // [l][s * G + g]
  t.slots.assign(static_cast<size_t>(kLayers) * row * kKvHeads, 0);
  for (int l = 0; l < kLayers; ++l) {
    for (size_t s = 0; s < queries.size(); ++s) {
      for (int g = 0; g < kKvHeads; ++g) {
        // Lengths 1..9 (>= the sequence's queries), including exact block multiples.
        const int32_t kv_len = queries[s] + static_cast<int32_t>(rng() % 7);
        const size_t num_blocks = static_cast<size_t>((kv_len + kBlockSize - 1) / kBlockSize);
        std::vector<int32_t> blocks(free_blocks.begin() + next_block,
                                    free_blocks.begin() + next_block + num_blocks);
        next_block += num_blocks;
        t.AppendStream(kv_len, blocks);
        for (int32_t i = 0; i < queries[s]; ++i) {
          const int32_t index = kv_len - queries[s] + i;
          t.slots[(static_cast<size_t>(l) * row + t.sequences[s].query_begin + i) * kKvHeads + g] =
              blocks[index / kBlockSize] * kBlockSize + index % kBlockSize;
        }
      }
    }
  }
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  step.q.resize(static_cast<size_t>(row) * kHeads * kHeadDim);
  for (float& x : step.q) x = uniform(rng);
  return step;
}

class StepOpsTest : public testing::BackendOpsTest {
 protected:
  std::vector<float> RandomValues(size_t count, std::mt19937_64& rng) {
    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    std::vector<float> values(count);
    for (float& x : values) x = uniform(rng);
    return values;
  }
};

TEST_P(StepOpsTest, StepOpsMatchTheSpanOpsBitForBitAndOnlyPlanStepUploads) {
  std::mt19937_64 rng(99);
  const RaggedStep step = MakeRaggedStep(rng);
  const StepTables& t = step.tables;
  const int64_t rows = t.num_rows();
  const Shape pool_shape = {kPoolBlocks, 2, kBlockSize, kHeadDim};
  const std::vector<float> pool_values =
      RandomValues(static_cast<size_t>(kPoolBlocks * 2 * kBlockSize * kHeadDim), rng);
  Tensor pool_step = Upload(pool_values, act_, pool_shape);
  Tensor pool_span = Upload(pool_values, act_, pool_shape);
  const std::vector<float> inv_freq = {1.0f, 0.1f, 0.01f, 0.001f};
  Tensor freq = Upload(inv_freq, DType::kF32, {kHeadDim / 2});

  const int64_t before_plan = backend_->host_to_device_copies();
  ASSERT_TRUE(backend_->PlanStep(t, pool_step).ok());
  EXPECT_EQ(backend_->host_to_device_copies() - before_plan, 1) << "one upload for every layer";

  const std::vector<float> kv_values =
      RandomValues(static_cast<size_t>(rows * kKvHeads * kHeadDim), rng);
  for (int32_t l = 0; l < kLayers; ++l) {
    SCOPED_TRACE(absl::StrCat("layer ", l));
    Tensor q_step = Upload(step.q, act_, {rows, kHeads, kHeadDim});
    Tensor q_span = Upload(step.q, act_, {rows, kHeads, kHeadDim});
    Tensor k = Upload(kv_values, act_, {rows, kKvHeads, kHeadDim});
    Tensor v = Upload(kv_values, act_, {rows, kKvHeads, kHeadDim});
    Tensor out_step = Zeros(act_, {rows, kHeads, kHeadDim});
    Tensor out_span = Zeros(act_, {rows, kHeads, kHeadDim});

    const int64_t before_layer = backend_->host_to_device_copies();
    ASSERT_TRUE(backend_->RopeStep(freq, &q_step).ok());
    ASSERT_TRUE(backend_->WriteKvStep(l, k, v, &pool_step).ok());
    ASSERT_TRUE(backend_->AttentionStep(l, q_step, pool_step, &out_step).ok());
    EXPECT_EQ(backend_->host_to_device_copies(), before_layer) << "step ops upload nothing";

    std::vector<AttentionSequence> views;
    ASSERT_TRUE(backend_->Rope(t.positions, freq, &q_span).ok());
    ASSERT_TRUE(backend_->WriteKv(k, v, t.LayerSlots(l), &pool_span).ok());
    ASSERT_TRUE(backend_->Attention(t.LayerBatch(l, &views), q_span, pool_span, &out_span).ok());

    EXPECT_EQ(Download(q_step), Download(q_span)) << "RopeStep";
    EXPECT_EQ(Download(pool_step), Download(pool_span)) << "WriteKvStep";
    EXPECT_EQ(Download(out_step), Download(out_span)) << "AttentionStep";
  }
}

TEST_P(StepOpsTest, BadPlansAndStepCallsAreInvalidArgumentNamingTheField) {
  std::mt19937_64 rng(5);
  const RaggedStep step = MakeRaggedStep(rng);
  const int64_t rows = step.tables.num_rows();
  Tensor pool = Zeros(act_, {kPoolBlocks, 2, kBlockSize, kHeadDim});
  Tensor other_pool = Zeros(act_, {kPoolBlocks, 2, kBlockSize, kHeadDim});
  Tensor q = Zeros(act_, {rows, kHeads, kHeadDim});
  Tensor out = Zeros(act_, {rows, kHeads, kHeadDim});
  Tensor k = Zeros(act_, {rows, kKvHeads, kHeadDim});

  auto broken = [&](auto edit) {
    StepTables t = step.tables;
    edit(t);
    return backend_->PlanStep(t, pool);
  };
  ExpectInvalidArgument(broken([](StepTables& t) { t.slots.pop_back(); }), "PlanStep", "slots");
  ExpectInvalidArgument(broken([](StepTables& t) { t.slots[2] = kPoolBlocks * kBlockSize; }),
                        "PlanStep", "slots[2]");
  ExpectInvalidArgument(broken([](StepTables& t) { t.kv_lens.push_back(1); }), "PlanStep",
                        "kv_lens");
  // A stream longer than its blocks (layer 1, sequence 0, head 0 is stream index 6).
  ExpectInvalidArgument(broken([](StepTables& t) { t.kv_lens[6] += 2 * kBlockSize; }), "PlanStep",
                        "layer 1");
  ExpectInvalidArgument(broken([](StepTables& t) { t.block_ids[0] = kPoolBlocks; }), "PlanStep",
                        "block_ids");
  ExpectInvalidArgument(broken([](StepTables& t) { t.table_begin[1] = 1 << 20; }), "PlanStep",
                        "table_begin[1]");
  ExpectInvalidArgument(broken([](StepTables& t) { t.num_heads = 3; }), "PlanStep", "num_heads");
  ExpectInvalidArgument(broken([](StepTables& t) { t.sequences[2].num_queries = 9; }), "PlanStep",
                        "query_begin");

  // A failed PlanStep leaves no plan behind for the step ops.
  ExpectInvalidArgument(backend_->AttentionStep(0, q, pool, &out), "AttentionStep", "PlanStep");

  ASSERT_TRUE(backend_->PlanStep(step.tables, pool).ok());
  ExpectInvalidArgument(backend_->AttentionStep(kLayers, q, pool, &out), "AttentionStep", "layer");
  ExpectInvalidArgument(backend_->AttentionStep(-1, q, pool, &out), "AttentionStep", "layer");
  ExpectInvalidArgument(backend_->AttentionStep(0, q, other_pool, &out), "AttentionStep",
                        "kv_pool");
  ExpectInvalidArgument(backend_->WriteKvStep(0, k, k, &other_pool), "WriteKvStep", "kv_pool");
  Tensor short_q = Zeros(act_, {rows - 1, kHeads, kHeadDim});
  ExpectInvalidArgument(backend_->AttentionStep(0, short_q, pool, &out), "AttentionStep", "q");
  Tensor short_k = Zeros(act_, {rows - 1, kKvHeads, kHeadDim});
  ExpectInvalidArgument(backend_->WriteKvStep(0, short_k, short_k, &pool), "WriteKv", "slots");
}

// The ragged step made resident: stream i in row 2 * i + 1 of a 64-row table of 4 blocks a row.
void MakeResident(StepTables* t) {
  const size_t streams = t->kv_lens.size();
  t->resident_rows = 64;
  t->row_capacity = 4;
  t->stream_rows.resize(streams);
  t->stream_versions.resize(streams);
  t->row_reset.assign(streams, 0);
  for (size_t i = 0; i < streams; ++i) {
    t->stream_rows[i] = static_cast<int32_t>(2 * i + 1);
    t->stream_versions[i] = 10 + i;
  }
}

// Resident plans give the span ops' results bit for bit; the first sends every list, a second
// with unchanged versions none (on the CPU backend, exactly: 3 + count int32 per list, then only
// the metadata), one whose stream 4 grew one block sends only that entry.
TEST_P(StepOpsTest, ResidentPlansMatchTheSpanOpsAndSendOnlyChangedLists) {
  std::mt19937_64 rng(41);
  RaggedStep step = MakeRaggedStep(rng);
  StepTables& t = step.tables;
  MakeResident(&t);
  const int64_t rows = t.num_rows();
  const Shape pool_shape = {kPoolBlocks, 2, kBlockSize, kHeadDim};
  Tensor pool =
      Upload(RandomValues(static_cast<size_t>(kPoolBlocks * 2 * kBlockSize * kHeadDim), rng), act_,
             pool_shape);
  const bool cpu = std::string(backend_->name()) == "cpu";
  const auto plan_and_compare = [&](const std::string& what) -> int64_t {
    SCOPED_TRACE(what);
    const int64_t before = backend_->host_to_device_bytes();
    EXPECT_TRUE(backend_->PlanStep(t, pool).ok());
    const int64_t sent = backend_->host_to_device_bytes() - before;
    for (int32_t l = 0; l < kLayers; ++l) {
      Tensor q = Upload(step.q, act_, {rows, kHeads, kHeadDim});
      Tensor out_step = Zeros(act_, {rows, kHeads, kHeadDim});
      Tensor out_span = Zeros(act_, {rows, kHeads, kHeadDim});
      EXPECT_TRUE(backend_->AttentionStep(l, q, pool, &out_step).ok());
      std::vector<AttentionSequence> views;
      EXPECT_TRUE(backend_->Attention(t.LayerBatch(l, &views), q, pool, &out_span).ok());
      EXPECT_EQ(Download(out_step), Download(out_span)) << "layer " << l;
    }
    return sent;
  };
  const int64_t first = plan_and_compare("first plan");
  const int64_t unchanged = plan_and_compare("unchanged versions");
  EXPECT_LT(unchanged, first);
  if (cpu) {
    EXPECT_EQ(first, t.resident_metadata_bytes() +
                         4 * static_cast<int64_t>(3 * t.kv_lens.size() + t.block_ids.size()));
    EXPECT_EQ(unchanged, t.resident_metadata_bytes());
  }
  // Stream 4 (layer 0, sequence 2, head 0) takes a fresh block: a longer list, a new version.
  // Rebuild the CSR with one extra id after its list; lengths stay, so kernels read the same.
  const size_t pair = 2, head = 0;
  const int32_t at = t.table_begin[pair] + t.block_offsets[pair * (kKvHeads + 1) + head + 1];
  t.block_ids.insert(t.block_ids.begin() + at, kPoolBlocks - 1);
  for (size_t h = head + 1; h <= static_cast<size_t>(kKvHeads); ++h) {
    ++t.block_offsets[pair * (kKvHeads + 1) + h];
  }
  for (size_t p = pair + 1; p < t.table_begin.size(); ++p) ++t.table_begin[p];
  ++t.stream_versions[4];
  const int64_t grown = plan_and_compare("stream 4 grew a block");
  if (cpu) {
    EXPECT_EQ(grown, t.resident_metadata_bytes() + 4 * (3 + 1));
  }
}

TEST_P(StepOpsTest, BadResidencyIsInvalidArgumentNamingTheField) {
  std::mt19937_64 rng(6);
  RaggedStep step = MakeRaggedStep(rng);
  MakeResident(&step.tables);
  Tensor pool = Zeros(act_, {kPoolBlocks, 2, kBlockSize, kHeadDim});
  auto broken = [&](auto edit) {
    StepTables t = step.tables;
    edit(t);
    return backend_->PlanStep(t, pool);
  };
  ExpectInvalidArgument(broken([](StepTables& t) { t.stream_rows[0] = 64; }), "PlanStep",
                        "stream_rows[0]");
  ExpectInvalidArgument(broken([](StepTables& t) { t.stream_rows[3] = -1; }), "PlanStep",
                        "stream_rows[3]");
  ExpectInvalidArgument(broken([](StepTables& t) { t.stream_rows[1] = t.stream_rows[0]; }),
                        "PlanStep", "stream_rows[1]");
  ExpectInvalidArgument(broken([](StepTables& t) { t.stream_versions.pop_back(); }), "PlanStep",
                        "stream_versions");
  ExpectInvalidArgument(broken([](StepTables& t) { t.row_capacity = 1; }), "PlanStep",
                        "row_capacity");
  ExpectInvalidArgument(broken([](StepTables& t) { t.resident_rows = 1 << 30; }), "PlanStep",
                        "resident_rows");
  // A version older than the row's last upload: stale tables.
  ASSERT_TRUE(backend_->PlanStep(step.tables, pool).ok());
  ExpectInvalidArgument(broken([](StepTables& t) { t.stream_versions[5] -= 1; }), "PlanStep",
                        "stream_versions[5]");
  // ... unless the row was just handed to that stream.
  EXPECT_TRUE(broken([](StepTables& t) {
                t.stream_versions[5] -= 1;
                t.row_reset[5] = 1;
              }).ok());
}

INSTANTIATE_TEST_SUITE_P(Backends, StepOpsTest, ::testing::ValuesIn(BackendConfigsToTest()),
                         testing::BackendConfigLabel);

}  // namespace
}  // namespace zigzag
