// Tensor: a typed, shaped view of memory that a Backend owns (host memory for the CPU backend,
// device memory for CUDA). Copying a Tensor shares the storage; the last copy frees it.
// It does no arithmetic and never moves data between host and device: Backend does both.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "kernels/dtype.h"

namespace zigzag {

enum class Device : uint8_t { kCpu, kCuda };

using Shape = std::vector<int64_t>;

std::string ShapeToString(const Shape& shape);
int64_t ShapeNumel(const Shape& shape);

class Tensor {
 public:
  Tensor() = default;
  // `storage` keeps the allocation alive; `data` points inside it.
  Tensor(std::shared_ptr<void> storage, void* data, DType dtype, Shape shape, Device device)
      : storage_(std::move(storage)),
        data_(data),
        dtype_(dtype),
        shape_(std::move(shape)),
        device_(device) {}

  bool defined() const { return data_ != nullptr || (storage_ != nullptr); }
  void* data() const { return data_; }
  template <typename T>
  T* data_as() const {
    return static_cast<T*>(data_);
  }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const { return shape_[i < 0 ? shape_.size() + i : i]; }
  int64_t numel() const { return ShapeNumel(shape_); }
  size_t bytes() const { return static_cast<size_t>(numel()) * DTypeSize(dtype_); }
  std::string DebugString() const;

  // Rows [begin, begin + count) along dimension 0, sharing storage.
  Tensor Rows(int64_t begin, int64_t count) const;
  // The same memory with another shape of equal element count.
  Tensor Reshaped(Shape shape) const;

 private:
  std::shared_ptr<void> storage_;
  void* data_ = nullptr;
  DType dtype_ = DType::kF32;
  Shape shape_;
  Device device_ = Device::kCpu;
};

}  // namespace zigzag
