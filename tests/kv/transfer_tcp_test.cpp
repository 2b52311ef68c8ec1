// The tcp transfer backend against a real TransferServer over loopback sockets: ports picked by the
// kernel, every wait bounded.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>

#include "common/error.hpp"
#include "kv/transfer/auth.hpp"
#include "kv/transfer/layout.hpp"
#include "kv/transfer/pin_registry.hpp"
#include "kv/transfer/tcp_backend.hpp"
#include "kv/transfer/transfer_server.hpp"

namespace llmd::kv::transfer {
namespace {

using namespace std::chrono_literals;
using Result = std::expected<void, XferError>;
using PeerResult = std::expected<std::unique_ptr<Peer>, XferError>;

// Odd sizes on purpose: nothing may assume aligned or power-of-two segments.
KvLayout small_layout() {
  return {.n_segments = 6,
          .segment_bytes = 3000,
          .segment_stride = 40 * 3000 + 64,
          .n_blocks = 40,
          .block_size = 16,
          .dtype = 0};
}

struct Arena {
  explicit Arena(KvLayout l, uint32_t seed) : layout(l), mem(l.arena_bytes()) {
    std::mt19937_64 rng(seed);
    for (auto& b : mem) b = static_cast<std::byte>(rng());
  }
  KvRegion region() { return {layout, mem.data()}; }
  bool block_equal(const Arena& other, int32_t b, int32_t ob) const {
    for (uint32_t s = 0; s < layout.n_segments; ++s)
      if (std::memcmp(mem.data() + layout.offset(b, s), other.mem.data() + layout.offset(ob, s),
                      layout.segment_bytes) != 0)
        return false;
    return true;
  }
  KvLayout layout;
  std::vector<std::byte> mem;
};

BlockHash key_of(int32_t b) {
  return {0x1000u + static_cast<uint64_t>(b), 0xabcdu};
}

class TransferTcp : public ::testing::Test {
 protected:
  void TearDown() override {
    peers_.clear();
    client_io_.restart();
    client_io_.poll();  // reader loops see their sockets closed
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

  // A server on its own thread, as in `llmd serve`: the reader's thread is the test's.
  void start_server(TransferConfig cfg, std::string engine_id = {}) {
    server_ = std::make_unique<TransferServer>(
        server_io_.get_executor(), std::move(cfg), src_.region(), "fp:1", pins_,
        [this](std::string_view id, ReleaseOutcome o) {
          released_id_ = std::string(id);
          released_outcome_ = o;
          ++released_;
        },
        std::move(engine_id));
    server_->start();
    server_thread_ = std::thread([this] { server_io_.run(); });
  }

  std::unique_ptr<TcpBackend> backend(TransferConfig cfg, KvLayout l, std::string fp = "fp:1") {
    if (l != dst_.layout) dst_ = Arena(l, 2);
    return std::make_unique<TcpBackend>(client_io_.get_executor(), std::move(cfg), dst_.region(),
                                        std::move(fp));
  }
  std::unique_ptr<TcpBackend> backend() { return backend(config(), small_layout()); }

  // Runs one coroutine on the client's io_context to completion, within 20 s.
  template <class T>
  T run(asio::awaitable<T> a) {
    std::optional<T> out;
    std::exception_ptr ex;
    asio::co_spawn(client_io_, std::move(a), [&](std::exception_ptr e, T v) {
      ex = e;
      if (!e) out = std::move(v);
    });
    client_io_.restart();  // an io_context that ran out of work stays stopped until then
    const auto until = std::chrono::steady_clock::now() + 20s;
    while (!out && !ex && std::chrono::steady_clock::now() < until) client_io_.run_one_for(50ms);
    if (ex) std::rethrow_exception(ex);
    if (!out) throw std::runtime_error("the coroutine did not finish within 20 s");
    return std::move(*out);
  }

  Peer& prepare(TcpBackend& b, PeerInfo info = {}) {
    if (info.host.empty()) info.host = "127.0.0.1";
    if (info.port == 0) info.port = server_->port();
    auto p = run(b.prepare(info));
    if (!p) throw std::runtime_error(fmt::format("prepare: {}", to_string(p.error())));
    peers_.push_back(std::move(*p));
    return *peers_.back();
  }

  // Pins `blocks` of the source under `id`, and returns pairs that pull them into `local`.
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

  asio::io_context server_io_;
  asio::io_context client_io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(server_io_);
  std::thread server_thread_;
  PinRegistry pins_;
  Arena src_{small_layout(), 1};
  Arena dst_{small_layout(), 2};
  std::unique_ptr<TransferServer> server_;
  std::vector<std::unique_ptr<Peer>> peers_;
  std::atomic<int> released_{0};
  std::string released_id_;
  ReleaseOutcome released_outcome_{};
};

TEST_F(TransferTcp, RandomBlocksArriveByteEqual) {
  start_server(config());
  auto b = backend();
  Peer& peer = prepare(*b);
  const Arena before = dst_;
  const auto pairs = pin("req-1", {3, 7, 12, 39}, {0, 1, 2, 30});
  ASSERT_TRUE(run(b->read(peer, "req-1", pairs)));
  for (const BlockPair& p : pairs) EXPECT_TRUE(dst_.block_equal(src_, p.local, p.remote)) << p.local;
  for (int32_t other : {3, 4, 29, 31, 39}) EXPECT_TRUE(dst_.block_equal(before, other, other)) << other;
  EXPECT_TRUE(peer.usable());
}

TEST_F(TransferTcp, PipelinedReadsOnOneConnection) {
  start_server(config());
  auto b = backend();
  Peer& peer = prepare(*b);
  constexpr int kReads = 8;
  std::vector<std::vector<BlockPair>> jobs;
  for (int r = 0; r < kReads; ++r)
    jobs.push_back(pin(fmt::format("req-{}", r), {r * 4, r * 4 + 1, r * 4 + 2, r * 4 + 3},
                       {39 - r * 4, 38 - r * 4, 37 - r * 4, 36 - r * 4}));
  std::vector<std::optional<Result>> results(kReads);
  std::vector<std::string> ids;  // alive until the reads complete, as read() requires
  for (int r = 0; r < kReads; ++r) ids.push_back(fmt::format("req-{}", r));
  for (int r = 0; r < kReads; ++r)
    asio::co_spawn(client_io_, b->read(peer, ids[r], jobs[r]),
                   [&results, r](std::exception_ptr, Result v) { results[r] = v; });
  const auto until = std::chrono::steady_clock::now() + 20s;
  const auto all_done = [&] { return std::ranges::all_of(results, [](auto& x) { return x.has_value(); }); };
  while (!all_done() && std::chrono::steady_clock::now() < until) client_io_.run_one_for(50ms);
  ASSERT_TRUE(all_done());
  for (int r = 0; r < kReads; ++r) {
    EXPECT_TRUE(*results[r]) << r;
    for (const BlockPair& p : jobs[r]) EXPECT_TRUE(dst_.block_equal(src_, p.local, p.remote));
  }
}

TEST_F(TransferTcp, ManyBlocksInSeveralGatherWrites) {
  TransferConfig c = config();
  c.write_batch_bytes = 5 * small_layout().block_bytes() + 1;  // batches of 5 blocks
  start_server(c);
  auto b = backend();
  Peer& peer = prepare(*b);
  std::vector<int32_t> remote(40), local(40);
  for (int i = 0; i < 40; ++i) remote[i] = i, local[i] = 39 - i;
  const auto pairs = pin("all", remote, local);
  ASSERT_TRUE(run(b->read(peer, "all", pairs)));
  for (const BlockPair& p : pairs) EXPECT_TRUE(dst_.block_equal(src_, p.local, p.remote));
}

TEST_F(TransferTcp, CorruptBlockGivesChecksumAndTheConnectionStaysUsable) {
  TransferConfig c = config();
  c.fault = {TransferConfig::Fault::kCorrupt, 1};
  start_server(c);
  auto b = backend();
  Peer& peer = prepare(*b);
  EXPECT_EQ(run(b->read(peer, "r", pin("r", {5, 6, 7}, {0, 1, 2}))), std::unexpected(XferError::kChecksum));
  EXPECT_TRUE(peer.usable());
  // Block index 1 of every READ is corrupted; a one-block READ is not.
  EXPECT_TRUE(run(b->read(peer, "s", pin("s", {9}, {3}))));
  EXPECT_TRUE(dst_.block_equal(src_, 3, 9));
}

TEST_F(TransferTcp, TruncatedTransferGivesTruncated) {
  TransferConfig c = config();
  c.fault = {TransferConfig::Fault::kTruncate, 1};
  start_server(c);
  auto b = backend();
  Peer& peer = prepare(*b);
  EXPECT_EQ(run(b->read(peer, "r", pin("r", {5, 6, 7}, {0, 1, 2}))), std::unexpected(XferError::kTruncated));
  EXPECT_FALSE(peer.usable());
  EXPECT_EQ(run(b->read(peer, "r", pin("r", {5}, {0}))), std::unexpected(XferError::kTruncated));
}

TEST_F(TransferTcp, WrongKeyGivesKeyMismatch) {
  start_server(config());
  auto b = backend();
  Peer& peer = prepare(*b);
  auto pairs = pin("r", {5, 6}, {0, 1});
  pairs[1].key.hi ^= 1;  // another prompt or salt
  EXPECT_EQ(run(b->read(peer, "r", pairs)), std::unexpected(XferError::kKeyMismatch));
  EXPECT_TRUE(peer.usable());
}

TEST_F(TransferTcp, UnknownRequestAndUnpinnedBlockAreRefusedBeforeAnyData) {
  start_server(config());
  auto b = backend();
  Peer& peer = prepare(*b);
  const Arena before = dst_;
  const auto pairs = pin("r", {5, 6}, {0, 1});
  EXPECT_EQ(run(b->read(peer, "nope", pairs)), std::unexpected(XferError::kUnknownRequest));
  std::vector<BlockPair> unpinned = pairs;
  unpinned.push_back({8, 2, key_of(8)});
  EXPECT_EQ(run(b->read(peer, "r", unpinned)), std::unexpected(XferError::kBadBlock));
  std::vector<BlockPair> outside = {{1000, 2, key_of(1000)}};
  EXPECT_EQ(run(b->read(peer, "r", outside)), std::unexpected(XferError::kBadBlock));
  for (int32_t l : {0, 1, 2}) EXPECT_TRUE(dst_.block_equal(before, l, l));
  // After an unpin nothing is readable; the connection is still fine.
  EXPECT_TRUE(pins_.unpin("r"));
  EXPECT_EQ(run(b->read(peer, "r", pairs)), std::unexpected(XferError::kUnknownRequest));
  EXPECT_TRUE(peer.usable());
}

TEST_F(TransferTcp, WrongSecretIsRefused) {
  TransferConfig c = config("the-server-secret");
  c.host = "127.0.0.1";
  start_server(c);
  auto b = backend(config("another-secret"), small_layout());
  const auto p = run(b->prepare({"", "127.0.0.1", server_->port()}));
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error(), XferError::kAuth);
  // The right secret still gets in.
  auto good = backend(config("the-server-secret"), small_layout());
  EXPECT_TRUE(run(good->prepare({"", "127.0.0.1", server_->port()})));
}

TEST_F(TransferTcp, IncompatibleLayoutOrFingerprintIsRefused) {
  start_server(config());
  KvLayout other_bs = small_layout();
  other_bs.block_size = 32;
  auto b1 = backend(config(), other_bs);
  EXPECT_EQ(run(b1->prepare({"", "127.0.0.1", server_->port()})).error(), XferError::kIncompatible);
  KvLayout other_dtype = small_layout();
  other_dtype.dtype = 1;
  auto b2 = backend(config(), other_dtype);
  EXPECT_EQ(run(b2->prepare({"", "127.0.0.1", server_->port()})).error(), XferError::kIncompatible);
  auto b3 = backend(config(), small_layout(), "fp:2");
  EXPECT_EQ(run(b3->prepare({"", "127.0.0.1", server_->port()})).error(), XferError::kIncompatible);
}

TEST_F(TransferTcp, OtherEngineIdGivesEngineRestarted) {
  start_server(config(), "engine-a");
  auto b = backend();
  EXPECT_EQ(run(b->prepare({"engine-b", "127.0.0.1", server_->port()})).error(), XferError::kEngineRestarted);
  EXPECT_TRUE(run(b->prepare({"engine-a", "127.0.0.1", server_->port()})));
}

TEST_F(TransferTcp, ReleaseReachesTheCallback) {
  start_server(config());
  auto b = backend();
  Peer& peer = prepare(*b);
  ASSERT_TRUE(run(b->release(peer, "req-9", ReleaseOutcome::kPulled)));
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (released_ == 0 && std::chrono::steady_clock::now() < until) {
    client_io_.poll();
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_EQ(released_, 1);
  server_->stop();  // joins the server thread's view of released_id_ through the join below
  work_.reset();
  server_thread_.join();
  EXPECT_EQ(released_id_, "req-9");
  EXPECT_EQ(released_outcome_, ReleaseOutcome::kPulled);
}

TEST_F(TransferTcp, SilentServerTimesOutAndClosedPortFailsToConnect) {
  // A listener that never says HELLO.
  asio::ip::tcp::acceptor silent(client_io_, {asio::ip::make_address("127.0.0.1"), 0});
  TransferConfig c = config();
  c.auth_timeout = 200ms;
  auto b = backend(c, small_layout());
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(run(b->prepare({"", "127.0.0.1", silent.local_endpoint().port()})).error(), XferError::kTimeout);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);

  const uint16_t closed = silent.local_endpoint().port();
  silent.close();
  EXPECT_EQ(run(b->prepare({"", "127.0.0.1", closed})).error(), XferError::kConnect);
}

// A server that authenticates properly, then answers a READ with a frame of an unknown type.
asio::awaitable<void> rogue_server(asio::ip::tcp::acceptor& acc, KvLayout l) {
  auto sock = co_await acc.async_accept(asio::use_awaitable);
  const Authenticator auth("s3cret");
  wire::Hello hello;
  hello.nonce = random_nonce();
  hello.layout = l;
  hello.fingerprint = "fp:1";
  wire::Bytes f;
  (void)wire::encode(hello, f);
  co_await asio::async_write(sock, asio::buffer(f), asio::use_awaitable);
  std::array<uint8_t, wire::kFrameHeaderBytes + 64> in;
  co_await asio::async_read(sock, asio::buffer(in), asio::use_awaitable);
  wire::Auth a;
  if (!wire::decode(std::span<const uint8_t>(in).subspan(wire::kFrameHeaderBytes), a)) co_return;
  f.clear();
  wire::encode(wire::AuthOk{auth.server_mac(a.nonce, hello.nonce)}, f);
  co_await asio::async_write(sock, asio::buffer(f), asio::use_awaitable);
  std::array<uint8_t, 64> read_frame;
  co_await sock.async_read_some(asio::buffer(read_frame), asio::use_awaitable);
  const std::array<uint8_t, wire::kFrameHeaderBytes> unknown = {99, 0, 0, 0, 0, 0, 0, 0};
  co_await asio::async_write(sock, asio::buffer(unknown), asio::use_awaitable);
  boost::system::error_code ec;
  co_await sock.async_read_some(asio::buffer(read_frame), asio::redirect_error(asio::use_awaitable, ec));
}

TEST_F(TransferTcp, UnknownFrameFromTheServerGivesProtocol) {
  asio::ip::tcp::acceptor acc(client_io_, {asio::ip::make_address("127.0.0.1"), 0});
  asio::co_spawn(client_io_, rogue_server(acc, small_layout()), asio::detached);
  auto b = backend();
  auto p = run(b->prepare({"", "127.0.0.1", acc.local_endpoint().port()}));
  ASSERT_TRUE(p) << to_string(p.error());
  const std::vector<BlockPair> pairs = {{1, 1, key_of(1)}};
  EXPECT_EQ(run(b->read(**p, "r", pairs)), std::unexpected(XferError::kProtocol));
  EXPECT_FALSE((*p)->usable());
  peers_.push_back(std::move(*p));
}

TEST_F(TransferTcp, EmptySecretOrBadAddressIsRefusedAtConstruction) {
  EXPECT_THROW(TransferServer(server_io_.get_executor(), config(""), src_.region(), "fp", pins_), Error);
  TransferConfig bad = config();
  bad.host = "not-an-address";
  EXPECT_THROW(TransferServer(server_io_.get_executor(), bad, src_.region(), "fp", pins_), Error);
  EXPECT_THROW(TcpBackend(client_io_.get_executor(), config(""), dst_.region(), "fp"), Error);
}

}  // namespace
}  // namespace llmd::kv::transfer
