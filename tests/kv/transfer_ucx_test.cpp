// What only the ucx backend does (transfer_leased_test.cpp has what it shares with shm): a server
// without ucx, ucx frames on a plain server, UCX's network devices.
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

TEST_F(TransferUcx, AServerThatOffersNoUcxIsIncompatible) {
  start_server(config(), /*offer=*/false);
  auto b = backend();
  EXPECT_EQ(run(b->prepare(by_address())).error(), XferError::kIncompatible);  // HELLO offers no ucx
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
