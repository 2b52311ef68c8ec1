#pragma once
// A child process of the real llmd binary for integration tests: killed (SIGTERM, then SIGKILL)
// when its owner goes out of scope, failure or not, and dead with the test process too
// (PR_SET_PDEATHSIG). stdout and stderr go to files in its own directory.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli/cli_test_util.hpp"
#include "common/http_client.hpp"

namespace llmd::test_support {

using cli_test::lines;
using cli_test::slurp;
using cli_test::TempDir;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Bounded HTTP: a hung server fails the test instead of hanging it.
inline http::ClientConfig quick() {
  http::ClientConfig c;
  c.connect_timeout = 2s;
  c.io_timeout = 10s;
  return c;
}

// One `llmd SUBCOMMAND` child (serve by default). stdout and stderr go to files in its own directory.
class LlmdProcess {
 public:
  explicit LlmdProcess(std::vector<std::string> args, std::string subcommand = "serve") {
    const std::string out = (dir_.path() / "stdout").string(), err = (dir_.path() / "stderr").string();
    std::vector<std::string> argv_s = {LLMD_BINARY, subcommand};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t parent = getpid();
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {  // only async-signal-safe calls until exec
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      const int o = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      const int e = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (o < 0 || e < 0) _exit(127);
      dup2(o, STDOUT_FILENO);
      dup2(e, STDERR_FILENO);
      execv(argv[0], argv.data());
      _exit(127);
    }
  }
  ~LlmdProcess() { stop(); }
  LlmdProcess(const LlmdProcess&) = delete;
  LlmdProcess& operator=(const LlmdProcess&) = delete;

  // Graceful stop; SIGKILL if it takes more than 5 s. Returns the exit status as run_llmd does.
  int stop() {
    if (pid_ <= 0) return exit_code_;
    kill(pid_, SIGTERM);
    const auto deadline = Clock::now() + 5s;
    int status = 0;
    while (waitpid(pid_, &status, WNOHANG) == 0) {
      if (Clock::now() > deadline) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(10ms);
    }
    pid_ = -1;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return exit_code_;
  }

  bool alive() const { return pid_ > 0 && waitpid(pid_, nullptr, WNOHANG) == 0; }
  pid_t pid() const { return pid_; }
  std::string err() const { return slurp(dir_.path() / "stderr"); }
  std::string out() const { return slurp(dir_.path() / "stdout"); }

  // The port from the startup line "llmd serve: NAME on http://HOST:PORT (...)"; nullopt until printed.
  std::optional<uint16_t> announced_port() const {
    static const std::regex re(R"(on http://[^ ]+:(\d+) )");
    std::smatch m;
    const std::string e = err();
    if (!std::regex_search(e, m, re)) return std::nullopt;
    return static_cast<uint16_t>(std::stoi(m[1].str()));
  }

  // Waits until GET /health answers 200, up to `deadline`. Port 0: the announced one.
  std::optional<uint16_t> wait_healthy(uint16_t port, Clock::time_point deadline) const {
    http::ClientConfig c = quick();
    c.connect_timeout = 1s;
    c.io_timeout = 2s;
    while (Clock::now() < deadline) {
      if (!alive()) return std::nullopt;
      const std::optional<uint16_t> p = port ? std::optional<uint16_t>(port) : announced_port();
      if (p) {
        try {
          if (http::fetch("127.0.0.1", *p, "GET", "/health", {}, {}, c).status == 200) return p;
        } catch (const std::exception&) {
        }
      }
      std::this_thread::sleep_for(20ms);
    }
    return std::nullopt;
  }

  // Resident set size in KiB (VmRSS), and user+system CPU ticks so far.
  int64_t rss_kib() const { return proc_status_field("VmRSS:"); }
  int64_t cpu_ticks() const {
    const std::string s = slurp(fs::path("/proc") / std::to_string(pid_) / "stat");
    const size_t rp = s.rfind(')');
    if (rp == std::string::npos) return -1;
    std::istringstream in(s.substr(rp + 2));
    std::string f;
    int64_t utime = 0, stime = 0;
    for (int i = 3; i <= 15 && in >> f; ++i) {  // fields 14 and 15 (1-based) are utime, stime
      if (i == 14) utime = std::stoll(f);
      if (i == 15) stime = std::stoll(f);
    }
    return utime + stime;
  }
  int64_t threads() const { return proc_status_field("Threads:"); }

 private:
  int64_t proc_status_field(const std::string& key) const {
    for (const std::string& l : lines(slurp(fs::path("/proc") / std::to_string(pid_) / "status")))
      if (l.starts_with(key)) return std::stoll(l.substr(key.size()));
    return -1;
  }

  TempDir dir_;
  pid_t pid_ = -1;
  int exit_code_ = -1;
};

}  // namespace llmd::test_support
