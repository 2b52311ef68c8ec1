#pragma once
// HTTP/1.1 heads and chunk framing written by hand, for the server's responses and the client's
// requests. Beast's serializers cost ~15k instructions for a six-field head (buffers_cat_view
// iteration and a fields container that allocates per field); a proxy writes two heads per request.
#include "common/error.hpp"

#include <cstddef>
#include <string>
#include <string_view>

#include <fmt/format.h>
#include <boost/system/error_code.hpp>

namespace llmd::http::wire {

inline constexpr std::string_view kCrlf = "\r\n";
inline constexpr std::string_view kLastChunk = "0\r\n\r\n";

// "Name: value\r\n". A name or value with a line break would smuggle a header (or a whole request)
// past whoever reads ours: refused.
inline void append_field(std::string& out, std::string_view name, std::string_view value) {
  if (name.find_first_of("\r\n:") != std::string_view::npos ||
      value.find_first_of("\r\n") != std::string_view::npos)
    fail("HTTP: header '{}' holds a line break or colon", name.substr(0, 64));
  out.append(name);
  out.append(": ");
  out.append(value);
  out.append(kCrlf);
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
