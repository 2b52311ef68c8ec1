// What only the shm backend does (transfer_leased_test.cpp has what it shares with ucx): the
// prefill's arena is a SharedArena, the server listens on TCP and on its abstract Unix socket, the
// reader maps the memfd it receives; leases seen by a reader by hand; the arena's seals.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>

#include "common/error.hpp"
#include "common/shared_arena.hpp"
#include "kv/transfer/auth.hpp"
#include "kv/transfer/layout.hpp"
#include "kv/transfer/pin_registry.hpp"
#include "kv/transfer/shm_backend.hpp"
#include "kv/transfer/socket_io.hpp"
#include "kv/transfer/transfer_server.hpp"
#include "leased_transfer_fixture.hpp"

namespace llmd::kv::transfer {
namespace {

using namespace test_support;

class TransferShm : public LeasedTransferTest<ShmBackend> {};

TEST_F(TransferShm, WithoutAnArenaNoShmIsOfferedAndPrepareFailsToConnect) {
  start_server(config(), /*shm=*/false);
  EXPECT_TRUE(server_->shm_name().empty());
  auto b = backend();
  EXPECT_EQ(run(b->prepare(by_engine_id())).error(), XferError::kConnect);  // no Unix socket
  EXPECT_EQ(run(b->prepare(by_address())).error(), XferError::kConnect);    // HELLO names none
}

// A reader by hand on the Unix socket, to stop between LEASE_OK and DONE.
struct RawClient {
  explicit RawClient(asio::io_context& io) : sock(io) {}
  unix_stream::socket sock;
  UnixDeadline deadline{sock};
  std::vector<uint8_t> payload;
  UniqueFd fd;
  wire::Hello hello;

  asio::awaitable<bool> handshake(std::string_view name, const std::string& secret) {
    deadline.expires_after(5s);
    co_await sock.async_connect(shm_endpoint(name), asio::use_awaitable);
    const auto h = co_await read_control_frame(sock, deadline, payload, false);
    if (!h || h->type != wire::FrameType::kHello || !wire::decode(payload, hello)) co_return false;
    const Authenticator auth(secret);
    const wire::Nonce nonce = random_nonce();
    wire::Bytes f;
    wire::encode(wire::Auth{nonce, auth.client_mac(hello.nonce, nonce)}, f);
    const auto w = co_await write_all(sock, deadline, f);
    if (!w) co_return false;
    std::array<uint8_t, wire::kFrameHeaderBytes + 32> ok;
    const auto r = co_await read_with_fd(sock, deadline, ok, fd);
    if (!r) co_return false;
    co_return ok[0] == static_cast<uint8_t>(wire::FrameType::kAuthOk) && ok[2] == wire::kFlagFd&& fd;
  }
  // The type of the next frame from the server, or -1 when the connection ended.
  asio::awaitable<int> send_and_read(wire::Bytes f) {
    deadline.expires_after(5s);
    const auto w = co_await write_all(sock, deadline, f);
    if (!w) co_return -1;
    const int t = co_await next();
    co_return t;
  }
  asio::awaitable<int> next() {
    const auto h = co_await read_control_frame(sock, deadline, payload, true);
    co_return h ? static_cast<int>(h->type) : -1;
  }
};

constexpr int kType(wire::FrameType t) {
  return static_cast<int>(t);
}

wire::Bytes lease_frame(uint64_t xfer, std::string id, std::vector<uint32_t> blocks) {
  wire::Bytes f;
  (void)wire::encode(wire::Lease{xfer, std::move(id), std::move(blocks)}, f);
  return f;
}

TEST_F(TransferShm, LeaseHoldsUnpinUntilDone) {
  start_server(config());
  pin("r", {4, 5}, {0, 1});
  RawClient c(client_io_);
  ASSERT_TRUE(run(c.handshake(server_->shm_name(), "s3cret")));
  EXPECT_EQ(run(c.send_and_read(lease_frame(1, "r", {4, 5}))), kType(wire::FrameType::kLeaseOk));
  wire::LeaseOk ok;
  ok.blocks.resize(2);
  ASSERT_TRUE(wire::decode(c.payload, 2, ok));
  EXPECT_EQ(ok.blocks[1].key, key_of(5));
  EXPECT_EQ(ok.blocks[1].checksum, block_checksum(small_layout(), src_.data(), 5));
  EXPECT_FALSE(pins_.unpin("r"));  // leased: the engine must wait
  wire::Bytes done;
  wire::encode(wire::Done{1}, done);
  EXPECT_EQ(run(c.send_and_read(done)), kType(wire::FrameType::kDoneOk));
  EXPECT_TRUE(pins_.unpin("r"));
  // A DONE for no lease is a protocol error.
  EXPECT_EQ(run(c.send_and_read(done)), kType(wire::FrameType::kError));
}

TEST_F(TransferShm, LeaseEndsAfterIoTimeoutOrWhenTheConnectionDrops) {
  TransferConfig cfg = config();
  cfg.io_timeout = 1s;  // long enough for a loaded CI machine to check the lease first
  start_server(cfg);
  pin("r", {4}, {0});
  {
    RawClient c(client_io_);
    ASSERT_TRUE(run(c.handshake(server_->shm_name(), "s3cret")));
    EXPECT_EQ(run(c.send_and_read(lease_frame(1, "r", {4}))), kType(wire::FrameType::kLeaseOk));
    EXPECT_FALSE(pins_.unpin("r"));
    // No DONE: the server closes the connection at io_timeout, which ends the lease.
    c.deadline.expires_after(5s);
    EXPECT_EQ(run(c.next()), -1);
    // The server ends the lease as it unwinds the connection, just after closing it.
    const auto until = std::chrono::steady_clock::now() + 5s;
    while (!pins_.unpin("r") && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(1ms);
    EXPECT_FALSE(pins_.pinned("r"));
  }
  pin("q", {6}, {0});
  {
    RawClient c(client_io_);
    ASSERT_TRUE(run(c.handshake(server_->shm_name(), "s3cret")));
    EXPECT_EQ(run(c.send_and_read(lease_frame(1, "q", {6}))), kType(wire::FrameType::kLeaseOk));
    EXPECT_FALSE(pins_.unpin("q"));
  }  // hang up
  const auto until = std::chrono::steady_clock::now() + 5s;
  while (!pins_.unpin("q") && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(1ms);
  EXPECT_FALSE(pins_.pinned("q"));
}

TEST(SharedArena, CreateSealsAndMapsReadOnly) {
  SharedArena a = SharedArena::create(10000);
  ASSERT_TRUE(a.writable());
  EXPECT_EQ(a.size(), 10000u);
  EXPECT_EQ(a.data()[9999], std::byte{0});  // zero-filled
  a.data()[123] = std::byte{42};
  EXPECT_EQ(::fcntl(a.fd(), F_GET_SEALS) & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
            F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
  EXPECT_NE(::ftruncate(a.fd(), 100), 0);  // sealed

  UniqueFd ro = a.readonly_fd();
  SharedArena r = SharedArena::map_readonly(ro.get(), 10000);
  EXPECT_FALSE(r.writable());
  EXPECT_EQ(r.data()[123], std::byte{42});
  a.data()[124] = std::byte{7};
  EXPECT_EQ(r.data()[124], std::byte{7});  // the same memory
  // What a peer receives cannot be mapped writable.
  EXPECT_EQ(::mmap(nullptr, 10000, PROT_READ | PROT_WRITE, MAP_SHARED, ro.get(), 0), MAP_FAILED);
  EXPECT_THROW(SharedArena::create(0), Error);
  EXPECT_THROW(r.readonly_fd(), Error);
}

TEST(SharedArena, MapReadonlyRefusesWrongSizeUnsealedOrNotAMemfd) {
  SharedArena a = SharedArena::create(8192);
  EXPECT_THROW(SharedArena::map_readonly(a.fd(), 8193), Error);  // claims more than there is
  EXPECT_THROW(SharedArena::map_readonly(a.fd(), 4096), Error);  // a different arena
  EXPECT_NO_THROW(SharedArena::map_readonly(a.fd(), 8192));

  UniqueFd unsealed(::memfd_create("t", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  ASSERT_TRUE(unsealed);
  ASSERT_EQ(::ftruncate(unsealed.get(), 8192), 0);
  EXPECT_THROW(SharedArena::map_readonly(unsealed.get(), 8192), Error);  // may shrink under us
  ASSERT_EQ(::fcntl(unsealed.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
  EXPECT_THROW(SharedArena::map_readonly(unsealed.get(), 8192), Error);  // not sealed for good

  UniqueFd no_sealing(::memfd_create("t", MFD_CLOEXEC));  // F_SEAL_SEAL from birth: can never be sealed
  ASSERT_EQ(::ftruncate(no_sealing.get(), 8192), 0);
  EXPECT_THROW(SharedArena::map_readonly(no_sealing.get(), 8192), Error);

  UniqueFd truncated(::memfd_create("t", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  ASSERT_EQ(::ftruncate(truncated.get(), 4096), 0);
  ASSERT_EQ(::fcntl(truncated.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), 0);
  EXPECT_THROW(SharedArena::map_readonly(truncated.get(), 8192), Error);

  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  UniqueFd p0(pipe_fds[0]), p1(pipe_fds[1]);
  EXPECT_THROW(SharedArena::map_readonly(p0.get(), 8192), Error);
}

TEST_F(TransferShm, ServerRefusesAnArenaThatIsNotItsRegion) {
  SharedArena other = SharedArena::create(small_layout().arena_bytes());
  TransferServer s(server_io_.get_executor(), config(), KvRegion{small_layout(), src_.data()}, "fp", pins_);
  EXPECT_THROW(s.offer_shm(other), Error);
  SharedArena small = SharedArena::create(4096);
  TransferServer s2(server_io_.get_executor(), config(), KvRegion{small_layout(), src_.data()}, "fp", pins_);
  EXPECT_THROW(s2.offer_shm(small), Error);
  EXPECT_TRUE(s2.shm_name().empty());
}

}  // namespace
}  // namespace llmd::kv::transfer
