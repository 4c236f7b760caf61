// AVX2 matmul tiles (compiled with -mavx2 -mfma -mf16c; called only on CPUs that have them), for
// machines without AVX-512. Same scheme as matmul_avx512.cc with 8 floats a vector; bf16 and f16
// weights are converted to float32 on load. See matmul_isa.h.
// GCC 12's intrinsics headers start vectors from _mm512_undefined_*(), which -Wuninitialized
// flags wherever they are inlined (GCC bug 105593, fixed in GCC 13); the warning is in the header.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif

#include <cstdint>
#include <cstring>

#include "kernels/cpu/matmul_isa.h"
#include "kernels/cpu/matmul_tiling.h"

namespace zigzag::cpu::isa {
namespace {

// Weight loaders: 8 weights as float32, and one (for the K tail).
struct LoadF32 {
  using T = float;
  static __m256 Load(const float* p) { return _mm256_loadu_ps(p); }
  static float One(const float* p) { return *p; }
};
struct LoadBf16 {
  using T = uint16_t;
  static __m256 Load(const uint16_t* p) {
    const __m128i bits = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bits), 16));
  }
  static float One(const uint16_t* p) {
    const uint32_t wide = static_cast<uint32_t>(*p) << 16;
    float out;
    std::memcpy(&out, &wide, sizeof(out));
    return out;
  }
};
struct LoadF16 {
  using T = uint16_t;
  static __m256 Load(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static float One(const uint16_t* p) { return _cvtsh_ss(*p); }
};

float HorizontalSum(__m256 v) {
  const __m128 quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
  return _mm_cvtss_f32(_mm_add_ss(pair, _mm_movehdup_ps(pair)));
}

template <class Loader>
struct FloatTiles {
  const float* x;
  const typename Loader::T* w;
  float* y;
  int64_t k;
  int64_t m;

  template <int RN, int RM>
  void Tile(int64_t n0, int64_t m0) const {
    const float* xr = x + n0 * k;
    const typename Loader::T* wr = w + m0 * k;
    __m256 acc[RN][RM];
#pragma GCC unroll 16
    for (int r = 0; r < RN; ++r)
#pragma GCC unroll 16
      for (int c = 0; c < RM; ++c) acc[r][c] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) {
      __m256 wv[RM];
#pragma GCC unroll 16
      for (int c = 0; c < RM; ++c) wv[c] = Loader::Load(wr + c * k + i);
#pragma GCC unroll 16
      for (int r = 0; r < RN; ++r) {
        const __m256 xv = _mm256_loadu_ps(xr + r * k + i);
#pragma GCC unroll 16
        for (int c = 0; c < RM; ++c) acc[r][c] = _mm256_fmadd_ps(xv, wv[c], acc[r][c]);
      }
    }
#pragma GCC unroll 16
    for (int r = 0; r < RN; ++r) {
#pragma GCC unroll 16
      for (int c = 0; c < RM; ++c) {
        float sum = HorizontalSum(acc[r][c]);
        for (int64_t j = i; j < k; ++j) sum += xr[r * k + j] * Loader::One(wr + c * k + j);
        y[(n0 + r) * m + m0 + c] = sum;
      }
    }
  }
};

// 4 x 3 tiles: 12 accumulators + 3 weight vectors + 1 x vector = AVX2's 16 registers.
constexpr int kMaxRn = 4;
constexpr int kMaxRm = 3;

template <class Loader>
void RunFloat(const MatmulProblem& p, int64_t m_begin, int64_t m_end) {
  const FloatTiles<Loader> tiles{p.x, static_cast<const typename Loader::T*>(p.w), p.y, p.k, p.m};
  ForEachTile<kMaxRn, kMaxRm>(tiles, p.n, p.k * static_cast<int64_t>(sizeof(typename Loader::T)),
                              m_begin, m_end);
}

}  // namespace

void MatmulColumnsAvx2(const MatmulProblem& p, int64_t m_begin, int64_t m_end) {
  switch (p.w_dtype) {
    case DType::kBF16:
      RunFloat<LoadBf16>(p, m_begin, m_end);
      return;
    case DType::kF16:
      RunFloat<LoadF16>(p, m_begin, m_end);
      return;
    case DType::kF32:
    case DType::kI32:  // not reached: the backend passes float weights only
      RunFloat<LoadF32>(p, m_begin, m_end);
      return;
  }
}

}  // namespace zigzag::cpu::isa
