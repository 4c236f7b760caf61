// Argument checks for the CUDA backend's ops. Each returns InvalidArgument naming the op and the
// argument ("RmsNorm: x must be ..."), so a caller's mistake is reported before any kernel could
// read out of bounds. Knows nothing of CUDA itself.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/tensor.h"

namespace zigzag::cuda_internal {

inline constexpr int kAnyRank = -1;

// `tensor` is allocated, in CUDA memory, of `dtype` and (unless kAnyRank) of rank `rank`.
inline absl::Status CheckDeviceTensor(const char* op, const char* name, const Tensor& tensor,
                                      DType dtype, int rank) {
  if (!tensor.defined()) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " is not allocated"));
  }
  if (tensor.device() != Device::kCuda) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " is ", tensor.DebugString(),
                                                   ", expected a tensor in CUDA memory"));
  }
  if (tensor.dtype() != dtype) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " is ", tensor.DebugString(),
                                                   ", expected dtype ", DTypeName(dtype)));
  }
  if (rank != kAnyRank && tensor.rank() != rank) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": ", name, " is ", tensor.DebugString(), ", expected rank ", rank));
  }
  return absl::OkStatus();
}

// As CheckDeviceTensor, for an output pointer that must not be null.
inline absl::Status CheckDeviceOutput(const char* op, const char* name, const Tensor* tensor,
                                      DType dtype, int rank) {
  if (tensor == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " is null"));
  }
  return CheckDeviceTensor(op, name, *tensor, dtype, rank);
}

// tensor.dim(index) == expected; `why` says where the expectation comes from.
inline absl::Status CheckDim(const char* op, const char* name, const Tensor& tensor, int index,
                             int64_t expected, const char* why) {
  if (tensor.dim(index) != expected) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " is ", tensor.DebugString(),
                                                   ", expected dimension ", index, " = ", expected,
                                                   " (", why, ")"));
  }
  return absl::OkStatus();
}

inline absl::Status CheckSameShape(const char* op, const char* name_a, const Tensor& a,
                                   const char* name_b, const Tensor& b) {
  if (a.shape() != b.shape()) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", name_a, " is ", a.DebugString(),
                                                   " but ", name_b, " is ", b.DebugString(),
                                                   "; they must have the same shape"));
  }
  return absl::OkStatus();
}

// Every index in [0, limit).
inline absl::Status CheckIndices(const char* op, const char* name, std::span<const int32_t> indices,
                                 int64_t limit, const char* limit_name) {
  for (size_t i = 0; i < indices.size(); ++i) {
    if (indices[i] < 0 || indices[i] >= limit) {
      return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, "[", i, "] = ", indices[i],
                                                     " is outside [0, ", limit, ") (", limit_name,
                                                     ")"));
    }
  }
  return absl::OkStatus();
}

// True when the byte ranges of a and b intersect.
inline bool Overlaps(const Tensor& a, const Tensor& b) {
  const auto a_begin = reinterpret_cast<uintptr_t>(a.data());
  const auto b_begin = reinterpret_cast<uintptr_t>(b.data());
  return a.bytes() > 0 && b.bytes() > 0 && a_begin < b_begin + b.bytes() &&
         b_begin < a_begin + a.bytes();
}

}  // namespace zigzag::cuda_internal
