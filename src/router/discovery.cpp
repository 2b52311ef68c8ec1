#include "router/discovery.hpp"

#include <netdb.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "common/error.hpp"

namespace llmd::router {

std::vector<std::string> resolve_host(const std::string& name) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::vector<std::string> out;
  if (getaddrinfo(name.c_str(), nullptr, &hints, &res) != 0) return out;
  for (addrinfo* a = res; a; a = a->ai_next) {
    char buf[INET6_ADDRSTRLEN] = {};
    const void* src = a->ai_family == AF_INET
                          ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr)
                          : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr);
    if (inet_ntop(a->ai_family, src, buf, sizeof buf)) out.emplace_back(buf);
  }
  freeaddrinfo(res);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Discovery::Discovery(DiscoveryConfig config, EndpointSet& set) : cfg_(std::move(config)), set_(set) {
  poll(true);
  if (!cfg_.file.empty() || !cfg_.dns.empty()) thread_ = std::thread([this] { run(); });
}

Discovery::~Discovery() {
  stop();
}

void Discovery::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::vector<EndpointSpec> Discovery::current() const {
  std::lock_guard lock(mu_);
  return last_;
}

void Discovery::poll(bool first) {
  if (!cfg_.file.empty()) {
    std::error_code ec;
    const auto mtime = std::filesystem::last_write_time(cfg_.file, ec);
    if (ec && first) fail("--endpoints-file {}: {}", cfg_.file, ec.message());
    if (!ec && (first || mtime != file_mtime_)) {
      try {
        std::ifstream in(cfg_.file);
        std::stringstream ss;
        ss << in.rdbuf();
        from_file_ = parse_endpoint_list(ss.str());
        file_mtime_ = mtime;
        file_error_logged_ = false;
      } catch (const Error& e) {
        if (first) fail("--endpoints-file {}: {}", cfg_.file, e.what());
        if (!file_error_logged_)
          std::fprintf(stderr, "llmd route: %s: %s (keeping the last list)\n", cfg_.file.c_str(), e.what());
        file_error_logged_ = true;
      }
    }
  }
  std::vector<EndpointSpec> all = cfg_.fixed;
  all.insert(all.end(), from_file_.begin(), from_file_.end());
  for (const EndpointSpec& d : cfg_.dns)
    for (const std::string& addr : resolve_host(d.host)) {
      EndpointSpec s = d;
      s.host = addr;
      all.push_back(std::move(s));
    }
  std::lock_guard lock(mu_);
  if (first || all != last_) {
    last_ = all;
    set_.set(all);
  }
}

void Discovery::run() {
  std::unique_lock lock(mu_);
  while (!cv_.wait_for(lock, cfg_.interval, [this] { return stopping_; })) {
    lock.unlock();
    poll(false);
    lock.lock();
  }
}

}  // namespace llmd::router
