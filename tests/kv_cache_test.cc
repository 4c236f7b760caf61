// Tests of KvCache on the CPU backend: the pool tensor's shape and bytes, sizing from a memory
// budget, and every invalid layout or allocation failure as a clear Status.
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/kv/kv_cache.h"
#include "core/kv/sequence_kv.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/backend_registry.h"

namespace zigzag {
namespace {

using ::testing::HasSubstr;

KvLayout SmallLayout() {
  KvLayout layout;
  layout.num_layers = 2;
  layout.num_kv_heads = 2;
  layout.head_dim = 8;
  layout.block_size = 4;
  layout.dtype = DType::kF32;
  return layout;
}

TEST(KvLayoutTest, BytesPerBlockAndToken) {
  KvLayout layout = SmallLayout();
  // A block holds one KV head: K and V of 4 tokens of 8 floats.
  EXPECT_EQ(layout.bytes_per_token_head(), 2 * 8 * 4);
  EXPECT_EQ(layout.bytes_per_token_layer(), 2 * 2 * 8 * 4);
  EXPECT_EQ(layout.bytes_per_block(), 2 * 4 * 8 * 4);
  // 5 tokens: 2 blocks in each of 2 layers x 2 heads.
  EXPECT_EQ(layout.BlocksForTokensAllStreams(5), 8);
  EXPECT_EQ(layout.BlocksForTokensAllStreams(0), 0);
  layout.dtype = DType::kBF16;
  EXPECT_EQ(layout.bytes_per_token_layer(), 2 * 2 * 8 * 2);
  EXPECT_EQ(layout.bytes_per_block(), 2 * 4 * 8 * 2);
  // A realistic 8B-class layout must not overflow 32 bits.
  layout.num_kv_heads = 8;
  layout.head_dim = 128;
  layout.block_size = 16;
  layout.dtype = DType::kF32;
  EXPECT_EQ(layout.bytes_per_block(), int64_t{2} * 16 * 128 * 4);
  EXPECT_EQ(layout.bytes_per_token_layer(), int64_t{2} * 8 * 128 * 4);
}

class KvCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto backend = CreateBackend("cpu");
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend_ = *std::move(backend);
  }
  std::unique_ptr<Backend> backend_;
};

TEST_F(KvCacheTest, CreateAllocatesThePoolTensor) {
  const KvLayout layout = SmallLayout();
  auto cache = KvCache::Create(backend_.get(), layout, 10);
  ASSERT_TRUE(cache.ok()) << cache.status();
  KvCache& kv = **cache;
  EXPECT_EQ(kv.pool().num_blocks(), 10);
  EXPECT_EQ(kv.pool().block_size(), 4);
  EXPECT_EQ(kv.pool().num_free(), 10);
  EXPECT_EQ(kv.layout().num_layers, 2);
  EXPECT_EQ(kv.pool_tensor().shape(), (Shape{10, 2, 4, 8}));
  EXPECT_EQ(kv.pool_tensor().dtype(), DType::kF32);
  EXPECT_EQ(kv.pool_tensor().device(), backend_->device());
  EXPECT_EQ(kv.pool_tensor().bytes(), 10u * 256u);
  EXPECT_EQ(kv.bytes_total(), 10 * 256);
  EXPECT_EQ(kv.bytes_in_use(), 0);
  {
    SequenceKv seq(&kv.pool(), kv.layout().num_layers, kv.layout().num_kv_heads);
    ASSERT_TRUE(seq.AppendAllLayers(5).ok());  // 2 blocks per (layer, KV head)
    EXPECT_EQ(kv.bytes_in_use(), 8 * 256);
  }
  EXPECT_EQ(kv.bytes_in_use(), 0);
}

TEST_F(KvCacheTest, CreateWithBytesFitsWholeBlocks) {
  const KvLayout layout = SmallLayout();  // 256 bytes per block
  auto cache = KvCache::CreateWithBytes(backend_.get(), layout, 7 * 256 + 255);
  ASSERT_TRUE(cache.ok()) << cache.status();
  EXPECT_EQ((*cache)->pool().num_blocks(), 7);
  EXPECT_EQ((*cache)->pool_tensor().shape(), (Shape{7, 2, 4, 8}));
  EXPECT_EQ((*cache)->bytes_total(), 7 * 256);

  auto exact = KvCache::CreateWithBytes(backend_.get(), layout, 256);
  ASSERT_TRUE(exact.ok()) << exact.status();
  EXPECT_EQ((*exact)->pool().num_blocks(), 1);
}

TEST_F(KvCacheTest, CreateWithBytesTooSmall) {
  const KvLayout layout = SmallLayout();
  for (int64_t bytes : {int64_t{255}, int64_t{0}, int64_t{-4096}}) {
    auto cache = KvCache::CreateWithBytes(backend_.get(), layout, bytes);
    ASSERT_FALSE(cache.ok()) << bytes;
    EXPECT_EQ(cache.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(
        std::string(cache.status().message()),
        HasSubstr(absl::StrCat("KV memory of ", bytes, " bytes holds no block of 256 bytes")));
  }
}

TEST_F(KvCacheTest, InvalidLayoutsNameTheField) {
  const std::vector<std::pair<const char*, void (*)(KvLayout&)>> cases = {
      {"num_layers", [](KvLayout& l) { l.num_layers = 0; }},
      {"num_kv_heads", [](KvLayout& l) { l.num_kv_heads = -2; }},
      {"head_dim", [](KvLayout& l) { l.head_dim = 0; }},
      {"block_size", [](KvLayout& l) { l.block_size = 0; }},
      {"dtype", [](KvLayout& l) { l.dtype = DType::kI32; }},
  };
  for (const auto& [field, corrupt] : cases) {
    KvLayout layout = SmallLayout();
    corrupt(layout);
    auto created = KvCache::Create(backend_.get(), layout, 4);
    ASSERT_FALSE(created.ok()) << field;
    EXPECT_EQ(created.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(created.status().message()), HasSubstr(field));
    auto by_bytes = KvCache::CreateWithBytes(backend_.get(), layout, 1 << 20);
    ASSERT_FALSE(by_bytes.ok()) << field;
    EXPECT_THAT(std::string(by_bytes.status().message()), HasSubstr(field));
  }
}

TEST_F(KvCacheTest, NonPositiveBlockCount) {
  for (int32_t num_blocks : {0, -3}) {
    auto created = KvCache::Create(backend_.get(), SmallLayout(), num_blocks);
    ASSERT_FALSE(created.ok());
    EXPECT_EQ(created.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(created.status().message()), HasSubstr("num_blocks must be positive"));
  }
}

TEST_F(KvCacheTest, SlotRangeIsBounded) {
  KvLayout layout = SmallLayout();
  layout.block_size = 1 << 20;
  auto created = KvCache::Create(backend_.get(), layout, 4096);  // 2^32 slots
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(created.status().message()), HasSubstr("int32 slot range"));
}

TEST_F(KvCacheTest, BackendAllocationFailureIsResourceExhausted) {
  // About 2^63 bytes: the backend refuses before asking the OS, so this is the same on every
  // machine. A block is one KV head: 2 x 16 tokens x 2^29 floats.
  KvLayout layout = SmallLayout();
  layout.head_dim = 1 << 29;
  layout.block_size = 16;
  auto created = KvCache::Create(backend_.get(), layout, (1 << 27) - 1);
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(created.status().message()), HasSubstr("KV cache: allocating"));
}

TEST(KvCacheNoBackendTest, NullBackend) {
  auto created = KvCache::Create(nullptr, SmallLayout(), 4);
  ASSERT_FALSE(created.ok());
  EXPECT_THAT(std::string(created.status().message()), HasSubstr("backend"));
}

}  // namespace
}  // namespace zigzag
