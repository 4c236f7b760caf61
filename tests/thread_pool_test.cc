// The CPU backend's ThreadPool: ParallelFor covers [0, n) exactly once in contiguous chunks,
// respects min_chunk, runs inline when it should, and survives many back-to-back jobs, whether a
// hand-off finds the other side spinning or asleep.
#include "kernels/cpu/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace zigzag {
namespace {

struct Chunks {
  std::vector<std::pair<int64_t, int64_t>> ranges;
  std::vector<std::thread::id> threads;
};

// The chunks one ParallelFor call hands out, sorted, and the threads that ran them.
Chunks RecordChunks(ThreadPool& pool, int64_t n, int64_t min_chunk) {
  Chunks chunks;
  std::mutex mutex;
  pool.ParallelFor(
      n,
      [&](int64_t begin, int64_t end) {
        std::lock_guard<std::mutex> lock(mutex);
        chunks.ranges.emplace_back(begin, end);
        chunks.threads.push_back(std::this_thread::get_id());
      },
      min_chunk);
  std::sort(chunks.ranges.begin(), chunks.ranges.end());
  return chunks;
}

TEST(ThreadPoolTest, ChunksTileTheRangeContiguously) {
  ThreadPool pool(4);
  EXPECT_EQ(pool.num_threads(), 4);
  for (int64_t n : {2, 3, 4, 5, 7, 100, 1001}) {
    const Chunks chunks = RecordChunks(pool, n, 1);
    ASSERT_EQ(chunks.ranges.size(), static_cast<size_t>(std::min<int64_t>(n, 4))) << "n " << n;
    int64_t expected_begin = 0;
    int64_t smallest = n, largest = 0;
    for (const auto& [begin, end] : chunks.ranges) {
      EXPECT_EQ(begin, expected_begin);
      EXPECT_LT(begin, end);
      smallest = std::min(smallest, end - begin);
      largest = std::max(largest, end - begin);
      expected_begin = end;
    }
    EXPECT_EQ(expected_begin, n);
    EXPECT_LE(largest - smallest, 1) << "chunks are balanced";
  }
}

TEST(ThreadPoolTest, MinChunkBoundsTheChunkCountAndSmallLoopsRunInline) {
  ThreadPool pool(4);
  const Chunks small = RecordChunks(pool, 15, 8);  // 15 < 2 * 8: one chunk on the caller
  ASSERT_EQ(small.ranges.size(), 1u);
  EXPECT_EQ(small.ranges[0], std::make_pair(int64_t{0}, int64_t{15}));
  EXPECT_EQ(small.threads[0], std::this_thread::get_id());

  const Chunks medium = RecordChunks(pool, 30, 8);  // 3 chunks of 10
  ASSERT_EQ(medium.ranges.size(), 3u);
  for (const auto& [begin, end] : medium.ranges) EXPECT_GE(end - begin, 8);

  EXPECT_TRUE(RecordChunks(pool, 0, 1).ranges.empty());
  EXPECT_TRUE(RecordChunks(pool, -3, 1).ranges.empty());
}

TEST(ThreadPoolTest, OneThreadRunsEverythingOnTheCaller) {
  ThreadPool pool(1);
  const Chunks chunks = RecordChunks(pool, 1000, 1);
  ASSERT_EQ(chunks.ranges.size(), 1u);
  EXPECT_EQ(chunks.threads[0], std::this_thread::get_id());
}

TEST(ThreadPoolTest, ZeroMeansHardwareConcurrency) {
  ThreadPool pool(0);
  EXPECT_GE(pool.num_threads(), 1);
}

TEST(ThreadPoolTest, ManyConsecutiveJobsEachCoverEveryItemOnce) {
  ThreadPool pool(3);
  std::vector<std::atomic<int>> hits(257);
  for (int job = 0; job < 2000; ++job) {
    const int64_t n = 1 + job % 257;
    pool.ParallelFor(n, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) hits[i].fetch_add(1, std::memory_order_relaxed);
    });
  }
  // Item i is inside the job iff i < n, i.e. for n = i + 1 .. 257 within each cycle of 257 jobs.
  for (int64_t i = 0; i < 257; ++i) {
    int expected = 0;
    for (int job = 0; job < 2000; ++job) expected += (i < 1 + job % 257) ? 1 : 0;
    EXPECT_EQ(hits[i].load(), expected) << "item " << i;
  }
}

TEST(ThreadPoolTest, JobsArriveAndFinishWhetherTheOtherSideSpinsOrSleeps) {
  // Each side spins ~100 us before it sleeps. Gaps between jobs of 0 us and 2 ms make workers
  // find the next job while spinning and after sleeping; chunks of 0 us and 2 ms make the caller
  // see the workers finish while it spins and after it slept. Every item must be run once.
  ThreadPool pool(3);
  std::vector<std::atomic<int>> hits(3);
  int jobs = 0;
  for (int gap_us : {0, 2000}) {
    for (int work_us : {0, 2000}) {
      for (int repeat = 0; repeat < 20; ++repeat) {
        if (gap_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(gap_us));
        pool.ParallelFor(3, [&](int64_t begin, int64_t end) {
          if (work_us > 0 && begin > 0) {
            std::this_thread::sleep_for(std::chrono::microseconds(work_us));
          }
          for (int64_t i = begin; i < end; ++i) hits[i].fetch_add(1);
        });
        ++jobs;
        // ParallelFor returned: every chunk of this job ran, none of the next has started.
        for (int i = 0; i < 3; ++i) ASSERT_EQ(hits[i].load(), jobs) << "item " << i;
      }
    }
  }
}

}  // namespace
}  // namespace zigzag
