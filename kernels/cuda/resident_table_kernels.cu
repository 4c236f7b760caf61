#include "kernels/cuda/resident_table_kernels.cuh"

namespace zigzag::cuda {
namespace {

__global__ void ScatterIntsKernel(const int32_t* dest, const int32_t* values, int32_t count,
                                  int32_t* table) {
  const int32_t i = static_cast<int32_t>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < count) table[dest[i]] = values[i];
}

}  // namespace

cudaError_t LaunchScatterInts(const int32_t* dest, const int32_t* values, int32_t count,
                              int32_t* table, cudaStream_t stream) {
  if (count <= 0) return cudaSuccess;
  constexpr int kThreads = 256;
  const int blocks = (count + kThreads - 1) / kThreads;
  ScatterIntsKernel<<<blocks, kThreads, 0, stream>>>(dest, values, count, table);
  return cudaGetLastError();
}

}  // namespace zigzag::cuda
