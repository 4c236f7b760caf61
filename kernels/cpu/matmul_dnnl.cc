#include "kernels/cpu/matmul_dnnl.h"

#ifdef ZIGZAG_HAVE_DNNL

#include <omp.h>

#include <atomic>
#include <map>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <optional>
#include <tuple>

#include "spdlog/spdlog.h"

namespace zigzag::cpu {

bool DnnlMatmulAvailable() { return true; }

// One primitive per (weight dtype, N, K, columns, y's row stride). The pool cuts M into at most
// num_threads near-equal ranges, so a shape needs at most two primitives; prefill chunks of every
// length would still add up, so the map is bounded: past kMaxPrimitives it starts over (creating a
// matmul primitive takes microseconds, and oneDNN keeps its own cache of the JIT code).
constexpr size_t kMaxPrimitives = 64;
using Key = std::tuple<DType, int64_t, int64_t, int64_t, int64_t>;

struct Primitive {
  dnnl::engine engine;
  dnnl::memory::desc x_md, w_md, y_md;
  dnnl::matmul matmul;
};

struct DnnlMatmul::Impl {
  std::mutex mutex;
  // Created on first use, inside Columns' try: the constructor can throw.
  std::optional<dnnl::engine> engine;
  std::map<Key, std::shared_ptr<const Primitive>> primitives;
  std::atomic<bool> warned{false};

  std::shared_ptr<const Primitive> Get(const Key& key) {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = primitives.find(key);
    if (it != primitives.end()) return it->second;
    if (!engine.has_value()) engine.emplace(dnnl::engine::kind::cpu, 0);
    if (primitives.size() >= kMaxPrimitives) primitives.clear();
    const auto [dtype, n, k, cols, ldy] = key;
    using dt = dnnl::memory::data_type;
    const dt in = dtype == DType::kBF16 ? dt::bf16 : dt::f32;
    // x [N, K] row-major; w^T as [K, cols] with strides (1, K): rows m_begin.. of our [M, K]
    // weights, read in place (no packed copy, so no second copy of the weights in memory);
    // y [N, cols] with row stride ldy (a column range of the full y).
    const dnnl::memory::desc x_md({n, k}, in, dnnl::memory::dims{k, 1});
    const dnnl::memory::desc w_md({k, cols}, in, dnnl::memory::dims{1, k});
    const dnnl::memory::desc y_md({n, cols}, dt::f32, dnnl::memory::dims{ldy, 1});
    auto primitive = std::make_shared<const Primitive>(Primitive{
        *engine, x_md, w_md, y_md,
        dnnl::matmul(dnnl::matmul::primitive_desc(dnnl::matmul::desc(x_md, w_md, y_md), *engine))});
    primitives.emplace(key, primitive);
    return primitive;
  }
};

DnnlMatmul::DnnlMatmul() : impl_(std::make_unique<Impl>()) {}
DnnlMatmul::~DnnlMatmul() = default;

bool DnnlMatmul::Columns(const MatmulProblem& p, int64_t m_begin, int64_t m_end) {
  if (m_end <= m_begin || p.n == 0) return true;
  // The calling thread is one of the backend's pool threads: oneDNN must not start an OpenMP team
  // of its own on top of it (the ICV is per thread, so this stays local to the pool).
  thread_local bool single_threaded = false;
  if (!single_threaded) {
    omp_set_num_threads(1);
    single_threaded = true;
  }
  try {
    const int64_t cols = m_end - m_begin;
    const Key key{p.w_dtype, p.n, p.k, cols, p.m};
    const std::shared_ptr<const Primitive> primitive = impl_->Get(key);
    const bool bf16 = p.w_dtype == DType::kBF16;
    const size_t element = bf16 ? 2 : 4;
    void* x = const_cast<void*>(bf16 ? static_cast<const void*>(p.x_bf16)
                                     : static_cast<const void*>(p.x));
    void* w = const_cast<char*>(static_cast<const char*>(p.w) + m_begin * p.k * element);
    const dnnl::engine& engine = primitive->engine;
    dnnl::memory x_mem(primitive->x_md, engine, x);
    dnnl::memory w_mem(primitive->w_md, engine, w);
    dnnl::memory y_mem(primitive->y_md, engine, p.y + m_begin);
    dnnl::stream stream(engine);
    primitive->matmul.execute(
        stream, {{DNNL_ARG_SRC, x_mem}, {DNNL_ARG_WEIGHTS, w_mem}, {DNNL_ARG_DST, y_mem}});
    stream.wait();
    return true;
  } catch (const std::exception& e) {
    if (!impl_->warned.exchange(true)) {
      spdlog::warn("oneDNN matmul failed ({}); using our own kernels for it", e.what());
    }
    return false;
  }
}

}  // namespace zigzag::cpu

#else  // !ZIGZAG_HAVE_DNNL

namespace zigzag::cpu {

bool DnnlMatmulAvailable() { return false; }
struct DnnlMatmul::Impl {};
DnnlMatmul::DnnlMatmul() = default;
DnnlMatmul::~DnnlMatmul() = default;
bool DnnlMatmul::Columns(const MatmulProblem&, int64_t, int64_t) { return false; }

}  // namespace zigzag::cpu

#endif
