// TokenizerPool: a few threads that run the server's tokenizer work (a request's text, Tokenize,
// Detokenize) off gRPC's callback threads, so that a big text never stalls other calls or the
// health check. Its queue is bounded: when it is full a job is refused at once and the caller
// answers RESOURCE_EXHAUSTED. It knows nothing of gRPC; a job must finish its own call.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace zigzag {

class TokenizerPool {
 public:
  // `num_threads` >= 1 workers; at most `queue_capacity` >= 1 jobs wait (running ones aside).
  TokenizerPool(int num_threads, int queue_capacity);
  ~TokenizerPool();  // Stop()
  TokenizerPool(const TokenizerPool&) = delete;
  TokenizerPool& operator=(const TokenizerPool&) = delete;

  // Queues `job`. False, and `job` is dropped without running, when the queue is full or the
  // pool was stopped.
  bool TrySubmit(std::function<void()> job);

  // Refuses new jobs, runs every job already queued (each must finish its call), then joins the
  // threads. Idempotent.
  void Stop();

  int queue_capacity() const { return queue_capacity_; }
  // Jobs waiting (not running); for tests and logs.
  int queued() const;

 private:
  void WorkerLoop();

  const int queue_capacity_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;  // guarded by mu_
  bool stopping_ = false;                    // guarded by mu_
  std::vector<std::thread> threads_;
  std::mutex stop_mu_;  // serialises Stop
};

}  // namespace zigzag
