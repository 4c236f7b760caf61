#include "kernels/cpu/thread_pool.h"

#include <algorithm>

namespace zigzag {
namespace {

int ResolveThreadCount(int requested) {
  if (requested > 0) return requested;
  const unsigned hardware = std::thread::hardware_concurrency();
  return hardware == 0 ? 1 : static_cast<int>(hardware);
}

}  // namespace

ThreadPool::ThreadPool(int num_threads) : num_threads_(ResolveThreadCount(num_threads)) {
  workers_.reserve(num_threads_ - 1);
  for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
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
    {
      std::unique_lock<std::mutex> lock(mutex_);
      job_ready_.wait(lock, [&] { return stopping_ || generation_ != seen_generation; });
      if (stopping_) return;
      seen_generation = generation_;
    }
    // The job fields stay unchanged until every worker reported back below, so reading them
    // without the lock is safe.
    RunChunk(worker_index);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (--workers_pending_ == 0) job_done_.notify_one();
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
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_fn_ = &fn;
    job_n_ = n;
    job_chunks_ = static_cast<int>(wanted_chunks);
    // Every worker wakes for every job (even those without a chunk) so that the job fields are
    // never rewritten while one of them may still read them.
    workers_pending_ = static_cast<int>(workers_.size());
    ++generation_;
  }
  job_ready_.notify_all();
  RunChunk(0);
  std::unique_lock<std::mutex> lock(mutex_);
  job_done_.wait(lock, [&] { return workers_pending_ == 0; });
  job_fn_ = nullptr;
}

}  // namespace zigzag
