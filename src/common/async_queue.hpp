#pragma once
// Cross-thread hand-off into a coroutine. The engine thread pushes token batches and must never
// block on the HTTP side; the consumer coroutine suspends in pop() until an item, close() or the
// connection's cancellation wakes it. Boost 1.74 has no asio channels, so the wait is a plain
// async operation whose completion handler is posted back to the coroutine's own executor (so the
// coroutine always resumes on its strand, never inline on the producer's thread). No polling.
#include "common/asio.hpp"

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>

namespace llmd {

// A one-shot, thread-safe "this request is dead" flag with callbacks. The HTTP server fires it
// when the client disconnects or the server stops; waits (AsyncQueue::pop) subscribe to it.
class CancelSignal {
 public:
  using Callback = std::function<void()>;

  bool fired() const {
    std::lock_guard lk(mu_);
    return fired_;
  }

  // Runs every subscribed callback once; later fire() calls do nothing.
  void fire() {
    // Callbacks run under the lock so that unsubscribe() returning means "my callback is not
    // running and never will": a waiter can then be destroyed safely.
    std::lock_guard lk(mu_);
    if (fired_) return;
    fired_ = true;
    for (auto& [id, cb] : callbacks_) cb();
    callbacks_.clear();
  }

  // RAII registration; the callback runs at once if the signal already fired.
  class Subscription {
   public:
    Subscription() = default;
    Subscription(CancelSignal* s, std::uint64_t id) : s_(s), id_(id) {}
    Subscription(Subscription&& o) noexcept : s_(std::exchange(o.s_, nullptr)), id_(o.id_) {}
    Subscription& operator=(Subscription&& o) noexcept {
      reset();
      s_ = std::exchange(o.s_, nullptr);
      id_ = o.id_;
      return *this;
    }
    ~Subscription() { reset(); }
    void reset() {
      if (s_) std::exchange(s_, nullptr)->unsubscribe(id_);
    }

   private:
    CancelSignal* s_ = nullptr;
    std::uint64_t id_ = 0;
  };

  // Callbacks must be short and must not call back into this signal.
  [[nodiscard]] Subscription subscribe(Callback cb) {
    std::lock_guard lk(mu_);
    if (fired_) {
      cb();
      return {};
    }
    auto id = next_id_++;
    callbacks_.emplace(id, std::move(cb));
    return {this, id};
  }

 private:
  void unsubscribe(std::uint64_t id) {
    std::lock_guard lk(mu_);
    callbacks_.erase(id);
  }

  mutable std::mutex mu_;
  bool fired_ = false;
  std::uint64_t next_id_ = 1;
  std::map<std::uint64_t, Callback> callbacks_;
};

// Many producers (any thread), one consumer coroutine. Unbounded: the producer is never blocked;
// the engine bounds what it produces per request. Keep the queue alive (e.g. shared_ptr owned by
// both sides) until the producer is done pushing.
template <class T>
class AsyncQueue {
 public:
  AsyncQueue() = default;
  AsyncQueue(const AsyncQueue&) = delete;
  AsyncQueue& operator=(const AsyncQueue&) = delete;

  // Returns false (and drops the item) once closed, so a producer can stop early.
  bool push(T item) {
    std::unique_ptr<Waiter> w;
    {
      std::lock_guard lk(mu_);
      if (closed_) return false;
      items_.push_back(std::move(item));
      w = std::move(waiter_);
    }
    if (w) w->wake();
    return true;
  }

  // Items already queued are still delivered; pop() yields nullopt after them.
  void close() {
    std::unique_ptr<Waiter> w;
    {
      std::lock_guard lk(mu_);
      closed_ = true;
      w = std::move(waiter_);
    }
    if (w) w->wake();
  }

  bool closed() const {
    std::lock_guard lk(mu_);
    return closed_;
  }

  std::size_t size() const {
    std::lock_guard lk(mu_);
    return items_.size();
  }

  // Non-blocking take, for consumers that drain a batch after a pop() woke them.
  std::optional<T> try_pop() {
    std::lock_guard lk(mu_);
    if (items_.empty()) return std::nullopt;
    T v = std::move(items_.front());
    items_.pop_front();
    return v;
  }

  // The next item; nullopt when closed and drained, or as soon as `cancel` fires (queued items are
  // then abandoned: the client is gone). One consumer at a time.
  asio::awaitable<std::optional<T>> pop(CancelSignal* cancel = nullptr) {
    for (;;) {
      if (cancel && cancel->fired()) co_return std::nullopt;
      {
        std::lock_guard lk(mu_);
        if (!items_.empty()) {
          T v = std::move(items_.front());
          items_.pop_front();
          co_return v;
        }
        if (closed_) co_return std::nullopt;
      }
      CancelSignal::Subscription sub;
      co_await asio::async_initiate<const asio::use_awaitable_t<>&, void()>(
          [&](auto handler) {
            std::unique_lock lk(mu_);
            bool ready = !items_.empty() || closed_;
            if (!ready) waiter_ = std::make_unique<HandlerWaiter<decltype(handler)>>(std::move(handler));
            lk.unlock();
            if (ready) {  // raced with a producer: resume at once (still via post, never inline)
              HandlerWaiter<decltype(handler)>(std::move(handler)).wake();
              return;
            }
            if (cancel) sub = cancel->subscribe([this] { wake_waiter(); });
          },
          asio::use_awaitable);
    }
  }

 private:
  struct Waiter {
    virtual ~Waiter() = default;
    virtual void wake() = 0;
  };
  template <class Handler>
  struct HandlerWaiter final : Waiter {
    explicit HandlerWaiter(Handler h) : handler(std::move(h)) {}
    void wake() override {
      auto ex = asio::get_associated_executor(handler);
      asio::post(ex, [h = std::move(handler)]() mutable { h(); });
    }
    Handler handler;
  };

  void wake_waiter() {
    std::unique_ptr<Waiter> w;
    {
      std::lock_guard lk(mu_);
      w = std::move(waiter_);
    }
    if (w) w->wake();
  }

  mutable std::mutex mu_;
  std::deque<T> items_;
  bool closed_ = false;
  std::unique_ptr<Waiter> waiter_;
};

}  // namespace llmd
