#include "engine/cpu/thread_pool.hpp"

#include <atomic>
#include <chrono>
#include <climits>
#include <thread>
#include <vector>

#include "common/error.hpp"

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace llmd::engine::cpu {
namespace {

// How long an idle thread spins before it sleeps. A forward pass dispatches a job every few tens
// of microseconds, so spinning keeps dispatch latency at the cost of a core-to-core cache miss; a
// thread idle for longer (between requests) sleeps so it does not take the core from others.
constexpr auto kSpin = std::chrono::microseconds(1000);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// Raw futex on Linux: std::atomic::wait would do, but libstdc++'s version spins on its own and
// always takes a lock in notify; the pool already knows whether anyone sleeps.
static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t) &&
              std::atomic<uint32_t>::is_always_lock_free);

void futex_wait(std::atomic<uint32_t>& a, uint32_t expected) {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&a), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
#else
  a.wait(expected);
#endif
}

void futex_wake_all(std::atomic<uint32_t>& a) {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&a), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
#else
  a.notify_all();
#endif
}

// Waits until `a` differs from `old`: spins for kSpin, then sleeps on the futex with `sleepers`
// raised so the writer knows to wake it. Returns the new value.
uint32_t wait_for_change(std::atomic<uint32_t>& a, uint32_t old, std::atomic<uint32_t>& sleepers) {
  uint32_t v = a.load(std::memory_order_acquire);
  if (v != old) return v;
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  for (int i = 1;; ++i) {
    cpu_relax();
    v = a.load(std::memory_order_acquire);
    if (v != old) return v;
    if ((i & 63) == 0 && std::chrono::steady_clock::now() > deadline) break;
  }
  // seq_cst on both sides (here: sleepers then a; writer: a then sleepers) means either the writer
  // sees the sleeper and wakes it, or the futex sees the new value and does not sleep.
  sleepers.fetch_add(1, std::memory_order_seq_cst);
  while ((v = a.load(std::memory_order_seq_cst)) == old) futex_wait(a, old);
  sleepers.fetch_sub(1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_acquire);
  return v;
}

thread_local bool t_in_task = false;

constexpr uint64_t kClosed = 0xffffffffu;  // ticket index meaning "job fields being rewritten"

}  // namespace

// A job is claimed task by task through `ticket` = (epoch << 32) | next task index, and the caller
// waits for `done` to reach the task count, not for the workers: a worker that the OS has not
// scheduled yet (the machine may be shared) cannot hold up a job whose tasks the others finished;
// when it wakes it finds the epoch moved on and goes back to waiting.
struct ThreadPool::State {
  int n_threads = 1;
  uint32_t epoch_now = 0;  // the caller's copy
  // Each hot atomic on its own line: workers poll `epoch` while tasks bump `ticket` and `done`.
  alignas(64) std::atomic<uint32_t> epoch{0};  // futex word: bumped once per job (and at shutdown)
  alignas(64) std::atomic<uint32_t> worker_sleepers{0};
  alignas(64) std::atomic<uint64_t> ticket{0};
  alignas(64) std::atomic<uint32_t> done{0};  // tasks finished in the current job
  std::atomic<uint32_t> caller_sleepers{0};
  // The job. A worker may read these while the caller rewrites them for the next job (seqlock
  // style): it only runs a task after a successful CAS on `ticket` with its epoch, which fails if
  // the fields changed under it (the caller closes the ticket, then fences, then writes).
  alignas(64) std::atomic<TaskFn> fn{nullptr};
  std::atomic<void*> ctx{nullptr};
  std::atomic<uint32_t> n_tasks{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;

  // Claims and runs tasks of job `e` until none is left. Returns how many this thread ran.
  void run_tasks(uint32_t e, TaskFn f, void* c, uint32_t n, int thread) {
    t_in_task = true;
    uint64_t s = ticket.load(std::memory_order_relaxed);
    while ((s >> 32) == e && (s & kClosed) < n) {
      if (!ticket.compare_exchange_weak(s, s + 1, std::memory_order_acquire, std::memory_order_relaxed))
        continue;
      f(c, static_cast<int64_t>(s & kClosed), thread);
      if (done.fetch_add(1, std::memory_order_seq_cst) + 1 == n &&
          caller_sleepers.load(std::memory_order_seq_cst) != 0)
        futex_wake_all(done);
      s = ticket.load(std::memory_order_relaxed);
    }
    t_in_task = false;
  }

  void worker(int thread) {
    uint32_t seen = 0;
    for (;;) {
      seen = wait_for_change(epoch, seen, worker_sleepers);
      if (stop.load(std::memory_order_acquire)) return;
      const TaskFn f = fn.load(std::memory_order_relaxed);
      void* const c = ctx.load(std::memory_order_relaxed);
      const uint32_t n = n_tasks.load(std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_acquire);  // pairs with the caller's release fence
      run_tasks(seen, f, c, n, thread);
    }
  }

  void publish(TaskFn f, void* c, uint32_t n) {
    const uint32_t e = ++epoch_now;
    ticket.store((uint64_t{e} << 32) | kClosed, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    fn.store(f, std::memory_order_relaxed);
    ctx.store(c, std::memory_order_relaxed);
    n_tasks.store(n, std::memory_order_relaxed);
    done.store(0, std::memory_order_relaxed);
    ticket.store(uint64_t{e} << 32, std::memory_order_release);
    epoch.store(e, std::memory_order_seq_cst);
    if (worker_sleepers.load(std::memory_order_seq_cst) != 0) futex_wake_all(epoch);
  }
};

ThreadPool::ThreadPool(int n_threads) : state_(std::make_unique<State>()) {
  if (n_threads < 1) fail("thread pool needs at least one thread, got {}", n_threads);
  state_->n_threads = n_threads;
  state_->threads.reserve(n_threads - 1);
  for (int i = 1; i < n_threads; ++i) state_->threads.emplace_back([s = state_.get(), i] { s->worker(i); });
}

ThreadPool::~ThreadPool() {
  state_->stop.store(true, std::memory_order_release);
  state_->publish(nullptr, nullptr, 0);
  for (auto& t : state_->threads) t.join();
}

int ThreadPool::size() const {
  return state_->n_threads;
}

void ThreadPool::run(int64_t n_tasks, TaskFn fn, void* ctx) {
  if (n_tasks <= 0) return;
  State& s = *state_;
  // One thread, one task, or a nested call from inside a task: run inline. Nested calls would
  // otherwise deadlock (the workers are busy with the outer job).
  if (s.n_threads == 1 || n_tasks == 1 || t_in_task) {
    for (int64_t t = 0; t < n_tasks; ++t) fn(ctx, t, 0);
    return;
  }
  if (n_tasks >= static_cast<int64_t>(kClosed))
    fail("thread pool: {} tasks is too many for one job", n_tasks);
  const auto n = static_cast<uint32_t>(n_tasks);
  s.publish(fn, ctx, n);
  s.run_tasks(s.epoch_now, fn, ctx, n, 0);
  // Only tasks that other threads claimed and are still running are waited for.
  uint32_t d = s.done.load(std::memory_order_acquire);
  while (d != n) d = wait_for_change(s.done, d, s.caller_sleepers);
}

}  // namespace llmd::engine::cpu
