#include "router/router.hpp"

#include <algorithm>
#include <array>
#include <random>
#include <span>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/http_client.hpp"
#include "kv/transfer/pd_legs.hpp"

namespace llmd::router {
namespace {

constexpr std::string_view kJson = "application/json";
constexpr std::string_view kEndpointHeader = "x-llmd-endpoint";  // which endpoint answered

// 128 random bits as 32 hex digits, written by hand: fmt's format parsing cost more than the rest
// of the id.
std::string make_request_id() {
  thread_local std::mt19937_64 rng(std::random_device{}());
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(32, '0');
  for (int half = 0; half < 2; ++half)
    for (std::uint64_t v = rng(), i = 0; i < 16; ++i, v >>= 4) id[half * 16 + 15 - i] = kHex[v & 15];
  return id;
}

// The upstream response's fields that reach the client besides its Content-Type: all but the
// hop-by-hop ones (RFC 9110 7.6.1), the framing (the router frames its response itself) and the
// router's own. (Fields a Connection header names are not looked for: vLLM and llmd send none.)
bool relayed(std::string_view name) {
  static constexpr std::string_view kNot[] = {
      "connection",   "keep-alive",        "proxy-connection", "te",
      "trailer",      "transfer-encoding", "upgrade",          "content-length",
      "content-type", kRequestIdHeader,    kSessionHeader,     kEndpointHeader};
  return std::none_of(std::begin(kNot), std::end(kNot),
                      [name](std::string_view n) { return http::iequals(name, n); });
}

}  // namespace

struct Router::Impl {
  using Api = Router::Api;
  Router& r;
  http::Client client;

  Impl(Router& router, http::ClientConfig cc) : r(router), client(cc) {}

  bool authorized(const http::Request& req) const {
    if (r.cfg_.api_key.empty()) return true;
    const auto h = req.headers.get("authorization");
    return h && *h == "Bearer " + r.cfg_.api_key;
  }

  void error(std::string_view kind) { r.metrics_.proxy_errors.with({kind}).inc(); }

  asio::awaitable<void> generation(http::Request& req, http::Response& res, bool chat) {
    r.metrics_.requests.inc();
    if (!authorized(req)) {
      co_await res.send_error(401, "Invalid or missing API key", "authentication_error");
      co_return;
    }
    Routed routed = r.route(req.body, chat ? Api::kChat : Api::kCompletions, req.headers);
    if (routed.status != 200) {
      co_await res.send_error(routed.status, routed.error, routed.error_type);
      co_return;
    }
    const SchedRequest& sr = routed.request;
    const Scheduler::Decision& d = routed.decision;

    // The fields sent upstream, borrowed from the request and the schedule (both outlive the legs).
    std::array<http::FieldView, 4> fields;
    std::size_t n = 0;
    fields[n++] = {"Content-Type", kJson};
    fields[n++] = {kRequestIdHeader, sr.request_id};
    for (const std::string_view pass : {"authorization", "accept"})
      if (const auto v = req.headers.get(pass)) fields[n++] = {pass, *v};
    const http::FieldsRef headers(std::span<const http::FieldView>(fields.data(), n));
    // P/D: the prefill leg first; the decode leg (the client's stream) then carries its answer. A
    // prefill leg that fails leaves the request to the decode endpoint alone (aggregated).
    std::string decode_body;
    if (d.result.prefill) {
      decode_body = co_await prefill_leg(*d.result.prefill, req, headers);
      r.metrics_.pd_requests.with({decode_body.empty() ? "aggregated" : "disaggregated"}).inc();
    }
    const std::string& body = decode_body.empty() ? req.body : decode_body;

    const Candidates& ranked = d.result.primary.ranked;
    const std::size_t tries =
        std::min<std::size_t>(ranked.size(), static_cast<std::size_t>(r.cfg_.max_attempts));
    for (std::size_t i = 0; i < tries; ++i) {
      Endpoint* e = ranked[i];
      r.metrics_.decisions.with({d.result.primary.profile, e->address()}).inc();  // each attempt
      const Outcome o = co_await forward(*e, req, body, res, headers, sr);
      if (o == Outcome::kDone) co_return;
      if (o == Outcome::kRetry) continue;
      co_return;  // failed after the client saw bytes: already ended as cleanly as it can be
    }
    error("connect");
    co_await res.send_error(502, "No endpoint accepted the connection", "server_error");
  }

  // Runs the prefill leg on the prefill profile's endpoints (the next one after a refused
  // connection) and returns the decode leg's body, or "" when no prefill endpoint answered with
  // kv_transfer_params.
  asio::awaitable<std::string> prefill_leg(const ProfileResult& prefill, http::Request& req,
                                           http::FieldsRef headers) {
    const std::optional<std::string> leg = kv::transfer::prefill_leg_body(req.body);
    if (!leg) co_return std::string();
    const std::size_t tries =
        std::min<std::size_t>(prefill.ranked.size(), static_cast<std::size_t>(r.cfg_.max_attempts));
    for (std::size_t i = 0; i < tries; ++i) {
      Endpoint& e = *prefill.ranked[i];
      r.metrics_.decisions.with({prefill.profile, e.address()}).inc();
      e.active.fetch_add(1, std::memory_order_relaxed);
      std::optional<std::string> next;
      bool refused = false;
      try {
        const http::ClientResponse answer =
            co_await client.request(e.host(), e.port(), req.method, req.target, *leg, headers);
        if (answer.status == 200) next = kv::transfer::decode_leg_body(req.body, answer.body);
      } catch (const http::ConnectError&) {
        refused = true;
        e.reachable.store(false, std::memory_order_relaxed);  // ejected until a scrape succeeds
      } catch (const std::exception&) {
      }
      e.active.fetch_sub(1, std::memory_order_relaxed);
      if (next) co_return std::move(*next);
      error(refused ? "prefill_connect" : "prefill_failed");
      if (!refused) break;  // it answered, but not with blocks: decode computes the prompt itself
    }
    co_return std::string();
  }

  enum class Outcome { kDone, kRetry, kFailed };

  asio::awaitable<Outcome> forward(Endpoint& e, http::Request& req, const std::string& body,
                                   http::Response& res, http::FieldsRef headers, const SchedRequest& sr) {
    struct Relay {
      http::Response& res;
      const std::array<http::FieldView, 3> ours;
      bool sse = false;
      bool client_gone = false;
      // The client's response head: ours, then the upstream's relayed fields (borrowed from `head`).
      http::FieldsRef fields_for(const http::ClientResponse& head) const {
        return {ours, head.headers, relayed};
      }
    };
    Relay relay{res,
                {{{kRequestIdHeader, sr.request_id},
                  {kSessionHeader, e.session_token()},
                  {kEndpointHeader, e.address()}}}};
    // One pointer captured: the std::function keeps it inline instead of allocating.
    http::ChunkCallback cb = [&relay](const http::ClientResponse& head,
                                      std::string_view chunk) -> asio::awaitable<bool> {
      // Whatever arrived in one read leaves in one write: the head with the first chunk, the end
      // with the last.
      http::Response& res = relay.res;
      bool ok = true;
      if (!res.headers_sent()) {
        const auto ct = head.headers.get("content-type");
        const std::string_view type = ct ? *ct : kJson;
        relay.sse = type.starts_with("text/event-stream");
        const http::FieldsRef fields = relay.fields_for(head);
        ok = co_await res.start_stream(head.status, type, fields, chunk, head.complete);
      } else if (head.complete) {
        ok = co_await res.finish(chunk);
      } else if (!chunk.empty()) {
        ok = co_await res.write(chunk);
      }
      relay.client_gone = !ok;
      co_return ok;
    };
    e.active.fetch_add(1, std::memory_order_relaxed);
    std::string failure;
    bool connect_failed = false;
    http::ClientResponse head;
    try {
      head = co_await client.stream(e.host(), e.port(), req.method, req.target, body, headers, cb);
    } catch (const http::ConnectError& ex) {
      failure = ex.what();
      connect_failed = true;
    } catch (const std::exception& ex) {
      failure = ex.what();
    }
    e.active.fetch_sub(1, std::memory_order_relaxed);
    if (failure.empty()) {
      if (relay.client_gone) co_return Outcome::kFailed;
      if (!res.headers_sent()) {  // an empty body
        const http::FieldsRef fields = relay.fields_for(head);
        co_await res.send(head.status, kJson, "", fields);
      } else if (!res.finished())
        co_await res.finish();
      co_return Outcome::kDone;
    }
    if (!res.headers_sent()) {
      if (connect_failed) {
        e.reachable.store(false, std::memory_order_relaxed);  // ejected until a scrape succeeds
        error("connect");
        co_return Outcome::kRetry;
      }
      error("upstream");
      co_await res.send_error(502, fmt::format("endpoint {} failed: {}", e.address(), failure),
                              "server_error");
      co_return Outcome::kFailed;
    }
    error("upstream_closed");
    if (relay.sse && !relay.client_gone) {
      const std::string ev = fmt::format(
          "data: {}\n\n",
          http::json_error(502, fmt::format("endpoint {} failed mid-stream: {}", e.address(), failure),
                           "server_error"));
      if (co_await res.write(ev)) co_await res.finish();
      co_return Outcome::kFailed;
    }
    throw Error(
        fmt::format("endpoint {} failed mid-response: {}", e.address(), failure));  // cut, not completed
  }

  // GET /v1/models and the like: any fit endpoint answers for all.
  asio::awaitable<void> passthrough(http::Request& req, http::Response& res) {
    if (!authorized(req)) {
      co_await res.send_error(401, "Invalid or missing API key", "authentication_error");
      co_return;
    }
    const SteadyNs now = steady_now_ns();
    const auto endpoints = r.endpoints_.snapshot();  // held: the set may change while we wait
    for (const auto& e : *endpoints) {
      if (!e->fit(now, r.cfg_.scheduler.staleness)) continue;
      std::string failure;
      http::ClientResponse resp;
      try {
        resp = co_await client.request(e->host(), e->port(), req.method, req.target, req.body);
      } catch (const std::exception& ex) {
        failure = ex.what();
      }
      if (!failure.empty()) continue;
      const auto ct = resp.headers.get("content-type");
      const std::string type = ct ? std::string(*ct) : std::string(kJson);
      co_await res.send(resp.status, type, std::move(resp.body));
      co_return;
    }
    co_await res.send_error(503, "No endpoint can serve this request now", "server_error");
  }
};

Routed Router::route(std::string_view body_text, Api api, const http::Headers& headers) {
  Routed out;
  SchedRequest& sr = out.request;
  try {
    if (api != Api::kOther) keyer_.key(body_text, api == Api::kChat, sr);
  } catch (const std::exception& e) {
    metrics_.proxy_errors.with({"bad_request"}).inc();
    out.status = 400;
    out.error = e.what();
    out.error_type = "invalid_request_error";
    return out;
  }
  const auto rid = headers.get(kRequestIdHeader);
  sr.request_id = rid ? std::string(*rid) : make_request_id();
  if (const auto s = headers.get(kSessionHeader)) sr.session_token = std::string(*s);

  const auto t0 = std::chrono::steady_clock::now();
  out.endpoints = endpoints_.snapshot();
  out.decision = scheduler_->schedule(sr, *out.endpoints);
  metrics_.scheduling.observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  if (out.decision.status == Scheduler::Status::kShed) {
    metrics_.shed.inc();
    out.status = 429;
    out.error = "Every endpoint is saturated; retry later";
    out.error_type = "rate_limit_error";
  } else if (out.decision.status != Scheduler::Status::kOk) {
    metrics_.proxy_errors.with({"no_endpoint"}).inc();
    out.status = 503;
    out.error = "No endpoint can serve this request now";
    out.error_type = "server_error";
  } else {
    metrics_.predicted_prefix_hit.observe(out.decision.predicted_hit);
  }
  return out;
}

Router::Router(RouterConfig config, const EndpointPickerConfig& epp, PromptKeyer keyer)
    : cfg_(std::move(config)), keyer_(std::move(keyer)), metrics_(registry_) {
  PluginEnv env;
  env.kv_index = &kv_index_;
  scheduler_ = std::make_unique<Scheduler>(epp, env, cfg_.scheduler);
  server_ = std::make_unique<http::Server>(cfg_.http);
  http::ClientConfig cc;
  cc.connect_timeout = cfg_.connect_timeout;
  cc.io_timeout = cfg_.io_timeout;
  cc.max_idle_per_host = 256;
  impl_ = std::make_unique<Impl>(*this, cc);
  scraper_ = std::make_unique<Scraper>(server_->io_context().get_executor(), cfg_.scraper, &metrics_);
  subscriber_ = std::make_unique<KvEventSubscriber>(kv_index_, cfg_.kv_events);
  endpoints_.observe({[this](const std::shared_ptr<Endpoint>& e) {
                        scraper_->start(e);
                        std::string events(e->label(kKvEventsLabel));
                        if (events.empty() && cfg_.kv_events_port)
                          events = fmt::format("tcp://{}:{}", e->address().substr(0, e->address().rfind(':')),
                                               cfg_.kv_events_port);
                        if (!events.empty()) subscriber_->add(e->id(), events);
                      },
                      [this](const std::shared_ptr<Endpoint>& e) {
                        scraper_->stop(*e);
                        subscriber_->remove(e->id());  // clears its blocks; a no-op when not subscribed
                        scheduler_->endpoint_removed(e->id());
                      }});

  Impl* im = impl_.get();
  server_->route("POST", "/v1/completions",
                 [im](http::Request& q, http::Response& s) { return im->generation(q, s, false); });
  server_->route("POST", "/v1/chat/completions",
                 [im](http::Request& q, http::Response& s) { return im->generation(q, s, true); });
  auto pass = [im](http::Request& q, http::Response& s) { return im->passthrough(q, s); };
  server_->route("GET", "/v1/models", pass);
  server_->route("POST", "/tokenize", pass);
  server_->route("POST", "/detokenize", pass);
  server_->route("GET", "/health", [this](http::Request&, http::Response& s) -> asio::awaitable<void> {
    const auto [all, fit] = count_fit();
    nlohmann::json j;  // built outside co_await: g++ 12 miscompiles braced temporaries in coroutines
    j["status"] = "ok";
    j["endpoints"] = all;
    j["fit"] = fit;
    co_await s.send(200, kJson, j.dump());
  });
  server_->route("GET", "/metrics", [this](http::Request&, http::Response& s) -> asio::awaitable<void> {
    const auto [all, fit] = count_fit();
    metrics_.endpoints.with({"fit"}).set(static_cast<double>(fit));
    metrics_.endpoints.with({"unfit"}).set(static_cast<double>(all - fit));
    const KvEventCounters kv = subscriber_->counters();
    metrics_.kv_events.set(static_cast<double>(kv.events));
    metrics_.kv_events_malformed.set(static_cast<double>(kv.malformed + kv.unknown_events));
    metrics_.kv_events_gaps.set(static_cast<double>(kv.sequence_gaps));
    metrics_.kv_index_blocks.set(static_cast<double>(kv_index_.entries()));
    co_await s.send(200, metrics::kContentType, registry_.render());
  });
}

std::pair<std::size_t, std::size_t> Router::count_fit() const {
  const SteadyNs now = steady_now_ns();
  const auto endpoints = endpoints_.snapshot();
  std::size_t fit = 0;
  for (const auto& e : *endpoints) fit += e->fit(now, cfg_.scheduler.staleness);
  return {endpoints->size(), fit};
}

Router::~Router() {
  stop();
}

void Router::start() {
  server_->start();
}

void Router::stop() {
  // The server first: its io threads run the scrapers, which must not outlive the scraper.
  if (server_) server_->stop();
}

void Router::drain(std::chrono::milliseconds grace) {
  if (server_) server_->drain(grace);
}

uint16_t Router::port() const {
  return server_->port();
}

}  // namespace llmd::router
