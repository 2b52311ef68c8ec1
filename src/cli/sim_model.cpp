#include "cli/sim_model.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "common/error.hpp"
#include "model/gguf_writer.hpp"
#include "model/synth.hpp"

namespace llmd::cli {
namespace {

namespace fs = std::filesystem;

// A directory only this process can use (mkdtemp: mode 0700, a fresh name), removed with whatever
// is in it when the scope ends, on success and on failure alike. The writer's own temporary
// (PATH.tmp.PID, renamed over PATH) is then created inside it too, never in the shared $TMPDIR.
class PrivateTempDir {
 public:
  PrivateTempDir() {
    std::error_code ec;
    fs::path base = fs::temp_directory_path(ec);  // $TMPDIR, else /tmp
    if (ec) base = "/tmp";
    std::string tmpl = (base / "llmd-sim-XXXXXX").string();
    if (!mkdtemp(tmpl.data()))
      fail("{}: cannot create a temporary directory: {}", tmpl, std::strerror(errno));
    path_ = tmpl;
  }
  ~PrivateTempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  PrivateTempDir(const PrivateTempDir&) = delete;
  PrivateTempDir& operator=(const PrivateTempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

}  // namespace

model::GgufFile open_synth_vocab(int64_t n_vocab) {
  model::GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_string("general.name", "llmd-sim");
  model::set_synth_tokenizer(w, n_vocab);  // throws for a too small n

  const PrivateTempDir dir;
  const std::string path = (dir.path() / "vocab.gguf").string();
  w.write(path);
  model::GgufFile f = model::GgufFile::open(path);
  return f;  // ~PrivateTempDir unlinks the file; the mapping stays valid until f is destroyed
}

}  // namespace llmd::cli
