// libFuzzer target: a .safetensors file through SafetensorsFile::Open (header length, header
// JSON, dtypes, shapes, data offsets), then every tensor view it returns is read end to end.
// Input: the file's bytes. Generator mode (shaped_input.h): the expanded text is
// "<header JSON>\0<data region>" and the 8-byte header length is written in front of it.
// The file lives in a memfd (anonymous memory, no disk) so that the real Open, mmap included, runs.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <string_view>

#include "core/model/safetensors.h"
#include "fuzz/json_mutator.h"
#include "fuzz/shaped_input.h"

namespace {

std::string BuildFile(std::string_view input) {
  if (input.empty() || static_cast<uint8_t>(input[0]) != zigzag::fuzz::kShapeMarker) {
    return std::string(input);
  }
  const std::string expanded = zigzag::fuzz::ExpandShapedInput(input);
  const auto parts = zigzag::fuzz::SplitParts(expanded, 2);
  const std::string_view header = parts[0];
  std::string file(8, '\0');
  for (int i = 0; i < 8; ++i) file[i] = static_cast<char>((header.size() >> (8 * i)) & 0xFF);
  file.append(header);
  if (parts.size() > 1) file.append(parts[1]);
  return file;
}

}  // namespace

// Mutates the header JSON of a plain file and rewrites its length; generator-mode inputs and
// files whose length field is broken get the shared JSON-or-bytes mutation.
extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size,
                                          unsigned int seed) {
  std::minstd_rand rng(seed);
  if (size < 8 || data[0] == zigzag::fuzz::kShapeMarker || rng() % 2 == 0) {
    return zigzag::fuzz::MutateJsonInput(data, size, max_size, seed);
  }
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | data[i];
  if (header_size > size - 8) return zigzag::fuzz::MutateJsonInput(data, size, max_size, seed);
  const std::string_view header(reinterpret_cast<const char*>(data) + 8, header_size);
  const std::string_view tensors(reinterpret_cast<const char*>(data) + 8 + header_size,
                                 size - 8 - header_size);
  const std::optional<std::string> mutated = zigzag::fuzz::MutateJson(header, max_size, rng);
  if (!mutated.has_value() || 8 + mutated->size() + tensors.size() > max_size) {
    return zigzag::fuzz::MutateJsonInput(data, size, max_size, seed);
  }
  std::string file(8, '\0');
  for (int i = 0; i < 8; ++i) file[i] = static_cast<char>((mutated->size() >> (8 * i)) & 0xFF);
  file += *mutated;
  file += tensors;
  std::memcpy(data, file.data(), file.size());
  return file.size();
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string file = BuildFile(std::string_view(reinterpret_cast<const char*>(data), size));
  const int fd = memfd_create("fuzz.safetensors", MFD_CLOEXEC);
  if (fd < 0) {
    std::perror("memfd_create");
    std::abort();  // the harness cannot run at all: not an input's fault, so stop loudly
  }
  size_t written = 0;
  while (written < file.size()) {
    const ssize_t n = write(fd, file.data() + written, file.size() - written);
    if (n <= 0) {
      std::perror("write memfd");
      std::abort();
    }
    written += static_cast<size_t>(n);
  }
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  auto opened = zigzag::SafetensorsFile::Open(path);
  close(fd);  // the mapping, if any, keeps the memory alive
  if (!opened.ok()) {
    if (opened.status().message().empty()) std::abort();  // errors must say what is wrong
    return 0;
  }
  const zigzag::SafetensorsFile& st = **opened;
  unsigned checksum = 0;
  for (const std::string& name : st.TensorNames()) {
    auto view = st.Get(name);
    if (!view.ok()) std::abort();  // a listed tensor must be found
    const size_t expected =
        static_cast<size_t>(zigzag::ShapeNumel(view->shape)) * zigzag::DTypeSize(view->dtype);
    if (view->size_bytes != expected) std::abort();
    if (view->size_bytes > file.size()) std::abort();
    // Reading every byte faults if the view reaches past the mapping.
    for (size_t i = 0; i < view->size_bytes; ++i) {
      checksum += static_cast<unsigned>(view->data[i]);
    }
  }
  volatile unsigned sink = checksum;  // keeps the reads
  (void)sink;
  if (!st.Contains("\x01"
                   "absent") &&
      st.Get("\x01"
             "absent")
              .status()
              .code() != absl::StatusCode::kNotFound) {
    std::abort();
  }
  return 0;
}
