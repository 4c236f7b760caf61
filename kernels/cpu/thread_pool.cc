#include "kernels/cpu/thread_pool.h"

#include <algorithm>
#include <chrono>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace zigzag {
namespace {

int ResolveThreadCount(int requested) {
  if (requested > 0) return requested;
  const unsigned hardware = std::thread::hardware_concurrency();
  return hardware == 0 ? 1 : static_cast<int>(hardware);
}

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

// How long a side waits by spinning before it sleeps. Long enough to bridge the serial work
// between two loops of a decode step (norms, sampling, bookkeeping: tens of microseconds), short
// enough that an idle pool, or one whose cores are taken by other processes, gives them back.
constexpr auto kSpinFor = std::chrono::microseconds(100);

// Spins until ready() or kSpinFor passed; reads the clock only every 64 checks.
template <typename Ready>
bool SpinUntil(const Ready& ready) {
  const auto give_up = std::chrono::steady_clock::now() + kSpinFor;
  while (true) {
    for (int i = 0; i < 64; ++i) {
      if (ready()) return true;
      CpuRelax();
    }
    if (std::chrono::steady_clock::now() >= give_up) return ready();
  }
}

}  // namespace

ThreadPool::ThreadPool(int num_threads) : num_threads_(ResolveThreadCount(num_threads)) {
  workers_.reserve(num_threads_ - 1);
  for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_.store(true);
  }
  job_ready_.notify_all();
  for (std::thread& worker : workers_) worker.join();
}

void ThreadPool::RunChunk(int slot) {
  if (slot >= job_chunks_) return;
  // Chunk sizes differ by at most one item: the first `rest` chunks get one more.
  const int64_t base = job_n_ / job_chunks_;
  const int64_t rest = job_n_ % job_chunks_;
  const int64_t begin = slot * base + std::min<int64_t>(slot, rest);
  const int64_t end = begin + base + (slot < rest ? 1 : 0);
  (*job_fn_)(begin, end);
}

void ThreadPool::WorkerLoop(int worker_index) {
  uint64_t seen_generation = 0;
  while (true) {
    const auto job_or_stop = [&] {
      // seq_cst loads: the re-check after registering in sleepers_ must not pass the caller's
      // publication unseen (see the header).
      return stopping_.load() || generation_.load() != seen_generation;
    };
    if (!SpinUntil(job_or_stop)) {
      std::unique_lock<std::mutex> lock(mutex_);
      sleepers_.fetch_add(1);  // seq_cst: ordered before the re-check in wait's predicate
      job_ready_.wait(lock, job_or_stop);
      sleepers_.fetch_sub(1);
    }
    if (stopping_.load(std::memory_order_acquire)) return;
    seen_generation = generation_.load(std::memory_order_acquire);
    RunChunk(worker_index);
    // The last worker to finish wakes the caller if it went to sleep; seq_cst pairs with the
    // caller's store of caller_sleeping_ before its re-check.
    if (workers_pending_.fetch_sub(1) == 1 && caller_sleeping_.load()) {
      std::lock_guard<std::mutex> lock(mutex_);
      job_done_.notify_one();
    }
  }
}

void ThreadPool::ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn,
                             int64_t min_chunk) {
  if (n <= 0) return;
  min_chunk = std::max<int64_t>(min_chunk, 1);
  const int64_t wanted_chunks = std::min<int64_t>(num_threads_, n / min_chunk);
  if (wanted_chunks <= 1) {
    fn(0, n);
    return;
  }
  job_fn_ = &fn;
  job_n_ = n;
  job_chunks_ = static_cast<int>(wanted_chunks);
  // Every worker takes part in every job (even those without a chunk), so that the job fields
  // are never rewritten while one of them may still read them.
  workers_pending_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
  generation_.fetch_add(1);  // seq_cst: publishes the job, ordered before the sleepers_ check
  if (sleepers_.load() > 0) {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ready_.notify_all();
  }
  RunChunk(0);
  const auto all_done = [&] { return workers_pending_.load() == 0; };  // seq_cst, as above
  if (!SpinUntil(all_done)) {
    std::unique_lock<std::mutex> lock(mutex_);
    caller_sleeping_.store(true);  // seq_cst: ordered before the re-check in wait's predicate
    job_done_.wait(lock, all_done);
    caller_sleeping_.store(false, std::memory_order_relaxed);
  }
  job_fn_ = nullptr;
}

}  // namespace zigzag
