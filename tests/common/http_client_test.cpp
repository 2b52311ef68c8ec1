#include "common/http_client.hpp"

#include "common/error.hpp"
#include "common/http_server.hpp"
#include "common/http_test_util.hpp"

#include <gtest/gtest.h>

#include <array>
#include <span>
#include <thread>

namespace llmd::http {
namespace {

using namespace std::chrono_literals;
using testing::sleep_for;

// Answers with the client's port, so a test can tell whether a connection was reused.
Handler port_echo() {
  return [](Request& req, Response& res) -> asio::awaitable<void> {
    co_await res.send(200, "text/plain", std::to_string(req.remote_port));
  };
}

TEST(HttpClient, FetchRoundTrip) {
  Server s;
  s.route("POST", "/echo", [](Request& req, Response& res) -> asio::awaitable<void> {
    co_await res.send(200, "application/json", req.body);
  });
  s.start();
  std::string big(3 << 20, 'z');  // several reads' worth
  auto r = fetch("127.0.0.1", s.port(), "POST", "/echo", big);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, big);
  EXPECT_EQ(r.headers.get_or("Content-Type", ""), "application/json");
}

// Borrowed fields (a proxy's per-request ones) go out as given; a Host among them replaces ours.
TEST(HttpClient, BorrowedFieldsAreSentAsGiven) {
  Server s;
  s.route("GET", "/fields", [](Request& req, Response& res) -> asio::awaitable<void> {
    int hosts = 0;
    for (const auto& [k, v] : req.headers) hosts += iequals(k, "host");
    co_await res.send(200, "text/plain",
                      req.headers.get_or("x-one", "-") + "|" + req.headers.get_or("x-two", "-") + "|" +
                          req.headers.get_or("host", "-") + "|" + std::to_string(hosts));
  });
  s.start();
  const std::string two = "a value longer than fifteen bytes";
  const std::array<FieldView, 3> fields{{{"X-One", "1"}, {"x-two", two}, {"Host", "example.test"}}};
  asio::io_context ioc;
  Client client;
  std::string body;
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        const FieldsRef ref{std::span<const FieldView>(fields)};
        body = (co_await client.request("127.0.0.1", s.port(), "GET", "/fields", "", ref)).body;
      },
      asio::detached);
  ioc.run();
  EXPECT_EQ(body, "1|" + two + "|example.test|1");
}

// Heads are written by hand: a line break in a field or the target would let one request carry
// another past the server (request smuggling). Both ends refuse, and the server stays up.
TEST(HttpClient, LineBreaksInHeadsAreRefusedAtBothEnds) {
  Server s;
  s.route("GET", "/inject", [](Request& req, Response& res) -> asio::awaitable<void> {
    Headers extra;
    extra.add("X-Echo", std::string(*req.headers.get("x-value")) + "\r\nSet-Cookie: evil");
    co_await res.send(200, "text/plain", "never", extra);
  });
  s.route("GET", "/ok", port_echo());
  s.start();
  Headers bad;
  bad.add("X-Value", "a\r\nX-Smuggled: 1");
  EXPECT_THROW(fetch("127.0.0.1", s.port(), "GET", "/ok", "", bad), Error);
  EXPECT_THROW(fetch("127.0.0.1", s.port(), "GET", "/ok HTTP/1.1\r\nX: y\r\n\r\nGET /ok"), Error);
  Headers good;
  good.add("X-Value", "a");
  auto r = fetch("127.0.0.1", s.port(), "GET", "/inject", "", good);
  EXPECT_EQ(r.status, 500);  // the handler's send() threw: nothing of its head went out
  EXPECT_FALSE(r.headers.contains("Set-Cookie"));
  EXPECT_EQ(fetch("127.0.0.1", s.port(), "GET", "/ok").status, 200);
}

// A server that answers every connection's first request with the same canned bytes, then closes:
// the client must find the body by each framing a real server may use.
class CannedServer {
 public:
  explicit CannedServer(std::string reply)
      : reply_(std::move(reply)), acceptor_(ioc_, {asio::ip::make_address("127.0.0.1"), 0}) {
    thread_ = std::thread([this] {
      for (;;) {
        boost::system::error_code ec;
        asio::ip::tcp::socket sock(ioc_);
        acceptor_.accept(sock, ec);
        if (ec || stop_) return;
        char buf[4096];
        std::string got;
        while (got.find("\r\n\r\n") == std::string::npos) {
          const std::size_t n = sock.read_some(asio::buffer(buf), ec);
          if (ec) break;
          got.append(buf, n);
        }
        asio::write(sock, asio::buffer(reply_), ec);
        sock.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
        sock.read_some(asio::buffer(buf), ec);  // until the client closes: no RST before it read
      }
    });
  }
  ~CannedServer() {
    stop_ = true;
    boost::system::error_code ec;
    asio::ip::tcp::socket poke(ioc_);
    poke.connect(acceptor_.local_endpoint(), ec);
    thread_.join();
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }

 private:
  std::string reply_;
  asio::io_context ioc_;
  asio::ip::tcp::acceptor acceptor_;
  std::atomic<bool> stop_ = false;
  std::thread thread_;
};

TEST(HttpClient, FindsTheBodyByLengthChunksOrClose) {
  const std::pair<std::string, std::string> cases[] = {
      {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "hello"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3;x=y\r\nllo\r\n0\r\nT: 1\r\n\r\n",
       "hello"},
      {"HTTP/1.0 200 OK\r\n\r\nhello", "hello"},  // no length: the body runs to the close
      {"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", "ok"},
      {"HTTP/1.1 204 No Content\r\n\r\n", ""},
  };
  for (const auto& [reply, body] : cases) {
    CannedServer srv(reply);
    const auto r = fetch("127.0.0.1", srv.port(), "GET", "/");
    EXPECT_EQ(r.body, body) << reply;
    EXPECT_EQ(r.status, reply.find("201") != std::string::npos   ? 201
                        : reply.find("204") != std::string::npos ? 204
                                                                 : 200);
  }
}

TEST(HttpClient, MalformedResponsesFailNamingTheProblem) {
  const std::pair<std::string, std::string> cases[] = {
      {"HTTP/1.1 OK\r\n\r\n", "a malformed status line"},
      {"HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nhello", "a bad Content-Length"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "a chunk without a size"},
      {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", "the response ended before its body did"},
      {"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "a bad character in a header field name"},
  };
  for (const auto& [reply, why] : cases) {
    CannedServer srv(reply);
    try {
      fetch("127.0.0.1", srv.port(), "GET", "/");
      ADD_FAILURE() << "no error for " << reply;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("malformed response: " + why), std::string::npos) << e.what();
    }
  }
}

TEST(HttpClient, PoolReusesConnections) {
  Server s;
  s.route("GET", "/port", port_echo());
  s.start();
  asio::io_context ioc;
  Client client;
  std::vector<std::string> ports;
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        for (int i = 0; i < 3; ++i)
          ports.push_back((co_await client.request("127.0.0.1", s.port(), "GET", "/port")).body);
      },
      asio::detached);
  ioc.run();
  ASSERT_EQ(ports.size(), 3u);
  EXPECT_EQ(ports[0], ports[1]);
  EXPECT_EQ(ports[1], ports[2]);
  EXPECT_EQ(client.idle_connections(), 1u);
}

// The server closes an idle pooled connection; the next request retries on a fresh one.
TEST(HttpClient, RetriesWhenThePooledConnectionWasClosed) {
  ServerConfig cfg;
  cfg.idle_timeout = 100ms;
  Server s(cfg);
  s.route("GET", "/port", port_echo());
  s.start();
  asio::io_context ioc;
  Client client;
  std::vector<ClientResponse> rs;
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        rs.push_back(co_await client.request("127.0.0.1", s.port(), "GET", "/port"));
        co_await sleep_for(400ms);
        rs.push_back(co_await client.request("127.0.0.1", s.port(), "GET", "/port"));
      },
      asio::detached);
  ioc.run();
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_EQ(rs[1].status, 200);
  EXPECT_NE(rs[0].body, rs[1].body);
}

TEST(HttpClient, ConnectionRefusedThrows) {
  std::uint16_t port;
  {
    Server s;  // bound then closed: nothing listens there now
    port = s.port();
  }
  EXPECT_THROW(fetch("127.0.0.1", port, "GET", "/"), Error);
}

TEST(HttpClient, SlowServerTimesOut) {
  Server s;
  s.route("GET", "/slow", [](Request&, Response& res) -> asio::awaitable<void> {
    co_await sleep_for(1s);
    co_await res.send(200, "text/plain", "late");
  });
  s.start();
  ClientConfig cfg;
  cfg.io_timeout = 200ms;
  auto t0 = std::chrono::steady_clock::now();
  try {
    fetch("127.0.0.1", s.port(), "GET", "/slow", "", {}, cfg);
    ADD_FAILURE() << "no timeout";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("timed out"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1500ms);
}

// io_timeout limits each read, not the time the caller spends with a chunk (a proxy writing it on).
TEST(HttpClient, ASlowChunkCallbackIsNotATimeout) {
  Server s;
  s.route("GET", "/sse", [](Request&, Response& res) -> asio::awaitable<void> {
    co_await res.start_stream(200, "text/event-stream");
    for (int i = 0; i < 3; ++i) co_await res.write("data: x\n\n");
    co_await res.finish();
  });
  s.start();
  ClientConfig cfg;
  cfg.io_timeout = 100ms;
  std::string got;
  auto r = fetch_stream(
      "127.0.0.1", s.port(), "GET", "/sse", "", {},
      [&](std::string_view c) {
        got += c;
        std::this_thread::sleep_for(250ms);
        return true;
      },
      cfg);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(got, "data: x\n\ndata: x\n\ndata: x\n\n");
}

TEST(HttpClient, StreamCallbackCanStopEarly) {
  Server s;
  s.route("GET", "/sse", [](Request&, Response& res) -> asio::awaitable<void> {
    co_await res.start_stream(200, "text/event-stream");
    for (int i = 0; i < 100000; ++i)
      if (!co_await res.write("data: x\n\n")) break;
    co_await res.finish();
  });
  s.start();
  int calls = 0;
  auto r = fetch_stream("127.0.0.1", s.port(), "GET", "/sse", "", {},
                        [&](std::string_view) { return ++calls < 3; });
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(calls, 3);
}

// The proxy shape: a coroutine callback that may itself co_await per chunk.
TEST(HttpClient, PooledStreamWithCoroutineCallback) {
  Server s;
  s.route("POST", "/sse", [](Request&, Response& res) -> asio::awaitable<void> {
    co_await res.start_stream(200, "text/event-stream");
    for (int i = 0; i < 50; ++i) co_await res.write("data: " + std::to_string(i) + "\n\n");
    co_await res.finish();
  });
  s.start();
  asio::io_context ioc;
  Client client;
  std::string got;
  int status = 0;
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        auto r = co_await client.stream(
            "127.0.0.1", s.port(), "POST", "/sse", "{}", {},
            [&](const ClientResponse& head, std::string_view c) -> asio::awaitable<bool> {
              status = head.status;
              got += c;
              co_await sleep_for(std::chrono::milliseconds(0));
              co_return true;
            });
        EXPECT_TRUE(r.body.empty());
      },
      asio::detached);
  ioc.run();
  EXPECT_EQ(status, 200);
  EXPECT_TRUE(got.starts_with("data: 0\n\n"));
  EXPECT_TRUE(got.ends_with("data: 49\n\n"));
  EXPECT_EQ(client.idle_connections(), 1u);  // a fully read stream returns its connection to the pool
}

}  // namespace
}  // namespace llmd::http
