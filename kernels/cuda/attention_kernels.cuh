// The descriptors every paged-attention kernel shares (sequences, work items, params) and the
// launcher of the simple kernel, now only the fallback for head dims the tiled kernel cannot take
// (kernel in attention_kernels.cu). Plain host declarations, includable from .cc. The caller
// (cuda_attention.cc) validates every index and uploads the descriptors to device memory; the
// kernels trust them.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/dtype.h"

namespace zigzag::cuda {

// One (sequence, KV head) stream of the batch: AttentionSequence's fields for KV head g, with its
// block ids moved into the flat table. A batch of S sequences and G KV heads has S * G of them,
// sequence-major (descriptor s * G + g); query_begin, num_queries, window_mass and window_begin
// are the sequence's, kv_len and block_table_begin the head's.
struct AttentionSeqDesc {
  float* window_mass = nullptr;    // [num_heads, window_mass_stride] float32, or null
  int64_t window_mass_stride = 0;  // >= kv_len
  int32_t query_begin = 0;         // first row of q / out
  int32_t num_queries = 0;         // rows [query_begin, query_begin + num_queries)
  int32_t kv_len = 0;              // >= num_queries
  int32_t block_table_begin = 0;   // its block ids: block_table[begin, begin + ceil(kv_len/bs))
  int32_t window_begin = 0;        // queries with cache index >= this add to window_mass
  int32_t unused = 0;
};

// A work item: for the simple kernel the r-th query (0-based) of sequence seq (a sequence index:
// the kernel reads descriptor seq * kv_heads + g for query head h of KV head g), for the flash
// kernel the tile of queries starting there.
struct AttentionQueryItem {
  int32_t seq = 0;
  int32_t query = 0;
};

struct AttentionParams {
  const void* q = nullptr;                    // [num_rows, num_heads, head_dim] of dtype
  const void* kv_pool = nullptr;              // [num_blocks, 2, block_size, head_dim]
  void* out = nullptr;                        // [num_rows, num_heads, head_dim] of dtype
  const AttentionSeqDesc* seqs = nullptr;     // [num_seqs * kv_heads] device memory
  const AttentionQueryItem* items = nullptr;  // [num_items] device memory
  const int32_t* block_table = nullptr;       // [total blocks] device memory, each < num_blocks
  int32_t num_items = 0;
  int32_t num_heads = 0;
  int32_t kv_heads = 0;  // divides num_heads
  int32_t head_dim = 0;  // 1..kMaxAttentionHeadDim
  int32_t block_size = 0;
  float scale = 1.0f;
  DType dtype = DType::kF32;  // of q, kv_pool and out: f32 or bf16
};

inline constexpr int kMaxAttentionHeadDim = 256;

// One CUDA block per (query item, head), each item one query. cudaErrorInvalidValue for head_dim
// out of range.
cudaError_t LaunchAttention(const AttentionParams& params, cudaStream_t stream);

}  // namespace zigzag::cuda
