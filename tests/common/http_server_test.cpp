#include "common/http_server.hpp"

#include "common/error.hpp"
#include "common/http_client.hpp"
#include "common/http_test_util.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <future>

namespace llmd::http {
namespace {

using namespace std::chrono_literals;
using testing::count_open_fds;
using testing::eventually;
using testing::RawConn;
using testing::sleep_for;

Handler text(std::string body) {
  return [body](Request&, Response& res) -> asio::awaitable<void> {
    co_await res.send(200, "text/plain", body);
  };
}

TEST(HttpServer, BindsLoopbackOnAFreePortByDefault) {
  Server s;
  EXPECT_EQ(s.config().host, "127.0.0.1");
  EXPECT_NE(s.port(), 0);
  EXPECT_EQ(s.config().max_body_bytes, 32u << 20);
}

TEST(HttpServer, BusyPortThrows) {
  Server a;
  ServerConfig cfg;
  cfg.port = a.port();
  EXPECT_THROW(Server{cfg}, Error);
}

TEST(HttpServer, RoutesAnd404And405AsOpenAIErrors) {
  Server s;
  s.route("GET", "/health", text("ok"));
  s.route("POST", "/health", text("posted"));
  s.route("GET", "/v1/models", text("models"));
  s.start();
  auto r = fetch("127.0.0.1", s.port(), "GET", "/health");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ok");
  EXPECT_EQ(fetch("127.0.0.1", s.port(), "POST", "/health").body, "posted");

  auto nf = fetch("127.0.0.1", s.port(), "GET", "/nope");
  EXPECT_EQ(nf.status, 404);
  EXPECT_EQ(nf.headers.get_or("content-type", ""), "application/json");
  auto j = nlohmann::json::parse(nf.body);
  EXPECT_TRUE(j["error"]["message"].is_string());
  EXPECT_EQ(j["error"]["type"], "not_found_error");
  EXPECT_TRUE(j["error"]["param"].is_null());
  EXPECT_EQ(j["error"]["code"], 404);

  auto na = fetch("127.0.0.1", s.port(), "DELETE", "/v1/models");
  EXPECT_EQ(na.status, 405);
  EXPECT_EQ(na.headers.get_or("Allow", ""), "GET");
  EXPECT_EQ(nlohmann::json::parse(na.body)["error"]["code"], 405);
}

TEST(HttpServer, JsonErrorShape) {
  auto j = nlohmann::json::parse(json_error(400, "bad temperature", "", "temperature"));
  EXPECT_EQ(j["error"]["message"], "bad temperature");
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_EQ(j["error"]["param"], "temperature");
  EXPECT_EQ(j["error"]["code"], 400);
  EXPECT_EQ(nlohmann::json::parse(json_error(503, "busy"))["error"]["type"], "server_error");
}

TEST(HttpServer, RequestFieldsReachTheHandler) {
  Server s;
  s.route("POST", "/echo", [](Request& req, Response& res) -> asio::awaitable<void> {
    nlohmann::json j = {{"method", req.method},
                        {"path", req.path},
                        {"query", req.query},
                        {"model", req.query_param("model").value_or("?")},
                        {"greeting", req.query_param("g").value_or("?")},
                        {"missing", req.query_param("zzz").has_value()},
                        {"xhdr", req.headers.get_or("x-CUSTOM-header", "")},
                        {"body", req.body},
                        {"remote", req.remote_address}};
    Headers h;
    h.add("X-Reply", "1");
    co_await res.send(201, "application/json", j.dump(), h);
  });
  s.start();
  Headers h;
  h.add("X-Custom-Header", "v1");
  auto r = fetch("127.0.0.1", s.port(), "POST", "/echo?model=m%2F1&g=hi+there", "payload", h);
  ASSERT_EQ(r.status, 201);
  EXPECT_EQ(r.headers.get_or("x-reply", ""), "1");
  auto j = nlohmann::json::parse(r.body);
  EXPECT_EQ(j["method"], "POST");
  EXPECT_EQ(j["path"], "/echo");
  EXPECT_EQ(j["query"], "model=m%2F1&g=hi+there");
  EXPECT_EQ(j["model"], "m/1");
  EXPECT_EQ(j["greeting"], "hi there");
  EXPECT_EQ(j["missing"], false);
  EXPECT_EQ(j["xhdr"], "v1");
  EXPECT_EQ(j["body"], "payload");
  EXPECT_EQ(j["remote"], "127.0.0.1");
}

TEST(HttpServer, HandlerErrorsBecome500) {
  Server s;
  s.route("GET", "/throw", [](Request&, Response&) -> asio::awaitable<void> {
    throw std::runtime_error("boom");
    co_return;
  });
  s.route("GET", "/silent", [](Request&, Response&) -> asio::awaitable<void> { co_return; });
  s.start();
  auto r = fetch("127.0.0.1", s.port(), "GET", "/throw");
  EXPECT_EQ(r.status, 500);
  EXPECT_NE(r.body.find("boom"), std::string::npos);
  EXPECT_EQ(fetch("127.0.0.1", s.port(), "GET", "/silent").status, 500);
}

TEST(HttpServer, MalformedRequestGets400AndClose) {
  Server s;
  s.route("GET", "/", text("x"));
  s.start();
  RawConn c(s.port());
  c.send("THIS IS NOT HTTP\r\n\r\n");
  auto out = c.read_all();  // returns only once the server closed the connection
  EXPECT_TRUE(out.starts_with("HTTP/1.1 400")) << out;
  EXPECT_NE(out.find("\"error\""), std::string::npos);
}

TEST(HttpServer, OversizedBodyGets413WithoutReadingIt) {
  ServerConfig cfg;
  cfg.max_body_bytes = 1024;
  Server s(cfg);
  std::atomic<int> calls = 0;
  s.route("POST", "/v1/completions", [&](Request&, Response& res) -> asio::awaitable<void> {
    ++calls;
    co_await res.send(200, "text/plain", "ok");
  });
  s.start();
  RawConn c(s.port());
  // Announces 100 MiB, sends 10 bytes: the answer must come from the headers alone.
  c.send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n0123456789");
  auto out = c.read_until("}}");
  EXPECT_TRUE(out.starts_with("HTTP/1.1 413")) << out;
  EXPECT_NE(out.find("exceeds"), std::string::npos);
  EXPECT_EQ(calls, 0);
  // And within the limit it works.
  EXPECT_EQ(fetch("127.0.0.1", s.port(), "POST", "/v1/completions", std::string(1024, 'a')).status, 200);
}

TEST(HttpServer, OversizedHeadersGet431) {
  ServerConfig cfg;
  cfg.max_header_bytes = 1024;
  Server s(cfg);
  s.route("GET", "/", text("x"));
  s.start();
  Headers h;
  h.add("X-Big", std::string(4096, 'a'));
  EXPECT_EQ(fetch("127.0.0.1", s.port(), "GET", "/", "", h).status, 431);
}

TEST(HttpServer, ExpectContinueIsAnswered) {
  Server s;
  s.route("POST", "/", [](Request& req, Response& res) -> asio::awaitable<void> {
    co_await res.send(200, "text/plain", req.body);
  });
  s.start();
  RawConn c(s.port());
  c.send("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
  EXPECT_TRUE(c.read_until("\r\n\r\n").starts_with("HTTP/1.1 100"));
  c.send("hello");
  auto out = c.read_until("hello");
  EXPECT_TRUE(out.starts_with("HTTP/1.1 200")) << out;
}

TEST(HttpServer, ChunkedRequestBodiesAreDecodedAndTheNextRequestFollows) {
  ServerConfig cfg;
  cfg.max_body_bytes = 16;
  Server s(cfg);
  s.route("POST", "/", [](Request& req, Response& res) -> asio::awaitable<void> {
    co_await res.send(200, "text/plain", "[" + req.body + "]");
  });
  s.start();
  RawConn c(s.port());
  // Cut in two sends, mid chunk-size line; an extension and a trailer; a second request pipelined.
  c.send("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
  c.send(
      "6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\nPOST / HTTP/1.1\r\nHost: x\r\nContent-Length: "
      "2\r\n\r\nok");
  EXPECT_NE(c.read_until("]").find("[hello world]"), std::string::npos);
  EXPECT_NE(c.read_until("]").find("[ok]"), std::string::npos);
  // Over the limit once decoded: 413, whatever the chunks' sizes announce.
  c.send(
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n123456789\r\n9\r\n123456789\r\n");
  const auto out = c.read_all();
  EXPECT_TRUE(out.starts_with("HTTP/1.1 413")) << out;
  // Malformed framing: a 400 naming the problem.
  RawConn d(s.port());
  d.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n");
  const auto bad = d.read_all();
  EXPECT_TRUE(bad.starts_with("HTTP/1.1 400")) << bad;
  EXPECT_NE(bad.find("both Transfer-Encoding and Content-Length"), std::string::npos) << bad;
}

TEST(HttpServer, KeepAliveAndPipelining) {
  Server s;
  s.route("GET", "/a", text("AAA"));
  s.route("GET", "/b", text("BBB"));
  s.start();
  RawConn c(s.port());
  c.send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_NE(c.read_until("AAA").find("200 OK"), std::string::npos);
  // Two requests in one segment: answered in order on the same connection.
  c.send("GET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  auto rest = c.read_all();
  auto b = rest.find("BBB"), a = rest.find("AAA");
  ASSERT_NE(b, std::string::npos) << rest;
  ASSERT_NE(a, std::string::npos) << rest;
  EXPECT_LT(b, a);
}

TEST(HttpServer, ConcurrentKeepAliveClients) {
  Server s;
  s.route("GET", "/n", [](Request& req, Response& res) -> asio::awaitable<void> {
    co_await sleep_for(1ms);  // interleave the connections
    co_await res.send(200, "text/plain", req.query);
  });
  s.start();
  asio::io_context ioc;
  Client client;
  std::atomic<int> ok = 0;
  constexpr int kClients = 16, kEach = 25;
  for (int c = 0; c < kClients; ++c) {
    asio::co_spawn(
        ioc,
        [&, c]() -> asio::awaitable<void> {
          for (int i = 0; i < kEach; ++i) {
            auto q = std::to_string(c * 1000 + i);
            auto r = co_await client.request("127.0.0.1", s.port(), "GET", "/n?" + q);
            if (r.status == 200 && r.body == q) ++ok;
          }
        },
        asio::detached);
  }
  ioc.run();
  EXPECT_EQ(ok, kClients * kEach);
  EXPECT_GT(client.idle_connections(), 0u);
  EXPECT_LE(client.idle_connections(), std::size_t(kClients));
}

TEST(HttpServer, ThousandDroppedConnectionsLeaveItHealthy) {
  ServerConfig cfg;
  cfg.read_timeout = 2s;
  Server s(cfg);
  s.route("POST", "/v1/completions", text("fine"));
  s.start();
  ASSERT_EQ(fetch("127.0.0.1", s.port(), "POST", "/v1/completions", "{}").status, 200);
  const int fds_before = count_open_fds();
  for (int batch = 0; batch < 10; ++batch) {
    std::vector<std::unique_ptr<RawConn>> conns;
    for (int i = 0; i < 100; ++i) {
      auto c = std::make_unique<RawConn>(s.port());
      switch (i % 3) {
        case 0:
          c->send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Le");
          break;
        case 1:
          c->send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"pro");
          break;
        default:
          break;  // connect only
      }
      conns.push_back(std::move(c));
    }
    conns.clear();  // all dropped mid-request
  }
  EXPECT_EQ(fetch("127.0.0.1", s.port(), "POST", "/v1/completions", "{}").body, "fine");
  EXPECT_TRUE(eventually([&] { return count_open_fds() <= fds_before; }))
      << "fds before " << fds_before << ", now " << count_open_fds();
}

TEST(HttpServer, StalledClientIsDroppedAfterReadTimeout) {
  ServerConfig cfg;
  cfg.read_timeout = 200ms;
  cfg.idle_timeout = 200ms;
  Server s(cfg);
  s.route("GET", "/", text("x"));
  s.start();
  auto t0 = std::chrono::steady_clock::now();
  RawConn half(s.port()), idle(s.port());
  half.send("GET / HTTP/1.1\r\nHo");
  half.read_all();  // returns when the server gives up on us
  idle.read_all();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
}

// write_timeout bounds each write, not the pauses between them: a stream that waits on the engine
// longer than the timeout is fine, a client that stops reading is dropped.
TEST(HttpServer, WriteTimeoutDropsAClientThatStopsReadingButNotAPause) {
  ServerConfig cfg;
  cfg.write_timeout = 200ms;
  Server s(cfg);
  std::atomic<bool> flood_ended{false};
  s.route("GET", "/pause", [](Request&, Response& res) -> asio::awaitable<void> {
    co_await res.start_stream(200, "text/plain");
    co_await res.write("before ");
    co_await sleep_for(500ms);
    co_await res.write("after");
    co_await res.finish();
  });
  s.route("GET", "/flood", [&](Request&, Response& res) -> asio::awaitable<void> {
    co_await res.start_stream(200, "text/plain");
    const std::string piece(1 << 20, 'x');
    while (co_await res.write(piece)) {
    }
    flood_ended = true;
  });
  s.start();
  EXPECT_EQ(fetch("127.0.0.1", s.port(), "GET", "/pause").body, "before after");
  RawConn stuck(s.port());
  stuck.send("GET /flood HTTP/1.1\r\nHost: x\r\n\r\n");  // and never reads
  EXPECT_TRUE(eventually([&] { return flood_ended.load(); }, 5s));
}

TEST(HttpServer, StreamsThousandChunksCompleteAndInOrder) {
  Server s;
  s.route("POST", "/stream", [](Request&, Response& res) -> asio::awaitable<void> {
    Headers h;
    h.add("Cache-Control", "no-cache");
    co_await res.start_stream(200, "text/event-stream", h);
    for (int i = 0; i < 1000; ++i)
      if (!co_await res.write("data: " + std::to_string(i) + "\n\n")) co_return;
    co_await res.write("data: [DONE]\n\n");
    co_await res.finish();
  });
  s.start();
  std::string got;
  int pieces = 0;
  auto r = fetch_stream("127.0.0.1", s.port(), "POST", "/stream", "{}", {}, [&](std::string_view c) {
    got += c;
    ++pieces;
    return true;
  });
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.headers.get_or("content-type", ""), "text/event-stream");
  std::string want;
  for (int i = 0; i < 1000; ++i) want += "data: " + std::to_string(i) + "\n\n";
  want += "data: [DONE]\n\n";
  EXPECT_EQ(got, want);
  EXPECT_GT(pieces, 0);
}

TEST(HttpServer, EachChunkArrivesImmediately) {
  Server s;
  s.route("GET", "/slow", [](Request&, Response& res) -> asio::awaitable<void> {
    co_await res.start_stream(200, "text/event-stream");
    co_await res.write("first");
    co_await sleep_for(500ms);
    co_await res.write("second");
    co_await res.finish();
  });
  s.start();
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::pair<std::string, std::chrono::steady_clock::duration>> seen;
  fetch_stream("127.0.0.1", s.port(), "GET", "/slow", "", {}, [&](std::string_view c) {
    seen.emplace_back(std::string(c), std::chrono::steady_clock::now() - t0);
    return true;
  });
  ASSERT_GE(seen.size(), 2u);
  EXPECT_EQ(seen.front().first, "first");
  EXPECT_LT(seen.front().second, 300ms);  // not held back until the second chunk or the end
  EXPECT_GE(seen.back().second, 450ms);
}

// The handler waits for "engine" output that never comes; the client hangs up. The handler must
// learn that without writing anything.
TEST(HttpServer, DisconnectWakesAWaitingHandler) {
  Server s;
  std::promise<bool> woke;
  s.route("POST", "/v1/completions", [&](Request&, Response& res) -> asio::awaitable<void> {
    AsyncQueue<int> tokens;  // nobody pushes
    auto v = co_await tokens.pop(&res.cancel_signal());
    woke.set_value(!v && res.cancelled());
  });
  s.start();
  {
    RawConn c(s.port());
    c.send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}");
    std::this_thread::sleep_for(100ms);
  }  // closed
  auto f = woke.get_future();
  ASSERT_EQ(f.wait_for(3s), std::future_status::ready);
  EXPECT_TRUE(f.get());
  EXPECT_EQ(fetch("127.0.0.1", s.port(), "GET", "/nope").status, 404);  // still serving
}

TEST(HttpServer, WriteToGoneClientReturnsFalse) {
  Server s;
  std::promise<int> written;
  s.route("GET", "/forever", [&](Request&, Response& res) -> asio::awaitable<void> {
    co_await res.start_stream(200, "text/event-stream");
    int n = 0;
    std::string chunk(1024, 'x');
    while (co_await res.write(chunk)) ++n;
    written.set_value(n);
  });
  s.start();
  {
    RawConn c(s.port());
    c.send("GET /forever HTTP/1.1\r\nHost: x\r\n\r\n");
    c.read_until("xxxx");
  }
  auto f = written.get_future();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
}

TEST(HttpServer, StopWithInflightRequestsDoesNotHang) {
  auto s = std::make_unique<Server>();
  std::atomic<int> entered = 0;
  s->route("POST", "/wait", [&](Request&, Response& res) -> asio::awaitable<void> {
    ++entered;
    AsyncQueue<int> q;
    co_await q.pop(&res.cancel_signal());
    co_await res.send(200, "text/plain", "late");
  });
  s->route("GET", "/stream", [&](Request&, Response& res) -> asio::awaitable<void> {
    ++entered;
    co_await res.start_stream(200, "text/plain");
    while (co_await res.write("tick")) co_await sleep_for(5ms);
  });
  s->start();
  std::vector<std::unique_ptr<RawConn>> clients;
  for (int i = 0; i < 4; ++i) {
    clients.push_back(std::make_unique<RawConn>(s->port()));
    clients.back()->send(i % 2 ? "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"
                               : "POST /wait HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  }
  clients.push_back(std::make_unique<RawConn>(s->port()));  // idle keep-alive connection
  ASSERT_TRUE(eventually([&] { return entered == 4; }));
  auto t0 = std::chrono::steady_clock::now();
  s->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  s.reset();
  for (auto& c : clients) c->read_all();  // every connection was closed
}

}  // namespace
}  // namespace llmd::http
