// The loop nest shared by the SIMD matmul kernels: walks columns [m_begin, m_end) of y in tiles of
// up to MaxRN rows of x by MaxRM weight rows, calling Kernel::Tile<RN, RM>(n0, m0) with RN and RM
// fixed at compile time so that a tile's accumulators live in registers. It does no arithmetic.
//
// Header-only and free of library calls on purpose: it is compiled into each instruction set's
// file with that file's flags, and every Kernel type lives in an anonymous namespace there, so no
// AVX-512 instantiation can be picked by the linker for code that runs on a CPU without it.
#pragma once

#include <cstdint>

namespace zigzag::cpu::isa {

// Weight rows per block: a block (kBlockBytes of weights) stays in L2 while every row tile of x
// passes over it, so prefill reads each weight from memory once per thread. For decode (one row
// tile) the blocking changes nothing: every weight row is streamed once.
inline constexpr int64_t kBlockBytes = 256 * 1024;

template <int RN, int RM, class Kernel>
inline void DispatchRm(const Kernel& kernel, int rm, int64_t n0, int64_t m0) {
  if constexpr (RM >= 1) {
    if (rm == RM) {
      kernel.template Tile<RN, RM>(n0, m0);
      return;
    }
    DispatchRm<RN, RM - 1>(kernel, rm, n0, m0);
  }
}

template <int RN, int MaxRM, class Kernel>
inline void DispatchRn(const Kernel& kernel, int rn, int rm, int64_t n0, int64_t m0) {
  if constexpr (RN >= 1) {
    if (rn == RN) {
      DispatchRm<RN, MaxRM>(kernel, rm, n0, m0);
      return;
    }
    DispatchRn<RN - 1, MaxRM>(kernel, rn, rm, n0, m0);
  }
}

template <int MaxRN, int MaxRM, class Kernel>
inline void ForEachTile(const Kernel& kernel, int64_t n, int64_t weight_row_bytes, int64_t m_begin,
                        int64_t m_end) {
  int64_t block = kBlockBytes / (weight_row_bytes > 0 ? weight_row_bytes : 1) / MaxRM * MaxRM;
  if (block < MaxRM) block = MaxRM;
  for (int64_t mb = m_begin; mb < m_end; mb += block) {
    const int64_t me = m_end - mb > block ? mb + block : m_end;
    for (int64_t n0 = 0; n0 < n; n0 += MaxRN) {
      const int rn = n - n0 < MaxRN ? static_cast<int>(n - n0) : MaxRN;
      for (int64_t m0 = mb; m0 < me; m0 += MaxRM) {
        const int rm = me - m0 < MaxRM ? static_cast<int>(me - m0) : MaxRM;
        DispatchRn<MaxRN, MaxRM>(kernel, rn, rm, n0, m0);
      }
    }
  }
}

}  // namespace zigzag::cpu::isa
