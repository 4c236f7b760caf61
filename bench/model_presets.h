// The generated checkpoints the end-to-end benchmarks run on: Llama-3-8B and Mistral-7B shapes
// with random bf16 weights (and a tiny one for CPU smoke runs), written once into a cache folder
// and reused while their spec is unchanged. Benchmarks only; the format itself is
// core/model/checkpoint_writer's.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/model/checkpoint_writer.h"

namespace zigzag::bench {

struct ModelPreset {
  std::string name;  // "llama3-8b", "mistral-7b", "tiny"
  RandomCheckpointSpec spec;
};

// Names accepted by FindModelPreset, for messages.
std::vector<std::string> ModelPresetNames();

// The preset `name`; `layers` > 0 overrides the number of layers (a shallower model of the same
// width, for quick runs). InvalidArgument listing the names for an unknown one.
absl::StatusOr<ModelPreset> FindModelPreset(const std::string& name, int64_t layers);

// The folder a preset lives in under `cache_dir`: NAME, or NAME-LAYERSl when layers differ from
// the real model's.
std::filesystem::path PresetDir(const std::filesystem::path& cache_dir, const ModelPreset& preset);

struct EnsuredCheckpoint {
  std::filesystem::path dir;
  bool written = false;  // false: an existing checkpoint with the same spec was reused
  double seconds = 0.0;  // time spent writing (0 when reused)
  int64_t bytes = 0;     // size of the weight files
};

// Writes the preset's checkpoint into `dir` unless `dir` already holds one written from the same
// spec (a stamp file records it). Unavailable when the folder cannot be written.
absl::StatusOr<EnsuredCheckpoint> EnsureCheckpoint(const std::filesystem::path& dir,
                                                   const ModelPreset& preset);

}  // namespace zigzag::bench
