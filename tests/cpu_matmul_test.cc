// The CPU matmul kernels (kernels/cpu/matmul_kernels.h) on every instruction-set path this CPU
// runs, each forced explicitly so that the AVX2 and scalar paths are tested on an AVX-512 machine
// too, against a float64 reference and against the scalar path; and the CPU backend's 16-bit
// weight ops (Matmul, Embedding, RmsNorm with bf16 / f16 weights) and their argument errors.
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/backend_registry.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/matmul_dnnl.h"
#include "kernels/cpu/matmul_kernels.h"

namespace zigzag {
namespace {

using cpu::MatmulIsa;
using ::testing::HasSubstr;

constexpr MatmulIsa kAllIsas[] = {MatmulIsa::kMatmulIsaScalar, MatmulIsa::kMatmulIsaAvx2,
                                  MatmulIsa::kMatmulIsaAvx512, MatmulIsa::kMatmulIsaAvx512Bf16};

// Weights stored as `dtype` bits, plus the exact float value of every stored weight.
struct Weights {
  std::vector<float> f32;
  std::vector<uint16_t> bits;
  std::vector<double> exact;
  const void* data(DType dtype) const {
    return dtype == DType::kF32 ? static_cast<const void*>(f32.data()) : bits.data();
  }
};

Weights MakeWeights(DType dtype, int64_t count, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  Weights w;
  for (int64_t i = 0; i < count; ++i) {
    const float v = dist(rng);
    w.f32.push_back(v);
    if (dtype == DType::kBF16) w.bits.push_back(FloatToBF16(v));
    if (dtype == DType::kF16) w.bits.push_back(FloatToHalf(v));
    w.exact.push_back(dtype == DType::kF32    ? v
                      : dtype == DType::kBF16 ? BF16ToFloat(w.bits.back())
                                              : HalfToFloat(w.bits.back()));
  }
  return w;
}

// The error bound of one output y = sum_i x_i w_i computed in float32 from the stored weights:
// K roundings of float32 accumulation, each at most 2^-24 of the running sum of |x_i w_i| (the
// standard gamma_K bound), times 2 for slack over the reassociation the SIMD paths do. The
// vdpbf16ps path also rounds x to bf16 (8 significant bits: relative error at most 2^-9 per x_i),
// which adds 2^-9 * sum |x_i w_i|.
double Bound(MatmulIsa isa, DType w_dtype, int64_t k, double abs_sum) {
  double bound = 2.0 * static_cast<double>(k + 1) * std::ldexp(1.0, -24) * abs_sum;
  if (cpu::MatmulNeedsBf16X(isa, w_dtype)) bound += std::ldexp(1.0, -9) * abs_sum;
  return bound + 1e-30;
}

struct Shape3 {
  int64_t n, k, m;
};

// Odd shapes on purpose: K not a multiple of 8, 16 or 32 (vector tails), M not a multiple of the
// tile widths, N = 1 (decode), N not a multiple of 4, K = 1, and K a multiple of 32 (no tail).
constexpr Shape3 kShapes[] = {{1, 1, 1},    {1, 17, 5},  {2, 31, 3},   {3, 33, 7}, {4, 64, 8},
                              {5, 100, 13}, {1, 768, 9}, {9, 129, 37}, {7, 15, 1}, {1, 1000, 4}};

std::vector<float> RunKernel(MatmulIsa isa, DType dtype, const std::vector<float>& x,
                             const Weights& w, Shape3 s) {
  std::vector<float> y(s.n * s.m, -12345.0f);
  std::vector<uint16_t> x_bf16(x.size());
  cpu::MatmulProblem p{.x = x.data(),
                       .w = w.data(dtype),
                       .w_dtype = dtype,
                       .n = s.n,
                       .k = s.k,
                       .m = s.m,
                       .y = y.data()};
  if (cpu::MatmulNeedsBf16X(isa, dtype)) {
    cpu::RoundToBf16(isa, x.data(), x_bf16.data(), static_cast<int64_t>(x.size()));
    p.x_bf16 = x_bf16.data();
  }
  // Two column ranges, as two threads would split them.
  const int64_t split = s.m / 2;
  cpu::MatmulColumns(isa, p, 0, split);
  cpu::MatmulColumns(isa, p, split, s.m);
  return y;
}

class MatmulKernelTest : public ::testing::TestWithParam<std::tuple<MatmulIsa, DType>> {};

TEST_P(MatmulKernelTest, MatchesFloat64ReferenceAndScalarPathOnOddShapes) {
  const auto [isa, dtype] = GetParam();
  if (!cpu::MatmulIsaSupported(isa)) {
    GTEST_SKIP() << "this CPU cannot run " << cpu::MatmulIsaName(isa);
  }
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  for (const Shape3 s : kShapes) {
    SCOPED_TRACE(::testing::Message() << "n=" << s.n << " k=" << s.k << " m=" << s.m);
    std::vector<float> x(s.n * s.k);
    for (float& v : x) v = dist(rng);
    const Weights w = MakeWeights(dtype, s.m * s.k, rng);
    const std::vector<float> got = RunKernel(isa, dtype, x, w, s);
    const std::vector<float> scalar = RunKernel(MatmulIsa::kMatmulIsaScalar, dtype, x, w, s);
    for (int64_t r = 0; r < s.n; ++r) {
      for (int64_t c = 0; c < s.m; ++c) {
        double want = 0, abs_sum = 0;
        for (int64_t i = 0; i < s.k; ++i) {
          want += static_cast<double>(x[r * s.k + i]) * w.exact[c * s.k + i];
          abs_sum += std::abs(static_cast<double>(x[r * s.k + i]) * w.exact[c * s.k + i]);
        }
        const double bound = Bound(isa, dtype, s.k, abs_sum);
        ASSERT_NEAR(got[r * s.m + c], want, bound) << "row " << r << " col " << c;
        // The scalar path is within its own (float32-only) bound of the reference, so the two
        // paths differ by at most the sum of both bounds.
        ASSERT_NEAR(got[r * s.m + c], scalar[r * s.m + c],
                    bound + Bound(MatmulIsa::kMatmulIsaScalar, dtype, s.k, abs_sum))
            << "row " << r << " col " << c << " against the scalar path";
      }
    }
  }
}

TEST_P(MatmulKernelTest, EmptyShapesWriteNothing) {
  const auto [isa, dtype] = GetParam();
  if (!cpu::MatmulIsaSupported(isa)) {
    GTEST_SKIP() << "this CPU cannot run " << cpu::MatmulIsaName(isa);
  }
  std::mt19937 rng(3);
  // N = 0: no rows, nothing written (y is empty); M range empty: y untouched.
  const Weights w = MakeWeights(dtype, 4 * 16, rng);
  std::vector<float> x(16, 1.0f);
  std::vector<uint16_t> x_bf16(16, 0);
  std::vector<float> y(4, -1.0f);
  cpu::MatmulProblem p{.x = x.data(),
                       .x_bf16 = x_bf16.data(),
                       .w = w.data(dtype),
                       .w_dtype = dtype,
                       .n = 0,
                       .k = 16,
                       .m = 4,
                       .y = y.data()};
  cpu::MatmulColumns(isa, p, 0, 4);
  p.n = 1;
  cpu::MatmulColumns(isa, p, 2, 2);
  EXPECT_THAT(y, ::testing::Each(-1.0f));
}

std::string IsaDtypeName(const ::testing::TestParamInfo<std::tuple<MatmulIsa, DType>>& info) {
  return std::string(cpu::MatmulIsaName(std::get<0>(info.param))) + "_" +
         DTypeName(std::get<1>(info.param));
}

INSTANTIATE_TEST_SUITE_P(AllPaths, MatmulKernelTest,
                         ::testing::Combine(::testing::ValuesIn(kAllIsas),
                                            ::testing::Values(DType::kF32, DType::kBF16,
                                                              DType::kF16)),
                         IsaDtypeName);

TEST(MatmulIsaTest, RoundToBf16MatchesTheScalarRoundingOnEveryPath) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> dist(-100.0f, 100.0f);
  std::vector<float> src(37);
  for (float& v : src) v = dist(rng);
  src[0] = 1.0f + std::ldexp(1.0f, -8);      // a tie: rounds to even (1.0)
  src[1] = 1.0f + 3 * std::ldexp(1.0f, -8);  // a tie: rounds to even (1 + 2^-6)
  for (MatmulIsa isa : kAllIsas) {
    if (!cpu::MatmulIsaSupported(isa)) continue;
    std::vector<uint16_t> got(src.size());
    cpu::RoundToBf16(isa, src.data(), got.data(), static_cast<int64_t>(src.size()));
    for (size_t i = 0; i < src.size(); ++i) {
      EXPECT_EQ(got[i], FloatToBF16(src[i])) << cpu::MatmulIsaName(isa) << " element " << i;
    }
    EXPECT_EQ(BF16ToFloat(got[0]), 1.0f);
    EXPECT_EQ(BF16ToFloat(got[1]), 1.0f + std::ldexp(1.0f, -6));
  }
}

TEST(MatmulIsaTest, BestIsaIsSupportedAndScalarAlwaysIs) {
  EXPECT_TRUE(cpu::MatmulIsaSupported(cpu::BestMatmulIsa()));
  EXPECT_TRUE(cpu::MatmulIsaSupported(MatmulIsa::kMatmulIsaScalar));
}

// Backend ops with 16-bit weights -----------------------------------------------------------------

std::unique_ptr<Backend> MakeCpu(DType weight_dtype, MatmulIsa isa, int threads = 2) {
  auto backend = CreateCpuBackend(
      CpuBackendConfig{.num_threads = threads, .weight_dtype = weight_dtype, .matmul_isa = isa});
  EXPECT_TRUE(backend.ok()) << backend.status();
  return backend.ok() ? std::move(*backend) : nullptr;
}

Tensor Upload(Backend& b, DType dtype, const Shape& shape, const std::vector<float>& values) {
  auto t = b.Allocate(dtype, shape);
  EXPECT_TRUE(t.ok());
  EXPECT_TRUE(b.CopyToDevice(values.data(), DType::kF32, &*t).ok());
  return *t;
}

std::vector<float> Download(Backend& b, const Tensor& t) {
  std::vector<float> out(t.numel());
  EXPECT_TRUE(b.CopyToHost(t, out).ok());
  return out;
}

class CpuWeightDtypeTest : public ::testing::TestWithParam<std::tuple<MatmulIsa, DType>> {};

// A matmul big enough to be split over both threads, with a 16-bit bias, against float64 over the
// stored (rounded) weights.
TEST_P(CpuWeightDtypeTest, MatmulWithBiasOverThreadsMatchesFloat64) {
  const auto [isa, dtype] = GetParam();
  if (!cpu::MatmulIsaSupported(isa))
    GTEST_SKIP() << "this CPU cannot run " << cpu::MatmulIsaName(isa);
  auto backend = MakeCpu(dtype, isa);
  ASSERT_NE(backend, nullptr);
  EXPECT_EQ(backend->weight_dtype(), dtype);
  const int64_t n = 3, k = 200, m = 333;
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> xs(n * k), ws(m * k), bs(m);
  for (float& v : xs) v = dist(rng);
  for (float& v : ws) v = dist(rng);
  for (float& v : bs) v = dist(rng);
  Tensor x = Upload(*backend, DType::kF32, {n, k}, xs);
  Tensor w = Upload(*backend, dtype, {m, k}, ws);
  Tensor bias = Upload(*backend, dtype, {m}, bs);
  const std::vector<float> w_stored = Download(*backend, w);  // exact: widening is exact
  const std::vector<float> b_stored = Download(*backend, bias);
  auto y = backend->Allocate(DType::kF32, {n, m});
  ASSERT_TRUE(y.ok());
  ASSERT_TRUE(backend->Matmul(x, w, &bias, &*y).ok());
  const std::vector<float> got = Download(*backend, *y);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < m; ++c) {
      double want = b_stored[c], abs_sum = std::abs(b_stored[c]);
      for (int64_t i = 0; i < k; ++i) {
        want += static_cast<double>(xs[r * k + i]) * w_stored[c * k + i];
        abs_sum += std::abs(static_cast<double>(xs[r * k + i]) * w_stored[c * k + i]);
      }
      ASSERT_NEAR(got[r * m + c], want, Bound(isa, dtype, k + 1, abs_sum)) << r << "," << c;
    }
  }
}

TEST_P(CpuWeightDtypeTest, EmbeddingAndRmsNormReadSixteenBitWeightsExactly) {
  const auto [isa, dtype] = GetParam();
  if (!cpu::MatmulIsaSupported(isa))
    GTEST_SKIP() << "this CPU cannot run " << cpu::MatmulIsaName(isa);
  auto backend = MakeCpu(dtype, isa);
  ASSERT_NE(backend, nullptr);
  const int64_t vocab = 5, hidden = 7;
  std::vector<float> table_values(vocab * hidden);
  for (int64_t i = 0; i < vocab * hidden; ++i) table_values[i] = 0.1f * static_cast<float>(i) - 1;
  Tensor table = Upload(*backend, dtype, {vocab, hidden}, table_values);
  const std::vector<float> stored = Download(*backend, table);
  const std::vector<int32_t> ids = {4, 0, 4};
  auto out = backend->Allocate(DType::kF32, {3, hidden});
  ASSERT_TRUE(out.ok());
  ASSERT_TRUE(backend->Embedding(table, ids, &*out).ok());
  const std::vector<float> rows = Download(*backend, *out);
  for (int64_t r = 0; r < 3; ++r) {
    for (int64_t i = 0; i < hidden; ++i)
      EXPECT_EQ(rows[r * hidden + i], stored[ids[r] * hidden + i]);
  }

  // RmsNorm of [3, 4] with weight [0.5, 1, 1.5, 2] (exact in every dtype): row (1, 1, 1, 1) has
  // rms 1, so y = weight / sqrt(1 + eps).
  Tensor x = Upload(*backend, DType::kF32, {1, 4}, {1, 1, 1, 1});
  Tensor weight = Upload(*backend, dtype, {4}, {0.5f, 1.0f, 1.5f, 2.0f});
  auto y = backend->Allocate(DType::kF32, {1, 4});
  ASSERT_TRUE(y.ok());
  ASSERT_TRUE(backend->RmsNorm(x, weight, 0.0f, &*y).ok());
  EXPECT_THAT(Download(*backend, *y), ::testing::ElementsAre(0.5f, 1.0f, 1.5f, 2.0f));
}

INSTANTIATE_TEST_SUITE_P(AllPaths, CpuWeightDtypeTest,
                         ::testing::Combine(::testing::ValuesIn(kAllIsas),
                                            ::testing::Values(DType::kF32, DType::kBF16,
                                                              DType::kF16)),
                         IsaDtypeName);

// Many rows (prefill, 37 >= both oneDNN cut-offs): f32 and bf16 weights go through oneDNN where
// the build has it. Checked
// against float64 with the same bound as our kernels (bf16: x is rounded to bf16 too), and against
// the backend with oneDNN turned off.
TEST(CpuBackendManyRowsTest, PrefillMatmulMatchesFloat64AndOurKernels) {
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    SCOPED_TRACE(DTypeName(dtype));
    auto with = CreateCpuBackend(CpuBackendConfig{.num_threads = 2, .weight_dtype = dtype});
    auto without = CreateCpuBackend(
        CpuBackendConfig{.num_threads = 2, .weight_dtype = dtype, .use_dnnl = false});
    ASSERT_TRUE(with.ok() && without.ok());
    const int64_t n = 37, k = 131, m = 70;
    std::mt19937 rng(4);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    std::vector<float> xs(n * k), ws(m * k);
    for (float& v : xs) v = dist(rng);
    for (float& v : ws) v = dist(rng);
    std::vector<std::vector<float>> results;
    std::vector<float> w_stored;
    for (Backend* b : {with->get(), without->get()}) {
      Tensor x = Upload(*b, DType::kF32, {n, k}, xs);
      Tensor w = Upload(*b, dtype, {m, k}, ws);
      w_stored = Download(*b, w);
      auto y = b->Allocate(DType::kF32, {n, m});
      ASSERT_TRUE(y.ok());
      ASSERT_TRUE(b->Matmul(x, w, nullptr, &*y).ok());
      results.push_back(Download(*b, *y));
    }
    const bool rounds_x =
        dtype == DType::kBF16 &&
        (cpu::DnnlMatmulAvailable() || cpu::MatmulNeedsBf16X(cpu::BestMatmulIsa(), dtype));
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t c = 0; c < m; ++c) {
        double want = 0, abs_sum = 0;
        for (int64_t i = 0; i < k; ++i) {
          want += static_cast<double>(xs[r * k + i]) * w_stored[c * k + i];
          abs_sum += std::abs(static_cast<double>(xs[r * k + i]) * w_stored[c * k + i]);
        }
        const double bound = Bound(MatmulIsa::kMatmulIsaScalar, dtype, k, abs_sum) +
                             (rounds_x ? std::ldexp(1.0, -9) * abs_sum : 0.0);
        ASSERT_NEAR(results[0][r * m + c], want, bound) << r << "," << c;
        ASSERT_NEAR(results[1][r * m + c], want, bound) << r << "," << c << " without oneDNN";
      }
    }
  }
}

// Every prefill length makes its own oneDNN primitives; the backend keeps at most 64 and starts
// over past that. 100 distinct row counts (about 200 primitives) stay right throughout.
TEST(CpuBackendManyRowsTest, ManyDistinctRowCountsStayCorrectPastThePrimitiveBound) {
  auto with = CreateCpuBackend(CpuBackendConfig{.num_threads = 2});
  auto without = CreateCpuBackend(CpuBackendConfig{.num_threads = 2, .use_dnnl = false});
  ASSERT_TRUE(with.ok() && without.ok());
  const int64_t k = 24, m = 40;
  std::vector<float> ws(m * k);
  for (size_t i = 0; i < ws.size(); ++i) ws[i] = 0.01f * static_cast<float>(i % 17) - 0.08f;
  Tensor w_with = Upload(**with, DType::kF32, {m, k}, ws);
  Tensor w_without = Upload(**without, DType::kF32, {m, k}, ws);
  for (int64_t n = 32; n < 132; ++n) {
    std::vector<float> xs(n * k);
    for (size_t i = 0; i < xs.size(); ++i) xs[i] = 0.1f * static_cast<float>(i % 13) - 0.6f;
    std::vector<std::vector<float>> got;
    for (auto [b, w] : {std::pair{with->get(), &w_with}, std::pair{without->get(), &w_without}}) {
      Tensor x = Upload(*b, DType::kF32, {n, k}, xs);
      auto y = b->Allocate(DType::kF32, {n, m});
      ASSERT_TRUE(y.ok());
      ASSERT_TRUE(b->Matmul(x, *w, nullptr, &*y).ok());
      got.push_back(Download(*b, *y));
    }
    // |x_i w_i| <= 0.6 * 0.08 over 24 terms: float32 sums differ by far less than 1e-5.
    for (size_t i = 0; i < got[0].size(); ++i) ASSERT_NEAR(got[0][i], got[1][i], 1e-5) << n;
  }
}

TEST(CpuBackendConfigTest, BadWeightDtypeAndUnsupportedPathGetClearErrors) {
  auto i32 = CreateCpuBackend(CpuBackendConfig{.weight_dtype = DType::kI32});
  ASSERT_FALSE(i32.ok());
  EXPECT_EQ(i32.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(i32.status().message(), HasSubstr("weight dtype i32"));
  if (cpu::BestMatmulIsa() != MatmulIsa::kMatmulIsaAvx512Bf16) {
    auto fast = CreateCpuBackend(CpuBackendConfig{.matmul_isa = MatmulIsa::kMatmulIsaAvx512Bf16});
    ASSERT_FALSE(fast.ok());
    EXPECT_EQ(fast.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(fast.status().message(), HasSubstr("avx512_bf16"));
  }
}

TEST(CpuBackendConfigTest, OpsRejectWeightsNotInTheBackendsWeightDtypeNamingTheArgument) {
  auto backend = MakeCpu(DType::kBF16, cpu::BestMatmulIsa());
  ASSERT_NE(backend, nullptr);
  Tensor x = Upload(*backend, DType::kF32, {1, 2}, {1, 2});
  auto w = backend->Allocate(DType::kI32, {3, 2});
  ASSERT_TRUE(w.ok());
  auto y = backend->Allocate(DType::kF32, {1, 3});
  ASSERT_TRUE(y.ok());
  const absl::Status status = backend->Matmul(x, *w, nullptr, &*y);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("Matmul: w"));
  EXPECT_THAT(status.message(), HasSubstr("keeps weights in bf16"));
  auto w32 = backend->AllocateZeros(DType::kF32, {3, 2});
  ASSERT_TRUE(w32.ok());
  EXPECT_THAT(backend->Matmul(x, *w32, nullptr, &*y).message(), HasSubstr("Matmul: w"));
  EXPECT_THAT(backend->Embedding(*w32, std::vector<int32_t>{0}, &x).message(),
              HasSubstr("Embedding: table"));
  auto norm = backend->AllocateZeros(DType::kF16, {2});
  ASSERT_TRUE(norm.ok());
  EXPECT_THAT(backend->RmsNorm(x, *norm, 1e-5f, &x).message(), HasSubstr("RmsNorm: weight"));
}

TEST(CpuBackendConfigTest, MatmulWithKZeroWritesZerosPlusBias) {
  auto backend = MakeCpu(DType::kBF16, cpu::BestMatmulIsa());
  ASSERT_NE(backend, nullptr);
  auto x = backend->Allocate(DType::kF32, {2, 0});
  auto w = backend->Allocate(DType::kBF16, {3, 0});
  ASSERT_TRUE(x.ok() && w.ok());
  Tensor bias = Upload(*backend, DType::kBF16, {3}, {1, 2, 3});
  Tensor y = Upload(*backend, DType::kF32, {2, 3}, {9, 9, 9, 9, 9, 9});
  ASSERT_TRUE(backend->Matmul(*x, *w, &bias, &y).ok());
  EXPECT_THAT(Download(*backend, y), ::testing::ElementsAre(1, 2, 3, 1, 2, 3));
}

TEST(ResolveCpuWeightDtypeTest, AutoKeepsTheCheckpointDtypeAndBadValuesNameTheFlag) {
  EXPECT_EQ(*ResolveCpuWeightDtype("auto", DType::kBF16), DType::kBF16);
  EXPECT_EQ(*ResolveCpuWeightDtype("auto", DType::kF16), DType::kF16);
  EXPECT_EQ(*ResolveCpuWeightDtype("auto", DType::kF32), DType::kF32);
  EXPECT_EQ(*ResolveCpuWeightDtype("f32", DType::kBF16), DType::kF32);
  EXPECT_EQ(*ResolveCpuWeightDtype("bf16", DType::kF32), DType::kBF16);
  EXPECT_EQ(*ResolveCpuWeightDtype("f16", DType::kF32), DType::kF16);
  auto bad = ResolveCpuWeightDtype("fp8", DType::kF32);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("--cpu-weight-dtype 'fp8'"));
}

TEST(ResolveCpuWeightDtypeTest, CreateBackendPassesTheWeightDtypeToTheCpuBackend) {
  auto backend =
      CreateBackend("cpu", BackendOptions{.num_threads = 1, .cpu_weight_dtype = DType::kBF16});
  ASSERT_TRUE(backend.ok()) << backend.status();
  EXPECT_EQ((*backend)->weight_dtype(), DType::kBF16);
  EXPECT_EQ((*backend)->activation_dtype(), DType::kF32);
}

}  // namespace
}  // namespace zigzag
