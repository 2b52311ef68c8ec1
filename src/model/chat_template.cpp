#include "model/chat_template.hpp"

#include <fmt/ranges.h>

#include <algorithm>
#include <ctime>
#include <functional>

#include "common/error.hpp"
#include "model/gguf.hpp"
#include "model/jinja_parser.hpp"

namespace llmd::model {

using nlohmann::ordered_json;

namespace {

struct Builtin {
  std::string_view name;
  std::string_view source;
};

// Reference templates of common families (the models' published Hugging Face templates, with a
// system message folded into the first user turn where the family has no system role).
constexpr Builtin kBuiltins[] = {
    {"chatml", R"J({%- for message in messages %}
{{- '<|im_start|>' + message['role'] + '\n' + (message['content'] if message['content'] is string else '') + '<|im_end|>\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|im_start|>assistant\n' }}
{%- endif %})J"},
    {"llama2", R"J({%- if messages[0]['role'] == 'system' %}
{%- set loop_messages = messages[1:] %}{%- set system_message = messages[0]['content'] %}
{%- else %}
{%- set loop_messages = messages %}{%- set system_message = false %}
{%- endif %}
{%- for message in loop_messages %}
{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
{{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
{%- endif %}
{%- if loop.index0 == 0 and system_message != false %}
{%- set content = '<<SYS>>\n' + system_message + '\n<</SYS>>\n\n' + message['content'] %}
{%- else %}
{%- set content = message['content'] %}
{%- endif %}
{%- if message['role'] == 'user' %}
{{- bos_token + '[INST] ' + content.strip() + ' [/INST]' }}
{%- elif message['role'] == 'assistant' %}
{{- ' ' + content.strip() + ' ' + eos_token }}
{%- endif %}
{%- endfor %})J"},
    {"llama3", R"J({{- bos_token }}
{%- for message in messages %}
{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %})J"},
    {"mistral", R"J({%- if messages[0]['role'] == 'system' %}
{%- set system_message = messages[0]['content'] %}{%- set loop_messages = messages[1:] %}
{%- else %}
{%- set loop_messages = messages %}
{%- endif %}
{{- bos_token }}
{%- for message in loop_messages %}
{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
{{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
{%- endif %}
{%- if message['role'] == 'user' %}
{%- if loop.first and system_message is defined %}
{{- '[INST] ' + system_message + '\n\n' + message['content'] + ' [/INST]' }}
{%- else %}
{{- '[INST] ' + message['content'] + ' [/INST]' }}
{%- endif %}
{%- elif message['role'] == 'assistant' %}
{{- message['content'] + eos_token }}
{%- else %}
{{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}
{%- endif %}
{%- endfor %})J"},
    {"gemma", R"J({{- bos_token }}
{%- if messages[0]['role'] == 'system' %}
{%- set first_user_prefix = messages[0]['content'] + '\n\n' %}{%- set loop_messages = messages[1:] %}
{%- else %}
{%- set first_user_prefix = '' %}{%- set loop_messages = messages %}
{%- endif %}
{%- for message in loop_messages %}
{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
{{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
{%- endif %}
{%- set role = 'model' if message['role'] == 'assistant' else message['role'] %}
{{- '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') + message['content'] | trim + '<end_of_turn>\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<start_of_turn>model\n' }}
{%- endif %})J"},
    {"phi3", R"J({%- for message in messages %}
{{- '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|assistant|>\n' }}
{%- else %}
{{- eos_token }}
{%- endif %})J"},
    {"zephyr", R"J({%- for message in messages %}
{{- '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|assistant|>\n' }}
{%- endif %})J"},
};

// vLLM's content-format detection, simplified: does some for-loop iterate a `content` field?
bool iterates_content(const jinja::Body& body) {
  using jinja::Expr;
  std::function<bool(const Expr&)> is_content = [&](const Expr& e) {
    if (e.kind == Expr::Kind::Attr) return e.name == "content";
    if (e.kind == Expr::Kind::Item)
      return e.args[1]->kind == Expr::Kind::Literal && e.args[1]->value.is_string() &&
             e.args[1]->value.str() == "content";
    if (e.kind == Expr::Kind::Filter || e.kind == Expr::Kind::Call)
      return e.args[0] && is_content(*e.args[0]);
    return false;
  };
  for (const auto& s : body) {
    if (s->kind == jinja::Stmt::Kind::For && is_content(*s->expr)) return true;
    for (const auto& b : s->bodies)
      if (iterates_content(b)) return true;
  }
  return false;
}

// OpenAI messages -> what chat templates expect (see render()'s contract).
ordered_json normalize_messages(const ordered_json& messages, bool keep_parts) {
  if (!messages.is_array()) fail("'messages' must be an array");
  ordered_json out = ordered_json::array();
  for (size_t i = 0; i < messages.size(); ++i) {
    ordered_json m = messages[i];
    if (!m.is_object()) fail("messages[{}] must be an object", i);
    auto role = m.find("role");
    if (role == m.end() || !role->is_string()) fail("messages[{}].role must be a string", i);
    auto content = m.find("content");
    if (content != m.end() && content->is_array()) {
      std::string joined;
      for (size_t k = 0; k < content->size(); ++k) {
        const ordered_json& part = (*content)[k];
        if (!part.is_object() || !part.contains("type") || !part["type"].is_string())
          fail("messages[{}].content[{}] must be an object with a string 'type'", i, k);
        const std::string type = part["type"].get<std::string>();
        if (type == "text") {
          if (!part.contains("text") || !part["text"].is_string())
            fail("messages[{}].content[{}].text must be a string", i, k);
          if (!joined.empty()) joined += '\n';
          joined += part["text"].get<std::string>();
        } else if (!keep_parts) {
          fail(
              "messages[{}].content[{}]: content of type '{}' is not supported by this model's chat template",
              i, k, type);
        }
      }
      if (!keep_parts) *content = joined;
    } else if (content != m.end() && !content->is_string() && !content->is_null()) {
      fail("messages[{}].content must be a string, an array of content parts or null", i);
    }
    // vLLM parses a tool call's JSON-string arguments: templates expect a mapping.
    auto calls = m.find("tool_calls");
    if (calls != m.end() && calls->is_array()) {
      for (auto& call : *calls) {
        if (!call.is_object()) continue;
        auto fn = call.find("function");
        if (fn == call.end() || !fn->is_object()) continue;
        auto args = fn->find("arguments");
        if (args == fn->end() || !args->is_string()) continue;
        try {
          *args = ordered_json::parse(args->get<std::string>());
        } catch (const nlohmann::json::exception&) {
          fail("messages[{}].tool_calls: function arguments are not valid JSON", i);
        }
      }
    }
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace

struct ChatTemplate::Impl {
  std::string source;
  ChatTemplateOptions opt;
  jinja::Body body;
  bool takes_parts = false;
};

ChatTemplate ChatTemplate::from_source(std::string source, ChatTemplateOptions opt) {
  auto impl = std::make_shared<Impl>();
  impl->body = jinja::parse(source);
  impl->source = std::move(source);
  impl->opt = std::move(opt);
  impl->takes_parts = iterates_content(impl->body);
  return ChatTemplate(std::move(impl));
}

std::vector<std::string_view> ChatTemplate::builtin_names() {
  std::vector<std::string_view> out;
  for (const auto& b : kBuiltins) out.push_back(b.name);
  return out;
}

ChatTemplate ChatTemplate::builtin(std::string_view name, ChatTemplateOptions opt) {
  for (const auto& b : kBuiltins)
    if (b.name == name) return from_source(std::string(b.source), std::move(opt));
  fail("unknown chat template '{}' (known: {})", name, fmt::join(builtin_names(), ", "));
}

ChatTemplate ChatTemplate::from_gguf(const GgufFile& f, ChatTemplateOptions opt) {
  if (auto src = f.get_string("tokenizer.chat_template")) {
    try {
      return from_source(std::move(*src), std::move(opt));
    } catch (const Error& e) {
      fail("{}: tokenizer.chat_template: {}", f.path(), e.what());
    }
  }
  return builtin("chatml", std::move(opt));
}

const std::string& ChatTemplate::source() const {
  return impl_->source;
}
bool ChatTemplate::takes_content_parts() const {
  return impl_->takes_parts;
}

std::string ChatTemplate::render(const nlohmann::json& messages, bool add_generation_prompt,
                                 const nlohmann::json& extra) const {
  return render(ordered_json(messages), add_generation_prompt, ordered_json(extra));
}

std::string ChatTemplate::render(const ordered_json& messages, bool add_generation_prompt,
                                 const ordered_json& extra) const {
  using jinja::Value;
  if (!extra.is_null() && !extra.is_object()) fail("chat template variables must be an object");
  const Impl& t = *impl_;
  std::vector<std::pair<std::string, Value>> globals;
  globals.emplace_back("messages", jinja::from_json(normalize_messages(messages, t.takes_parts)));
  globals.emplace_back("add_generation_prompt", add_generation_prompt);
  globals.emplace_back("bos_token", t.opt.bos_token);
  globals.emplace_back("eos_token", t.opt.eos_token);
  globals.emplace_back("tools", nullptr);
  globals.emplace_back("documents", nullptr);
  if (extra.is_object())
    for (auto it = extra.begin(); it != extra.end(); ++it) {
      if (it.key() == "messages" || it.key() == "add_generation_prompt") continue;
      auto g =
          std::find_if(globals.begin(), globals.end(), [&](const auto& p) { return p.first == it.key(); });
      if (g != globals.end())
        g->second = jinja::from_json(it.value());
      else
        globals.emplace_back(it.key(), jinja::from_json(it.value()));
    }

  auto fn = [](std::string name, std::function<Value(const jinja::CallArgs&)> f) {
    auto c = std::make_shared<jinja::Callable>();
    c->name = std::move(name);
    c->fn = std::move(f);
    return Value(std::shared_ptr<const jinja::Callable>(std::move(c)));
  };
  globals.emplace_back("raise_exception", fn("raise_exception", [](const jinja::CallArgs& a) -> Value {
                         throw jinja::TemplateRaised(a.pos.empty() ? std::string("raise_exception() called")
                                                                   : jinja::to_str(a.pos[0]));
                       }));
  const std::optional<int64_t> now = t.opt.now;
  globals.emplace_back("strftime_now", fn("strftime_now", [now](const jinja::CallArgs& a) -> Value {
                         if (a.pos.empty() || !a.pos[0].is_string())
                           fail("strftime_now expects a format string");
                         const std::string& f = a.pos[0].str();
                         if (f.size() > 256) fail("strftime_now: format too long");
                         const std::time_t tt = now ? static_cast<std::time_t>(*now) : std::time(nullptr);
                         std::tm tm{};
                         localtime_r(&tt, &tm);
                         char buf[1024];
                         const size_t n = std::strftime(buf, sizeof buf, f.c_str(), &tm);
                         if (n == 0 && !f.empty()) fail("strftime_now: result too long or empty");
                         return std::string(buf, n);
                       }));
  return jinja::render(t.body, globals, t.opt.limits);
}

}  // namespace llmd::model
