// The per-instruction-set attention kernel tables, each defined in its own file
// (attention_scalar.cc, attention_avx2.cc, attention_avx512.cc). Only attention_dispatch.cc calls
// these, and it hands out an AVX2 or AVX-512 table only after checking that the CPU has the
// instructions. Nothing else belongs here.
#pragma once

#include "kernels/cpu/attention_kernels.h"

namespace zigzag::cpu::attn {

const AttentionKernels& ScalarKernels();
const AttentionKernels& Avx2Kernels();    // AVX2 + FMA
const AttentionKernels& Avx512Kernels();  // AVX-512F (+ AVX2, FMA)

}  // namespace zigzag::cpu::attn
