// Applying a CompressionPlan to one sequence's cache: every (layer, KV head) stream's kept
// entries are moved to the front of its own blocks (one Backend::CompactKv call for the whole
// sequence), the stream's length becomes the count that head keeps (uniform: the layer budget;
// adaptive: head_counts[l][g]) and its tail blocks go back to the pool at once. Deciding what to
// keep is core/compress's job.
#pragma once

#include "absl/status/status.h"
#include "core/compress/policy.h"
#include "core/kv/kv_cache.h"
#include "core/kv/sequence_kv.h"

namespace zigzag {

// InvalidArgument (and no change) when the plan does not fit the sequence: wrong layer or head
// count, a head keeping more entries than its stream holds, head_counts disagreeing with the kept
// rows. A plan that is not `compressed` changes nothing.
absl::Status CompactSequenceKv(const CompressionPlan& plan, Backend& backend, KvCache& cache,
                               SequenceKv& kv);

}  // namespace zigzag
