#include "kernels/cpu/cpu_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"
#include "kernels/attention_args.h"
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

// Read-only addressing of the pool [num_blocks, 2, block_size, head_dim]: a block holds one KV
// head.
struct PoolView {
  const float* base;
  int64_t block_size;
  int64_t head_dim;

  // Row of cache slot (block, offset); kv_index 0 = K, 1 = V.
  const float* At(int64_t block, int64_t offset, int kv_index) const {
    return base + ((block * 2 + kv_index) * block_size + offset) * head_dim;
  }
};

// One query row against one KV head's stream (its blocks in order): softmax(scale * q.K^T) V over
// the first `visible` entries of the stream. `logits` is scratch of >= visible floats. When
// mass_row is non-null, the probabilities are added into mass_row[0 .. visible).
//
// The softmax subtracts the running maximum before exponentiating, so large logits cannot
// overflow; the result is mathematically unchanged because the factor exp(-max) cancels in the
// normalisation.
void AttendOneRow(const PoolView& kv, std::span<const int32_t> stream_blocks, int64_t visible,
                  float scale, const float* q_row, float* logits, float* out_row, float* mass_row) {
  const int64_t d = kv.head_dim;
  float max_logit = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < visible; ++j) {
    const float* key = kv.At(stream_blocks[j / kv.block_size], j % kv.block_size, 0);
    float dot = 0.0f;
    for (int64_t i = 0; i < d; ++i) dot += q_row[i] * key[i];
    logits[j] = scale * dot;
    max_logit = std::max(max_logit, logits[j]);
  }
  float sum = 0.0f;
  for (int64_t j = 0; j < visible; ++j) {
    logits[j] = std::exp(logits[j] - max_logit);
    sum += logits[j];
  }
  const float inv_sum = 1.0f / sum;
  std::fill(out_row, out_row + d, 0.0f);
  for (int64_t j = 0; j < visible; ++j) {
    const float p = logits[j] * inv_sum;
    const float* value = kv.At(stream_blocks[j / kv.block_size], j % kv.block_size, 1);
    for (int64_t i = 0; i < d; ++i) out_row[i] += p * value[i];
    if (mass_row != nullptr) mass_row[j] += p;
  }
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

// Query r (0-based) of a sequence.
struct QueryRef {
  int32_t sequence;
  int32_t r;
};

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
  const int64_t num_heads = q.dim(1);
  const int64_t head_dim = q.dim(2);
  const PoolView kv{kv_pool.data_as<const float>(), kv_pool.dim(2), head_dim};
  const int64_t group = num_heads / batch.num_kv_heads;

  // Queries that add to a window_mass are kept apart: several of them write the same mass[h, j],
  // so they are split over heads only (each head's row of every mass tensor has one writer). All
  // other queries are independent per (query, head) and split over those pairs. A query adds
  // mass when its cache index in some head's stream reaches window_begin (heads may differ).
  std::vector<QueryRef> plain;
  std::vector<QueryRef> windowed;
  int64_t max_kv_len = 0;
  for (size_t s = 0; s < batch.sequences.size(); ++s) {
    const AttentionSequence& seq = batch.sequences[s];
    const int32_t longest = MaxKvLen(seq);
    max_kv_len = std::max<int64_t>(max_kv_len, longest);
    for (int32_t r = 0; r < seq.num_queries; ++r) {
      const int32_t last_index = longest - seq.num_queries + r;
      const bool adds_mass = seq.window_mass != nullptr && last_index >= seq.window_begin;
      (adds_mass ? windowed : plain).push_back({static_cast<int32_t>(s), r});
    }
  }

  const float* q_data = q.data_as<const float>();
  float* out_data = out->data_as<float>();
  // Copies the query row first so that out may alias q.
  auto attend = [&](const QueryRef& query, int64_t head, float* scratch) {
    const AttentionSequence& seq = batch.sequences[query.sequence];
    const int64_t kv_head = head / group;
    const int64_t row = seq.query_begin + query.r;
    const int64_t visible = seq.kv_lens[kv_head] - seq.num_queries + query.r + 1;
    const std::span<const int32_t> stream_blocks = seq.block_ids.subspan(
        seq.block_offsets[kv_head], seq.block_offsets[kv_head + 1] - seq.block_offsets[kv_head]);
    float* q_copy = scratch;
    float* logits = scratch + head_dim;
    std::memcpy(q_copy, q_data + (row * num_heads + head) * head_dim, head_dim * sizeof(float));
    float* mass_row = nullptr;
    if (seq.window_mass != nullptr && visible - 1 >= seq.window_begin) {
      mass_row = seq.window_mass->data_as<float>() + head * seq.window_mass->dim(1);
    }
    AttendOneRow(kv, stream_blocks, visible, batch.scale, q_copy, logits,
                 out_data + (row * num_heads + head) * head_dim, mass_row);
  };
  const size_t scratch_floats = static_cast<size_t>(head_dim + max_kv_len);
  // Roughly the work of one (query, head) pair, to keep small batches inline.
  const int64_t pair_cost = std::max<int64_t>(1, max_kv_len * head_dim * 2);
  const int64_t min_pairs = std::max<int64_t>(1, 32768 / pair_cost);

  pool.ParallelFor(
      static_cast<int64_t>(plain.size()) * num_heads,
      [&](int64_t begin, int64_t end) {
        std::vector<float> scratch(scratch_floats);
        for (int64_t pair = begin; pair < end; ++pair) {
          attend(plain[pair / num_heads], pair % num_heads, scratch.data());
        }
      },
      min_pairs);

  if (!windowed.empty()) {
    pool.ParallelFor(num_heads, [&](int64_t begin, int64_t end) {
      std::vector<float> scratch(scratch_floats);
      for (int64_t head = begin; head < end; ++head) {
        for (const QueryRef& query : windowed) attend(query, head, scratch.data());
      }
    });
  }
  return absl::OkStatus();
}

}  // namespace zigzag::cpu
