#pragma once
// Incremental Server-Sent Events parsing for `llmd bench`: body pieces arrive split anywhere (inside
// a line, inside "\r\n"), so the parser keeps the unfinished line and hands out whole events. A
// second step reads one OpenAI streaming payload (completions or chat) into what the driver counts.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace llmd::bench {

struct SseEvent {
  std::string event;  // the "event:" field ("" when absent, i.e. "message")
  std::string data;   // the "data:" lines joined by '\n'
};

class SseParser {
 public:
  // An unfinished line longer than this is not SSE (a runaway or binary body): the parser fails.
  static constexpr std::size_t kDefaultMaxLineBytes = std::size_t{4} << 20;

  explicit SseParser(std::size_t max_line_bytes = kDefaultMaxLineBytes) : max_line_(max_line_bytes) {}

  // Feeds one body piece; calls on_event(const SseEvent&) for every event completed by it. Returns
  // false once the stream is malformed (then and afterwards nothing more is delivered).
  template <class F>
  bool feed(std::string_view piece, F&& on_event) {
    if (failed_) return false;
    std::size_t pos = 0;
    while (pos < piece.size()) {
      if (skip_lf_) {  // a "\r\n" split between two pieces
        skip_lf_ = false;
        if (piece[pos] == '\n') {
          ++pos;
          continue;
        }
      }
      const std::size_t eol = piece.find_first_of("\r\n", pos);
      if (eol == std::string_view::npos) {
        line_.append(piece.substr(pos));
        if (line_.size() > max_line_) return fail();
        return true;
      }
      std::string_view line = piece.substr(pos, eol - pos);
      if (!line_.empty()) {
        line_.append(line);
        line = line_;
      }
      if (piece[eol] == '\r') {
        if (eol + 1 < piece.size()) {
          pos = eol + (piece[eol + 1] == '\n' ? 2 : 1);
        } else {
          skip_lf_ = true;
          pos = eol + 1;
        }
      } else {
        pos = eol + 1;
      }
      if (line.empty()) {
        if (has_data_) {
          on_event(static_cast<const SseEvent&>(ev_));
          ev_.data.clear();
          has_data_ = false;
        }
        ev_.event.clear();
      } else if (!take_line(line)) {
        return fail();
      }
      line_.clear();
    }
    return true;
  }

  bool failed() const { return failed_; }
  // True when bytes of an unfinished event are buffered (a stream ending here was cut short).
  bool pending() const { return has_data_ || !line_.empty(); }

 private:
  bool take_line(std::string_view line);
  bool fail() {
    failed_ = true;
    return false;
  }

  std::size_t max_line_;
  std::string line_;
  SseEvent ev_;
  bool has_data_ = false;
  bool skip_lf_ = false;
  bool failed_ = false;
};

// One OpenAI streaming payload, as the benchmark sees it.
struct StreamPayload {
  enum class Kind { kDelta, kDone, kError, kMalformed };
  Kind kind = Kind::kMalformed;
  std::string text;                          // kDelta: generated text of choice 0 (may be empty)
  std::optional<int64_t> completion_tokens;  // from a "usage" object, when present and not null
  std::string error;                         // kError: the server's message; kMalformed: why
};

// Reads one event: "[DONE]", {"error":...} (or an "error" event), or a completion / chat chunk.
StreamPayload parse_payload(const SseEvent& ev);

}  // namespace llmd::bench
