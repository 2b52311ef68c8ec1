#include <cstdio>
#include <exception>

#include "cli/commands.hpp"
#include "common/error.hpp"

int main(int argc, char** argv) {
  CLI::App app{"llmd: distributed LLM inference"};
  app.require_subcommand(1);
  llmd::cli::register_generate(app);
  llmd::cli::register_serve(app);
  llmd::cli::register_bench(app);
  llmd::cli::register_route(app);
  llmd::cli::register_render(app);
  llmd::cli::register_up(app);
  CLI::App* model = app.add_subcommand("model", "Model tools: inspect, synth, bench");
  model->require_subcommand(1);
  llmd::cli::register_model_inspect(*model);
  llmd::cli::register_model_synth(*model);
  llmd::cli::register_model_bench(*model);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    // The process boundary: every failure is one line naming the problem.
    std::fprintf(stderr, "llmd: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
