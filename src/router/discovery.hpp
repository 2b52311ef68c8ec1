#pragma once
// Where the endpoint list comes from: fixed specs (--endpoints), a file re-read when it changes
// (--endpoints-file: one spec per line, hot reload), and DNS names re-resolved on every poll
// (--endpoints-dns NAME:PORT[;labels], e.g. a headless Kubernetes Service: one endpoint per
// address). The union replaces the EndpointSet's list whenever it changes.
//
// Threading: one thread polls; stop() (or the destructor) ends it promptly.
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "router/endpoint_set.hpp"

namespace llmd::router {

struct DiscoveryConfig {
  std::vector<EndpointSpec> fixed;
  std::string file;               // "" for none
  std::vector<EndpointSpec> dns;  // host is a name; each of its addresses becomes an endpoint
  std::chrono::milliseconds interval{1000};
};

// The addresses of `name` (IPv4 and IPv6), sorted; empty when it does not resolve.
std::vector<std::string> resolve_host(const std::string& name);

class Discovery {
 public:
  // Reads everything once (a missing or malformed file throws llmd::Error here, naming it), then
  // polls on a thread; a file that later breaks keeps the last good list and logs once.
  Discovery(DiscoveryConfig config, EndpointSet& set);
  ~Discovery();
  void stop();

  std::vector<EndpointSpec> current() const;

 private:
  void poll(bool first);
  void run();

  DiscoveryConfig cfg_;
  EndpointSet& set_;
  std::filesystem::file_time_type file_mtime_{};
  std::vector<EndpointSpec> from_file_;
  std::vector<EndpointSpec> last_;
  bool file_error_logged_ = false;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace llmd::router
