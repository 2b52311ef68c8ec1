#pragma once
// A persistent pool of worker threads for the forward pass. The calling thread takes part as
// worker 0, so `--threads 2` means two threads doing work. Dispatch allocates nothing: a job is a
// function reference plus a task count, workers spin briefly then sleep between jobs.
#include <cstdint>
#include <functional>
#include <memory>
#include <type_traits>

namespace llmd::engine::cpu {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const;

  // Runs fn(task, thread) for task in [0, n_tasks), spread over all threads; returns when all are
  // done. `thread` is in [0, size()) and lets tasks use per-thread scratch. Tasks must not throw.
  // A call from inside a task runs its tasks inline on that thread. One caller at a time.
  template <class F>
  void parallel_for(int64_t n_tasks, F&& fn) {
    // F is deduced as a reference for lvalue callables: strip it to name the callable's type.
    using Fn = std::remove_reference_t<F>;
    run(
        n_tasks, [](void* ctx, int64_t task, int thread) { (*static_cast<Fn*>(ctx))(task, thread); },
        const_cast<void*>(static_cast<const void*>(std::addressof(fn))));
  }

 private:
  using TaskFn = void (*)(void* ctx, int64_t task, int thread);
  void run(int64_t n_tasks, TaskFn fn, void* ctx);
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace llmd::engine::cpu
