// CUDA backend tests. Without a GPU (CI, this dev machine): the backend fails cleanly with a
// reason, "auto" falls back to the CPU, and the CUDA/cuBLAS error macros produce Statuses naming
// file, line and call. With a GPU: CUDA-specific behaviour (out-of-memory, bad launches, host
// tensors rejected, scratch growth, tensors outliving the backend, long-context paged attention
// with head dims 16..256) against float64 references. Op-by-op comparisons on every backend are
// in backend_ops_test.cc and backend_attention_test.cc.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/backend_registry.h"
#include "tests/test_support.h"
#ifdef ZIGZAG_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/elementwise_kernels.cuh"
#endif

namespace zigzag {
namespace {

using ::testing::HasSubstr;

#ifndef ZIGZAG_HAVE_CUDA

TEST(CudaBackendTest, BuildWithoutCudaRefusesCudaAndFallsBackToCpu) {
  auto cuda = CreateBackend("cuda");
  EXPECT_EQ(cuda.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(cuda.status().message()), HasSubstr("no CUDA support"));
  auto fallback = CreateBackend("auto");
  ASSERT_TRUE(fallback.ok()) << fallback.status();
  EXPECT_STREQ((*fallback)->name(), "cpu");
}

TEST(CudaBackendTest, CudaSpecificTests) {
  GTEST_SKIP() << "this build has no CUDA support (configure with -DZIGZAG_CUDA=ON)";
}

#else  // ZIGZAG_HAVE_CUDA

// Tests that run with or without a device -------------------------------------------------------

TEST(CudaBackendTest, DeviceUsableExplainsWhyNot) {
  const absl::Status usable = CudaDeviceUsable();
  if (usable.ok()) GTEST_SKIP() << "a CUDA device is usable here";
  EXPECT_EQ(usable.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(usable.message()), HasSubstr("no CUDA device: "));
  EXPECT_GT(usable.message().size(), std::string("no CUDA device: ").size());
}

TEST(CudaBackendTest, CreateWithoutDeviceFailsWithTheReason) {
  const absl::Status usable = CudaDeviceUsable();
  if (usable.ok()) GTEST_SKIP() << "a CUDA device is usable here";
  for (bool fp32 : {true, false}) {
    auto cuda = CreateBackend("cuda", BackendOptions{.cuda_fp32 = fp32});
    ASSERT_FALSE(cuda.ok());
    EXPECT_EQ(cuda.status(), usable);
  }
}

TEST(CudaBackendTest, AutoPicksCudaWhenUsableElseCpu) {
  auto backend = CreateBackend("auto");
  ASSERT_TRUE(backend.ok()) << backend.status();
  EXPECT_STREQ((*backend)->name(), CudaDeviceUsable().ok() ? "cuda" : "cpu");
  const std::vector<std::string> names = AvailableBackends();
  ASSERT_FALSE(names.empty());
  EXPECT_EQ(names[0], "cpu");
  EXPECT_EQ(std::count(names.begin(), names.end(), "cuda"), CudaDeviceUsable().ok() ? 1 : 0);
}

constexpr int kSetDeviceLine = __LINE__ + 2;
absl::Status SetImpossibleDevice() {
  CUDA_RETURN_IF_ERROR(cudaSetDevice(-1));
  return absl::OkStatus();
}

TEST(CudaBackendTest, CudaErrorBecomesStatusNamingFileLineAndCall) {
  const absl::Status status = SetImpossibleDevice();  // invalid device, or no driver at all
  ASSERT_FALSE(status.ok());
  const std::string message(status.message());
  EXPECT_THAT(message, HasSubstr("cuda_backend_test.cc:" + std::to_string(kSetDeviceLine) +
                                 ": cudaSetDevice(-1) failed: cudaError"));
  if (CudaDeviceUsable().ok()) {
    // cudaErrorInvalidDevice is not sticky: the macro resets it so the next launch check is
    // clean. (Without a driver the initialisation error is sticky and stays.)
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(message, HasSubstr("cudaErrorInvalidDevice"));
    EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  }
}

absl::Status ReportOutOfMemory() {
  CUDA_RETURN_IF_ERROR(cudaErrorMemoryAllocation);
  return absl::OkStatus();
}

absl::Status ReportCublasFailure(cublasStatus_t status) {
  CUBLAS_RETURN_IF_ERROR(status);
  return absl::OkStatus();
}

TEST(CudaBackendTest, ErrorCodesMapOntoStatusCodes) {
  const absl::Status oom = ReportOutOfMemory();
  EXPECT_EQ(oom.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(oom.message()), HasSubstr("cudaErrorMemoryAllocation"));
  const absl::Status cublas_oom = ReportCublasFailure(CUBLAS_STATUS_ALLOC_FAILED);
  EXPECT_EQ(cublas_oom.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(cublas_oom.message()),
              ::testing::AllOf(HasSubstr("cuda_backend_test.cc:"), HasSubstr("status"),
                               HasSubstr("CUBLAS_STATUS_ALLOC_FAILED")));
  EXPECT_EQ(ReportCublasFailure(CUBLAS_STATUS_INVALID_VALUE).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ReportCublasFailure(CUBLAS_STATUS_SUCCESS).ok());
}

// GPU-only tests ----------------------------------------------------------------------------------

class CudaGpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const absl::Status usable = CudaDeviceUsable();
    if (!usable.ok()) GTEST_SKIP() << "no usable CUDA device: " << usable.message();
  }

  std::unique_ptr<Backend> Create(bool fp32) {
    auto backend = CreateBackend("cuda", BackendOptions{.cuda_fp32 = fp32});
    EXPECT_TRUE(backend.ok()) << backend.status();
    return backend.ok() ? std::move(backend).value() : nullptr;
  }

  static Tensor Upload(Backend& backend, const std::vector<float>& host, DType dtype,
                       const Shape& shape) {
    auto tensor = backend.Allocate(dtype, shape);
    EXPECT_TRUE(tensor.ok()) << tensor.status();
    if (!tensor.ok()) return Tensor();
    const absl::Status copied = backend.CopyToDevice(host.data(), DType::kF32, &*tensor);
    EXPECT_TRUE(copied.ok()) << copied;
    return *tensor;
  }

  static std::vector<float> Download(Backend& backend, const Tensor& tensor) {
    std::vector<float> host(tensor.numel());
    const absl::Status copied = backend.CopyToHost(tensor, host);
    EXPECT_TRUE(copied.ok()) << copied;
    return host;
  }
};

TEST_F(CudaGpuTest, ReportsItsDTypesAndDevice) {
  for (bool fp32 : {true, false}) {
    auto backend = Create(fp32);
    ASSERT_NE(backend, nullptr);
    EXPECT_STREQ(backend->name(), "cuda");
    EXPECT_EQ(backend->device(), Device::kCuda);
    const DType expected = fp32 ? DType::kF32 : DType::kBF16;
    EXPECT_EQ(backend->activation_dtype(), expected);
    EXPECT_EQ(backend->weight_dtype(), expected);
  }
}

TEST_F(CudaGpuTest, ImpossibleAllocationsAreErrorsAndLaterWorkStillRuns) {
  auto backend = Create(true);
  ASSERT_NE(backend, nullptr);
  auto four_tib = backend->Allocate(DType::kF32, {int64_t{1} << 40});
  EXPECT_EQ(four_tib.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(four_tib.status().message()), HasSubstr("Allocate: out of CUDA memory"));
  auto overflow = backend->Allocate(DType::kF32, {int64_t{1} << 40, int64_t{1} << 40});
  EXPECT_EQ(overflow.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(overflow.status().message()), HasSubstr("Allocate"));
  auto negative = backend->Allocate(DType::kF32, {3, -1});
  EXPECT_EQ(negative.status().code(), absl::StatusCode::kInvalidArgument);

  // The failed cudaMalloc must not be reported again by the next launch check.
  Tensor a = Upload(*backend, {1.0f, 2.0f, 3.0f}, DType::kF32, {3});
  auto out = backend->AllocateZeros(DType::kF32, {3});
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_TRUE(backend->Add(a, a, &*out).ok());
  EXPECT_EQ(Download(*backend, *out), (std::vector<float>{2.0f, 4.0f, 6.0f}));
}

constexpr int kBadLaunchLine = __LINE__ + 2;
absl::Status LaunchBadly() {
  CUDA_RETURN_IF_ERROR(cuda::LaunchInvalidConfigurationForTesting(nullptr));
  return absl::OkStatus();
}

TEST_F(CudaGpuTest, BadLaunchStatusNamesFileLineAndLauncher) {
  auto backend = Create(true);
  ASSERT_NE(backend, nullptr);
  const absl::Status status = LaunchBadly();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()),
              ::testing::AllOf(HasSubstr("cuda_backend_test.cc:" + std::to_string(kBadLaunchLine)),
                               HasSubstr("LaunchInvalidConfigurationForTesting(nullptr) failed"),
                               HasSubstr("cudaErrorInvalidConfiguration")));
  EXPECT_TRUE(backend->Synchronize().ok()) << "a configuration error is not sticky";
}

TEST_F(CudaGpuTest, HostTensorsAndOtherDTypesAreRejectedBeforeAnyLaunch) {
  auto backend = Create(true);
  ASSERT_NE(backend, nullptr);
  auto host_storage = std::make_shared<std::vector<float> >(6, 1.0f);
  Tensor host(host_storage, host_storage->data(), DType::kF32, {2, 3}, Device::kCpu);
  auto out = backend->AllocateZeros(DType::kF32, {2, 3});
  ASSERT_TRUE(out.ok());
  const absl::Status add = backend->Add(host, *out, &*out);
  EXPECT_EQ(add.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(add.message()), HasSubstr("Add: a is f32[2, 3]@cpu"));
  EXPECT_EQ(backend->CopyToDevice(host_storage->data(), DType::kF32, &host).code(),
            absl::StatusCode::kInvalidArgument);
  auto bf16 = backend->AllocateZeros(DType::kBF16, {2, 3});
  ASSERT_TRUE(bf16.ok());
  const absl::Status wrong_dtype = backend->SiluMul(*bf16, *out, &*out);
  EXPECT_THAT(std::string(wrong_dtype.message()), HasSubstr("SiluMul: gate"));
  EXPECT_THAT(std::string(wrong_dtype.message()), HasSubstr("expected dtype f32"));
  // head_dim beyond the attention kernel's register tiles.
  auto q = backend->AllocateZeros(DType::kF32, {1, 1, 512});
  auto pool = backend->AllocateZeros(DType::kF32, {1, 2, 4, 512});
  const std::vector<int32_t> blocks = {0};
  const std::vector<int32_t> lens = {1};
  const std::vector<int32_t> offsets = {0, 1};
  const AttentionSequence seq{.query_begin = 0,
                              .num_queries = 1,
                              .kv_lens = lens,
                              .block_offsets = offsets,
                              .block_ids = blocks};
  const absl::Status attention =
      backend->Attention(AttentionBatch{.sequences = {&seq, 1}, .num_kv_heads = 1}, *q, *pool, &*q);
  EXPECT_EQ(attention.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(attention.message()), HasSubstr("Attention: head_dim 512"));
  EXPECT_TRUE(backend->Synchronize().ok());
}

TEST_F(CudaGpuTest, MetadataScratchGrowsWhileEarlierKernelsAreQueued) {
  auto backend = Create(true);
  ASSERT_NE(backend, nullptr);
  const int64_t vocab = 50, hidden = 8;
  std::vector<float> table(vocab * hidden);
  std::iota(table.begin(), table.end(), 0.0f);
  Tensor table_t = Upload(*backend, table, DType::kF32, {vocab, hidden});
  // A small call, then one whose ids (80 KB) outgrow the 64 KB first scratch buffer.
  for (int64_t count : {int64_t{3}, int64_t{20000}, int64_t{5}}) {
    std::vector<int32_t> ids(count);
    for (int64_t i = 0; i < count; ++i) ids[i] = static_cast<int32_t>((i * 7 + count) % vocab);
    auto out = backend->Allocate(DType::kF32, {count, hidden});
    ASSERT_TRUE(out.ok());
    ASSERT_TRUE(backend->Embedding(table_t, ids, &*out).ok());
    const std::vector<float> got = Download(*backend, *out);
    for (int64_t i = 0; i < count; ++i) {
      for (int64_t c = 0; c < hidden; ++c) {
        ASSERT_EQ(got[i * hidden + c], table[ids[i] * hidden + c]) << "row " << i;
      }
    }
  }
}

TEST_F(CudaGpuTest, TensorsMayOutliveTheBackend) {
  Tensor survivor;
  {
    auto backend = Create(false);
    ASSERT_NE(backend, nullptr);
    auto t = backend->AllocateZeros(DType::kBF16, {1024, 1024});
    ASSERT_TRUE(t.ok());
    survivor = *t;
  }
  survivor = Tensor();  // frees device memory after the stream and cuBLAS handle are gone
  SUCCEED();
}

TEST_F(CudaGpuTest, MatmulOnRowViewsAndWithAnEmptyInnerDimension) {
  auto backend = Create(true);
  ASSERT_NE(backend, nullptr);
  const int64_t n = 5, k = 3, m = 4;
  const std::vector<float> x = testing::RandomFloats(n * k, 1);
  const std::vector<float> w = testing::RandomFloats(m * k, 2);
  const std::vector<float> bias = testing::RandomFloats(m, 3);
  Tensor x_t = Upload(*backend, x, DType::kF32, {n, k});
  Tensor w_t = Upload(*backend, w, DType::kF32, {m, k});
  Tensor bias_t = Upload(*backend, bias, DType::kF32, {m});
  auto y = backend->AllocateZeros(DType::kF32, {n, m});
  ASSERT_TRUE(y.ok());
  // Rows 2..4 of x into rows 1..3 of y: offset pointers on both sides.
  Tensor y_rows = y->Rows(1, 3);
  ASSERT_TRUE(backend->Matmul(x_t.Rows(2, 3), w_t, &bias_t, &y_rows).ok());
  const std::vector<float> got = Download(*backend, *y);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < m; ++c) {
      double expected = 0.0;
      if (r >= 1 && r <= 3) {
        expected = bias[c];
        for (int64_t i = 0; i < k; ++i) expected += double{x[(r + 1) * k + i]} * w[c * k + i];
      }
      EXPECT_NEAR(got[r * m + c], expected, 1e-5) << "y[" << r << ", " << c << "]";
    }
  }
  auto x_empty = backend->Allocate(DType::kF32, {2, 0});
  auto w_empty = backend->Allocate(DType::kF32, {m, 0});
  auto y_bias = backend->Allocate(DType::kF32, {2, m});
  ASSERT_TRUE(backend->Matmul(*x_empty, *w_empty, &bias_t, &*y_bias).ok());
  const std::vector<float> only_bias = Download(*backend, *y_bias);
  for (int64_t c = 0; c < 2 * m; ++c) EXPECT_EQ(only_bias[c], bias[c % m]);
}

// Long-context paged attention: many keys per warp, every head-dim tile of the kernel.
TEST_F(CudaGpuTest, LongContextAttentionMatchesFloat64Reference) {
  auto backend = Create(true);
  ASSERT_NE(backend, nullptr);
  const int64_t kv_heads = 2, group = 3, heads = kv_heads * group, block_size = 16;
  const int32_t kv_len = 1000, num_queries = 3, window_begin = kv_len - 2;
  // Each KV head's stream has its own scattered blocks: head g takes blocks[g * per_head, ...).
  const int64_t per_head = (kv_len + block_size - 1) / block_size;
  const int64_t num_blocks = kv_heads * per_head + 4;
  for (int64_t head_dim : {16, 80, 128, 256}) {
    std::vector<int32_t> blocks(num_blocks);
    std::iota(blocks.begin(), blocks.end(), 0);
    std::shuffle(blocks.begin(), blocks.end(), std::mt19937(static_cast<unsigned>(head_dim)));
    const int64_t slot_floats = head_dim;
    const std::vector<float> pool =
        testing::RandomFloats(num_blocks * 2 * block_size * slot_floats, 10 + head_dim);
    const std::vector<float> q = testing::RandomFloats(num_queries * heads * head_dim, head_dim);
    const float scale = 1.5f / std::sqrt(static_cast<float>(head_dim));

    std::vector<double> expected_out(q.size(), 0.0);
    std::vector<double> expected_mass(heads * kv_len, 0.0);
    auto pool_at = [&](int64_t j, int kv, int64_t g) {
      const int64_t block = blocks[g * per_head + j / block_size];
      return &pool[((block * 2 + kv) * block_size + j % block_size) * slot_floats];
    };
    for (int32_t r = 0; r < num_queries; ++r) {
      const int64_t cache_index = kv_len - num_queries + r;
      for (int64_t h = 0; h < heads; ++h) {
        const float* qh = &q[(r * heads + h) * head_dim];
        std::vector<double> p(cache_index + 1);
        for (int64_t j = 0; j <= cache_index; ++j) {
          double dot = 0.0;
          for (int64_t d = 0; d < head_dim; ++d) dot += double{qh[d]} * pool_at(j, 0, h / group)[d];
          p[j] = scale * dot;
        }
        const double max_logit = *std::max_element(p.begin(), p.end());
        double sum = 0.0;
        for (double& v : p) sum += (v = std::exp(v - max_logit));
        for (int64_t j = 0; j <= cache_index; ++j) {
          for (int64_t d = 0; d < head_dim; ++d) {
            expected_out[(r * heads + h) * head_dim + d] +=
                p[j] / sum * pool_at(j, 1, h / group)[d];
          }
          if (cache_index >= window_begin) expected_mass[h * kv_len + j] += p[j] / sum;
        }
      }
    }

    Tensor pool_t = Upload(*backend, pool, DType::kF32, {num_blocks, 2, block_size, head_dim});
    Tensor q_t = Upload(*backend, q, DType::kF32, {num_queries, heads, head_dim});
    auto out = backend->AllocateZeros(DType::kF32, {num_queries, heads, head_dim});
    auto mass = backend->AllocateZeros(DType::kF32, {heads, kv_len});
    ASSERT_TRUE(out.ok() && mass.ok());
    const std::vector<int32_t> lens(kv_heads, kv_len);
    std::vector<int32_t> offsets;
    for (int64_t g = 0; g <= kv_heads; ++g) offsets.push_back(static_cast<int32_t>(g * per_head));
    const AttentionSequence seq{.query_begin = 0,
                                .num_queries = num_queries,
                                .kv_lens = lens,
                                .block_offsets = offsets,
                                .block_ids = blocks,
                                .window_mass = &*mass,
                                .window_begin = window_begin};
    const absl::Status status = backend->Attention(
        AttentionBatch{
            .sequences = {&seq, 1}, .num_kv_heads = static_cast<int32_t>(kv_heads), .scale = scale},
        q_t, pool_t, &*out);
    ASSERT_TRUE(status.ok()) << status;
    const std::vector<float> got_out = Download(*backend, *out);
    const std::vector<float> got_mass = Download(*backend, *mass);
    for (size_t i = 0; i < got_out.size(); ++i) {
      ASSERT_NEAR(got_out[i], expected_out[i], 1e-4) << "head_dim " << head_dim << " out " << i;
    }
    for (size_t i = 0; i < got_mass.size(); ++i) {
      ASSERT_NEAR(got_mass[i], expected_mass[i], 1e-5) << "head_dim " << head_dim << " mass " << i;
    }
  }
}

#endif  // ZIGZAG_HAVE_CUDA

}  // namespace
}  // namespace zigzag
