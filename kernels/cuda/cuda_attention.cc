// CudaBackend::Attention: checks the batch against the pool (every block id a kernel will read,
// every window_mass row it will write), flattens the per-sequence block lists into one table,
// uploads it with the sequence descriptors and query items in a single copy, and launches
// attention_kernels.cu.
#include <climits>
#include <cstdint>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"
#include "kernels/cuda/attention_kernels.cuh"
#include "kernels/cuda/cuda_backend_impl.h"
#include "kernels/cuda/cuda_check.h"
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
  std::vector<cuda::AttentionQueryItem> items;
  std::vector<int32_t> block_table;
  descs.reserve(batch.sequences.size());
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
    for (int32_t r = 0; r < seq.num_queries; ++r) {
      items.push_back({static_cast<int32_t>(i), r});
    }
  }
  if (items.empty() || layout.num_heads == 0) return absl::OkStatus();
  if (items.size() > static_cast<size_t>(INT_MAX)) {
    return absl::InvalidArgumentError("Attention: more than 2^31 query rows");
  }

  std::vector<uint8_t> metadata;
  const size_t descs_offset = AppendAligned(descs, &metadata);
  const size_t items_offset = AppendAligned(items, &metadata);
  const size_t table_offset = AppendAligned(block_table, &metadata);
  RETURN_IF_ERROR(Activate());
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
  params.head_dim = static_cast<int32_t>(layout.head_dim);
  params.block_size = static_cast<int32_t>(layout.block_size);
  params.scale = batch.scale;
  params.dtype = dtype_;
  CUDA_RETURN_IF_ERROR(cuda::LaunchAttention(params, stream_));
  return absl::OkStatus();
}

}  // namespace zigzag
