#include "core/model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/util/json_fields.h"
#include "core/util/status_macros.h"
#include "nlohmann/json.hpp"

namespace zigzag {
namespace {

using nlohmann::json;

// The largest header accepted (the reference implementation's limit) and tensor rank.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr size_t kMaxRank = 16;

// Dtype names safetensors defines that we recognise but cannot serve.
bool IsKnownUnsupportedDType(const std::string& name) {
  static const char* const kNames[] = {
      "F64",  "I64",     "U64",     "I32",     "U32",     "I16",     "U16", "I8", "U8",
      "BOOL", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4",  "C64"};
  for (const char* known : kNames) {
    if (name == known) return true;
  }
  return false;
}

// Closes a file descriptor on scope exit.
class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() { ::close(fd_); }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;

 private:
  int fd_;
};

absl::Status Invalid(const std::string& file, const std::string& problem) {
  return absl::InvalidArgumentError(absl::StrCat("safetensors file ", file, ": ", problem));
}

absl::Status InvalidTensor(const std::string& file, const std::string& tensor,
                           const std::string& problem) {
  return Invalid(file, absl::StrCat("tensor '", tensor, "' ", problem));
}

absl::StatusOr<DType> ParseDType(const std::string& file, const std::string& tensor,
                                 const json& entry) {
  if (!entry.contains("dtype") || !entry["dtype"].is_string()) {
    return InvalidTensor(file, tensor, "has no string 'dtype'");
  }
  const std::string name = entry["dtype"].get<std::string>();
  if (name == "F32") return DType::kF32;
  if (name == "BF16") return DType::kBF16;
  if (name == "F16") return DType::kF16;
  if (IsKnownUnsupportedDType(name)) {
    return InvalidTensor(
        file, tensor,
        absl::StrCat("has unsupported dtype '", name, "' (expected F32, BF16 or F16)"));
  }
  return InvalidTensor(file, tensor,
                       absl::StrCat("has unknown dtype '", name, "' (expected F32, BF16 or F16)"));
}

// A list of at most kMaxRank non-negative integers; the byte count of the largest dtype must fit
// in int64 (checked for overflow).
absl::StatusOr<Shape> ParseShape(const std::string& file, const std::string& tensor,
                                 const json& entry) {
  if (!entry.contains("shape") || !entry["shape"].is_array()) {
    return InvalidTensor(file, tensor, "has no 'shape' list");
  }
  const json& dims = entry["shape"];
  if (dims.size() > kMaxRank) {
    return InvalidTensor(file, tensor,
                         absl::StrCat("has a shape of ", dims.size(),
                                      " dimensions, more than the limit of ", kMaxRank));
  }
  Shape shape;
  int64_t numel = 1;
  for (size_t i = 0; i < dims.size(); ++i) {
    const json& dim = dims[i];
    const bool valid =
        dim.is_number_unsigned() &&
        dim.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    if (!valid) {
      return InvalidTensor(file, tensor,
                           absl::StrCat("has a shape that is not a list of non-negative integers: "
                                        "'shape[",
                                        i, "]' is ", DescribeJson(dim)));
    }
    const int64_t size = dim.get<int64_t>();
    if (size != 0 && numel > std::numeric_limits<int64_t>::max() / 8 / size) {
      return InvalidTensor(
          file, tensor,
          absl::StrCat("has a shape too large: the element count overflows at 'shape[", i, "]'"));
    }
    numel *= size;
    shape.push_back(size);
  }
  return shape;
}

struct Offsets {
  uint64_t begin = 0;
  uint64_t end = 0;
};

absl::StatusOr<Offsets> ParseOffsets(const std::string& file, const std::string& tensor,
                                     const json& entry) {
  if (!entry.contains("data_offsets") || !entry["data_offsets"].is_array() ||
      entry["data_offsets"].size() != 2 || !entry["data_offsets"][0].is_number_unsigned() ||
      !entry["data_offsets"][1].is_number_unsigned()) {
    return InvalidTensor(
        file, tensor,
        absl::StrCat("needs 'data_offsets' [begin, end] of non-negative integers, got ",
                     entry.contains("data_offsets") ? DescribeJson(entry["data_offsets"])
                                                    : std::string("nothing")));
  }
  Offsets offsets{entry["data_offsets"][0].get<uint64_t>(),
                  entry["data_offsets"][1].get<uint64_t>()};
  if (offsets.begin > offsets.end) {
    return InvalidTensor(
        file, tensor,
        absl::StrCat("has data_offsets begin ", offsets.begin, " after end ", offsets.end));
  }
  return offsets;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(
    const std::filesystem::path& path) {
  const std::string file = path.string();
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    const std::string message =
        absl::StrCat("cannot open safetensors file ", file, ": ", std::strerror(error));
    if (error == ENOENT) return absl::NotFoundError(message);
    return absl::UnavailableError(message);
  }
  FdCloser closer(fd);
  struct stat info;
  if (::fstat(fd, &info) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot stat ", file, ": ", std::strerror(errno)));
  }
  if (!S_ISREG(info.st_mode)) return Invalid(file, "not a regular file");
  const uint64_t file_size = static_cast<uint64_t>(info.st_size);
  if (file_size < 8) {
    return Invalid(file, absl::StrCat("truncated: ", file_size,
                                      " bytes, shorter than the 8-byte header length"));
  }

  std::unique_ptr<SafetensorsFile> out(new SafetensorsFile());
  out->path_ = path;
  void* mapping = ::mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (mapping == MAP_FAILED) {
    return absl::UnavailableError(absl::StrCat("cannot mmap ", file, ": ", std::strerror(errno)));
  }
  // From here the destructor unmaps on every error path.
  out->mapping_ = mapping;
  out->mapping_size_ = file_size;
  const auto* bytes = static_cast<const std::byte*>(mapping);

  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | static_cast<uint8_t>(bytes[i]);
  if (header_size > file_size - 8) {
    return Invalid(file,
                   absl::StrCat("header length ", header_size, " exceeds file size ", file_size));
  }
  if (header_size > kMaxHeaderBytes) {
    return Invalid(file, absl::StrCat("header length ", header_size, " exceeds the limit of ",
                                      kMaxHeaderBytes, " bytes"));
  }
  const char* header_begin = reinterpret_cast<const char*>(bytes + 8);
  JsonParseResult parsed =
      ParseJsonText(std::string_view(header_begin, static_cast<size_t>(header_size)));
  if (parsed.error == JsonParseResult::Error::kSyntax) {
    return Invalid(file, absl::StrCat("header is not valid JSON: ", parsed.detail));
  }
  if (parsed.error == JsonParseResult::Error::kTooDeep) {
    return Invalid(file, absl::StrCat("header field '", parsed.detail, "' is nested deeper than ",
                                      kMaxJsonDepth, " levels of arrays and objects"));
  }
  const json header = std::move(parsed.value);
  if (!header.is_object()) return Invalid(file, "header is not a JSON object");

  const uint64_t data_begin = 8 + header_size;
  const uint64_t data_size = file_size - data_begin;
  struct Extent {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Extent> extents;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    if (!entry.is_object()) return InvalidTensor(file, name, "entry is not a JSON object");
    HostTensorView view;
    view.name = name;
    view.file = file;
    ASSIGN_OR_RETURN(view.dtype, ParseDType(file, name, entry));
    ASSIGN_OR_RETURN(view.shape, ParseShape(file, name, entry));
    ASSIGN_OR_RETURN(Offsets offsets, ParseOffsets(file, name, entry));
    if (offsets.end > data_size) {
      return InvalidTensor(file, name,
                           absl::StrCat("data ends at ", offsets.end,
                                        " beyond the file's data region of ", data_size, " bytes"));
    }
    const uint64_t expected_bytes =
        static_cast<uint64_t>(ShapeNumel(view.shape)) * DTypeSize(view.dtype);
    if (offsets.end - offsets.begin != expected_bytes) {
      return InvalidTensor(
          file, name,
          absl::StrCat("has ", offsets.end - offsets.begin, " bytes of data but dtype ",
                       entry["dtype"].get<std::string>(), " x shape ", ShapeToString(view.shape),
                       " needs ", expected_bytes));
    }
    view.data = bytes + data_begin + offsets.begin;
    view.size_bytes = static_cast<size_t>(expected_bytes);
    out->tensors_.emplace(name, std::move(view));
    if (offsets.end > offsets.begin) extents.push_back(Extent{offsets.begin, offsets.end, name});
  }
  // Tensors own disjoint bytes (as the format requires): a writer bug or a hostile file could
  // otherwise alias one tensor's data with another's.
  std::sort(extents.begin(), extents.end(),
            [](const Extent& a, const Extent& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < extents.size(); ++i) {
    if (extents[i].begin < extents[i - 1].end) {
      return InvalidTensor(
          file, extents[i].name,
          absl::StrCat("has data_offsets [", extents[i].begin, ", ", extents[i].end,
                       "] that overlap those of tensor '", extents[i - 1].name, "' [",
                       extents[i - 1].begin, ", ", extents[i - 1].end, "]"));
    }
  }
  return out;
}

SafetensorsFile::~SafetensorsFile() {
  if (mapping_ != nullptr) ::munmap(mapping_, mapping_size_);
}

absl::StatusOr<HostTensorView> SafetensorsFile::Get(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    return absl::NotFoundError(absl::StrCat("tensor '", name, "' not found in ", path_.string()));
  }
  return it->second;
}

std::vector<std::string> SafetensorsFile::TensorNames() const {
  std::vector<std::string> names;
  names.reserve(tensors_.size());
  for (const auto& [name, view] : tensors_) names.push_back(name);
  return names;
}

}  // namespace zigzag
