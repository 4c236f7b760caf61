#include "kernels/cpu/matmul_kernels.h"

#include <cpuid.h>

#include "kernels/cpu/matmul_isa.h"

namespace zigzag::cpu {
namespace {

// The reference path: one dot product per output, weights converted one at a time, float32 sums.
void MatmulColumnsScalar(const MatmulProblem& p, int64_t m_begin, int64_t m_end) {
  for (int64_t row = 0; row < p.n; ++row) {
    const float* xr = p.x + row * p.k;
    for (int64_t col = m_begin; col < m_end; ++col) {
      const int64_t base = col * p.k;
      float sum = 0.0f;
      for (int64_t i = 0; i < p.k; ++i) sum += xr[i] * LoadAsFloat(p.w, p.w_dtype, base + i);
      p.y[row * p.m + col] = sum;
    }
  }
}

// F16C from CPUID leaf 1 (ECX bit 29): clang 14's __builtin_cpu_supports does not know "f16c".
// Its state is the AVX state, which the avx2/avx512 checks below already require of the OS.
bool CpuHasF16c() {
  unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
}

MatmulIsa DetectBestIsa() {
  __builtin_cpu_init();
  // AVX-512 state must also be enabled by the OS; __builtin_cpu_supports checks XCR0 for it.
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("fma") && CpuHasF16c();
  if (avx512 && __builtin_cpu_supports("avx512bf16")) return MatmulIsa::kMatmulIsaAvx512Bf16;
  if (avx512) return MatmulIsa::kMatmulIsaAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && CpuHasF16c()) {
    return MatmulIsa::kMatmulIsaAvx2;
  }
  return MatmulIsa::kMatmulIsaScalar;
}

}  // namespace

const char* MatmulIsaName(MatmulIsa isa) {
  switch (isa) {
    case MatmulIsa::kMatmulIsaScalar:
      return "scalar";
    case MatmulIsa::kMatmulIsaAvx2:
      return "avx2";
    case MatmulIsa::kMatmulIsaAvx512:
      return "avx512";
    case MatmulIsa::kMatmulIsaAvx512Bf16:
      return "avx512_bf16";
  }
  return "?";
}

MatmulIsa BestMatmulIsa() {
  static const MatmulIsa best = DetectBestIsa();
  return best;
}

bool MatmulIsaSupported(MatmulIsa isa) { return isa <= BestMatmulIsa(); }

void MatmulColumns(MatmulIsa isa, const MatmulProblem& problem, int64_t m_begin, int64_t m_end) {
  switch (isa) {
    case MatmulIsa::kMatmulIsaAvx512Bf16:
      isa::MatmulColumnsAvx512(problem, m_begin, m_end, problem.w_dtype == DType::kBF16);
      return;
    case MatmulIsa::kMatmulIsaAvx512:
      isa::MatmulColumnsAvx512(problem, m_begin, m_end, false);
      return;
    case MatmulIsa::kMatmulIsaAvx2:
      isa::MatmulColumnsAvx2(problem, m_begin, m_end);
      return;
    case MatmulIsa::kMatmulIsaScalar:
      break;
  }
  MatmulColumnsScalar(problem, m_begin, m_end);
}

void RoundToBf16(MatmulIsa isa, const float* src, uint16_t* dst, int64_t count) {
  if (isa == MatmulIsa::kMatmulIsaAvx512Bf16) {
    isa::RoundToBf16Avx512Bf16(src, dst, count);
    return;
  }
  for (int64_t i = 0; i < count; ++i) dst[i] = FloatToBF16(src[i]);
}

}  // namespace zigzag::cpu
