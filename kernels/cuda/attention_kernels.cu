// Causal attention over the paged KV pool, the first correct version. Since the split-K decode
// and flash prefill kernels exist it only serves head dims that are not a multiple of 4 (see
// cuda_attention.cc), and stays as the simplest statement of the semantics the others match.
//
// One CUDA block per (query row, head), kWarps warps. Warp w takes visible keys w, w + kWarps, ...
// For each key the warp forms the logit s = scale * q.k (lanes split head_dim, a shuffle sum) and
// folds it into its own online-softmax state (m = max logit so far, l = sum exp(s - m),
// acc = sum exp(s - m) v). When m grows to m', l and acc are multiplied by exp(m - m'), which is
// exact: every earlier term exp(s - m) becomes exp(s - m'). The warps' states are then merged the
// same way against the block maximum M: L = sum_w l_w exp(m_w - M), out = sum_w acc_w
// exp(m_w - M) / L. A warp that saw no key has m = -inf and contributes exp(-inf) = 0.
//
// Window mass (for compression): a second pass recomputes each logit (same arithmetic, so the same
// value) and atomically adds the probability exp(s - M) / L into window_mass[h, j].
#include "kernels/cuda/attention_kernels.cuh"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "kernels/cuda/device_dtype.cuh"

namespace zigzag::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;

// Lane `lane` owns head dimensions lane, lane + 32, ..., lane + 32 * (kDimsPerLane - 1) (those
// below head_dim), so loads of a K or V row are coalesced across the warp.
template <typename T, int kDimsPerLane>
__device__ __forceinline__ float DotWithKey(const float (&q)[kDimsPerLane], const T* key, int lane,
                                            int head_dim) {
  float partial = 0.0f;
#pragma unroll
  for (int t = 0; t < kDimsPerLane; ++t) {
    const int d = lane + 32 * t;
    if (d < head_dim) partial += q[t] * ToFloat(key[d]);
  }
  return WarpSum(partial);
}

template <typename T, int kDimsPerLane>
__global__ void __launch_bounds__(kThreads) AttentionKernel(AttentionParams p) {
  const AttentionQueryItem item = p.items[blockIdx.x];
  const int h = blockIdx.y;
  const int g = h / (p.num_heads / p.kv_heads);  // GQA: the KV head this query head reads
  const AttentionSeqDesc seq = p.seqs[item.seq * p.kv_heads + g];  // that head's stream
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int head_dim = p.head_dim;

  // The query's cache index in its KV head's stream; it sees entries [0, cache_index].
  const int cache_index = seq.kv_len - seq.num_queries + item.query;
  const int num_visible = cache_index + 1;
  const int64_t row = static_cast<int64_t>(seq.query_begin) + item.query;

  const T* q = static_cast<const T*>(p.q) + (row * p.num_heads + h) * head_dim;
  float q_scaled[kDimsPerLane];
#pragma unroll
  for (int t = 0; t < kDimsPerLane; ++t) {
    const int d = lane + 32 * t;
    q_scaled[t] = d < head_dim ? ToFloat(q[d]) * p.scale : 0.0f;
  }

  // Element offsets in the pool [num_blocks, 2, block_size, head_dim]: the stream's blocks hold
  // only KV head g.
  const int64_t token_stride = head_dim;
  const int64_t v_offset = static_cast<int64_t>(p.block_size) * token_stride;
  const T* pool = static_cast<const T*>(p.kv_pool);
  const int32_t* blocks = p.block_table + seq.block_table_begin;
  auto key_row = [&](int j) -> const T* {
    const int64_t block = blocks[j / p.block_size];
    const int64_t offset = j % p.block_size;
    return pool + (block * 2 * p.block_size + offset) * token_stride;
  };

  float m = -INFINITY;
  float l = 0.0f;
  float acc[kDimsPerLane];
#pragma unroll
  for (int t = 0; t < kDimsPerLane; ++t) acc[t] = 0.0f;

  for (int j = warp; j < num_visible; j += kWarps) {
    const T* key = key_row(j);
    const float s = DotWithKey<T, kDimsPerLane>(q_scaled, key, lane, head_dim);
    const float m_new = fmaxf(m, s);
    const float correction = expf(m - m_new);  // 0 for the warp's first key (m = -inf)
    const float weight = expf(s - m_new);
    l = l * correction + weight;
    const T* value = key + v_offset;
#pragma unroll
    for (int t = 0; t < kDimsPerLane; ++t) {
      const int d = lane + 32 * t;
      const float v = d < head_dim ? ToFloat(value[d]) : 0.0f;
      acc[t] = acc[t] * correction + weight * v;
    }
    m = m_new;
  }

  __shared__ float warp_max[kWarps];
  __shared__ float warp_sum[kWarps];
  __shared__ float warp_acc[kWarps][kDimsPerLane * 32];
  if (lane == 0) {
    warp_max[warp] = m;
    warp_sum[warp] = l;
  }
#pragma unroll
  for (int t = 0; t < kDimsPerLane; ++t) warp_acc[warp][lane + 32 * t] = acc[t];
  __syncthreads();

  float block_max = -INFINITY;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) block_max = fmaxf(block_max, warp_max[w]);
  float factor[kWarps];
  float total = 0.0f;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    factor[w] = expf(warp_max[w] - block_max);  // 0 for warps that saw no key
    total += warp_sum[w] * factor[w];
  }
  const float inv_total = 1.0f / total;  // total >= 1: the maximal key contributes exp(0)

  T* out = static_cast<T*>(p.out) + (row * p.num_heads + h) * head_dim;
  for (int d = threadIdx.x; d < head_dim; d += kThreads) {
    float o = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) o += warp_acc[w][d] * factor[w];
    out[d] = FromFloat<T>(o * inv_total);
  }

  if (seq.window_mass != nullptr && cache_index >= seq.window_begin) {
    float* mass = seq.window_mass + static_cast<int64_t>(h) * seq.window_mass_stride;
    for (int j = warp; j < num_visible; j += kWarps) {
      const float s = DotWithKey<T, kDimsPerLane>(q_scaled, key_row(j), lane, head_dim);
      if (lane == 0) atomicAdd(mass + j, expf(s - block_max) * inv_total);
    }
  }
}

template <typename T, int kDimsPerLane>
cudaError_t Launch(const AttentionParams& p, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned int>(p.num_items), static_cast<unsigned int>(p.num_heads));
  AttentionKernel<T, kDimsPerLane><<<grid, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

template <typename T>
cudaError_t LaunchForHeadDim(const AttentionParams& p, cudaStream_t stream) {
  // Registers hold ceil(head_dim / 32) dims per lane, rounded up to a power of two.
  if (p.head_dim <= 32) return Launch<T, 1>(p, stream);
  if (p.head_dim <= 64) return Launch<T, 2>(p, stream);
  if (p.head_dim <= 128) return Launch<T, 4>(p, stream);
  if (p.head_dim <= kMaxAttentionHeadDim) return Launch<T, 8>(p, stream);
  return cudaErrorInvalidValue;
}

}  // namespace

cudaError_t LaunchAttention(const AttentionParams& p, cudaStream_t stream) {
  if (p.num_items == 0 || p.num_heads == 0) return cudaSuccess;
  if (p.head_dim < 1 || p.kv_heads < 1 || p.num_heads % p.kv_heads != 0 || p.block_size < 1 ||
      p.num_heads > 65535) {
    return cudaErrorInvalidValue;
  }
  ZIGZAG_DISPATCH_FLOAT_DTYPE(p.dtype, return LaunchForHeadDim<scalar_t>(p, stream));
  return cudaSuccess;  // not reached: every dispatch branch returns
}

}  // namespace zigzag::cuda
