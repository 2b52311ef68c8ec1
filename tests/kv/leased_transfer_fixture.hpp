#pragma once
// What the shm and ucx backend tests share: a region of random bytes, pins, and a real
// TransferServer with readers of either backend.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>
#include <type_traits>

#include "common/error.hpp"
#include "common/shared_arena.hpp"
#include "kv/transfer/layout.hpp"
#include "kv/transfer/pin_registry.hpp"
#include "kv/transfer/shm_backend.hpp"
#include "kv/transfer/socket_io.hpp"
#include "kv/transfer/transfer_server.hpp"
#include "kv/transfer/ucx_backend.hpp"

namespace llmd::kv::transfer::test_support {

using namespace std::chrono_literals;
using Result = std::expected<void, XferError>;

inline KvLayout small_layout() {
  return {.n_segments = 6,
          .segment_bytes = 3000,
          .segment_stride = 40 * 3000 + 64,
          .n_blocks = 40,
          .block_size = 16,
          .dtype = 0};
}

inline void fill_random(std::span<std::byte> m, uint32_t seed) {
  std::mt19937_64 rng(seed);
  for (auto& b : m) b = static_cast<std::byte>(rng());
}

inline bool block_equal(const KvLayout& l, const std::byte* a, int32_t ab, const std::byte* b, int32_t bb) {
  for (uint32_t s = 0; s < l.n_segments; ++s)
    if (std::memcmp(a + l.offset(ab, s), b + l.offset(bb, s), l.segment_bytes) != 0) return false;
  return true;
}

inline BlockHash key_of(int32_t b) {
  return {0x2000u + static_cast<uint64_t>(b), 0x5eedu};
}

// A TransferServer on its own thread with a SharedArena as its region, and readers of type Backend
// (ShmBackend, UcxBackend) on this thread's io_context; every wait is bounded.
template <class Backend>
class LeasedTransferTest : public ::testing::Test {
 protected:
  LeasedTransferTest()
      : src_(SharedArena::create(small_layout().arena_bytes())), dst_(small_layout().arena_bytes()) {
    fill_random(src_.bytes(), 1);
    fill_random(dst_, 2);
  }

  void TearDown() override {
    peers_.clear();
    client_io_.restart();
    client_io_.poll();
    if (server_) server_->stop();
    work_.reset();
    if (server_thread_.joinable()) server_thread_.join();
  }

  TransferConfig config(std::string secret = "s3cret") {
    TransferConfig c;
    c.secret = std::move(secret);
    c.io_timeout = 5s;
    return c;
  }

  // `offer`: the backend's way in (offer_shm or offer_ucx); false leaves the server plain tcp.
  void start_server(TransferConfig cfg, bool offer = true) {
    server_ = std::make_unique<TransferServer>(server_io_.get_executor(), std::move(cfg),
                                               KvRegion{small_layout(), src_.data()}, "fp:1", pins_,
                                               [this](std::string_view id, ReleaseOutcome) {
                                                 released_id_ = std::string(id);
                                                 ++released_;
                                               });
    if (offer && std::is_same_v<Backend, ShmBackend>) server_->offer_shm(src_);
    if (offer && std::is_same_v<Backend, UcxBackend>) server_->offer_ucx();
    server_->start();
    server_thread_ = std::thread([this] { server_io_.run(); });
  }

  std::unique_ptr<Backend> backend(TransferConfig cfg, KvLayout l = small_layout(), std::string fp = "fp:1") {
    if (dst_.size() < l.arena_bytes()) dst_.resize(l.arena_bytes());
    return std::make_unique<Backend>(client_io_.get_executor(), std::move(cfg), KvRegion{l, dst_.data()},
                                     std::move(fp));
  }
  std::unique_ptr<Backend> backend() { return backend(config()); }

  template <class T>
  T run(asio::awaitable<T> a) {
    std::optional<T> out;
    std::exception_ptr ex;
    asio::co_spawn(client_io_, std::move(a), [&](std::exception_ptr e, T v) {
      ex = e;
      if (!e) out = std::move(v);
    });
    client_io_.restart();
    const auto until = std::chrono::steady_clock::now() + 20s;
    while (!out && !ex && std::chrono::steady_clock::now() < until) client_io_.run_one_for(50ms);
    if (ex) std::rethrow_exception(ex);
    if (!out) throw std::runtime_error("the coroutine did not finish within 20 s");
    return std::move(*out);
  }

  PeerInfo by_engine_id() { return {server_->engine_id(), "127.0.0.1", server_->port()}; }
  PeerInfo by_address() { return {"", "127.0.0.1", server_->port()}; }

  Peer& prepare(Backend& b, PeerInfo info) {
    auto p = run(b.prepare(std::move(info)));
    if (!p) throw std::runtime_error(fmt::format("prepare: {}", to_string(p.error())));
    peers_.push_back(std::move(*p));
    return *peers_.back();
  }

  std::vector<BlockPair> pin(const std::string& id, std::vector<int32_t> blocks, std::vector<int32_t> local) {
    std::vector<BlockHash> keys;
    std::vector<BlockPair> pairs;
    for (size_t i = 0; i < blocks.size(); ++i) {
      keys.push_back(key_of(blocks[i]));
      pairs.push_back({blocks[i], local[i], key_of(blocks[i])});
    }
    pins_.pin(id, std::move(blocks), std::move(keys));
    return pairs;
  }

  bool pulled(const BlockPair& p) const {
    return block_equal(small_layout(), dst_.data(), p.local, src_.data(), p.remote);
  }

  asio::io_context server_io_;
  asio::io_context client_io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(server_io_);
  std::thread server_thread_;
  PinRegistry pins_;
  SharedArena src_;
  std::vector<std::byte> dst_;
  std::unique_ptr<TransferServer> server_;
  std::vector<std::unique_ptr<Peer>> peers_;
  std::atomic<int> released_{0};
  std::string released_id_;
};

}  // namespace llmd::kv::transfer::test_support
