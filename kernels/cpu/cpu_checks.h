// Argument checks shared by the CPU backend's ops: every failure is InvalidArgument with a
// message "<Op>: <argument> ..." that names the op and the argument. Internal to kernels/cpu;
// it computes nothing.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/tensor.h"

namespace zigzag::cpu {

// InvalidArgument "<op>: <argument> <details...>".
// `argument` may be a path into a struct, e.g. "sequences[2].kv_len".
template <typename... Details>
absl::Status ArgError(const char* op, const std::string& argument, const Details&... details) {
  return absl::InvalidArgumentError(absl::StrCat(op, ": ", argument, " ", details...));
}

// `tensor` is defined, lives in host memory, is float32 and has rank layout's rank. `layout`
// spells the expected shape for the message, e.g. "[N, K]".
absl::Status CheckF32(const char* op, const char* argument, const Tensor& tensor, int rank,
                      const char* layout);

// CheckF32 for an output argument that must also be non-null.
absl::Status CheckF32Output(const char* op, const char* argument, const Tensor* tensor, int rank,
                            const char* layout);

// The tensor's shape equals `expected`.
absl::Status CheckShape(const char* op, const char* argument, const Tensor& tensor,
                        const Shape& expected);

// True when the two tensors' bytes overlap in memory.
bool Overlaps(const Tensor& a, const Tensor& b);

}  // namespace zigzag::cpu
