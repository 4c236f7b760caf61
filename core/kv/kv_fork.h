// Forking one sequence's cache: a new SequenceKv with its own blocks holding a copy of every
// (layer, KV head) stream's entries (Backend::CopyBlocks), so one prefill can be continued several
// ways (e.g. under several compression policies). Sharing blocks copy-on-write is not done here.
#pragma once

#include "absl/status/statusor.h"
#include "core/kv/kv_cache.h"
#include "core/kv/sequence_kv.h"
#include "kernels/backend.h"

namespace zigzag {

// ResourceExhausted (and nothing allocated) when the pool cannot supply the copy's blocks.
absl::StatusOr<SequenceKv> ForkSequenceKv(const SequenceKv& source, Backend& backend,
                                          KvCache& cache);

}  // namespace zigzag
