#include "bench/driver.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <exception>
#include <memory>
#include <random>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bench/sse_parser.hpp"
#include "common/error.hpp"
#include "common/http_client.hpp"

namespace llmd::bench {

using Clock = std::chrono::steady_clock;

BaseUrl parse_base_url(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (url.starts_with("https://")) fail("--base-url {}: https is not supported (use http://)", url);
  if (!url.starts_with(kScheme)) fail("--base-url {}: expected http://HOST[:PORT][/PATH]", url);
  std::string_view rest = url.substr(kScheme.size());
  const std::size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash);
  while (path.ends_with('/')) path.remove_suffix(1);
  BaseUrl u;
  u.prefix.assign(path);
  std::string_view host = authority;
  if (authority.starts_with('[')) {  // [::1]:8000
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) fail("--base-url {}: unterminated IPv6 address", url);
    host = authority.substr(1, close - 1);
    authority.remove_prefix(close + 1);
    if (!authority.empty() && authority.front() != ':') fail("--base-url {}: bad port", url);
  } else {
    const std::size_t colon = authority.rfind(':');
    host = authority.substr(0, colon);
    authority = colon == std::string_view::npos ? std::string_view{} : authority.substr(colon);
  }
  if (host.empty()) fail("--base-url {}: no host", url);
  u.host.assign(host);
  if (!authority.empty()) {
    const std::string_view port = authority.substr(1);
    unsigned p = 0;
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (ec != std::errc() || end != port.data() + port.size() || p == 0 || p > 65535)
      fail("--base-url {}: bad port '{}'", url, port);
    u.port = static_cast<uint16_t>(p);
  }
  return u;
}

Endpoint parse_endpoint(std::string_view name) {
  if (name == "completions") return Endpoint::kCompletions;
  if (name == "chat") return Endpoint::kChat;
  fail("--endpoint must be completions or chat, got '{}'", name);
}

std::string endpoint_path(const BaseUrl& url, Endpoint e) {
  std::string p = url.prefix;
  if (!p.ends_with("/v1")) p += "/v1";
  p += e == Endpoint::kChat ? "/chat/completions" : "/completions";
  return p;
}

std::string request_body(const BenchRequest& req, const DriverConfig& cfg) {
  using json = nlohmann::json;
  json j = json::object();
  j["model"] = cfg.model;
  if (cfg.endpoint == Endpoint::kChat) {
    json msgs = json::array();
    for (const auto& [role, content] : req.messages) msgs.push_back({{"role", role}, {"content", content}});
    if (msgs.empty()) msgs.push_back({{"role", "user"}, {"content", req.prompt_text}});
    j["messages"] = std::move(msgs);
  } else if (!req.prompt_tokens.empty()) {
    j["prompt"] = req.prompt_tokens;
  } else {
    j["prompt"] = req.prompt_text;
  }
  if (req.max_tokens > 0) j["max_tokens"] = req.max_tokens;
  j["temperature"] = cfg.temperature;
  j["stream"] = true;
  j["stream_options"] = {{"include_usage", true}};
  // The benchmark asks for exactly max_tokens: an early EOS would make lengths (and TPOT) vary.
  j["ignore_eos"] = true;
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

namespace {

double seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// What one in-flight request has seen so far.
struct Stream {
  SseParser parser;
  std::string text;  // generated so far (multi-turn workloads resend it)
  std::string error_body;
  std::string error_kind, error;
  std::optional<int64_t> usage_tokens;
  int64_t text_chunks = 0;
  uint64_t events = 0;
  bool done = false;
  Clock::time_point last;
};

class Driver {
 public:
  Driver(Workload& w, const DriverConfig& cfg)
      : w_(w), cfg_(cfg), client_(client_config(cfg)), wake_(ioc_), arrive_(ioc_), rng_(cfg.seed) {
    target_ = endpoint_path(cfg.url, cfg.endpoint);
    headers_.add("Content-Type", "application/json");
    headers_.add("Accept", "text/event-stream");
    if (!cfg.api_key.empty()) headers_.add("Authorization", "Bearer " + cfg.api_key);
    t0_ = Clock::now();
  }

  RunResult run() {
    std::exception_ptr error;
    asio::co_spawn(ioc_, schedule(), [&](std::exception_ptr e) { error = e; });
    ioc_.run();
    if (error) std::rethrow_exception(error);
    return std::move(result_);
  }

 private:
  static http::ClientConfig client_config(const DriverConfig& cfg) {
    http::ClientConfig c;
    c.connect_timeout = cfg.connect_timeout;
    c.io_timeout = cfg.io_timeout;
    // Every connection of the concurrency limit stays pooled, so the steady state opens none.
    c.max_idle_per_host = cfg.max_concurrency > 0 ? cfg.max_concurrency : 4096;
    c.pool_idle_timeout = std::chrono::seconds(20);
    return c;
  }

  asio::awaitable<void> schedule() {
    if (cfg_.warmup > 0) co_await issue(cfg_.warmup, true);
    t0_ = Clock::now();
    co_await issue(cfg_.num_requests, false);
    result_.duration_s = seconds(Clock::now() - t0_);
  }

  // Sends up to `count` requests, then waits for all of them.
  asio::awaitable<void> issue(uint64_t count, bool warmup) {
    const Clock::time_point start = Clock::now();
    const bool timed = !warmup && std::isfinite(cfg_.request_rate) && cfg_.request_rate > 0;
    const double shape = cfg_.burstiness > 0 ? cfg_.burstiness : 1.0;
    // vLLM's arrivals: gamma gaps of mean 1/rate; shape 1 is exponential (Poisson arrivals).
    std::gamma_distribution<double> gap(shape, timed ? 1.0 / (cfg_.request_rate * shape) : 1.0);
    double next_at = 0;
    progress_ = Progress{};
    progress_.total = count;
    progress_.warmup = warmup;
    for (uint64_t sent = 0; sent < count;) {
      if (!warmup && cfg_.duration_s > 0 && seconds(Clock::now() - start) >= cfg_.duration_s) break;
      std::optional<BenchRequest> req = w_.next();
      if (!req) {
        if (inflight_ == 0) break;  // exhausted (or every conversation ended)
        co_await wait_change();     // multi-turn: the next turns wait on replies
        continue;
      }
      if (!warmup) {
        double at = -1;
        if (req->at_s) {
          at = *req->at_s;
        } else if (timed) {
          at = next_at;
          next_at += gap(rng_);
        }
        if (at > 0) {
          if (cfg_.duration_s > 0 && at >= cfg_.duration_s) break;
          arrive_.expires_at(start +
                             std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(at)));
          boost::system::error_code ec;
          co_await arrive_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        }
      }
      while (cfg_.max_concurrency > 0 && inflight_ >= cfg_.max_concurrency) co_await wait_change();
      ++inflight_;
      ++sent;
      ++progress_.sent;
      asio::co_spawn(ioc_, one(std::move(*req), warmup), asio::detached);
    }
    while (inflight_ > 0) co_await wait_change();
  }

  // Only the scheduler waits here; a request ending wakes it.
  asio::awaitable<void> wait_change() {
    wake_.expires_at(Clock::time_point::max());
    boost::system::error_code ec;
    co_await wake_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }

  asio::awaitable<void> one(BenchRequest req, bool warmup) {
    RequestRecord rec;
    rec.id = req.id;
    rec.warmup = warmup;
    rec.prompt_len = req.prompt_len;
    Stream st;
    std::string host = cfg_.url.host;
    std::string method = "POST";
    std::string target = target_;
    std::string body = request_body(req, cfg_);
    http::Headers headers = headers_;
    int status = 0;
    const Clock::time_point sent_at = Clock::now();
    rec.send_s = seconds(sent_at - t0_);
    http::ChunkCallback cb = [this, &st, &rec, sent_at](const http::ClientResponse& head,
                                                        std::string_view chunk) -> asio::awaitable<bool> {
      const Clock::time_point now = Clock::now();  // first thing: this is the arrival time
      co_return on_chunk(st, rec, sent_at, head, chunk, now);
    };
    try {
      http::ClientResponse resp =
          co_await client_.stream(host, cfg_.url.port, method, target, body, headers, cb);
      status = resp.status;
    } catch (const http::ConnectError& e) {
      st.error = e.what();
      st.error_kind = e.timed_out() ? "timeout" : "connect";
    } catch (const std::exception& e) {
      const std::string_view m = e.what();
      st.error = e.what();
      if (m.find("timed out") != std::string_view::npos) {
        st.error_kind = "timeout";
      } else if (st.events > 0 || st.parser.pending()) {
        st.error_kind = "incomplete";  // closed mid-stream
      } else {
        st.error_kind = "io";
      }
    }
    const Clock::time_point end = Clock::now();
    rec.end_s = seconds(end - t0_);
    finish(st, rec, status);
    if (rec.ok) {
      try {
        w_.on_reply(req, st.text);
      } catch (const std::exception& e) {
        // A workload that cannot take a reply ends that conversation, not the run.
      }
    }
    result_.records.push_back(std::move(rec));
    --inflight_;
    const RequestRecord& r = result_.records.back();
    (r.ok ? progress_.completed : progress_.failed)++;
    if (cfg_.on_progress) {
      progress_.elapsed_s = seconds(end - t0_);
      cfg_.on_progress(progress_);
    }
    wake_.cancel();
  }

  bool on_chunk(Stream& st, RequestRecord& rec, Clock::time_point sent_at, const http::ClientResponse& head,
                std::string_view chunk, Clock::time_point now) {
    constexpr std::size_t kMaxErrorBody = 512;
    if (head.status != 200) {  // read it all (the connection stays reusable), keep the start
      if (st.error_body.size() < kMaxErrorBody)
        st.error_body.append(chunk.substr(0, kMaxErrorBody - st.error_body.size()));
      return true;
    }
    if (now - sent_at > cfg_.request_timeout) {
      st.error_kind = "timeout";
      st.error = fmt::format("request took longer than {} ms", cfg_.request_timeout.count());
      return false;
    }
    if (st.done) return true;  // anything after [DONE] is drained, not counted
    const double t = seconds(now - t0_);
    const bool ok = st.parser.feed(chunk, [&](const SseEvent& ev) {
      if (st.done || !st.error_kind.empty()) return;
      ++st.events;
      StreamPayload p = parse_payload(ev);
      switch (p.kind) {
        case StreamPayload::Kind::kDelta:
          if (!p.text.empty()) {
            if (rec.first_s < 0) {
              rec.first_s = t;
            } else {
              rec.itl_s.push_back(seconds(now - st.last));
            }
            st.last = now;
            ++st.text_chunks;
            st.text += p.text;
          }
          if (p.completion_tokens) st.usage_tokens = p.completion_tokens;
          break;
        case StreamPayload::Kind::kDone:
          st.done = true;
          break;
        case StreamPayload::Kind::kError:
          st.error_kind = "server_error";
          st.error = std::move(p.error);
          break;
        case StreamPayload::Kind::kMalformed:
          st.error_kind = "malformed_sse";
          st.error = fmt::format("{}: {:.80}", p.error, ev.data);
          break;
      }
    });
    if (!ok && st.error_kind.empty()) {
      st.error_kind = "malformed_sse";
      st.error = "the body is not an event stream";
    }
    return st.error_kind.empty();
  }

  static void finish(Stream& st, RequestRecord& rec, int status) {
    if (st.error_kind.empty()) {
      if (status != 200) {
        st.error_kind = fmt::format("http_{}", status);
        st.error = st.error_body;
      } else if (!st.done) {
        if (st.events == 0 && st.parser.pending()) {
          st.error_kind = "malformed_sse";
          st.error = "the body is not an event stream";
        } else {
          st.error_kind = "incomplete";
          st.error = "the stream ended without [DONE]";
        }
      }
    }
    rec.ok = st.error_kind.empty();
    rec.error_kind = std::move(st.error_kind);
    rec.error = std::move(st.error);
    rec.output_tokens = st.usage_tokens.value_or(st.text_chunks);
  }

  Workload& w_;
  const DriverConfig& cfg_;
  asio::io_context ioc_{1};
  http::Client client_;
  asio::steady_timer wake_, arrive_;
  std::mt19937_64 rng_;
  std::string target_;
  http::Headers headers_;
  Clock::time_point t0_;
  uint64_t inflight_ = 0;
  Progress progress_;
  RunResult result_;
};

}  // namespace

RunResult run_benchmark(Workload& workload, const DriverConfig& cfg) {
  if (!(cfg.request_rate > 0)) fail("--request-rate must be positive (or inf), got {}", cfg.request_rate);
  if (!(cfg.burstiness > 0)) fail("--burstiness must be positive, got {}", cfg.burstiness);
  Driver d(workload, cfg);
  return d.run();
}

}  // namespace llmd::bench
