#pragma once
// HTTP/1.1 message heads and body framing (RFC 9112), parsed in place: the server's requests and the
// client's responses. The results are views into the caller's buffer and the field list is the
// caller's to reuse, so a connection parses request after request without allocating. (Beast's
// parsers allocated a node per header field and wrapped every read in three composed operations:
// about a fifth of the router's instructions per proxied request.)
//
// Strict wherever leniency would let two parties read one message two ways (request smuggling):
// obsolete line folding, whitespace before a colon, bare LF line ends, Content-Length beside
// Transfer-Encoding in a request, differing Content-Lengths and transfer codings other than one
// final "chunked" are refused. Every error is a static string naming the problem.
#include "common/http_headers.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace llmd::http::wire {

using Field = FieldView;

enum class Parse { kIncomplete, kComplete, kInvalid };

// Fields beyond this many make a head invalid, whatever its size in bytes.
inline constexpr std::size_t kMaxFields = 128;

struct RequestHead {
  std::string_view method;
  std::string_view target;
  int minor_version = 1;      // HTTP/1.0 or HTTP/1.1
  std::vector<Field> fields;  // cleared and refilled by each parse: its capacity is kept
  std::size_t size = 0;       // bytes of the head, its blank line included
  const char* error = "";     // why a parse returned kInvalid
};

struct ResponseHead {
  int status = 0;
  int minor_version = 1;
  std::vector<Field> fields;
  std::size_t size = 0;
  const char* error = "";
};

// Where a head ends: the index just past its blank line, or npos while it is incomplete. `from` is
// where the previous search of the same (grown) input stopped, so a head that arrives a byte at a
// time is scanned once, not once per byte.
std::size_t find_head_end(std::string_view in, std::size_t& from);

// `in` must hold the whole head (find_head_end found its end); leading empty lines are skipped
// (RFC 9112 2.2) and counted in `size`.
Parse parse_request_head(std::string_view in, RequestHead& out);
Parse parse_response_head(std::string_view in, ResponseHead& out);

// The value of the first field named `name` (case-insensitive), or nullptr.
const std::string_view* find_field(const std::vector<Field>& fields, std::string_view name);

struct Framing {
  enum class Kind : std::uint8_t { kNone, kLength, kChunked, kUntilClose };
  Kind kind = Kind::kNone;
  std::uint64_t length = 0;  // for kLength
  bool keep_alive = true;    // the connection may carry another message after this one
};

// How the body of a request is delimited (RFC 9112 6.3). nullptr, or why the request is invalid.
const char* request_framing(const RequestHead& head, Framing& out);
// The same for a response to a request with method `method` ("HEAD" responses carry no body).
const char* response_framing(const ResponseHead& head, std::string_view method, Framing& out);

// Decodes a chunked body incrementally: input may end anywhere, output goes to a caller's buffer.
class ChunkedDecoder {
 public:
  enum class Status { kMore, kDone, kInvalid };

  // Consumes from the front of `in`, appending payload bytes to out[written..cap). Returns kMore
  // when `in` is used up or the output is full (the caller tells which), kDone after the last chunk
  // and its trailers (the rest of `in` is the next message), kInvalid with error() set.
  Status decode(std::string_view& in, char* out, std::size_t cap, std::size_t& written);
  const char* error() const { return error_; }
  bool done() const { return state_ == State::kDone; }

 private:
  enum class State : std::uint8_t {
    kSize,
    kExtension,
    kSizeLf,
    kData,
    kDataCr,
    kDataLf,
    kTrailerStart,
    kTrailer,
    kTrailerLf,
    kEndLf,
    kDone
  };
  Status invalid(const char* why);

  State state_ = State::kSize;
  std::uint64_t remaining_ = 0;  // of the current chunk's data, or its size while being read
  std::size_t digits_ = 0;       // of the size being read
  std::size_t line_bytes_ = 0;   // of the extension or trailer line being skipped
  const char* error_ = "";
};

}  // namespace llmd::http::wire
