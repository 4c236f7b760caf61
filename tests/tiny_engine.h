// TinyEngine: a seeded random checkpoint written to a scratch folder and loaded on the CPU
// backend with its own KV cache — the set-up that engine-level tests share. It owns those objects
// (destroyed cache first, checkpoint last); what a test does with them is the test's business.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "core/kv/kv_cache.h"
#include "core/model/checkpoint.h"
#include "core/model/checkpoint_writer.h"
#include "core/model/llama_model.h"
#include "kernels/backend.h"

namespace zigzag::testing {

struct TinyEngine {
  std::filesystem::path dir;
  std::unique_ptr<Checkpoint> checkpoint;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<LlamaModel> model;
  std::unique_ptr<KvCache> cache;
};

// Writes `spec` under a new temporary folder named after `prefix`, loads it on a CPU backend and
// creates a cache of `num_blocks` blocks of `block_size` tokens.
absl::StatusOr<TinyEngine> MakeTinyEngine(const RandomCheckpointSpec& spec, int32_t block_size,
                                          int32_t num_blocks, const std::string& prefix);

}  // namespace zigzag::testing
