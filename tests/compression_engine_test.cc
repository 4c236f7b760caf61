// KV compression inside the engine, against independent references: attention after compaction
// equals naive attention over exactly the kept positions; full (or a budget >= T) changes nothing;
// greedy decoding of 100+ tokens with compression follows a float64 model that attends only to the
// kept positions; block accounting and KvStats match the pool's own counters.
#include <algorithm>
#include <cmath>
#include <random>

#include "core/engine/generation.h"
#include "core/engine/prefill_compression.h"
#include "core/kv/kv_stats.h"
#include "core/model/checkpoint.h"
#include "core/model/checkpoint_writer.h"
#include "core/model/llama_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/backend_registry.h"
#include "tests/reference_model.h"
#include "tests/test_support.h"
#include "tests/tiny_engine.h"

namespace zigzag {
namespace {

constexpr int32_t kBlockSize = 4;

class CompressionEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RandomCheckpointSpec spec;
    spec.vocab_size = 97;
    spec.hidden_size = 48;
    spec.intermediate_size = 80;
    spec.num_layers = 3;
    spec.num_heads = 4;
    spec.num_kv_heads = 2;
    spec.seed = 21;
    // 800 blocks of one KV head: the bytes of 400 blocks holding both heads.
    auto engine = testing::MakeTinyEngine(spec, kBlockSize, 800, "compression");
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
  }

  const ModelConfig& config() const { return engine_.model->config(); }
  int num_layers() const { return static_cast<int>(config().num_layers); }

  std::vector<int32_t> RandomTokens(size_t n, uint64_t seed) const {
    std::mt19937_64 rng(seed);
    std::vector<int32_t> out(n);
    for (auto& t : out) t = static_cast<int32_t>(rng() % config().vocab_size);
    return out;
  }

  // Prefills `prompt` into `kv` with window summaries and compresses it.
  CompressionPlan PrefillAndCompress(const std::vector<int32_t>& prompt,
                                     const CompressionParams& params, SequenceKv& kv,
                                     KvStats* stats) {
    EXPECT_TRUE(kv.AppendAllLayers(static_cast<int64_t>(prompt.size())).ok());
    auto compression =
        PrefillCompression::Create(params, config(), *engine_.backend, prompt.size());
    EXPECT_TRUE(compression.ok()) << compression.status();
    ForwardSequence seq{.tokens = prompt,
                        .first_position = 0,
                        .kv = &kv,
                        .window_mass = compression->window_mass(),
                        .window_begin = compression->window_begin()};
    EXPECT_TRUE(engine_.model->Forward({&seq, 1}, engine_.cache.get()).ok());
    auto plan = compression->Apply(*engine_.backend, *engine_.cache, kv, stats);
    EXPECT_TRUE(plan.ok()) << plan.status();
    return plan.ok() ? *plan : CompressionPlan();
  }

  // ceil(length / block) over every (layer, KV head) stream.
  int64_t ExpectedBlocks(const SequenceKv& kv) const {
    int64_t blocks = 0;
    for (int l = 0; l < kv.num_layers(); ++l) {
      for (int g = 0; g < kv.num_kv_heads(); ++g) {
        blocks += (kv.length(l, g) + kBlockSize - 1) / kBlockSize;
      }
    }
    return blocks;
  }
  int num_kv_heads() const { return static_cast<int>(config().num_kv_heads); }

  testing::TinyEngine engine_;
};

CompressionParams Params(KvPolicy policy, int64_t tokens_per_layer) {
  CompressionParams params;
  params.policy = policy;
  if (policy != KvPolicy::kFull) params.tokens_per_layer = tokens_per_layer;
  params.window = 4;
  params.kernel = 3;
  return params;
}

const KvPolicy kAllPolicies[] = {KvPolicy::kFull, KvPolicy::kStreaming, KvPolicy::kSnapKv,
                                 KvPolicy::kPyramidKv, KvPolicy::kZigZag};

// Uniform and adaptive head splits: under adaptive the KV heads of a layer keep different counts,
// and each query head must attend over exactly its own KV head's kept positions.
TEST_F(CompressionEngineTest, AttentionAfterCompactionSeesExactlyTheKeptPositions) {
  const int64_t heads = config().num_heads, kv_heads = config().num_kv_heads;
  const int64_t hd = config().head_dim, group = heads / kv_heads;
  const std::vector<int32_t> prompt = RandomTokens(40, 1);
  int unequal_layers = 0;
  for (KvPolicy policy : kAllPolicies) {
    for (HeadBudgets split : {HeadBudgets::kUniform, HeadBudgets::kAdaptive}) {
      SCOPED_TRACE(std::string(KvPolicyName(policy)) + " " + HeadBudgetsName(split));
      SequenceKv kv(&engine_.cache->pool(), num_layers(), num_kv_heads());
      // The pool before compaction, and each stream's blocks, to read original K/V from.
      EXPECT_TRUE(kv.AppendAllLayers(static_cast<int64_t>(prompt.size())).ok());
      CompressionParams params = Params(policy, 16);
      params.head_budgets = split;
      auto compression = PrefillCompression::Create(params, config(), *engine_.backend, 40);
      ASSERT_TRUE(compression.ok());
      ForwardSequence seq{.tokens = prompt,
                          .kv = &kv,
                          .window_mass = compression->window_mass(),
                          .window_begin = compression->window_begin()};
      ASSERT_TRUE(engine_.model->Forward({&seq, 1}, engine_.cache.get()).ok());
      std::vector<float> before(engine_.cache->pool_tensor().numel());
      ASSERT_TRUE(engine_.backend->CopyToHost(engine_.cache->pool_tensor(), before).ok());
      std::vector<std::vector<std::vector<int32_t>>> blocks_before(num_layers());  // [l][g]
      for (int l = 0; l < num_layers(); ++l) {
        for (int g = 0; g < kv_heads; ++g) {
          blocks_before[l].emplace_back(kv.blocks(l, g).begin(), kv.blocks(l, g).end());
        }
      }
      KvStats stats;
      auto plan = compression->Apply(*engine_.backend, *engine_.cache, kv, &stats);
      ASSERT_TRUE(plan.ok()) << plan.status();
      EXPECT_EQ(plan->compressed, policy != KvPolicy::kFull);
      // Entry `entry` of a stream, in the pool [num_blocks, 2, block, head_dim] before compaction.
      auto pool_at = [&](const std::vector<int32_t>& blocks, int64_t entry, int kv_index,
                         int64_t e) {
        const int64_t block = blocks[entry / kBlockSize];
        return static_cast<double>(
            before[((block * 2 + kv_index) * kBlockSize + entry % kBlockSize) * hd + e]);
      };

      // A new token in every layer: its key/value and a query, random.
      ASSERT_TRUE(kv.AppendAllLayers(1).ok());
      for (int l = 0; l < num_layers(); ++l) {
        std::vector<int32_t> lens, offsets = {0}, blocks, slots;
        for (int g = 0; g < kv_heads; ++g) {
          const int64_t len = kv.length(l, g);
          EXPECT_EQ(len,
                    (plan->compressed ? static_cast<int64_t>(plan->kept[l][g].size()) : 40) + 1);
          lens.push_back(static_cast<int32_t>(len));
          blocks.insert(blocks.end(), kv.blocks(l, g).begin(), kv.blocks(l, g).end());
          offsets.push_back(static_cast<int32_t>(blocks.size()));
          slots.push_back(kv.Slot(l, g, len - 1));
        }
        unequal_layers += *std::max_element(lens.begin(), lens.end()) !=
                          *std::min_element(lens.begin(), lens.end());
        const std::vector<float> k_new = testing::RandomFloats(kv_heads * hd, 100 + l);
        const std::vector<float> v_new = testing::RandomFloats(kv_heads * hd, 200 + l);
        const std::vector<float> q_new = testing::RandomFloats(heads * hd, 300 + l, -2, 2);
        auto upload = [&](const std::vector<float>& host, const Shape& shape) {
          Tensor t = *engine_.backend->Allocate(DType::kF32, shape);
          EXPECT_TRUE(engine_.backend->CopyToDevice(host.data(), DType::kF32, &t).ok());
          return t;
        };
        Tensor k = upload(k_new, {1, kv_heads, hd}), v = upload(v_new, {1, kv_heads, hd});
        Tensor q = upload(q_new, {1, heads, hd});
        Tensor out = *engine_.backend->Allocate(DType::kF32, {1, heads, hd});
        ASSERT_TRUE(engine_.backend->WriteKv(k, v, slots, &engine_.cache->pool_tensor()).ok());
        AttentionSequence a{.query_begin = 0,
                            .num_queries = 1,
                            .kv_lens = lens,
                            .block_offsets = offsets,
                            .block_ids = blocks};
        AttentionBatch batch{.sequences = {&a, 1},
                             .num_kv_heads = static_cast<int32_t>(kv_heads),
                             .scale = 1.0f / std::sqrt(static_cast<float>(hd))};
        ASSERT_TRUE(engine_.backend->Attention(batch, q, engine_.cache->pool_tensor(), &out).ok());
        std::vector<float> got(heads * hd);
        ASSERT_TRUE(engine_.backend->CopyToHost(out, got).ok());

        for (int64_t h = 0; h < heads; ++h) {
          const int64_t g = h / group;
          std::vector<int64_t> kept;
          if (plan->compressed) {
            kept.assign(plan->kept[l][g].begin(), plan->kept[l][g].end());
          } else {
            for (int64_t j = 0; j < 40; ++j) kept.push_back(j);
          }
          // Naive float64 attention over the kept prompt positions (original K/V) + the new token.
          std::vector<double> logits;
          for (int64_t j : kept) {
            double dot = 0;
            for (int64_t e = 0; e < hd; ++e)
              dot += q_new[h * hd + e] * pool_at(blocks_before[l][g], j, 0, e);
            logits.push_back(dot / std::sqrt(static_cast<double>(hd)));
          }
          double dot = 0;
          for (int64_t e = 0; e < hd; ++e) dot += q_new[h * hd + e] * k_new[g * hd + e];
          logits.push_back(dot / std::sqrt(static_cast<double>(hd)));
          const double mx = *std::max_element(logits.begin(), logits.end());
          double sum = 0;
          for (double& z : logits) sum += (z = std::exp(z - mx));
          for (int64_t e = 0; e < hd; ++e) {
            double want = 0;
            for (size_t a = 0; a < kept.size(); ++a)
              want += logits[a] / sum * pool_at(blocks_before[l][g], kept[a], 1, e);
            want += logits.back() / sum * v_new[g * hd + e];
            EXPECT_NEAR(got[h * hd + e], want, 1e-5 * (1 + std::abs(want)))
                << "layer " << l << " head " << h << " dim " << e;
          }
        }
      }
      kv.Release();
      EXPECT_EQ(engine_.cache->pool().num_used(), 0);
    }
  }
  // The adaptive runs really left heads of one layer at different lengths.
  EXPECT_GT(unequal_layers, 0);
}

TEST_F(CompressionEngineTest, FullAndBudgetsCoveringThePromptChangeNothing) {
  GenerationRequest base;
  base.prompt = RandomTokens(30, 2);
  base.sampling.temperature = 0;
  base.sampling.max_tokens = 20;
  base.sampling.ignore_eos = true;
  base.sampling.logprobs = true;
  auto reference = GenerateBatch(*engine_.model, *engine_.cache, {&base, 1});
  ASSERT_TRUE(reference.ok()) << reference.status();
  std::vector<CompressionParams> variants = {
      Params(KvPolicy::kFull, 0), Params(KvPolicy::kZigZag, 30), Params(KvPolicy::kSnapKv, 64)};
  CompressionParams ratio_one = Params(KvPolicy::kZigZag, 0);
  ratio_one.tokens_per_layer.reset();
  ratio_one.ratio = 1.0;
  variants.push_back(ratio_one);
  for (const CompressionParams& params : variants) {
    GenerationRequest request = base;
    request.compression = params;
    auto result = GenerateBatch(*engine_.model, *engine_.cache, {&request, 1});
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ((*result)[0].tokens, (*reference)[0].tokens) << KvPolicyName(params.policy);
    EXPECT_EQ((*result)[0].logprobs, (*reference)[0].logprobs) << KvPolicyName(params.policy);
    EXPECT_FALSE((*result)[0].kv_stats.compressed);
    EXPECT_EQ((*result)[0].kv_stats.retained_ratio, 1.0);
  }
}

TEST_F(CompressionEngineTest, GreedyDecodingWithCompressionFollowsNaiveKeptModel) {
  testing::ReferenceModel reference(*engine_.checkpoint);
  const std::vector<int32_t> prompt = RandomTokens(48, 3);
  for (KvPolicy policy :
       {KvPolicy::kStreaming, KvPolicy::kSnapKv, KvPolicy::kPyramidKv, KvPolicy::kZigZag}) {
    SCOPED_TRACE(KvPolicyName(policy));
    GenerationRequest request;
    request.prompt = prompt;
    request.sampling.temperature = 0;
    request.sampling.max_tokens = 104;
    request.sampling.ignore_eos = true;
    request.sampling.logprobs = true;
    request.compression = Params(policy, 0);
    request.compression.tokens_per_layer.reset();
    request.compression.ratio = 0.4;  // B_avg = 20 of 48
    request.return_plan = true;
    auto result = GenerateBatch(*engine_.model, *engine_.cache, {&request, 1});
    ASSERT_TRUE(result.ok()) << result.status();
    const GenerationResult& r = (*result)[0];
    ASSERT_TRUE(r.plan.compressed);
    ASSERT_EQ(r.tokens.size(), 104u);
    EXPECT_EQ(r.kv_stats.average_budget, 20);

    std::vector<std::vector<std::vector<int64_t>>> kept(num_layers());
    for (int l = 0; l < num_layers(); ++l) {
      for (const auto& head : r.plan.kept[l]) kept[l].emplace_back(head.begin(), head.end());
    }
    std::vector<int32_t> sequence = prompt;
    for (size_t i = 0; i < r.tokens.size(); ++i) {
      const std::vector<double> logits =
          reference.LogitsWithKeptPositions(sequence, static_cast<int64_t>(prompt.size()), kept)
              .back();
      const double mx = *std::max_element(logits.begin(), logits.end());
      double sum = 0;
      for (double z : logits) sum += std::exp(z - mx);
      const double want_logprob = logits[r.tokens[i]] - mx - std::log(sum);
      EXPECT_NEAR(r.logprobs[i], want_logprob, 1e-3) << "step " << i;
      // Greedy picks the reference's argmax (or a token within float noise of it).
      EXPECT_GE(logits[r.tokens[i]], mx - 1e-4) << "step " << i;
      sequence.push_back(r.tokens[i]);
    }
    EXPECT_EQ(engine_.cache->pool().num_used(), 0);
  }
}

TEST_F(CompressionEngineTest, BlockAccountingAndKvStatsFollowThePool) {
  const int32_t total = engine_.cache->pool().num_blocks();
  std::vector<std::unique_ptr<SequenceKv>> sequences;
  std::vector<std::vector<int32_t>> prompts = {RandomTokens(37, 4), RandomTokens(29, 5),
                                               RandomTokens(50, 6)};
  std::vector<KvStats> stats(prompts.size());
  auto used_should_be = [&] {
    int64_t blocks = 0;
    for (const auto& kv : sequences) blocks += ExpectedBlocks(*kv);
    return blocks;
  };
  CompressionParams params = Params(KvPolicy::kZigZag, 0);
  params.tokens_per_layer.reset();
  params.ratio = 0.3;
  for (size_t s = 0; s < prompts.size(); ++s) {
    sequences.push_back(
        std::make_unique<SequenceKv>(&engine_.cache->pool(), num_layers(), num_kv_heads()));
    const int32_t free_before = engine_.cache->pool().num_free();
    CompressionPlan plan = PrefillAndCompress(prompts[s], params, *sequences.back(), &stats[s]);
    ASSERT_TRUE(plan.compressed);
    EXPECT_EQ(engine_.cache->pool().num_used(), used_should_be());
    // Only the compressed streams' blocks stay taken (uniform: every head keeps the budget).
    int64_t kept_blocks = 0;
    for (int64_t budget : plan.budgets) {
      kept_blocks += num_kv_heads() * ((budget + kBlockSize - 1) / kBlockSize);
    }
    EXPECT_EQ(free_before - engine_.cache->pool().num_free(), kept_blocks);
  }
  // Decode 9 steps for every sequence, checking the invariant after each.
  std::vector<int64_t> positions;
  for (const auto& p : prompts) positions.push_back(static_cast<int64_t>(p.size()));
  for (int step = 0; step < 9; ++step) {
    std::vector<ForwardSequence> batch;
    const int32_t token = 7;
    for (size_t s = 0; s < sequences.size(); ++s) {
      ASSERT_TRUE(sequences[s]->AppendAllLayers(1).ok());
      batch.push_back(ForwardSequence{
          .tokens = {&token, 1}, .first_position = positions[s]++, .kv = sequences[s].get()});
    }
    ASSERT_TRUE(engine_.model->Forward(batch, engine_.cache.get()).ok());
    EXPECT_EQ(engine_.cache->pool().num_used(), used_should_be()) << "step " << step;
  }
  // KvStats of each sequence agree with its blocks and the pool's bytes.
  int64_t retained_block_bytes = 0;
  for (size_t s = 0; s < sequences.size(); ++s) {
    stats[s].appended_tokens = 9;
    FillKvMemoryStats(*sequences[s], engine_.cache->layout(), &stats[s]);
    EXPECT_EQ(stats[s].blocks_held, ExpectedBlocks(*sequences[s]));
    int64_t kept_tokens = 0;
    for (int64_t kept : stats[s].prompt_kept_per_layer) kept_tokens += kept + 9;
    EXPECT_EQ(stats[s].retained_kv_bytes,
              kept_tokens * engine_.cache->layout().bytes_per_token_layer());
    EXPECT_EQ(stats[s].full_kv_bytes, num_layers() * (static_cast<int64_t>(prompts[s].size()) + 9) *
                                          engine_.cache->layout().bytes_per_token_layer());
    EXPECT_EQ(stats[s].saved_kv_bytes,
              stats[s].full_kv_block_bytes - stats[s].retained_kv_block_bytes);
    EXPECT_GT(stats[s].saved_kv_bytes, 0);
    retained_block_bytes += stats[s].retained_kv_block_bytes;
  }
  EXPECT_EQ(retained_block_bytes, engine_.cache->bytes_in_use());
  // The blocks compression freed serve another sequence: it can take exactly all that are free.
  SequenceKv other(&engine_.cache->pool(), 1, 1);
  const int32_t free_now = engine_.cache->pool().num_free();
  ASSERT_TRUE(other.Append(0, 0, int64_t{free_now} * kBlockSize).ok());
  EXPECT_EQ(engine_.cache->pool().num_free(), 0);
  EXPECT_EQ(other.Append(0, 0, 1).code(), absl::StatusCode::kResourceExhausted);
  other.Release();
  for (auto& kv : sequences) kv->Release();
  EXPECT_EQ(engine_.cache->pool().num_free(), total);
}

TEST_F(CompressionEngineTest, GenerationReportsStatsFromTheBlocksItHeld) {
  GenerationRequest request;
  request.prompt = RandomTokens(61, 7);
  request.sampling.temperature = 0;
  request.sampling.max_tokens = 12;
  request.sampling.ignore_eos = true;
  request.compression = Params(KvPolicy::kPyramidKv, 24);
  auto result = GenerateBatch(*engine_.model, *engine_.cache, {&request, 1});
  ASSERT_TRUE(result.ok()) << result.status();
  const KvStats& stats = (*result)[0].kv_stats;
  ASSERT_TRUE(stats.compressed);
  EXPECT_EQ(stats.appended_tokens, 11);  // the last sampled token is never written
  // Both KV heads of every layer hold kept + 11 entries, in blocks of one head each.
  int64_t blocks = 0, tokens = 0;
  for (int64_t kept : stats.prompt_kept_per_layer) {
    blocks += 2 * ((kept + 11 + kBlockSize - 1) / kBlockSize);
    tokens += kept + 11;
  }
  EXPECT_EQ(stats.blocks_held, blocks);
  EXPECT_EQ(stats.retained_kv_block_bytes, blocks * engine_.cache->layout().bytes_per_block());
  EXPECT_EQ(stats.retained_kv_bytes, tokens * engine_.cache->layout().bytes_per_token_layer());
  EXPECT_DOUBLE_EQ(stats.retained_ratio, static_cast<double>(tokens) / (3.0 * (61 + 11)));
  EXPECT_EQ(engine_.cache->pool().num_used(), 0);
}

TEST_F(CompressionEngineTest, BadCompressionParametersAreRejectedBeforeAnyWork) {
  GenerationRequest request;
  request.prompt = RandomTokens(10, 8);
  request.compression = Params(KvPolicy::kZigZag, 2);  // below the window of 4
  auto result = GenerateBatch(*engine_.model, *engine_.cache, {&request, 1});
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(result.status().message(), ::testing::HasSubstr("tokens_per_layer"));
  request.compression = Params(KvPolicy::kSnapKv, 8);
  request.compression.kernel = 4;
  result = GenerateBatch(*engine_.model, *engine_.cache, {&request, 1});
  EXPECT_THAT(result.status().message(), ::testing::HasSubstr("kernel"));
  EXPECT_EQ(engine_.cache->pool().num_used(), 0);
}

}  // namespace
}  // namespace zigzag
