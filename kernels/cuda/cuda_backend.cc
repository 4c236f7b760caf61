// CudaBackend creation, device memory and host <-> device copies (the ops are in cuda_ops.cc and
// cuda_attention.cc). Every CUDA and cuBLAS call is checked and becomes an absl::Status.
#include "kernels/cuda/cuda_backend.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"
#include "kernels/cuda/cuda_backend_impl.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/elementwise_kernels.cuh"
#include "spdlog/spdlog.h"

namespace zigzag {
namespace {

// The deleter of every tensor's storage. cudaFree waits for queued work that may still use the
// memory, so tensors can be dropped without synchronising first. It may run after the backend is
// gone and on another thread, so it selects the allocation's device itself.
void FreeDeviceMemory(void* ptr, int device) {
  int current = -1;
  const bool switch_device = cudaGetDevice(&current) == cudaSuccess && current != device;
  if (switch_device) (void)cudaSetDevice(device);
  const cudaError_t error = cudaFree(ptr);
  // At process exit the runtime may already be torn down (and spdlog with it): nothing to report.
  if (error == cudaErrorCudartUnloading) {
    (void)cudaGetLastError();
  } else if (error != cudaSuccess) {
    (void)cudaGetLastError();
    spdlog::error("cudaFree failed on CUDA device {}: {}", device, cudaGetErrorString(error));
  }
  if (switch_device) (void)cudaSetDevice(current);
}

}  // namespace

absl::Status CudaDeviceUsable() {
  int count = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) {
    (void)cudaGetLastError();
    return absl::FailedPreconditionError(absl::StrCat("no CUDA device: ", cudaGetErrorName(error),
                                                      " (", cudaGetErrorString(error), ")"));
  }
  if (count <= 0) {
    return absl::FailedPreconditionError("no CUDA device: cudaGetDeviceCount found 0 devices");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(int device, bool fp32) {
  ASSIGN_OR_RETURN(std::unique_ptr<CudaBackend> backend, CudaBackend::Create(device, fp32));
  return std::unique_ptr<Backend>(std::move(backend));
}

absl::StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(int device, bool fp32) {
  RETURN_IF_ERROR(CudaDeviceUsable());
  int count = 0;
  CUDA_RETURN_IF_ERROR(cudaGetDeviceCount(&count));
  if (device < 0 || device >= count) {
    return absl::FailedPreconditionError(
        absl::StrCat("CUDA device ", device, " does not exist: ", count, " device(s) are visible"));
  }
  cudaDeviceProp props;
  CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&props, device));
  if (props.major < 8) {
    return absl::FailedPreconditionError(absl::StrCat(
        "CUDA device ", device, " (", props.name, ") has compute capability ", props.major, ".",
        props.minor, "; the CUDA backend needs 8.0 or newer (bf16)"));
  }
  std::unique_ptr<CudaBackend> backend(new CudaBackend(device, fp32 ? DType::kF32 : DType::kBF16));
  RETURN_IF_ERROR(backend->Activate());
  if (const cudaError_t probe = cuda::ProbeKernelImage(); probe != cudaSuccess) {
    (void)cudaGetLastError();
    return absl::FailedPreconditionError(
        absl::StrCat("CUDA device ", device, " (", props.name, ", sm_", props.major, props.minor,
                     ") cannot run this build's kernels: ", cudaGetErrorName(probe),
                     "; rebuild with -DZIGZAG_CUDA_ARCHITECTURES=", props.major, props.minor));
  }
  CUDA_RETURN_IF_ERROR(
      cudaDeviceGetAttribute(&backend->num_sms_, cudaDevAttrMultiProcessorCount, device));
  CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&backend->stream_, cudaStreamNonBlocking));
  CUBLAS_RETURN_IF_ERROR(cublasCreate(&backend->cublas_));
  CUBLAS_RETURN_IF_ERROR(cublasSetStream(backend->cublas_, backend->stream_));
  // Default math with CUBLAS_COMPUTE_32F never downgrades fp32 GEMMs to TF32, which the fp32 mode
  // (compared with the CPU backend to 1e-4) relies on.
  CUBLAS_RETURN_IF_ERROR(cublasSetMathMode(backend->cublas_, CUBLAS_DEFAULT_MATH));
  spdlog::info("backend: CUDA device {} ({}, sm_{}{}, {} MiB), {} weights and activations", device,
               props.name, props.major, props.minor, props.totalGlobalMem >> 20,
               DTypeName(backend->dtype_));
  return backend;
}

CudaBackend::~CudaBackend() {
  if (!Activate().ok()) return;  // no usable device: nothing was created on it
  if (stream_ != nullptr) (void)cudaStreamSynchronize(stream_);
  if (scratch_ != nullptr) (void)cudaFree(scratch_);
  if (workspace_ != nullptr) (void)cudaFree(workspace_);
  if (plan_buffer_ != nullptr) (void)cudaFree(plan_buffer_);
  if (resident_table_ != nullptr) (void)cudaFree(resident_table_);
  if (cublas_ != nullptr) (void)cublasDestroy(cublas_);
  if (stream_ != nullptr) (void)cudaStreamDestroy(stream_);
  (void)cudaGetLastError();
}

absl::Status CudaBackend::Activate() {
  int current = -1;
  CUDA_RETURN_IF_ERROR(cudaGetDevice(&current));
  if (current != device_) CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
  return absl::OkStatus();
}

absl::StatusOr<void*> CudaBackend::UploadMetadata(const void* host, size_t bytes) {
  if (bytes > scratch_bytes_) {
    const size_t capacity = std::max({bytes, 2 * scratch_bytes_, size_t{64} << 10});
    if (scratch_ != nullptr) {
      CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));  // earlier ops may still read it
      CUDA_RETURN_IF_ERROR(cudaFree(scratch_));
      scratch_ = nullptr;
      scratch_bytes_ = 0;
    }
    CUDA_RETURN_IF_ERROR(cudaMalloc(&scratch_, capacity));
    scratch_bytes_ = capacity;
  }
  // From pageable host memory the copy stages `host` before returning, so the caller may free it.
  if (bytes > 0) {
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(scratch_, host, bytes, cudaMemcpyHostToDevice, stream_));
    CountHostToDevice(static_cast<int64_t>(bytes));
  }
  return scratch_;
}

absl::StatusOr<void*> CudaBackend::Workspace(size_t bytes) {
  if (bytes > workspace_bytes_) {
    const size_t capacity = std::max({bytes, 2 * workspace_bytes_, size_t{1} << 20});
    if (workspace_ != nullptr) {
      CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));  // earlier ops may still use it
      CUDA_RETURN_IF_ERROR(cudaFree(workspace_));
      workspace_ = nullptr;
      workspace_bytes_ = 0;
    }
    CUDA_RETURN_IF_ERROR(cudaMalloc(&workspace_, capacity));
    workspace_bytes_ = capacity;
  }
  return workspace_;
}

absl::StatusOr<Tensor> CudaBackend::Allocate(DType dtype, const Shape& shape) {
  int64_t numel = 1;
  for (int64_t dim : shape) {
    if (dim < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("Allocate: shape ", ShapeToString(shape), " has a negative dimension"));
    }
    if (dim != 0 && numel > std::numeric_limits<int64_t>::max() / 8 / dim) {
      return absl::ResourceExhaustedError(
          absl::StrCat("Allocate: shape ", ShapeToString(shape), " is too large to address"));
    }
    numel *= dim;
  }
  RETURN_IF_ERROR(Activate());
  // cudaMalloc(0) gives no pointer; one byte keeps every allocated tensor defined.
  const size_t bytes = std::max<size_t>(static_cast<size_t>(numel) * DTypeSize(dtype), 1);
  void* ptr = nullptr;
  const cudaError_t error = cudaMalloc(&ptr, bytes);
  if (error == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    size_t free_bytes = 0;
    size_t total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) (void)cudaGetLastError();
    return absl::ResourceExhaustedError(
        absl::StrCat("Allocate: out of CUDA memory for ", DTypeName(dtype), ShapeToString(shape),
                     " (", bytes, " bytes) on device ", device_, ", ", free_bytes >> 20, " of ",
                     total_bytes >> 20, " MiB free"));
  }
  CUDA_RETURN_IF_ERROR(error);
  const int device = device_;
  std::shared_ptr<void> storage(ptr, [device](void* p) { FreeDeviceMemory(p, device); });
  return Tensor(std::move(storage), ptr, dtype, shape, Device::kCuda);
}

absl::StatusOr<Tensor> CudaBackend::AllocateZeros(DType dtype, const Shape& shape) {
  ASSIGN_OR_RETURN(Tensor tensor, Allocate(dtype, shape));
  if (tensor.bytes() > 0) {
    CUDA_RETURN_IF_ERROR(cudaMemsetAsync(tensor.data(), 0, tensor.bytes(), stream_));
  }
  return tensor;
}

absl::Status CudaBackend::CopyToDevice(const void* host, DType host_dtype, Tensor* dst) {
  if (dst == nullptr) return absl::InvalidArgumentError("CopyToDevice: dst is null");
  if (!dst->defined() || dst->device() != Device::kCuda) {
    return absl::InvalidArgumentError(absl::StrCat("CopyToDevice: dst is ", dst->DebugString(),
                                                   ", expected a tensor in CUDA memory"));
  }
  const size_t count = static_cast<size_t>(dst->numel());
  if (count == 0) return absl::OkStatus();
  if (host == nullptr) return absl::InvalidArgumentError("CopyToDevice: host is null");
  const bool both_float = IsFloatDType(host_dtype) && IsFloatDType(dst->dtype());
  if (host_dtype != dst->dtype() && !both_float) {
    return absl::InvalidArgumentError(
        absl::StrCat("CopyToDevice: cannot convert host ", DTypeName(host_dtype), " into ",
                     dst->DebugString(), " (i32 copies only into i32)"));
  }
  RETURN_IF_ERROR(Activate());
  const void* source = host;
  std::vector<uint8_t> staging;
  if (host_dtype != dst->dtype()) {
    staging.resize(dst->bytes());
    for (size_t i = 0; i < count; ++i) {
      StoreFromFloat(LoadAsFloat(host, host_dtype, i), dst->dtype(), staging.data(), i);
    }
    source = staging.data();
  }
  CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(dst->data(), source, dst->bytes(), cudaMemcpyHostToDevice, stream_));
  // Synchronous on purpose: the caller's buffer (and `staging`) may be freed on return.
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

absl::Status CudaBackend::CopyToHost(const Tensor& src, std::span<float> host) {
  if (!src.defined() || src.device() != Device::kCuda || !IsFloatDType(src.dtype())) {
    return absl::InvalidArgumentError(absl::StrCat("CopyToHost: src is ", src.DebugString(),
                                                   ", expected a float tensor in CUDA memory"));
  }
  const size_t count = static_cast<size_t>(src.numel());
  if (host.size() != count) {
    return absl::InvalidArgumentError(absl::StrCat("CopyToHost: host has ", host.size(),
                                                   " floats but src ", src.DebugString(), " has ",
                                                   count, " elements"));
  }
  if (count == 0) return absl::OkStatus();
  RETURN_IF_ERROR(Activate());
  if (src.dtype() == DType::kF32) {
    CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(host.data(), src.data(), src.bytes(), cudaMemcpyDeviceToHost, stream_));
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    return absl::OkStatus();
  }
  std::vector<uint8_t> staging(src.bytes());
  CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(staging.data(), src.data(), src.bytes(), cudaMemcpyDeviceToHost, stream_));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  for (size_t i = 0; i < count; ++i) host[i] = LoadAsFloat(staging.data(), src.dtype(), i);
  return absl::OkStatus();
}

absl::Status CudaBackend::Synchronize() {
  RETURN_IF_ERROR(Activate());
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

}  // namespace zigzag
