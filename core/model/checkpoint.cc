#include "core/model/checkpoint.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/util/json_fields.h"
#include "core/util/read_file.h"
#include "core/util/status_macros.h"
#include "nlohmann/json.hpp"

namespace zigzag {
namespace {

using nlohmann::json;

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";
// A real index names each tensor once: ~100 KB for a 70B model.
constexpr size_t kMaxIndexBytes = size_t{64} << 20;

// The shard file name -> tensor names it should hold, from the index's weight_map.
using ShardMap = std::map<std::string, std::vector<std::string>>;

absl::StatusOr<ShardMap> ReadIndex(const std::filesystem::path& index_path) {
  const std::string source = index_path.string();
  absl::StatusOr<std::string> text = ReadFileToString(index_path, kMaxIndexBytes);
  if (!text.ok()) {
    // It was found a moment ago: failing to open it now is not "no index".
    if (text.status().code() == absl::StatusCode::kNotFound) {
      return absl::UnavailableError(text.status().message());
    }
    return text.status();
  }
  ASSIGN_OR_RETURN(const json index, ParseJson(*text, source, /*require_object=*/false));
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": no 'weight_map' object"));
  }
  if (index["weight_map"].empty()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": 'weight_map' is empty"));
  }
  ShardMap shards;
  for (const auto& [tensor, shard] : index["weight_map"].items()) {
    if (!shard.is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": weight_map entry for tensor '", tensor,
                       "' is not a file name: ", DescribeJson(shard)));
    }
    const std::string shard_name = shard.get<std::string>();
    // Shards live beside the index; a path elsewhere is a malformed (or hostile) index.
    const std::filesystem::path shard_path(shard_name);
    if (shard_name.empty() || shard_path.has_parent_path() || shard_name == "." ||
        shard_name == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": weight_map entry for tensor '", tensor, "' names '", shard_name,
                       "', which is not a file name in the same folder"));
    }
    shards[shard_name].push_back(tensor);
  }
  return shards;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(
    const std::filesystem::path& model_dir) {
  auto checkpoint = std::make_unique<Checkpoint>();
  checkpoint->dir_ = model_dir;
  ASSIGN_OR_RETURN(checkpoint->config_, LoadModelConfig(model_dir));

  std::error_code ec;
  const std::filesystem::path index_path = model_dir / kIndexFile;
  const std::filesystem::path single_path = model_dir / kSingleFile;
  if (std::filesystem::exists(index_path, ec)) {
    ASSIGN_OR_RETURN(ShardMap shards, ReadIndex(index_path));
    for (const auto& [shard_name, tensors] : shards) {
      const std::filesystem::path shard_path = model_dir / shard_name;
      if (!std::filesystem::exists(shard_path, ec)) {
        return absl::NotFoundError(absl::StrCat("shard '", shard_name, "' named in ",
                                                index_path.string(), " not found in ",
                                                model_dir.string()));
      }
      ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(shard_path));
      for (const std::string& tensor : tensors) {
        if (!file->Contains(tensor)) {
          return absl::InvalidArgumentError(
              absl::StrCat("tensor '", tensor, "' is mapped to shard ", shard_path.string(), " by ",
                           index_path.string(), " but that shard does not contain it"));
        }
        checkpoint->file_of_tensor_[tensor] = file.get();
      }
      checkpoint->files_.push_back(std::move(file));
    }
  } else if (std::filesystem::exists(single_path, ec)) {
    ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(single_path));
    for (const std::string& tensor : file->TensorNames())
      checkpoint->file_of_tensor_[tensor] = file.get();
    checkpoint->files_.push_back(std::move(file));
  } else {
    return absl::NotFoundError(
        absl::StrCat("no ", kSingleFile, " or ", kIndexFile, " in ", model_dir.string()));
  }
  return checkpoint;
}

bool Checkpoint::Contains(const std::string& name) const { return file_of_tensor_.count(name) > 0; }

absl::StatusOr<HostTensorView> Checkpoint::Get(const std::string& name,
                                               const Shape& expected_shape) const {
  auto it = file_of_tensor_.find(name);
  if (it == file_of_tensor_.end()) {
    return absl::NotFoundError(absl::StrCat("tensor '", name, "' missing from ", dir_.string()));
  }
  ASSIGN_OR_RETURN(HostTensorView view, it->second->Get(name));
  if (view.shape != expected_shape) {
    return absl::InvalidArgumentError(absl::StrCat(view.file, ": tensor '", name, "' has shape ",
                                                   ShapeToString(view.shape), ", expected ",
                                                   ShapeToString(expected_shape)));
  }
  return view;
}

absl::StatusOr<DType> Checkpoint::WeightDtype() const {
  ASSIGN_OR_RETURN(const HostTensorView embed,
                   Get("model.embed_tokens.weight", {config_.vocab_size, config_.hidden_size}));
  return embed.dtype;
}

}  // namespace zigzag
