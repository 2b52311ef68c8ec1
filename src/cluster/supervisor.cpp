#include "cluster/supervisor.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cluster/serve_command.hpp"
#include "common/asio.hpp"
#include "common/error.hpp"
#include "common/http_client.hpp"

namespace llmd::cluster {

using Clock = std::chrono::steady_clock;

struct Supervisor::Proc {
  std::string name;
  std::optional<Role> role;  // empty: the router
  uint16_t port = 0;
  std::vector<std::string> args;
  std::unique_ptr<ChildProcess> child;
  enum class State { kStarting, kHealthy, kRestarting, kStopping } state = State::kStarting;
  int restarts = 0;
  std::chrono::milliseconds backoff{0};
  Clock::time_point started, restart_at;
  bool listed = false;  // in the router's endpoints file
};

namespace {

// A port nobody listens on now. The child binds it a moment later (SO_REUSEADDR), and keeps it
// across restarts, so the router's list stays valid.
uint16_t free_port(const std::string& host) {
  asio::io_context io;
  asio::ip::tcp::acceptor a(io, {asio::ip::make_address(host), 0});
  return a.local_endpoint().port();
}

std::string_view state_name(int s) {
  static constexpr std::string_view names[] = {"starting", "healthy", "restarting", "stopping"};
  return names[s];
}

void write_file(const std::filesystem::path& path, const std::string& text) {
  // Written aside and renamed: the router's hot reload never reads half a file.
  const std::filesystem::path tmp = path.string() + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << text;
    if (!f) fail("llmd up: cannot write {}", tmp.string());
  }
  std::filesystem::rename(tmp, path);
}

}  // namespace

Supervisor::Supervisor(InferenceCluster spec, SupervisorConfig config)
    : spec_(std::move(spec)), cfg_(std::move(config)) {
  if (spec_.router.uses_kv_events)
    fail(
        "spec.router.config: precise-prefix-cache-scorer needs a KV events port per server, which llmd up "
        "does not give yet (llmd render does)");
  if (::pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0) fail("llmd up: pipe: {}", std::strerror(errno));
  std::filesystem::create_directories(cfg_.run_dir);
  endpoints_file_ = cfg_.run_dir / "endpoints.txt";
  router_config_file_ = cfg_.run_dir / "router.yaml";
  for (const Pool& p : spec_.pools) desired_[p.role] = p.replicas;
}

Supervisor::~Supervisor() {
  procs_.clear();  // SIGKILL and reap whatever still runs
  ::close(wake_[0]);
  ::close(wake_[1]);
}

std::unique_ptr<Supervisor::Proc> Supervisor::make_server(Role role, int index) {
  const Pool& pool = *spec_.pool(role);
  auto p = std::make_unique<Proc>();
  p->name = fmt::format("{}-{}", pool_key(role), index);
  p->role = role;
  p->port = free_port(cfg_.host);
  ServeSite site;
  site.model_path = spec_.model.local_path;
  site.host = cfg_.host;
  site.port = p->port;
  site.transport = std::string(transport_name(spec_.transport.type));
  site.kv_transfer_host = cfg_.host;
  site.kv_transfer_port = 0;
  p->args = serve_command(spec_, pool, site);
  // Every server of the cluster is at this address: no other peer may connect for KV transfers.
  if (spec_.disaggregated() && cfg_.host != "0.0.0.0" && cfg_.host != "::")
    p->args.insert(p->args.end(), {"--kv-transfer-allow", cfg_.host});
  return p;
}

void Supervisor::spawn(Proc& p) {
  p.child = std::make_unique<ChildProcess>(cfg_.binary, p.args, cfg_.env);
  p.state = Proc::State::kStarting;
  p.started = Clock::now();
}

bool Supervisor::healthy(const Proc& p) const {
  http::ClientConfig quick;
  quick.connect_timeout = std::chrono::milliseconds(200);
  quick.io_timeout = std::chrono::milliseconds(1000);
  try {
    const http::ClientResponse r = http::fetch(cfg_.host, p.port, "GET", "/health", {}, {}, quick);
    if (r.status != 200) return false;
    if (p.role) return true;
    // The router answers before it has scraped its endpoints; until then it has none fit to route
    // to, and the cluster is not up for a first request.
    const auto j = nlohmann::json::parse(r.body, nullptr, false);
    return j.is_object() && j.value("endpoints", 0) > 0 && j.value("fit", 0) == j.value("endpoints", -1);
  } catch (const Error&) {
    return false;
  }
}

void Supervisor::pump_all(int timeout_ms) {
  std::vector<pollfd> fds = {{wake_[0], POLLIN, 0}};
  std::vector<Proc*> owners = {nullptr};
  {
    std::lock_guard lk(mu_);
    for (auto& p : procs_)
      if (p->child && p->child->output_fd() >= 0) {
        fds.push_back({p->child->output_fd(), POLLIN, 0});
        owners.push_back(p.get());
      }
  }
  if (::poll(fds.data(), fds.size(), timeout_ms) <= 0) return;
  if (fds[0].revents) {
    char drain[64];
    while (::read(wake_[0], drain, sizeof drain) > 0) {
    }
  }
  for (size_t i = 1; i < fds.size(); ++i)
    if (fds[i].revents) owners[i]->child->pump(owners[i]->name, stderr);
}

void Supervisor::wait_healthy(const std::vector<Proc*>& procs) {
  const auto until = Clock::now() + cfg_.health_timeout;
  for (;;) {
    bool all = true;
    for (Proc* p : procs) {
      int status = 0;
      if (p->child->reap(status)) {
        p->child->pump(p->name, stderr);
        fail("llmd up: {} {} before it was healthy", p->name, describe_exit(status));
      }
      if (p->state != Proc::State::kHealthy) {
        if (healthy(*p))
          p->state = Proc::State::kHealthy;
        else
          all = false;
      }
    }
    if (all) return;
    if (Clock::now() > until)
      fail("llmd up: not healthy within {} s: {}", cfg_.health_timeout.count() / 1000, [&] {
        std::string names;
        for (Proc* p : procs)
          if (p->state != Proc::State::kHealthy) names += (names.empty() ? "" : ", ") + p->name;
        return names;
      }());
    pump_all(50);
    if (stop_requested_) fail("llmd up: stopped while starting");
  }
}

void Supervisor::write_endpoints() const {
  std::string text = "# written by llmd up: the servers of cluster " + spec_.name + "\n";
  for (const auto& p : procs_)
    if (p->role && p->listed) text += fmt::format("{}:{};role={}\n", cfg_.host, p->port, role_name(*p->role));
  write_file(endpoints_file_, text);
}

void Supervisor::start() {
  std::vector<Proc*> servers;
  {
    std::lock_guard lk(mu_);
    for (const Pool& pool : spec_.pools)
      for (int i = 0; i < pool.replicas; ++i)
        procs_.push_back(make_server(pool.role, next_index_[pool.role]++));
    for (auto& p : procs_) servers.push_back(p.get());
  }
  try {
    for (Proc* p : servers) spawn(*p);
    wait_healthy(servers);
    std::lock_guard lk(mu_);
    for (Proc* p : servers) p->listed = true;
    write_endpoints();
    write_file(router_config_file_, spec_.router.config_yaml);
    auto r = std::make_unique<Proc>();
    r->name = "router";
    r->port = cfg_.router_port ? cfg_.router_port : free_port(cfg_.host);
    r->args = {"route",
               "--host",
               cfg_.host,
               "--port",
               std::to_string(r->port),
               "--endpoints-file",
               endpoints_file_.string(),
               "--config",
               router_config_file_.string()};
    // A simulated server keys its blocks from another root than the file's: the router estimates.
    if (!spec_.model.sim && !spec_.model.local_path.empty())
      r->args.insert(r->args.end(), {"--tokenizer", spec_.model.local_path});
    r->args.insert(r->args.end(), spec_.router.args.begin(), spec_.router.args.end());
    procs_.push_back(std::move(r));
  } catch (...) {
    stop();
    throw;
  }
  Proc* router = procs_.back().get();
  try {
    spawn(*router);
    wait_healthy({router});
  } catch (...) {
    stop();
    throw;
  }
}

void Supervisor::reap_and_restart() {
  std::lock_guard lk(mu_);
  const auto now = Clock::now();
  bool relist = false;
  for (auto it = procs_.begin(); it != procs_.end();) {
    Proc& p = **it;
    int status = 0;
    if (p.state == Proc::State::kStopping && !p.child) {  // scaled down while waiting to restart
      it = procs_.erase(it);
      continue;
    }
    if (p.child && p.child->reap(status)) {
      p.child->pump(p.name, stderr);
      if (p.state == Proc::State::kStopping) {  // scaled down: gone for good
        fmt::print(stderr, "[up] {} stopped ({})\n", p.name, describe_exit(status));
        it = procs_.erase(it);
        continue;
      }
      const bool stable = now - p.started > cfg_.stable_after;
      p.backoff =
          stable || p.backoff.count() == 0 ? cfg_.backoff_min : std::min(p.backoff * 2, cfg_.backoff_max);
      p.restart_at = now + p.backoff;
      p.state = Proc::State::kRestarting;
      p.child.reset();
      fmt::print(stderr, "[up] {} (port {}) {}; restarting in {:.1f} s (restart {})\n", p.name, p.port,
                 describe_exit(status), p.backoff.count() / 1000.0, p.restarts + 1);
    }
    if (p.state == Proc::State::kRestarting && now >= p.restart_at) {
      ++p.restarts;
      spawn(p);
      fmt::print(stderr, "[up] {} restarted (pid {})\n", p.name, p.child->pid());
    }
    if (p.state == Proc::State::kStarting && now - p.started > std::chrono::milliseconds(100) && healthy(p)) {
      p.state = Proc::State::kHealthy;
      if (p.role && !p.listed) {  // a server added by scale(): the router learns of it now
        p.listed = true;
        relist = true;
      }
    }
    ++it;
  }
  if (relist) write_endpoints();
}

void Supervisor::reconcile() {
  std::lock_guard lk(mu_);
  bool relist = false;
  for (const auto& [role, want] : desired_) {
    std::vector<Proc*> live;
    for (auto& p : procs_)
      if (p->role == role && p->state != Proc::State::kStopping) live.push_back(p.get());
    for (int n = static_cast<int>(live.size()); n < want; ++n) {
      auto p = make_server(role, next_index_[role]++);
      spawn(*p);
      fmt::print(stderr, "[up] {} started (pid {}, port {})\n", p->name, p->child->pid(), p->port);
      procs_.insert(procs_.end() - 1, std::move(p));  // before the router
    }
    // Scaling down takes the newest first: off the router's list, then drained.
    for (int n = static_cast<int>(live.size()); n > want; --n) {
      Proc* p = live[n - 1];
      p->listed = false;
      p->state = Proc::State::kStopping;
      relist = true;
      if (p->child) p->child->signal(SIGTERM);
    }
  }
  if (relist) write_endpoints();
}

void Supervisor::run() {
  while (!stop_requested_) {
    pump_all(100);
    reap_and_restart();
    reconcile();
  }
  stop();
}

void Supervisor::request_stop() {
  stop_requested_ = true;
  const char c = 's';
  [[maybe_unused]] const ssize_t n = ::write(wake_[1], &c, 1);
}

void Supervisor::scale(Role pool, int32_t replicas) {
  if (!spec_.pool(pool)) fail("llmd up: cluster {} has no {} pool", spec_.name, pool_key(pool));
  if (replicas < 0) fail("llmd up: replicas must be >= 0, got {}", replicas);
  {
    std::lock_guard lk(mu_);
    desired_[pool] = replicas;
  }
  const char c = 'r';
  [[maybe_unused]] const ssize_t n = ::write(wake_[1], &c, 1);
}

void Supervisor::stop_procs(const std::vector<Proc*>& procs, std::chrono::milliseconds grace) {
  for (Proc* p : procs)
    if (p->child) {
      p->state = Proc::State::kStopping;
      p->child->signal(SIGTERM);
    }
  const auto until = Clock::now() + grace;
  for (;;) {
    bool all = true;
    for (Proc* p : procs) {
      int status = 0;
      if (p->child && !p->child->reap(status)) all = false;
    }
    if (all || Clock::now() > until) break;
    pump_all(50);
  }
  for (Proc* p : procs)
    if (p->child && !p->child->exited()) {
      fmt::print(stderr, "[up] {} did not stop within {} s: killed\n", p->name, grace.count() / 1000);
      p->child->signal(SIGKILL);
    }
  for (Proc* p : procs)
    if (p->child) {
      p->child->pump(p->name, stderr);
      p->child.reset();  // reaps
    }
}

void Supervisor::stop() {
  std::vector<Proc*> routers, servers;
  std::chrono::milliseconds server_grace{0};
  {
    std::lock_guard lk(mu_);
    for (auto& p : procs_) (p->role ? servers : routers).push_back(p.get());
    for (const Pool& pool : spec_.pools)
      server_grace = std::max<std::chrono::milliseconds>(
          server_grace, std::chrono::seconds(pool.termination_grace_seconds));
  }
  // The router first: it finishes what it proxies while the servers still answer.
  stop_procs(routers, cfg_.router_grace);
  stop_procs(servers, server_grace);
  std::lock_guard lk(mu_);
  procs_.clear();
}

std::vector<ProcessStatus> Supervisor::status() const {
  std::lock_guard lk(mu_);
  std::vector<ProcessStatus> out;
  for (const auto& p : procs_)
    out.push_back({p->name, p->role ? std::string(role_name(*p->role)) : "router",
                   p->child ? p->child->pid() : 0, p->port,
                   std::string(state_name(static_cast<int>(p->state))), p->restarts});
  return out;
}

std::string Supervisor::router_url() const {
  std::lock_guard lk(mu_);
  for (const auto& p : procs_)
    if (!p->role) return fmt::format("http://{}:{}", cfg_.host, p->port);
  return {};
}

}  // namespace llmd::cluster
