// The AVX-512 attention kernels (16 floats per vector, masked loads for head-dim tails).
// attention_dispatch.cc uses them only on CPUs that report AVX-512F, AVX2 and FMA. Why a target
// pragma and not -mavx512f for the file: see attention_avx2.cc.
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12's avx512fintrin.h builds _mm512_undefined_ps() from an uninitialised self-assignment,
// which -Wuninitialized reports from inside the header (intrinsics such as _mm512_roundscale_ps
// and _mm512_reduce_add_ps use it) when they are compiled under a target pragma. False positive.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/attention_isa.h"
#include "kernels/cpu/attention_kernels.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
#endif

namespace zigzag::cpu::attn {
namespace {

struct V {
  using Reg = __m512;
  static constexpr int64_t kLanes = 16;
  static constexpr int kKeyBlock = 4;  // scores: 4 keys x 4 row vectors = 16 accumulators
  static constexpr int kRowBlock = 4;
  static constexpr int kPvRows = 4;  // p V: 4 rows x 4 value vectors = 16 accumulators
  static constexpr int kPvVecs = 4;

  static Reg Zero() { return _mm512_setzero_ps(); }
  static Reg Set1(float x) { return _mm512_set1_ps(x); }
  static Reg Load(const float* p) { return _mm512_loadu_ps(p); }
  // The first n (< 16) floats; the rest read as 0 and are never touched in memory.
  static Reg LoadPartial(const float* p, int64_t n) {
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1u), p);
  }
  static void Store(float* p, Reg v) { _mm512_storeu_ps(p, v); }
  static Reg Fma(Reg a, Reg b, Reg c) { return _mm512_fmadd_ps(a, b, c); }
  static Reg Add(Reg a, Reg b) { return _mm512_add_ps(a, b); }
  static Reg Sub(Reg a, Reg b) { return _mm512_sub_ps(a, b); }
  static Reg Mul(Reg a, Reg b) { return _mm512_mul_ps(a, b); }
  static Reg Max(Reg a, Reg b) { return _mm512_max_ps(a, b); }
  static float ReduceAdd(Reg v) { return _mm512_reduce_add_ps(v); }
  static float ReduceMax(Reg v) { return _mm512_reduce_max_ps(v); }
  // exp(x): the AVX2 kernel's method (attention_avx2.cc), with 2^n applied by vscalefps.
  static Reg Exp(Reg x) {
    const Reg xc = _mm512_min_ps(_mm512_max_ps(x, Set1(-87.0f)), Set1(88.3f));
    const Reg n = _mm512_roundscale_ps(_mm512_mul_ps(xc, Set1(1.44269504088896341f)),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    Reg r = _mm512_fnmadd_ps(n, Set1(0.693359375f), xc);
    r = _mm512_fnmadd_ps(n, Set1(-2.12194440e-4f), r);
    Reg y = Set1(1.9875691500e-4f);
    y = Fma(y, r, Set1(1.3981999507e-3f));
    y = Fma(y, r, Set1(8.3334519073e-3f));
    y = Fma(y, r, Set1(4.1665795894e-2f));
    y = Fma(y, r, Set1(1.6666665459e-1f));
    y = Fma(y, r, Set1(5.0000001201e-1f));
    y = Fma(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, Set1(1.0f)));
    const Reg e = _mm512_scalef_ps(y, n);
    return _mm512_mask_mov_ps(e, _mm512_cmp_ps_mask(x, Set1(-87.0f), _CMP_LT_OQ), Zero());
  }
  // s where limits[i] >= key (the row sees the key), -inf elsewhere.
  static Reg MaskAbove(Reg s, const int32_t* limits, int32_t key) {
    const __mmask16 hidden =
        _mm512_cmplt_epi32_mask(_mm512_loadu_si512(limits), _mm512_set1_epi32(key));
    return _mm512_mask_mov_ps(s, hidden, Set1(-__builtin_inff()));
  }
  static Reg FiniteOrZero(Reg m) {
    return _mm512_mask_mov_ps(m, _mm512_cmp_ps_mask(m, Set1(-__builtin_inff()), _CMP_EQ_OQ),
                              Zero());
  }
};

#include "kernels/cpu/attention_kernels_impl.inc"

}  // namespace
}  // namespace zigzag::cpu::attn

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace zigzag::cpu::attn {
namespace {
constexpr AttentionKernels kKernels = {"avx512", &TileUnitImpl, &WindowRowImpl};
}  // namespace

const AttentionKernels& Avx512Kernels() { return kKernels; }

}  // namespace zigzag::cpu::attn
