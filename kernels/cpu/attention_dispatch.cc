#include "kernels/cpu/attention_dispatch.h"

#include <atomic>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/attention_isa.h"

namespace zigzag::cpu::attn {
namespace {

// -1: no override.
std::atomic<int> g_isa_override{-1};
std::atomic<int32_t> g_decode_splits{0};

const AttentionKernels& KernelsFor(AttentionIsa isa) {
  switch (isa) {
    case AttentionIsa::kAvx512:
      return Avx512Kernels();
    case AttentionIsa::kAvx2:
      return Avx2Kernels();
    case AttentionIsa::kScalar:
      break;
  }
  return ScalarKernels();
}

}  // namespace

const char* AttentionIsaName(AttentionIsa isa) {
  switch (isa) {
    case AttentionIsa::kAvx512:
      return "avx512";
    case AttentionIsa::kAvx2:
      return "avx2";
    case AttentionIsa::kScalar:
      break;
  }
  return "scalar";
}

bool CpuSupports(AttentionIsa isa) {
#if defined(__x86_64__) || defined(__i386__)
  // __builtin_cpu_supports also checks that the OS saves the wider registers (XCR0).
  switch (isa) {
    case AttentionIsa::kAvx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
             __builtin_cpu_supports("fma");
    case AttentionIsa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case AttentionIsa::kScalar:
      return true;
  }
  return false;
#else
  return isa == AttentionIsa::kScalar;
#endif
}

AttentionIsa BestSupportedIsa() {
  static const AttentionIsa best = [] {
    if (CpuSupports(AttentionIsa::kAvx512)) return AttentionIsa::kAvx512;
    if (CpuSupports(AttentionIsa::kAvx2)) return AttentionIsa::kAvx2;
    return AttentionIsa::kScalar;
  }();
  return best;
}

absl::Status SetAttentionOverrides(const AttentionOverrides& overrides) {
  if (overrides.isa && !CpuSupports(*overrides.isa)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "attention ISA ", AttentionIsaName(*overrides.isa), " is not supported by this CPU"));
  }
  if (overrides.decode_splits < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("decode_splits ", overrides.decode_splits, " must be >= 0"));
  }
  g_isa_override.store(overrides.isa ? static_cast<int>(*overrides.isa) : -1);
  g_decode_splits.store(overrides.decode_splits);
  return absl::OkStatus();
}

AttentionOverrides GetAttentionOverrides() {
  AttentionOverrides overrides;
  const int isa = g_isa_override.load();
  if (isa >= 0) overrides.isa = static_cast<AttentionIsa>(isa);
  overrides.decode_splits = g_decode_splits.load();
  return overrides;
}

const AttentionKernels& ActiveKernels() {
  const int isa = g_isa_override.load(std::memory_order_relaxed);
  return KernelsFor(isa >= 0 ? static_cast<AttentionIsa>(isa) : BestSupportedIsa());
}

}  // namespace zigzag::cpu::attn
