// Checkpoint: a Hugging Face model folder opened for reading: config plus every safetensors
// file (one model.safetensors, or the shards named by model.safetensors.index.json), mapped.
// It finds tensors by HF name and checks their shapes; converting them is the Backend's job.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/model/model_config.h"
#include "core/model/safetensors.h"

namespace zigzag {

class Checkpoint {
 public:
  // Errors name the file and the problem: missing config.json / weights, bad JSON, index naming a
  // missing shard, malformed safetensors (see SafetensorsFile::Open), unsupported architecture.
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::filesystem::path& model_dir);

  const ModelConfig& config() const { return config_; }
  const std::filesystem::path& dir() const { return dir_; }
  bool Contains(const std::string& name) const;

  // The tensor `name` with exactly `expected_shape`. NotFound ("tensor X missing from DIR"),
  // or InvalidArgument naming the file, tensor, expected and actual shape.
  absl::StatusOr<HostTensorView> Get(const std::string& name, const Shape& expected_shape) const;

  // The checkpoint's weight dtype: that of its embedding table (what `--cpu-weight-dtype auto`
  // keeps). Get's errors when the table is missing or misshapen.
  absl::StatusOr<DType> WeightDtype() const;

 private:
  std::filesystem::path dir_;
  ModelConfig config_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsFile*> file_of_tensor_;
};

}  // namespace zigzag
