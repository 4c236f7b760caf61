// AVX-512 matmul tiles (compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16
// -mfma -mf16c; called only on CPUs that have them). See matmul_isa.h.
//
// Each tile keeps RN x RM accumulators of 16 floats and walks K once: per step it loads RM weight
// vectors and RN x vectors and does RN * RM FMAs, then reduces each accumulator horizontally. Both
// operands are K-contiguous (w is [M, K]), so no packing is needed. vdpbf16ps multiplies pairs of
// bf16 and adds both products into one float lane; pairing neighbours along K in both operands
// keeps that a dot product, so it drops in with the same horizontal sum at the end.
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

#include "kernels/cpu/matmul_isa.h"
#include "kernels/cpu/matmul_tiling.h"

namespace zigzag::cpu::isa {
namespace {

// Weight loaders: 16 weights (or the first `count` < 16, the rest zero) as float32.
struct LoadF32 {
  using T = float;
  static __m512 Load(const float* p) { return _mm512_loadu_ps(p); }
  static __m512 LoadTail(const float* p, __mmask16 mask) { return _mm512_maskz_loadu_ps(mask, p); }
};
struct LoadBf16 {
  using T = uint16_t;
  static __m512 Widen(__m256i bits) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16));
  }
  static __m512 Load(const uint16_t* p) {
    return Widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static __m512 LoadTail(const uint16_t* p, __mmask16 mask) {
    return Widen(_mm256_maskz_loadu_epi16(mask, p));
  }
};
struct LoadF16 {
  using T = uint16_t;
  static __m512 Load(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static __m512 LoadTail(const uint16_t* p, __mmask16 mask) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, p));
  }
};

// Float32 x times weights of Loader's type, converted on load.
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
    __m512 acc[RN][RM];
#pragma GCC unroll 16
    for (int r = 0; r < RN; ++r)
#pragma GCC unroll 16
      for (int c = 0; c < RM; ++c) acc[r][c] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) {
      __m512 wv[RM];
#pragma GCC unroll 16
      for (int c = 0; c < RM; ++c) wv[c] = Loader::Load(wr + c * k + i);
#pragma GCC unroll 16
      for (int r = 0; r < RN; ++r) {
        const __m512 xv = _mm512_loadu_ps(xr + r * k + i);
#pragma GCC unroll 16
        for (int c = 0; c < RM; ++c) acc[r][c] = _mm512_fmadd_ps(xv, wv[c], acc[r][c]);
      }
    }
    if (i < k) {
      const __mmask16 mask = static_cast<__mmask16>((1u << (k - i)) - 1u);
      __m512 wv[RM];
#pragma GCC unroll 16
      for (int c = 0; c < RM; ++c) wv[c] = Loader::LoadTail(wr + c * k + i, mask);
#pragma GCC unroll 16
      for (int r = 0; r < RN; ++r) {
        const __m512 xv = _mm512_maskz_loadu_ps(mask, xr + r * k + i);
#pragma GCC unroll 16
        for (int c = 0; c < RM; ++c) acc[r][c] = _mm512_fmadd_ps(xv, wv[c], acc[r][c]);
      }
    }
#pragma GCC unroll 16
    for (int r = 0; r < RN; ++r)
#pragma GCC unroll 16
      for (int c = 0; c < RM; ++c) y[(n0 + r) * m + m0 + c] = _mm512_reduce_add_ps(acc[r][c]);
  }
};

// bf16 x (already rounded) times bf16 weights, 32 products per vdpbf16ps.
struct DpBf16Tiles {
  const uint16_t* x;
  const uint16_t* w;
  float* y;
  int64_t k;
  int64_t m;

  static __m512bh Load(const uint16_t* p) { return (__m512bh)_mm512_loadu_si512(p); }
  static __m512bh LoadTail(const uint16_t* p, __mmask32 mask) {
    return (__m512bh)_mm512_maskz_loadu_epi16(mask, p);
  }

  template <int RN, int RM>
  void Tile(int64_t n0, int64_t m0) const {
    const uint16_t* xr = x + n0 * k;
    const uint16_t* wr = w + m0 * k;
    __m512 acc[RN][RM];
#pragma GCC unroll 16
    for (int r = 0; r < RN; ++r)
#pragma GCC unroll 16
      for (int c = 0; c < RM; ++c) acc[r][c] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= k; i += 32) {
      __m512bh wv[RM];
#pragma GCC unroll 16
      for (int c = 0; c < RM; ++c) wv[c] = Load(wr + c * k + i);
#pragma GCC unroll 16
      for (int r = 0; r < RN; ++r) {
        const __m512bh xv = Load(xr + r * k + i);
#pragma GCC unroll 16
        for (int c = 0; c < RM; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], xv, wv[c]);
      }
    }
    if (i < k) {
      const __mmask32 mask = static_cast<__mmask32>((uint64_t{1} << (k - i)) - 1u);
      __m512bh wv[RM];
#pragma GCC unroll 16
      for (int c = 0; c < RM; ++c) wv[c] = LoadTail(wr + c * k + i, mask);
#pragma GCC unroll 16
      for (int r = 0; r < RN; ++r) {
        const __m512bh xv = LoadTail(xr + r * k + i, mask);
#pragma GCC unroll 16
        for (int c = 0; c < RM; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], xv, wv[c]);
      }
    }
#pragma GCC unroll 16
    for (int r = 0; r < RN; ++r)
#pragma GCC unroll 16
      for (int c = 0; c < RM; ++c) y[(n0 + r) * m + m0 + c] = _mm512_reduce_add_ps(acc[r][c]);
  }
};

// 4 x 4 tiles: 16 accumulators + 4 weight vectors + 1 x vector of AVX-512's 32 registers.
constexpr int kMaxRn = 4;
constexpr int kMaxRm = 4;

template <class Loader>
void RunFloat(const MatmulProblem& p, int64_t m_begin, int64_t m_end) {
  const FloatTiles<Loader> tiles{p.x, static_cast<const typename Loader::T*>(p.w), p.y, p.k, p.m};
  ForEachTile<kMaxRn, kMaxRm>(tiles, p.n, p.k * static_cast<int64_t>(sizeof(typename Loader::T)),
                              m_begin, m_end);
}

}  // namespace

void MatmulColumnsAvx512(const MatmulProblem& p, int64_t m_begin, int64_t m_end, bool use_dpbf16) {
  switch (p.w_dtype) {
    case DType::kBF16:
      if (use_dpbf16) {
        const DpBf16Tiles tiles{p.x_bf16, static_cast<const uint16_t*>(p.w), p.y, p.k, p.m};
        ForEachTile<kMaxRn, kMaxRm>(tiles, p.n, p.k * 2, m_begin, m_end);
      } else {
        RunFloat<LoadBf16>(p, m_begin, m_end);
      }
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

void RoundToBf16Avx512Bf16(const float* src, uint16_t* dst, int64_t count) {
  int64_t i = 0;
  for (; i + 16 <= count; i += 16) {
    const __m256bh packed = _mm512_cvtneps_pbh(_mm512_loadu_ps(src + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), (__m256i)packed);
  }
  if (i < count) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (count - i)) - 1u);
    const __m256bh packed = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask, src + i));
    _mm256_mask_storeu_epi16(dst + i, mask, (__m256i)packed);
  }
}

}  // namespace zigzag::cpu::isa
