#include "tests/tiny_engine.h"

#include <utility>

#include "core/util/status_macros.h"
#include "kernels/backend_registry.h"
#include "tests/test_support.h"

namespace zigzag::testing {

absl::StatusOr<TinyEngine> MakeTinyEngine(const RandomCheckpointSpec& spec, int32_t block_size,
                                          int32_t num_blocks, const std::string& prefix) {
  TinyEngine engine;
  engine.dir = MakeTempDir(prefix);
  RETURN_IF_ERROR(WriteRandomCheckpoint(engine.dir, spec));
  ASSIGN_OR_RETURN(engine.checkpoint, Checkpoint::Open(engine.dir));
  ASSIGN_OR_RETURN(engine.backend, CreateBackend("cpu"));
  ASSIGN_OR_RETURN(engine.model, LlamaModel::Load(*engine.checkpoint, engine.backend.get()));
  ASSIGN_OR_RETURN(engine.cache, KvCache::Create(engine.backend.get(),
                                                 engine.model->kv_layout(block_size), num_blocks));
  return engine;
}

}  // namespace zigzag::testing
