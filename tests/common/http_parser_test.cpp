#include "common/http_parser.hpp"

#include <gtest/gtest.h>

#include <string>

namespace llmd::http::wire {
namespace {

using namespace std::string_literals;

TEST(HttpParser, FindsTheHeadEndAcrossPartialInputScanningEachByteOnce) {
  const std::string msg = "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nbody";
  std::size_t from = 0;
  for (std::size_t n = 0; n < 29; ++n)
    EXPECT_EQ(find_head_end(std::string_view(msg).substr(0, n), from), std::string_view::npos) << n;
  EXPECT_GE(from, 24u);  // resumes near where it stopped, not at the start
  EXPECT_EQ(find_head_end(msg, from), 29u);
  std::size_t fresh = 0;
  EXPECT_EQ(find_head_end("\r\n\r\n", fresh), std::string_view::npos);  // only empty lines: no head yet
}

TEST(HttpParser, ParsesARequestHeadIntoViews) {
  const std::string msg =
      "POST /v1/completions?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Type:application/json \r\n"
      "X-Empty:\r\nContent-Length: 5\r\n\r\nhello";
  std::size_t from = 0;
  const std::size_t end = find_head_end(msg, from);
  RequestHead h;
  ASSERT_EQ(parse_request_head(std::string_view(msg).substr(0, end), h), Parse::kComplete) << h.error;
  EXPECT_EQ(h.method, "POST");
  EXPECT_EQ(h.target, "/v1/completions?x=1");
  EXPECT_EQ(h.minor_version, 1);
  EXPECT_EQ(h.size, end);
  ASSERT_EQ(h.fields.size(), 4u);
  EXPECT_EQ(h.fields[1].name, "Content-Type");
  EXPECT_EQ(h.fields[1].value, "application/json");
  EXPECT_EQ(h.fields[2].value, "");
  ASSERT_NE(find_field(h.fields, "content-length"), nullptr);
  EXPECT_EQ(*find_field(h.fields, "CONTENT-LENGTH"), "5");
  EXPECT_EQ(find_field(h.fields, "accept"), nullptr);
  Framing f;
  EXPECT_EQ(request_framing(h, f), nullptr);
  EXPECT_EQ(f.kind, Framing::Kind::kLength);
  EXPECT_EQ(f.length, 5u);
  EXPECT_TRUE(f.keep_alive);
}

Parse parse_req(const std::string& msg, RequestHead& h) {
  std::size_t from = 0;
  const std::size_t end = find_head_end(msg, from);
  EXPECT_NE(end, std::string_view::npos) << msg;
  return parse_request_head(std::string_view(msg).substr(0, end), h);
}

TEST(HttpParser, RefusesMalformedRequestHeadsNamingTheProblem) {
  const std::pair<std::string, std::string> cases[] = {
      {"GET /\r\n\r\n", "a malformed request line"},
      {"GET  / HTTP/1.1\r\n\r\n", "a bad request target"},
      {"G(T / HTTP/1.1\r\n\r\n", "a bad request method"},
      {"GET /a\x01 HTTP/1.1\r\n\r\n", "a bad request target"},
      {"GET / HTTP/2.0\r\n\r\n", "an HTTP version other than HTTP/1.0 or HTTP/1.1"},
      {"GET / HTTP/1.1x\r\n\r\n", "an HTTP version other than HTTP/1.0 or HTTP/1.1"},
      {"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", "obsolete line folding in a header field"},
      {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", "a bad character in a header field name"},
      {"GET / HTTP/1.1\r\nNoColon\r\n\r\n", "a header line without a colon"},
      {"GET / HTTP/1.1\r\n: a\r\n\r\n", "an empty header field name"},
      {"GET / HTTP/1.1\r\nA: b\x7f\r\n\r\n", "a control character in a header field value"},
      {"GET / HTTP/1.1\r\nA: b\nC: d\r\n\r\n", "a control character in a header field value"},
  };
  for (const auto& [msg, why] : cases) {
    RequestHead h;
    EXPECT_EQ(parse_req(msg, h), Parse::kInvalid) << msg;
    EXPECT_EQ(std::string(h.error), why) << msg;
  }
  std::string many = "GET / HTTP/1.1\r\n";
  for (std::size_t i = 0; i <= kMaxFields; ++i) many += "A: b\r\n";
  RequestHead h;
  EXPECT_EQ(parse_req(many + "\r\n", h), Parse::kInvalid);
  EXPECT_EQ(std::string(h.error), "too many header fields");
}

TEST(HttpParser, RequestFramingRefusesWhatCouldBeReadTwoWays) {
  const std::pair<std::string, const char*> cases[] = {
      {"Content-Length: 5\r\nTransfer-Encoding: chunked", "both Transfer-Encoding and Content-Length"},
      {"Content-Length: 5\r\nContent-Length: 6", "a bad Content-Length"},
      {"Content-Length: 5, 6", "a bad Content-Length"},
      {"Content-Length: -1", "a bad Content-Length"},
      {"Content-Length: 1e3", "a bad Content-Length"},
      {"Content-Length: 99999999999999999999", "a bad Content-Length"},
      {"Content-Length:", "a bad Content-Length"},
      {"Transfer-Encoding: gzip", "a transfer coding other than chunked"},
      {"Transfer-Encoding: chunked, gzip", "a transfer coding other than chunked"},
  };
  for (const auto& [fields, why] : cases) {
    RequestHead h;
    ASSERT_EQ(parse_req("POST / HTTP/1.1\r\n" + fields + "\r\n\r\n", h), Parse::kComplete) << fields;
    Framing f;
    const char* got = request_framing(h, f);
    ASSERT_NE(got, nullptr) << fields;
    EXPECT_EQ(std::string(got), why) << fields;
  }
  RequestHead h;
  Framing f;
  ASSERT_EQ(parse_req("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", h), Parse::kComplete);
  EXPECT_STREQ(request_framing(h, f), "Transfer-Encoding in an HTTP/1.0 request");
  // Repeated equal lengths are one length (RFC 9110 8.6).
  ASSERT_EQ(parse_req("POST / HTTP/1.1\r\nContent-Length: 7, 7\r\nContent-Length: 7\r\n\r\n", h),
            Parse::kComplete);
  EXPECT_EQ(request_framing(h, f), nullptr);
  EXPECT_EQ(f.length, 7u);
  ASSERT_EQ(parse_req("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n", h), Parse::kComplete);
  EXPECT_EQ(request_framing(h, f), nullptr);
  EXPECT_EQ(f.kind, Framing::Kind::kChunked);
}

TEST(HttpParser, KeepAliveFollowsTheVersionAndConnectionTokens) {
  const std::pair<std::string, bool> cases[] = {
      {"GET / HTTP/1.1\r\n\r\n", true},
      {"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false},
      {"GET / HTTP/1.1\r\nConnection: Upgrade, Close\r\n\r\n", false},
      {"GET / HTTP/1.0\r\n\r\n", false},
      {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true},
  };
  for (const auto& [msg, keep] : cases) {
    RequestHead h;
    ASSERT_EQ(parse_req(msg, h), Parse::kComplete) << msg;
    Framing f;
    ASSERT_EQ(request_framing(h, f), nullptr);
    EXPECT_EQ(f.keep_alive, keep) << msg;
    EXPECT_EQ(f.kind, Framing::Kind::kNone);
  }
}

// `msg` is a literal: the head's views point into it.
ResponseHead parse_resp(std::string_view msg, Parse expect = Parse::kComplete) {
  std::size_t from = 0;
  const std::size_t end = find_head_end(msg, from);
  ResponseHead h;
  EXPECT_EQ(parse_response_head(msg.substr(0, end), h), expect) << msg << h.error;
  return h;
}

TEST(HttpParser, ResponseHeadsAndTheirFraming) {
  auto h =
      parse_resp("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n");
  EXPECT_EQ(h.status, 200);
  Framing f;
  EXPECT_EQ(response_framing(h, "POST", f), nullptr);
  EXPECT_EQ(f.kind, Framing::Kind::kChunked);
  EXPECT_TRUE(f.keep_alive);

  h = parse_resp("HTTP/1.1 404\r\nContent-Length: 3\r\n\r\n");  // no reason phrase at all
  EXPECT_EQ(h.status, 404);
  EXPECT_EQ(response_framing(h, "GET", f), nullptr);
  EXPECT_EQ(f.kind, Framing::Kind::kLength);
  EXPECT_EQ(f.length, 3u);
  EXPECT_EQ(response_framing(h, "HEAD", f), nullptr);
  EXPECT_EQ(f.kind, Framing::Kind::kNone);

  h = parse_resp("HTTP/1.0 200 OK\r\n\r\n");  // no length: the body runs to the close
  EXPECT_EQ(response_framing(h, "GET", f), nullptr);
  EXPECT_EQ(f.kind, Framing::Kind::kUntilClose);
  EXPECT_FALSE(f.keep_alive);

  h = parse_resp("HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n");
  EXPECT_EQ(response_framing(h, "GET", f), nullptr);
  EXPECT_EQ(f.kind, Framing::Kind::kNone);

  h = parse_resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n");
  EXPECT_EQ(response_framing(h, "GET", f), nullptr);
  EXPECT_EQ(f.kind, Framing::Kind::kChunked);
  EXPECT_FALSE(f.keep_alive);  // both: a sign of smuggling, the connection is not reused

  h = parse_resp("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n");
  EXPECT_STREQ(response_framing(h, "GET", f), "a bad Content-Length");

  for (const char* bad : {"HTTP/1.1 20 OK\r\n\r\n", "HTTP/1.1 2000 OK\r\n\r\n", "HTTP/3.0 200 OK\r\n\r\n",
                          "ICY 200 OK\r\n\r\n", "HTTP/1.1  200 OK\r\n\r\n"}) {
    const auto r = parse_resp(bad, Parse::kInvalid);
    EXPECT_STREQ(r.error, "a malformed status line") << bad;
  }
}

// Decodes `wire` fed `step` bytes at a time into an output buffer of `cap` bytes; `rest` is what
// the decoder left unread.
std::string dechunk(const std::string& wire, std::size_t step, std::size_t cap, ChunkedDecoder::Status& st,
                    std::string& rest) {
  ChunkedDecoder d;
  std::string out, pending;
  std::vector<char> buf(cap);
  std::size_t pos = 0;
  st = ChunkedDecoder::Status::kMore;
  while (st == ChunkedDecoder::Status::kMore) {
    std::string_view in = pending;
    std::size_t written = 0;
    st = d.decode(in, buf.data(), cap, written);
    out.append(buf.data(), written);
    pending.erase(0, pending.size() - in.size());
    if (st == ChunkedDecoder::Status::kMore && written < cap) {  // the input is used up: feed more
      if (pos >= wire.size()) break;
      pending += wire.substr(pos, step);
      pos += step;
    }
  }
  rest = pending + wire.substr(std::min(pos, wire.size()));
  return out;
}

TEST(HttpParser, ChunkedBodiesDecodeWhereverTheInputAndOutputAreCut) {
  const std::string wire =
      "5\r\nhello\r\n1;name=value\r\n \r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\nGET / HTTP/1.1\r\n";
  for (std::size_t step : {1u, 2u, 3u, 7u, 100u})
    for (std::size_t cap : {1u, 4u, 64u}) {
      ChunkedDecoder::Status st;
      std::string rest;
      EXPECT_EQ(dechunk(wire, step, cap, st, rest), "hello 0123456789") << step << " " << cap;
      EXPECT_EQ(st, ChunkedDecoder::Status::kDone);
      EXPECT_EQ(rest, "GET / HTTP/1.1\r\n") << "the next message is left alone";
    }
}

TEST(HttpParser, MalformedChunkedBodiesAreRefused) {
  const std::pair<std::string, std::string> cases[] = {
      {"\r\n", "a chunk without a size"},
      {"x\r\n", "a chunk without a size"},
      {"5x\r\n", "a bad character in a chunk size"},
      {"1000000000000000\r\n", "a chunk size too large"},
      {"5\nhello", "a bad character in a chunk size"},
      {"5\r\nhello!\r\n", "chunk data longer than its size"},
      {"5\r\nhello\r!", "chunk data without CRLF"},
      {"5;a\nb\r\n", "a bare LF in a chunk line"},
      {"0\r\nA: b\n", "a bare LF in a trailer"},
      {"0\r\n\rx", "a chunked body that does not end with CRLF"},
      {"5;" + std::string(9000, 'e'), "a chunk extension too long"},
  };
  for (const auto& [wire, why] : cases) {
    ChunkedDecoder d;
    std::string_view in = wire;
    char out[64];
    std::size_t written = 0;
    EXPECT_EQ(d.decode(in, out, sizeof out, written), ChunkedDecoder::Status::kInvalid) << wire.substr(0, 20);
    EXPECT_EQ(std::string(d.error()), why) << wire.substr(0, 20);
  }
}

}  // namespace
}  // namespace llmd::http::wire
