#pragma once
// `llmd serve`'s HTTP face: the OpenAI API (/v1/completions, /v1/chat/completions, /v1/models),
// /health, /metrics with vLLM's names, /tokenize and /detokenize, over one Engine.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "common/http_server.hpp"
#include "common/metrics.hpp"
#include "engine/engine.hpp"
#include "model/chat_template.hpp"
#include "model/tokenizer.hpp"

namespace llmd::server {

struct ServeConfig {
  http::ServerConfig http;
  std::string served_model_name;  // what /v1/models lists and requests must name
  std::string model_path;
  std::string api_key;        // empty: no auth; else Bearer auth on /v1/*
  std::string role = "both";  // prefill | decode | both (P/D disaggregation)
  // Where this server's KV transfer listener is, as peers reach it: set when it serves P/D
  // transfers. Prefill legs' answers name it in kv_transfer_params.
  struct KvTransferEndpoint {
    std::string engine_id;
    std::string host;
    uint16_t port = 0;
  };
  std::optional<KvTransferEndpoint> kv_transfer;
};

class OpenAiServer {
 public:
  // The engine, tokenizer and template must outlive the server.
  OpenAiServer(const ServeConfig& cfg, engine::Engine& engine, const model::Tokenizer& tokenizer,
               const model::ChatTemplate& chat_template);
  ~OpenAiServer();

  void start();
  void stop();
  // Stops accepting and lets the requests in progress finish for up to `grace`, then stop().
  void drain(std::chrono::milliseconds grace);
  uint16_t port() const;
  metrics::Registry& metrics();

  struct State;

 private:
  std::unique_ptr<State> s_;
  http::Server http_;
};

}  // namespace llmd::server
