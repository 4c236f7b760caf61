// The per-instruction-set matmul entry points behind matmul_kernels.h, each compiled in its own
// file with that set's compiler flags (kernels/cpu/CMakeLists.txt). Only matmul_kernels.cc calls
// them, and only after checking that the CPU has the instructions. Nothing else belongs here.
#pragma once

#include <cstdint>

#include "kernels/cpu/matmul_kernels.h"

namespace zigzag::cpu::isa {

// Columns [m_begin, m_end) of problem.y. use_dpbf16: bf16 weights times problem.x_bf16 with
// vdpbf16ps (AVX512_BF16) instead of converting the weights to float32 on load.
void MatmulColumnsAvx512(const MatmulProblem& problem, int64_t m_begin, int64_t m_end,
                         bool use_dpbf16);
void MatmulColumnsAvx2(const MatmulProblem& problem, int64_t m_begin, int64_t m_end);
void RoundToBf16Avx512Bf16(const float* src, uint16_t* dst, int64_t count);

}  // namespace zigzag::cpu::isa
