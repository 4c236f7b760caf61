// Split-K ("flash-decoding") paged attention for decode batches: every sequence has one query,
// its KV range is cut into chunks that separate thread blocks reduce to partial softmax states,
// and a second kernel merges them. Plain host declarations; kernels in decode_attention_kernels.cu.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <initializer_list>

#include "kernels/cuda/attention_kernels.cuh"
#include "kernels/dtype.h"

namespace zigzag::cuda {

// One thread block's share of one (sequence, KV head) stream's decode query: cache entries
// [key_begin, key_end) of that stream, for the query heads of its KV head.
struct DecodeSplit {
  int32_t seq = 0;        // index into DecodeAttentionParams::seqs: sequence * kv_heads + KV head
  int32_t key_begin = 0;  // key_begin < key_end <= kv_len: every split has at least one key
  int32_t key_end = 0;
  // Its slot in the partial buffers, or -1 when the sequence has a single split: that block then
  // normalises and writes `out` itself and no merge is needed.
  int32_t partial = -1;
};

// The merge of one stream's partial slots [partial_begin, partial_begin + count).
struct DecodeCombine {
  int32_t seq = 0;  // stream descriptor, as in DecodeSplit
  int32_t partial_begin = 0;
  int32_t count = 0;
  int32_t unused = 0;
};

struct DecodeAttentionParams {
  const void* q = nullptr;                  // [num_rows, num_heads, head_dim] of dtype
  const void* kv_pool = nullptr;            // [num_blocks, 2, block_size, head_dim], 16-B aligned
  void* out = nullptr;                      // [num_rows, num_heads, head_dim] of dtype
  const AttentionSeqDesc* seqs = nullptr;   // device; num_queries == 1 for every seq a split names
  const DecodeSplit* splits = nullptr;      // [num_splits] device
  const DecodeCombine* combines = nullptr;  // [num_combines] device
  const int32_t* block_table = nullptr;     // device, each id < num_blocks
  float* partial_acc = nullptr;    // [num_partials, num_heads, head_dim] unnormalised sum p * v
  float* partial_stats = nullptr;  // [num_partials, num_heads, 2]: (max logit, sum exp(s - max))
  int32_t num_splits = 0;
  int32_t num_combines = 0;
  int32_t num_heads = 0;
  int32_t kv_heads = 0;  // divides num_heads
  int32_t head_dim = 0;  // DecodeAttentionSupports(head_dim)
  int32_t block_size = 0;
  float scale = 1.0f;
  DType dtype = DType::kF32;  // of q, kv_pool and out: f32 or bf16
};

// Head dims with a split-K kernel: each K/V row is read as whole 16-byte vectors by a power of
// two of lanes, which needs head_dim * element size to be 16 * 2^k bytes.
inline bool DecodeAttentionSupports(int head_dim) {
  return head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 128 || head_dim == 256;
}

// Query heads one thread block handles: the largest of 8, 4, 2, 1 dividing the GQA group, so a
// block reads its KV head's rows once for all of them (register tiles are per head, hence the cap).
inline int DecodeHeadsPerBlock(int num_heads, int kv_heads) {
  const int group = num_heads / kv_heads;
  for (int heads : {8, 4, 2}) {
    if (group % heads == 0) return heads;
  }
  return 1;
}

// The split kernel (grid num_splits x group / DecodeHeadsPerBlock, group = num_heads / kv_heads:
// a split covers the query heads of its stream's KV head), then, when num_combines > 0, the merge
// kernel (grid num_combines x group). cudaErrorInvalidValue for unsupported
// shapes.
cudaError_t LaunchDecodeAttention(const DecodeAttentionParams& params, cudaStream_t stream);

}  // namespace zigzag::cuda
