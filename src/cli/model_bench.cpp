// `llmd model bench`: prefill and decode speed of the engine on one sequence, as llama-bench's
// pp/tg tests measure them (prefill: the whole prompt in one step; decode: one token per step).
#include <fmt/format.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "cli/engine_flags.hpp"
#include "common/error.hpp"
#include "engine/cpu/cpu_backend.hpp"
#include "engine/cpu/matmul.hpp"
#include "engine/generator.hpp"
#include "model/gguf.hpp"

namespace llmd::cli {
namespace {

struct BenchArgs {
  EngineFlags engine;
  int32_t prompt_tokens = 512;
  int32_t gen_tokens = 128;
  int32_t repetitions = 5;
  bool json = false;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void run_bench(const BenchArgs& a) {
  using clock = std::chrono::steady_clock;
  const model::GgufFile file = model::GgufFile::open(a.engine.model);
  engine::BackendConfig cfg = a.engine.resolve();
  cfg.max_batch_tokens = std::max(cfg.max_batch_tokens, a.prompt_tokens);
  if (cfg.max_seq_len == 0) cfg.max_seq_len = a.prompt_tokens + a.gen_tokens;
  auto backend = engine::cpu::make_cpu_backend(file, cfg);
  if (a.prompt_tokens + a.gen_tokens > backend->max_seq_len())
    fail("--prompt-tokens + --gen-tokens ({}) exceed --max-seq-len {}", a.prompt_tokens + a.gen_tokens,
         backend->max_seq_len());
  engine::Generator gen(*backend);

  // Ordinary (non-special) token ids spread over the vocabulary; the ids do not change the cost.
  const int64_t n_vocab = backend->config().n_vocab;
  std::vector<int32_t> prompt(a.prompt_tokens);
  for (int32_t i = 0; i < a.prompt_tokens; ++i)
    prompt[i] =
        static_cast<int32_t>(3 + (static_cast<int64_t>(i) * 7919) % std::max<int64_t>(1, n_vocab - 3));

  std::vector<double> pp, tg;
  for (int32_t rep = 0; rep <= a.repetitions; ++rep) {  // rep 0 warms caches and pages, not counted
    gen.reset();
    const auto t0 = clock::now();
    const float* logits = gen.feed(prompt);
    const auto t1 = clock::now();
    for (int32_t i = 0; i < a.gen_tokens; ++i) {
      const int32_t next = static_cast<int32_t>(std::max_element(logits, logits + n_vocab) - logits);
      const int32_t one[] = {next};
      logits = gen.feed(one);
    }
    const auto t2 = clock::now();
    if (rep == 0) continue;
    pp.push_back(a.prompt_tokens / std::chrono::duration<double>(t1 - t0).count());
    tg.push_back(a.gen_tokens / std::chrono::duration<double>(t2 - t1).count());
  }

  const double prefill = median(pp), decode = median(tg);
  if (a.json) {
    nlohmann::json j = {{"model", a.engine.model},
                        {"backend", backend->describe()},
                        {"isa", engine::cpu::isa_name(engine::cpu::detect_isa())},
                        {"threads", cfg.threads},
                        {"prompt_tokens", a.prompt_tokens},
                        {"gen_tokens", a.gen_tokens},
                        {"repetitions", a.repetitions},
                        {"prefill_tok_s", prefill},
                        {"decode_tok_s", decode},
                        {"prefill_tok_s_runs", pp},
                        {"decode_tok_s_runs", tg}};
    std::puts(j.dump().c_str());
  } else {
    std::printf("%s\n%s\nprefill %d tokens: %.1f tok/s\ndecode  %d tokens: %.1f tok/s\n",
                a.engine.model.c_str(), backend->describe().c_str(), a.prompt_tokens, prefill, a.gen_tokens,
                decode);
  }
}

}  // namespace

void register_model_bench(CLI::App& model) {
  auto a = std::make_shared<BenchArgs>();
  CLI::App* cmd = model.add_subcommand("bench", "Measure prefill and decode speed");
  a->engine.add_to(*cmd);
  cmd->add_option("--prompt-tokens", a->prompt_tokens, "Prompt length")->check(CLI::PositiveNumber);
  cmd->add_option("--gen-tokens", a->gen_tokens, "Tokens to decode")->check(CLI::PositiveNumber);
  cmd->add_option("-r,--repetitions", a->repetitions, "Measured runs (median reported)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--json", a->json, "Print one JSON object");
  cmd->callback([a] { run_bench(*a); });
}

}  // namespace llmd::cli
