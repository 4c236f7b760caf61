// Tiled causal attention for prefill chunks (flash-attention style, float32 CUDA-core math).
//
// A thread block takes a tile of kTileRows queries of one sequence and one query head; warp w owns
// kRows of them. Keys are streamed in tiles of kKeys = 32 through shared memory (converted to
// float once), so the block reads K/V once per tile instead of once per query:
// - scores: lane l computes s[r] = q_r . k_l for its key l and all kRows rows (q rows are
//   broadcast float4 reads, the key row a conflict-free float4 read thanks to the +4 padding);
// - online softmax per row: the row maximum over the 32 lanes is a warp reduction; the running
//   sum is kept per lane (every lane rescales by the same factor) and reduced once at the end;
// - p v: the probabilities go through shared memory (one row per warp row), and lane l
//   accumulates head dimensions l, l + 32, ... of every row.
// Causality is by cache index: query r of a sequence has cache index kv_len - num_queries + r and
// sees keys [0, that]. The block runs key tiles up to its last query's index; a warp skips tiles
// past its own rows and masks the rest with -inf. Key 0 is visible to every query, so every row's
// maximum is finite after the first tile and exp(-inf - m) = 0 never meets -inf - -inf.
//
// Window mass: the final (max, sum) of a row are only known after its last key tile, so tiles
// holding rows with cache index >= window_begin run a second pass over their visible keys that
// recomputes the logits with the same arithmetic and atomically adds p = exp(s - m) / l into
// window_mass[h, j]. Only the last tile or two of a prompt contain window rows (the window is the
// newest few tokens), so the extra pass costs little; the atomics add at most window-size terms
// per element, in an unspecified order (float rounding differences of about 1e-7 relative).
//
// Rows past the sequence's last query (the tail of its last tile) recompute the last query and
// are never stored, which keeps every row's softmax well defined without special cases.
#include "kernels/cuda/flash_attention_kernels.cuh"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "kernels/cuda/device_dtype.cuh"

namespace zigzag::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kKeys = 32;  // keys per tile: one per lane

__device__ __forceinline__ float WarpMax(float value) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
  }
  return value;
}

// Rows per warp: fewer when every lane holds 8 head dims per row (head_dim > 128).
template <int kDimsPerLane>
constexpr int RowsPerWarp() {
  return kDimsPerLane >= 8 ? 8 : 16;
}

// Shared floats for head_dim d: Q tile and K tile rows padded to d + 4, V tile, probabilities.
size_t SharedBytes(int head_dim, int tile_rows, int rows_per_warp) {
  const size_t padded = static_cast<size_t>(head_dim) + 4;
  const size_t floats = tile_rows * padded + kKeys * padded +
                        kKeys * static_cast<size_t>(head_dim) +
                        static_cast<size_t>(kWarps) * rows_per_warp * kKeys;
  return floats * sizeof(float);
}

// s[r] = q_r . k for the warp's rows (q already scaled), k = this lane's key row in shared memory.
template <int kRows>
__device__ __forceinline__ void Scores(const float* q_rows, const float* key, int head_dim,
                                       int padded, float (&s)[kRows]) {
#pragma unroll
  for (int r = 0; r < kRows; ++r) s[r] = 0.0f;
  for (int d = 0; d < head_dim; d += 4) {
    const float4 k = *reinterpret_cast<const float4*>(key + d);
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const float4 q = *reinterpret_cast<const float4*>(q_rows + r * padded + d);
      s[r] += q.x * k.x + q.y * k.y + q.z * k.z + q.w * k.w;
    }
  }
}

template <typename T, int kDimsPerLane>
__global__ void __launch_bounds__(kThreads) FlashAttentionKernel(AttentionParams p) {
  constexpr int kRows = RowsPerWarp<kDimsPerLane>();
  constexpr int kTileRows = kRows * kWarps;
  const AttentionQueryItem tile = p.items[blockIdx.x];
  const int h = blockIdx.y;
  const int g = h / (p.num_heads / p.kv_heads);
  const AttentionSeqDesc seq = p.seqs[tile.seq * p.kv_heads + g];  // KV head g's stream
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int head_dim = p.head_dim;
  const int padded = head_dim + 4;

  extern __shared__ float4 shared_raw[];
  float* q_tile = reinterpret_cast<float*>(shared_raw);  // [kTileRows][padded]
  float* k_tile = q_tile + kTileRows * padded;           // [kKeys][padded]
  float* v_tile = k_tile + kKeys * padded;               // [kKeys][head_dim]
  float* probs = v_tile + kKeys * head_dim;              // [kWarps][kRows][kKeys]

  const int first_cache = seq.kv_len - seq.num_queries;  // cache index of query 0
  const int last_query = seq.num_queries - 1;
  const int tile_last_cache = first_cache + min(tile.query + kTileRows - 1, last_query);
  const int warp_first_row = tile.query + warp * kRows;  // query index of the warp's row 0
  const int warp_last_cache = first_cache + min(warp_first_row + kRows - 1, last_query);

  const T* q = static_cast<const T*>(p.q);
  for (int idx = threadIdx.x; idx < kTileRows * head_dim; idx += kThreads) {
    const int i = idx / head_dim;
    const int d = idx % head_dim;
    const int64_t row = static_cast<int64_t>(seq.query_begin) + min(tile.query + i, last_query);
    q_tile[i * padded + d] = ToFloat(q[(row * p.num_heads + h) * head_dim + d]) * p.scale;
  }

  // Element offsets in the pool [num_blocks, 2, block_size, head_dim]: the stream's blocks hold
  // only KV head g.
  const int64_t token_stride = head_dim;
  const int64_t v_offset = static_cast<int64_t>(p.block_size) * token_stride;
  const T* pool = static_cast<const T*>(p.kv_pool);
  const int32_t* blocks = p.block_table + seq.block_table_begin;
  // Loads keys [key_begin, key_begin + kKeys) into the K tile (and the V tile when with_values);
  // entries past kv_len are zero (they are masked anyway).
  auto load_tile = [&](int key_begin, bool with_values) {
    for (int idx = threadIdx.x; idx < kKeys * head_dim; idx += kThreads) {
      const int i = idx / head_dim;
      const int d = idx % head_dim;
      const int j = key_begin + i;
      float k = 0.0f;
      float v = 0.0f;
      if (j < seq.kv_len) {
        const int64_t block = blocks[j / p.block_size];
        const T* key = pool + (block * 2 * p.block_size + j % p.block_size) * token_stride;
        k = ToFloat(key[d]);
        if (with_values) v = ToFloat(key[v_offset + d]);
      }
      k_tile[i * padded + d] = k;
      if (with_values) v_tile[i * head_dim + d] = v;
    }
  };

  const float* my_q = q_tile + warp * kRows * padded;
  float* my_probs = probs + warp * kRows * kKeys;
  float m[kRows];
  float l[kRows];  // this lane's share of the row sum until the end, then the row sum
  float acc[kRows][kDimsPerLane];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.0f;
#pragma unroll
    for (int t = 0; t < kDimsPerLane; ++t) acc[r][t] = 0.0f;
  }

  for (int key_begin = 0; key_begin <= tile_last_cache; key_begin += kKeys) {
    __syncthreads();  // the previous tile is no longer read (and the Q tile is written)
    load_tile(key_begin, true);
    __syncthreads();
    if (key_begin > warp_last_cache) continue;  // warp-uniform: every row of the warp is masked

    float s[kRows];
    Scores<kRows>(my_q, k_tile + lane * padded, head_dim, padded, s);
    const int j = key_begin + lane;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int cache_index = first_cache + min(warp_first_row + r, last_query);
      if (j > cache_index) s[r] = -INFINITY;
      const float m_new = fmaxf(m[r], WarpMax(s[r]));  // finite: see the top comment
      const float correction = expf(m[r] - m_new);
      const float prob = expf(s[r] - m_new);
      l[r] = l[r] * correction + prob;
#pragma unroll
      for (int t = 0; t < kDimsPerLane; ++t) acc[r][t] *= correction;
      m[r] = m_new;
      my_probs[r * kKeys + lane] = prob;
    }
    __syncwarp();
    for (int key = 0; key < kKeys; ++key) {
      float v[kDimsPerLane];
#pragma unroll
      for (int t = 0; t < kDimsPerLane; ++t) {
        const int d = lane + 32 * t;
        v[t] = d < head_dim ? v_tile[key * head_dim + d] : 0.0f;
      }
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        const float prob = my_probs[r * kKeys + key];
#pragma unroll
        for (int t = 0; t < kDimsPerLane; ++t) acc[r][t] += prob * v[t];
      }
    }
    __syncwarp();  // the probabilities are read before the next tile overwrites them
  }

  T* out = static_cast<T*>(p.out);
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    l[r] = WarpSum(l[r]);  // >= 1: the maximal key contributes exp(0)
    const int query = warp_first_row + r;
    if (query > last_query) continue;
    const int64_t row = static_cast<int64_t>(seq.query_begin) + query;
    const float inv = 1.0f / l[r];
#pragma unroll
    for (int t = 0; t < kDimsPerLane; ++t) {
      const int d = lane + 32 * t;
      if (d < head_dim) out[(row * p.num_heads + h) * head_dim + d] = FromFloat<T>(acc[r][t] * inv);
    }
  }

  // Second pass for the window rows (block-uniform condition: it depends on the tile only).
  if (seq.window_mass == nullptr || tile_last_cache < seq.window_begin) return;
  float* mass = seq.window_mass + static_cast<int64_t>(h) * seq.window_mass_stride;
  for (int key_begin = 0; key_begin <= tile_last_cache; key_begin += kKeys) {
    __syncthreads();
    load_tile(key_begin, false);
    __syncthreads();
    if (key_begin > warp_last_cache || warp_last_cache < seq.window_begin) continue;
    float s[kRows];
    Scores<kRows>(my_q, k_tile + lane * padded, head_dim, padded, s);
    const int j = key_begin + lane;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int query = warp_first_row + r;
      const int cache_index = first_cache + query;
      if (query <= last_query && cache_index >= seq.window_begin && j <= cache_index) {
        atomicAdd(mass + j, expf(s[r] - m[r]) / l[r]);
      }
    }
  }
}

template <typename T, int kDimsPerLane>
cudaError_t Launch(const AttentionParams& p, cudaStream_t stream) {
  constexpr int kRows = RowsPerWarp<kDimsPerLane>();
  static_assert(kRows * kWarps == (kDimsPerLane >= 8 ? 32 : 64), "FlashQueryTileRows disagrees");
  const size_t shared = SharedBytes(p.head_dim, kRows * kWarps, kRows);
  // Above the default 48 KiB a kernel must opt in (per kernel, so every launch sets it; cheap).
  const cudaError_t attribute =
      cudaFuncSetAttribute(FlashAttentionKernel<T, kDimsPerLane>,
                           cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared));
  if (attribute != cudaSuccess) return attribute;
  const dim3 grid(static_cast<unsigned int>(p.num_items), static_cast<unsigned int>(p.num_heads));
  FlashAttentionKernel<T, kDimsPerLane><<<grid, kThreads, shared, stream>>>(p);
  return cudaGetLastError();
}

template <typename T>
cudaError_t LaunchForHeadDim(const AttentionParams& p, cudaStream_t stream) {
  // Lane l holds head dims l, l + 32, ...: ceil(head_dim / 32) per row, rounded to a power of 2.
  if (p.head_dim <= 32) return Launch<T, 1>(p, stream);
  if (p.head_dim <= 64) return Launch<T, 2>(p, stream);
  if (p.head_dim <= 128) return Launch<T, 4>(p, stream);
  return Launch<T, 8>(p, stream);
}

}  // namespace

cudaError_t LaunchFlashAttention(const AttentionParams& p, cudaStream_t stream) {
  if (p.num_items == 0 || p.num_heads == 0) return cudaSuccess;
  if (!FlashAttentionSupports(p.head_dim) || p.kv_heads < 1 || p.num_heads % p.kv_heads != 0 ||
      p.block_size < 1 || p.num_heads > 65535) {
    return cudaErrorInvalidValue;
  }
  ZIGZAG_DISPATCH_FLOAT_DTYPE(p.dtype, return LaunchForHeadDim<scalar_t>(p, stream));
  return cudaSuccess;  // not reached: every dispatch branch returns
}

}  // namespace zigzag::cuda
