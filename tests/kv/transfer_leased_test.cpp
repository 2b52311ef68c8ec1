// What every leased-read backend (shm, ucx) must do against a real TransferServer: the same tests,
// once per backend. What only one of them does is in transfer_shm_test.cpp / transfer_ucx_test.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <optional>

#include "leased_transfer_fixture.hpp"

namespace llmd::kv::transfer {
namespace {

using namespace test_support;

template <class Backend>
class LeasedTransfer : public LeasedTransferTest<Backend> {};
using Backends = ::testing::Types<ShmBackend, UcxBackend>;
TYPED_TEST_SUITE(LeasedTransfer, Backends);

TYPED_TEST(LeasedTransfer, PullIsByteEqualByEngineIdAndByAddress) {
  this->start_server(this->config());
  for (PeerInfo info : {this->by_engine_id(), this->by_address()}) {
    auto b = this->backend();
    Peer& peer = this->prepare(*b, info);
    const std::vector<std::byte> before = this->dst_;
    const auto pairs = this->pin("req-1", {3, 7, 12, 39}, {0, 1, 2, 30});
    ASSERT_TRUE(this->run(b->read(peer, "req-1", pairs)));
    for (const BlockPair& p : pairs) EXPECT_TRUE(this->pulled(p)) << p.local;
    for (int32_t other : {3, 4, 29, 31, 39})
      EXPECT_TRUE(block_equal(small_layout(), this->dst_.data(), other, before.data(), other)) << other;
    EXPECT_TRUE(peer.usable());
    fill_random(this->dst_, 3);
  }
}

TYPED_TEST(LeasedTransfer, SeveralReadsSequentialAndInFlightTogether) {
  this->start_server(this->config());
  auto b = this->backend();
  Peer& peer = this->prepare(*b, this->by_engine_id());
  ASSERT_TRUE(this->run(b->read(peer, "a", this->pin("a", {0, 1}, {10, 11}))));
  ASSERT_TRUE(this->run(b->read(peer, "b", this->pin("b", {2}, {12}))));
  EXPECT_TRUE(block_equal(small_layout(), this->dst_.data(), 12, this->src_.data(), 2));

  constexpr int kReads = 8;
  std::vector<std::vector<BlockPair>> jobs;
  std::vector<std::string> ids;
  for (int r = 0; r < kReads; ++r) {
    ids.push_back(fmt::format("req-{}", r));
    jobs.push_back(this->pin(ids.back(), {r * 4, r * 4 + 1, r * 4 + 2, r * 4 + 3},
                             {39 - r * 4, 38 - r * 4, 37 - r * 4, 36 - r * 4}));
  }
  std::vector<std::optional<Result>> results(kReads);
  for (int r = 0; r < kReads; ++r)
    asio::co_spawn(this->client_io_, b->read(peer, ids[r], jobs[r]),
                   [&results, r](std::exception_ptr, Result v) { results[r] = v; });
  this->client_io_.restart();
  const auto until = std::chrono::steady_clock::now() + 20s;
  const auto all_done = [&] { return std::ranges::all_of(results, [](auto& x) { return x.has_value(); }); };
  while (!all_done() && std::chrono::steady_clock::now() < until) this->client_io_.run_one_for(50ms);
  ASSERT_TRUE(all_done());
  for (int r = 0; r < kReads; ++r) {
    EXPECT_TRUE(*results[r]) << r;
    for (const BlockPair& p : jobs[r]) EXPECT_TRUE(this->pulled(p));
  }
}

TYPED_TEST(LeasedTransfer, CorruptChecksumGivesChecksumAndThePeerStaysUsable) {
  TransferConfig c = this->config();
  c.fault = {TransferConfig::Fault::kCorrupt, 1};
  this->start_server(c);
  auto b = this->backend();
  Peer& peer = this->prepare(*b, this->by_engine_id());
  EXPECT_EQ(this->run(b->read(peer, "r", this->pin("r", {5, 6, 7}, {0, 1, 2}))),
            std::unexpected(XferError::kChecksum));
  EXPECT_TRUE(peer.usable());
  EXPECT_TRUE(this->pins_.unpin("r"));  // DONE ended the lease even though the read failed
  EXPECT_TRUE(this->run(b->read(peer, "s", this->pin("s", {9}, {3}))));
  EXPECT_TRUE(block_equal(small_layout(), this->dst_.data(), 3, this->src_.data(), 9));
}

TYPED_TEST(LeasedTransfer, NoDoneOkGivesTruncated) {
  TransferConfig c = this->config();
  c.fault = {TransferConfig::Fault::kTruncate, 0};
  this->start_server(c);
  auto b = this->backend();
  Peer& peer = this->prepare(*b, this->by_engine_id());
  EXPECT_EQ(this->run(b->read(peer, "r", this->pin("r", {5, 6}, {0, 1}))),
            std::unexpected(XferError::kTruncated));
  EXPECT_FALSE(peer.usable());
}

TYPED_TEST(LeasedTransfer, WrongKeyGivesKeyMismatch) {
  this->start_server(this->config());
  auto b = this->backend();
  Peer& peer = this->prepare(*b, this->by_engine_id());
  auto pairs = this->pin("r", {5, 6}, {0, 1});
  pairs[1].key.lo ^= 1;
  EXPECT_EQ(this->run(b->read(peer, "r", pairs)), std::unexpected(XferError::kKeyMismatch));
  EXPECT_TRUE(peer.usable());
}

TYPED_TEST(LeasedTransfer, UnknownRequestAndUnpinnedBlockAreRefused) {
  this->start_server(this->config());
  auto b = this->backend();
  Peer& peer = this->prepare(*b, this->by_engine_id());
  const std::vector<std::byte> before = this->dst_;
  const auto pairs = this->pin("r", {5, 6}, {0, 1});
  EXPECT_EQ(this->run(b->read(peer, "nope", pairs)), std::unexpected(XferError::kUnknownRequest));
  std::vector<BlockPair> unpinned = pairs;
  unpinned.push_back({8, 2, key_of(8)});
  EXPECT_EQ(this->run(b->read(peer, "r", unpinned)), std::unexpected(XferError::kBadBlock));
  const std::vector<BlockPair> outside = {{1000, 2, key_of(1000)}};
  EXPECT_EQ(this->run(b->read(peer, "r", outside)), std::unexpected(XferError::kBadBlock));
  EXPECT_EQ(this->dst_, before);
  EXPECT_TRUE(this->pins_.unpin("r"));  // refused leases hold nothing
  EXPECT_TRUE(peer.usable());
}

TYPED_TEST(LeasedTransfer, WrongSecretIsRefused) {
  this->start_server(this->config("the-server-secret"));
  auto b = this->backend(this->config("another-secret"));
  const auto p = this->run(b->prepare(this->by_engine_id()));
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error(), XferError::kAuth);
  auto good = this->backend(this->config("the-server-secret"));
  EXPECT_TRUE(this->run(good->prepare(this->by_engine_id())));
}

TYPED_TEST(LeasedTransfer, IncompatibleLayoutIsRefused) {
  this->start_server(this->config());
  KvLayout other = small_layout();
  other.dtype = 1;
  auto b = this->backend(this->config(), other);
  EXPECT_EQ(this->run(b->prepare(this->by_engine_id())).error(), XferError::kIncompatible);
  auto b2 = this->backend(this->config(), small_layout(), "fp:2");
  EXPECT_EQ(this->run(b2->prepare(this->by_engine_id())).error(), XferError::kIncompatible);
}

TYPED_TEST(LeasedTransfer, ReleaseReachesTheCallback) {
  this->start_server(this->config());
  auto b = this->backend();
  Peer& peer = this->prepare(*b, this->by_engine_id());
  ASSERT_TRUE(this->run(b->release(peer, "req-9", ReleaseOutcome::kPulled)));
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (this->released_ == 0 && std::chrono::steady_clock::now() < until) {
    this->client_io_.restart();
    this->client_io_.poll();  // the RELEASE frame is written by the reader's io_context
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_EQ(this->released_, 1);
  this->server_->stop();
  this->work_.reset();
  this->server_thread_.join();
  EXPECT_EQ(this->released_id_, "req-9");
}

// --kv-transfer-allow: a peer outside the allowed addresses is hung up on before any handshake, by
// TCP and on the Unix socket (a local process counts as 127.0.0.1); one inside gets in.
TYPED_TEST(LeasedTransfer, APeerOutsideTheAllowedAddressesIsRefused) {
  TransferConfig c = this->config();
  c.allowed_peers = PeerFilter::parse("10.0.0.0/8,fd00::/8");
  this->start_server(c);
  auto b = this->backend();
  EXPECT_EQ(this->run(b->prepare(this->by_address())).error(), XferError::kConnect);
  EXPECT_EQ(this->run(b->prepare(this->by_engine_id())).error(), XferError::kConnect);
}

TYPED_TEST(LeasedTransfer, APeerInsideTheAllowedAddressesGetsIn) {
  TransferConfig c = this->config();
  c.allowed_peers = PeerFilter::parse("10.0.0.0/8,127.0.0.0/8");
  this->start_server(c);
  auto b = this->backend();
  Peer& peer = this->prepare(*b, this->by_address());
  const auto pairs = this->pin("r", {5}, {0});
  EXPECT_TRUE(this->run(b->read(peer, "r", pairs)));
  EXPECT_TRUE(this->pulled(pairs[0]));
}

}  // namespace
}  // namespace llmd::kv::transfer
