// The portable attention kernels (no SIMD beyond what the compiler's baseline gives): the
// fallback for CPUs without AVX2, and the reference the SIMD kernels are tested against. Its
// window rows reproduce the original reference loop bit for bit (attention_kernels_impl.inc).
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/attention_isa.h"
#include "kernels/cpu/attention_kernels.h"

namespace zigzag::cpu::attn {
namespace {

struct V {
  using Reg = float;
  static constexpr int64_t kLanes = 1;
  static constexpr int kKeyBlock = 4;
  static constexpr int kRowBlock = 4;
  static constexpr int kPvRows = 4;
  static constexpr int kPvVecs = 4;

  static Reg Zero() { return 0.0f; }
  static Reg Set1(float x) { return x; }
  static Reg Load(const float* p) { return *p; }
  static Reg LoadPartial(const float* p, int64_t n) { return n > 0 ? *p : 0.0f; }
  static void Store(float* p, Reg v) { *p = v; }
  static Reg Fma(Reg a, Reg b, Reg c) { return a * b + c; }
  static Reg Add(Reg a, Reg b) { return a + b; }
  static Reg Sub(Reg a, Reg b) { return a - b; }
  static Reg Mul(Reg a, Reg b) { return a * b; }
  static Reg Max(Reg a, Reg b) { return a < b ? b : a; }
  static float ReduceAdd(Reg v) { return v; }
  static float ReduceMax(Reg v) { return v; }
  static Reg Exp(Reg x) { return std::exp(x); }
  static Reg MaskAbove(Reg s, const int32_t* limits, int32_t key) {
    return limits[0] < key ? -__builtin_inff() : s;
  }
  static Reg FiniteOrZero(Reg m) { return m == -__builtin_inff() ? 0.0f : m; }
};

#include "kernels/cpu/attention_kernels_impl.inc"

constexpr AttentionKernels kKernels = {"scalar", &TileUnitImpl, &WindowRowImpl};

}  // namespace

const AttentionKernels& ScalarKernels() { return kKernels; }

}  // namespace zigzag::cpu::attn
