// Matmul kernels of the CPU backend: y[N, M] = x[N, K] * w[M, K]^T with float32 x and y and
// float32, bf16 or f16 weights, accumulated in float32, for the instruction sets chosen at run
// time (AVX-512 with or without AVX-512-BF16, AVX2+FMA+F16C, or plain C++). It checks no shapes
// and owns no threads: CpuBackend::Matmul checks its arguments and splits the columns (weight
// rows) over its pool.
#pragma once

#include <cstdint>

#include "kernels/dtype.h"

namespace zigzag::cpu {

// Ordered from the most portable to the fastest; a CPU that runs one runs all before it.
enum class MatmulIsa : uint8_t {
  kMatmulIsaScalar,      // plain C++, any x86-64 (and the reference the others are tested with)
  kMatmulIsaAvx2,        // AVX2 + FMA + F16C: 8 floats a vector, bf16/f16 converted on load
  kMatmulIsaAvx512,      // AVX-512 F/BW/VL/DQ: 16 floats a vector, bf16/f16 converted on load
  kMatmulIsaAvx512Bf16,  // + AVX512_BF16: bf16 weights times x rounded to bf16 with vdpbf16ps
};

const char* MatmulIsaName(MatmulIsa isa);
// Whether this CPU (and OS) can run `isa`. kMatmulIsaScalar always can.
bool MatmulIsaSupported(MatmulIsa isa);
// The fastest isa this CPU supports, found once.
MatmulIsa BestMatmulIsa();

// One matmul. x and y are float32; w is float32, bf16 or f16 (w_dtype).
struct MatmulProblem {
  const float* x = nullptr;  // [n, k]
  // [n, k]: x rounded to bf16 (RoundToBf16). Needed only for bf16 weights on kMatmulIsaAvx512Bf16,
  // which multiplies bf16 by bf16 (vdpbf16ps); every other path reads x as float32.
  const uint16_t* x_bf16 = nullptr;
  const void* w = nullptr;  // [m, k]
  DType w_dtype = DType::kF32;
  int64_t n = 0;
  int64_t k = 0;
  int64_t m = 0;
  float* y = nullptr;  // [n, m]
};

// Whether (isa, w_dtype) wants problem.x_bf16.
inline bool MatmulNeedsBf16X(MatmulIsa isa, DType w_dtype) {
  return isa == MatmulIsa::kMatmulIsaAvx512Bf16 && w_dtype == DType::kBF16;
}

// Computes y[:, m_begin:m_end) (every row of x against weight rows [m_begin, m_end)) on `isa`,
// which must be supported. Disjoint column ranges may run on different threads at once.
void MatmulColumns(MatmulIsa isa, const MatmulProblem& problem, int64_t m_begin, int64_t m_end);

// dst[i] = bf16(src[i]), rounded to nearest even, for i < count.
void RoundToBf16(MatmulIsa isa, const float* src, uint16_t* dst, int64_t count);

}  // namespace zigzag::cpu
