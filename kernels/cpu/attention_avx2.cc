// The AVX2 + FMA attention kernels (8 floats per vector). attention_dispatch.cc uses them only on
// CPUs that report AVX2 and FMA.
//
// Why a target pragma around the kernels instead of -mavx2 for the whole file: with a per-file
// flag, every inline function and template the file instantiates from a header (std::, absl::)
// is also compiled with AVX2, and the linker may keep that copy for the whole program, which then
// faults on a CPU without AVX2. Inside the pragma region there is only this file's own code (in an
// anonymous namespace); the headers are included before it.
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/attention_isa.h"
#include "kernels/cpu/attention_kernels.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

namespace zigzag::cpu::attn {
namespace {

struct V {
  using Reg = __m256;
  static constexpr int64_t kLanes = 8;
  static constexpr int kKeyBlock = 4;  // scores: 4 keys x 2 row vectors = 8 accumulators
  static constexpr int kRowBlock = 2;
  static constexpr int kPvRows = 2;  // p V: 2 rows x 4 value vectors = 8 accumulators
  static constexpr int kPvVecs = 4;

  static Reg Zero() { return _mm256_setzero_ps(); }
  static Reg Set1(float x) { return _mm256_set1_ps(x); }
  static Reg Load(const float* p) { return _mm256_loadu_ps(p); }
  static __m256i FirstLanes(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  // The first n (< 8) floats; the rest read as 0 and are never touched in memory.
  static Reg LoadPartial(const float* p, int64_t n) { return _mm256_maskload_ps(p, FirstLanes(n)); }
  static void Store(float* p, Reg v) { _mm256_storeu_ps(p, v); }
  static Reg Fma(Reg a, Reg b, Reg c) { return _mm256_fmadd_ps(a, b, c); }
  static Reg Add(Reg a, Reg b) { return _mm256_add_ps(a, b); }
  static Reg Sub(Reg a, Reg b) { return _mm256_sub_ps(a, b); }
  static Reg Mul(Reg a, Reg b) { return _mm256_mul_ps(a, b); }
  static Reg Max(Reg a, Reg b) { return _mm256_max_ps(a, b); }
  static float ReduceAdd(Reg v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
  }
  static float ReduceMax(Reg v) {
    __m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_max_ps(x, _mm_movehl_ps(x, x));
    x = _mm_max_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
  }
  // exp(x) to about 2 ulp: x = n ln2 + r with |r| <= ln2 / 2, exp(r) by the Cephes expf
  // polynomial, times 2^n built in the exponent bits. Below -87 (exp < 1.7e-38, and -inf for masked
  // keys) the result is exactly 0.
  static Reg Exp(Reg x) {
    const Reg xc = _mm256_min_ps(_mm256_max_ps(x, Set1(-87.0f)), Set1(88.3f));
    const Reg n = _mm256_round_ps(_mm256_mul_ps(xc, Set1(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    Reg r = _mm256_fnmadd_ps(n, Set1(0.693359375f), xc);
    r = _mm256_fnmadd_ps(n, Set1(-2.12194440e-4f), r);
    Reg y = Set1(1.9875691500e-4f);
    y = Fma(y, r, Set1(1.3981999507e-3f));
    y = Fma(y, r, Set1(8.3334519073e-3f));
    y = Fma(y, r, Set1(4.1665795894e-2f));
    y = Fma(y, r, Set1(1.6666665459e-1f));
    y = Fma(y, r, Set1(5.0000001201e-1f));
    y = Fma(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, Set1(1.0f)));
    const __m256i bits =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    const Reg e = _mm256_mul_ps(y, _mm256_castsi256_ps(bits));
    return _mm256_blendv_ps(e, Zero(), _mm256_cmp_ps(x, Set1(-87.0f), _CMP_LT_OQ));
  }
  // s where limits[i] >= key (the row sees the key), -inf elsewhere.
  static Reg MaskAbove(Reg s, const int32_t* limits, int32_t key) {
    const __m256i lim = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(limits));
    const __m256i hidden = _mm256_cmpgt_epi32(_mm256_set1_epi32(key), lim);
    return _mm256_blendv_ps(s, Set1(-__builtin_inff()), _mm256_castsi256_ps(hidden));
  }
  static Reg FiniteOrZero(Reg m) {
    return _mm256_blendv_ps(m, Zero(), _mm256_cmp_ps(m, Set1(-__builtin_inff()), _CMP_EQ_OQ));
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
constexpr AttentionKernels kKernels = {"avx2", &TileUnitImpl, &WindowRowImpl};
}  // namespace

const AttentionKernels& Avx2Kernels() { return kKernels; }

}  // namespace zigzag::cpu::attn
