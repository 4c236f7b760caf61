// Device-side element conversions for the CUDA kernels (float and bf16 storage, float math),
// and the dispatch from a runtime DType to a kernel template. Included only by .cu files.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/dtype.h"

namespace zigzag::cuda {

__device__ __forceinline__ float ToFloat(float value) { return value; }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 value) { return __bfloat162float(value); }

template <typename T>
__device__ __forceinline__ T FromFloat(float value);
template <>
__device__ __forceinline__ float FromFloat<float>(float value) {
  return value;
}
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float value) {
  return __float2bfloat16_rn(value);  // round to nearest even, like kernels/dtype.h
}

// Sum over the 32 lanes of a warp; every lane gets the total.
__device__ __forceinline__ float WarpSum(float value) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    value += __shfl_xor_sync(0xffffffffu, value, offset);
  }
  return value;
}

// Enough blocks of `threads` to cover `work` items in a grid-stride loop, capped so that very
// large tensors loop instead of asking for an oversized grid. 0 when there is no work (the caller
// then skips the launch: a grid of 0 blocks is a launch error).
inline unsigned int GridFor(int64_t work, int threads) {
  constexpr int64_t kMaxBlocks = 65535;
  const int64_t blocks = (work + threads - 1) / threads;
  return static_cast<unsigned int>(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

}  // namespace zigzag::cuda

// Runs `body` with `scalar_t` bound to the element type of `dtype` (f32 or bf16); other dtypes
// make the enclosing launcher return cudaErrorInvalidValue (callers validate dtypes before, so
// this only catches a broken invariant).
#define ZIGZAG_DISPATCH_FLOAT_DTYPE(dtype, ...) \
  switch (dtype) {                              \
    case ::zigzag::DType::kF32: {               \
      using scalar_t = float;                   \
      __VA_ARGS__;                              \
      break;                                    \
    }                                           \
    case ::zigzag::DType::kBF16: {              \
      using scalar_t = __nv_bfloat16;           \
      __VA_ARGS__;                              \
      break;                                    \
    }                                           \
    default:                                    \
      return cudaErrorInvalidValue;             \
  }
