// `llmd serve`: the model server (OpenAI API, continuous batching, prefix cache, metrics, KV events).
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <semaphore>
#include <sstream>

#include <fmt/format.h>

#include "cli/commands.hpp"
#include "cli/engine_flags.hpp"
#include "common/error.hpp"
#include "engine/cpu/cpu_backend.hpp"
#include "engine/engine.hpp"
#include "kv/event_publisher.hpp"
#include "model/chat_template.hpp"
#include "model/gguf.hpp"
#include "model/tokenizer.hpp"
#include "server/openai_server.hpp"

namespace llmd::cli {
namespace {

// KV memory when --num-kv-blocks is not given: what the host can spare by default, in the spirit
// of vLLM's --gpu-memory-utilization, and never more than every sequence at full length.
constexpr int64_t kDefaultKvCacheBytes = int64_t{2} << 30;

struct ServeArgs {
  EngineFlags engine;
  server::ServeConfig serve;
  int32_t max_num_seqs = engine::SchedulerConfig::kDefaultMaxNumSeqs;
  bool no_prefix_caching = false;
  std::string chat_template;
  std::string kv_events_endpoint;
};

std::binary_semaphore g_stop{0};

model::ChatTemplate load_chat_template(const std::string& spec, const model::GgufFile& file,
                                       const model::Tokenizer& tok) {
  model::ChatTemplateOptions opt;
  opt.bos_token = tok.token_to_piece(tok.bos(), true);
  opt.eos_token = tok.token_to_piece(tok.eos(), true);
  if (spec.empty()) return model::ChatTemplate::from_gguf(file, opt);
  if (std::filesystem::is_regular_file(spec)) {
    std::ifstream in(spec);
    std::stringstream ss;
    ss << in.rdbuf();
    return model::ChatTemplate::from_source(ss.str(), opt);
  }
  return model::ChatTemplate::builtin(spec, opt);
}

int32_t default_kv_blocks(const model::LlamaConfig& c, const engine::BackendConfig& b, int32_t max_seq_len) {
  const int64_t elem = b.kv.dtype == engine::KvDtype::kF16 ? 2 : 4;
  const int64_t block_bytes = 2 * c.n_layer * c.n_head_kv * c.head_dim * b.kv.block_size * elem;
  const int64_t all_full = static_cast<int64_t>(b.max_seqs) * ((max_seq_len + b.kv.block_size - 1) / b.kv.block_size);
  return static_cast<int32_t>(std::max<int64_t>(1, std::min(all_full, kDefaultKvCacheBytes / block_bytes)));
}

void run_serve(ServeArgs& a) {
  const model::GgufFile file = model::GgufFile::open(a.engine.model);
  const model::Tokenizer tok = model::Tokenizer::from_gguf(file);
  const model::ChatTemplate tmpl = load_chat_template(a.chat_template, file, tok);
  const model::LlamaConfig mc = model::LlamaConfig::from_gguf(file);

  engine::BackendConfig bc = a.engine.resolve();
  bc.max_seqs = a.max_num_seqs;
  const int32_t max_seq_len =
      bc.max_seq_len > 0 ? bc.max_seq_len : static_cast<int32_t>(std::min<int64_t>(mc.n_ctx_train, 4096));
  if (bc.kv.n_blocks == 0) bc.kv.n_blocks = default_kv_blocks(mc, bc, max_seq_len);
  auto backend = engine::cpu::make_cpu_backend(file, bc);

  server::ServeConfig sc = a.serve;
  sc.model_path = a.engine.model;
  if (sc.served_model_name.empty()) sc.served_model_name = a.engine.model;
  if (sc.role != "prefill" && sc.role != "decode" && sc.role != "both")
    fail("--role must be prefill, decode or both, got '{}'", sc.role);

  std::unique_ptr<kv::EventPublisher> events;
  if (!a.kv_events_endpoint.empty()) {
    kv::EventPublisherConfig ec;
    ec.endpoint = a.kv_events_endpoint;
    ec.topic = fmt::format("kv@{}:{}@{}", sc.http.host, sc.http.port, sc.served_model_name);
    events = std::make_unique<kv::EventPublisher>(ec);
  }

  engine::EngineConfig ec;
  ec.scheduler.max_num_seqs = a.max_num_seqs;
  ec.scheduler.max_num_batched_tokens = bc.max_batch_tokens;
  ec.prefix_caching = !a.no_prefix_caching;
  ec.model_fingerprint = fmt::format("{}:{}", mc.architecture, file.file_size());
  ec.is_eos = [&tok](int32_t id) { return tok.is_eog(id); };
  engine::Engine eng(*backend, ec, events.get());

  server::OpenAiServer srv(sc, eng, tok, tmpl);
  srv.start();
  std::fprintf(stderr, "llmd serve: %s on http://%s:%u (%s)\n", sc.served_model_name.c_str(), sc.http.host.c_str(),
               srv.port(), backend->describe().c_str());
  std::fprintf(stderr,
               "try: curl http://%s:%u/v1/completions -H 'Content-Type: application/json' "
               "-d '{\"prompt\": \"Once upon a time\", \"max_tokens\": 32}'\n",
               sc.http.host.c_str(), srv.port());
  std::signal(SIGINT, [](int) { g_stop.release(); });
  std::signal(SIGTERM, [](int) { g_stop.release(); });
  g_stop.acquire();
  std::fprintf(stderr, "llmd serve: stopping\n");
  srv.stop();
}

}  // namespace

void register_serve(CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  a->serve.http.port = 8000;
  CLI::App* cmd = app.add_subcommand("serve", "Serve a model over the OpenAI API");
  a->engine.add_to(*cmd);
  cmd->add_option("--host", a->serve.http.host, "Address to bind (default 127.0.0.1)");
  cmd->add_option("--port", a->serve.http.port, "Port (0: any free port)");
  cmd->add_option("--served-model-name", a->serve.served_model_name, "Model name in the API (default: the path)");
  cmd->add_option("--api-key", a->serve.api_key, "Require this Bearer key on /v1/*")->envname("LLMD_API_KEY");
  cmd->add_option("--chat-template", a->chat_template, "Chat template: a built-in name or a Jinja file");
  cmd->add_option("--role", a->serve.role, "prefill, decode or both (P/D disaggregation)");
  cmd->add_option("--max-num-seqs", a->max_num_seqs, "Sequences in one step")->check(CLI::PositiveNumber);
  cmd->add_flag("--no-enable-prefix-caching", a->no_prefix_caching, "Turn the prefix cache off");
  cmd->add_option("--kv-events-endpoint", a->kv_events_endpoint, "Publish KV events (ZMQ PUB), e.g. tcp://127.0.0.1:5557");
  cmd->add_option("--http-threads", a->serve.http.io_threads, "HTTP I/O threads")->check(CLI::PositiveNumber);
  cmd->callback([a] { run_serve(*a); });
}

}  // namespace llmd::cli
