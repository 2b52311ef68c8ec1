#pragma once
// The engine's flags, shared by every command that loads a model (generate, model bench, serve).
#include <CLI/CLI.hpp>
#include <string>

#include "engine/backend.hpp"

namespace llmd::cli {

struct EngineFlags {
  std::string model;
  engine::BackendConfig backend;
  std::string kv_dtype = "f16";

  void add_to(CLI::App& cmd);
  // Resolves the string flags into `backend`; throws llmd::Error on a bad value.
  engine::BackendConfig resolve() const;
};

}  // namespace llmd::cli
