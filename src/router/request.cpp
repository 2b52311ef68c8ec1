#include "router/request.hpp"

#include <limits>

#include <simdjson.h>
#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "model/chat_template.hpp"
#include "model/tokenizer.hpp"

namespace llmd::router {
namespace {

namespace sj = simdjson;

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

// One parser per thread: its buffers grow to the largest body seen and are then reused, so keying
// a request allocates nothing here. simdjson validates all of the body (grammar and UTF-8), as
// nlohmann's DOM did, at a fraction of the cost: that parse was a fifth of the router's
// instructions per proxied request. The element lives until this thread's next parse.
sj::dom::element parse_body(std::string_view body) {
  thread_local sj::dom::parser parser;
  sj::dom::element doc;
  if (const auto err = parser.parse(body.data(), body.size()).get(doc))
    fail("the body is not valid JSON: {}", sj::error_message(err));
  if (!doc.is_object()) fail("the body must be a JSON object");
  return doc;
}

std::string_view string_field(sj::dom::object body, std::string_view name) {
  std::string_view v;
  return body[name].get(v) ? std::string_view{} : v;  // absent or not a string: empty
}

}  // namespace

void PromptKeyer::key(std::string_view body_text, bool chat, SchedRequest& out) const {
  const sj::dom::object body = parse_body(body_text).get_object().value_unsafe();
  out.block_size = block_size;
  out.model = string_field(body, "model");
  const std::string_view salt = string_field(body, "cache_salt");
  if (chat) {
    sj::dom::array messages;
    if (body["messages"].get(messages) || messages.size() == 0) fail("'messages' must be a non-empty array");
    if (tokenizer && chat_template) {
      // Rendering needs the template engine's JSON; the tokenizer's cost dwarfs a second parse.
      const nlohmann::json j = nlohmann::json::parse(body_text);
      const bool gen = j.value("add_generation_prompt", true);
      nlohmann::json extra = j.contains("chat_template_kwargs") && j["chat_template_kwargs"].is_object()
                                 ? j["chat_template_kwargs"]
                                 : nlohmann::json::object();
      if (j.contains("tools") && !j["tools"].is_null()) extra["tools"] = j["tools"];
      const std::string text = chat_template->render(j["messages"], gen, extra);
      key_tokens(*this, tokenizer->encode(text, false, true), salt, out);
    } else {
      key_text(*this, sj::minify(messages), salt, out);  // llm-d hashes the JSON of the messages
    }
    return;
  }
  sj::dom::element prompt;
  if (body["prompt"].get(prompt)) fail("'prompt' is required");
  std::string_view text;
  sj::dom::array list;
  if (!prompt.get(text)) {
    if (tokenizer)
      key_tokens(*this, tokenizer->encode(text, true), salt, out);
    else
      key_text(*this, text, salt, out);
  } else if (!prompt.get(list) && list.size() > 0 && list.at(0).is_int64()) {
    thread_local std::vector<int32_t> ids;
    ids.clear();
    for (const sj::dom::element t : list) {
      int64_t id = 0;
      if (t.get(id)) fail("'prompt' token ids must be integers");
      if (id < 0 || id > std::numeric_limits<int32_t>::max())
        fail("'prompt' token id {} is out of range", id);
      ids.push_back(static_cast<int32_t>(id));
    }
    key_tokens(*this, ids, salt, out);
  } else {
    fail("'prompt' must be a string or an array of token ids");
  }
}

}  // namespace llmd::router
