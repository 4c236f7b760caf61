// ForwardSequence::captured_window_queries (the profiling hook of LlamaModel::Forward): layer 0's
// captured queries equal q recomputed in float64 from the checkpoint's weights; in every layer the
// window mass recomputed in float64 from the captured queries and the cached keys equals the mass
// the backend's attention accumulated (so they are the queries attention used, in [i][h][d]
// order); chunked prefills and ragged batches capture only their window rows; errors.
#include <cmath>
#include <cstring>
#include <random>

#include "core/kv/kv_cache.h"
#include "core/kv/sequence_kv.h"
#include "core/model/checkpoint.h"
#include "core/model/checkpoint_writer.h"
#include "core/model/llama_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/backend_registry.h"
#include "tests/test_support.h"
#include "tests/tiny_engine.h"

namespace zigzag {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kTokens = 13;
constexpr int32_t kWindow = 5;
constexpr int32_t kWindowBegin = kTokens - kWindow;
constexpr int32_t kBlockSize = 4;

class ProfileCaptureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    spec_.vocab_size = 61;
    spec_.hidden_size = 32;
    spec_.intermediate_size = 48;
    spec_.num_layers = 3;
    spec_.num_heads = 4;
    spec_.num_kv_heads = 2;
    spec_.qkv_bias = true;
    spec_.rope_theta = 10000.0;
    spec_.seed = 21;
    auto engine = testing::MakeTinyEngine(spec_, kBlockSize, 512, "profile_capture");
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
    std::mt19937_64 rng(5);
    std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(spec_.vocab_size - 1));
    for (int64_t i = 0; i < kTokens; ++i) tokens_.push_back(id(rng));
  }

  const ModelConfig& config() const { return engine_.model->config(); }
  int64_t QueryFloats() const { return config().num_heads * config().head_dim; }

  std::vector<double> Weight(const std::string& name, const Shape& shape) const {
    auto view = engine_.checkpoint->Get(name, shape);
    EXPECT_TRUE(view.ok()) << view.status();
    EXPECT_EQ(view->dtype, DType::kF32);
    std::vector<float> floats(view->size_bytes / 4);
    std::memcpy(floats.data(), view->data, view->size_bytes);
    return std::vector<double>(floats.begin(), floats.end());
  }

  // Layer 0's post-RoPE query of `token` at `position`, float64 from the Hugging Face definitions:
  // RMSNorm(embedding) * weight, then q_proj (+ bias), then rotate-half RoPE with
  // inv_freq[i] = theta^(-2i / d).
  std::vector<double> LayerZeroQuery(int32_t token, int64_t position) const {
    const ModelConfig& c = config();
    const int64_t hidden = c.hidden_size, q_dim = QueryFloats(), d = c.head_dim;
    const std::vector<double> embed = Weight("model.embed_tokens.weight", {c.vocab_size, hidden});
    const std::vector<double> norm = Weight("model.layers.0.input_layernorm.weight", {hidden});
    const std::vector<double> wq =
        Weight("model.layers.0.self_attn.q_proj.weight", {q_dim, hidden});
    const std::vector<double> bq = Weight("model.layers.0.self_attn.q_proj.bias", {q_dim});
    double square_sum = 0.0;
    for (int64_t k = 0; k < hidden; ++k)
      square_sum += embed[token * hidden + k] * embed[token * hidden + k];
    const double inverse_rms = 1.0 / std::sqrt(square_sum / hidden + c.rms_norm_eps);
    std::vector<double> q(q_dim);
    for (int64_t m = 0; m < q_dim; ++m) {
      double acc = bq[m];
      for (int64_t k = 0; k < hidden; ++k) {
        acc += embed[token * hidden + k] * inverse_rms * norm[k] * wq[m * hidden + k];
      }
      q[m] = acc;
    }
    for (int64_t h = 0; h < c.num_heads; ++h) {
      double* head = &q[h * d];
      for (int64_t i = 0; i < d / 2; ++i) {
        const double angle = position * std::pow(spec_.rope_theta, -2.0 * i / d);
        const double a = head[i], b = head[i + d / 2];
        head[i] = a * std::cos(angle) - b * std::sin(angle);
        head[i + d / 2] = b * std::cos(angle) + a * std::sin(angle);
      }
    }
    return q;
  }

  // Key of cache entry j of `layer`, KV head g, read from the pool through the block table.
  std::vector<double> CachedKey(const std::vector<float>& pool, const SequenceKv& kv, int layer,
                                int64_t j, int64_t g) const {
    const int64_t d = config().head_dim;
    const int64_t block = kv.blocks(layer, static_cast<int>(g))[j / kBlockSize];
    const int64_t offset = j % kBlockSize;
    const float* key = pool.data() + ((block * 2 + 0) * kBlockSize + offset) * d;
    return std::vector<double>(key, key + d);
  }

  struct Prefill {
    std::vector<float> captured;
    std::vector<std::vector<float>> mass;  // [L][H * T]
  };

  Prefill RunWholePrompt(SequenceKv& kv) {
    Prefill out;
    EXPECT_TRUE(kv.AppendAllLayers(kTokens).ok());
    std::vector<Tensor> mass;
    for (int64_t l = 0; l < config().num_layers; ++l) {
      mass.push_back(*engine_.backend->AllocateZeros(DType::kF32, {config().num_heads, kTokens}));
    }
    ForwardSequence seq{.tokens = tokens_,
                        .first_position = 0,
                        .kv = &kv,
                        .window_mass = mass,
                        .window_begin = kWindowBegin,
                        .captured_window_queries = &out.captured};
    auto logits = engine_.model->Forward({&seq, 1}, engine_.cache.get());
    EXPECT_TRUE(logits.ok()) << logits.status();
    for (const Tensor& m : mass) {
      std::vector<float>& host = out.mass.emplace_back(m.numel());
      EXPECT_TRUE(engine_.backend->CopyToHost(m, host).ok());
    }
    return out;
  }

  RandomCheckpointSpec spec_;
  testing::TinyEngine engine_;
  std::vector<int32_t> tokens_;
};

TEST_F(ProfileCaptureTest, LayerZeroQueriesMatchFloat64FromTheWeights) {
  SequenceKv kv(&engine_.cache->pool(), static_cast<int>(config().num_layers),
                static_cast<int>(config().num_kv_heads));
  const Prefill prefill = RunWholePrompt(kv);
  ASSERT_EQ(static_cast<int64_t>(prefill.captured.size()),
            config().num_layers * kWindow * QueryFloats());
  for (int32_t i = 0; i < kWindow; ++i) {
    const int64_t position = kWindowBegin + i;
    const std::vector<double> want = LayerZeroQuery(tokens_[position], position);
    for (int64_t c = 0; c < QueryFloats(); ++c) {
      EXPECT_NEAR(prefill.captured[i * QueryFloats() + c], want[c], 1e-5)
          << "window row " << i << " element " << c;
    }
  }
}

TEST_F(ProfileCaptureTest, EveryLayersQueriesReproduceTheBackendsWindowMass) {
  SequenceKv kv(&engine_.cache->pool(), static_cast<int>(config().num_layers),
                static_cast<int>(config().num_kv_heads));
  const Prefill prefill = RunWholePrompt(kv);
  std::vector<float> pool(engine_.cache->pool_tensor().numel());
  ASSERT_TRUE(engine_.backend->CopyToHost(engine_.cache->pool_tensor(), pool).ok());
  const int64_t heads = config().num_heads, d = config().head_dim;
  const int64_t group = heads / config().num_kv_heads;
  for (int layer = 0; layer < config().num_layers; ++layer) {
    std::vector<double> mass(heads * kTokens, 0.0);
    for (int64_t i = 0; i < kWindow; ++i) {
      const int64_t index = kWindowBegin + i;
      for (int64_t h = 0; h < heads; ++h) {
        const float* q = prefill.captured.data() + ((layer * kWindow + i) * heads + h) * d;
        std::vector<double> p(index + 1);
        double max_logit = -1e300, total = 0.0;
        for (int64_t j = 0; j <= index; ++j) {
          const std::vector<double> key = CachedKey(pool, kv, layer, j, h / group);
          double dot = 0.0;
          for (int64_t c = 0; c < d; ++c) dot += q[c] * key[c];
          p[j] = dot / std::sqrt(static_cast<double>(d));
          max_logit = std::max(max_logit, p[j]);
        }
        for (double& x : p) total += (x = std::exp(x - max_logit));
        for (int64_t j = 0; j <= index; ++j) mass[h * kTokens + j] += p[j] / total;
      }
    }
    for (int64_t k = 0; k < heads * kTokens; ++k) {
      EXPECT_NEAR(prefill.mass[layer][k], mass[k], 1e-5)
          << "layer " << layer << " head " << k / kTokens << " position " << k % kTokens;
    }
  }
}

TEST_F(ProfileCaptureTest, ChunkedPrefillCapturesOnlyItsWindowRows) {
  SequenceKv whole_kv(&engine_.cache->pool(), static_cast<int>(config().num_layers),
                      static_cast<int>(config().num_kv_heads));
  const Prefill whole = RunWholePrompt(whole_kv);
  const int64_t layers = config().num_layers, row = QueryFloats();

  SequenceKv kv(&engine_.cache->pool(), static_cast<int>(layers),
                static_cast<int>(config().num_kv_heads));
  std::vector<float> captured = {1.0f, 2.0f};  // replaced by every call
  size_t done = 0;
  for (size_t chunk : {size_t{6}, size_t{4}, size_t{3}}) {
    ASSERT_TRUE(kv.AppendAllLayers(chunk).ok());
    ForwardSequence seq{.tokens = std::span<const int32_t>(tokens_).subspan(done, chunk),
                        .first_position = static_cast<int64_t>(done),
                        .kv = &kv,
                        .window_begin = kWindowBegin,
                        .captured_window_queries = &captured};
    ASSERT_TRUE(engine_.model->Forward({&seq, 1}, engine_.cache.get()).ok());
    // Rows [max(done, 8), done + chunk) fall in the window: 0, then 2 (8, 9), then 3 (10..12).
    const int64_t first = std::max<int64_t>(done, kWindowBegin);
    const int64_t rows = std::max<int64_t>(0, static_cast<int64_t>(done + chunk) - first);
    ASSERT_EQ(static_cast<int64_t>(captured.size()), layers * rows * row) << "chunk at " << done;
    for (int64_t l = 0; l < layers; ++l) {
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t window_row = first - kWindowBegin + r;
        for (int64_t c = 0; c < row; ++c) {
          EXPECT_NEAR(captured[(l * rows + r) * row + c],
                      whole.captured[(l * kWindow + window_row) * row + c], 1e-4)
              << "layer " << l << " window row " << window_row;
        }
      }
    }
    done += chunk;
  }
}

TEST_F(ProfileCaptureTest, RaggedBatchCapturesEachSequenceOwnRows) {
  SequenceKv alone_kv(&engine_.cache->pool(), static_cast<int>(config().num_layers),
                      static_cast<int>(config().num_kv_heads));
  const Prefill alone = RunWholePrompt(alone_kv);

  const std::vector<int32_t> other = {3, 1, 4, 1, 5, 9, 2};
  SequenceKv first_kv(&engine_.cache->pool(), static_cast<int>(config().num_layers),
                      static_cast<int>(config().num_kv_heads));
  SequenceKv second_kv(&engine_.cache->pool(), static_cast<int>(config().num_layers),
                       static_cast<int>(config().num_kv_heads));
  ASSERT_TRUE(first_kv.AppendAllLayers(other.size()).ok());
  ASSERT_TRUE(second_kv.AppendAllLayers(kTokens).ok());
  std::vector<float> first_captured, second_captured;
  std::vector<ForwardSequence> batch = {
      ForwardSequence{.tokens = other,
                      .kv = &first_kv,
                      .window_begin = 5,
                      .captured_window_queries = &first_captured},
      ForwardSequence{.tokens = tokens_,
                      .kv = &second_kv,
                      .window_begin = kWindowBegin,
                      .captured_window_queries = &second_captured}};
  ASSERT_TRUE(engine_.model->Forward(batch, engine_.cache.get()).ok());
  EXPECT_EQ(static_cast<int64_t>(first_captured.size()), config().num_layers * 2 * QueryFloats());
  ASSERT_EQ(second_captured.size(), alone.captured.size());
  for (size_t k = 0; k < alone.captured.size(); ++k) {
    EXPECT_NEAR(second_captured[k], alone.captured[k], 1e-5) << "element " << k;
  }
}

TEST_F(ProfileCaptureTest, UnevenLayerLengthsAreRejected) {
  SequenceKv kv(&engine_.cache->pool(), static_cast<int>(config().num_layers),
                static_cast<int>(config().num_kv_heads));
  ASSERT_TRUE(kv.AppendAllLayers(kTokens).ok());
  // Layer 1's KV head 1 is longer, as after an adaptive compression and decoding.
  ASSERT_TRUE(kv.Append(1, 1, 2).ok());
  std::vector<float> captured;
  ForwardSequence seq{.tokens = std::span<const int32_t>(tokens_).first(1),
                      .first_position = 0,
                      .kv = &kv,
                      .captured_window_queries = &captured};
  auto logits = engine_.model->Forward({&seq, 1}, engine_.cache.get());
  ASSERT_FALSE(logits.ok());
  EXPECT_EQ(logits.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(logits.status().message(), HasSubstr("captured_window_queries"));
  EXPECT_THAT(logits.status().message(), HasSubstr("layer 1 holds 13 to 15"));
}

}  // namespace
}  // namespace zigzag
