// Split-K paged decode attention (flash-decoding).
//
// Decode is memory-bound: one query per sequence against its whole cache, so the kernel's job is
// to read every K/V element once, at close to copy bandwidth, and to have enough thread blocks in
// flight to do so even for batch 1. Hence:
// - Split-K: the host cuts each (sequence, KV head) stream's keys into chunks (see
// cuda_attention.cc for the split
//   count) and each thread block reduces one chunk to a partial online-softmax state per head:
//   m = max logit, l = sum exp(s - m), acc = sum exp(s - m) v (unnormalised). A sequence with a
//   single chunk is normalised and written directly.
// - GQA: a block handles kG query heads of one KV head, so each K/V row is loaded once and used
//   kG times (from registers).
// - Vector loads: a key row is read as 16-byte vectors by a subgroup of kLanesPerKey lanes (a
//   warp covers 32 / kLanesPerKey keys at once), and each lane first issues the loads of kBatch
//   keys before using any, so that several KB per warp are in flight. The batch also shares one
//   online-softmax rescale, which keeps the exp and FMA count per key low enough that the
//   arithmetic hides under the loads.
// - Merges are exact: two states (m1, l1, a1), (m2, l2, a2) combine against M = max(m1, m2) as
//   l = l1 e^(m1-M) + l2 e^(m2-M), a = a1 e^(m1-M) + a2 e^(m2-M). They are applied between the
//   subgroups of a warp (shuffles), between warps (shared memory) and between splits (the merge
//   kernel). An empty state (m = -inf) contributes nothing and is skipped explicitly so that
//   -inf - -inf never produces a NaN.
#include "kernels/cuda/decode_attention_kernels.cuh"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "kernels/cuda/device_dtype.cuh"

namespace zigzag::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;

// Register layout of one head row for element type T and head dim kD.
template <typename T, int kD>
struct RowLayout {
  static constexpr int kVecElems = 16 / static_cast<int>(sizeof(T));  // elements per 16 bytes
  static constexpr int kVecsPerRow = kD / kVecElems;
  static constexpr int kLanesPerKey = kVecsPerRow < 32 ? kVecsPerRow : 32;
  static constexpr int kVecsPerLane = kVecsPerRow / kLanesPerKey;
  static constexpr int kElems = kVecsPerLane * kVecElems;  // floats per lane per head
  static constexpr int kKeysPerWarp = 32 / kLanesPerKey;
  // Keys whose loads a lane issues before the first use: about 4 vectors each of K and V.
  static constexpr int kBatch = kVecsPerLane >= 4 ? 1 : 4 / kVecsPerLane;
  static_assert(kD % kVecElems == 0 && kVecsPerRow % kLanesPerKey == 0, "head_dim");
  static_assert((kLanesPerKey & (kLanesPerKey - 1)) == 0, "lanes per key must be a power of 2");
};

// The 16 bytes of `raw` as floats: 4 float32 or 8 bf16 (bf16 -> float is a 16-bit shift, exact).
template <typename T>
__device__ __forceinline__ void Unpack(const uint4& raw, float* out);
template <>
__device__ __forceinline__ void Unpack<float>(const uint4& raw, float* out) {
  out[0] = __uint_as_float(raw.x);
  out[1] = __uint_as_float(raw.y);
  out[2] = __uint_as_float(raw.z);
  out[3] = __uint_as_float(raw.w);
}
template <>
__device__ __forceinline__ void Unpack<__nv_bfloat16>(const uint4& raw, float* out) {
  const unsigned int words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    out[2 * i] = __uint_as_float(words[i] << 16);  // the lower address holds the low half
    out[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
  }
}

// Folds state (m_o, l_o, acc_o) into (m, l, acc); see the top comment.
template <int kN>
__device__ __forceinline__ void MergeState(float& m, float& l, float (&acc)[kN], float m_o,
                                           float l_o, const float (&acc_o)[kN]) {
  if (m_o == -INFINITY) return;
  if (m == -INFINITY) {
    m = m_o;
    l = l_o;
#pragma unroll
    for (int e = 0; e < kN; ++e) acc[e] = acc_o[e];
    return;
  }
  const float m_new = fmaxf(m, m_o);
  const float f = expf(m - m_new);
  const float f_o = expf(m_o - m_new);
  l = l * f + l_o * f_o;
#pragma unroll
  for (int e = 0; e < kN; ++e) acc[e] = acc[e] * f + acc_o[e] * f_o;
  m = m_new;
}

template <typename T, int kD, int kG>
__global__ void __launch_bounds__(kThreads) DecodeSplitKernel(DecodeAttentionParams p) {
  using L = RowLayout<T, kD>;
  const DecodeSplit split = p.splits[blockIdx.x];
  const AttentionSeqDesc seq = p.seqs[split.seq];  // one (sequence, KV head) stream
  const int g = split.seq % p.kv_heads;            // its KV head
  const int h0 = g * (p.num_heads / p.kv_heads) + blockIdx.y * kG;  // first query head here
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int sub = lane / L::kLanesPerKey;  // which key of the warp's kKeysPerWarp
  const int sl = lane % L::kLanesPerKey;   // lane within that key's subgroup
  const int64_t row = seq.query_begin;     // the sequence's one query

  // Lane element e = v * kVecElems + i holds head dimension (v * kLanesPerKey + sl) * kVecElems +
  // i: the subgroup's lanes read adjacent 16-byte vectors of a row.
  float q[kG][L::kElems];
  const T* q_row = static_cast<const T*>(p.q) + (row * p.num_heads + h0) * kD;
#pragma unroll
  for (int hg = 0; hg < kG; ++hg) {
#pragma unroll
    for (int v = 0; v < L::kVecsPerLane; ++v) {
#pragma unroll
      for (int i = 0; i < L::kVecElems; ++i) {
        const int d = (v * L::kLanesPerKey + sl) * L::kVecElems + i;
        q[hg][v * L::kVecElems + i] = ToFloat(q_row[hg * kD + d]) * p.scale;
      }
    }
  }

  float m[kG];
  float l[kG];
  float acc[kG][L::kElems];
#pragma unroll
  for (int hg = 0; hg < kG; ++hg) {
    m[hg] = -INFINITY;
    l[hg] = 0.0f;
#pragma unroll
    for (int e = 0; e < L::kElems; ++e) acc[hg][e] = 0.0f;
  }

  // Element offsets in the pool [num_blocks, 2, block_size, head_dim]: the stream's blocks hold
  // only KV head g.
  const int64_t token_stride = kD;
  const int64_t v_offset = static_cast<int64_t>(p.block_size) * token_stride;
  const T* pool = static_cast<const T*>(p.kv_pool);
  const int32_t* blocks = p.block_table + seq.block_table_begin;

  // In one step the block covers kBatch rounds of kStride consecutive keys; the loop bound is
  // uniform over the block, so every lane reaches the shuffles below.
  constexpr int kStride = kWarps * L::kKeysPerWarp;
  const int my_offset = warp * L::kKeysPerWarp + sub;
  for (int base = split.key_begin; base < split.key_end; base += kStride * L::kBatch) {
    uint4 k_raw[L::kBatch][L::kVecsPerLane];
    uint4 v_raw[L::kBatch][L::kVecsPerLane];
    bool valid[L::kBatch];
#pragma unroll
    for (int b = 0; b < L::kBatch; ++b) {
      const int j = base + b * kStride + my_offset;
      valid[b] = j < split.key_end;
      if (valid[b]) {
        const int64_t block = blocks[j / p.block_size];
        const T* key = pool + (block * 2 * p.block_size + j % p.block_size) * token_stride;
        const uint4* k_vec = reinterpret_cast<const uint4*>(key);
        const uint4* v_vec = reinterpret_cast<const uint4*>(key + v_offset);
#pragma unroll
        for (int v = 0; v < L::kVecsPerLane; ++v) {
          k_raw[b][v] = __ldg(k_vec + v * L::kLanesPerKey + sl);
          v_raw[b][v] = __ldg(v_vec + v * L::kLanesPerKey + sl);
        }
      } else {
#pragma unroll
        for (int v = 0; v < L::kVecsPerLane; ++v) {
          k_raw[b][v] = make_uint4(0u, 0u, 0u, 0u);
          v_raw[b][v] = make_uint4(0u, 0u, 0u, 0u);
        }
      }
    }
    // Logits of the batch's keys (-inf for keys past the split), then one online-softmax step for
    // the whole batch: one rescale of (l, acc) per batch instead of one per key.
    float s[L::kBatch][kG];
#pragma unroll
    for (int b = 0; b < L::kBatch; ++b) {
      float k[L::kElems];
#pragma unroll
      for (int v = 0; v < L::kVecsPerLane; ++v) Unpack<T>(k_raw[b][v], k + v * L::kVecElems);
#pragma unroll
      for (int hg = 0; hg < kG; ++hg) {
        float partial = 0.0f;
#pragma unroll
        for (int e = 0; e < L::kElems; ++e) partial += q[hg][e] * k[e];
          // Sum over the key's subgroup (xor offsets below kLanesPerKey stay inside it).
#pragma unroll
        for (int offset = L::kLanesPerKey / 2; offset > 0; offset >>= 1) {
          partial += __shfl_xor_sync(0xffffffffu, partial, offset);
        }
        s[b][hg] = valid[b] ? partial : -INFINITY;
      }
    }
    if (!valid[0]) continue;  // the split's tail: no key of this batch is ours (valid is monotone)
    float val[L::kBatch][L::kElems];
#pragma unroll
    for (int b = 0; b < L::kBatch; ++b) {
#pragma unroll
      for (int v = 0; v < L::kVecsPerLane; ++v) Unpack<T>(v_raw[b][v], val[b] + v * L::kVecElems);
    }
#pragma unroll
    for (int hg = 0; hg < kG; ++hg) {
      float batch_max = s[0][hg];  // finite: key 0 of the batch is valid
#pragma unroll
      for (int b = 1; b < L::kBatch; ++b) batch_max = fmaxf(batch_max, s[b][hg]);
      const float m_new = fmaxf(m[hg], batch_max);
      const float correction = expf(m[hg] - m_new);  // 0 for the first batch (m = -inf)
      l[hg] *= correction;
#pragma unroll
      for (int e = 0; e < L::kElems; ++e) acc[hg][e] *= correction;
#pragma unroll
      for (int b = 0; b < L::kBatch; ++b) {
        const float weight = expf(s[b][hg] - m_new);  // 0 for invalid keys (s = -inf)
        l[hg] += weight;
#pragma unroll
        for (int e = 0; e < L::kElems; ++e) acc[hg][e] += weight * val[b][e];
      }
      m[hg] = m_new;
    }
  }

  // Merge the subgroups of the warp: lanes lane and lane ^ offset (offset >= kLanesPerKey) hold
  // the same head dimensions of different keys. Shuffle first (all lanes), merge after.
#pragma unroll
  for (int offset = L::kLanesPerKey; offset < 32; offset <<= 1) {
#pragma unroll
    for (int hg = 0; hg < kG; ++hg) {
      const float m_o = __shfl_xor_sync(0xffffffffu, m[hg], offset);
      const float l_o = __shfl_xor_sync(0xffffffffu, l[hg], offset);
      float acc_o[L::kElems];
#pragma unroll
      for (int e = 0; e < L::kElems; ++e) {
        acc_o[e] = __shfl_xor_sync(0xffffffffu, acc[hg][e], offset);
      }
      MergeState(m[hg], l[hg], acc[hg], m_o, l_o, acc_o);
    }
  }

  __shared__ float warp_m[kWarps][kG];
  __shared__ float warp_l[kWarps][kG];
  __shared__ float warp_acc[kWarps][kG][kD];
  if (sub == 0) {
#pragma unroll
    for (int hg = 0; hg < kG; ++hg) {
      if (sl == 0) {
        warp_m[warp][hg] = m[hg];
        warp_l[warp][hg] = l[hg];
      }
#pragma unroll
      for (int v = 0; v < L::kVecsPerLane; ++v) {
#pragma unroll
        for (int i = 0; i < L::kVecElems; ++i) {
          const int d = (v * L::kLanesPerKey + sl) * L::kVecElems + i;
          warp_acc[warp][hg][d] = acc[hg][v * L::kVecElems + i];
        }
      }
    }
  }
  __syncthreads();

  // Merge the warps. The chunk is non-empty, so at least warp 0 saw a key and `block_max` is
  // finite; warps that saw none have m = -inf and factor exp(-inf) = 0.
  for (int idx = threadIdx.x; idx < kG * kD; idx += kThreads) {
    const int hg = idx / kD;
    const int d = idx % kD;
    float block_max = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) block_max = fmaxf(block_max, warp_m[w][hg]);
    float total = 0.0f;
    float o = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float factor = expf(warp_m[w][hg] - block_max);
      total += warp_l[w][hg] * factor;
      o += warp_acc[w][hg][d] * factor;
    }
    const int h = h0 + hg;
    if (split.partial < 0) {
      T* out = static_cast<T*>(p.out) + (row * p.num_heads + h) * kD;
      out[d] = FromFloat<T>(o / total);
    } else {
      const int64_t slot = static_cast<int64_t>(split.partial) * p.num_heads + h;
      p.partial_acc[slot * kD + d] = o;
      if (d == 0) {
        p.partial_stats[slot * 2] = block_max;
        p.partial_stats[slot * 2 + 1] = total;
      }
    }
  }
}

// One block per (sequence with several splits, head): out = sum_s acc_s e^(m_s - M) /
// sum_s l_s e^(m_s - M). Every split saw at least one key, so every m_s is finite.
template <typename T>
__global__ void __launch_bounds__(kThreads) DecodeCombineKernel(DecodeAttentionParams p) {
  const DecodeCombine combine = p.combines[blockIdx.x];
  const AttentionSeqDesc seq = p.seqs[combine.seq];
  const int h = (combine.seq % p.kv_heads) * (p.num_heads / p.kv_heads) + blockIdx.y;
  const int head_dim = p.head_dim;
  const int64_t first_slot = static_cast<int64_t>(combine.partial_begin) * p.num_heads + h;
  float max_logit = -INFINITY;
  for (int s = 0; s < combine.count; ++s) {
    max_logit = fmaxf(max_logit, p.partial_stats[(first_slot + s * p.num_heads) * 2]);
  }
  T* out =
      static_cast<T*>(p.out) + (static_cast<int64_t>(seq.query_begin) * p.num_heads + h) * head_dim;
  for (int d = threadIdx.x; d < head_dim; d += kThreads) {
    float total = 0.0f;
    float o = 0.0f;
    for (int s = 0; s < combine.count; ++s) {
      const int64_t slot = first_slot + static_cast<int64_t>(s) * p.num_heads;
      const float factor = expf(p.partial_stats[slot * 2] - max_logit);
      total += p.partial_stats[slot * 2 + 1] * factor;
      o += p.partial_acc[slot * head_dim + d] * factor;
    }
    out[d] = FromFloat<T>(o / total);
  }
}

template <typename T, int kD, int kG>
cudaError_t LaunchSplit(const DecodeAttentionParams& p, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned int>(p.num_splits),
                  static_cast<unsigned int>(p.num_heads / p.kv_heads / kG));
  DecodeSplitKernel<T, kD, kG><<<grid, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

template <typename T, int kD>
cudaError_t LaunchForHeads(const DecodeAttentionParams& p, cudaStream_t stream) {
  switch (DecodeHeadsPerBlock(p.num_heads, p.kv_heads)) {
    case 8:
      return LaunchSplit<T, kD, 8>(p, stream);
    case 4:
      return LaunchSplit<T, kD, 4>(p, stream);
    case 2:
      return LaunchSplit<T, kD, 2>(p, stream);
    default:
      return LaunchSplit<T, kD, 1>(p, stream);
  }
}

template <typename T>
cudaError_t LaunchForType(const DecodeAttentionParams& p, cudaStream_t stream) {
  cudaError_t error = cudaErrorInvalidValue;
  switch (p.head_dim) {
    case 16:
      error = LaunchForHeads<T, 16>(p, stream);
      break;
    case 32:
      error = LaunchForHeads<T, 32>(p, stream);
      break;
    case 64:
      error = LaunchForHeads<T, 64>(p, stream);
      break;
    case 128:
      error = LaunchForHeads<T, 128>(p, stream);
      break;
    case 256:
      error = LaunchForHeads<T, 256>(p, stream);
      break;
    default:
      break;
  }
  if (error != cudaSuccess || p.num_combines == 0) return error;
  const dim3 grid(static_cast<unsigned int>(p.num_combines),
                  static_cast<unsigned int>(p.num_heads / p.kv_heads));
  DecodeCombineKernel<T><<<grid, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchDecodeAttention(const DecodeAttentionParams& p, cudaStream_t stream) {
  if (p.num_splits == 0 || p.num_heads == 0) return cudaSuccess;
  if (p.kv_heads < 1 || p.num_heads % p.kv_heads != 0 || p.block_size < 1 || p.num_heads > 65535 ||
      !DecodeAttentionSupports(p.head_dim) || (reinterpret_cast<uintptr_t>(p.kv_pool) & 15u) != 0 ||
      (p.num_combines > 0 && (p.partial_acc == nullptr || p.partial_stats == nullptr))) {
    return cudaErrorInvalidValue;
  }
  ZIGZAG_DISPATCH_FLOAT_DTYPE(p.dtype, return LaunchForType<scalar_t>(p, stream));
  return cudaSuccess;  // not reached: every dispatch branch returns
}

}  // namespace zigzag::cuda
