#pragma once
// One error rule (DESIGN.md): exceptions on the control path (loading, config, CLI), status values
// (std::expected) on the data path. At a process boundary every llmd::Error becomes one clear line.
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace llmd {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// g++ 12 has no <format>: fmt (Debian's libfmt) is the project's formatter.
template <class... Args>
[[noreturn]] void fail(fmt::format_string<Args...> fmt, Args&&... args) {
  throw Error(fmt::format(fmt, std::forward<Args>(args)...));
}

}  // namespace llmd
