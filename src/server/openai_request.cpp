#include "server/openai_request.hpp"

#include <fmt/format.h>

namespace llmd::server {
namespace {

using nlohmann::json;

std::unexpected<ApiError> bad(const std::string& param, const std::string& message) {
  return std::unexpected(ApiError{400, message, param});
}

// Field readers: absent or null leaves the default; a value of the wrong type is an error naming it.
struct Reader {
  const json& j;
  std::optional<ApiError> error;
  std::string prefix = {};  // of the names in errors, for nested objects: "kv_transfer_params."

  const json* get(const char* key) {
    auto it = j.find(key);
    return it == j.end() || it->is_null() ? nullptr : &*it;
  }
  void fail(const char* key, const std::string& what) {
    if (!error) error = ApiError{400, fmt::format("'{}{}' {}", prefix, key, what), prefix + key};
  }
  template <class T>
  void number(const char* key, T& out, double lo, double hi) {
    const json* v = get(key);
    if (!v) return;
    if (!v->is_number() || (std::is_integral_v<T> && !v->is_number_integer())) {
      fail(key, std::is_integral_v<T> ? "must be an integer" : "must be a number");
      return;
    }
    const double d = v->get<double>();
    if (!(d >= lo && d <= hi)) {
      fail(key, fmt::format("must be between {} and {}, got {}", lo, hi, v->dump()));
      return;
    }
    out = v->get<T>();
  }
  void boolean(const char* key, bool& out) {
    const json* v = get(key);
    if (!v) return;
    if (!v->is_boolean()) return fail(key, "must be a boolean");
    out = v->get<bool>();
  }
  void string(const char* key, std::string& out) {
    const json* v = get(key);
    if (!v) return;
    if (!v->is_string()) return fail(key, "must be a string");
    out = v->get<std::string>();
  }
};

// kv_transfer_params: every field checked, named "kv_transfer_params.<field>" when wrong.
std::expected<KvTransferParams, ApiError> parse_kv_transfer(const json& j) {
  constexpr const char* kParam = "kv_transfer_params";
  if (!j.is_object()) return bad(kParam, "'kv_transfer_params' must be an object");
  KvTransferParams p;
  Reader rd{j, std::nullopt, fmt::format("{}.", kParam)};
  rd.boolean("do_remote_decode", p.do_remote_decode);
  rd.boolean("do_remote_prefill", p.do_remote_prefill);
  rd.string("remote_engine_id", p.remote_engine_id);
  rd.string("remote_host", p.remote_host);
  rd.number("remote_port", p.remote_port, 1, 65535);
  rd.string("remote_request_id", p.remote_request_id);
  const json* ids = rd.get("remote_block_ids");
  if (ids && (!ids->is_array() || ids->size() > kMaxRemoteBlocks))
    rd.fail("remote_block_ids", fmt::format("must be an array of at most {} block ids", kMaxRemoteBlocks));
  for (const json& b : ids && ids->is_array() && !rd.error ? *ids : json::array()) {
    if (!b.is_number_integer() || b.get<int64_t>() < 0 || b.get<int64_t>() > INT32_MAX) {
      rd.fail("remote_block_ids", "must hold non-negative 32-bit block ids");
      break;
    }
    p.remote_block_ids.push_back(b.get<int32_t>());
  }
  if (rd.error) return std::unexpected(*rd.error);
  const auto field = [&](const char* name, const std::string& what) {
    return bad(fmt::format("{}.{}", kParam, name), fmt::format("'{}.{}' {}", kParam, name, what));
  };
  if (p.do_remote_decode && p.do_remote_prefill)
    return field("do_remote_prefill", "cannot be true together with do_remote_decode");
  if (p.remote_engine_id.size() > 64) return field("remote_engine_id", "is longer than 64 bytes");
  if (p.remote_request_id.size() > kMaxRemoteIdBytes)
    return field("remote_request_id", fmt::format("is longer than {} bytes", kMaxRemoteIdBytes));
  if (p.remote_host.size() > 255) return field("remote_host", "is longer than 255 bytes");
  if (p.do_remote_prefill) {
    if (p.remote_host.empty()) return field("remote_host", "is required with do_remote_prefill");
    if (p.remote_port == 0) return field("remote_port", "is required with do_remote_prefill");
    if (p.remote_request_id.empty()) return field("remote_request_id", "is required with do_remote_prefill");
  }
  return p;
}

bool is_token_array(const json& v) {
  if (!v.is_array() || v.empty()) return false;
  for (const auto& x : v)
    if (!x.is_number_integer()) return false;
  return true;
}

}  // namespace

std::string ApiError::type() const {
  switch (status) {
    case 400:
      return "BadRequestError";
    case 401:
      return "AuthenticationError";
    case 404:
      return "NotFoundError";
    case 405:
      return "MethodNotAllowed";
    case 413:
      return "RequestTooLarge";
    case 429:
      return "RateLimitError";
    case 503:
      return "ServiceUnavailableError";
    default:
      return status >= 500 ? "InternalServerError" : "BadRequestError";
  }
}

std::string ApiError::body() const {
  json e = {{"message", message},
            {"type", type()},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", status}};
  return json{{"error", e}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::expected<GenerationRequest, ApiError> parse_generation_request(Endpoint endpoint,
                                                                    std::string_view body) {
  const json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return bad("", "the request body is not valid JSON");
  if (!j.is_object()) return bad("", "the request body must be a JSON object");

  GenerationRequest r;
  r.endpoint = endpoint;
  Reader rd{j, std::nullopt};
  rd.string("model", r.model);

  if (endpoint == Endpoint::kCompletions) {
    const json* p = rd.get("prompt");
    if (!p) return bad("prompt", "'prompt' is required");
    // A list of one prompt is accepted as that prompt; several prompts in one request are not.
    const json* one = p;
    if (p->is_array() && p->size() == 1 && ((*p)[0].is_string() || (*p)[0].is_array())) one = &(*p)[0];
    if (one->is_string()) {
      r.prompt_text = one->get<std::string>();
    } else if (is_token_array(*one)) {
      r.prompt_tokens.emplace();
      for (const auto& t : *one) {
        if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() > INT32_MAX)
          return bad("prompt", "token ids must be non-negative 32-bit integers");
        r.prompt_tokens->push_back(t.get<int32_t>());
      }
    } else if (p->is_array() && p->size() > 1) {
      return bad("prompt", "batched prompts are not supported: send one prompt per request");
    } else {
      return bad("prompt", "'prompt' must be a string or an array of token ids");
    }
    rd.boolean("echo", r.echo);
    if (const json* lp = rd.get("logprobs")) {
      if (!lp->is_number_integer() || lp->get<int64_t>() < 0 || lp->get<int64_t>() > kMaxLogprobs)
        return bad("logprobs", fmt::format("'logprobs' must be an integer between 0 and {}", kMaxLogprobs));
      r.logprobs = lp->get<int32_t>();
    }
  } else {
    const json* m = rd.get("messages");
    if (!m) return bad("messages", "'messages' is required");
    if (!m->is_array() || m->empty()) return bad("messages", "'messages' must be a non-empty array");
    for (const auto& msg : *m) {
      if (!msg.is_object() || !msg.contains("role") || !msg["role"].is_string())
        return bad("messages", "each message must be an object with a string 'role'");
      if (msg.contains("content") && !msg["content"].is_null() && !msg["content"].is_string() &&
          !msg["content"].is_array())
        return bad("messages", "a message's 'content' must be a string or an array of parts");
    }
    r.messages = *m;
    if (const json* t = rd.get("tools")) r.tools = *t;
    if (const json* k = rd.get("chat_template_kwargs")) {
      if (!k->is_object()) return bad("chat_template_kwargs", "'chat_template_kwargs' must be an object");
      r.chat_template_kwargs = *k;
    }
    rd.boolean("add_generation_prompt", r.add_generation_prompt);
    bool want_logprobs = false;
    rd.boolean("logprobs", want_logprobs);
    int32_t top = 0;
    rd.number("top_logprobs", top, 0, kMaxLogprobs);
    if (want_logprobs) r.logprobs = top;
  }

  int32_t max_tokens = 0;
  const bool has_mct = rd.get("max_completion_tokens") != nullptr;
  const char* mt_key = has_mct ? "max_completion_tokens" : "max_tokens";
  if (rd.get(mt_key)) {
    rd.number(mt_key, max_tokens, -1e18, 1e18);
    if (!rd.error && max_tokens < 1)
      return bad(mt_key, fmt::format("'{}' must be at least 1, got {}", mt_key, max_tokens));
    r.max_tokens = max_tokens;
  }
  auto& s = r.sampling;
  rd.number("temperature", s.temperature, 0.0, 2.0);
  rd.number("top_p", s.top_p, 1e-9, 1.0);
  rd.number("top_k", s.top_k, -1, 1e9);
  rd.number("min_p", s.min_p, 0.0, 1.0);
  rd.number("repetition_penalty", s.repetition_penalty, 1e-9, 1e9);
  rd.number("frequency_penalty", s.frequency_penalty, -2.0, 2.0);
  rd.number("presence_penalty", s.presence_penalty, -2.0, 2.0);
  if (rd.get("seed")) {
    int64_t seed = 0;
    rd.number("seed", seed, -9.2e18, 9.2e18);
    s.seed = static_cast<uint64_t>(seed);
  }
  rd.number("n", r.n, 1, kMaxChoices);
  rd.boolean("ignore_eos", r.ignore_eos);
  rd.boolean("skip_special_tokens", r.skip_special_tokens);
  rd.boolean("stream", r.stream);
  rd.string("cache_salt", r.cache_salt);
  std::string user;
  rd.string("user", user);
  if (const json* so = rd.get("stream_options")) {
    if (!so->is_object()) return bad("stream_options", "'stream_options' must be an object");
    Reader sr{*so, std::nullopt};
    sr.boolean("include_usage", r.include_usage);
    if (sr.error) return std::unexpected(*sr.error);
  }
  if (const json* st = rd.get("stop")) {
    if (st->is_string()) {
      r.stop.push_back(st->get<std::string>());
    } else if (st->is_array() && st->size() <= 16) {
      for (const auto& x : *st) {
        if (!x.is_string()) return bad("stop", "'stop' must be a string or an array of strings");
        r.stop.push_back(x.get<std::string>());
      }
    } else {
      return bad("stop", "'stop' must be a string or an array of at most 16 strings");
    }
    std::erase_if(r.stop, [](const std::string& x) { return x.empty(); });
  }
  if (const json* ids = rd.get("stop_token_ids")) {
    if (!ids->is_array()) return bad("stop_token_ids", "'stop_token_ids' must be an array of token ids");
    for (const auto& x : *ids) {
      if (!x.is_number_integer())
        return bad("stop_token_ids", "'stop_token_ids' must be an array of token ids");
      r.stop_token_ids.push_back(x.get<int32_t>());
    }
  }
  if (rd.error) return std::unexpected(*rd.error);
  if (const json* kv = rd.get("kv_transfer_params")) {
    auto p = parse_kv_transfer(*kv);
    if (!p) return std::unexpected(p.error());
    // The prefill leg answers once, whole: its answer carries where the blocks wait.
    if (p->do_remote_decode && r.stream)
      return bad("stream", "'stream' must be false with kv_transfer_params.do_remote_decode");
    if (p->do_remote_decode && r.n != 1)
      return bad("n", "'n' must be 1 with kv_transfer_params.do_remote_decode");
    r.kv_transfer = std::move(*p);
  }
  return r;
}

}  // namespace llmd::server
