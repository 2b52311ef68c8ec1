// `llmd serve`: the model server (OpenAI API, continuous batching, prefix cache, metrics, KV events).
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <semaphore>
#include <sstream>
#include <vector>

#include <fmt/format.h>

#include "cli/chat_template_flag.hpp"
#include "cli/commands.hpp"
#include "cli/engine_flags.hpp"
#include "cli/sim_model.hpp"
#include "common/error.hpp"
#include "engine/cpu/cpu_backend.hpp"
#include "engine/engine.hpp"
#include "engine/sim/sim_backend.hpp"
#include "kv/event_publisher.hpp"
#include "kv/transfer/agent.hpp"
#include "model/chat_template.hpp"
#include "model/gguf.hpp"
#include "model/kv_fingerprint.hpp"
#include "model/tokenizer.hpp"
#include "server/openai_server.hpp"

namespace llmd::cli {
namespace {

// KV memory when --num-kv-blocks is not given: what the host can spare by default, in the spirit
// of vLLM's --gpu-memory-utilization, and never more than every sequence at full length.
constexpr int64_t kDefaultKvCacheBytes = int64_t{2} << 30;

// `--sim`: the forward pass replaced by the simulation backend's latency model (no model file).
struct SimArgs {
  static constexpr const char* kDefaultServedName = "sim-model";
  static constexpr int64_t kDefaultMaxModelLen = engine::sim::SimConfig::kDefaultContext;
  // A server hosted 32 to a 2-core machine: one I/O thread is plenty (the engine has its own).
  static constexpr int kDefaultHttpThreads = 1;

  bool enabled = false;
  engine::sim::SimLatencyModel latency;
  int64_t vocab = engine::sim::SimConfig::kDefaultVocab;
  int32_t block_count = 0;  // 0: --num-kv-blocks, else the sim backend's default
  int64_t max_model_len = kDefaultMaxModelLen;
  uint64_t seed = 0;
  int64_t eos_at_length = 0;
  std::vector<CLI::Option*> options;  // the --sim-* options, to refuse them without --sim
};

struct ServeArgs {
  EngineFlags engine;
  server::ServeConfig serve;
  int32_t max_num_seqs = engine::SchedulerConfig::kDefaultMaxNumSeqs;
  bool no_prefix_caching = false;
  std::string chat_template;
  std::string kv_events_endpoint;
  // P/D: the KV transfer listener (on when a secret is given).
  kv::transfer::TransferConfig kv_transfer;
  std::string kv_transfer_mode = "auto";
  std::string kv_transfer_advertise_host;  // empty: the bind address
  double kv_transfer_timeout_s = 30;
  // SIGTERM/SIGINT: how long requests in progress may take to finish (below Kubernetes' default
  // 30 s grace period, so the server ends before it is killed).
  double drain_timeout_s = 25;
  std::string kv_transfer_fault;  // tests: corrupt:N or truncate:N (the N-th block of each read)
  std::string kv_transfer_allow;  // addresses/prefixes that may connect; empty: any with the secret
  SimArgs sim;
  CLI::Option* http_threads = nullptr;
};

std::binary_semaphore g_stop{0};

int32_t default_kv_blocks(const model::LlamaConfig& c, const engine::BackendConfig& b, int32_t max_seq_len) {
  const int64_t elem = b.kv.dtype == engine::KvDtype::kF16 ? 2 : 4;
  const int64_t block_bytes = 2 * c.n_layer * c.n_head_kv * c.head_dim * b.kv.block_size * elem;
  const int64_t all_full =
      static_cast<int64_t>(b.max_seqs) * ((max_seq_len + b.kv.block_size - 1) / b.kv.block_size);
  return static_cast<int32_t>(std::max<int64_t>(1, std::min(all_full, kDefaultKvCacheBytes / block_bytes)));
}

// The simulation backend for `--sim`, sized by the engine flags and the --sim-* ones.
std::unique_ptr<engine::Backend> make_sim(const ServeArgs& a, const engine::BackendConfig& bc,
                                          const model::Tokenizer& tok) {
  const SimArgs& s = a.sim;
  if (s.max_model_len <= 0) fail("--sim-max-model-len must be positive, got {}", s.max_model_len);
  if (s.block_count < 0) fail("--sim-block-count must not be negative, got {}", s.block_count);
  if (s.eos_at_length < 0) fail("--sim-eos-at-length must not be negative, got {}", s.eos_at_length);
  engine::sim::SimConfig c;
  c.n_vocab = tok.size();
  c.n_ctx_train = s.max_model_len;
  c.backend = bc;
  if (c.backend.max_seq_len <= 0 || c.backend.max_seq_len > s.max_model_len)
    c.backend.max_seq_len = static_cast<int32_t>(std::min<int64_t>(s.max_model_len, INT32_MAX));
  if (s.block_count > 0) c.backend.kv.n_blocks = s.block_count;
  c.latency = s.latency;
  c.output.bos_token_id = tok.bos();
  c.output.eos_token_id = tok.eos();
  c.output.eos_at_length = s.eos_at_length;
  c.output.seed = s.seed;
  return engine::sim::make_sim_backend(c);
}

// --kv-transfer-fault corrupt:N | truncate:N, for the tests of a transfer gone wrong.
kv::transfer::TransferConfig::Fault parse_fault(const std::string& s) {
  using Fault = kv::transfer::TransferConfig::Fault;
  const auto colon = s.find(':');
  const std::string kind = s.substr(0, colon);
  Fault f;
  if (kind == "corrupt")
    f.kind = Fault::kCorrupt;
  else if (kind == "truncate")
    f.kind = Fault::kTruncate;
  else
    fail("--kv-transfer-fault must be corrupt:N or truncate:N, got '{}'", s);
  try {
    f.block = colon == std::string::npos ? 0 : std::stoi(s.substr(colon + 1));
  } catch (const std::exception&) {
    fail("--kv-transfer-fault must be corrupt:N or truncate:N, got '{}'", s);
  }
  return f;
}

void check_args(const ServeArgs& a) {
  if (!a.sim.enabled) {
    if (a.engine.model.empty()) fail("serve needs --model PATH (or --sim to serve a simulated model)");
    for (const CLI::Option* o : a.sim.options)
      if (o->count() > 0) fail("{} needs --sim", o->get_name());
  }
}

void run_serve(ServeArgs& a) {
  check_args(a);
  const bool sim = a.sim.enabled;
  // --sim without --model: a self-made vocab of --sim-vocab tokens stands in for the model file.
  const model::GgufFile file =
      a.engine.model.empty() ? open_synth_vocab(a.sim.vocab) : model::GgufFile::open(a.engine.model);
  const model::Tokenizer tok = model::Tokenizer::from_gguf(file);
  const model::ChatTemplate tmpl = load_chat_template(a.chat_template, file, tok);

  engine::BackendConfig bc = a.engine.resolve();
  bc.max_seqs = a.max_num_seqs;
  std::unique_ptr<engine::Backend> backend;
  std::string fingerprint;
  if (sim) {
    backend = make_sim(a, bc, tok);
    fingerprint = model::sim_kv_fingerprint(a.engine.model.empty() ? nullptr : &file, tok.size());
  } else {
    const model::LlamaConfig mc = model::LlamaConfig::from_gguf(file);
    const int32_t max_seq_len =
        bc.max_seq_len > 0 ? bc.max_seq_len : static_cast<int32_t>(std::min<int64_t>(mc.n_ctx_train, 4096));
    if (bc.kv.n_blocks == 0) bc.kv.n_blocks = default_kv_blocks(mc, bc, max_seq_len);
    backend = engine::cpu::make_cpu_backend(file, bc);
    fingerprint = model::kv_fingerprint(file);
  }

  server::ServeConfig sc = a.serve;
  sc.model_path = a.engine.model;
  if (sc.served_model_name.empty()) sc.served_model_name = sim ? SimArgs::kDefaultServedName : a.engine.model;
  if (sim && a.http_threads->count() == 0) sc.http.io_threads = SimArgs::kDefaultHttpThreads;
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
  std::unique_ptr<kv::transfer::TransferAgent> agent;  // outlives the engine: it serves its pulls
  if (!a.kv_transfer.secret.empty()) {
    using kv::transfer::TransferMode;
    const std::string& m = a.kv_transfer_mode;
    if (m != "tcp" && m != "shm" && m != "ucx" && m != "auto")
      fail("--kv-transfer must be tcp, shm, ucx or auto, got '{}'", m);
    const TransferMode mode = m == "tcp"   ? TransferMode::kTcp
                              : m == "shm" ? TransferMode::kShm
                              : m == "ucx" ? TransferMode::kUcx
                                           : TransferMode::kAuto;
    if (!(a.kv_transfer_timeout_s > 0)) fail("--kv-transfer-timeout must be positive");
    kv::transfer::TransferConfig tc = a.kv_transfer;
    if (tc.host.empty()) tc.host = sc.http.host;
    if (!a.kv_transfer_fault.empty()) tc.fault = parse_fault(a.kv_transfer_fault);
    tc.allowed_peers = kv::transfer::PeerFilter::parse(a.kv_transfer_allow);
    agent = std::make_unique<kv::transfer::TransferAgent>(tc, *backend->kv_region(), fingerprint, mode,
                                                          backend->kv_shared_arena());
    ec.kv_puller = agent.get();
    ec.kv_pins = agent.get();
    ec.kv_pin_timeout = std::chrono::milliseconds(static_cast<int64_t>(a.kv_transfer_timeout_s * 1000));
    const std::string& advertise =
        a.kv_transfer_advertise_host.empty() ? tc.host : a.kv_transfer_advertise_host;
    sc.kv_transfer = server::ServeConfig::KvTransferEndpoint{agent->engine_id(), advertise, agent->port()};
  }
  ec.scheduler.max_num_seqs = a.max_num_seqs;
  ec.scheduler.max_num_batched_tokens = bc.max_batch_tokens;
  ec.prefix_caching = !a.no_prefix_caching;
  ec.model_fingerprint = fingerprint;
  ec.is_eos = [&tok](int32_t id) { return tok.is_eog(id); };
  engine::Engine eng(*backend, ec, events.get());
  if (agent) agent->attach(eng);
  server::OpenAiServer srv(sc, eng, tok, tmpl);
  if (agent) agent->export_metrics(srv.metrics(), sc.served_model_name);
  srv.start();
  std::fprintf(stderr, "llmd serve: %s on http://%s:%u (%s)\n", sc.served_model_name.c_str(),
               sc.http.host.c_str(), srv.port(), backend->describe().c_str());
  if (sc.kv_transfer)
    std::fprintf(stderr, "llmd serve: KV transfers on %s:%u (tcp%s%s), pulls over %s, engine %s\n",
                 sc.kv_transfer->host.c_str(), sc.kv_transfer->port,
                 backend->kv_shared_arena() ? ", shm" : "", a.kv_transfer_mode == "ucx" ? ", ucx" : "",
                 a.kv_transfer_mode.c_str(), sc.kv_transfer->engine_id.c_str());
  std::fprintf(stderr,
               "try: curl http://%s:%u/v1/completions -H 'Content-Type: application/json' "
               "-d '{\"prompt\": \"Once upon a time\", \"max_tokens\": 32}'\n",
               sc.http.host.c_str(), srv.port());
  std::signal(SIGINT, [](int) { g_stop.release(); });
  std::signal(SIGTERM, [](int) { g_stop.release(); });
  g_stop.acquire();
  std::fprintf(stderr, "llmd serve: stopping (finishing requests in progress for up to %g s)\n",
               a.drain_timeout_s);
  srv.drain(std::chrono::milliseconds(static_cast<int64_t>(a.drain_timeout_s * 1000)));
}

}  // namespace

void register_serve(CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  a->serve.http.port = 8000;
  CLI::App* cmd = app.add_subcommand("serve", "Serve a model over the OpenAI API");
  a->engine.add_to(*cmd);
  // Required unless --sim; run_serve checks, so the error is one clear line.
  cmd->get_option("--model")->required(false);
  cmd->add_option("--host", a->serve.http.host, "Address to bind (default 127.0.0.1)");
  cmd->add_option("--port", a->serve.http.port, "Port (0: any free port)");
  cmd->add_option("--served-model-name", a->serve.served_model_name,
                  "Model name in the API (default: the path; sim-model with --sim)");
  cmd->add_option("--api-key", a->serve.api_key, "Require this Bearer key on /v1/*")->envname("LLMD_API_KEY");
  cmd->add_option("--chat-template", a->chat_template, "Chat template: a built-in name or a Jinja file");
  cmd->add_option("--role", a->serve.role, "prefill, decode or both (P/D disaggregation)");
  cmd->add_option("--drain-timeout", a->drain_timeout_s,
                  "On SIGTERM/SIGINT, seconds for requests in progress to finish before the server stops")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--max-num-seqs", a->max_num_seqs, "Sequences in one step")->check(CLI::PositiveNumber);
  cmd->add_flag("--no-enable-prefix-caching", a->no_prefix_caching, "Turn the prefix cache off");
  cmd->add_option("--kv-events-endpoint", a->kv_events_endpoint,
                  "Publish KV events (ZMQ PUB), e.g. tcp://127.0.0.1:5557");
  cmd->add_option("--kv-transfer-secret", a->kv_transfer.secret,
                  "P/D: serve and pull KV blocks, authenticated with this secret shared by the cluster")
      ->envname("LLMD_KV_TRANSFER_SECRET");
  cmd->add_option("--kv-transfer", a->kv_transfer_mode,
                  "P/D: how this server pulls blocks: tcp, shm (same host), ucx (UCX one-sided reads; the "
                  "server then offers ucx too) or auto (shm where the peer is on this host, else tcp)")
      ->capture_default_str();
  a->kv_transfer.host.clear();  // empty: --host
  cmd->add_option("--kv-transfer-host", a->kv_transfer.host,
                  "P/D: address the transfer listener binds (default --host)");
  cmd->add_option("--kv-transfer-port", a->kv_transfer.port, "P/D: its port (0: any free port)");
  cmd->add_option("--kv-transfer-advertise-host", a->kv_transfer_advertise_host,
                  "P/D: the address decode servers reach it at (default: the bind address)");
  cmd->add_option("--kv-transfer-timeout", a->kv_transfer_timeout_s,
                  "P/D: seconds a prefill leg's blocks wait for the decode server")
      ->capture_default_str();
  cmd->add_option(
      "--kv-transfer-allow", a->kv_transfer_allow,
      "P/D: the only peers the transfer listener lets in: addresses or CIDR prefixes, comma-separated "
      "(e.g. the cluster's pod network); empty: any peer that has the secret");
  cmd->add_option("--kv-transfer-fault", a->kv_transfer_fault)->group("");  // tests: a transfer gone wrong
  a->http_threads = cmd->add_option("--http-threads", a->serve.http.io_threads,
                                    "HTTP I/O threads (default 2; 1 with --sim)")
                        ->check(CLI::PositiveNumber);

  SimArgs& s = a->sim;
  cmd->add_flag(
      "--sim", s.enabled,
      "Simulate the forward pass (latency model, tokens copied from the prompt): no model file needed");
  auto sim_opt = [&](CLI::Option* o) { s.options.push_back(o); };
  sim_opt(cmd->add_option("--sim-prefill-ms-per-token", s.latency.prefill_ms_per_token,
                          "Sim: milliseconds per prefill token in a step")
              ->check(CLI::NonNegativeNumber)
              ->capture_default_str());
  sim_opt(cmd->add_option("--sim-decode-ms-per-step", s.latency.decode_ms_per_step,
                          "Sim: milliseconds of a decode step with one sequence")
              ->check(CLI::NonNegativeNumber)
              ->capture_default_str());
  sim_opt(cmd->add_option("--sim-decode-batch-growth", s.latency.decode_batch_growth,
                          "Sim: decode step time grows by this fraction per extra sequence")
              ->check(CLI::NonNegativeNumber)
              ->capture_default_str());
  sim_opt(
      cmd->add_option("--sim-base-step-ms", s.latency.base_step_ms, "Sim: fixed milliseconds of every step")
          ->check(CLI::NonNegativeNumber)
          ->capture_default_str());
  sim_opt(cmd->add_option("--sim-vocab", s.vocab, "Sim: vocabulary size without --model (a self-made vocab)")
              ->capture_default_str());
  sim_opt(
      cmd->add_option("--sim-block-count", s.block_count,
                      "Sim: KV cache blocks (0: --num-kv-blocks, else max-num-seqs full-length sequences)")
          ->check(CLI::NonNegativeNumber));
  sim_opt(cmd->add_option("--sim-max-model-len", s.max_model_len, "Sim: the model's context length")
              ->check(CLI::PositiveNumber)
              ->capture_default_str());
  sim_opt(cmd->add_option("--sim-seed", s.seed, "Sim: seed of which prompt tokens are copied"));
  sim_opt(cmd->add_option("--sim-eos-at-length", s.eos_at_length,
                          "Sim: emit EOS once prompt + output reach this many tokens (0: never)")
              ->check(CLI::NonNegativeNumber));
  cmd->callback([a] { run_serve(*a); });
}

}  // namespace llmd::cli
