// The backend-ops harness (after llama.cpp's test-backend-ops): which backend configurations this
// machine can run, upload/download helpers and the tolerance rule per dtype. It holds no
// reference math: every test computes its own float64 reference, never through a backend.
#pragma once

#include <cmath>
#include <cstdio>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/backend_registry.h"
#include "kernels/dtype.h"

namespace zigzag::testing {

inline constexpr const char* kNoCudaMessage =
    "no usable CUDA device: CUDA backend ops not tested on this machine";

struct BackendConfig {
  std::string label;  // test-name suffix
  std::string name;   // for CreateBackend
  BackendOptions options;
};

// gtest prints the parameter of a failing test with this.
inline void PrintTo(const BackendConfig& config, std::ostream* os) { *os << config.label; }

inline bool CudaAvailable() {
  for (const std::string& name : AvailableBackends()) {
    if (name == "cuda") return true;
  }
  return false;
}

// The CPU with a pool (3 threads, so chunks are uneven) and inline (1 thread); CUDA in float32
// and in bf16 when a device is usable here.
inline std::vector<BackendConfig> BackendConfigsToTest() {
  std::vector<BackendConfig> configs = {{"cpu", "cpu", BackendOptions{.num_threads = 3}},
                                        {"cpu_1thread", "cpu", BackendOptions{.num_threads = 1}}};
  if (CudaAvailable()) {
    configs.push_back({"cuda_fp32", "cuda", BackendOptions{.cuda_fp32 = true}});
    configs.push_back({"cuda_bf16", "cuda", BackendOptions{.cuda_fp32 = false}});
  }
  return configs;
}

inline std::string BackendConfigLabel(const ::testing::TestParamInfo<BackendConfig>& info) {
  return info.param.label;
}

// The values as a tensor of `dtype` holds them: references start from these, so that only the
// op's own arithmetic is measured.
inline std::vector<float> RoundTo(std::vector<float> values, DType dtype) {
  for (float& v : values) {
    if (dtype == DType::kBF16) v = BF16ToFloat(FloatToBF16(v));
    if (dtype == DType::kF16) v = HalfToFloat(FloatToHalf(v));
  }
  return values;
}

inline std::vector<double> ToDouble(const std::vector<float>& values) {
  return std::vector<double>(values.begin(), values.end());
}

// Status is InvalidArgument and its message reads "<op>: ..." and names `argument`.
inline void ExpectInvalidArgument(const absl::Status& status, const std::string& op,
                                  const std::string& argument) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()),
              ::testing::AllOf(::testing::StartsWith(op + ": "), ::testing::HasSubstr(argument)));
}

class BackendOpsTest : public ::testing::TestWithParam<BackendConfig> {
 protected:
  void SetUp() override {
    auto created = CreateBackend(GetParam().name, GetParam().options);
    ASSERT_TRUE(created.ok()) << created.status();
    backend_ = std::move(created).value();
    act_ = backend_->activation_dtype();
    weight_ = backend_->weight_dtype();
  }

  // Relative/absolute mix for |a - b| <= tol * (1 + |ref|): float32 ops agree to ~1e-6, so 1e-4
  // leaves room for summation order; bf16 outputs are rounded to 8 bits of mantissa (~4e-3).
  double tolerance() const { return act_ == DType::kF32 && weight_ == DType::kF32 ? 1e-4 : 2e-2; }

  Tensor Upload(const std::vector<float>& host, DType dtype, const Shape& shape) {
    auto tensor = backend_->Allocate(dtype, shape);
    EXPECT_TRUE(tensor.ok()) << tensor.status();
    if (!tensor.ok()) return Tensor();
    EXPECT_EQ(static_cast<int64_t>(host.size()), tensor->numel());
    const absl::Status copied = backend_->CopyToDevice(host.data(), DType::kF32, &*tensor);
    EXPECT_TRUE(copied.ok()) << copied;
    return *tensor;
  }

  Tensor Zeros(DType dtype, const Shape& shape) {
    auto tensor = backend_->AllocateZeros(dtype, shape);
    EXPECT_TRUE(tensor.ok()) << tensor.status();
    return tensor.ok() ? *tensor : Tensor();
  }

  std::vector<float> Download(const Tensor& tensor) {
    std::vector<float> host(tensor.defined() ? tensor.numel() : 0);
    const absl::Status copied = backend_->CopyToHost(tensor, host);
    EXPECT_TRUE(copied.ok()) << copied;
    return host;
  }

  // Element-wise |actual - expected| <= tol * (1 + |expected|); NaN never passes. Reports the
  // first few mismatches and the worst one.
  void ExpectClose(const std::vector<float>& actual, const std::vector<double>& expected,
                   double tol, const std::string& what) {
    ASSERT_EQ(actual.size(), expected.size()) << what;
    size_t failures = 0;
    double worst = 0.0;
    size_t worst_index = 0;
    for (size_t i = 0; i < actual.size(); ++i) {
      const double diff = std::fabs(static_cast<double>(actual[i]) - expected[i]);
      const double excess = diff / (1.0 + std::fabs(expected[i]));
      if (!(diff <= tol * (1.0 + std::fabs(expected[i])))) {
        if (++failures <= 5) {
          ADD_FAILURE() << what << " [" << GetParam().label << "]: element " << i << " is "
                        << actual[i] << ", expected " << expected[i] << " (tolerance " << tol
                        << ")";
        }
      }
      if (!(excess <= worst)) {
        worst = excess;
        worst_index = i;
      }
    }
    if (failures > 0) {
      ADD_FAILURE() << what << " [" << GetParam().label << "]: " << failures << " of "
                    << actual.size() << " elements out of tolerance; worst at " << worst_index;
    }
  }

  std::unique_ptr<Backend> backend_;
  DType act_ = DType::kF32;
  DType weight_ = DType::kF32;
};

}  // namespace zigzag::testing
