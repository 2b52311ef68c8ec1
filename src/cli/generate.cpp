// `llmd generate`: one completion of one prompt, printed as it is generated (completion only).
#include <unistd.h>

#include <cstdio>
#include <memory>

#include "cli/commands.hpp"
#include "cli/engine_flags.hpp"
#include "engine/cpu/cpu_backend.hpp"
#include "engine/generator.hpp"
#include "model/gguf.hpp"
#include "model/tokenizer.hpp"

namespace llmd::cli {
namespace {

struct GenerateArgs {
  EngineFlags engine;
  std::string prompt;
  engine::GenerateOptions opt;
  int64_t seed = -1;
};

void run_generate(const GenerateArgs& a) {
  const model::GgufFile file = model::GgufFile::open(a.engine.model);
  const model::Tokenizer tok = model::Tokenizer::from_gguf(file);
  auto backend = engine::cpu::make_cpu_backend(file, a.engine.resolve());
  engine::Generator gen(*backend);

  engine::GenerateOptions opt = a.opt;
  if (a.seed >= 0) opt.sampling.seed = static_cast<uint64_t>(a.seed);
  const std::vector<int32_t> prompt = tok.encode(a.prompt, /*add_special=*/true);

  model::StreamDecoder out(tok);
  gen.generate(
      prompt, opt,
      [&](int32_t id) {
        const std::string text = out.push(id);
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
        return true;
      },
      [&](int32_t id) { return tok.is_eog(id); });
  const std::string rest = out.finish();
  std::fwrite(rest.data(), 1, rest.size(), stdout);
  if (isatty(STDOUT_FILENO)) std::fputc('\n', stdout);
  std::fflush(stdout);
}

}  // namespace

void register_generate(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  // Greedy by default, so a run is reproducible; --temperature turns sampling on.
  a->opt.sampling.temperature = 0.0f;
  CLI::App* cmd = app.add_subcommand("generate", "Generate a completion of a prompt");
  a->engine.add_to(*cmd);
  cmd->add_option("-p,--prompt", a->prompt, "Prompt text")->required();
  cmd->add_option("-n,--max-tokens", a->opt.max_tokens, "Tokens to generate")->check(CLI::PositiveNumber);
  auto& s = a->opt.sampling;
  cmd->add_option("--temperature", s.temperature, "Sampling temperature (0: greedy)");
  cmd->add_option("--top-k", s.top_k, "Top-k (0: off)");
  cmd->add_option("--top-p", s.top_p, "Top-p");
  cmd->add_option("--min-p", s.min_p, "Min-p");
  cmd->add_option("--repetition-penalty", s.repetition_penalty, "Repetition penalty (1: off)");
  cmd->add_option("--frequency-penalty", s.frequency_penalty, "Frequency penalty");
  cmd->add_option("--presence-penalty", s.presence_penalty, "Presence penalty");
  cmd->add_option("--seed", a->seed, "Random seed (same seed, same output)");
  cmd->add_flag("--ignore-eos", a->opt.ignore_eos, "Keep generating after end-of-sequence");
  cmd->callback([a] { run_generate(*a); });
}

}  // namespace llmd::cli
