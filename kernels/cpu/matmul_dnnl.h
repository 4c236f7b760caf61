// oneDNN's matmul primitive for the CPU backend's many-row (prefill) matmuls, where it beats our
// register-tiled kernels (bench/results/2026-12-06-cpu-matmul.md): float32 weights, and bf16
// weights times x rounded to bf16 (AMX / AVX512_BF16 inside oneDNN). It owns the primitives, keyed
// by shape; it owns no threads: each call runs single-threaded on the caller's thread, so the
// backend's pool splits the weight rows exactly as for its own kernels. Built only with oneDNN
// (ZIGZAG_HAVE_DNNL); without it DnnlMatmulAvailable() is false and callers use matmul_kernels.h.
#pragma once

#include <cstdint>
#include <memory>

#include "kernels/cpu/matmul_kernels.h"

namespace zigzag::cpu {

// Whether this build has oneDNN.
bool DnnlMatmulAvailable();

class DnnlMatmul {
 public:
  DnnlMatmul();
  ~DnnlMatmul();
  DnnlMatmul(const DnnlMatmul&) = delete;
  DnnlMatmul& operator=(const DnnlMatmul&) = delete;

  // Whether it computes weights of `w_dtype` (f32 and bf16; bf16 reads problem.x_bf16).
  static bool Handles(DType w_dtype) { return w_dtype == DType::kF32 || w_dtype == DType::kBF16; }

  // y[:, m_begin:m_end) of `problem` on the calling thread. Disjoint ranges may run on different
  // threads at once. Returns false when oneDNN failed (it throws; the error is logged once); the
  // caller then computes the range itself.
  bool Columns(const MatmulProblem& problem, int64_t m_begin, int64_t m_end);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace zigzag::cpu
