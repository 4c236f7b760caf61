// ReadFileToString: a whole small file (config.json, tokenizer.json, tokenizer.model, an index)
// read into memory with a size cap, so that a model folder cannot make a loader read without
// bound (a huge file, /dev/zero, a FIFO). Weights are not read this way: safetensors files are
// memory-mapped (core/model/safetensors.h).
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>

#include "absl/status/statusor.h"

namespace zigzag {

// The bytes of `path`. NotFound when it does not exist, Unavailable when it cannot be opened or
// read, InvalidArgument naming the path and the limit when it holds more than `max_bytes`.
absl::StatusOr<std::string> ReadFileToString(const std::filesystem::path& path, size_t max_bytes);

}  // namespace zigzag
