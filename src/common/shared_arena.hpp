#pragma once
// Memory that another process on this host may map: an anonymous memfd (no name in /dev/shm, gone
// with its last descriptor or mapping, so a crash leaks nothing), its size sealed so that a reader
// can trust it. The KV arena of a server lives in one (issue 6 design §1), and the shm transfer
// backend maps the prefill's arena read-only in the decode server after receiving its descriptor.
//
// Why the seals: a peer that mapped N bytes takes SIGBUS on access once the file shrinks below them;
// with F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_SEAL the size the reader checked stays the size, forever.
//
// Threading: a SharedArena is a value (move-only); its memory is shared as plain memory is.
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

namespace llmd {

// One owned file descriptor, closed on destruction.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(std::exchange(o.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

class SharedArena {
 public:
  SharedArena() = default;  // empty: no memory
  SharedArena(SharedArena&& o) noexcept;
  SharedArena& operator=(SharedArena&& o) noexcept;
  SharedArena(const SharedArena&) = delete;
  SharedArena& operator=(const SharedArena&) = delete;
  ~SharedArena();

  // `bytes` of zeros, mapped read-write, backed lazily (like a vector's pages, only when touched).
  // Throws llmd::Error when bytes is 0 or the memfd cannot be made, sized, sealed or mapped.
  static SharedArena create(uint64_t bytes);

  // Maps a peer's arena read-only. The descriptor is borrowed (the mapping outlives it); it must be a
  // memfd of exactly expected_bytes sealed against shrinking, growing and further sealing, else
  // llmd::Error: a file that may shrink under the mapping would crash this process.
  static SharedArena map_readonly(int fd, uint64_t expected_bytes);

  // A new descriptor of the same memory, opened read-only (through /proc/self/fd): what a peer
  // receives, so that the mapping it can make is read-only too. Throws llmd::Error when /proc is not
  // there or the arena is itself a read-only mapping.
  UniqueFd readonly_fd() const;

  std::byte* data() { return data_; }
  const std::byte* data() const { return data_; }
  uint64_t size() const { return size_; }
  bool writable() const { return fd_.get() >= 0; }
  // The memfd of an arena made by create(); -1 for a read-only mapping.
  int fd() const { return fd_.get(); }
  std::span<std::byte> bytes() { return {data_, size_}; }

 private:
  void unmap();
  std::byte* data_ = nullptr;
  uint64_t size_ = 0;
  UniqueFd fd_;
};

}  // namespace llmd
