#include "router/scraper.hpp"

#include <atomic>
#include <charconv>

#include "common/prometheus_text.hpp"

namespace llmd::router {

struct Scraper::Loop {
  std::atomic<bool> stopped{false};
  asio::steady_timer timer;
  explicit Loop(asio::any_io_executor ex) : timer(std::move(ex)) {}
};

std::size_t apply_metrics(std::string_view text, Endpoint& e, SteadyNs now) {
  double waiting = 0, running = 0, kv = 0;
  bool any = false;
  const std::size_t bad = prometheus::parse(text, [&](const prometheus::Sample& s) {
    // Sums over label sets: a server with several engines (data parallel) reports one per engine.
    if (s.name == "vllm:num_requests_waiting") {
      waiting += s.value, any = true;
    } else if (s.name == "vllm:num_requests_running") {
      running += s.value, any = true;
    } else if (s.name == "vllm:kv_cache_usage_perc" || s.name == "vllm:gpu_cache_usage_perc") {
      kv = std::max(kv, s.value), any = true;
    } else if (s.name == "vllm:cache_config_info") {
      auto int_label = [&](std::string_view key) -> int64_t {
        const auto v = prometheus::label(s.labels, key);
        int64_t n = 0;
        if (v) std::from_chars(v->data(), v->data() + v->size(), n);
        return n;
      };
      e.block_size.store(static_cast<int32_t>(int_label("block_size")), std::memory_order_relaxed);
      e.num_gpu_blocks.store(int_label("num_gpu_blocks"), std::memory_order_relaxed);
    }
  });
  if (!any) return bad + 1;  // no vLLM metric at all: not a model server's /metrics
  e.waiting.store(waiting, std::memory_order_relaxed);
  e.running.store(running, std::memory_order_relaxed);
  e.kv_usage.store(kv, std::memory_order_relaxed);
  e.scraped_at.store(now, std::memory_order_relaxed);
  return bad;
}

namespace {
http::ClientConfig client_config(const ScraperConfig& c) {
  http::ClientConfig h;
  h.connect_timeout = c.timeout;
  h.io_timeout = c.timeout;
  h.max_body_bytes = 8u << 20;
  h.max_idle_per_host = 2;
  return h;
}
}  // namespace

Scraper::Scraper(asio::any_io_executor ex, ScraperConfig config, RouterMetrics* metrics)
    : ex_(ex), config_(std::move(config)), metrics_(metrics), client_(client_config(config_)) {}

Scraper::~Scraper() {
  std::lock_guard lock(mu_);
  for (auto& [id, loop] : loops_) loop->stopped = true;
}

void Scraper::start(const std::shared_ptr<Endpoint>& e) {
  auto loop = std::make_shared<Loop>(ex_);
  {
    std::lock_guard lock(mu_);
    if (auto it = loops_.find(e->id()); it != loops_.end()) it->second->stopped = true;
    loops_[e->id()] = loop;
  }
  asio::co_spawn(ex_, run(e, loop), asio::detached);
}

void Scraper::stop(const Endpoint& e) {
  std::lock_guard lock(mu_);
  if (auto it = loops_.find(e.id()); it != loops_.end()) {
    it->second->stopped = true;
    loops_.erase(it);
  }
}

asio::awaitable<void> Scraper::run(std::shared_ptr<Endpoint> e, std::shared_ptr<Loop> loop) {
  while (!loop->stopped) {
    const auto started = std::chrono::steady_clock::now();
    try {
      http::ClientResponse r = co_await client_.request(e->host(), e->port(), "GET", config_.path);
      if (loop->stopped) break;
      e->reachable.store(true, std::memory_order_relaxed);
      if (r.status == 200) {
        const std::size_t bad = apply_metrics(r.body, *e, steady_now_ns());
        if (bad && metrics_) metrics_->metrics_malformed.inc(static_cast<double>(bad));
      } else if (metrics_) {
        metrics_->scrapes_failed.inc();
      }
    } catch (const std::exception& ex) {
      if (loop->stopped) break;
      // Refused or timed out: eject until a scrape succeeds again.
      e->reachable.store(false, std::memory_order_relaxed);
      if (metrics_) metrics_->scrapes_failed.inc();
    }
    loop->timer.expires_at(started + config_.interval);
    boost::system::error_code ec;
    co_await loop->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

}  // namespace llmd::router
