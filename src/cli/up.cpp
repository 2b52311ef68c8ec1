// `llmd up SPEC`: an InferenceCluster as supervised local processes (cluster/supervisor.hpp), with a
// control endpoint on loopback (GET /status, POST /scale) that `llmd up --status SPEC` and the
// autoscaler use. The endpoint's port is kept in <run dir>/control.json while the cluster runs.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "cluster/spec.hpp"
#include "cluster/supervisor.hpp"
#include "common/error.hpp"
#include "common/http_client.hpp"
#include "common/http_server.hpp"

namespace llmd::cli {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct UpArgs {
  std::string spec;
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // the router's; 0: a free one
  bool status = false;
};

cluster::Supervisor* g_supervisor = nullptr;

// ${XDG_RUNTIME_DIR:-/tmp}/llmd-up/<cluster name>: one running `llmd up` per cluster name.
fs::path run_dir(const std::string& name) {
  const char* xdg = std::getenv("XDG_RUNTIME_DIR");
  return fs::path(xdg && *xdg ? xdg : "/tmp") / "llmd-up" / name;
}

std::string random_secret() {
  std::random_device rd;
  std::string s;
  for (int i = 0; i < 4; ++i) s += fmt::format("{:08x}", rd());
  return s;
}

cluster::InferenceCluster load(const std::string& path) {
  try {
    return cluster::load_inference_cluster(path);
  } catch (const Error& e) {
    std::fprintf(stderr, "llmd up: %s: %s\n", path.c_str(), e.what());
    throw CLI::RuntimeError(1);
  }
}

json read_control(const fs::path& dir) {
  std::ifstream f(dir / "control.json");
  if (!f) return nullptr;
  try {
    json j = json::parse(f);
    const pid_t pid = j.at("pid").get<pid_t>();
    if (::kill(pid, 0) != 0) return nullptr;  // a run that did not clean up
    return j;
  } catch (const std::exception&) {
    return nullptr;
  }
}

void print_status(const std::string& spec_path) {
  const cluster::InferenceCluster spec = load(spec_path);
  const json control = read_control(run_dir(spec.name));
  if (control.is_null()) fail("cluster {} is not running (no llmd up for it)", spec.name);
  const auto r = http::fetch("127.0.0.1", control.at("port").get<uint16_t>(), "GET", "/status");
  if (r.status != 200) fail("the control endpoint answered {}: {}", r.status, r.body);
  const json s = json::parse(r.body);
  std::printf("cluster %s: router %s\n", spec.name.c_str(), s.at("router_url").get<std::string>().c_str());
  std::printf("%-14s %-8s %8s %6s %-11s %s\n", "NAME", "ROLE", "PID", "PORT", "STATE", "RESTARTS");
  for (const json& p : s.at("processes"))
    std::printf("%-14s %-8s %8d %6d %-11s %d\n", p.at("name").get<std::string>().c_str(),
                p.at("role").get<std::string>().c_str(), p.at("pid").get<int>(), p.at("port").get<int>(),
                p.at("state").get<std::string>().c_str(), p.at("restarts").get<int>());
}

json status_json(const cluster::Supervisor& sup) {
  json procs = json::array();
  for (const cluster::ProcessStatus& p : sup.status())
    procs.push_back({{"name", p.name},
                     {"role", p.role},
                     {"pid", p.pid},
                     {"port", p.port},
                     {"state", p.state},
                     {"restarts", p.restarts}});
  return {{"cluster", sup.spec().name}, {"router_url", sup.router_url()}, {"processes", procs}};
}

// GET /status; POST /scale {"pool": "decode", "replicas": 2}.
void add_routes(http::Server& control, cluster::Supervisor& sup) {
  control.route("GET", "/status", [&sup](http::Request&, http::Response& res) -> asio::awaitable<void> {
    co_await res.send(200, "application/json", status_json(sup).dump());
  });
  control.route("POST", "/scale", [&sup](http::Request& req, http::Response& res) -> asio::awaitable<void> {
    std::string error;
    try {
      const json body = json::parse(req.body);
      const std::string pool = body.at("pool").get<std::string>();
      const cluster::Role role = pool == "prefill"  ? cluster::Role::kPrefill
                                 : pool == "decode" ? cluster::Role::kDecode
                                 : pool == "aggregated"
                                     ? cluster::Role::kBoth
                                     : throw Error("pool must be prefill, decode or aggregated");
      sup.scale(role, body.at("replicas").get<int32_t>());
    } catch (const std::exception& e) {
      error = e.what();
    }
    if (!error.empty())
      co_await res.send_error(400, error);
    else
      co_await res.send(200, "application/json", status_json(sup).dump());
  });
}

void run_up(const UpArgs& a) {
  if (a.status) return print_status(a.spec);
  cluster::InferenceCluster spec = load(a.spec);
  const fs::path dir = run_dir(spec.name);
  if (const json running = read_control(dir); !running.is_null())
    fail("cluster {} already runs (llmd up pid {}); llmd up --status {} shows it", spec.name,
         running.at("pid").get<int>(), a.spec);
  if (spec.cache.kvstore.replicas > 0)
    std::fprintf(stderr, "llmd up: kvstore not started: `llmd kvstore` arrives with the tiered KV cache\n");

  cluster::SupervisorConfig cfg;
  cfg.binary = fs::read_symlink("/proc/self/exe").string();
  cfg.run_dir = dir;
  cfg.host = a.host;
  cfg.router_port = a.port;
  if (spec.disaggregated()) {
    const char* given = std::getenv("LLMD_KV_TRANSFER_SECRET");
    cfg.env["LLMD_KV_TRANSFER_SECRET"] = given && *given ? given : random_secret();
  }
  cluster::Supervisor sup(std::move(spec), cfg);
  g_supervisor = &sup;
  struct sigaction sa {};
  sa.sa_handler = [](int) {
    if (g_supervisor) g_supervisor->request_stop();
  };
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  sup.start();
  http::ServerConfig hc;
  hc.io_threads = 1;
  http::Server control(hc);
  add_routes(control, sup);
  control.start();
  {
    std::ofstream f(dir / "control.json", std::ios::trunc);
    f << json{{"pid", ::getpid()}, {"port", control.port()}, {"router_url", sup.router_url()}}.dump() << "\n";
  }
  std::printf("llmd up: cluster %s is up: %s (llmd up --status %s; Ctrl-C stops it)\n",
              sup.spec().name.c_str(), sup.router_url().c_str(), a.spec.c_str());
  std::printf(
      "try: curl %s/v1/chat/completions -H 'Content-Type: application/json' -d '{\"model\": \"%s\", "
      "\"messages\": [{\"role\": \"user\", \"content\": \"Tell me a story\"}], \"stream\": true}'\n",
      sup.router_url().c_str(), sup.spec().model.served_name.c_str());
  std::fflush(stdout);
  sup.run();
  control.stop();
  std::error_code ec;
  fs::remove(dir / "control.json", ec);
  std::fprintf(stderr, "llmd up: cluster %s stopped\n", sup.spec().name.c_str());
  g_supervisor = nullptr;
}

}  // namespace

void register_up(CLI::App& app) {
  auto a = std::make_shared<UpArgs>();
  CLI::App* cmd = app.add_subcommand("up", "Run an InferenceCluster spec as supervised local processes");
  cmd->add_option("spec", a->spec, "InferenceCluster YAML file")->required();
  cmd->add_option("--host", a->host, "Address every process listens on")->capture_default_str();
  cmd->add_option("--port", a->port, "The router's port (0: a free one)")->capture_default_str();
  cmd->add_flag("--status", a->status, "Show the processes of the running cluster of SPEC, then exit");
  cmd->callback([a] { run_up(*a); });
}

}  // namespace llmd::cli
