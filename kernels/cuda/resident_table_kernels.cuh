// Launcher for the resident block table's scatter: a planned step's changed block-list entries
// land in the persistent device table (docs/architecture.md, "How block tables reach the
// device"). Plain host declaration (includable from .cc); the kernel lives in
// resident_table_kernels.cu. The caller (cuda_step.cc) checks every destination.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace zigzag::cuda {

// table[dest[i]] = values[i] for i < count. dest and values: device memory, dest in range.
cudaError_t LaunchScatterInts(const int32_t* dest, const int32_t* values, int32_t count,
                              int32_t* table, cudaStream_t stream);

}  // namespace zigzag::cuda
