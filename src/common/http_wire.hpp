#pragma once
// HTTP/1.1 heads and chunk framing written by hand, for the server's responses and the client's
// requests. Beast's serializers cost ~15k instructions for a six-field head (buffers_cat_view
// iteration and a fields container that allocates per field); a proxy writes two heads per request.
#include "common/error.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <fmt/format.h>
#include <boost/system/error_code.hpp>

namespace llmd::http::wire {

inline constexpr std::string_view kCrlf = "\r\n";
inline constexpr std::string_view kLastChunk = "0\r\n\r\n";

// True if `s` holds CR or LF (or, for a field name, a colon). One pass: find_first_of ran memchr
// over the set for every byte, ~4k instructions for a proxied request's heads.
inline bool breaks_line(std::string_view s, bool colon) {
  for (const char c : s)
    if (c == '\r' || c == '\n' || (colon && c == ':')) return true;
  return false;
}

// "Name: value\r\n". A name or value with a line break would smuggle a header (or a whole request)
// past whoever reads ours: refused.
inline void append_field(std::string& out, std::string_view name, std::string_view value) {
  if (breaks_line(name, true) || breaks_line(value, false))
    fail("HTTP: header '{}' holds a line break or colon", name.substr(0, 64));
  out.append(name);
  out.append(": ");
  out.append(value);
  out.append(kCrlf);
}

// "Name: <decimal>\r\n", without fmt's format-string parsing (a few hundred instructions a call).
inline void append_field(std::string& out, std::string_view name, std::uint64_t value) {
  const fmt::format_int digits(value);
  out.append(name);
  out.append(": ");
  out.append(digits.data(), digits.size());
  out.append(kCrlf);
}

// The reason phrase of a status line (RFC 9110 15). Clients ignore it; it is there for people.
inline std::string_view reason_phrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 413:
      return "Content Too Large";
    case 415:
      return "Unsupported Media Type";
    case 422:
      return "Unprocessable Content";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return status >= 500 ? "Server Error" : status >= 400 ? "Client Error" : "Unknown";
  }
}

// The "<hex size>\r\n" that opens a chunk of `n` bytes (the chunk then ends with kCrlf).
// For asio::async_write: write everything, handing the kernel all that is left at each call.
// Asio's transfer_all() caps each call at 64 KiB, which for a large body is more system calls and
// a longer window in which a server that already answered (413) closes on a half-sent request.
inline std::size_t all_at_once(const boost::system::error_code& ec, std::size_t) {
  return ec ? 0 : std::size_t{1} << 30;
}

struct ChunkHead {
  char buf[20];
  std::size_t len = 0;
  explicit ChunkHead(std::size_t n) {
    const auto r = fmt::format_to_n(buf, sizeof buf - 2, "{:x}", n);
    len = r.size;
    buf[len++] = '\r';
    buf[len++] = '\n';
  }
  std::string_view view() const { return {buf, len}; }
};

}  // namespace llmd::http::wire
