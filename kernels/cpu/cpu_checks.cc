#include "kernels/cpu/cpu_checks.h"

namespace zigzag::cpu {

absl::Status CheckF32(const char* op, const char* argument, const Tensor& tensor, int rank,
                      const char* layout) {
  if (!tensor.defined()) return ArgError(op, argument, "is an undefined tensor");
  if (tensor.device() != Device::kCpu) {
    return ArgError(op, argument, "is ", tensor.DebugString(),
                    ", not in the CPU backend's host memory");
  }
  if (tensor.dtype() != DType::kF32) {
    return ArgError(op, argument, "is ", tensor.DebugString(),
                    "; the CPU backend computes in f32 only");
  }
  if (tensor.rank() != rank) {
    return ArgError(op, argument, "must have rank ", rank, " ", layout, ", got ",
                    tensor.DebugString());
  }
  return absl::OkStatus();
}

absl::Status CheckF32Output(const char* op, const char* argument, const Tensor* tensor, int rank,
                            const char* layout) {
  if (tensor == nullptr) return ArgError(op, argument, "is null");
  return CheckF32(op, argument, *tensor, rank, layout);
}

absl::Status CheckShape(const char* op, const char* argument, const Tensor& tensor,
                        const Shape& expected) {
  if (tensor.shape() == expected) return absl::OkStatus();
  return ArgError(op, argument, "is ", tensor.DebugString(), ", expected shape ",
                  ShapeToString(expected));
}

bool Overlaps(const Tensor& a, const Tensor& b) {
  if (a.bytes() == 0 || b.bytes() == 0) return false;
  const auto a_begin = reinterpret_cast<uintptr_t>(a.data());
  const auto b_begin = reinterpret_cast<uintptr_t>(b.data());
  return a_begin < b_begin + b.bytes() && b_begin < a_begin + a.bytes();
}

}  // namespace zigzag::cpu
