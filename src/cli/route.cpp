// `llmd route`: the inference scheduler as an HTTP proxy in front of model servers. Flags fill the
// router's typed configs here, in one place.
#include <csignal>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <semaphore>
#include <sstream>

#include <fmt/format.h>

#include "cli/chat_template_flag.hpp"
#include "cli/commands.hpp"
#include "common/error.hpp"
#include "model/chat_template.hpp"
#include "model/gguf.hpp"
#include "model/kv_fingerprint.hpp"
#include "model/tokenizer.hpp"
#include "router/config.hpp"
#include "router/discovery.hpp"
#include "router/extproc.hpp"
#include "router/router.hpp"

namespace llmd::cli {
namespace {

std::binary_semaphore g_route_stop{0};

struct RouteArgs {
  router::RouterConfig router;
  std::string endpoints, endpoints_file, endpoints_dns, config_file, tokenizer, chat_template, fingerprint;
  int32_t block_size = 16;
  int64_t scrape_ms = router::ScraperConfig::kDefaultInterval.count();
  int64_t staleness_ms = 2000;
  int32_t extproc_port = -1;    // -1: no EPP
  double drain_timeout_s = 25;  // SIGTERM/SIGINT: how long proxied requests may take to finish
};

std::string read_file(const std::string& path, std::string_view flag) {
  std::ifstream in(path);
  if (!in) fail("{} {}: cannot read", flag, path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void run_route(RouteArgs& a) {
  router::DiscoveryConfig dc;
  dc.fixed = router::parse_endpoint_list(a.endpoints);
  dc.file = a.endpoints_file;
  dc.dns = router::parse_endpoint_list(a.endpoints_dns);
  if (dc.fixed.empty() && dc.file.empty() && dc.dns.empty())
    fail(
        "route needs endpoints: --endpoints HOST:PORT[,..], --endpoints-file FILE or --endpoints-dns "
        "NAME:PORT");
  const router::EndpointPickerConfig epp =
      a.config_file.empty() ? router::default_endpoint_picker_config()
                            : router::parse_endpoint_picker_config(read_file(a.config_file, "--config"));
  std::optional<model::GgufFile> file;
  std::optional<model::Tokenizer> tok;
  std::optional<model::ChatTemplate> tmpl;
  router::PromptKeyer keyer;
  keyer.block_size = a.block_size;
  if (!a.tokenizer.empty()) {
    file.emplace(model::GgufFile::open(a.tokenizer));
    tok.emplace(model::Tokenizer::from_gguf(*file));
    tmpl.emplace(load_chat_template(a.chat_template, *file, *tok));
    keyer.tokenizer = &*tok;
    keyer.chat_template = &*tmpl;
    keyer.fingerprint = model::kv_fingerprint(*file);
  }
  if (!a.fingerprint.empty()) keyer.fingerprint = a.fingerprint;
  if (a.block_size <= 0) fail("--block-size must be positive, got {}", a.block_size);
  if (a.scrape_ms <= 0) fail("--scrape-interval-ms must be positive, got {}", a.scrape_ms);
  a.router.scraper.interval = std::chrono::milliseconds(a.scrape_ms);
  a.router.scheduler.staleness = std::chrono::milliseconds(a.staleness_ms);

  router::Router r(a.router, epp, keyer);
  router::Discovery discovery(dc, r.endpoints());
  r.start();
  std::unique_ptr<router::ExtProcServer> extproc;
  if (a.extproc_port >= 0) {
    router::ExtProcConfig ec;
    ec.host = a.router.http.host;
    ec.port = static_cast<uint16_t>(a.extproc_port);
    extproc = std::make_unique<router::ExtProcServer>(r, ec);
    std::fprintf(stderr, "llmd route: Envoy ext_proc (EPP) on %s:%u\n", ec.host.c_str(), extproc->port());
  }
  std::fprintf(stderr, "llmd route: http://%s:%u -> %zu endpoints (%s)\n", a.router.http.host.c_str(),
               r.port(), discovery.current().size(),
               a.config_file.empty() ? "llm-d's default profile" : a.config_file.c_str());
  std::signal(SIGINT, [](int) { g_route_stop.release(); });
  std::signal(SIGTERM, [](int) { g_route_stop.release(); });
  g_route_stop.acquire();
  std::fprintf(stderr, "llmd route: stopping (finishing requests in progress for up to %g s)\n",
               a.drain_timeout_s);
  r.drain(std::chrono::milliseconds(static_cast<int64_t>(a.drain_timeout_s * 1000)));
  if (extproc) extproc->stop();
  discovery.stop();
  r.stop();
}

}  // namespace

void register_route(CLI::App& app) {
  auto a = std::make_shared<RouteArgs>();
  a->router.http.port = 8080;
  CLI::App* cmd =
      app.add_subcommand("route", "Inference scheduler: cache- and load-aware proxy to model servers");
  cmd->add_option("--host", a->router.http.host, "Address to bind")->capture_default_str();
  cmd->add_option("--port", a->router.http.port, "Port (0: any free one)")->capture_default_str();
  cmd->add_option("--http-threads", a->router.http.io_threads, "HTTP I/O threads")->capture_default_str();
  cmd->add_option("--endpoints", a->endpoints,
                  "Model servers: HOST:PORT[;role=prefill|decode][;KEY=VALUE..],...");
  cmd->add_option("--endpoints-file", a->endpoints_file,
                  "File of endpoints, one per line, re-read when it changes");
  cmd->add_option("--endpoints-dns", a->endpoints_dns,
                  "NAME:PORT[;labels]: every address of NAME, re-resolved");
  cmd->add_option("--config", a->config_file,
                  "llm-d EndpointPickerConfig YAML (default: llm-d's default profile)");
  cmd->add_option("--tokenizer", a->tokenizer, "The model's GGUF: exact token-block keys for text prompts");
  cmd->add_option("--chat-template", a->chat_template, "As llmd serve's: a built-in name or a Jinja file");
  cmd->add_option("--kv-fingerprint", a->fingerprint,
                  "Root of the block keys (default: the tokenizer file's)");
  cmd->add_option("--block-size", a->block_size, "Tokens per KV block of the servers")->capture_default_str();
  cmd->add_option("--scrape-interval-ms", a->scrape_ms, "Metrics scrape interval")->capture_default_str();
  cmd->add_option("--staleness-ms", a->staleness_ms, "Metrics older than this make an endpoint unfit")
      ->capture_default_str();
  cmd->add_option(
      "--kv-events-port", a->router.kv_events_port,
      "Subscribe to every endpoint's KV events at tcp://HOST:PORT (a kv-events= label overrides)");
  cmd->add_option(
         "--extproc-port", a->extproc_port,
         "Also serve Envoy's ext_proc (the Gateway API Inference Extension's EPP) on this port, e.g. 9002")
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--drain-timeout", a->drain_timeout_s,
                  "On SIGTERM/SIGINT, seconds for requests in progress to finish before the router stops")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--api-key", a->router.api_key, "Require Authorization: Bearer KEY")
      ->envname("LLMD_API_KEY");
  cmd->callback([a] { run_route(*a); });
}

}  // namespace llmd::cli
