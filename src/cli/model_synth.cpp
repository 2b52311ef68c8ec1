// `llmd model synth`: writes a llama-architecture GGUF with random weights at a real model's shape,
// for engine tests and side-by-side benchmarks against llama.cpp without shipping weights.
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.hpp"
#include "common/error.hpp"
#include "model/synth.hpp"

namespace llmd::cli {
namespace {

struct SynthArgs {
  std::string preset;
  std::string dtype = "f32";
  std::string out;
  std::string tokenizer_from;
  uint64_t seed = 0;
  unsigned threads = 0;
};

void run_synth(const SynthArgs& a) {
  // Arguments are checked here rather than with CLI11 validators so that every bad value gets the
  // same one-line "llmd: error: ..." as any other failure.
  const model::SynthPreset* preset = model::find_synth_preset(a.preset);
  if (!preset) fail("unknown preset '{}' (choose tiny, 160m, 1b, 8b)", a.preset);
  model::SynthOptions opt;
  opt.preset = *preset;
  opt.dtype = model::parse_synth_dtype(a.dtype);
  opt.out = a.out;
  opt.tokenizer_from = a.tokenizer_from;
  opt.seed = a.seed;
  opt.threads = a.threads;

  const auto t0 = std::chrono::steady_clock::now();
  const model::SynthSummary s = model::synthesize_model(opt);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf(
      "wrote %s: preset %s, %s weights, vocab %lld, %.1fM parameters, %llu tensors, %.1f MiB in %.1f s\n",
      a.out.c_str(), a.preset.c_str(), a.dtype.c_str(), static_cast<long long>(s.n_vocab),
      static_cast<double>(s.n_params) / 1e6, static_cast<unsigned long long>(s.n_tensors),
      static_cast<double>(s.file_bytes) / (1024.0 * 1024.0), secs);
}

}  // namespace

void register_model_synth(CLI::App& model) {
  auto args = std::make_shared<SynthArgs>();
  CLI::App* cmd =
      model.add_subcommand("synth", "Write a llama GGUF with seeded random weights at a real model's shape");
  cmd->add_option("--preset", args->preset,
                  "Model shape: tiny, 160m (llama-160m), 1b (TinyLlama 1.1B), 8b (Llama 3 8B)")
      ->required();
  cmd->add_option("--dtype", args->dtype, "Storage type of the matrices: f32, f16, bf16, q8_0, q4_0")
      ->capture_default_str();
  cmd->add_option("--out", args->out, "Output GGUF path (written atomically)")->required();
  cmd->add_option(
      "--tokenizer-from", args->tokenizer_from,
      "Copy tokenizer.* metadata (and the vocab size) from this GGUF instead of a self-made vocab");
  cmd->add_option("--seed", args->seed, "Random seed; the same seed gives the same file")
      ->capture_default_str();
  cmd->add_option("--threads", args->threads, "Generator threads (0: all); does not change the output")
      ->capture_default_str();
  cmd->callback([args] { run_synth(*args); });
}

}  // namespace llmd::cli
