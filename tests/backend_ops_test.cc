// Every non-attention Backend op on every backend this machine can create (llama.cpp's
// test-backend-ops idea), against naive float64 references written here: memory and copies,
// Embedding, Matmul, RmsNorm, Rope, SiluMul, Add, CopyRows, and their argument errors.
// Paged KV and attention are in backend_attention_test.cc; CPU-only details at the end.
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/backend_registry.h"
#include "kernels/cpu/cpu_backend.h"
#include "tests/backend_ops_harness.h"
#include "tests/test_support.h"

namespace zigzag::testing {
namespace {

using ::testing::HasSubstr;

// Float64 references ------------------------------------------------------------------------------

// y[n, m] = sum_k x[n, k] w[m, k] + bias[m]
std::vector<double> RefMatmul(const std::vector<float>& x, const std::vector<float>& w,
                              const std::vector<float>* bias, int64_t n, int64_t k, int64_t m) {
  std::vector<double> y(n * m);
  for (int64_t row = 0; row < n; ++row) {
    for (int64_t col = 0; col < m; ++col) {
      double sum = bias != nullptr ? (*bias)[col] : 0.0;
      for (int64_t i = 0; i < k; ++i) sum += double{x[row * k + i]} * double{w[col * k + i]};
      y[row * m + col] = sum;
    }
  }
  return y;
}

std::vector<double> RefRmsNorm(const std::vector<float>& x, const std::vector<float>& weight,
                               double eps, int64_t n, int64_t d) {
  std::vector<double> y(n * d);
  for (int64_t row = 0; row < n; ++row) {
    double mean_sq = 0.0;
    for (int64_t i = 0; i < d; ++i) mean_sq += double{x[row * d + i]} * x[row * d + i];
    mean_sq /= static_cast<double>(d);
    const double inv_rms = 1.0 / std::sqrt(mean_sq + eps);
    for (int64_t i = 0; i < d; ++i) y[row * d + i] = x[row * d + i] * inv_rms * weight[i];
  }
  return y;
}

// Rotate-half rotary embedding on x [N, heads, head_dim]. The angle is the float32 product
// position * inv_freq (that is how Hugging Face defines it: both are float32 tensors), then
// cos/sin in double.
std::vector<double> RefRope(const std::vector<float>& x, const std::vector<int32_t>& positions,
                            const std::vector<float>& inv_freq, int64_t heads, int64_t head_dim) {
  const int64_t half = head_dim / 2;
  std::vector<double> y(x.begin(), x.end());
  for (size_t n = 0; n < positions.size(); ++n) {
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t base = (static_cast<int64_t>(n) * heads + h) * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const double angle = static_cast<float>(positions[n]) * inv_freq[i];
        const double a = x[base + i];
        const double b = x[base + i + half];
        y[base + i] = a * std::cos(angle) - b * std::sin(angle);
        y[base + i + half] = b * std::cos(angle) + a * std::sin(angle);
      }
    }
  }
  return y;
}

// Llama-style inverse frequencies theta^(-2i/d), rounded to float once.
std::vector<float> LlamaInvFreq(int64_t head_dim, double theta) {
  std::vector<float> inv_freq(head_dim / 2);
  for (int64_t i = 0; i < head_dim / 2; ++i) {
    inv_freq[i] = static_cast<float>(1.0 / std::pow(theta, 2.0 * i / head_dim));
  }
  return inv_freq;
}

// Harness tests -----------------------------------------------------------------------------------

TEST(BackendOpsHarness, CudaBackendsAreTestedWhenADeviceIsUsable) {
  if (!CudaAvailable()) GTEST_SKIP() << kNoCudaMessage;
  for (bool fp32 : {true, false}) {
    auto cuda = CreateBackend("cuda", BackendOptions{.cuda_fp32 = fp32});
    ASSERT_TRUE(cuda.ok()) << cuda.status();
    EXPECT_EQ((*cuda)->device(), Device::kCuda);
  }
  std::vector<std::string> labels;
  for (const BackendConfig& config : BackendConfigsToTest()) labels.push_back(config.label);
  EXPECT_THAT(labels, ::testing::IsSupersetOf({"cpu", "cuda_fp32", "cuda_bf16"}));
}

// Memory and copies -------------------------------------------------------------------------------

TEST_P(BackendOpsTest, CopiesRoundTripInTheBackendDTypes) {
  const std::vector<float> host = RandomFloats(3 * 37, 11, -3.0f, 3.0f);
  for (DType dtype : {act_, weight_}) {
    Tensor t = Upload(host, dtype, {3, 37});
    EXPECT_EQ(t.device(), backend_->device());
    ExpectClose(Download(t), ToDouble(RoundTo(host, dtype)), 0.0, "round trip");
  }
  // bf16 host data (as a checkpoint holds it) into an activation tensor.
  std::vector<uint16_t> bf16(host.size());
  std::vector<float> bf16_values(host.size());
  for (size_t i = 0; i < host.size(); ++i) {
    bf16[i] = FloatToBF16(host[i]);
    bf16_values[i] = BF16ToFloat(bf16[i]);
  }
  Tensor from_bf16 = Zeros(act_, {3, 37});
  ASSERT_TRUE(backend_->CopyToDevice(bf16.data(), DType::kBF16, &from_bf16).ok());
  ExpectClose(Download(from_bf16), ToDouble(bf16_values), 0.0, "bf16 host data");
  ASSERT_TRUE(backend_->Synchronize().ok());
}

TEST_P(BackendOpsTest, ZerosAreZero) {
  Tensor t = Zeros(act_, {5, 33});
  EXPECT_EQ(t.shape(), (Shape{5, 33}));
  ExpectClose(Download(t), std::vector<double>(5 * 33, 0.0), 0.0, "zeros");
}

TEST_P(BackendOpsTest, IntegerCopiesOnlyBetweenI32) {
  const std::vector<int32_t> ids = {4, -2, 7};
  Tensor ints = Zeros(DType::kI32, {3});
  EXPECT_TRUE(backend_->CopyToDevice(ids.data(), DType::kI32, &ints).ok());
  ExpectInvalidArgument(backend_->CopyToDevice(ids.data(), DType::kF32, &ints), "CopyToDevice",
                        "i32");
  Tensor floats = Zeros(act_, {3});
  ExpectInvalidArgument(backend_->CopyToDevice(ids.data(), DType::kI32, &floats), "CopyToDevice",
                        "i32");
  std::vector<float> host(3);
  ExpectInvalidArgument(backend_->CopyToHost(ints, host), "CopyToHost", "src");
  std::vector<float> wrong_size(4);
  ExpectInvalidArgument(backend_->CopyToHost(floats, wrong_size), "CopyToHost", "host");
}

// Embedding ---------------------------------------------------------------------------------------

TEST_P(BackendOpsTest, EmbeddingGathersRows) {
  const int64_t vocab = 37, hidden = 24;
  const std::vector<float> table = RoundTo(RandomFloats(vocab * hidden, 21), weight_);
  const std::vector<int32_t> ids = {0, 36, 5, 5, 17, 1};
  Tensor table_t = Upload(table, weight_, {vocab, hidden});
  Tensor out = Zeros(act_, {static_cast<int64_t>(ids.size()), hidden});
  ASSERT_TRUE(backend_->Embedding(table_t, ids, &out).ok());
  std::vector<double> expected;
  for (int32_t id : ids) {
    expected.insert(expected.end(), table.begin() + id * hidden, table.begin() + (id + 1) * hidden);
  }
  ExpectClose(Download(out),
              ToDouble(RoundTo(std::vector<float>(expected.begin(), expected.end()), act_)), 0.0,
              "Embedding");
}

TEST_P(BackendOpsTest, EmbeddingRejectsIdsOutsideTheVocabulary) {
  Tensor table = Zeros(weight_, {10, 8});
  Tensor out = Zeros(act_, {2, 8});
  ExpectInvalidArgument(backend_->Embedding(table, std::vector<int32_t>{3, 10}, &out), "Embedding",
                        "ids");
  ExpectInvalidArgument(backend_->Embedding(table, std::vector<int32_t>{-1, 0}, &out), "Embedding",
                        "ids");
  ExpectInvalidArgument(backend_->Embedding(table, std::vector<int32_t>{1, 2, 3}, &out),
                        "Embedding", "out");
  Tensor flat_table = Zeros(weight_, {80});
  ExpectInvalidArgument(backend_->Embedding(flat_table, std::vector<int32_t>{1, 2}, &out),
                        "Embedding", "table");
}

// Matmul ------------------------------------------------------------------------------------------

struct MatmulSize {
  int64_t n, k, m;
};

TEST_P(BackendOpsTest, MatmulWithAndWithoutBiasOnOddSizes) {
  const MatmulSize sizes[] = {{1, 1, 1}, {3, 17, 5}, {7, 64, 33}, {13, 129, 70}, {1, 256, 300}};
  uint64_t seed = 100;
  for (const MatmulSize& s : sizes) {
    for (bool with_bias : {false, true}) {
      const std::vector<float> x = RoundTo(RandomFloats(s.n * s.k, ++seed), act_);
      const std::vector<float> w = RoundTo(RandomFloats(s.m * s.k, ++seed), weight_);
      const std::vector<float> bias = RoundTo(RandomFloats(s.m, ++seed), weight_);
      Tensor x_t = Upload(x, act_, {s.n, s.k});
      Tensor w_t = Upload(w, weight_, {s.m, s.k});
      Tensor bias_t = Upload(bias, weight_, {s.m});
      Tensor y = Zeros(act_, {s.n, s.m});
      ASSERT_TRUE(backend_->Matmul(x_t, w_t, with_bias ? &bias_t : nullptr, &y).ok());
      ExpectClose(Download(y), RefMatmul(x, w, with_bias ? &bias : nullptr, s.n, s.k, s.m),
                  tolerance(),
                  "Matmul " + std::to_string(s.n) + "x" + std::to_string(s.k) + "x" +
                      std::to_string(s.m) + (with_bias ? " +bias" : ""));
    }
  }
}

TEST_P(BackendOpsTest, MatmulRejectsMismatchedShapes) {
  Tensor x = Zeros(act_, {3, 8});
  Tensor w = Zeros(weight_, {5, 8});
  Tensor y = Zeros(act_, {3, 5});
  Tensor w_bad = Zeros(weight_, {5, 7});
  ExpectInvalidArgument(backend_->Matmul(x, w_bad, nullptr, &y), "Matmul", "w");
  Tensor bias_bad = Zeros(weight_, {4});
  ExpectInvalidArgument(backend_->Matmul(x, w, &bias_bad, &y), "Matmul", "bias");
  Tensor y_bad = Zeros(act_, {3, 6});
  ExpectInvalidArgument(backend_->Matmul(x, w, nullptr, &y_bad), "Matmul", "y");
  Tensor x_ints = Zeros(DType::kI32, {3, 8});
  ExpectInvalidArgument(backend_->Matmul(x_ints, w, nullptr, &y), "Matmul", "x");
  Tensor x_rank3 = Zeros(act_, {3, 2, 4});
  ExpectInvalidArgument(backend_->Matmul(x_rank3, w, nullptr, &y), "Matmul", "x");
}

// RmsNorm -----------------------------------------------------------------------------------------

TEST_P(BackendOpsTest, RmsNormOutOfPlaceAndInPlace) {
  const struct {
    int64_t n, d;
    float range;
  } sizes[] = {{3, 7, 2.0f}, {40, 1024, 2.0f}, {4, 64, 0.005f}};  // tiny values: eps matters
  const double eps = 1e-5;
  uint64_t seed = 200;
  for (const auto& s : sizes) {
    const std::vector<float> x = RoundTo(RandomFloats(s.n * s.d, ++seed, -s.range, s.range), act_);
    const std::vector<float> weight = RoundTo(RandomFloats(s.d, ++seed, 0.5f, 1.5f), weight_);
    const std::vector<double> expected = RefRmsNorm(x, weight, eps, s.n, s.d);
    Tensor x_t = Upload(x, act_, {s.n, s.d});
    Tensor w_t = Upload(weight, weight_, {s.d});
    Tensor y = Zeros(act_, {s.n, s.d});
    ASSERT_TRUE(backend_->RmsNorm(x_t, w_t, static_cast<float>(eps), &y).ok());
    ExpectClose(Download(y), expected, tolerance(), "RmsNorm");
    ExpectClose(Download(x_t), ToDouble(x), 0.0, "RmsNorm leaves x alone");
    ASSERT_TRUE(backend_->RmsNorm(x_t, w_t, static_cast<float>(eps), &x_t).ok());
    ExpectClose(Download(x_t), expected, tolerance(), "RmsNorm in place");
  }
}

TEST_P(BackendOpsTest, RmsNormRejectsMismatchedShapes) {
  Tensor x = Zeros(act_, {2, 6});
  Tensor weight_bad = Zeros(weight_, {5});
  Tensor y = Zeros(act_, {2, 6});
  ExpectInvalidArgument(backend_->RmsNorm(x, weight_bad, 1e-5f, &y), "RmsNorm", "weight");
  Tensor weight = Zeros(weight_, {6});
  Tensor y_bad = Zeros(act_, {3, 6});
  ExpectInvalidArgument(backend_->RmsNorm(x, weight, 1e-5f, &y_bad), "RmsNorm", "y");
}

// Rope --------------------------------------------------------------------------------------------

TEST_P(BackendOpsTest, RopeRotatesHalvesAtArbitraryPositions) {
  const struct {
    int64_t heads, head_dim;
    double theta;
    std::vector<int32_t> positions;
  } cases[] = {
      {3, 64, 10000.0, {0, 1, 7, 300, 4095, 131}},
      {2, 128, 500000.0, {12, 11, 2047, 5, 70000}},  // out of order, with gaps, large
      {5, 64, 1000000.0, {3}},
  };
  uint64_t seed = 300;
  for (const auto& c : cases) {
    const int64_t tokens = static_cast<int64_t>(c.positions.size());
    const std::vector<float> x =
        RoundTo(RandomFloats(tokens * c.heads * c.head_dim, ++seed, -2.0f, 2.0f), act_);
    const std::vector<float> inv_freq = LlamaInvFreq(c.head_dim, c.theta);
    Tensor x_t = Upload(x, act_, {tokens, c.heads, c.head_dim});
    Tensor freq_t = Upload(inv_freq, DType::kF32, {c.head_dim / 2});
    ASSERT_TRUE(backend_->Rope(c.positions, freq_t, &x_t).ok());
    ExpectClose(Download(x_t), RefRope(x, c.positions, inv_freq, c.heads, c.head_dim), tolerance(),
                "Rope head_dim " + std::to_string(c.head_dim));
  }
}

TEST_P(BackendOpsTest, RopeRejectsMismatchedArguments) {
  Tensor x = Zeros(act_, {3, 2, 8});
  Tensor inv_freq = Upload(LlamaInvFreq(8, 10000.0), DType::kF32, {4});
  ExpectInvalidArgument(backend_->Rope(std::vector<int32_t>{0, 1}, inv_freq, &x), "Rope",
                        "positions");
  Tensor inv_freq_bad = Zeros(DType::kF32, {3});
  ExpectInvalidArgument(backend_->Rope(std::vector<int32_t>{0, 1, 2}, inv_freq_bad, &x), "Rope",
                        "inv_freq");
  Tensor x_rank2 = Zeros(act_, {3, 16});
  ExpectInvalidArgument(backend_->Rope(std::vector<int32_t>{0, 1, 2}, inv_freq, &x_rank2), "Rope",
                        "x");
}

// SiluMul, Add ------------------------------------------------------------------------------------

TEST_P(BackendOpsTest, SiluMulSeparateAndAliased) {
  const struct { int64_t n, f; } sizes[] = {{3, 5}, {64, 1000}};
  uint64_t seed = 400;
  for (const auto& s : sizes) {
    const std::vector<float> gate = RoundTo(RandomFloats(s.n * s.f, ++seed, -6.0f, 6.0f), act_);
    const std::vector<float> up = RoundTo(RandomFloats(s.n * s.f, ++seed, -2.0f, 2.0f), act_);
    std::vector<double> expected(gate.size());
    for (size_t i = 0; i < gate.size(); ++i) {
      expected[i] = gate[i] / (1.0 + std::exp(-double{gate[i]})) * up[i];
    }
    Tensor gate_t = Upload(gate, act_, {s.n, s.f});
    Tensor up_t = Upload(up, act_, {s.n, s.f});
    Tensor out = Zeros(act_, {s.n, s.f});
    ASSERT_TRUE(backend_->SiluMul(gate_t, up_t, &out).ok());
    ExpectClose(Download(out), expected, tolerance(), "SiluMul");
    ASSERT_TRUE(backend_->SiluMul(gate_t, up_t, &gate_t).ok());
    ExpectClose(Download(gate_t), expected, tolerance(), "SiluMul into gate");
  }
  Tensor a = Zeros(act_, {2, 3});
  Tensor b = Zeros(act_, {3, 2});
  ExpectInvalidArgument(backend_->SiluMul(a, b, &a), "SiluMul", "up");
}

TEST_P(BackendOpsTest, AddSeparateAndAliased) {
  const struct { int64_t n, f; } sizes[] = {{1, 1}, {64, 1000}};
  uint64_t seed = 500;
  for (const auto& s : sizes) {
    const std::vector<float> a = RoundTo(RandomFloats(s.n * s.f, ++seed, -3.0f, 3.0f), act_);
    const std::vector<float> b = RoundTo(RandomFloats(s.n * s.f, ++seed, -3.0f, 3.0f), act_);
    std::vector<double> expected(a.size());
    for (size_t i = 0; i < a.size(); ++i) expected[i] = double{a[i]} + b[i];
    Tensor a_t = Upload(a, act_, {s.n, s.f});
    Tensor b_t = Upload(b, act_, {s.n, s.f});
    Tensor out = Zeros(act_, {s.n, s.f});
    ASSERT_TRUE(backend_->Add(a_t, b_t, &out).ok());
    ExpectClose(Download(out), expected, tolerance(), "Add");
    ASSERT_TRUE(backend_->Add(a_t, b_t, &b_t).ok());
    ExpectClose(Download(b_t), expected, tolerance(), "Add into b");
    ASSERT_TRUE(backend_->Add(out, out, &out).ok());
    for (double& e : expected) e *= 2;
    ExpectClose(Download(out), expected, tolerance(), "Add into a == b");
  }
  Tensor a = Zeros(act_, {2, 3});
  Tensor b = Zeros(act_, {2, 4});
  Tensor out = Zeros(act_, {2, 3});
  ExpectInvalidArgument(backend_->Add(a, b, &out), "Add", "b");
  Tensor out_bad = Zeros(act_, {1, 3});
  ExpectInvalidArgument(backend_->Add(a, a, &out_bad), "Add", "out");
}

// CopyRows ----------------------------------------------------------------------------------------

TEST_P(BackendOpsTest, CopyRowsGathersRowsInAnyOrder) {
  const int64_t n = 9, d = 300;
  const std::vector<float> src = RoundTo(RandomFloats(n * d, 600), act_);
  const std::vector<int32_t> rows = {8, 0, 3, 3, 5};
  Tensor src_t = Upload(src, act_, {n, d});
  Tensor dst = Zeros(act_, {static_cast<int64_t>(rows.size()), d});
  ASSERT_TRUE(backend_->CopyRows(src_t, rows, &dst).ok());
  std::vector<double> expected;
  for (int32_t r : rows)
    expected.insert(expected.end(), src.begin() + r * d, src.begin() + (r + 1) * d);
  ExpectClose(Download(dst), expected, 0.0, "CopyRows");

  ExpectInvalidArgument(backend_->CopyRows(src_t, std::vector<int32_t>{0, 9, 1, 2, 3}, &dst),
                        "CopyRows", "rows");
  ExpectInvalidArgument(backend_->CopyRows(src_t, std::vector<int32_t>{0, 1}, &dst), "CopyRows",
                        "dst");
}

INSTANTIATE_TEST_SUITE_P(AllBackends, BackendOpsTest, ::testing::ValuesIn(BackendConfigsToTest()),
                         BackendConfigLabel);

// CPU backend specifics ---------------------------------------------------------------------------

TEST(CpuBackendTest, ComputesInFloat32InHostMemory) {
  auto cpu = CreateCpuBackend(2);
  EXPECT_STREQ(cpu->name(), "cpu");
  EXPECT_EQ(cpu->device(), Device::kCpu);
  EXPECT_EQ(cpu->activation_dtype(), DType::kF32);
  EXPECT_EQ(cpu->weight_dtype(), DType::kF32);
}

TEST(CpuBackendTest, AllocatesSixtyFourByteAlignedMemory) {
  auto cpu = CreateCpuBackend(1);
  for (const Shape& shape : {Shape{0}, Shape{1}, Shape{3, 5}, Shape{7, 1, 13}}) {
    for (DType dtype : {DType::kF32, DType::kBF16, DType::kI32}) {
      auto t = cpu->Allocate(dtype, shape);
      ASSERT_TRUE(t.ok()) << t.status();
      EXPECT_EQ(reinterpret_cast<uintptr_t>(t->data()) % 64, 0u);
      EXPECT_EQ(t->shape(), shape);
      EXPECT_EQ(t->dtype(), dtype);
    }
  }
}

TEST(CpuBackendTest, AllocateRejectsNegativeAndImpossibleShapes) {
  auto cpu = CreateCpuBackend(1);
  auto negative = cpu->Allocate(DType::kF32, {4, -1});
  EXPECT_EQ(negative.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(negative.status().message()), HasSubstr("Allocate: shape"));
  auto huge = cpu->Allocate(DType::kF32, {int64_t{1} << 40, int64_t{1} << 30});
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(huge.status().message()), HasSubstr("Allocate"));
#ifndef __SANITIZE_ADDRESS__  // AddressSanitizer aborts on such a request instead of failing it
  // Fits in int64 but not in any address space: aligned_alloc fails.
  auto too_big = cpu->Allocate(DType::kF32, {int64_t{1} << 40, int64_t{1} << 8});
  EXPECT_EQ(too_big.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(too_big.status().message()), HasSubstr("cannot allocate"));
#endif
}

TEST(CpuBackendTest, CopyToDeviceConvertsBetweenFloatDTypes) {
  auto cpu = CreateCpuBackend(2);
  const std::vector<float> host = RandomFloats(100001, 700, -70000.0f, 70000.0f);
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    auto t = cpu->Allocate(dtype, {100001});
    ASSERT_TRUE(t.ok());
    ASSERT_TRUE(cpu->CopyToDevice(host.data(), DType::kF32, &*t).ok());
    const uint16_t* bits = t->data_as<const uint16_t>();
    for (size_t i = 0; i < host.size(); i += 997) {
      const uint16_t expected = dtype == DType::kBF16 ? FloatToBF16(host[i]) : FloatToHalf(host[i]);
      ASSERT_EQ(bits[i], expected) << "element " << i;
    }
    std::vector<float> back(host.size());
    ASSERT_TRUE(cpu->CopyToHost(*t, back).ok());
    const std::vector<float> rounded = RoundTo(host, dtype);
    for (size_t i = 0; i < host.size(); ++i) ASSERT_EQ(back[i], rounded[i]) << "element " << i;
  }
  // f16 host data into bf16 storage goes through float exactly once.
  const std::vector<uint16_t> halves = {FloatToHalf(1.5f), FloatToHalf(-0.0999f), 0x7c00u};
  auto bf16 = cpu->Allocate(DType::kBF16, {3});
  ASSERT_TRUE(cpu->CopyToDevice(halves.data(), DType::kF16, &*bf16).ok());
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(bf16->data_as<const uint16_t>()[i], FloatToBF16(HalfToFloat(halves[i])));
  }
}

TEST(CpuBackendTest, ComputeOpsRejectNonFloat32Tensors) {
  auto cpu = CreateCpuBackend(1);
  auto a = cpu->AllocateZeros(DType::kBF16, {2, 3});
  auto out = cpu->AllocateZeros(DType::kF32, {2, 3});
  const absl::Status status = cpu->Add(*a, *a, &*out);
  ExpectInvalidArgument(status, "Add", "a");
  EXPECT_THAT(std::string(status.message()), HasSubstr("f32"));
  auto w = cpu->AllocateZeros(DType::kF16, {3, 3});
  ExpectInvalidArgument(cpu->Matmul(*out, *w, nullptr, &*out), "Matmul", "w");
}

TEST(CpuBackendTest, RejectsAliasingWhereTheContractForbidsIt) {
  auto cpu = CreateCpuBackend(1);
  auto x = cpu->AllocateZeros(DType::kF32, {4, 4});
  auto w = cpu->AllocateZeros(DType::kF32, {4, 4});
  ExpectInvalidArgument(cpu->Matmul(*x, *w, nullptr, &*x), "Matmul", "alias");
  Tensor rows = x->Rows(2, 2);
  ExpectInvalidArgument(cpu->CopyRows(*x, std::vector<int32_t>{0, 1}, &rows), "CopyRows",
                        "overlap");
  Tensor null_out;
  ExpectInvalidArgument(cpu->Add(*x, *x, nullptr), "Add", "out");
  ExpectInvalidArgument(cpu->Add(*x, *x, &null_out), "Add", "out");
}

}  // namespace
}  // namespace zigzag::testing
