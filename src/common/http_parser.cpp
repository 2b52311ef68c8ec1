#include "common/http_parser.hpp"

#include "common/http_headers.hpp"

#include <algorithm>
#include <cstring>

namespace llmd::http::wire {
namespace {

// Character classes by table: a head's every byte is checked, and a lookup is one load.
// RFC 9110 5.6.2: a token's characters (method, field name, transfer coding); 5.5: a field value
// holds visible characters, obs-text, spaces and tabs, no other control bytes.
struct CharClasses {
  bool tchar[256] = {};
  bool value[256] = {};
  constexpr CharClasses() {
    for (int c = 0; c < 256; ++c) {
      const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
      tchar[c] = alnum || std::string_view("!#$%&'*+-.^_`|~").find(char(c)) != std::string_view::npos;
      value[c] = c == '\t' || (c >= 0x20 && c != 0x7f);
    }
  }
};
constexpr CharClasses kClass;
bool is_tchar(char c) {
  return kClass.tchar[static_cast<unsigned char>(c)];
}
bool is_value_char(char c) {
  return kClass.value[static_cast<unsigned char>(c)];
}
constexpr bool is_ws(char c) {
  return c == ' ' || c == '\t';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ws(s.back())) s.remove_suffix(1);
  return s;
}

// Cuts `in` at the next CRLF: returns the line, leaves `in` after it. The head's end was found
// already, so every line of it ends; a bare LF inside a line is refused by the callers' checks.
std::string_view take_line(std::string_view& in) {
  const std::size_t cr = in.find("\r\n");
  const std::string_view line = in.substr(0, cr);
  in.remove_prefix(cr == std::string_view::npos ? in.size() : cr + 2);
  return line;
}

// "HTTP/1.0" or "HTTP/1.1" at the start of `s`: the minor version, or -1.
int http_version(std::string_view s) {
  if (s.size() < 8 || s.substr(0, 7) != "HTTP/1." || (s[7] != '0' && s[7] != '1')) return -1;
  return s[7] - '0';
}

// The field lines after the start line, up to the blank line.
const char* parse_fields(std::string_view& in, std::vector<Field>& fields) {
  fields.clear();
  for (;;) {
    const std::string_view line = take_line(in);
    if (line.empty()) return nullptr;
    if (is_ws(line.front())) return "obsolete line folding in a header field";
    if (fields.size() == kMaxFields) return "too many header fields";
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) return "a header line without a colon";
    const std::string_view name = line.substr(0, colon);
    if (name.empty()) return "an empty header field name";
    for (const char c : name)
      if (!is_tchar(c)) return "a bad character in a header field name";
    const std::string_view value = trim(line.substr(colon + 1));
    for (const char c : value)
      if (!is_value_char(c)) return "a control character in a header field value";
    fields.push_back({name, value});
  }
}

// Visits the comma-separated elements of a field value, trimmed, empty ones skipped.
template <class F>
void for_each_element(std::string_view v, F&& f) {
  while (!v.empty()) {
    const std::size_t comma = v.find(',');
    const std::string_view element = trim(v.substr(0, comma));
    v.remove_prefix(comma == std::string_view::npos ? v.size() : comma + 1);
    if (!element.empty()) f(element);
  }
}

// What the fields say about framing, in one pass over them.
struct FramingFields {
  enum class Length { kAbsent, kValid, kInvalid } length = Length::kAbsent;
  std::uint64_t length_value = 0;
  enum class Coding { kAbsent, kChunked, kOther } coding = Coding::kAbsent;
  bool close = false;       // Connection: close
  bool keep_alive = false;  // Connection: keep-alive
};

FramingFields scan_framing(const std::vector<Field>& fields) {
  using Length = FramingFields::Length;
  using Coding = FramingFields::Coding;
  FramingFields ff;
  for (const Field& field : fields) {
    if (iequals(field.name, "content-length")) {
      // Every value (repeated fields, comma lists) the same decimal number; a present but empty
      // field is as bad as a wrong one.
      bool any = false;
      for_each_element(field.value, [&](std::string_view e) {
        any = true;
        std::uint64_t n = 0;
        const bool digits =
            e.size() <= 18 && std::all_of(e.begin(), e.end(), [](char c) { return c >= '0' && c <= '9'; });
        for (const char c : digits ? e : std::string_view{}) n = n * 10 + static_cast<std::uint64_t>(c - '0');
        if (!digits || (ff.length == Length::kValid && n != ff.length_value)) ff.length = Length::kInvalid;
        if (ff.length == Length::kInvalid) return;
        ff.length = Length::kValid;
        ff.length_value = n;
      });
      if (!any) ff.length = Length::kInvalid;
    } else if (iequals(field.name, "transfer-encoding")) {
      // Only the last coding matters for framing; llmd decodes no coding but chunked.
      Coding last = Coding::kOther;
      for_each_element(field.value, [&](std::string_view e) {
        last = iequals(e, "chunked") ? Coding::kChunked : Coding::kOther;
      });
      ff.coding = last;
    } else if (iequals(field.name, "connection")) {
      for_each_element(field.value, [&](std::string_view e) {
        ff.close |= iequals(e, "close");
        ff.keep_alive |= iequals(e, "keep-alive");
      });
    }
  }
  return ff;
}

bool keeps_alive(const FramingFields& ff, int minor_version) {
  return !ff.close && (minor_version >= 1 || ff.keep_alive);
}

}  // namespace

std::size_t find_head_end(std::string_view in, std::size_t& from) {
  // Leading empty lines are not the blank line that ends a head.
  std::size_t start = 0;
  while (start + 1 < in.size() && in[start] == '\r' && in[start + 1] == '\n') start += 2;
  const std::size_t begin = std::max(from, start);
  const std::size_t end = in.find("\r\n\r\n", begin);
  if (end == std::string_view::npos) {
    from = in.size() >= 3 ? std::max(begin, in.size() - 3) : begin;
    return std::string_view::npos;
  }
  from = 0;
  return end + 4;
}

const std::string_view* find_field(const std::vector<Field>& fields, std::string_view name) {
  for (const Field& f : fields)
    if (iequals(f.name, name)) return &f.value;
  return nullptr;
}

Parse parse_request_head(std::string_view in, RequestHead& out) {
  const std::size_t total = in.size();
  while (in.starts_with("\r\n")) in.remove_prefix(2);
  const std::string_view line = take_line(in);
  // method SP request-target SP HTTP-version
  const std::size_t sp1 = line.find(' ');
  const std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) {
    out.error = "a malformed request line";
    return Parse::kInvalid;
  }
  out.method = line.substr(0, sp1);
  out.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  out.minor_version = http_version(line.substr(sp2 + 1));
  if (out.method.empty() || !std::all_of(out.method.begin(), out.method.end(), is_tchar)) {
    out.error = "a bad request method";
    return Parse::kInvalid;
  }
  if (out.target.empty() || !std::all_of(out.target.begin(), out.target.end(), [](char c) {
        return static_cast<unsigned char>(c) > 0x20 && c != 0x7f;
      })) {
    out.error = "a bad request target";
    return Parse::kInvalid;
  }
  if (out.minor_version < 0 || line.size() != sp2 + 1 + 8) {
    out.error = "an HTTP version other than HTTP/1.0 or HTTP/1.1";
    return Parse::kInvalid;
  }
  if (const char* why = parse_fields(in, out.fields)) {
    out.error = why;
    return Parse::kInvalid;
  }
  out.size = total - in.size();
  return Parse::kComplete;
}

Parse parse_response_head(std::string_view in, ResponseHead& out) {
  const std::size_t total = in.size();
  while (in.starts_with("\r\n")) in.remove_prefix(2);
  const std::string_view line = take_line(in);
  // HTTP-version SP 3DIGIT SP reason-phrase (the reason may be empty; some servers drop its space)
  out.minor_version = http_version(line);
  if (out.minor_version < 0 || line.size() < 12 || line[8] != ' ' ||
      !std::all_of(line.begin() + 9, line.begin() + 12, [](char c) { return c >= '0' && c <= '9'; }) ||
      (line.size() > 12 && line[12] != ' ')) {
    out.error = "a malformed status line";
    return Parse::kInvalid;
  }
  out.status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
  if (const char* why = parse_fields(in, out.fields)) {
    out.error = why;
    return Parse::kInvalid;
  }
  out.size = total - in.size();
  return Parse::kComplete;
}

const char* request_framing(const RequestHead& head, Framing& out) {
  using Length = FramingFields::Length;
  using Coding = FramingFields::Coding;
  const FramingFields ff = scan_framing(head.fields);
  out = {};
  out.keep_alive = keeps_alive(ff, head.minor_version);
  if (ff.coding != Coding::kAbsent) {
    if (ff.length != Length::kAbsent) return "both Transfer-Encoding and Content-Length";
    if (head.minor_version == 0) return "Transfer-Encoding in an HTTP/1.0 request";
    if (ff.coding != Coding::kChunked) return "a transfer coding other than chunked";
    out.kind = Framing::Kind::kChunked;
    return nullptr;
  }
  if (ff.length == Length::kInvalid) return "a bad Content-Length";
  out.length = ff.length_value;
  if (out.length > 0) out.kind = Framing::Kind::kLength;
  return nullptr;
}

const char* response_framing(const ResponseHead& head, std::string_view method, Framing& out) {
  using Length = FramingFields::Length;
  using Coding = FramingFields::Coding;
  const FramingFields ff = scan_framing(head.fields);
  out = {};
  out.keep_alive = keeps_alive(ff, head.minor_version);
  if (method == "HEAD" || head.status < 200 || head.status == 204 || head.status == 304) return nullptr;
  if (ff.coding == Coding::kChunked) {
    out.kind = Framing::Kind::kChunked;
    // RFC 9112 6.3: a Content-Length beside Transfer-Encoding is a sign of smuggling; the
    // connection must not be reused.
    if (ff.length != Length::kAbsent) out.keep_alive = false;
    return nullptr;
  }
  if (ff.coding == Coding::kOther || ff.length == Length::kAbsent) {
    out.kind = Framing::Kind::kUntilClose;
    out.keep_alive = false;
    return nullptr;
  }
  if (ff.length == Length::kInvalid) return "a bad Content-Length";
  out.length = ff.length_value;
  if (out.length > 0) out.kind = Framing::Kind::kLength;
  return nullptr;
}

ChunkedDecoder::Status ChunkedDecoder::invalid(const char* why) {
  error_ = why;
  return Status::kInvalid;
}

ChunkedDecoder::Status ChunkedDecoder::decode(std::string_view& in, char* out, std::size_t cap,
                                              std::size_t& written) {
  // A chunk extension or trailer line longer than this is an attack, not a message.
  constexpr std::size_t kMaxLineBytes = 8 << 10;
  while (!in.empty()) {
    const char c = in.front();
    switch (state_) {
      case State::kSize: {
        int v = -1;
        if (c >= '0' && c <= '9') v = c - '0';
        if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
        if (c >= 'A' && c <= 'F') v = c - 'A' + 10;
        if (v < 0) {
          if (digits_ == 0) return invalid("a chunk without a size");
          if (c == '\r') {
            state_ = State::kSizeLf;
          } else if (c == ';' || is_ws(c)) {
            state_ = State::kExtension;
            line_bytes_ = 0;
          } else {
            return invalid("a bad character in a chunk size");
          }
        } else {
          if (++digits_ > 15) return invalid("a chunk size too large");
          remaining_ = remaining_ * 16 + static_cast<std::uint64_t>(v);
        }
        in.remove_prefix(1);
        break;
      }
      case State::kExtension:
        if (c == '\r')
          state_ = State::kSizeLf;
        else if (c == '\n')
          return invalid("a bare LF in a chunk line");
        else if (++line_bytes_ > kMaxLineBytes)
          return invalid("a chunk extension too long");
        in.remove_prefix(1);
        break;
      case State::kSizeLf:
        if (c != '\n') return invalid("a chunk size line without CRLF");
        in.remove_prefix(1);
        state_ = remaining_ == 0 ? State::kTrailerStart : State::kData;
        break;
      case State::kData: {
        if (written == cap) return Status::kMore;
        const std::size_t n = static_cast<std::size_t>(
            std::min<std::uint64_t>({remaining_, in.size(), static_cast<std::uint64_t>(cap - written)}));
        std::memcpy(out + written, in.data(), n);
        written += n;
        in.remove_prefix(n);
        remaining_ -= n;
        if (remaining_ == 0) state_ = State::kDataCr;
        break;
      }
      case State::kDataCr:
        if (c != '\r') return invalid("chunk data longer than its size");
        in.remove_prefix(1);
        state_ = State::kDataLf;
        break;
      case State::kDataLf:
        if (c != '\n') return invalid("chunk data without CRLF");
        in.remove_prefix(1);
        state_ = State::kSize;
        digits_ = 0;
        break;
      case State::kTrailerStart:
        state_ = c == '\r' ? State::kEndLf : State::kTrailer;
        line_bytes_ = 0;
        if (c == '\r') in.remove_prefix(1);
        break;
      case State::kTrailer:
        if (c == '\r')
          state_ = State::kTrailerLf;
        else if (c == '\n')
          return invalid("a bare LF in a trailer");
        else if (++line_bytes_ > kMaxLineBytes)
          return invalid("a trailer line too long");
        in.remove_prefix(1);
        break;
      case State::kTrailerLf:
        if (c != '\n') return invalid("a trailer line without CRLF");
        in.remove_prefix(1);
        state_ = State::kTrailerStart;
        break;
      case State::kEndLf:
        if (c != '\n') return invalid("a chunked body that does not end with CRLF");
        in.remove_prefix(1);
        state_ = State::kDone;
        return Status::kDone;
      case State::kDone:
        return Status::kDone;
    }
  }
  return state_ == State::kDone ? Status::kDone : Status::kMore;
}

}  // namespace llmd::http::wire
