#include "server/openai_server.hpp"

#include <chrono>
#include <nlohmann/json.hpp>

#include "server/openai_request.hpp"
#include "server/server_state.hpp"

namespace llmd::server {
namespace {

using nlohmann::json;

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

asio::awaitable<void> send_json(http::Response& res, int status, const json& j) {
  const std::string body = j.dump(-1, ' ', false, json::error_handler_t::replace);
  co_await res.send(status, kJsonType, body);
}

asio::awaitable<void> send_api_error(http::Response& res, const ApiError& e) {
  co_await res.send(e.status, kJsonType, e.body());
}

// Bearer auth on /v1/*, as vLLM's --api-key: a constant-time comparison of the whole header.
bool authorized(const OpenAiServer::State& s, const http::Request& req) {
  if (s.cfg.api_key.empty()) return true;
  const std::string want = "Bearer " + s.cfg.api_key;
  const std::string got(req.headers.get("authorization").value_or(""));
  unsigned diff = got.size() != want.size();
  for (size_t i = 0; i < want.size(); ++i)
    diff |= static_cast<unsigned>(want[i] ^ (i < got.size() ? got[i] : 0));
  return diff == 0;
}

// Wraps a /v1 handler with the API key check.
http::Handler guarded(
    OpenAiServer::State& s,
    std::function<asio::awaitable<void>(OpenAiServer::State&, http::Request&, http::Response&)> h) {
  return [&s, h = std::move(h)](http::Request& req, http::Response& res) -> asio::awaitable<void> {
    if (!authorized(s, req)) {
      const ApiError e{401, "Unauthorized: a valid API key is required (Authorization: Bearer ...)", ""};
      co_await send_api_error(res, e);
      co_return;
    }
    co_await h(s, req, res);
  };
}

asio::awaitable<void> models(OpenAiServer::State& s, http::Request&, http::Response& res) {
  const auto& b = s.engine.backend();
  json m = {
      {"id", s.cfg.served_model_name},
      {"object", "model"},
      {"created", unix_now()},
      {"owned_by", "llmd"},
      {"root", s.cfg.model_path},
      {"parent", nullptr},
      {"max_model_len", b.max_seq_len()},
      {"permission", json::array()},
      {"metadata", {{"role", s.cfg.role}, {"block_size", b.block_size()}, {"num_blocks", b.n_blocks()}}}};
  const json list = {{"object", "list"}, {"data", json::array({m})}};
  co_await send_json(res, 200, list);
}

asio::awaitable<void> tokenize(OpenAiServer::State& s, http::Request& req, http::Response& res) {
  const json j = json::parse(req.body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    const ApiError e{400, "the request body is not a JSON object", ""};
    co_await send_api_error(res, e);
    co_return;
  }
  std::vector<int32_t> ids;
  std::string error;  // co_await is not allowed inside a catch block
  try {
    const bool add_special = j.value("add_special_tokens", true);
    if (j.contains("messages")) {
      const std::string text = s.tmpl.render(j["messages"], j.value("add_generation_prompt", true));
      ids = s.tok.encode(text, false, true);
    } else if (j.contains("prompt") && j["prompt"].is_string()) {
      ids = s.tok.encode(j["prompt"].get<std::string>(), add_special);
    } else {
      error = "'prompt' (a string) or 'messages' is required";
    }
  } catch (const std::exception& e) {
    error = e.what();
  }
  if (!error.empty()) {
    const ApiError e{400, error, "prompt"};
    co_await send_api_error(res, e);
    co_return;
  }
  const json out = {
      {"tokens", ids}, {"count", ids.size()}, {"max_model_len", s.engine.backend().max_seq_len()}};
  co_await send_json(res, 200, out);
}

asio::awaitable<void> detokenize(OpenAiServer::State& s, http::Request& req, http::Response& res) {
  const json j = json::parse(req.body, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("tokens") || !j["tokens"].is_array()) {
    const ApiError e{400, "'tokens' (an array of token ids) is required", "tokens"};
    co_await send_api_error(res, e);
    co_return;
  }
  std::vector<int32_t> ids;
  for (const auto& t : j["tokens"]) {
    if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= s.tok.size()) {
      const ApiError e{400, "token ids must be integers within the vocabulary", "tokens"};
      co_await send_api_error(res, e);
      co_return;
    }
    ids.push_back(t.get<int32_t>());
  }
  const json out = {{"prompt", s.tok.decode(ids, false)}};
  co_await send_json(res, 200, out);
}

}  // namespace

ServerMetrics::ServerMetrics(metrics::Registry& r, const ServeConfig& cfg, const engine::Backend& backend) {
  const std::vector<std::string> labels = {"model_name", "engine"};
  const std::vector<std::string> values = {cfg.served_model_name, "0"};
  auto gauge = [&](const char* n, const char* h) { return &r.gauge(n, h, labels).with(values); };
  auto counter = [&](const char* n, const char* h) { return &r.counter(n, h, labels).with(values); };
  running = gauge("vllm:num_requests_running", "Number of requests in model execution batches.");
  waiting = gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.");
  kv_usage = gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.");
  prefix_queries =
      counter("vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens.");
  prefix_hits = counter("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.");
  prompt_tokens = counter("vllm:prompt_tokens", "Number of prefill tokens processed.");
  generation_tokens = counter("vllm:generation_tokens", "Number of generation tokens processed.");
  preemptions = counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.");
  kv_pinned_blocks =
      gauge("llmd:kv_pinned_blocks", "KV blocks of prefill legs kept for decode servers to pull.");
  auto& pins = r.counter("llmd:kv_pins",
                         "Prefill legs' pinned KV blocks freed, by why: the decode side "
                         "released them, or the pin timed out.",
                         {"model_name", "engine", "outcome"});
  kv_pins_released = &pins.with({cfg.served_model_name, "0", "released"});
  kv_pins_expired = &pins.with({cfg.served_model_name, "0", "expired"});
  kv_pulled_blocks = counter("llmd:kv_pulled_blocks", "KV blocks decode legs pulled from prefill servers.");
  kv_pull_failures = counter("llmd:kv_pull_failures",
                             "Decode legs whose pull failed (their prompt was computed here instead).");
  auto& success = r.counter("vllm:request_success", "Count of successfully processed requests.",
                            {"model_name", "engine", "finished_reason"});
  success_stop = &success.with({cfg.served_model_name, "0", "stop"});
  success_length = &success.with({cfg.served_model_name, "0", "length"});
  success_abort = &success.with({cfg.served_model_name, "0", "abort"});
  success_error = &success.with({cfg.served_model_name, "0", "error"});
  auto hist = [&](const char* n, const char* h, std::span<const double> b) {
    return &r.histogram(n, h, b, labels).with(values);
  };
  ttft = hist("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
              metrics::kTtftBuckets);
  tpot = hist("vllm:time_per_output_token_seconds", "Histogram of time per output token in seconds.",
              metrics::kTpotBuckets);
  itl = hist("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
             metrics::kTpotBuckets);
  e2e = hist("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
             metrics::kE2eBuckets);
  r.info("vllm:cache_config_info", "Information of the LLMEngine CacheConfig",
         {{"block_size", std::to_string(backend.block_size())},
          {"num_gpu_blocks", std::to_string(backend.n_blocks())},
          {"enable_prefix_caching", "True"}});
  r.info("llmd:server_info", "The server's role in prefill/decode disaggregation and its model.",
         {{"role", cfg.role}, {"model_name", cfg.served_model_name}});
}

void ServerMetrics::refresh(const engine::EngineStats& st) {
  std::lock_guard lock(mu_);
  running->set(static_cast<double>(st.running));
  waiting->set(static_cast<double>(st.waiting));
  kv_usage->set(st.kv_usage);
  prefix_queries->inc(static_cast<double>(st.prefix_queries - last_.prefix_queries));
  prefix_hits->inc(static_cast<double>(st.prefix_hits - last_.prefix_hits));
  prompt_tokens->inc(static_cast<double>(st.prompt_tokens - last_.prompt_tokens));
  generation_tokens->inc(static_cast<double>(st.generation_tokens - last_.generation_tokens));
  preemptions->inc(static_cast<double>(st.preemptions - last_.preemptions));
  kv_pinned_blocks->set(static_cast<double>(st.kv_pinned_blocks));
  kv_pins_released->inc(static_cast<double>(st.kv_pins_released - last_.kv_pins_released));
  kv_pins_expired->inc(static_cast<double>(st.kv_pins_expired - last_.kv_pins_expired));
  kv_pulled_blocks->inc(static_cast<double>(st.kv_pulled_blocks - last_.kv_pulled_blocks));
  kv_pull_failures->inc(static_cast<double>(st.kv_pull_failures - last_.kv_pull_failures));
  last_ = st;
}

OpenAiServer::OpenAiServer(const ServeConfig& cfg, engine::Engine& engine, const model::Tokenizer& tokenizer,
                           const model::ChatTemplate& chat_template)
    : s_(std::make_unique<State>(cfg, engine, tokenizer, chat_template)), http_(cfg.http) {
  State& s = *s_;
  http_.route("POST", "/v1/completions", guarded(s, [](State& st, http::Request& q, http::Response& r) {
                return handle_generation(st, q, r, false);
              }));
  http_.route("POST", "/v1/chat/completions", guarded(s, [](State& st, http::Request& q, http::Response& r) {
                return handle_generation(st, q, r, true);
              }));
  http_.route("GET", "/v1/models", guarded(s, models));
  http_.route("POST", "/tokenize", guarded(s, tokenize));
  http_.route("POST", "/detokenize", guarded(s, detokenize));
  http_.route("GET", "/health", [](http::Request&, http::Response& res) -> asio::awaitable<void> {
    co_await res.send(200, kTextType, std::string());
  });
  http_.route("GET", "/metrics", [&s](http::Request&, http::Response& res) -> asio::awaitable<void> {
    s.m.refresh(s.engine.stats());
    co_await res.send(200, kPrometheusType, s.registry.render());
  });
}

OpenAiServer::~OpenAiServer() {
  stop();
}
void OpenAiServer::start() {
  http_.start();
}
void OpenAiServer::stop() {
  http_.stop();
}
void OpenAiServer::drain(std::chrono::milliseconds grace) {
  http_.drain(grace);
}
uint16_t OpenAiServer::port() const {
  return http_.port();
}
metrics::Registry& OpenAiServer::metrics() {
  return s_->registry;
}

}  // namespace llmd::server
