// The CPU backend's per-token ops allocate nothing once warmed up (issue 13: no allocations in
// the decode loop): this binary replaces the global operator new with a counting one and runs a
// decode step's ops (Embedding, RmsNorm, Matmul with f32 / bf16 / f16 weights, Rope, SiluMul,
// Add, CopyRows) on a two-thread backend twice, asserting that the second round allocated nothing.
#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"

// The replacements pair malloc with free on purpose; GCC 12 flags the inlined pair anyway.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace {
std::atomic<bool> counting{false};
std::atomic<int64_t> allocations{0};
}  // namespace

void* operator new(std::size_t size) {
  if (counting.load(std::memory_order_relaxed)) allocations.fetch_add(1);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace zigzag {
namespace {

Tensor Filled(Backend& b, DType dtype, const Shape& shape, float value) {
  auto t = b.Allocate(dtype, shape);
  EXPECT_TRUE(t.ok());
  std::vector<float> host(t->numel(), value);
  EXPECT_TRUE(b.CopyToDevice(host.data(), DType::kF32, &*t).ok());
  return *t;
}

TEST(CpuBackendAllocTest, DecodeStepOpsAllocateNothingOnceWarm) {
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    SCOPED_TRACE(DTypeName(dtype));
    auto created = CreateCpuBackend(CpuBackendConfig{.num_threads = 2, .weight_dtype = dtype});
    ASSERT_TRUE(created.ok());
    Backend& b = **created;
    // One token of a small model: hidden 256, 4 heads of 64, FFN 512, vocab 1000; weights big
    // enough that Matmul splits over both threads.
    const int64_t hidden = 256, ffn = 512, vocab = 1000;
    Tensor table = Filled(b, dtype, {vocab, hidden}, 0.01f);
    Tensor norm = Filled(b, dtype, {hidden}, 1.0f);
    Tensor w_up = Filled(b, dtype, {ffn, hidden}, 0.02f);
    Tensor w_down = Filled(b, dtype, {hidden, ffn}, 0.02f);
    Tensor inv_freq = Filled(b, DType::kF32, {32}, 0.1f);
    Tensor x = Filled(b, DType::kF32, {1, hidden}, 0.0f);
    Tensor normed = Filled(b, DType::kF32, {1, hidden}, 0.0f);
    Tensor gate = Filled(b, DType::kF32, {1, ffn}, 0.0f);
    Tensor up = Filled(b, DType::kF32, {1, ffn}, 0.0f);
    Tensor down = Filled(b, DType::kF32, {1, hidden}, 0.0f);
    Tensor logits = Filled(b, DType::kF32, {1, vocab}, 0.0f);
    Tensor row = Filled(b, DType::kF32, {1, hidden}, 0.0f);
    const std::vector<int32_t> ids = {7};
    const std::vector<int32_t> positions = {3};
    const std::vector<int32_t> rows = {0};
    Tensor heads = normed.Reshaped({1, 4, 64});
    auto step = [&] {
      EXPECT_TRUE(b.Embedding(table, ids, &x).ok());
      EXPECT_TRUE(b.RmsNorm(x, norm, 1e-5f, &normed).ok());
      EXPECT_TRUE(b.Rope(positions, inv_freq, &heads).ok());
      EXPECT_TRUE(b.Matmul(normed, w_up, nullptr, &gate).ok());
      EXPECT_TRUE(b.Matmul(normed, w_up, nullptr, &up).ok());
      EXPECT_TRUE(b.SiluMul(gate, up, &gate).ok());
      EXPECT_TRUE(b.Matmul(gate, w_down, nullptr, &down).ok());
      EXPECT_TRUE(b.Add(x, down, &x).ok());
      EXPECT_TRUE(b.CopyRows(x, rows, &row).ok());
      EXPECT_TRUE(b.Matmul(row, table, nullptr, &logits).ok());
    };
    step();  // warm-up: scratch buffers grow here
    allocations = 0;
    counting = true;
    step();
    counting = false;
    EXPECT_EQ(allocations.load(), 0) << "allocations in a warm decode step's ops";
  }
}

}  // namespace
}  // namespace zigzag
