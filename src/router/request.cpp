#include "router/request.hpp"

#include "common/error.hpp"
#include "model/chat_template.hpp"
#include "model/tokenizer.hpp"

namespace llmd::router {
namespace {

// llm-d's estimate where there is no tokenizer: four characters per token.
constexpr int64_t kCharsPerToken = 4;

void key_tokens(const PromptKeyer& k, std::span<const int32_t> tokens, std::string_view salt,
                SchedRequest& out) {
  const std::size_t max_tokens =
      static_cast<std::size_t>(k.max_blocks) * static_cast<std::size_t>(k.block_size);
  thread_local std::vector<BlockHash> hashes;
  hash_blocks(root_hash(k.fingerprint, salt), tokens.first(std::min(tokens.size(), max_tokens)), k.block_size,
              hashes);
  out.block_keys.clear();
  for (const BlockHash& h : hashes) out.block_keys.push_back(h.lo);
  out.exact_keys = true;
  out.prompt_tokens = static_cast<int64_t>(tokens.size());
}

// Blocks of block_size × 4 characters, chained like token blocks (the bytes in 4-byte groups).
void key_text(const PromptKeyer& k, std::string_view text, std::string_view salt, SchedRequest& out) {
  const std::size_t chars = static_cast<std::size_t>(k.block_size) * kCharsPerToken;
  BlockHash h = root_hash(k.fingerprint, salt);
  out.block_keys.clear();
  for (std::size_t pos = 0;
       pos + chars <= text.size() && out.block_keys.size() < static_cast<std::size_t>(k.max_blocks);
       pos += chars) {
    h = block_hash(h, {}, std::span(reinterpret_cast<const uint8_t*>(text.data() + pos), chars));
    out.block_keys.push_back(h.lo);
  }
  out.exact_keys = false;
  out.prompt_tokens = static_cast<int64_t>(text.size()) / kCharsPerToken;
}

}  // namespace

void PromptKeyer::key(const nlohmann::json& body, bool chat, SchedRequest& out) const {
  out.block_size = block_size;
  const std::string salt = body.contains("cache_salt") && body["cache_salt"].is_string()
                               ? body["cache_salt"].get<std::string>()
                               : "";
  if (body.contains("model") && body["model"].is_string()) out.model = body["model"].get<std::string>();
  if (chat) {
    const auto it = body.find("messages");
    if (it == body.end() || !it->is_array() || it->empty()) fail("'messages' must be a non-empty array");
    if (tokenizer && chat_template) {
      const bool gen = !body.contains("add_generation_prompt") || body.value("add_generation_prompt", true);
      nlohmann::json extra = body.contains("chat_template_kwargs") && body["chat_template_kwargs"].is_object()
                                 ? body["chat_template_kwargs"]
                                 : nlohmann::json::object();
      if (body.contains("tools") && !body["tools"].is_null()) extra["tools"] = body["tools"];
      const std::string text = chat_template->render(*it, gen, extra);
      key_tokens(*this, tokenizer->encode(text, false, true), salt, out);
    } else {
      key_text(*this, it->dump(), salt, out);  // llm-d hashes the JSON of the messages
    }
    return;
  }
  const auto it = body.find("prompt");
  if (it == body.end()) fail("'prompt' is required");
  if (it->is_string()) {
    const std::string& text = it->get_ref<const std::string&>();
    if (tokenizer)
      key_tokens(*this, tokenizer->encode(text, true), salt, out);
    else
      key_text(*this, text, salt, out);
  } else if (it->is_array() && !it->empty() && it->front().is_number_integer()) {
    thread_local std::vector<int32_t> ids;
    ids.clear();
    for (const auto& t : *it) {
      if (!t.is_number_integer()) fail("'prompt' token ids must be integers");
      ids.push_back(t.get<int32_t>());
    }
    key_tokens(*this, ids, salt, out);
  } else {
    fail("'prompt' must be a string or an array of token ids");
  }
}

}  // namespace llmd::router
