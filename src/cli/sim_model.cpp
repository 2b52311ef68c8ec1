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
  const model::SynthVocab v = model::make_synth_vocab(n_vocab);  // throws for a too small n
  model::GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_string("general.name", "llmd-sim");
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_string_array("tokenizer.ggml.tokens", v.tokens);
  w.set_float32_array("tokenizer.ggml.scores", v.scores);
  w.set_int32_array("tokenizer.ggml.token_type", v.types);
  w.set_uint32("tokenizer.ggml.bos_token_id", 1);
  w.set_uint32("tokenizer.ggml.eos_token_id", 2);
  w.set_uint32("tokenizer.ggml.unknown_token_id", 0);
  w.set_bool("tokenizer.ggml.add_bos_token", true);
  w.set_bool("tokenizer.ggml.add_eos_token", false);

  const PrivateTempDir dir;
  const std::string path = (dir.path() / "vocab.gguf").string();
  w.write(path);
  model::GgufFile f = model::GgufFile::open(path);
  return f;  // ~PrivateTempDir unlinks the file; the mapping stays valid until f is destroyed
}

}  // namespace llmd::cli
