// Which attention kernels the CPU backend runs: the widest instruction set this CPU supports
// (AVX-512, else AVX2 + FMA, else the scalar kernels), checked at run time, so one binary runs on
// every x86-64 CPU. Tests and benchmarks can force a narrower set and the split-K count; nothing
// else should. It computes nothing itself.
#pragma once

#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "kernels/cpu/attention_kernels.h"

namespace zigzag::cpu::attn {

enum class AttentionIsa { kScalar, kAvx2, kAvx512 };

const char* AttentionIsaName(AttentionIsa isa);
bool CpuSupports(AttentionIsa isa);
AttentionIsa BestSupportedIsa();

// Process-wide overrides for tests and benchmarks. Set them only while no Attention call runs.
struct AttentionOverrides {
  std::optional<AttentionIsa> isa;  // unset: BestSupportedIsa()
  // > 0: every single-query stream without window mass is cut into this many key chunks (capped
  // at its length) and merged, whatever its length and the thread count; 0: the automatic rule
  // (attention_runner.cc).
  int32_t decode_splits = 0;
};

// FailedPrecondition when `overrides.isa` is not supported by this CPU (the old overrides stay);
// InvalidArgument for a negative decode_splits.
absl::Status SetAttentionOverrides(const AttentionOverrides& overrides);
AttentionOverrides GetAttentionOverrides();

// The kernels of the overridden ISA, else of BestSupportedIsa().
const AttentionKernels& ActiveKernels();

}  // namespace zigzag::cpu::attn
