// sharegpt FILE: real conversations (ShareGPT JSON). As vLLM's benchmark does: the first human
// turn is the prompt, the length of the gpt turn after it is max_tokens, the entries are shuffled
// by the seed and the first num_requests taken.
#include <nlohmann/json.hpp>

#include "bench/prompt_builder.hpp"
#include "bench/workload_file.hpp"
#include "bench/workload_kinds.hpp"
#include "common/error.hpp"

namespace llmd::bench {
namespace {

bool is_human(const std::string& from) {
  return from == "human" || from == "user";
}
bool is_gpt(const std::string& from) {
  return from == "gpt" || from == "chatgpt" || from == "assistant";
}

// The first human turn and the reply right after it, or nullopt.
std::optional<std::pair<std::string, std::string>> prompt_and_reply(const nlohmann::json& entry) {
  if (!entry.is_object()) return std::nullopt;
  const auto it = entry.find("conversations");
  if (it == entry.end() || !it->is_array()) return std::nullopt;
  const auto& turns = *it;
  for (size_t i = 0; i < turns.size(); ++i) {
    const auto& t = turns[i];
    if (!t.is_object() || !t.contains("from") || !t["from"].is_string() ||
        !is_human(t["from"].get<std::string>()))
      continue;
    if (i + 1 >= turns.size()) return std::nullopt;
    const auto& g = turns[i + 1];
    if (!t.contains("value") || !t["value"].is_string() || !g.is_object() || !g.contains("from") ||
        !g["from"].is_string() || !is_gpt(g["from"].get<std::string>()) || !g.contains("value") ||
        !g["value"].is_string())
      return std::nullopt;
    auto prompt = t["value"].get<std::string>();
    auto reply = g["value"].get<std::string>();
    if (prompt.empty() || reply.empty()) return std::nullopt;
    return std::pair{std::move(prompt), std::move(reply)};
  }
  return std::nullopt;
}

}  // namespace

std::unique_ptr<Workload> make_sharegpt_workload(const WorkloadOptions& opt, const WorkloadContext& ctx) {
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(read_workload_file(opt.file));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not ShareGPT JSON: {}", opt.file, e.what());
  }
  if (!doc.is_array()) fail("{}: not ShareGPT JSON: expected an array of conversations", opt.file);

  std::vector<std::pair<std::string, std::string>> usable;
  uint64_t skipped = 0;
  for (const auto& entry : doc) {
    if (auto pr = prompt_and_reply(entry))
      usable.push_back(std::move(*pr));
    else
      ++skipped;
  }
  if (usable.empty()) fail("{}: no usable conversations ({} skipped)", opt.file, skipped);

  Rng rng(derive_seed(ctx.seed, 6));
  for (size_t i = usable.size() - 1; i > 0; --i) std::swap(usable[i], usable[rng.below(i + 1)]);
  const size_t n = std::min<uint64_t>(usable.size(), opt.num_requests);

  const PromptBuilder pb(ctx.tokenizer);
  std::vector<BenchRequest> reqs(n);
  for (size_t i = 0; i < n; ++i) {
    BenchRequest& r = reqs[i];
    r.id = i;
    r.max_tokens = std::max(1, pb.count(usable[i].second));
    if (ctx.tokenizer) {
      r.prompt_tokens = ctx.tokenizer->encode(usable[i].first, /*add_special=*/false);
      r.prompt_len = static_cast<int32_t>(r.prompt_tokens.size());
    } else {
      r.prompt_len = estimate_tokens(usable[i].first);
    }
    r.prompt_text = std::move(usable[i].first);
  }
  return std::make_unique<PrebuiltWorkload>(
      std::move(reqs),
      fmt::format("sharegpt {}: {} requests of {} usable conversations ({} skipped){}", opt.file, n,
                  usable.size(), skipped, pb.has_tokenizer() ? "" : " (text, ~4 chars/token)"),
      skipped);
}

}  // namespace llmd::bench
