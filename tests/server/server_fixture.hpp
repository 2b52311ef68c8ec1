#pragma once
// An in-process `llmd serve` on the demo model: real engine, real HTTP server on a free loopback
// port, real sockets; for the server's integration tests.
#include <memory>
#include <string>

#include "common/http_client.hpp"
#include "engine/cpu/cpu_backend.hpp"
#include "engine/engine.hpp"
#include "model/chat_template.hpp"
#include "model/gguf.hpp"
#include "model/tokenizer.hpp"
#include "server/openai_server.hpp"

namespace llmd::server {

struct ServerFixtureOptions {
  std::string api_key;
  int32_t n_blocks = 256;
  engine::KvEventSink* events = nullptr;
};

class ServerFixture {
 public:
  explicit ServerFixture(const ServerFixtureOptions& o = {})
      : file_(model::GgufFile::open(std::string(LLMD_SHARED_DIR) + "/models/stories260K.gguf")),
        tok_(model::Tokenizer::from_gguf(file_)),
        tmpl_(model::ChatTemplate::from_gguf(file_, chat_options())) {
    engine::BackendConfig bc;
    bc.threads = 1;
    bc.max_seq_len = 512;
    bc.max_seqs = 16;
    bc.max_batch_tokens = 512;
    bc.kv.n_blocks = o.n_blocks;
    backend_ = engine::cpu::make_cpu_backend(file_, bc);
    engine::EngineConfig ec;
    ec.scheduler.max_num_seqs = 16;
    ec.scheduler.max_num_batched_tokens = 512;
    ec.model_fingerprint = kFingerprint;
    ec.is_eos = [this](int32_t id) { return tok_.is_eog(id); };
    engine_ = std::make_unique<engine::Engine>(*backend_, ec, o.events);
    ServeConfig sc;
    sc.served_model_name = "stories";
    sc.api_key = o.api_key;
    sc.http.max_body_bytes = 1 << 20;
    server_ = std::make_unique<OpenAiServer>(sc, *engine_, tok_, tmpl_);
    server_->start();
  }
  ~ServerFixture() { server_->stop(); }

  http::ClientResponse post(const std::string& path, const std::string& body, const http::Headers& h = {}) {
    return http::fetch("127.0.0.1", port(), "POST", path, body, h);
  }
  http::ClientResponse get(const std::string& path) { return http::fetch("127.0.0.1", port(), "GET", path); }
  uint16_t port() const { return server_->port(); }
  engine::Engine& engine() { return *engine_; }
  const model::Tokenizer& tokenizer() const { return tok_; }

  static constexpr const char* kFingerprint = "stories-test";

  static model::ChatTemplateOptions chat_options() {
    model::ChatTemplateOptions o;
    o.bos_token = "<s>";
    o.eos_token = "</s>";
    return o;
  }

 private:
  model::GgufFile file_;
  model::Tokenizer tok_;
  model::ChatTemplate tmpl_;
  std::unique_ptr<engine::Backend> backend_;
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<OpenAiServer> server_;
};

}  // namespace llmd::server
