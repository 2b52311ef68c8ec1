// The ucx transfer backend against a real TransferServer that offers ucx: UCX workers on both sides
// (the server's progressed on its thread), control on TCP, bytes by one-sided gets.
#include <gtest/gtest.h>

#include <algorithm>
#include <optional>

#include "kv/transfer/auth.hpp"
#include "kv/transfer/checksum.hpp"
#include "kv/transfer/client_handshake.hpp"
#include "kv/transfer/ucx_backend.hpp"
#include "kv/transfer/ucx_worker.hpp"
#include "leased_transfer_fixture.hpp"

namespace llmd::kv::transfer {
namespace {

using namespace test_support;

class TransferUcx : public LeasedTransferTest<UcxBackend> {};

TEST_F(TransferUcx, PullIsByteEqualAndOnlyTheNamedBlocksChange) {
  start_server(config());
  auto b = backend();
  Peer& peer = prepare(*b, by_address());
  const std::vector<std::byte> before = dst_;
  // Runs of consecutive blocks (one get per segment) beside scattered ones.
  const auto pairs = pin("req-1", {3, 4, 5, 7, 12, 39}, {0, 1, 2, 3, 20, 30});
  ASSERT_TRUE(run(b->read(peer, "req-1", pairs)));
  for (const BlockPair& p : pairs) EXPECT_TRUE(pulled(p)) << p.local;
  for (int32_t other : {4, 19, 21, 29, 31, 39})
    EXPECT_TRUE(block_equal(small_layout(), dst_.data(), other, before.data(), other)) << other;
  EXPECT_TRUE(peer.usable());
  EXPECT_TRUE(pins_.unpin("req-1"));  // DONE ended the lease
}

TEST_F(TransferUcx, SeveralReadsInFlightOnOnePeer) {
  start_server(config());
  auto b = backend();
  Peer& peer = prepare(*b, by_engine_id());
  constexpr int kReads = 8;
  std::vector<std::vector<BlockPair>> jobs;
  std::vector<std::string> ids;
  for (int r = 0; r < kReads; ++r) {
    ids.push_back(fmt::format("req-{}", r));
    jobs.push_back(pin(ids.back(), {r * 4, r * 4 + 1, r * 4 + 2, r * 4 + 3},
                       {39 - r * 4, 38 - r * 4, 37 - r * 4, 36 - r * 4}));
  }
  std::vector<std::optional<Result>> results(kReads);
  for (int r = 0; r < kReads; ++r)
    asio::co_spawn(client_io_, b->read(peer, ids[r], jobs[r]),
                   [&results, r](std::exception_ptr, Result v) { results[r] = v; });
  client_io_.restart();
  const auto until = std::chrono::steady_clock::now() + 20s;
  const auto all_done = [&] { return std::ranges::all_of(results, [](auto& x) { return x.has_value(); }); };
  while (!all_done() && std::chrono::steady_clock::now() < until) client_io_.run_one_for(50ms);
  ASSERT_TRUE(all_done());
  for (int r = 0; r < kReads; ++r) {
    EXPECT_TRUE(*results[r]) << r;
    for (const BlockPair& p : jobs[r]) EXPECT_TRUE(pulled(p));
  }
}

TEST_F(TransferUcx, CorruptChecksumIsDetectedAndThePeerStaysUsable) {
  TransferConfig c = config();
  c.fault = {TransferConfig::Fault::kCorrupt, 1};
  start_server(c);
  auto b = backend();
  Peer& peer = prepare(*b, by_address());
  EXPECT_EQ(run(b->read(peer, "r", pin("r", {5, 6, 7}, {0, 1, 2}))), std::unexpected(XferError::kChecksum));
  EXPECT_TRUE(peer.usable());
  EXPECT_TRUE(pins_.unpin("r"));
}

TEST_F(TransferUcx, NoDoneOkGivesTruncated) {
  TransferConfig c = config();
  c.fault = {TransferConfig::Fault::kTruncate, 0};
  start_server(c);
  auto b = backend();
  Peer& peer = prepare(*b, by_address());
  EXPECT_EQ(run(b->read(peer, "r", pin("r", {5, 6}, {0, 1}))), std::unexpected(XferError::kTruncated));
  EXPECT_FALSE(peer.usable());
}

TEST_F(TransferUcx, WrongKeyUnknownRequestAndUnpinnedBlocksCopyNothing) {
  start_server(config());
  auto b = backend();
  Peer& peer = prepare(*b, by_address());
  const std::vector<std::byte> before = dst_;
  auto pairs = pin("r", {5, 6}, {0, 1});
  auto wrong_key = pairs;
  wrong_key[1].key.lo ^= 1;
  EXPECT_EQ(run(b->read(peer, "r", wrong_key)), std::unexpected(XferError::kKeyMismatch));
  EXPECT_EQ(run(b->read(peer, "nope", pairs)), std::unexpected(XferError::kUnknownRequest));
  pairs.push_back({8, 2, key_of(8)});
  EXPECT_EQ(run(b->read(peer, "r", pairs)), std::unexpected(XferError::kBadBlock));
  EXPECT_EQ(dst_, before);
  EXPECT_TRUE(peer.usable());
}

TEST_F(TransferUcx, WrongSecretOrNoUcxOfferedIsRefused) {
  start_server(config("the-server-secret"), /*offer=*/false);
  auto wrong = backend(config("another-secret"));
  EXPECT_EQ(run(wrong->prepare(by_address())).error(), XferError::kAuth);
  auto b = backend(config("the-server-secret"));
  EXPECT_EQ(run(b->prepare(by_address())).error(), XferError::kIncompatible);  // HELLO offers no ucx
}

TEST_F(TransferUcx, ReleaseReachesTheServer) {
  start_server(config());
  auto b = backend();
  Peer& peer = prepare(*b, by_address());
  ASSERT_TRUE(run(b->release(peer, "req-9", ReleaseOutcome::kPulled)));
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (released_ == 0 && std::chrono::steady_clock::now() < until) {
    client_io_.restart();
    client_io_.poll();
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(released_, 1);
}

// A server without ucx treats UCX_INFO, LEASE and DONE on TCP as protocol errors.
TEST_F(TransferUcx, APlainTcpServerRefusesUcxFrames) {
  start_server(config(), /*offer=*/false);
  for (const wire::FrameType type : {wire::FrameType::kUcxInfo, wire::FrameType::kLease}) {
    tcp::socket sock(client_io_);
    Deadline deadline(sock);
    std::vector<uint8_t> payload;
    Authenticator auth("s3cret");
    TransferConfig cfg = config();
    const PeerInfo peer = by_address();
    ASSERT_TRUE(
        run(connect_and_authenticate(sock, deadline, payload, peer, cfg, auth, small_layout(), "fp:1")));
    wire::Bytes f;
    if (type == wire::FrameType::kUcxInfo)
      wire::encode(wire::UcxInfo{}, f);
    else
      ASSERT_TRUE(wire::encode(wire::Lease{1, "r", {1}}, f));
    deadline.expires_after(5s);
    ASSERT_TRUE(run(write_all(sock, deadline, f)));
    const auto h = run(read_control_frame(sock, deadline, payload, false));
    ASSERT_TRUE(h);
    EXPECT_EQ(h->type, wire::FrameType::kError);
  }
}

TEST(UcxWorker, NetDevicesFollowTheTransferHost) {
  EXPECT_EQ(ucx_net_devices_for("127.0.0.1"), "lo");
  EXPECT_EQ(ucx_net_devices_for("0.0.0.0"), "all");
  EXPECT_EQ(ucx_net_devices_for("::"), "all");
  EXPECT_EQ(ucx_net_devices_for("192.0.2.77"), "all");  // TEST-NET: on no interface
}

}  // namespace
}  // namespace llmd::kv::transfer
