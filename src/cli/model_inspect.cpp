// `llmd model inspect M`: what a GGUF holds, for people (text) and for scripts (--json).
// Both outputs are rendered from one JSON object, so they always carry the same facts.
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "common/error.hpp"
#include "model/gguf.hpp"
#include "model/llama_config.hpp"

namespace llmd::cli {
namespace {

using model::GgufFile;
using model::GgufType;
using model::GgufValue;
// Insertion order, so the text and JSON read top-down in a sensible order rather than sorted.
using json = nlohmann::ordered_json;

struct InspectArgs {
  std::string path;
  bool json = false;
  bool tensors = false;
};

// Arrays longer than this are summarized: a raw hyper-parameter array is per layer (short), a
// long one is data (a vocabulary) that would drown the summary.
constexpr size_t kMaxListedArray = 256;

constexpr double kMiB = 1024.0 * 1024.0;

// A float widened to double prints as 9.999999747378752e-06; going through the float's shortest
// spelling keeps the 1e-05 the file's author wrote.
double widen(float f) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf - 1, f);
  *r.ptr = '\0';
  return std::strtod(buf, nullptr);
}

json value_to_json(const GgufValue& v) {
  if (const auto* a = v.as_array()) {
    if (a->items.size() > kMaxListedArray)
      return {{"array_of", model::gguf_type_name(a->elem_type)}, {"length", a->items.size()}};
    json out = json::array();
    for (const auto& item : a->items) out.push_back(value_to_json(item));
    return out;
  }
  if (const auto* s = v.as_string()) return *s;
  if (v.type == GgufType::BOOL) return *v.as_bool();
  if (v.type == GgufType::FLOAT32) return widen(static_cast<float>(*v.as_float()));
  if (v.type == GgufType::FLOAT64) return *v.as_float();
  if (const auto* u = std::get_if<uint64_t>(&v.v)) return *u;
  if (const auto* i = std::get_if<int64_t>(&v.v)) return *i;
  return nullptr;
}

// Metadata read leniently: inspect shows a file whose optional keys have odd types instead of
// failing on them.
std::optional<int64_t> meta_int(const GgufFile& f, std::string_view key) {
  const GgufValue* v = f.find(key);
  return v ? v->as_int() : std::nullopt;
}
const std::string* meta_string(const GgufFile& f, std::string_view key) {
  const GgufValue* v = f.find(key);
  return v ? v->as_string() : nullptr;
}
const model::GgufArray* meta_array(const GgufFile& f, std::string_view key) {
  const GgufValue* v = f.find(key);
  return v ? v->as_array() : nullptr;
}
json or_null(const std::string* s) {
  return s ? json(*s) : json(nullptr);
}

json file_facts(const GgufFile& f) {
  return {{"path", f.path()},
          {"gguf_version", f.version()},
          {"size_bytes", f.file_size()},
          {"alignment", f.alignment()},
          {"tensor_count", f.tensors().size()},
          {"metadata_count", f.metadata().size()},
          {"data_offset", f.data_offset()}};
}

// Hyper-parameters as the engine will use them when the architecture is supported; otherwise
// (or when the supported reader rejects the file) the raw `<arch>.*` keys and the reason.
void add_hparams(const GgufFile& f, json& out) {
  const std::string* arch = meta_string(f, "general.architecture");
  out["architecture"] = or_null(arch);
  out["name"] = or_null(meta_string(f, "general.name"));
  try {
    const auto c = model::LlamaConfig::from_gguf(f);
    out["hparams_source"] = "llama_config";
    out["hparams"] = {{"n_vocab", c.n_vocab},
                      {"n_ctx_train", c.n_ctx_train},
                      {"n_embd", c.n_embd},
                      {"n_layer", c.n_layer},
                      {"n_ff", c.n_ff},
                      {"n_head", c.n_head},
                      {"n_head_kv", c.n_head_kv},
                      {"head_dim", c.head_dim},
                      {"n_rot", c.n_rot},
                      {"rms_eps", widen(c.rms_eps)},
                      {"rope_base", widen(c.rope_base)},
                      {"rope_scale", widen(c.rope_scale)},
                      {"rope_layout", c.rope_layout == model::RopeLayout::kNeox ? "neox" : "normal"},
                      {"tied_output", c.tied_output},
                      {"has_rope_freqs", c.has_rope_freqs}};
  } catch (const Error& e) {
    out["hparams_source"] = "metadata";
    out["hparams_note"] = e.what();
    json raw = json::object();
    if (arch) {
      const std::string prefix = *arch + ".";
      for (const auto& [key, value] : f.metadata())
        if (key.starts_with(prefix)) raw[key] = value_to_json(value);
    }
    out["hparams"] = std::move(raw);
  }
}

json tensor_type_facts(const GgufFile& f, uint64_t& n_params) {
  json types = json::object();
  n_params = 0;
  for (const auto& t : f.tensors()) {
    n_params += t.n_elements;
    json& e = types[std::string(model::ggml_type_name(t.type))];
    if (e.is_null()) e = {{"count", 0}, {"bytes", uint64_t{0}}};
    e["count"] = e["count"].get<uint64_t>() + 1;
    e["bytes"] = e["bytes"].get<uint64_t>() + t.n_bytes;
  }
  for (auto& [name, e] : types.items()) e["mib"] = static_cast<double>(e["bytes"].get<uint64_t>()) / kMiB;
  return types;
}

json tokenizer_facts(const GgufFile& f) {
  const model::GgufArray* tokens = meta_array(f, "tokenizer.ggml.tokens");
  auto token_text = [&](std::optional<int64_t> id) -> json {
    if (!id || !tokens || *id < 0 || static_cast<uint64_t>(*id) >= tokens->items.size()) return nullptr;
    return or_null(tokens->items[static_cast<size_t>(*id)].as_string());
  };
  auto opt = [](const auto& o) { return o ? json(*o) : json(nullptr); };
  json t = {{"model", or_null(meta_string(f, "tokenizer.ggml.model"))},
            {"pre", or_null(meta_string(f, "tokenizer.ggml.pre"))},
            {"vocab_size", tokens ? json(tokens->items.size()) : json(nullptr)}};
  for (const auto& [name, key] : {std::pair{"bos", "tokenizer.ggml.bos_token_id"},
                                  {"eos", "tokenizer.ggml.eos_token_id"},
                                  {"unk", "tokenizer.ggml.unknown_token_id"},
                                  {"pad", "tokenizer.ggml.padding_token_id"}}) {
    auto id = meta_int(f, key);
    // Converters write "no such token" as -1 into a uint32 key (llama.cpp's LLAMA_TOKEN_NULL).
    if (id && (*id < 0 || *id == 0xFFFFFFFF)) id.reset();
    t[std::string(name) + "_id"] = opt(id);
    t[std::string(name) + "_token"] = token_text(id);
  }
  auto flag = [&](std::string_view key) {
    const GgufValue* v = f.find(key);
    return v ? opt(v->as_bool()) : json(nullptr);
  };
  t["add_bos"] = flag("tokenizer.ggml.add_bos_token");
  t["add_eos"] = flag("tokenizer.ggml.add_eos_token");
  const model::GgufArray* merges = meta_array(f, "tokenizer.ggml.merges");
  t["merges"] = merges ? merges->items.size() : 0;
  t["has_chat_template"] = f.find("tokenizer.chat_template") != nullptr;
  return t;
}

json tensor_list(const GgufFile& f) {
  json list = json::array();
  for (const auto& t : f.tensors())
    list.push_back({{"name", t.name},
                    {"type", model::ggml_type_name(t.type)},
                    {"dims", t.dims},
                    {"bytes", t.n_bytes},
                    {"offset", t.offset}});
  return list;
}

json inspect(const GgufFile& f, bool with_tensors) {
  json j;
  j["file"] = file_facts(f);
  add_hparams(f, j);
  uint64_t n_params = 0;
  j["tensor_types"] = tensor_type_facts(f, n_params);
  j["parameters"] = n_params;
  j["tokenizer"] = tokenizer_facts(f);
  if (with_tensors) j["tensors"] = tensor_list(f);
  return j;
}

// --- text rendering ---------------------------------------------------------------------------

// Token strings and metadata can hold control characters or invalid UTF-8: print them as JSON
// string literals with bad bytes replaced, never raw.
std::string dump(const json& v) {
  return v.dump(-1, ' ', false, json::error_handler_t::replace);
}
std::string text(const json& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  return dump(v);
}

std::string human_count(uint64_t n) {
  if (n >= 1'000'000'000) return fmt::format("{:.2f}B", static_cast<double>(n) / 1e9);
  if (n >= 1'000'000) return fmt::format("{:.2f}M", static_cast<double>(n) / 1e6);
  if (n >= 1'000) return fmt::format("{:.1f}K", static_cast<double>(n) / 1e3);
  return std::to_string(n);
}

void row(std::string_view label, const std::string& value, size_t width = 18) {
  fmt::print("  {:<{}} {}\n", label, width, value);
}

void print_text(const json& j) {
  const json& file = j["file"];
  fmt::print("file\n");
  row("path", text(file["path"]));
  row("gguf version", text(file["gguf_version"]));
  const auto size = file["size_bytes"].get<uint64_t>();
  row("size", fmt::format("{} bytes ({:.2f} MiB)", size, static_cast<double>(size) / kMiB));
  row("alignment", text(file["alignment"]));
  row("tensors", text(file["tensor_count"]));
  row("metadata keys", text(file["metadata_count"]));
  row("data offset", text(file["data_offset"]));

  fmt::print("\nmodel\n");
  row("architecture", text(j["architecture"]));
  if (!j["name"].is_null()) row("name", text(j["name"]));
  const auto n_params = j["parameters"].get<uint64_t>();
  row("parameters", fmt::format("{} ({})", human_count(n_params), n_params));
  if (j["hparams_source"] == "llama_config") {
    fmt::print("\nhyper-parameters\n");
  } else {
    fmt::print("\nhyper-parameters (raw metadata: {})\n", text(j["hparams_note"]));
    if (j["hparams"].empty()) fmt::print("  (none)\n");
  }
  size_t width = 18;  // raw keys ("llama.attention.layer_norm_rms_epsilon") can be much longer
  for (const auto& [key, value] : j["hparams"].items()) width = std::max(width, key.size());
  for (const auto& [key, value] : j["hparams"].items()) row(key, text(value), width);

  fmt::print("\ntensor types\n");
  std::vector<std::pair<std::string, json>> types;
  for (const auto& [name, e] : j["tensor_types"].items()) types.emplace_back(name, e);
  std::ranges::sort(types,
                    [](const auto& a, const auto& b) { return a.second["bytes"] > b.second["bytes"]; });
  if (types.empty()) fmt::print("  (none)\n");
  for (const auto& [name, e] : types)
    fmt::print("  {:<8} {:>6} tensors {:>12.2f} MiB\n", name, e["count"].get<uint64_t>(),
               e["mib"].get<double>());

  const json& t = j["tokenizer"];
  fmt::print("\ntokenizer\n");
  row("model", text(t["model"]));
  row("pre", text(t["pre"]));
  row("vocab size", text(t["vocab_size"]));
  for (const char* name : {"bos", "eos", "unk", "pad"}) {
    const json& id = t[std::string(name) + "_id"];
    const json& tok = t[std::string(name) + "_token"];
    row(name, id.is_null() ? "-" : tok.is_null() ? text(id) : fmt::format("{} {}", text(id), dump(tok)));
  }
  row("add bos", text(t["add_bos"]));
  row("add eos", text(t["add_eos"]));
  row("merges", text(t["merges"]));
  row("chat template", text(t["has_chat_template"]));

  if (j.contains("tensors")) {
    fmt::print("\ntensors\n");
    size_t width = 4;
    for (const auto& e : j["tensors"])
      width = std::max(width, e["name"].get_ref<const std::string&>().size());
    fmt::print("  {:<{}}  {:<8} {:<24} {:>14}\n", "name", width, "type", "dims", "bytes");
    for (const auto& e : j["tensors"]) {
      std::string dims;
      for (const auto& d : e["dims"]) dims += (dims.empty() ? "" : " x ") + dump(d);
      fmt::print("  {:<{}}  {:<8} {:<24} {:>14}\n", e["name"].get_ref<const std::string&>(), width,
                 e["type"].get_ref<const std::string&>(), dims, e["bytes"].get<uint64_t>());
    }
  }
}

void run_inspect(const InspectArgs& a) {
  // A bad path or file throws llmd::Error("PATH: ..."), which main prints as one line.
  const GgufFile f = GgufFile::open(a.path);
  const json j = inspect(f, a.tensors);
  if (a.json) {
    fmt::print("{}\n", j.dump(2, ' ', false, json::error_handler_t::replace));
  } else {
    print_text(j);
  }
}

}  // namespace

void register_model_inspect(CLI::App& model) {
  auto args = std::make_shared<InspectArgs>();
  CLI::App* cmd =
      model.add_subcommand("inspect", "Summarize a GGUF: file, hyper-parameters, tensor types, tokenizer");
  // No CLI11 file validator: a missing file should fail like any other bad file, with one
  // "llmd: error: PATH: ..." line.
  cmd->add_option("model", args->path, "GGUF file")->required();
  cmd->add_flag("--json", args->json, "Print one JSON object instead of text");
  cmd->add_flag("--tensors", args->tensors, "Also list every tensor (name, type, dims, bytes)");
  cmd->callback([args] { run_inspect(*args); });
}

}  // namespace llmd::cli
