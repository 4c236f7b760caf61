// CudaBackend::Attention and the planned step's AttentionStep: BuildAttentionLaunch checks a batch
// against the pool (kernels/attention_args.h: every block id a kernel will read, every
// window_mass row it will write), flattens the per-(sequence, KV head) block lists into one table
// and one descriptor per stream, and lays them out with the work items in a metadata buffer;
// LaunchAttentionPlan then launches one of three kernels over that buffer on the device: split-K
// decode (decode_attention_kernels.cu) for batches of single queries without window mass, the
// tiled flash kernel (flash_attention_kernels.cu) for everything else, and the simple kernel
// (attention_kernels.cu) only for head dims the flash kernel cannot tile. Attention uploads its
// buffer per call; PlanStep (cuda_step.cc) uploads every layer's at once.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"
#include "kernels/attention_args.h"
#include "kernels/cuda/attention_kernels.cuh"
#include "kernels/cuda/attention_plan.h"
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

namespace cuda_internal {
namespace {

using Layout = AttentionLayout;

// Decode split-K plan: which thread block reduces which keys of which (sequence, KV head) stream.
struct DecodeWork {
  std::vector<cuda::DecodeSplit> splits;
  std::vector<cuda::DecodeCombine> combines;
  int32_t num_partials = 0;
};

// Splits are sized so that the whole batch gives about kBlocksPerSm thread blocks per SM (enough
// loads in flight to approach copy bandwidth even at batch 1), but never below kMinSplitKeys keys:
// each split costs a (head_dim + 2)-float partial per head written and read back by the merge, so
// shorter splits spend more on partials than on keys. Each sequence's keys are then cut into
// equal splits (a stream that gets one split needs no merge). Each split of a stream runs one
// thread block per head tile of its KV head, so a stream's keys count once per tile of its group.
// At 8K keys in every head, batch 1, 8 head tiles (Llama-3-8B: 32 heads, 8 KV heads, one tile of
// 4 heads per KV head) and 132 SMs this gives 66 splits of 125 keys per stream.
DecodeWork PlanDecode(const std::vector<cuda::AttentionSeqDesc>& descs, const Layout& layout,
                      int num_sms) {
  constexpr int64_t kBlocksPerSm = 4;
  constexpr int64_t kMinSplitKeys = 64;
  const int64_t tiles_per_stream = layout.num_heads / layout.kv_heads /
                                   cuda::DecodeHeadsPerBlock(static_cast<int>(layout.num_heads),
                                                             static_cast<int>(layout.kv_heads));
  int64_t total_keys = 0;
  for (const cuda::AttentionSeqDesc& desc : descs) {
    if (desc.num_queries == 1) total_keys += desc.kv_len;
  }
  const int64_t target_blocks = kBlocksPerSm * std::max(num_sms, 1);
  const int64_t split_keys =
      std::max(kMinSplitKeys, (total_keys * tiles_per_stream + target_blocks - 1) / target_blocks);
  DecodeWork work;
  for (size_t i = 0; i < descs.size(); ++i) {
    const int64_t kv_len = descs[i].kv_len;
    if (descs[i].num_queries != 1) continue;  // 0 queries: nothing to compute (kv_len >= 1 else)
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

absl::Status CheckAttentionLayout(const char* op, const AttentionLayout& layout) {
  if (layout.head_dim < 1 || layout.head_dim > cuda::kMaxAttentionHeadDim) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": head_dim ", layout.head_dim,
                                                   " is outside the CUDA kernel's [1, ",
                                                   cuda::kMaxAttentionHeadDim, "]"));
  }
  if (layout.num_heads > 65535 || layout.num_rows > INT_MAX || layout.block_size < 1 ||
      layout.block_size > INT_MAX) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": ", layout.num_rows, " rows of ", layout.num_heads, " heads or block_size ",
        layout.block_size, " is outside the CUDA kernel's limits"));
  }
  return absl::OkStatus();
}

absl::StatusOr<AttentionLaunch> BuildAttentionLaunch(const AttentionBatch& batch,
                                                     const AttentionLayout& layout,
                                                     bool pool_aligned, int num_sms, bool validated,
                                                     std::vector<uint8_t>* bytes,
                                                     std::span<const int64_t> resident_begins) {
  const bool resident = !resident_begins.empty();
  if (!validated) {
    RETURN_IF_ERROR(ValidateAttentionBatch(batch, {.num_rows = layout.num_rows,
                                                   .num_heads = layout.num_heads,
                                                   .block_size = layout.block_size,
                                                   .num_blocks = layout.num_blocks}));
  }

  // One descriptor per (sequence, KV head) stream, sequence-major.
  std::vector<cuda::AttentionSeqDesc> descs;
  std::vector<int32_t> block_table;
  descs.reserve(batch.sequences.size() * static_cast<size_t>(layout.kv_heads));
  int64_t total_queries = 0;
  // Split-K takes batches in which every sequence has at most one query and none adds window
  // mass (the flash kernel's second pass does that; a decode step rarely needs it).
  bool decode_only = true;
  for (size_t i = 0; i < batch.sequences.size(); ++i) {
    const AttentionSequence& seq = batch.sequences[i];
    if (seq.window_mass != nullptr) {
      RETURN_IF_ERROR(
          CheckDeviceTensor("Attention", "window_mass", *seq.window_mass, DType::kF32, 2));
    }
    for (int64_t g = 0; g < layout.kv_heads; ++g) {
      const int32_t kv_len = seq.kv_lens[g];
      const int64_t blocks_needed = (kv_len + layout.block_size - 1) / layout.block_size;
      if (static_cast<int64_t>(block_table.size()) + blocks_needed > INT_MAX) {
        return absl::InvalidArgumentError(
            "Attention: the batch's block tables exceed 2^31 entries");
      }
      cuda::AttentionSeqDesc desc;
      desc.window_mass = seq.window_mass == nullptr ? nullptr : seq.window_mass->data_as<float>();
      desc.window_mass_stride = seq.window_mass == nullptr ? 0 : seq.window_mass->dim(1);
      desc.query_begin = seq.query_begin;
      desc.num_queries = seq.num_queries;
      desc.kv_len = kv_len;
      desc.window_begin = seq.window_begin;
      if (resident) {
        // StepTables::Validate bounded the table by 2^26 entries, so a begin fits an int32.
        desc.block_table_begin = static_cast<int32_t>(
            resident_begins[i * static_cast<size_t>(layout.kv_heads) + static_cast<size_t>(g)]);
      } else {
        desc.block_table_begin = static_cast<int32_t>(block_table.size());
        const auto first = seq.block_ids.begin() + seq.block_offsets[g];
        block_table.insert(block_table.end(), first, first + blocks_needed);
      }
      descs.push_back(desc);
      if (seq.num_queries == 1 && seq.window_mass != nullptr && kv_len - 1 >= seq.window_begin) {
        decode_only = false;
      }
    }
    total_queries += seq.num_queries;
    if (seq.num_queries > 1) decode_only = false;
  }
  AttentionLaunch launch;
  launch.scale = batch.scale;
  launch.resident_table = resident;
  if (total_queries == 0 || layout.num_heads == 0) return launch;
  if (total_queries > INT_MAX) {
    return absl::InvalidArgumentError("Attention: more than 2^31 query rows");
  }

  const int head_dim = static_cast<int>(layout.head_dim);
  if (decode_only && cuda::DecodeAttentionSupports(head_dim) && pool_aligned) {
    const DecodeWork work = PlanDecode(descs, layout, num_sms);
    launch.kernel = AttentionLaunch::Kernel::kDecode;
    launch.descs_offset = AppendAligned(descs, bytes);
    launch.work_offset = AppendAligned(work.splits, bytes);
    launch.combines_offset = AppendAligned(work.combines, bytes);
    launch.table_offset = AppendAligned(block_table, bytes);
    launch.num_work = static_cast<int32_t>(work.splits.size());
    launch.num_combines = static_cast<int32_t>(work.combines.size());
    launch.num_partials = work.num_partials;
    return launch;
  }

  // Prefill chunks, mixed batches and window mass: the tiled kernel, one item per query tile.
  // Head dims it cannot tile (not a multiple of 4) take the simple kernel, one item per query.
  const bool flash = cuda::FlashAttentionSupports(head_dim);
  const int32_t rows_per_item = flash ? cuda::FlashQueryTileRows(head_dim) : 1;
  std::vector<cuda::AttentionQueryItem> items;  // per sequence; kernels pick the head's stream
  for (size_t i = 0; i < batch.sequences.size(); ++i) {
    for (int32_t r = 0; r < batch.sequences[i].num_queries; r += rows_per_item) {
      items.push_back({static_cast<int32_t>(i), r});
    }
  }
  launch.kernel = flash ? AttentionLaunch::Kernel::kFlash : AttentionLaunch::Kernel::kSimple;
  launch.descs_offset = AppendAligned(descs, bytes);
  launch.work_offset = AppendAligned(items, bytes);
  launch.table_offset = AppendAligned(block_table, bytes);
  launch.num_work = static_cast<int32_t>(items.size());
  return launch;
}

}  // namespace cuda_internal

absl::Status CudaBackend::LaunchAttentionPlan(const cuda_internal::AttentionLaunch& launch,
                                              const cuda_internal::AttentionLayout& layout,
                                              const void* device_metadata, const Tensor& q,
                                              const Tensor& kv_pool, Tensor* out) {
  using Kernel = cuda_internal::AttentionLaunch::Kernel;
  if (launch.kernel == Kernel::kNone) return absl::OkStatus();
  RETURN_IF_ERROR(Activate());
  const auto* base = static_cast<const uint8_t*>(device_metadata);
  const auto* seqs = reinterpret_cast<const cuda::AttentionSeqDesc*>(base + launch.descs_offset);
  const auto* table = launch.resident_table
                          ? static_cast<const int32_t*>(resident_table_)
                          : reinterpret_cast<const int32_t*>(base + launch.table_offset);
  if (launch.kernel == Kernel::kDecode) {
    cuda::DecodeAttentionParams params;
    if (launch.num_partials > 0) {
      // [num_partials, num_heads, head_dim] accumulators, then [num_partials, num_heads, 2] stats.
      const size_t acc_floats = static_cast<size_t>(launch.num_partials) * layout.num_heads *
                                static_cast<size_t>(layout.head_dim);
      const size_t stats_floats = static_cast<size_t>(launch.num_partials) * layout.num_heads * 2;
      ASSIGN_OR_RETURN(void* workspace, Workspace((acc_floats + stats_floats) * sizeof(float)));
      params.partial_acc = static_cast<float*>(workspace);
      params.partial_stats = params.partial_acc + acc_floats;
    }
    params.q = q.data();
    params.kv_pool = kv_pool.data();
    params.out = out->data();
    params.seqs = seqs;
    params.splits = reinterpret_cast<const cuda::DecodeSplit*>(base + launch.work_offset);
    params.combines = reinterpret_cast<const cuda::DecodeCombine*>(base + launch.combines_offset);
    params.block_table = table;
    params.num_splits = launch.num_work;
    params.num_combines = launch.num_combines;
    params.num_heads = static_cast<int32_t>(layout.num_heads);
    params.kv_heads = static_cast<int32_t>(layout.kv_heads);
    params.head_dim = static_cast<int32_t>(layout.head_dim);
    params.block_size = static_cast<int32_t>(layout.block_size);
    params.scale = launch.scale;
    params.dtype = dtype_;
    CUDA_RETURN_IF_ERROR(cuda::LaunchDecodeAttention(params, stream_));
    return absl::OkStatus();
  }
  cuda::AttentionParams params;
  params.q = q.data();
  params.kv_pool = kv_pool.data();
  params.out = out->data();
  params.seqs = seqs;
  params.items = reinterpret_cast<const cuda::AttentionQueryItem*>(base + launch.work_offset);
  params.block_table = table;
  params.num_items = launch.num_work;
  params.num_heads = static_cast<int32_t>(layout.num_heads);
  params.kv_heads = static_cast<int32_t>(layout.kv_heads);
  params.head_dim = static_cast<int32_t>(layout.head_dim);
  params.block_size = static_cast<int32_t>(layout.block_size);
  params.scale = launch.scale;
  params.dtype = dtype_;
  if (launch.kernel == Kernel::kFlash) {
    CUDA_RETURN_IF_ERROR(cuda::LaunchFlashAttention(params, stream_));
  } else {
    CUDA_RETURN_IF_ERROR(cuda::LaunchAttention(params, stream_));
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::Attention(const AttentionBatch& batch, const Tensor& q,
                                    const Tensor& kv_pool, Tensor* out) {
  RETURN_IF_ERROR(CheckDeviceTensor("Attention", "q", q, dtype_, 3));
  RETURN_IF_ERROR(CheckDeviceTensor("Attention", "kv_pool", kv_pool, dtype_, 4));
  RETURN_IF_ERROR(CheckDeviceOutput("Attention", "out", out, dtype_, 3));
  RETURN_IF_ERROR(CheckSameShape("Attention", "q", q, "out", *out));
  RETURN_IF_ERROR(CheckDim("Attention", "kv_pool", kv_pool, 1, 2, "K and V"));
  RETURN_IF_ERROR(CheckDim("Attention", "kv_pool", kv_pool, 3, q.dim(2), "q's head_dim"));
  cuda_internal::AttentionLayout layout;
  layout.num_rows = q.dim(0);
  layout.num_heads = q.dim(1);
  layout.head_dim = q.dim(2);
  layout.num_blocks = kv_pool.dim(0);
  layout.block_size = kv_pool.dim(2);
  layout.kv_heads = batch.num_kv_heads;
  RETURN_IF_ERROR(cuda_internal::CheckAttentionLayout("Attention", layout));
  const bool pool_aligned = reinterpret_cast<uintptr_t>(kv_pool.data()) % 16 == 0;
  std::vector<uint8_t> metadata;
  ASSIGN_OR_RETURN(const cuda_internal::AttentionLaunch launch,
                   cuda_internal::BuildAttentionLaunch(batch, layout, pool_aligned, num_sms_,
                                                       /*validated=*/false, &metadata));
  if (launch.kernel == cuda_internal::AttentionLaunch::Kernel::kNone) return absl::OkStatus();
  RETURN_IF_ERROR(Activate());
  ASSIGN_OR_RETURN(void* device_metadata, UploadMetadata(metadata.data(), metadata.size()));
  return LaunchAttentionPlan(launch, layout, device_metadata, q, kv_pool, out);
}

}  // namespace zigzag
