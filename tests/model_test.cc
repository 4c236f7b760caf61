// The forward pass against the naive float64 reference (tests/reference_model.h) on small random
// checkpoints of every supported architecture and dtype, and KV-cache consistency: prefill,
// chunked prefill and step-by-step decode give the logits of recomputing the whole sequence.
#include <algorithm>
#include <cmath>
#include <random>

#include "core/engine/generation.h"
#include "core/model/checkpoint.h"
#include "core/model/checkpoint_writer.h"
#include "core/model/llama_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/backend_registry.h"
#include "tests/reference_model.h"
#include "tests/test_support.h"

namespace zigzag {
namespace {

using ::testing::HasSubstr;

struct Case {
  std::string name;
  RandomCheckpointSpec spec;
  friend void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }
};

std::vector<Case> Cases() {
  std::vector<Case> cases;
  RandomCheckpointSpec llama;
  llama.architecture = "LlamaForCausalLM";
  llama.vocab_size = 97;
  llama.hidden_size = 48;
  llama.intermediate_size = 80;
  llama.num_layers = 3;
  llama.num_heads = 4;
  llama.num_kv_heads = 2;
  llama.rope_theta = 500000.0;
  llama.rope_scaling = RopeScaling{"llama3", 8.0, 1.0, 4.0, 64};
  llama.seed = 11;
  cases.push_back({"llama_llama3_rope_f32_untied", llama});

  RandomCheckpointSpec mistral = llama;
  mistral.architecture = "MistralForCausalLM";
  mistral.rope_scaling.reset();
  mistral.rope_theta = 10000.0;
  mistral.num_kv_heads = 1;
  mistral.tie_word_embeddings = true;
  mistral.dtype = DType::kBF16;
  mistral.seed = 12;
  cases.push_back({"mistral_bf16_tied_mqa", mistral});

  RandomCheckpointSpec qwen = llama;
  qwen.architecture = "Qwen2ForCausalLM";
  qwen.rope_scaling.reset();
  qwen.rope_theta = 1000000.0;
  qwen.num_heads = 6;
  qwen.num_kv_heads = 2;
  qwen.head_dim = 8;  // explicit head_dim, different from hidden / heads
  qwen.tie_word_embeddings = true;
  qwen.dtype = DType::kBF16;
  qwen.seed = 13;
  cases.push_back({"qwen2_bias_bf16_tied_head_dim", qwen});

  RandomCheckpointSpec sharded = llama;
  sharded.dtype = DType::kF16;
  sharded.num_shards = 3;
  sharded.qkv_bias = true;
  sharded.seed = 14;
  cases.push_back({"llama_f16_sharded_bias", sharded});
  return cases;
}

class ModelTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("model");
    ASSERT_TRUE(WriteRandomCheckpoint(dir_, GetParam().spec).ok());
    auto checkpoint = Checkpoint::Open(dir_);
    ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
    checkpoint_ = std::move(*checkpoint);
    auto backend = CreateBackend("cpu");
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend_ = std::move(*backend);
    auto model = LlamaModel::Load(*checkpoint_, backend_.get());
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
    // The bytes of 512 blocks that held every KV head; a block now holds one KV head.
    auto cache = KvCache::Create(backend_.get(), model_->kv_layout(/*block_size=*/4),
                                 512 * static_cast<int32_t>(model_->config().num_kv_heads));
    ASSERT_TRUE(cache.ok()) << cache.status();
    cache_ = std::move(*cache);
    reference_ = std::make_unique<testing::ReferenceModel>(*checkpoint_);
  }

  std::vector<int32_t> RandomTokens(size_t n, uint64_t seed) const {
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<int32_t> dist(
        0, static_cast<int32_t>(model_->config().vocab_size - 1));
    std::vector<int32_t> out(n);
    for (auto& t : out) t = dist(rng);
    return out;
  }

  // Max |a - b| over the row divided by max |b|: the relative error of a logits row.
  static double RowError(std::span<const float> got, const std::vector<double>& want) {
    double max_diff = 0, max_ref = 1e-12;
    for (size_t i = 0; i < want.size(); ++i) {
      max_diff = std::max(max_diff, std::abs(got[i] - want[i]));
      max_ref = std::max(max_ref, std::abs(want[i]));
    }
    return max_diff / max_ref;
  }

  std::filesystem::path dir_;
  std::unique_ptr<Checkpoint> checkpoint_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<KvCache> cache_;
  std::unique_ptr<testing::ReferenceModel> reference_;
};

TEST_P(ModelTest, PrefillLogitsMatchFloat64Reference) {
  const std::vector<int32_t> tokens = RandomTokens(13, 1);
  SequenceKv kv(&cache_->pool(), static_cast<int>(model_->config().num_layers),
                static_cast<int>(model_->config().num_kv_heads));
  ASSERT_TRUE(kv.AppendAllLayers(tokens.size()).ok());
  ForwardSequence seq{.tokens = tokens, .first_position = 0, .kv = &kv, .all_logits = true};
  auto logits = model_->Forward({&seq, 1}, cache_.get());
  ASSERT_TRUE(logits.ok()) << logits.status();
  const auto want = reference_->Logits(tokens);
  const size_t vocab = model_->config().vocab_size;
  ASSERT_EQ(logits->size(), tokens.size() * vocab);
  for (size_t p = 0; p < tokens.size(); ++p) {
    EXPECT_LT(RowError({logits->data() + p * vocab, vocab}, want[p]), 1e-4) << "position " << p;
  }
}

TEST_P(ModelTest, DecodeAndChunkedPrefillMatchRecomputation) {
  const std::vector<int32_t> tokens = RandomTokens(19, 2);
  const auto want = reference_->Logits(tokens);
  const size_t vocab = model_->config().vocab_size;
  SequenceKv kv(&cache_->pool(), static_cast<int>(model_->config().num_layers),
                static_cast<int>(model_->config().num_kv_heads));
  // Chunks of 7 and 5 (crossing block boundaries of size 4), then one token at a time.
  size_t done = 0;
  for (size_t chunk : {size_t{7}, size_t{5}, size_t{1}, size_t{1}, size_t{1}, size_t{1}, size_t{1},
                       size_t{1}, size_t{1}}) {
    ASSERT_TRUE(kv.AppendAllLayers(chunk).ok());
    ForwardSequence seq{.tokens = std::span<const int32_t>(tokens).subspan(done, chunk),
                        .first_position = static_cast<int64_t>(done),
                        .kv = &kv,
                        .all_logits = true};
    auto logits = model_->Forward({&seq, 1}, cache_.get());
    ASSERT_TRUE(logits.ok()) << logits.status();
    for (size_t i = 0; i < chunk; ++i) {
      EXPECT_LT(RowError({logits->data() + i * vocab, vocab}, want[done + i]), 1e-4)
          << "position " << done + i;
    }
    done += chunk;
  }
  EXPECT_EQ(done, tokens.size());
}

TEST_P(ModelTest, RaggedBatchMatchesEachSequenceAlone) {
  std::vector<std::vector<int32_t>> prompts = {RandomTokens(1, 3), RandomTokens(9, 4),
                                               RandomTokens(4, 5), RandomTokens(16, 6)};
  std::vector<GenerationRequest> requests;
  for (auto& p : prompts) {
    GenerationRequest r;
    r.prompt = p;
    r.sampling.temperature = 0;
    r.sampling.max_tokens = 12;
    r.sampling.ignore_eos = true;
    requests.push_back(r);
  }
  auto together = GenerateBatch(*model_, *cache_, requests);
  ASSERT_TRUE(together.ok()) << together.status();
  EXPECT_EQ(cache_->pool().num_used(), 0);
  for (size_t i = 0; i < requests.size(); ++i) {
    auto alone = GenerateBatch(*model_, *cache_, {&requests[i], 1});
    ASSERT_TRUE(alone.ok()) << alone.status();
    EXPECT_EQ((*together)[i].tokens, (*alone)[0].tokens) << "request " << i;
    EXPECT_EQ((*together)[i].tokens.size(), 12u);
    EXPECT_EQ((*together)[i].finish_reason, FinishReason::kLength);
  }
  // Greedy tokens are the argmax of the reference logits of the growing sequence.
  std::vector<int32_t> seq = prompts[1];
  for (int32_t token : (*together)[1].tokens) {
    const auto want = reference_->Logits(seq).back();
    const int32_t argmax =
        static_cast<int32_t>(std::max_element(want.begin(), want.end()) - want.begin());
    EXPECT_EQ(token, argmax);
    seq.push_back(token);
  }
  EXPECT_EQ(cache_->pool().num_used(), 0);
}

INSTANTIATE_TEST_SUITE_P(Architectures, ModelTest, ::testing::ValuesIn(Cases()),
                         [](const auto& info) { return info.param.name; });

class ModelErrorsTest : public ModelTest {};

TEST_P(ModelErrorsTest, BadBatchesGetClearErrors) {
  const int num_layers = static_cast<int>(model_->config().num_layers);
  SequenceKv kv(&cache_->pool(), num_layers, static_cast<int>(model_->config().num_kv_heads));
  std::vector<int32_t> bad = {1, static_cast<int32_t>(model_->config().vocab_size)};
  ASSERT_TRUE(kv.AppendAllLayers(2).ok());
  ForwardSequence seq{.tokens = bad, .first_position = 0, .kv = &kv};
  EXPECT_THAT(model_->Forward({&seq, 1}, cache_.get()).status().message(),
              HasSubstr("outside the vocabulary"));

  std::vector<int32_t> three = {1, 2, 3};
  ForwardSequence unreserved{.tokens = three, .first_position = 0, .kv = &kv};
  EXPECT_THAT(model_->Forward({&unreserved, 1}, cache_.get()).status().message(),
              HasSubstr("reserve them first"));

  std::vector<int32_t> one = {1};
  ForwardSequence late{.tokens = one, .first_position = model_->config().max_context(), .kv = &kv};
  EXPECT_THAT(model_->Forward({&late, 1}, cache_.get()).status().message(),
              HasSubstr("beyond the model's context"));
  EXPECT_THAT(model_->Forward({}, cache_.get()).status().message(), HasSubstr("empty batch"));
  kv.Release();
  EXPECT_EQ(cache_->pool().num_used(), 0);
}

TEST_P(ModelErrorsTest, BadRequestsAndExhaustedPoolLeaveThePoolFree) {
  GenerationRequest empty;
  auto result = GenerateBatch(*model_, *cache_, {&empty, 1});
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(result.status().message(), HasSubstr("prompt is empty"));

  GenerationRequest too_long;
  too_long.prompt = {1, 2, 3};
  too_long.sampling.max_tokens = static_cast<int32_t>(model_->config().max_context());
  result = GenerateBatch(*model_, *cache_, {&too_long, 1});
  EXPECT_THAT(result.status().message(), HasSubstr("exceeds the model's context"));

  // 512 blocks of 4 tokens hold 2048 token-layers; these prompts need far more.
  std::vector<GenerationRequest> huge(4);
  for (auto& r : huge) {
    r.prompt = RandomTokens(400, 9);
    r.sampling.max_tokens = 4;
  }
  result = GenerateBatch(*model_, *cache_, huge);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(cache_->pool().num_used(), 0);
}

INSTANTIATE_TEST_SUITE_P(Llama, ModelErrorsTest, ::testing::Values(Cases()[0]),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace zigzag
