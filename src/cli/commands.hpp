#pragma once
// Each subcommand lives in its own file and registers itself on the root app.
#include <CLI/CLI.hpp>

namespace llmd::cli {

void register_generate(CLI::App& app);
void register_serve(CLI::App& app);
void register_bench(CLI::App& app);
void register_route(CLI::App& app);
void register_render(CLI::App& app);
void register_up(CLI::App& app);
void register_model_inspect(CLI::App& model);
void register_model_synth(CLI::App& model);
void register_model_bench(CLI::App& model);

}  // namespace llmd::cli
