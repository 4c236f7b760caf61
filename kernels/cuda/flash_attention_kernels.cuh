// Tiled ("flash") causal attention for prefill chunks over the paged KV pool: a tile of queries of
// one sequence and one head per thread block, K/V streamed through shared memory with an online
// softmax (no T x T buffer), and the window-mass summary. Kernels in flash_attention_kernels.cu.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/cuda/attention_kernels.cuh"

namespace zigzag::cuda {

// Head dims the tiled kernel takes: shared-memory rows are read as float4, so head_dim % 4 == 0.
inline bool FlashAttentionSupports(int head_dim) {
  return head_dim >= 4 && head_dim <= kMaxAttentionHeadDim && head_dim % 4 == 0;
}

// Queries per tile (per thread block): 64, or 32 above head_dim 128 where the per-row
// accumulators would not fit in registers.
inline int FlashQueryTileRows(int head_dim) { return head_dim > 128 ? 32 : 64; }

// `params.items` lists the tiles: item {seq, query} covers queries [query, query +
// FlashQueryTileRows) of sequence seq (clipped to its num_queries); grid num_items x num_heads.
// cudaErrorInvalidValue for unsupported shapes.
cudaError_t LaunchFlashAttention(const AttentionParams& params, cudaStream_t stream);

}  // namespace zigzag::cuda
