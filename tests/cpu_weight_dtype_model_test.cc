// The forward pass with 16-bit weights kept as 16-bit on the CPU backend (--cpu-weight-dtype)
// against the float64 reference (tests/reference_model.h), which reads the same stored weights.
//
// The tolerance. Widening bf16 or f16 weights to float32 is exact, so every path that converts
// weights on load (scalar, AVX2, AVX-512, and f16 on every path) computes what the float32 backend
// computes on those weights and keeps model_test's 1e-4. Only the vdpbf16ps path (bf16 weights on
// an AVX512_BF16 CPU) and oneDNN's bf16 matmul (prefill) also round each matmul's input x to bf16:
// 8 significant bits, a relative error of at most u = 2^-9 per element, so each matmul's outputs
// move by at most u * sum|x_i w_i|, and with random-signed terms by about u relative to the output
// itself. A layer has four such inputs (the q/k/v input, the o input, the gate/up input, the down
// input) and the LM head one more, so to first order the logits carry (4 * layers + 1) * u relative
// error: 13 * 2^-9 = 0.025 for the 3 layers here. Measured: 6.8e-3 (the test prints it).
#include <algorithm>
#include <cmath>
#include <random>

#include "core/engine/generation.h"
#include "core/model/checkpoint.h"
#include "core/model/checkpoint_writer.h"
#include "core/model/llama_model.h"
#include "gtest/gtest.h"
#include "kernels/backend_registry.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/matmul_dnnl.h"
#include "tests/reference_model.h"
#include "tests/test_support.h"

namespace zigzag {
namespace {

using cpu::MatmulIsa;

struct Case {
  std::string name;
  DType checkpoint_dtype;
  DType weight_dtype;
  MatmulIsa isa;
  bool use_dnnl = false;  // prefill (33 rows) through oneDNN where the build has it
};

std::vector<Case> Cases() {
  return {{"bf16_weights_default_backend", DType::kBF16, DType::kBF16, cpu::BestMatmulIsa(), true},
          {"f32_weights_default_backend", DType::kF32, DType::kF32, cpu::BestMatmulIsa(), true},
          {"bf16_weights_best_path", DType::kBF16, DType::kBF16, cpu::BestMatmulIsa()},
          {"bf16_weights_avx512_convert_on_load", DType::kBF16, DType::kBF16,
           MatmulIsa::kMatmulIsaAvx512},
          {"bf16_weights_avx2", DType::kBF16, DType::kBF16, MatmulIsa::kMatmulIsaAvx2},
          {"bf16_weights_scalar", DType::kBF16, DType::kBF16, MatmulIsa::kMatmulIsaScalar},
          {"f16_weights_best_path", DType::kF16, DType::kF16, cpu::BestMatmulIsa()},
          {"f16_weights_avx2", DType::kF16, DType::kF16, MatmulIsa::kMatmulIsaAvx2}};
}

class CpuWeightDtypeModelTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    const Case& c = GetParam();
    if (!cpu::MatmulIsaSupported(c.isa)) {
      GTEST_SKIP() << "this CPU cannot run " << cpu::MatmulIsaName(c.isa);
    }
    RandomCheckpointSpec spec;
    spec.vocab_size = 97;
    spec.hidden_size = 48;
    spec.intermediate_size = 80;
    spec.num_layers = kLayers;
    spec.num_heads = 4;
    spec.num_kv_heads = 2;
    spec.qkv_bias = true;
    spec.dtype = c.checkpoint_dtype;
    spec.seed = 21;
    dir_ = testing::MakeTempDir("cpu_weight_dtype");
    ASSERT_TRUE(WriteRandomCheckpoint(dir_, spec).ok());
    auto checkpoint = Checkpoint::Open(dir_);
    ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
    checkpoint_ = std::move(*checkpoint);
    auto backend = CreateCpuBackend(CpuBackendConfig{.num_threads = 2,
                                                     .weight_dtype = c.weight_dtype,
                                                     .matmul_isa = c.isa,
                                                     .use_dnnl = c.use_dnnl});
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend_ = std::move(*backend);
    auto model = LlamaModel::Load(*checkpoint_, backend_.get());
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
    auto cache = KvCache::Create(backend_.get(), model_->kv_layout(/*block_size=*/4), 256);
    ASSERT_TRUE(cache.ok()) << cache.status();
    cache_ = std::move(*cache);
    reference_ = std::make_unique<testing::ReferenceModel>(*checkpoint_);
  }

  double Tolerance() const {
    const Case& c = GetParam();
    const bool rounds_x =
        c.weight_dtype == DType::kBF16 && ((c.use_dnnl && cpu::DnnlMatmulAvailable()) ||
                                           cpu::MatmulNeedsBf16X(c.isa, c.weight_dtype));
    if (rounds_x) return (4 * kLayers + 1) * std::ldexp(1, -9);
    return 1e-4;
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

  static constexpr int kLayers = 3;
  std::filesystem::path dir_;
  std::unique_ptr<Checkpoint> checkpoint_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<KvCache> cache_;
  std::unique_ptr<testing::ReferenceModel> reference_;
};

TEST_P(CpuWeightDtypeModelTest, WeightsStaySixteenBitAndLogitsMatchFloat64WithinTheDtypeBound) {
  EXPECT_EQ(backend_->weight_dtype(), GetParam().weight_dtype);
  std::mt19937_64 rng(3);
  std::uniform_int_distribution<int32_t> dist(0, 96);
  std::vector<int32_t> tokens(38);
  for (int32_t& t : tokens) t = dist(rng);
  const auto want = reference_->Logits(tokens);
  const size_t vocab = model_->config().vocab_size;
  SequenceKv kv(&cache_->pool(), kLayers, static_cast<int>(model_->config().num_kv_heads));
  // A prefill of 33 tokens (oneDNN's size for f32 and bf16 where the build has it), then 5 decode
  // steps.
  size_t done = 0;
  double worst = 0;
  for (size_t chunk : {size_t{33}, size_t{1}, size_t{1}, size_t{1}, size_t{1}, size_t{1}}) {
    ASSERT_TRUE(kv.AppendAllLayers(chunk).ok());
    ForwardSequence seq{.tokens = std::span<const int32_t>(tokens).subspan(done, chunk),
                        .first_position = static_cast<int64_t>(done),
                        .kv = &kv,
                        .all_logits = true};
    auto logits = model_->Forward({&seq, 1}, cache_.get());
    ASSERT_TRUE(logits.ok()) << logits.status();
    for (size_t i = 0; i < chunk; ++i) {
      const double error = RowError({logits->data() + i * vocab, vocab}, want[done + i]);
      worst = std::max(worst, error);
      EXPECT_LT(error, Tolerance()) << "position " << done + i;
    }
    done += chunk;
  }
  std::printf("%s: worst row error %.3g (tolerance %.3g)\n", GetParam().name.c_str(), worst,
              Tolerance());
}

INSTANTIATE_TEST_SUITE_P(Paths, CpuWeightDtypeModelTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace zigzag
