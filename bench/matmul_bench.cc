// bench_matmul: CPU matmul candidates side by side on the 124M Llama's shapes, for issue 13:
// y[N, M] = x[N, K] * w[M, K]^T with float32 x and y, at N = 1, 4, 16, 512 (decode to prefill).
//
// Candidates: OpenBLAS cblas_sgemm (what CpuBackend used before), oneDNN 2.6 dnnl_sgemm and its
// matmul primitive (f32, and bf16 x bf16 -> f32 with x rounded first), BLIS 0.9 bli_sgemm
// (dlopen'ed from Debian's blis-openmp so that its BLAS symbols do not collide with OpenBLAS'),
// and our kernels (kernels/cpu/matmul_kernels.h) over our thread pool on every path this CPU runs,
// with f32, bf16 and f16 weights. Everything runs on --threads threads.
//
// read_only_roofline_f32 only reads the f32 weights on the same threads: decode shapes cannot beat
// its time for f32 weights (nor half of it for 16-bit weights).
//
// Timing: the candidates of a shape run interleaved, --reps rounds of each, and the table shows the
// median round. A round repeats the call until it took --min_ms; the weights rotate over copies
// that add up to at least --footprint_mb so that decode shapes read their weights from memory, as
// a real decode step does, and not from the cache. GB/s counts weights + x + y bytes; GFLOP/s
// 2 N M K. Needs libdnnl-dev and libblis-dev (Debian), which only this program links.
#include <dlfcn.h>
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <oneapi/dnnl/dnnl.hpp>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_split.h"
#include "kernels/cpu/matmul_dnnl.h"
#include "kernels/cpu/matmul_kernels.h"
#include "kernels/cpu/thread_pool.h"

extern "C" {
#include <cblas.h>
void openblas_set_num_threads(int num_threads);
char* openblas_get_corename(void);
}

ABSL_FLAG(int32_t, threads, 2, "threads for every candidate");
ABSL_FLAG(int32_t, reps, 5, "interleaved rounds per candidate; the median is reported");
ABSL_FLAG(double, min_ms, 40.0, "minimum time of one round");
ABSL_FLAG(int64_t, footprint_mb, 256, "weights rotate over copies of at least this size");
ABSL_FLAG(std::string, n, "1,4,16,512", "comma-separated N (rows of x)");
ABSL_FLAG(std::string, only, "", "comma-separated candidate names to run (empty = all)");

namespace zigzag {
namespace {

using Clock = std::chrono::steady_clock;

struct Shape {
  const char* name;
  int64_t k;
  int64_t m;
};

// The 124M preset: hidden 768, 12 query / 4 KV heads of 64, FFN 2048, vocab 32000.
constexpr Shape kShapes[] = {{"qkv", 768, 768 + 2 * 256},
                             {"o", 768, 768},
                             {"gate/up", 768, 2048},
                             {"down", 2048, 768},
                             {"lm_head", 768, 32000}};

// BLIS' typed gemm (blis.h, "typed API"): C = alpha A B + beta C with explicit strides.
using BliSgemm = void (*)(int, int, int64_t, int64_t, int64_t, const float*, const float*, int64_t,
                          int64_t, const float*, int64_t, int64_t, const float*, float*, int64_t,
                          int64_t);
struct Blis {
  BliSgemm sgemm = nullptr;
  std::string arch;
};

Blis LoadBlis(int threads) {
  Blis blis;
  void* lib = dlopen("/usr/lib/x86_64-linux-gnu/blis-openmp/libblis.so.4",
                     RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
  if (lib == nullptr) {
    std::printf("BLIS: not loaded (%s); install libblis-dev\n", dlerror());
    return blis;
  }
  blis.sgemm = reinterpret_cast<BliSgemm>(dlsym(lib, "bli_sgemm"));
  auto set_threads = reinterpret_cast<void (*)(int64_t)>(dlsym(lib, "bli_thread_set_num_threads"));
  auto arch_id = reinterpret_cast<int (*)()>(dlsym(lib, "bli_arch_query_id"));
  auto arch_string = reinterpret_cast<const char* (*)(int)>(dlsym(lib, "bli_arch_string"));
  auto version = reinterpret_cast<const char* (*)()>(dlsym(lib, "bli_info_get_version_str"));
  if (set_threads != nullptr) set_threads(threads);
  if (arch_id != nullptr && arch_string != nullptr) blis.arch = arch_string(arch_id());
  std::printf("BLIS %s: sub-configuration chosen at run time: %s\n",
              version != nullptr ? version() : "?", blis.arch.c_str());
  return blis;
}

// One weight matrix in several copies (f32, bf16 and f16 bits of the same values).
struct WeightCopies {
  std::vector<std::vector<float>> f32;
  std::vector<std::vector<uint16_t>> bf16;
  std::vector<std::vector<uint16_t>> f16;
};

WeightCopies MakeWeights(const Shape& s, int64_t footprint_bytes) {
  const int64_t count = s.m * s.k;
  const int64_t copies = std::max<int64_t>(1, footprint_bytes / (count * 4));
  WeightCopies w;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-0.05f, 0.05f);
  std::vector<float> base(count);
  for (float& v : base) v = dist(rng);
  for (int64_t c = 0; c < copies; ++c) {
    w.f32.push_back(base);
    std::vector<uint16_t> b(count), h(count);
    for (int64_t i = 0; i < count; ++i) {
      b[i] = FloatToBF16(base[i]);
      h[i] = FloatToHalf(base[i]);
    }
    w.bf16.push_back(std::move(b));
    w.f16.push_back(std::move(h));
  }
  return w;
}

struct Candidate {
  std::string name;
  DType w_dtype;
  std::function<void(size_t copy)> run;
};

double MedianOf(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Sums `count` floats: the read-only roofline. AVX-512 with eight independent accumulators where
// the CPU has it (an SSE2 loop did not keep enough loads in flight: our own GEMV beat it by 1.5x),
// else SSE2, the x86-64 baseline.
__attribute__((target("avx512f"))) float ReadOnlySumAvx512(const float* data, int64_t count) {
  __m512 acc[8];
  for (__m512& a : acc) a = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 128 <= count; i += 128) {
    for (int j = 0; j < 8; ++j) acc[j] = _mm512_add_ps(acc[j], _mm512_loadu_ps(data + i + 16 * j));
  }
  float tail = 0;
  for (; i < count; ++i) tail += data[i];
  for (int j = 1; j < 8; ++j) acc[0] = _mm512_add_ps(acc[0], acc[j]);
  // Stored and summed in scalar: gcc 12 warns (-Wuninitialized) inside _mm512_reduce_add_ps when
  // it is used under a target attribute.
  float lanes[16];
  _mm512_storeu_ps(lanes, acc[0]);
  for (float lane : lanes) tail += lane;
  return tail;
}

float ReadOnlySumSse2(const float* data, int64_t count) {
  __m128 a0 = _mm_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 16 <= count; i += 16) {
    a0 = _mm_add_ps(a0, _mm_loadu_ps(data + i));
    a1 = _mm_add_ps(a1, _mm_loadu_ps(data + i + 4));
    a2 = _mm_add_ps(a2, _mm_loadu_ps(data + i + 8));
    a3 = _mm_add_ps(a3, _mm_loadu_ps(data + i + 12));
  }
  float tail = 0;
  for (; i < count; ++i) tail += data[i];
  float lanes[4];
  _mm_storeu_ps(lanes, _mm_add_ps(_mm_add_ps(a0, a1), _mm_add_ps(a2, a3)));
  return lanes[0] + lanes[1] + lanes[2] + lanes[3] + tail;
}

float ReadOnlySum(const float* data, int64_t count) {
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  return avx512 ? ReadOnlySumAvx512(data, count) : ReadOnlySumSse2(data, count);
}

void RunShape(const Shape& s, int64_t n, int threads, const Blis& blis, ThreadPool& pool,
              cpu::DnnlMatmul& dnnl_pool, dnnl::engine& engine, dnnl::stream& stream,
              const WeightCopies& w, const std::vector<std::string>& only) {
  const int64_t k = s.k, m = s.m;
  std::vector<float> x(n * k), y(n * m);
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (float& v : x) v = dist(rng);
  std::vector<uint16_t> x_bf16(n * k);
  std::vector<Candidate> candidates;

  // The roofline: the same threads only reading the f32 weights (a sum; nothing else).
  std::vector<float> sums(threads);
  candidates.push_back({"read_only_roofline_f32", DType::kF32, [&](size_t c) {
                          const float* data = w.f32[c].data();
                          pool.ParallelFor(threads, [&](int64_t b, int64_t e) {
                            for (int64_t t = b; t < e; ++t) {
                              sums[t] =
                                  ReadOnlySum(data + m * k * t / threads,
                                              m * k * (t + 1) / threads - m * k * t / threads);
                            }
                          });
                        }});
  candidates.push_back({"openblas_sgemm", DType::kF32, [&](size_t c) {
                          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, m, k, 1.0f,
                                      x.data(), k, w.f32[c].data(), k, 0.0f, y.data(), m);
                        }});
  candidates.push_back({"dnnl_sgemm", DType::kF32, [&](size_t c) {
                          dnnl_sgemm('N', 'T', n, m, k, 1.0f, x.data(), k, w.f32[c].data(), k, 0.0f,
                                     y.data(), m);
                        }});
  if (blis.sgemm != nullptr) {
    candidates.push_back({"blis_sgemm", DType::kF32, [&](size_t c) {
                            const float one = 1.0f, zero = 0.0f;
                            // a = x (n x k, rows of k); b = w^T (k x m): element (i, j) at j*k + i.
                            blis.sgemm(0, 0, n, m, k, &one, x.data(), k, 1, w.f32[c].data(), 1, k,
                                       &zero, y.data(), m, 1);
                          }});
  }
  // oneDNN's matmul primitive on plain layouts: weights [K, M] as "ba" (our [M, K] rows).
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  auto make_matmul = [&](dt src_type) {
    dnnl::memory::desc src_md({n, k}, src_type, tag::ab);
    dnnl::memory::desc wei_md({k, m}, src_type, tag::ba);
    dnnl::memory::desc dst_md({n, m}, dt::f32, tag::ab);
    return dnnl::matmul(
        dnnl::matmul::primitive_desc(dnnl::matmul::desc(src_md, wei_md, dst_md), engine));
  };
  auto dnnl_f32 = std::make_shared<dnnl::matmul>(make_matmul(dt::f32));
  auto dnnl_bf16 = std::make_shared<dnnl::matmul>(make_matmul(dt::bf16));
  candidates.push_back(
      {"dnnl_matmul_f32", DType::kF32, [&, dnnl_f32](size_t c) {
         dnnl::memory src({{n, k}, dt::f32, tag::ab}, engine, x.data());
         dnnl::memory wei({{k, m}, dt::f32, tag::ba}, engine, const_cast<float*>(w.f32[c].data()));
         dnnl::memory dst({{n, m}, dt::f32, tag::ab}, engine, y.data());
         dnnl_f32->execute(stream,
                           {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}});
         stream.wait();
       }});
  candidates.push_back({"dnnl_matmul_bf16", DType::kBF16, [&, dnnl_bf16](size_t c) {
                          cpu::RoundToBf16(cpu::BestMatmulIsa(), x.data(), x_bf16.data(), n * k);
                          dnnl::memory src({{n, k}, dt::bf16, tag::ab}, engine, x_bf16.data());
                          dnnl::memory wei({{k, m}, dt::bf16, tag::ba}, engine,
                                           const_cast<uint16_t*>(w.bf16[c].data()));
                          dnnl::memory dst({{n, m}, dt::f32, tag::ab}, engine, y.data());
                          dnnl_bf16->execute(
                              stream,
                              {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}});
                          stream.wait();
                        }});
  // oneDNN as CpuBackend::Matmul runs it from 32 rows (f32) / 8 (bf16) (matmul_dnnl.h): one
  // single-threaded primitive per pool thread over its range of weight rows.
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    candidates.push_back(
        {std::string("dnnl_in_pool_") + DTypeName(dtype), dtype, [&, dtype](size_t c) {
           cpu::MatmulProblem p{
               .x = x.data(), .w_dtype = dtype, .n = n, .k = k, .m = m, .y = y.data()};
           p.w =
               dtype == DType::kF32 ? static_cast<const void*>(w.f32[c].data()) : w.bf16[c].data();
           if (dtype == DType::kBF16) {
             cpu::RoundToBf16(cpu::BestMatmulIsa(), x.data(), x_bf16.data(), n * k);
             p.x_bf16 = x_bf16.data();
           }
           pool.ParallelFor((m + 15) / 16,
                            [&](int64_t b, int64_t e) {
                              if (!dnnl_pool.Columns(p, b * 16, std::min(e * 16, m))) std::abort();
                            },
                            std::max<int64_t>(1, (int64_t{1} << 17) / (n * k * 16)));
         }});
  }
  // Ours, as CpuBackend::Matmul runs it: threads over 16-row units of the weights.
  for (cpu::MatmulIsa isa : {cpu::MatmulIsa::kMatmulIsaAvx2, cpu::MatmulIsa::kMatmulIsaAvx512,
                             cpu::MatmulIsa::kMatmulIsaAvx512Bf16}) {
    if (!cpu::MatmulIsaSupported(isa)) continue;
    for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
      // kMatmulIsaAvx512Bf16 differs from kMatmulIsaAvx512 only for bf16 weights.
      if (isa == cpu::MatmulIsa::kMatmulIsaAvx512Bf16 && dtype != DType::kBF16) continue;
      const std::string name =
          std::string("ours_") + cpu::MatmulIsaName(isa) + "_" + DTypeName(dtype);
      candidates.push_back(
          {name, dtype, [&, isa, dtype](size_t c) {
             cpu::MatmulProblem p{
                 .x = x.data(), .w_dtype = dtype, .n = n, .k = k, .m = m, .y = y.data()};
             p.w = dtype == DType::kF32    ? static_cast<const void*>(w.f32[c].data())
                   : dtype == DType::kBF16 ? w.bf16[c].data()
                                           : w.f16[c].data();
             if (cpu::MatmulNeedsBf16X(isa, dtype)) {
               cpu::RoundToBf16(isa, x.data(), x_bf16.data(), n * k);
               p.x_bf16 = x_bf16.data();
             }
             const int64_t units = (m + 15) / 16;
             pool.ParallelFor(
                 units,
                 [&](int64_t b, int64_t e) {
                   cpu::MatmulColumns(isa, p, b * 16, std::min(e * 16, m));
                 },
                 std::max<int64_t>(1, (int64_t{1} << 17) / (n * k * 16)));
           }});
    }
  }
  if (!only.empty()) {
    std::erase_if(candidates, [&](const Candidate& c) {
      return std::find(only.begin(), only.end(), c.name) == only.end();
    });
  }

  const int reps = absl::GetFlag(FLAGS_reps);
  const double min_s = absl::GetFlag(FLAGS_min_ms) / 1000.0;
  std::vector<std::vector<double>> seconds(candidates.size());
  size_t copy = 0;
  for (Candidate& c : candidates) c.run(0);  // warm-up: primitive set-up, thread start
  for (int r = 0; r < reps; ++r) {
    for (size_t i = 0; i < candidates.size(); ++i) {
      int calls = 0;
      const auto start = Clock::now();
      double elapsed = 0;
      do {
        candidates[i].run(copy);
        copy = (copy + 1) % w.f32.size();
        ++calls;
        elapsed = std::chrono::duration<double>(Clock::now() - start).count();
      } while (elapsed < min_s || calls < 2);
      seconds[i].push_back(elapsed / calls);
    }
  }
  const double flops = 2.0 * n * m * k;
  std::printf("\n%s K=%ld M=%ld N=%ld (%d threads, median of %d)\n", s.name, k, m, n, threads,
              reps);
  std::printf("  %-28s %10s %9s %9s\n", "candidate", "us/call", "GB/s", "GFLOP/s");
  for (size_t i = 0; i < candidates.size(); ++i) {
    const double t = MedianOf(seconds[i]);
    const double bytes =
        static_cast<double>(m * k * DTypeSize(candidates[i].w_dtype)) + 4.0 * (n * k + n * m);
    std::printf("  %-28s %10.1f %9.1f %9.1f\n", candidates[i].name.c_str(), t * 1e6,
                bytes / t / 1e9, flops / t / 1e9);
  }
  std::fflush(stdout);
}

}  // namespace
}  // namespace zigzag

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int threads = absl::GetFlag(FLAGS_threads);
  openblas_set_num_threads(threads);
  omp_set_num_threads(threads);  // oneDNN (and BLIS) run on OpenMP
  std::printf("OpenBLAS core: %s\n", openblas_get_corename());
  const dnnl_version_t* v = dnnl_version();
  std::printf("oneDNN %d.%d.%d, effective ISA %d (dnnl_cpu_isa_t)\n", v->major, v->minor, v->patch,
              static_cast<int>(dnnl_get_effective_cpu_isa()));
  std::printf("our matmul path: %s\n", zigzag::cpu::MatmulIsaName(zigzag::cpu::BestMatmulIsa()));
  const zigzag::Blis blis = zigzag::LoadBlis(threads);
  zigzag::ThreadPool pool(threads);
  zigzag::cpu::DnnlMatmul dnnl_pool;
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  std::vector<std::string> only;
  if (!absl::GetFlag(FLAGS_only).empty()) only = absl::StrSplit(absl::GetFlag(FLAGS_only), ',');
  std::vector<int64_t> ns;
  for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_n), ',')) {
    ns.push_back(std::stoll(std::string(part)));
  }
  for (const zigzag::Shape& s : zigzag::kShapes) {
    const zigzag::WeightCopies w = zigzag::MakeWeights(s, absl::GetFlag(FLAGS_footprint_mb) << 20);
    for (int64_t n : ns)
      zigzag::RunShape(s, n, threads, blis, pool, dnnl_pool, engine, stream, w, only);
  }
  return 0;
}
