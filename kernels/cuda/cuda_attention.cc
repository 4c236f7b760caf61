// CudaBackend::Attention: checks the batch against the pool (every block id a kernel will read,
// every window_mass row it will write), flattens the per-sequence block lists into one table,
// uploads it with the sequence descriptors and work items in a single copy, and launches one of
// three kernels: split-K decode (decode_attention_kernels.cu) for batches of single queries
// without window mass, the tiled flash kernel (flash_attention_kernels.cu) for everything else,
// and the simple kernel (attention_kernels.cu) only for head dims the flash kernel cannot tile.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"
#include "kernels/cuda/attention_kernels.cuh"
#include "kernels/cuda/cuda_backend_impl.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/decode_attention_kernels.cuh"
#include "kernels/cuda/flash_attention_kernels.cuh"
#include "kernels/cuda/op_checks.h"

namespace zigzag {

using cuda_internal::CheckDeviceOutput;
using cuda_internal::CheckDeviceTensor;
using cuda_internal::CheckDim;
using cuda_internal::CheckSameShape;

namespace {

struct Layout {
  int64_t num_rows = 0;
  int64_t num_heads = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
  int64_t num_blocks = 0;
  int64_t block_size = 0;
};

absl::Status CheckSequence(const AttentionSequence& seq, size_t index, const Layout& layout) {
  const auto error = [index](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat("Attention: sequence ", index, ": ", parts...));
  };
  if (seq.query_begin < 0 || seq.num_queries < 0 ||
      static_cast<int64_t>(seq.query_begin) + seq.num_queries > layout.num_rows) {
    return error("query_begin ", seq.query_begin, " and num_queries ", seq.num_queries,
                 " do not lie inside q's ", layout.num_rows, " rows");
  }
  if (seq.kv_len < seq.num_queries) {
    return error("kv_len ", seq.kv_len, " < num_queries ", seq.num_queries,
                 " (the queries are the newest cache entries)");
  }
  const int64_t blocks_needed = (seq.kv_len + layout.block_size - 1) / layout.block_size;
  if (static_cast<int64_t>(seq.block_ids.size()) < blocks_needed) {
    return error("kv_len ", seq.kv_len, " needs ", blocks_needed, " blocks of ", layout.block_size,
                 " but block_ids has ", seq.block_ids.size());
  }
  for (int64_t b = 0; b < blocks_needed; ++b) {
    if (seq.block_ids[b] < 0 || seq.block_ids[b] >= layout.num_blocks) {
      return error("block_ids[", b, "] = ", seq.block_ids[b], " is outside the pool's [0, ",
                   layout.num_blocks, ")");
    }
  }
  if (seq.window_mass != nullptr) {
    const Tensor& mass = *seq.window_mass;
    RETURN_IF_ERROR(CheckDeviceTensor("Attention", "window_mass", mass, DType::kF32, 2));
    if (mass.dim(0) != layout.num_heads || mass.dim(1) < seq.kv_len) {
      return error("window_mass is ", mass.DebugString(), ", expected [", layout.num_heads,
                   ", >= kv_len ", seq.kv_len, "]");
    }
  }
  return absl::OkStatus();
}

// Appends the bytes of `values` to `bytes` at a 16-byte aligned offset, which it returns.
template <typename T>
size_t AppendAligned(const std::vector<T>& values, std::vector<uint8_t>* bytes) {
  const size_t offset = (bytes->size() + 15) / 16 * 16;
  bytes->resize(offset + values.size() * sizeof(T));
  if (!values.empty())
    std::memcpy(bytes->data() + offset, values.data(), values.size() * sizeof(T));
  return offset;
}

// Decode split-K plan: which thread block reduces which keys of which sequence.
struct DecodeWork {
  std::vector<cuda::DecodeSplit> splits;
  std::vector<cuda::DecodeCombine> combines;
  int32_t num_partials = 0;
};

// Splits are sized so that the whole batch gives about kBlocksPerSm thread blocks per SM (enough
// loads in flight to approach copy bandwidth even at batch 1), but never below kMinSplitKeys keys:
// each split costs a (head_dim + 2)-float partial per head written and read back by the merge, so
// shorter splits spend more on partials than on keys. Each sequence's keys are then cut into
// equal splits (a sequence that gets one split needs no merge). At 8K keys, batch 1, 8 head tiles
// (Llama-3-8B: 32 heads, 8 KV heads) and 132 SMs this gives 66 splits of 125 keys.
DecodeWork PlanDecode(const std::vector<cuda::AttentionSeqDesc>& descs, const Layout& layout,
                      int num_sms) {
  constexpr int64_t kBlocksPerSm = 4;
  constexpr int64_t kMinSplitKeys = 64;
  const int64_t head_tiles =
      layout.num_heads / cuda::DecodeHeadsPerBlock(static_cast<int>(layout.num_heads),
                                                   static_cast<int>(layout.kv_heads));
  int64_t total_keys = 0;
  for (const cuda::AttentionSeqDesc& desc : descs) {
    if (desc.num_queries == 1) total_keys += desc.kv_len;
  }
  const int64_t target_blocks = kBlocksPerSm * std::max(num_sms, 1);
  const int64_t split_keys =
      std::max(kMinSplitKeys, (total_keys * head_tiles + target_blocks - 1) / target_blocks);
  DecodeWork work;
  for (size_t i = 0; i < descs.size(); ++i) {
    const int64_t kv_len = descs[i].kv_len;
    if (descs[i].num_queries != 1) continue;  // 0 queries: nothing to compute
    const int64_t count = (kv_len + split_keys - 1) / split_keys;
    const int64_t keys_each = (kv_len + count - 1) / count;  // every split non-empty
    const int32_t seq = static_cast<int32_t>(i);
    if (count == 1) {
      work.splits.push_back({seq, 0, static_cast<int32_t>(kv_len), -1});
      continue;
    }
    const int32_t partial_begin = work.num_partials;
    for (int64_t begin = 0; begin < kv_len; begin += keys_each) {
      work.splits.push_back({seq, static_cast<int32_t>(begin),
                             static_cast<int32_t>(std::min(kv_len, begin + keys_each)),
                             work.num_partials++});
    }
    work.combines.push_back({seq, partial_begin, work.num_partials - partial_begin, 0});
  }
  return work;
}

}  // namespace

absl::Status CudaBackend::Attention(const AttentionBatch& batch, const Tensor& q,
                                    const Tensor& kv_pool, Tensor* out) {
  RETURN_IF_ERROR(CheckDeviceTensor("Attention", "q", q, dtype_, 3));
  RETURN_IF_ERROR(CheckDeviceTensor("Attention", "kv_pool", kv_pool, dtype_, 5));
  RETURN_IF_ERROR(CheckDeviceOutput("Attention", "out", out, dtype_, 3));
  RETURN_IF_ERROR(CheckSameShape("Attention", "q", q, "out", *out));
  RETURN_IF_ERROR(CheckDim("Attention", "kv_pool", kv_pool, 1, 2, "K and V"));
  RETURN_IF_ERROR(CheckDim("Attention", "kv_pool", kv_pool, 4, q.dim(2), "q's head_dim"));
  Layout layout;
  layout.num_rows = q.dim(0);
  layout.num_heads = q.dim(1);
  layout.head_dim = q.dim(2);
  layout.num_blocks = kv_pool.dim(0);
  layout.block_size = kv_pool.dim(2);
  layout.kv_heads = kv_pool.dim(3);
  if (layout.kv_heads < 1 || layout.num_heads % layout.kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("Attention: q's ", layout.num_heads,
                                                   " heads are not a multiple of kv_pool's ",
                                                   layout.kv_heads, " KV heads"));
  }
  if (layout.head_dim < 1 || layout.head_dim > cuda::kMaxAttentionHeadDim) {
    return absl::InvalidArgumentError(absl::StrCat("Attention: head_dim ", layout.head_dim,
                                                   " is outside the CUDA kernel's [1, ",
                                                   cuda::kMaxAttentionHeadDim, "]"));
  }
  if (layout.num_heads > 65535 || layout.num_rows > INT_MAX || layout.block_size < 1 ||
      layout.block_size > INT_MAX) {
    return absl::InvalidArgumentError(absl::StrCat("Attention: q ", q.DebugString(), " or kv_pool ",
                                                   kv_pool.DebugString(),
                                                   " is outside the CUDA kernel's limits"));
  }

  std::vector<cuda::AttentionSeqDesc> descs;
  std::vector<int32_t> block_table;
  descs.reserve(batch.sequences.size());
  int64_t total_queries = 0;
  // Split-K takes batches in which every sequence has at most one query and none adds window
  // mass (the flash kernel's second pass does that; a decode step rarely needs it).
  bool decode_only = true;
  for (size_t i = 0; i < batch.sequences.size(); ++i) {
    const AttentionSequence& seq = batch.sequences[i];
    RETURN_IF_ERROR(CheckSequence(seq, i, layout));
    const int64_t blocks_needed = (seq.kv_len + layout.block_size - 1) / layout.block_size;
    if (static_cast<int64_t>(block_table.size()) + blocks_needed > INT_MAX) {
      return absl::InvalidArgumentError("Attention: the batch's block tables exceed 2^31 entries");
    }
    cuda::AttentionSeqDesc desc;
    desc.window_mass = seq.window_mass == nullptr ? nullptr : seq.window_mass->data_as<float>();
    desc.window_mass_stride = seq.window_mass == nullptr ? 0 : seq.window_mass->dim(1);
    desc.query_begin = seq.query_begin;
    desc.num_queries = seq.num_queries;
    desc.kv_len = seq.kv_len;
    desc.block_table_begin = static_cast<int32_t>(block_table.size());
    desc.window_begin = seq.window_begin;
    descs.push_back(desc);
    block_table.insert(block_table.end(), seq.block_ids.begin(),
                       seq.block_ids.begin() + blocks_needed);
    total_queries += seq.num_queries;
    if (seq.num_queries > 1 || (seq.num_queries == 1 && seq.window_mass != nullptr &&
                                seq.kv_len - 1 >= seq.window_begin)) {
      decode_only = false;
    }
  }
  if (total_queries == 0 || layout.num_heads == 0) return absl::OkStatus();
  if (total_queries > INT_MAX) {
    return absl::InvalidArgumentError("Attention: more than 2^31 query rows");
  }
  RETURN_IF_ERROR(Activate());

  const int head_dim = static_cast<int>(layout.head_dim);
  const bool pool_aligned = reinterpret_cast<uintptr_t>(kv_pool.data()) % 16 == 0;
  if (decode_only && cuda::DecodeAttentionSupports(head_dim) && pool_aligned) {
    const DecodeWork work = PlanDecode(descs, layout, num_sms_);
    std::vector<uint8_t> metadata;
    const size_t descs_offset = AppendAligned(descs, &metadata);
    const size_t splits_offset = AppendAligned(work.splits, &metadata);
    const size_t combines_offset = AppendAligned(work.combines, &metadata);
    const size_t table_offset = AppendAligned(block_table, &metadata);
    ASSIGN_OR_RETURN(void* device_metadata, UploadMetadata(metadata.data(), metadata.size()));
    const auto* base = static_cast<const uint8_t*>(device_metadata);

    cuda::DecodeAttentionParams params;
    if (work.num_partials > 0) {
      // [num_partials, num_heads, head_dim] accumulators, then [num_partials, num_heads, 2] stats.
      const size_t acc_floats = static_cast<size_t>(work.num_partials) * layout.num_heads *
                                static_cast<size_t>(layout.head_dim);
      const size_t stats_floats = static_cast<size_t>(work.num_partials) * layout.num_heads * 2;
      ASSIGN_OR_RETURN(void* workspace, Workspace((acc_floats + stats_floats) * sizeof(float)));
      params.partial_acc = static_cast<float*>(workspace);
      params.partial_stats = params.partial_acc + acc_floats;
    }
    params.q = q.data();
    params.kv_pool = kv_pool.data();
    params.out = out->data();
    params.seqs = reinterpret_cast<const cuda::AttentionSeqDesc*>(base + descs_offset);
    params.splits = reinterpret_cast<const cuda::DecodeSplit*>(base + splits_offset);
    params.combines = reinterpret_cast<const cuda::DecodeCombine*>(base + combines_offset);
    params.block_table = reinterpret_cast<const int32_t*>(base + table_offset);
    params.num_splits = static_cast<int32_t>(work.splits.size());
    params.num_combines = static_cast<int32_t>(work.combines.size());
    params.num_heads = static_cast<int32_t>(layout.num_heads);
    params.kv_heads = static_cast<int32_t>(layout.kv_heads);
    params.head_dim = head_dim;
    params.block_size = static_cast<int32_t>(layout.block_size);
    params.scale = batch.scale;
    params.dtype = dtype_;
    CUDA_RETURN_IF_ERROR(cuda::LaunchDecodeAttention(params, stream_));
    return absl::OkStatus();
  }

  // Prefill chunks, mixed batches and window mass: the tiled kernel, one item per query tile.
  // Head dims it cannot tile (not a multiple of 4) take the simple kernel, one item per query.
  const bool flash = cuda::FlashAttentionSupports(head_dim);
  const int32_t rows_per_item = flash ? cuda::FlashQueryTileRows(head_dim) : 1;
  std::vector<cuda::AttentionQueryItem> items;
  for (size_t i = 0; i < descs.size(); ++i) {
    for (int32_t r = 0; r < descs[i].num_queries; r += rows_per_item) {
      items.push_back({static_cast<int32_t>(i), r});
    }
  }
  std::vector<uint8_t> metadata;
  const size_t descs_offset = AppendAligned(descs, &metadata);
  const size_t items_offset = AppendAligned(items, &metadata);
  const size_t table_offset = AppendAligned(block_table, &metadata);
  ASSIGN_OR_RETURN(void* device_metadata, UploadMetadata(metadata.data(), metadata.size()));
  const auto* base = static_cast<const uint8_t*>(device_metadata);

  cuda::AttentionParams params;
  params.q = q.data();
  params.kv_pool = kv_pool.data();
  params.out = out->data();
  params.seqs = reinterpret_cast<const cuda::AttentionSeqDesc*>(base + descs_offset);
  params.items = reinterpret_cast<const cuda::AttentionQueryItem*>(base + items_offset);
  params.block_table = reinterpret_cast<const int32_t*>(base + table_offset);
  params.num_items = static_cast<int32_t>(items.size());
  params.num_heads = static_cast<int32_t>(layout.num_heads);
  params.kv_heads = static_cast<int32_t>(layout.kv_heads);
  params.head_dim = head_dim;
  params.block_size = static_cast<int32_t>(layout.block_size);
  params.scale = batch.scale;
  params.dtype = dtype_;
  if (flash) {
    CUDA_RETURN_IF_ERROR(cuda::LaunchFlashAttention(params, stream_));
  } else {
    CUDA_RETURN_IF_ERROR(cuda::LaunchAttention(params, stream_));
  }
  return absl::OkStatus();
}

}  // namespace zigzag
