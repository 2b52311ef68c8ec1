#pragma once
// A connection's receive buffer: the bytes read and not yet used, in one allocation made when the
// connection opens and grown only for a message larger than it. Parsers take data() as a view;
// prepare() may move the bytes, so views into it do not survive the next read.
#include "common/asio.hpp"

#include <algorithm>
#include <cstring>
#include <memory>
#include <string_view>

namespace llmd {

class ReadBuffer {
 public:
  explicit ReadBuffer(std::size_t capacity) : buf_(std::make_unique<char[]>(capacity)), cap_(capacity) {}

  std::string_view data() const { return {buf_.get() + begin_, end_ - begin_}; }
  std::size_t size() const { return end_ - begin_; }

  // All the free space after the data, at least `n` bytes: a read takes whatever the kernel has.
  asio::mutable_buffer prepare(std::size_t n) {
    if (cap_ - end_ < n) {
      const std::size_t used = size();
      if (used + n > cap_) {
        const std::size_t cap = std::max(cap_ * 2, used + n);
        auto grown = std::make_unique<char[]>(cap);
        std::memcpy(grown.get(), buf_.get() + begin_, used);
        buf_ = std::move(grown);
        cap_ = cap;
      } else {
        std::memmove(buf_.get(), buf_.get() + begin_, used);
      }
      begin_ = 0;
      end_ = used;
    }
    return {buf_.get() + end_, cap_ - end_};
  }
  void commit(std::size_t n) { end_ += std::min(n, cap_ - end_); }
  void consume(std::size_t n) {
    begin_ += std::min(n, size());
    if (begin_ == end_) begin_ = end_ = 0;  // the next read starts at the front: no move needed
  }

 private:
  std::unique_ptr<char[]> buf_;
  std::size_t cap_;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

}  // namespace llmd
