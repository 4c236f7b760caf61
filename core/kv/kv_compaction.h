// Applying a CompressionPlan to one sequence's cache: every compressed layer's kept entries are
// moved to the front of its blocks (per KV head, Backend::CompactKv), the layer's length becomes
// its budget and the tail blocks go back to the pool at once. Deciding what to keep is
// core/compress's job.
#pragma once

#include "absl/status/status.h"
#include "core/compress/policy.h"
#include "core/kv/kv_cache.h"
#include "core/kv/sequence_kv.h"

namespace zigzag {

// InvalidArgument (and no change) when the plan does not fit the sequence: wrong layer or head
// count, a budget above the layer's length, kept rows of the wrong size. A plan that is not
// `compressed` changes nothing.
absl::Status CompactSequenceKv(const CompressionPlan& plan, Backend& backend, KvCache& cache,
                               SequenceKv& kv);

}  // namespace zigzag
