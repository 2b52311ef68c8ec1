#include "common/shared_arena.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "common/error.hpp"

namespace llmd {
namespace {

constexpr int kSeals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;

std::string errno_text() {
  return std::strerror(errno);
}

}  // namespace

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

SharedArena::SharedArena(SharedArena&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)), fd_(std::move(o.fd_)) {}

SharedArena& SharedArena::operator=(SharedArena&& o) noexcept {
  if (this != &o) {
    unmap();
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    fd_ = std::move(o.fd_);
  }
  return *this;
}

SharedArena::~SharedArena() {
  unmap();
}

void SharedArena::unmap() {
  if (data_) ::munmap(data_, size_);
  data_ = nullptr;
  size_ = 0;
  fd_.reset();
}

SharedArena SharedArena::create(uint64_t bytes) {
  if (bytes == 0) fail("shared arena: zero bytes");
  if (bytes > static_cast<uint64_t>(INT64_MAX)) fail("shared arena: {} bytes is too large", bytes);
  UniqueFd fd(::memfd_create("llmd-kv", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd) fail("shared arena: memfd_create: {}", errno_text());
  if (::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0)
    fail("shared arena: cannot size {} bytes: {}", bytes, errno_text());
  if (::fcntl(fd.get(), F_ADD_SEALS, kSeals) != 0) fail("shared arena: cannot seal: {}", errno_text());
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED) fail("shared arena: cannot map {} bytes: {}", bytes, errno_text());
  SharedArena a;
  a.data_ = static_cast<std::byte*>(p);
  a.size_ = bytes;
  a.fd_ = std::move(fd);
  return a;
}

SharedArena SharedArena::map_readonly(int fd, uint64_t expected_bytes) {
  if (expected_bytes == 0 || expected_bytes > static_cast<uint64_t>(INT64_MAX))
    fail("shared arena: cannot map {} bytes", expected_bytes);
  struct stat st {};
  if (::fstat(fd, &st) != 0) fail("shared arena: fstat: {}", errno_text());
  if (!S_ISREG(st.st_mode)) fail("shared arena: the descriptor is not a memory file");
  if (static_cast<uint64_t>(st.st_size) != expected_bytes)
    fail("shared arena: {} bytes where {} were expected", st.st_size, expected_bytes);
  // Seals are read after the size: once F_SEAL_SHRINK is there the size read above can only stay.
  const int seals = ::fcntl(fd, F_GET_SEALS);
  if (seals < 0) fail("shared arena: the descriptor is not a sealable memfd: {}", errno_text());
  if ((seals & kSeals) != kSeals) fail("shared arena: the memfd is not sealed against resizing");
  void* p = ::mmap(nullptr, expected_bytes, PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) fail("shared arena: cannot map {} bytes read-only: {}", expected_bytes, errno_text());
  SharedArena a;
  a.data_ = static_cast<std::byte*>(p);
  a.size_ = expected_bytes;
  return a;
}

UniqueFd SharedArena::readonly_fd() const {
  if (!writable()) fail("shared arena: a read-only mapping has no descriptor to share");
  // A new open file description: O_RDONLY here, whatever the memfd's own mode.
  const std::string path = "/proc/self/fd/" + std::to_string(fd_.get());
  UniqueFd ro(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!ro) fail("shared arena: cannot reopen the memfd read-only ({}): {}", path, errno_text());
  return ro;
}

}  // namespace llmd
