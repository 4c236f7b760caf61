#include "core/kv/kv_cache.h"

#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"
#include "spdlog/spdlog.h"

namespace zigzag {

int64_t KvLayout::bytes_per_block() const { return int64_t{block_size} * bytes_per_token_head(); }

int64_t KvLayout::bytes_per_token_layer() const {
  return int64_t{num_kv_heads} * bytes_per_token_head();
}

int64_t KvLayout::bytes_per_token_head() const {
  return 2 * int64_t{head_dim} * static_cast<int64_t>(DTypeSize(dtype));
}

int64_t KvLayout::BlocksForTokensAllStreams(int64_t tokens) const {
  return int64_t{num_layers} * num_kv_heads * BlockPool::BlocksForTokens(tokens, block_size);
}

namespace {

// Slots (block_id * block_size + offset) are int32, so the pool may hold at most this many blocks.
int64_t MaxBlocks(const KvLayout& layout) {
  return std::numeric_limits<int32_t>::max() / layout.block_size;
}

absl::Status ValidateLayout(Backend* backend, const KvLayout& layout) {
  if (backend == nullptr) return absl::InvalidArgumentError("KV cache: backend is null");
  const std::pair<const char*, int32_t> sizes[] = {{"num_layers", layout.num_layers},
                                                   {"num_kv_heads", layout.num_kv_heads},
                                                   {"head_dim", layout.head_dim},
                                                   {"block_size", layout.block_size}};
  for (const auto& [field, value] : sizes) {
    if (value <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("KV layout: ", field, " must be positive, got ", value));
    }
  }
  if (layout.dtype == DType::kI32) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV layout: dtype must be f32, bf16 or f16, got ", DTypeName(layout.dtype)));
  }
  return absl::OkStatus();
}

}  // namespace

KvCache::KvCache(const KvLayout& layout, int32_t num_blocks, Tensor pool_tensor)
    : layout_(layout), pool_(num_blocks, layout.block_size), pool_tensor_(std::move(pool_tensor)) {}

absl::StatusOr<std::unique_ptr<KvCache>> KvCache::Create(Backend* backend, const KvLayout& layout,
                                                         int32_t num_blocks) {
  RETURN_IF_ERROR(ValidateLayout(backend, layout));
  if (num_blocks <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV cache: num_blocks must be positive, got ", num_blocks));
  }
  if (num_blocks > MaxBlocks(layout)) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV cache: num_blocks ", num_blocks, " of block_size ", layout.block_size,
                     " exceeds the int32 slot range (at most ", MaxBlocks(layout), " blocks)"));
  }
  const Shape shape = {num_blocks, 2, layout.block_size, layout.head_dim};
  absl::StatusOr<Tensor> pool_tensor = backend->Allocate(layout.dtype, shape);
  if (!pool_tensor.ok()) {
    return absl::Status(
        pool_tensor.status().code(),
        absl::StrCat("KV cache: allocating ", ShapeToString(shape), " ", DTypeName(layout.dtype),
                     " (", int64_t{num_blocks} * layout.bytes_per_block(),
                     " bytes) failed: ", pool_tensor.status().message()));
  }
  spdlog::info("KV cache: {} blocks of {} tokens ({} bytes each, {} MiB) on {}", num_blocks,
               layout.block_size, layout.bytes_per_block(),
               (int64_t{num_blocks} * layout.bytes_per_block()) >> 20, backend->name());
  return std::unique_ptr<KvCache>(new KvCache(layout, num_blocks, *std::move(pool_tensor)));
}

absl::StatusOr<std::unique_ptr<KvCache>> KvCache::CreateWithBytes(Backend* backend,
                                                                  const KvLayout& layout,
                                                                  int64_t bytes) {
  RETURN_IF_ERROR(ValidateLayout(backend, layout));
  const int64_t per_block = layout.bytes_per_block();
  int64_t num_blocks = bytes > 0 ? bytes / per_block : 0;
  if (num_blocks < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV memory of ", bytes, " bytes holds no block of ", per_block, " bytes"));
  }
  if (num_blocks > MaxBlocks(layout)) {
    spdlog::warn("KV cache: {} bytes would hold {} blocks; capped at {} (int32 slot range)", bytes,
                 num_blocks, MaxBlocks(layout));
    num_blocks = MaxBlocks(layout);
  }
  return Create(backend, layout, static_cast<int32_t>(num_blocks));
}

}  // namespace zigzag
