#pragma once
// What every handler of OpenAiServer shares: the engine, the tokenizer, the chat template, and the
// metrics with vLLM's names. Internal to src/server.
#include <mutex>

#include "common/http_client.hpp"
#include "engine/engine.hpp"
#include "server/openai_server.hpp"

namespace llmd::server {

struct ServerMetrics {
  explicit ServerMetrics(metrics::Registry& r, const ServeConfig& cfg, const engine::Backend& backend);
  // Brings the engine's counters and gauges up to date; called before each scrape.
  void refresh(const engine::EngineStats& st);

  metrics::Gauge *running, *waiting, *kv_usage, *kv_pinned_blocks;
  metrics::Counter *prefix_queries, *prefix_hits, *prompt_tokens, *generation_tokens, *preemptions;
  metrics::Counter *success_stop, *success_length, *success_abort, *success_error;
  metrics::Counter *kv_pins_released, *kv_pins_expired;   // P/D prefill legs' pins, by how they ended
  metrics::Counter *kv_pulled_blocks, *kv_pull_failures;  // P/D decode legs' pulls
  metrics::Histogram *ttft, *tpot, *itl, *e2e;

 private:
  std::mutex mu_;
  engine::EngineStats last_;
};

struct OpenAiServer::State {
  ServeConfig cfg;
  engine::Engine& engine;
  const model::Tokenizer& tok;
  const model::ChatTemplate& tmpl;
  metrics::Registry registry;
  ServerMetrics m;
  http::Client client;  // llm-d's sidecar mode: the prefill legs this server runs itself

  State(const ServeConfig& c, engine::Engine& e, const model::Tokenizer& t, const model::ChatTemplate& ct)
      : cfg(c), engine(e), tok(t), tmpl(ct), m(registry, c, e.backend()) {}
};

// Content types and SSE framing. Named constants, not literals, in co_await expressions: g++ 12
// miscompiles a string literal (an array temporary) there ("array used as initializer").
inline const std::string kJsonType = "application/json";
inline const std::string kTextType = "text/plain";
inline const std::string kPrometheusType = "text/plain; version=0.0.4; charset=utf-8";
inline const std::string kEventStreamType = "text/event-stream";
inline const std::string kDoneEvent = "data: [DONE]\n\n";
inline std::string sse(const std::string& data) {
  return "data: " + data + "\n\n";
}
inline http::Headers no_cache_headers() {
  http::Headers h;
  h.set("Cache-Control", "no-cache");
  return h;
}

// The handler of /v1/completions and /v1/chat/completions (generation.cpp).
asio::awaitable<void> handle_generation(OpenAiServer::State& s, http::Request& req, http::Response& res,
                                        bool chat);

}  // namespace llmd::server
