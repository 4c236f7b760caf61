// ThreadPool: a small fixed set of worker threads for the CPU backend's loops. ParallelFor splits
// [0, n) into contiguous chunks and blocks until all of them ran. It owns no tensors and knows
// nothing of ops; it is not a general task scheduler (no futures, no nesting).
// Hand-offs spin briefly before sleeping: a decode step is ~100 short loops back to back, and a
// futex wake per loop cost about a tenth of it (perf); the spin is bounded, so an idle or
// oversubscribed pool still sleeps.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace zigzag {

class ThreadPool {
 public:
  // num_threads counts the calling thread, which always takes a chunk itself: 1 = no workers
  // (every loop runs inline), 0 = std::thread::hardware_concurrency().
  explicit ThreadPool(int num_threads);
  ~ThreadPool();

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Calls fn(begin, end) on disjoint contiguous chunks that together cover [0, n) exactly once,
  // and returns when all of them finished. At most num_threads() chunks of near-equal size, each
  // at least min_chunk items long (unless n itself is shorter), so a loop with n < 2 * min_chunk,
  // or any loop on a one-thread pool, runs inline on the caller's thread with no synchronisation.
  // fn must not throw and must not call ParallelFor on the same pool.
  //
  // Thread safety: one caller thread at a time. The pool has a single job slot, so two threads
  // calling ParallelFor on the same pool concurrently is a bug (a Backend is used from one thread
  // at a time, which gives exactly this guarantee).
  void ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn,
                   int64_t min_chunk = 1);

 private:
  void WorkerLoop(int worker_index);
  // Runs the chunks of the current job that fall to `slot` (0 = the caller).
  void RunChunk(int slot);

  const int num_threads_;
  std::vector<std::thread> workers_;

  // Job hand-off. The caller writes the job fields, then bumps generation_; workers read
  // generation_ and then the fields, which stay unchanged until workers_pending_
  // is back at zero. A side that is about to sleep registers in sleepers_ / caller_sleeping_
  // under mutex_ and re-checks; the other side checks that flag after its own store (both
  // seq_cst) and only then takes mutex_ to notify, so a wake-up is never lost and a hand-off
  // between two spinning sides makes no system call.
  std::mutex mutex_;
  std::condition_variable job_ready_;
  std::condition_variable job_done_;
  const std::function<void(int64_t, int64_t)>* job_fn_ = nullptr;
  int64_t job_n_ = 0;
  int job_chunks_ = 0;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> workers_pending_{0};  // workers that have not yet finished this generation
  std::atomic<int> sleepers_{0};         // workers blocked (or about to block) on job_ready_
  std::atomic<bool> caller_sleeping_{false};
  std::atomic<bool> stopping_{false};
};

}  // namespace zigzag
