#include "kernels/tensor.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/util/check.h"

namespace zigzag {

std::string ShapeToString(const Shape& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

int64_t ShapeNumel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string Tensor::DebugString() const {
  return absl::StrCat(DTypeName(dtype_), ShapeToString(shape_),
                      device_ == Device::kCpu ? "@cpu" : "@cuda");
}

Tensor Tensor::Rows(int64_t begin, int64_t count) const {
  ZZ_CHECK(rank() >= 1 && begin >= 0 && count >= 0 && begin + count <= shape_[0])
      << "Rows(" << begin << ", " << count << ") of " << DebugString();
  const int64_t row_elems = shape_[0] == 0 ? 0 : numel() / shape_[0];
  Shape shape = shape_;
  shape[0] = count;
  char* base =
      static_cast<char*>(data_) + begin * row_elems * static_cast<int64_t>(DTypeSize(dtype_));
  return Tensor(storage_, base, dtype_, std::move(shape), device_);
}

Tensor Tensor::Reshaped(Shape shape) const {
  ZZ_CHECK_EQ(ShapeNumel(shape), numel())
      << "Reshaped " << DebugString() << " to " << ShapeToString(shape);
  return Tensor(storage_, data_, dtype_, std::move(shape), device_);
}

}  // namespace zigzag
