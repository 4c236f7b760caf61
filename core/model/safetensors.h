// One memory-mapped .safetensors file: its header parsed into tensor descriptors, and views of
// the tensor bytes in place (no copy). Knows nothing of model architectures or shards.
// Format: 8-byte little-endian header length N, N bytes of JSON, then the data region.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/dtype.h"
#include "kernels/tensor.h"

namespace zigzag {

// Bytes of one tensor inside a mapped file. Valid while the SafetensorsFile lives.
struct HostTensorView {
  std::string name;
  DType dtype = DType::kF32;  // only F32, BF16 and F16 are accepted
  Shape shape;
  const std::byte* data = nullptr;
  size_t size_bytes = 0;
  std::string file;  // the file it came from, for error messages
};

class SafetensorsFile {
 public:
  // Maps the file and validates the header: JSON syntax, dtypes, shapes, offsets inside the data
  // region and consistent with dtype x shape. Errors name the file and the problem.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  bool Contains(const std::string& name) const { return tensors_.count(name) > 0; }
  // NotFound naming the file when absent.
  absl::StatusOr<HostTensorView> Get(const std::string& name) const;
  std::vector<std::string> TensorNames() const;

 private:
  SafetensorsFile() = default;
  std::filesystem::path path_;
  void* mapping_ = nullptr;
  size_t mapping_size_ = 0;
  std::map<std::string, HostTensorView> tensors_;
};

}  // namespace zigzag
