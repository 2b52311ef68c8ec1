// `llmd render SPEC --target kubernetes --out DIR`: an InferenceCluster spec as manifests.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "cli/commands.hpp"
#include "cluster/render_k8s.hpp"
#include "cluster/spec.hpp"
#include "common/error.hpp"

namespace llmd::cli {
namespace {

namespace fs = std::filesystem;

struct RenderArgs {
  static constexpr const char* kDefaultTarget = "kubernetes";
  std::string spec;
  std::string target = kDefaultTarget;
  std::string out;
};

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  f.close();
  if (!f) fail("{}: cannot write: {}", path.string(), std::strerror(errno));
}

void run_render(const RenderArgs& a) {
  if (a.target != RenderArgs::kDefaultTarget) fail("--target must be kubernetes (got '{}')", a.target);
  std::vector<cluster::RenderedFile> files;
  try {
    files = cluster::render_kubernetes(cluster::load_inference_cluster(a.spec));
  } catch (const Error& e) {
    // A bad spec is the user's to fix: one line naming the file and the field, no "error:" noise.
    std::fprintf(stderr, "llmd render: %s: %s\n", a.spec.c_str(), e.what());
    throw CLI::RuntimeError(1);
  }
  std::error_code ec;
  fs::create_directories(a.out, ec);
  if (ec) fail("{}: cannot create: {}", a.out, ec.message());
  for (const cluster::RenderedFile& f : files) write_file(fs::path(a.out) / f.name, f.text);
  std::printf("llmd render: %zu files in %s (kubectl apply -k %s)\n", files.size(), a.out.c_str(),
              a.out.c_str());
}

}  // namespace

void register_render(CLI::App& app) {
  auto a = std::make_shared<RenderArgs>();
  CLI::App* cmd = app.add_subcommand("render", "Render an InferenceCluster spec as deployment manifests");
  cmd->add_option("spec", a->spec, "InferenceCluster YAML file")->required();
  cmd->add_option("--target", a->target, "What to render for: kubernetes")->capture_default_str();
  cmd->add_option("--out", a->out, "Folder to write the manifests and kustomization.yaml into")->required();
  cmd->callback([a] { run_render(*a); });
}

}  // namespace llmd::cli
