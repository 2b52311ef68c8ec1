#include "common/async_queue.hpp"

#include <gtest/gtest.h>

#include <thread>

namespace llmd {
namespace {

using namespace std::chrono_literals;

// The engine-thread pattern: a producer thread pushes, a coroutine on a multi-threaded io_context
// (on a strand, as HTTP handlers are) pops, in order, without loss.
TEST(AsyncQueue, HundredThousandItemsFromAProducerThread) {
  constexpr int kItems = 100'000;
  asio::io_context ioc(2);
  auto q = std::make_shared<AsyncQueue<int>>();
  std::vector<int> got;
  got.reserve(kItems);
  asio::co_spawn(
      asio::make_strand(ioc),
      [&]() -> asio::awaitable<void> {
        while (auto v = co_await q->pop()) got.push_back(*v);
      },
      asio::detached);
  std::thread producer([q] {
    for (int i = 0; i < kItems; ++i) {
      q->push(i);
      if (i % 10'000 == 0) std::this_thread::sleep_for(1ms);  // let the consumer catch up and wait
    }
    q->close();
  });
  std::thread t2([&] { ioc.run(); });
  ioc.run();
  producer.join();
  t2.join();
  ASSERT_EQ(got.size(), std::size_t(kItems));
  for (int i = 0; i < kItems; ++i) ASSERT_EQ(got[i], i);
}

TEST(AsyncQueue, SeveralProducersLoseNothing) {
  asio::io_context ioc;
  AsyncQueue<int> q;
  long long sum = 0;
  int count = 0;
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        while (auto v = co_await q.pop()) {
          sum += *v;
          if (++count == 4 * 10'000) q.close();
        }
      },
      asio::detached);
  std::vector<std::thread> producers;
  for (int p = 0; p < 4; ++p)
    producers.emplace_back([&] {
      for (int i = 1; i <= 10'000; ++i) q.push(i);
    });
  ioc.run();
  for (auto& t : producers) t.join();
  EXPECT_EQ(count, 40'000);
  EXPECT_EQ(sum, 4LL * 10'000 * 10'001 / 2);
}

TEST(AsyncQueue, CloseDeliversQueuedItemsThenNullopt) {
  asio::io_context ioc;
  AsyncQueue<std::string> q;
  q.push("a");
  q.push("b");
  q.close();
  EXPECT_FALSE(q.push("c"));
  std::vector<std::string> got;
  bool ended = false;
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        while (auto v = co_await q.pop()) got.push_back(*v);
        ended = true;
      },
      asio::detached);
  ioc.run();
  EXPECT_EQ(got, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(ended);
}

TEST(AsyncQueue, CancelWakesAWaitingPop) {
  asio::io_context ioc;
  AsyncQueue<int> q;
  CancelSignal cancel;
  bool got_nullopt = false;
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        auto v = co_await q.pop(&cancel);
        got_nullopt = !v.has_value();
      },
      asio::detached);
  std::thread canceller([&] {
    std::this_thread::sleep_for(50ms);
    cancel.fire();
  });
  ioc.run();  // returns only once the pop completed
  canceller.join();
  EXPECT_TRUE(got_nullopt);
  EXPECT_TRUE(cancel.fired());
}

TEST(AsyncQueue, AlreadyFiredCancelReturnsAtOnce) {
  asio::io_context ioc;
  AsyncQueue<int> q;
  q.push(1);
  CancelSignal cancel;
  cancel.fire();
  std::optional<int> v = 7;
  asio::co_spawn(
      ioc, [&]() -> asio::awaitable<void> { v = co_await q.pop(&cancel); }, asio::detached);
  ioc.run();
  EXPECT_FALSE(v.has_value());
}

TEST(AsyncQueue, SubscriptionEndsCallbacks) {
  CancelSignal s;
  int calls = 0;
  {
    auto sub = s.subscribe([&] { ++calls; });
  }
  auto kept = s.subscribe([&] { ++calls; });
  s.fire();
  s.fire();
  EXPECT_EQ(calls, 1);
  auto late = s.subscribe([&] { ++calls; });  // runs at once
  EXPECT_EQ(calls, 2);
}

}  // namespace
}  // namespace llmd
