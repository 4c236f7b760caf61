#include "kernels/cpu/cpu_attention.h"

#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"
#include "kernels/attention_args.h"
#include "kernels/cpu/attention_runner.h"
#include "kernels/cpu/cpu_checks.h"
#include "kernels/kv_compaction_args.h"

namespace zigzag::cpu {
namespace {

constexpr const char* kPoolLayout = "[num_blocks, 2, block_size, head_dim]";

// Checks kv_pool's rank, dtype and its K/V dimension; the caller checks head_dim.
absl::Status CheckPool(const char* op, const Tensor& kv_pool) {
  RETURN_IF_ERROR(CheckF32(op, "kv_pool", kv_pool, 4, kPoolLayout));
  if (kv_pool.dim(1) != 2) {
    return ArgError(op, "kv_pool", "is ", kv_pool.DebugString(),
                    "; dimension 1 must be 2 (K, V) in ", kPoolLayout);
  }
  if (kv_pool.dim(2) < 1) {
    return ArgError(op, "kv_pool", "is ", kv_pool.DebugString(), "; block_size must be >= 1");
  }
  return absl::OkStatus();
}

absl::Status CheckAttention(const AttentionBatch& batch, const Tensor& q, const Tensor& kv_pool,
                            const Tensor* out) {
  const char* op = "Attention";
  RETURN_IF_ERROR(CheckF32(op, "q", q, 3, "[N, num_heads, head_dim]"));
  RETURN_IF_ERROR(CheckF32Output(op, "out", out, 3, "[N, num_heads, head_dim]"));
  RETURN_IF_ERROR(CheckShape(op, "out", *out, q.shape()));
  RETURN_IF_ERROR(CheckPool(op, kv_pool));
  if (kv_pool.dim(3) != q.dim(2)) {
    return ArgError(op, "kv_pool", "is ", kv_pool.DebugString(), "; its head_dim must equal q's ",
                    q.dim(2));
  }
  RETURN_IF_ERROR(ValidateAttentionBatch(batch, {.num_rows = q.dim(0),
                                                 .num_heads = q.dim(1),
                                                 .block_size = kv_pool.dim(2),
                                                 .num_blocks = kv_pool.dim(0)}));
  for (size_t i = 0; i < batch.sequences.size(); ++i) {
    if (batch.sequences[i].window_mass != nullptr) {
      const std::string arg = absl::StrCat("sequences[", i, "].window_mass");
      RETURN_IF_ERROR(
          CheckF32(op, arg.c_str(), *batch.sequences[i].window_mass, 2, "[num_heads, >= kv_len]"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteKv(const Tensor& k, const Tensor& v, std::span<const int32_t> slots,
                     Tensor* kv_pool) {
  const char* op = "WriteKv";
  RETURN_IF_ERROR(CheckF32(op, "k", k, 3, "[N, kv_heads, head_dim]"));
  RETURN_IF_ERROR(CheckF32(op, "v", v, 3, "[N, kv_heads, head_dim]"));
  RETURN_IF_ERROR(CheckShape(op, "v", v, k.shape()));
  if (kv_pool == nullptr) return ArgError(op, "kv_pool", "is null");
  RETURN_IF_ERROR(CheckPool(op, *kv_pool));
  if (kv_pool->dim(3) != k.dim(2)) {
    return ArgError(op, "kv_pool", "is ", kv_pool->DebugString(), "; its head_dim must match k ",
                    k.DebugString());
  }
  const int64_t kv_heads = k.dim(1);
  if (static_cast<int64_t>(slots.size()) != k.dim(0) * kv_heads) {
    return ArgError(op, "slots", "has ", slots.size(), " entries but k has ", k.dim(0),
                    " tokens x ", kv_heads, " KV heads (one slot per token and head)");
  }
  const int64_t block_size = kv_pool->dim(2);
  const int64_t num_slots = kv_pool->dim(0) * block_size;
  for (size_t n = 0; n < slots.size(); ++n) {
    if (slots[n] < 0 || slots[n] >= num_slots) {
      return ArgError(op, absl::StrCat("slots[", n, "]"), "= ", slots[n],
                      " is outside [0, num_blocks * block_size = ", num_slots, ")");
    }
  }
  // Serial on purpose: it is a memory copy, and order decides which write wins when a slot
  // repeats.
  const int64_t head_dim = k.dim(2);
  float* pool = kv_pool->data_as<float>();
  for (size_t n = 0; n < slots.size(); ++n) {
    const int64_t block = slots[n] / block_size;
    const int64_t offset = slots[n] % block_size;
    float* key_dst = pool + ((block * 2 + 0) * block_size + offset) * head_dim;
    float* value_dst = pool + ((block * 2 + 1) * block_size + offset) * head_dim;
    std::memcpy(key_dst, k.data_as<float>() + n * head_dim, head_dim * sizeof(float));
    std::memcpy(value_dst, v.data_as<float>() + n * head_dim, head_dim * sizeof(float));
  }
  return absl::OkStatus();
}

absl::Status CopyBlocks(std::span<const int32_t> src_blocks, std::span<const int32_t> dst_blocks,
                        Tensor* kv_pool) {
  const char* op = "CopyBlocks";
  if (kv_pool == nullptr) return ArgError(op, "kv_pool", "is null");
  RETURN_IF_ERROR(CheckPool(op, *kv_pool));
  RETURN_IF_ERROR(ValidateCopyBlocksArgs(src_blocks, dst_blocks, kv_pool->dim(0)));
  const int64_t block_floats = 2 * kv_pool->dim(2) * kv_pool->dim(3);
  float* pool = kv_pool->data_as<float>();
  for (size_t i = 0; i < src_blocks.size(); ++i) {
    std::memcpy(pool + dst_blocks[i] * block_floats, pool + src_blocks[i] * block_floats,
                block_floats * sizeof(float));
  }
  return absl::OkStatus();
}

absl::Status CompactKv(std::span<const KvStreamCompaction> streams, Tensor* kv_pool) {
  const char* op = "CompactKv";
  if (kv_pool == nullptr) return ArgError(op, "kv_pool", "is null");
  RETURN_IF_ERROR(CheckPool(op, *kv_pool));
  const int64_t block_size = kv_pool->dim(2);
  const int64_t head_dim = kv_pool->dim(3);
  RETURN_IF_ERROR(ValidateCompactKvArgs(streams, block_size, kv_pool->dim(0)));
  // Serial and front to back within a stream: its kept entries ascend, so entry i is written only
  // after every source at or below i has been read (sources are >= their destinations). Streams
  // share no block, so their order does not matter.
  float* pool = kv_pool->data_as<float>();
  for (const KvStreamCompaction& stream : streams) {
    auto entry = [&](int64_t index, int kv) {
      const int64_t block = stream.block_ids[index / block_size];
      return pool + ((block * 2 + kv) * block_size + index % block_size) * head_dim;
    };
    for (size_t i = 0; i < stream.kept.size(); ++i) {
      const int64_t source = stream.kept[i];
      if (source == static_cast<int64_t>(i)) continue;
      for (int kv = 0; kv < 2; ++kv) {
        std::memcpy(entry(static_cast<int64_t>(i), kv), entry(source, kv),
                    head_dim * sizeof(float));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status Attention(ThreadPool& pool, const AttentionBatch& batch, const Tensor& q,
                       const Tensor& kv_pool, Tensor* out) {
  RETURN_IF_ERROR(CheckAttention(batch, q, kv_pool, out));
  // The one place that reads AttentionBatch's tables: the runner takes a length and a block-id
  // span per (sequence, KV head). Both arrays are the calling thread's and keep their capacity.
  thread_local std::vector<attn::KvStream> streams;
  thread_local std::vector<attn::StreamSequence> sequences;
  const size_t kv_heads = static_cast<size_t>(batch.num_kv_heads);
  streams.resize(batch.sequences.size() * kv_heads);
  sequences.resize(batch.sequences.size());
  for (size_t s = 0; s < batch.sequences.size(); ++s) {
    const AttentionSequence& seq = batch.sequences[s];
    for (size_t g = 0; g < kv_heads; ++g) {
      streams[s * kv_heads + g] = {
          .kv_len = seq.kv_lens[g],
          .block_ids = seq.block_ids.subspan(seq.block_offsets[g],
                                             seq.block_offsets[g + 1] - seq.block_offsets[g])};
    }
    attn::StreamSequence& dst = sequences[s];
    dst.query_begin = seq.query_begin;
    dst.num_queries = seq.num_queries;
    dst.streams = std::span<const attn::KvStream>(streams).subspan(s * kv_heads, kv_heads);
    dst.window_mass = seq.window_mass == nullptr ? nullptr : seq.window_mass->data_as<float>();
    dst.window_mass_stride = seq.window_mass == nullptr ? 0 : seq.window_mass->dim(1);
    dst.window_begin = seq.window_begin;
  }
  attn::PagedAttentionArgs args;
  args.sequences = sequences;
  args.num_heads = q.dim(1);
  args.kv_heads = batch.num_kv_heads;
  args.pool = {kv_pool.data_as<const float>(), kv_pool.dim(2), q.dim(2)};
  args.q = q.data_as<const float>();
  args.out = out->data_as<float>();
  args.scale = batch.scale;
  attn::RunPagedAttention(pool, args);
  return absl::OkStatus();
}

}  // namespace zigzag::cpu
