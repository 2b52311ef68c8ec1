#include "engine/cpu/thread_pool.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "common/error.hpp"

namespace llmd::engine::cpu {
namespace {

TEST(ThreadPool, RejectsZeroThreads) {
  EXPECT_THROW(ThreadPool(0), llmd::Error);
}

TEST(ThreadPool, RunsEachTaskOnceWithValidThreadIds) {
  for (int n_threads : {1, 2, 3, 5}) {
    ThreadPool pool(n_threads);
    EXPECT_EQ(pool.size(), n_threads);
    for (int64_t n_tasks : {0, 1, 2, 7, 1000}) {
      std::vector<std::atomic<int>> hits(n_tasks);
      std::atomic<bool> bad_thread{false};
      pool.parallel_for(n_tasks, [&](int64_t task, int thread) {
        if (thread < 0 || thread >= n_threads) bad_thread = true;
        hits[task].fetch_add(1);
      });
      for (int64_t i = 0; i < n_tasks; ++i)
        ASSERT_EQ(hits[i].load(), 1) << n_threads << " threads, task " << i;
      EXPECT_FALSE(bad_thread);
    }
  }
}

TEST(ThreadPool, TasksRunConcurrently) {
  // Each task waits until every thread has started one: passes only if all threads take part.
  constexpr int kThreads = 3;
  ThreadPool pool(kThreads);
  std::atomic<int> arrived{0};
  std::atomic<bool> timed_out{false};
  pool.parallel_for(kThreads, [&](int64_t, int) {
    arrived.fetch_add(1);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (arrived.load() < kThreads) {
      if (std::chrono::steady_clock::now() > deadline) {
        timed_out = true;
        return;
      }
      std::this_thread::yield();
    }
  });
  EXPECT_FALSE(timed_out);
  EXPECT_EQ(arrived.load(), kThreads);
}

TEST(ThreadPool, RepeatedDispatchSeesPreviousResults) {
  ThreadPool pool(2);
  std::vector<int64_t> v(64, 0);
  for (int round = 0; round < 20000; ++round) {
    pool.parallel_for(static_cast<int64_t>(v.size()), [&](int64_t i, int) { v[i] += i; });
  }
  for (size_t i = 0; i < v.size(); ++i) ASSERT_EQ(v[i], static_cast<int64_t>(i) * 20000);
}

TEST(ThreadPool, MixedJobsWithLateWorkers) {
  // Task counts change from job to job and some tasks stall, so workers arrive late or find their
  // job gone; every job must still run each of its tasks exactly once.
  ThreadPool pool(3);
  std::vector<std::atomic<int>> hits(40);
  for (int round = 0; round < 3000; ++round) {
    const int64_t n = 2 + round % 37;
    pool.parallel_for(n, [&](int64_t i, int) {
      if (round % 97 == 0 && i == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
      hits[i].fetch_add(1, std::memory_order_relaxed);
    });
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].exchange(0), 1) << "round " << round << " task " << i;
  }
}

TEST(ThreadPool, WakesSleepingWorkers) {
  ThreadPool pool(3);
  for (int round = 0; round < 3; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // longer than the spin: workers sleep
    std::atomic<int64_t> sum{0};
    pool.parallel_for(100, [&](int64_t i, int) { sum += i; });
    EXPECT_EQ(sum.load(), 4950);
  }
}

TEST(ThreadPool, AcceptsLvalueAndConstCallables) {
  ThreadPool pool(2);
  std::atomic<int> n{0};
  auto fn = [&](int64_t, int) { n.fetch_add(1); };
  pool.parallel_for(10, fn);
  const auto& cfn = fn;
  pool.parallel_for(10, cfn);
  EXPECT_EQ(n.load(), 20);
}

TEST(ThreadPool, NestedCallRunsInline) {
  ThreadPool pool(2);
  std::atomic<int> n{0};
  pool.parallel_for(4, [&](int64_t, int) { pool.parallel_for(3, [&](int64_t, int) { n.fetch_add(1); }); });
  EXPECT_EQ(n.load(), 12);
}

}  // namespace
}  // namespace llmd::engine::cpu
