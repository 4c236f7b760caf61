// Row-wise and element-wise kernels of the CUDA backend (declared in elementwise_kernels.cuh).
// Deliberately simple: grid-stride loops, one block per row where a row reduction is needed,
// float32 math whatever the storage type. 64-bit indices throughout.
#include "kernels/cuda/elementwise_kernels.cuh"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/device_dtype.cuh"

namespace zigzag::cuda {
namespace {

constexpr int kThreads = 256;  // every block in this file; a multiple of 32
constexpr int64_t kMaxRowBlocks = 65535;

unsigned int RowGrid(int64_t rows) {
  return static_cast<unsigned int>(rows < kMaxRowBlocks ? rows : kMaxRowBlocks);
}

// Raw element copies do not need the float type, only its size.
template <typename Element>
__global__ void GatherRowsKernel(const Element* __restrict__ src, const int32_t* __restrict__ rows,
                                 Element* __restrict__ dst, int64_t num_rows, int64_t row_size) {
  for (int64_t r = blockIdx.x; r < num_rows; r += gridDim.x) {
    const Element* from = src + static_cast<int64_t>(rows[r]) * row_size;
    Element* to = dst + r * row_size;
    for (int64_t c = threadIdx.x; c < row_size; c += blockDim.x) to[c] = from[c];
  }
}

// Sum over the block (blockDim.x == kThreads); every thread gets the total. Contains
// __syncthreads, so all threads of the block must call it.
__device__ float BlockSum(float value) {
  __shared__ float warp_sums[kThreads / 32];
  __shared__ float total;
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  value = WarpSum(value);
  if (lane == 0) warp_sums[warp] = value;
  __syncthreads();
  if (warp == 0) {
    float sum = lane < kThreads / 32 ? warp_sums[lane] : 0.0f;
    sum = WarpSum(sum);
    if (lane == 0) total = sum;
  }
  __syncthreads();
  const float result = total;
  __syncthreads();  // `total` and `warp_sums` may be reused by the next row's call
  return result;
}

// y may alias x: every element is read and written by the same thread, and all reads of the
// first pass finish before the reduction's barrier.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    RmsNormKernel(const T* x, const T* __restrict__ weight, T* y, int64_t rows, int64_t dim,
                  float eps) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* x_row = x + r * dim;
    T* y_row = y + r * dim;
    float sum_squares = 0.0f;
    for (int64_t c = threadIdx.x; c < dim; c += kThreads) {
      const float value = ToFloat(x_row[c]);
      sum_squares += value * value;
    }
    sum_squares = BlockSum(sum_squares);
    const float inv_rms = 1.0f / sqrtf(sum_squares / static_cast<float>(dim) + eps);
    for (int64_t c = threadIdx.x; c < dim; c += kThreads) {
      y_row[c] = FromFloat<T>(ToFloat(x_row[c]) * inv_rms * ToFloat(weight[c]));
    }
  }
}

// One thread per (token, i < head_dim / 2), looping over heads so cos/sin are computed once.
// The angle is the float32 product position * inv_freq, as Hugging Face defines it (both are
// float32 tensors there) and as the tests' reference computes it; cos and sin of that float are
// then taken in double, since at positions of 10^5 a float sinf/cosf adds its own error.
template <typename T>
__global__ void RopeKernel(T* x, const int32_t* __restrict__ positions,
                           const float* __restrict__ inv_freq, int64_t tokens, int64_t heads,
                           int64_t head_dim) {
  const int64_t half = head_dim / 2;
  const int64_t work = tokens * half;
  for (int64_t w = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; w < work;
       w += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = w / half;
    const int64_t i = w % half;
    const float angle = static_cast<float>(positions[t]) * inv_freq[i];
    double sin_d;
    double cos_d;
    sincos(static_cast<double>(angle), &sin_d, &cos_d);
    const float sin_a = static_cast<float>(sin_d);
    const float cos_a = static_cast<float>(cos_d);
    T* token = x + t * heads * head_dim;
    for (int64_t h = 0; h < heads; ++h) {
      T* head = token + h * head_dim;
      const float x1 = ToFloat(head[i]);
      const float x2 = ToFloat(head[i + half]);
      head[i] = FromFloat<T>(x1 * cos_a - x2 * sin_a);
      head[i + half] = FromFloat<T>(x2 * cos_a + x1 * sin_a);
    }
  }
}

template <typename T>
__global__ void SiluMulKernel(const T* gate, const T* up, T* out, int64_t count) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = ToFloat(gate[i]);
    const float silu = g / (1.0f + expf(-g));
    out[i] = FromFloat<T>(silu * ToFloat(up[i]));
  }
}

template <typename T>
__global__ void AddKernel(const T* a, const T* b, T* out, int64_t count) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = FromFloat<T>(ToFloat(a[i]) + ToFloat(b[i]));
  }
}

template <typename T>
__global__ void AddBiasKernel(T* __restrict__ y, const T* __restrict__ bias, int64_t rows,
                              int64_t cols) {
  const int64_t count = rows * cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    y[i] = FromFloat<T>(ToFloat(y[i]) + ToFloat(bias[i % cols]));
  }
}

template <typename Element>
__global__ void WriteKvKernel(const Element* __restrict__ k, const Element* __restrict__ v,
                              const int32_t* __restrict__ slots, Element* __restrict__ kv_pool,
                              int64_t tokens, int64_t row_size, int64_t block_size) {
  for (int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {
    const int64_t slot = slots[t];
    const int64_t block = slot / block_size;
    const int64_t offset = slot % block_size;
    // kv_pool[block, 0, offset, :] and kv_pool[block, 1, offset, :].
    Element* k_dst = kv_pool + ((block * 2 + 0) * block_size + offset) * row_size;
    Element* v_dst = kv_pool + ((block * 2 + 1) * block_size + offset) * row_size;
    const Element* k_src = k + t * row_size;
    const Element* v_src = v + t * row_size;
    for (int64_t c = threadIdx.x; c < row_size; c += blockDim.x) {
      k_dst[c] = k_src[c];
      v_dst[c] = v_src[c];
    }
  }
}

// One CUDA block per move; to_staging selects the direction of the copy.
template <typename Element>
__global__ void CompactKvKernel(const int32_t* __restrict__ src_slots,
                                const int32_t* __restrict__ dst_slots,
                                Element* __restrict__ kv_pool, Element* __restrict__ staging,
                                int64_t moves, int64_t head_dim, int64_t block_size,
                                bool to_staging) {
  for (int64_t i = blockIdx.x; i < moves; i += gridDim.x) {
    const int64_t slot = to_staging ? src_slots[i] : dst_slots[i];
    const int64_t block = slot / block_size;
    const int64_t offset = slot % block_size;
    for (int kv = 0; kv < 2; ++kv) {
      // kv_pool[block, kv, offset, :] and staging[kv, i, :].
      Element* pool_row = kv_pool + ((block * 2 + kv) * block_size + offset) * head_dim;
      Element* staging_row = staging + (kv * moves + i) * head_dim;
      for (int64_t c = threadIdx.x; c < head_dim; c += blockDim.x) {
        if (to_staging) {
          staging_row[c] = pool_row[c];
        } else {
          pool_row[c] = staging_row[c];
        }
      }
    }
  }
}

template <typename Element>
cudaError_t LaunchCompactKvTyped(const CompactKvParams& p, cudaStream_t stream) {
  const unsigned int grid = RowGrid(p.moves);
  auto* pool = static_cast<Element*>(p.kv_pool);
  auto* staging = static_cast<Element*>(p.staging);
  for (bool to_staging : {true, false}) {
    CompactKvKernel<Element><<<grid, kThreads, 0, stream>>>(
        p.src_slots, p.dst_slots, pool, staging, p.moves, p.head_dim, p.block_size, to_staging);
    const cudaError_t launched = cudaGetLastError();
    if (launched != cudaSuccess) return launched;
  }
  return cudaSuccess;
}

__global__ void TrivialKernel(int* out) {
  if (out != nullptr) *out = 0;
}

}  // namespace

cudaError_t LaunchGatherRows(const GatherRowsParams& p, cudaStream_t stream) {
  if (p.num_rows == 0 || p.row_size == 0) return cudaSuccess;
  if (DTypeSize(p.dtype) == 2) {
    GatherRowsKernel<<<RowGrid(p.num_rows), kThreads, 0, stream>>>(
        static_cast<const uint16_t*>(p.src), p.rows, static_cast<uint16_t*>(p.dst), p.num_rows,
        p.row_size);
  } else if (DTypeSize(p.dtype) == 4) {
    GatherRowsKernel<<<RowGrid(p.num_rows), kThreads, 0, stream>>>(
        static_cast<const uint32_t*>(p.src), p.rows, static_cast<uint32_t*>(p.dst), p.num_rows,
        p.row_size);
  } else {
    return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t LaunchRmsNorm(const RmsNormParams& p, cudaStream_t stream) {
  if (p.rows == 0 || p.dim == 0) return cudaSuccess;
  ZIGZAG_DISPATCH_FLOAT_DTYPE(
      p.dtype, RmsNormKernel<scalar_t><<<RowGrid(p.rows), kThreads, 0, stream>>>(
                   static_cast<const scalar_t*>(p.x), static_cast<const scalar_t*>(p.weight),
                   static_cast<scalar_t*>(p.y), p.rows, p.dim, p.eps));
  return cudaGetLastError();
}

cudaError_t LaunchRope(const RopeParams& p, cudaStream_t stream) {
  const int64_t work = p.tokens * (p.head_dim / 2);
  if (work == 0 || p.heads == 0) return cudaSuccess;
  ZIGZAG_DISPATCH_FLOAT_DTYPE(
      p.dtype,
      RopeKernel<scalar_t><<<GridFor(work, kThreads), kThreads, 0, stream>>>(
          static_cast<scalar_t*>(p.x), p.positions, p.inv_freq, p.tokens, p.heads, p.head_dim));
  return cudaGetLastError();
}

cudaError_t LaunchSiluMul(const SiluMulParams& p, cudaStream_t stream) {
  if (p.count == 0) return cudaSuccess;
  ZIGZAG_DISPATCH_FLOAT_DTYPE(
      p.dtype, SiluMulKernel<scalar_t><<<GridFor(p.count, kThreads), kThreads, 0, stream>>>(
                   static_cast<const scalar_t*>(p.gate), static_cast<const scalar_t*>(p.up),
                   static_cast<scalar_t*>(p.out), p.count));
  return cudaGetLastError();
}

cudaError_t LaunchAdd(const AddParams& p, cudaStream_t stream) {
  if (p.count == 0) return cudaSuccess;
  ZIGZAG_DISPATCH_FLOAT_DTYPE(
      p.dtype, AddKernel<scalar_t><<<GridFor(p.count, kThreads), kThreads, 0, stream>>>(
                   static_cast<const scalar_t*>(p.a), static_cast<const scalar_t*>(p.b),
                   static_cast<scalar_t*>(p.out), p.count));
  return cudaGetLastError();
}

cudaError_t LaunchAddBias(const AddBiasParams& p, cudaStream_t stream) {
  const int64_t count = p.rows * p.cols;
  if (count == 0) return cudaSuccess;
  ZIGZAG_DISPATCH_FLOAT_DTYPE(
      p.dtype,
      AddBiasKernel<scalar_t><<<GridFor(count, kThreads), kThreads, 0, stream>>>(
          static_cast<scalar_t*>(p.y), static_cast<const scalar_t*>(p.bias), p.rows, p.cols));
  return cudaGetLastError();
}

cudaError_t LaunchWriteKv(const WriteKvParams& p, cudaStream_t stream) {
  if (p.tokens == 0 || p.row_size == 0) return cudaSuccess;
  if (DTypeSize(p.dtype) == 2) {
    WriteKvKernel<<<RowGrid(p.tokens), kThreads, 0, stream>>>(
        static_cast<const uint16_t*>(p.k), static_cast<const uint16_t*>(p.v), p.slots,
        static_cast<uint16_t*>(p.kv_pool), p.tokens, p.row_size, p.block_size);
  } else if (DTypeSize(p.dtype) == 4) {
    WriteKvKernel<<<RowGrid(p.tokens), kThreads, 0, stream>>>(
        static_cast<const uint32_t*>(p.k), static_cast<const uint32_t*>(p.v), p.slots,
        static_cast<uint32_t*>(p.kv_pool), p.tokens, p.row_size, p.block_size);
  } else {
    return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t LaunchCompactKv(const CompactKvParams& p, cudaStream_t stream) {
  if (p.moves == 0 || p.head_dim == 0) return cudaSuccess;
  if (DTypeSize(p.dtype) == 2) return LaunchCompactKvTyped<uint16_t>(p, stream);
  if (DTypeSize(p.dtype) == 4) return LaunchCompactKvTyped<uint32_t>(p, stream);
  return cudaErrorInvalidValue;
}

cudaError_t ProbeKernelImage() {
  cudaFuncAttributes attributes;
  return cudaFuncGetAttributes(&attributes, TrivialKernel);
}

cudaError_t LaunchInvalidConfigurationForTesting(cudaStream_t stream) {
  constexpr unsigned int kTooManyThreads = 4096;  // the hardware limit is 1024 per block
  TrivialKernel<<<1, kTooManyThreads, 0, stream>>>(nullptr);
  return cudaGetLastError();
}

}  // namespace zigzag::cuda
