#pragma once
// `llmd up`: an InferenceCluster as local processes. The model servers start first on free loopback
// ports and are waited for (GET /health); the router then starts in front of them, reading the
// servers from an endpoints file (its hot reload follows restarts and scaling). A child that exits
// is restarted with backoff and the restart is reported; stop() drains: the router first (it
// finishes the requests it proxies), then the servers (each finishes its requests within its
// pool's grace period), and whatever is left is killed. Every child's output comes out with its
// name in front.
//
// Threading: start(), run() and stop() on one thread; request_stop() from a signal handler;
// scale() and status() from any thread (the control endpoint's).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "cluster/child_process.hpp"
#include "cluster/spec.hpp"

namespace llmd::cluster {

struct SupervisorConfig {
  std::string binary;                      // the llmd executable the children run
  std::filesystem::path run_dir;           // the endpoints file and the router's config go here
  std::string host = "127.0.0.1";          // every child listens here
  uint16_t router_port = 0;                // 0: a free port
  std::map<std::string, std::string> env;  // added to every child's environment
  std::chrono::milliseconds health_timeout{60000};
  std::chrono::milliseconds backoff_min{500};
  std::chrono::milliseconds backoff_max{10000};
  std::chrono::milliseconds stable_after{30000};  // a child that ran this long restarts at backoff_min again
  std::chrono::milliseconds router_grace{30000};
};

struct ProcessStatus {
  std::string name;  // "router", "prefill-0", "decode-1", "aggregated-0"
  std::string role;  // "router" or the server's role
  pid_t pid = 0;
  uint16_t port = 0;
  std::string state;  // starting, healthy, restarting, stopping
  int restarts = 0;
};

class Supervisor {
 public:
  Supervisor(InferenceCluster spec, SupervisorConfig config);
  ~Supervisor();  // kills whatever still runs

  // Starts every process and waits until each answers /health. Throws llmd::Error naming the first
  // process that exits or does not come up within health_timeout (what started is then stopped).
  void start();
  // Supervises until request_stop(); returns after stop() has run.
  void run();
  // Async-signal-safe.
  void request_stop();

  // The scaling hook: the pool's replica count from now on (servers are started or drained).
  // Throws llmd::Error for a pool the spec does not have or a negative count.
  void scale(Role pool, int32_t replicas);
  std::vector<ProcessStatus> status() const;
  std::string router_url() const;
  const InferenceCluster& spec() const { return spec_; }

 private:
  struct Proc;
  void spawn(Proc& p);
  void pump_all(int timeout_ms);
  void reap_and_restart();
  void reconcile();
  void write_endpoints() const;
  bool healthy(const Proc& p) const;
  void wait_healthy(const std::vector<Proc*>& procs);
  void stop();
  void stop_procs(const std::vector<Proc*>& procs, std::chrono::milliseconds grace);
  std::unique_ptr<Proc> make_server(Role role, int index);

  InferenceCluster spec_;
  SupervisorConfig cfg_;
  std::filesystem::path endpoints_file_, router_config_file_;
  mutable std::mutex mu_;                     // procs_ and desired_, against status() and scale()
  std::vector<std::unique_ptr<Proc>> procs_;  // servers, then the router
  std::map<Role, int32_t> desired_;
  std::map<Role, int> next_index_;
  int wake_[2] = {-1, -1};  // self-pipe: signals, scale requests
  std::atomic<bool> stop_requested_{false};
};

}  // namespace llmd::cluster
