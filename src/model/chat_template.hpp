#pragma once
// Chat templates for /v1/chat/completions: the model's own Jinja template (GGUF
// tokenizer.chat_template) run by a Jinja2-compatible interpreter with Hugging Face's settings
// (trim_blocks, lstrip_blocks, loop controls, tojson, raise_exception, strftime_now), so a prompt
// is byte-identical to what transformers and vLLM build. Loading is the control path and throws
// llmd::Error; a ChatTemplate is immutable, cheap to copy and safe to render from many threads.
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/jinja_eval.hpp"

namespace llmd::model {

class GgufFile;

struct ChatTemplateOptions {
  std::string bos_token, eos_token;  // from the tokenizer's BOS/EOS texts
  // strftime_now()'s clock in seconds since the epoch (local time, as Python's datetime.now());
  // unset: the time of each render. Tests pin it.
  std::optional<int64_t> now;
  // Templates come from model files: every render is bounded (see jinja_eval.hpp).
  jinja::RenderLimits limits;
};

class ChatTemplate {
 public:
  // Throws llmd::Error with line and column on a syntax error.
  static ChatTemplate from_source(std::string source, ChatTemplateOptions opt);
  // "chatml", "llama2", "llama3", "mistral", "gemma", "phi3", "zephyr"; throws for other names,
  // listing these.
  static ChatTemplate builtin(std::string_view name, ChatTemplateOptions opt);
  static std::vector<std::string_view> builtin_names();
  // The GGUF's tokenizer.chat_template when present, else ChatML (llama.cpp server's fallback).
  static ChatTemplate from_gguf(const GgufFile& f, ChatTemplateOptions opt);

  // messages: the OpenAI request's array ({role, content} where content is a string, null or an
  // array of {type:"text", text} parts; tool_calls etc. passed through as data, a tool call's
  // JSON-string `arguments` parsed to an object as vLLM does). extra: an object of more template
  // variables (tools, documents, enable_thinking and other chat_template_kwargs); `tools` and
  // `documents` are none unless given, as in transformers. Throws llmd::Error (a 400) for
  // malformed messages or when the template fails; raise_exception's message is kept verbatim.
  // Use the ordered_json overload to keep the request's key order in tojson output.
  std::string render(const nlohmann::json& messages, bool add_generation_prompt,
                     const nlohmann::json& extra = {}) const;
  std::string render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                     const nlohmann::ordered_json& extra = {}) const;

  const std::string& source() const;
  // Whether the template iterates a message's content itself (vLLM's "openai" content format):
  // then content-part arrays are passed through; otherwise their texts are joined with "\n".
  bool takes_content_parts() const;

 private:
  struct Impl;
  explicit ChatTemplate(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

}  // namespace llmd::model
