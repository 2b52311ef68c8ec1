#include "common/write_now.hpp"

#include <gtest/gtest.h>
#include <boost/asio/local/connect_pair.hpp>
#include <boost/asio/local/stream_protocol.hpp>

#include <string>

namespace llmd {
namespace {

using Bufs = std::array<asio::const_buffer, 3>;

std::string joined(const Bufs& b) {
  std::string out;
  for (const auto& x : b) out.append(static_cast<const char*>(x.data()), x.size());
  return out;
}

TEST(DropFront, CutsAcrossBufferBoundaries) {
  const std::string a = "head", b = "", c = "body!";
  const Bufs bufs{asio::buffer(a), asio::buffer(b), asio::buffer(c)};
  for (std::size_t n = 0; n <= 9; ++n) EXPECT_EQ(joined(drop_front(bufs, n)), (a + c).substr(n)) << n;
  EXPECT_EQ(asio::buffer_size(drop_front(bufs, 100)), 0u);  // more than there is: nothing left
}

class WriteNow : public testing::Test {
 protected:
  asio::io_context ioc;
  asio::local::stream_protocol::socket a{ioc}, b{ioc};
  void SetUp() override {
    asio::local::connect_pair(a, b);
    a.non_blocking(true);
    a.set_option(asio::socket_base::send_buffer_size(4096));
  }
};

// A full socket buffer is not an error: the kernel took part, the caller waits for room.
TEST_F(WriteNow, TakesWhatTheKernelHasRoomForWithoutBlocking) {
  const std::string big(8 << 20, 'x');
  const std::array<asio::const_buffer, 1> bufs{asio::buffer(big)};
  boost::system::error_code ec;
  const std::size_t sent = write_now(a, bufs, ec);
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_GT(sent, 0u);
  EXPECT_LT(sent, big.size());
  EXPECT_EQ(write_now(a, drop_front(bufs, sent), ec), 0u);  // still full: nothing, and no error
  EXPECT_FALSE(ec) << ec.message();
}

TEST_F(WriteNow, ASmallWriteGoesWholeAndAClosedPeerIsAnError) {
  const std::string hello = "hello";
  const std::array<asio::const_buffer, 1> bufs{asio::buffer(hello)};
  boost::system::error_code ec;
  EXPECT_EQ(write_now(a, bufs, ec), hello.size());
  EXPECT_FALSE(ec);
  char got[8] = {};
  EXPECT_EQ(b.read_some(asio::buffer(got), ec), hello.size());
  EXPECT_EQ(std::string(got, hello.size()), hello);
  b.close();
  EXPECT_EQ(write_now(a, bufs, ec), 0u);
  EXPECT_TRUE(ec);  // EPIPE (no SIGPIPE: asio sends with MSG_NOSIGNAL)
}

}  // namespace
}  // namespace llmd
