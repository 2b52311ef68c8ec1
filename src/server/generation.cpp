// /v1/completions and /v1/chat/completions: one request becomes n engine requests (choices), whose
// tokens come back through one queue, are detokenized incrementally, cut at stop strings, and sent
// as SSE chunks or as one JSON body.
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>

#include <fmt/format.h>

#include "common/error.hpp"
#include "kv/transfer/pd_legs.hpp"
#include "server/openai_request.hpp"
#include "server/server_state.hpp"
#include "server/stop_matcher.hpp"

namespace llmd::server {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct Delivery {
  int choice = 0;
  engine::RequestOutput out;
};

struct Choice {
  uint64_t id = 0;
  model::StreamDecoder decoder;
  StopMatcher stop;
  std::string text;  // everything sent (stream) or to send (whole)
  json logprobs = json::array();
  engine::FinishReason finish = engine::FinishReason::kNone;
  bool done = false;
  bool sent_role = false;
  int32_t generated = 0, prompt = 0, cached = 0;
  std::vector<int32_t> kv_pinned_blocks;  // a prefill leg's, for the decode server to pull
  Clock::time_point first_token, last_token;

  Choice(const model::Tokenizer& tok, bool skip_special, std::vector<std::string> stops)
      : decoder(tok, skip_special, /*continuation=*/true), stop(std::move(stops)) {}
};

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string request_id(bool chat) {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  return fmt::format("{}-{:016x}{:016x}", chat ? "chatcmpl" : "cmpl", rng(), rng());
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

json logprob_entry(const model::Tokenizer& tok, const engine::TokenLogprobs& lp, bool chat) {
  auto piece = [&](int32_t id) { return tok.token_to_piece(id); };
  auto bytes = [&](const std::string& p) {
    json b = json::array();
    for (unsigned char c : p) b.push_back(c);
    return b;
  };
  if (chat) {
    json top = json::array();
    for (const auto& t : lp.top)
      top.push_back({{"token", piece(t.id)}, {"logprob", t.logprob}, {"bytes", bytes(piece(t.id))}});
    return {{"token", piece(lp.token)},
            {"logprob", lp.logprob},
            {"bytes", bytes(piece(lp.token))},
            {"top_logprobs", top}};
  }
  json top = json::object();
  for (const auto& t : lp.top) top[piece(t.id)] = t.logprob;
  return {{"token", piece(lp.token)}, {"logprob", lp.logprob}, {"top", top}};
}

// The completions API's column-wise logprobs object from per-token entries.
json completion_logprobs(const json& entries) {
  json tokens = json::array(), lps = json::array(), tops = json::array(), offsets = json::array();
  int64_t offset = 0;
  for (const auto& e : entries) {
    tokens.push_back(e["token"]);
    lps.push_back(e["logprob"]);
    tops.push_back(e["top"]);
    offsets.push_back(offset);
    offset += static_cast<int64_t>(e["token"].get<std::string>().size());
  }
  return {{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

json usage_json(const std::vector<std::unique_ptr<Choice>>& choices) {
  int64_t completion = 0;
  for (const auto& c : choices) completion += c->generated;
  const int64_t prompt = choices.front()->prompt, cached = choices.front()->cached;
  return {{"prompt_tokens", prompt},
          {"completion_tokens", completion},
          {"total_tokens", prompt + completion},
          {"prompt_tokens_details", {{"cached_tokens", cached}}}};
}

}  // namespace

// llm-d's sidecar mode: a request routed here with x-prefiller-host-port (and no kv_transfer_params)
// has its prefill leg run there first; the body to serve is then the decode leg's. Empty when
// there is nothing to run or the leg failed (the request is then served here whole).
asio::awaitable<std::string> sidecar_prefill(OpenAiServer::State& s, const http::Request& req) {
  const auto target = req.headers.get("x-prefiller-host-port");
  if (!target || !s.cfg.kv_transfer) co_return std::string();
  const std::size_t colon = target->rfind(':');
  if (colon == std::string_view::npos) co_return std::string();
  std::string host(target->substr(0, colon));
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const int port = std::atoi(std::string(target->substr(colon + 1)).c_str());
  if (port <= 0 || port > 65535 || (host == s.cfg.http.host && port == s.cfg.http.port))
    co_return std::string();
  const auto leg = kv::transfer::prefill_leg_body(req.body);
  if (!leg) co_return std::string();
  http::Headers headers;
  headers.add("Content-Type", "application/json");
  if (const auto auth = req.headers.get("authorization")) headers.add("Authorization", std::string(*auth));
  std::string decode;
  try {
    const http::ClientResponse answer =
        co_await s.client.request(host, static_cast<uint16_t>(port), req.method, req.target, *leg, headers);
    if (answer.status == 200) decode = kv::transfer::decode_leg_body(req.body, answer.body).value_or("");
  } catch (const std::exception&) {
  }
  co_return decode;
}

asio::awaitable<void> handle_generation(OpenAiServer::State& s, http::Request& req, http::Response& res,
                                        bool chat) {
  const auto arrival = Clock::now();
  const std::string decode_leg = co_await sidecar_prefill(s, req);
  auto parsed = parse_generation_request(chat ? Endpoint::kChat : Endpoint::kCompletions,
                                         decode_leg.empty() ? std::string_view(req.body) : decode_leg);
  if (!parsed) {
    co_await res.send(parsed.error().status, kJsonType, parsed.error().body());
    co_return;
  }
  GenerationRequest& g = *parsed;
  if (!g.model.empty() && g.model != s.cfg.served_model_name) {
    const ApiError e{404, fmt::format("The model `{}` does not exist.", g.model), "model"};
    co_await res.send(e.status, kJsonType, e.body());
    co_return;
  }

  std::vector<int32_t> prompt;
  std::string echo_text;
  std::string prompt_error;  // co_await is not allowed inside a catch block
  try {
    if (chat) {
      json extra = g.chat_template_kwargs.is_object() ? g.chat_template_kwargs : json::object();
      if (!g.tools.is_null()) extra["tools"] = g.tools;
      const std::string text = s.tmpl.render(g.messages, g.add_generation_prompt, extra);
      prompt = s.tok.encode(text, /*add_special=*/false, /*parse_special=*/true);
    } else if (g.prompt_text) {
      prompt = s.tok.encode(*g.prompt_text, /*add_special=*/true);
      echo_text = *g.prompt_text;
    } else {
      prompt = *g.prompt_tokens;
      for (int32_t t : prompt)
        if (t >= s.tok.size()) {
          const ApiError e{400,
                           fmt::format("token id {} is out of the vocabulary ({} tokens)", t, s.tok.size()),
                           "prompt"};
          co_await res.send(e.status, kJsonType, e.body());
          co_return;
        }
      echo_text = s.tok.decode(prompt, false);
    }
  } catch (const std::exception& e) {
    prompt_error = e.what();
  }
  if (!prompt_error.empty()) {
    const ApiError err{400, prompt_error, chat ? "messages" : "prompt"};
    co_await res.send(err.status, kJsonType, err.body());
    co_return;
  }
  const int64_t room = s.engine.backend().max_seq_len() - static_cast<int64_t>(prompt.size());
  const int32_t max_tokens =
      g.max_tokens ? *g.max_tokens : (chat ? static_cast<int32_t>(std::max<int64_t>(room, 1)) : 16);

  // P/D: a prefill leg pins its prompt's blocks under the response id; a decode leg pulls them.
  const std::optional<KvTransferParams>& kv = g.kv_transfer;
  const bool prefill_leg = kv && kv->do_remote_decode;
  if (prefill_leg && !s.cfg.kv_transfer) {
    const ApiError e{400, "this server does not serve KV transfers (start it with --kv-transfer-secret)",
                     "kv_transfer_params"};
    co_await res.send(e.status, kJsonType, e.body());
    co_return;
  }
  const std::string rid = request_id(chat);

  auto queue = std::make_shared<AsyncQueue<Delivery>>();
  std::vector<std::unique_ptr<Choice>> choices;
  for (int i = 0; i < g.n; ++i) {
    engine::RequestSpec spec;
    spec.prompt = prompt;
    spec.sampling = g.sampling;
    if (g.sampling.seed && i > 0) spec.sampling.seed = *g.sampling.seed + i;  // n seeded choices differ
    spec.max_tokens = max_tokens;
    spec.ignore_eos = g.ignore_eos;
    spec.stop_token_ids = g.stop_token_ids;
    spec.logprobs = g.logprobs;
    spec.cache_salt = g.cache_salt;
    if (prefill_leg) spec.kv_pin_id = rid;
    if (kv && kv->do_remote_prefill)
      spec.kv_remote =
          engine::RemoteBlocks{kv->remote_engine_id, kv->remote_host, static_cast<uint16_t>(kv->remote_port),
                               kv->remote_block_ids, kv->remote_request_id};
    spec.sink = [queue, i](engine::RequestOutput&& o) { queue->push(Delivery{i, std::move(o)}); };
    auto id = s.engine.submit(std::move(spec));
    if (!id) {
      for (const auto& c : choices) s.engine.abort(c->id);
      const ApiError e{400, id.error(), ""};
      co_await res.send(e.status, kJsonType, e.body());
      co_return;
    }
    choices.push_back(std::make_unique<Choice>(s.tok, g.skip_special_tokens, g.stop));
    choices.back()->id = *id;
  }

  const int64_t created = unix_now();
  auto chunk = [&](int index, const std::string& text, const json& logprobs, const char* finish) {
    json c = {
        {"index", index}, {"logprobs", logprobs}, {"finish_reason", finish ? json(finish) : json(nullptr)}};
    if (chat) {
      json delta = json::object();
      if (!choices[index]->sent_role) {
        delta["role"] = "assistant";
        choices[index]->sent_role = true;
      }
      if (!text.empty() || !finish) delta["content"] = text;
      c["delta"] = delta;
    } else {
      c["text"] = text;
    }
    json j = {{"id", rid},
              {"object", chat ? "chat.completion.chunk" : "text_completion"},
              {"created", created},
              {"model", s.cfg.served_model_name},
              {"choices", json::array({c})}};
    if (g.include_usage) j["usage"] = nullptr;
    return "data: " + dump(j) + "\n\n";
  };

  if (g.stream) {
    const http::Headers sse_headers = no_cache_headers();
    const bool started = co_await res.start_stream(200, kEventStreamType, sse_headers);
    if (!started) {
      for (const auto& c : choices) s.engine.abort(c->id);
      co_return;
    }
    if (g.echo && !chat) {
      for (size_t i = 0; i < choices.size(); ++i) {
        const std::string event = chunk(static_cast<int>(i), echo_text, nullptr, nullptr);
        if (!co_await res.write(event)) break;
      }
    }
  }

  size_t open = choices.size();
  bool first_token_seen = false;
  while (open > 0) {
    auto d = co_await queue->pop(&res.cancel_signal());
    if (!d) {  // the client went away: stop computing for it
      for (const auto& c : choices) s.engine.abort(c->id);
      co_return;
    }
    Choice& c = *choices[d->choice];
    if (c.done) continue;  // the abort that followed a stop string
    const engine::RequestOutput& o = d->out;
    const auto now = Clock::now();
    if (!o.tokens.empty()) {
      if (!first_token_seen) {
        s.m.ttft->observe(std::chrono::duration<double>(now - arrival).count());
        first_token_seen = true;
      } else if (c.generated > 0) {
        s.m.itl->observe(std::chrono::duration<double>(now - c.last_token).count());
      }
      if (c.generated == 0) c.first_token = now;
      c.last_token = now;
    }
    c.prompt = o.prompt_tokens;
    c.cached = o.cached_tokens;
    if (!o.kv_pinned_blocks.empty()) c.kv_pinned_blocks = o.kv_pinned_blocks;
    c.generated = o.generated_tokens;
    std::string emit;
    json lps = json::array();
    for (size_t k = 0; k < o.tokens.size() && !c.stop.stopped(); ++k) {
      emit += c.stop.push(c.decoder.push(o.tokens[k]));
      if (k < o.logprobs.size()) lps.push_back(logprob_entry(s.tok, o.logprobs[k], chat));
    }
    engine::FinishReason finish = o.finish;
    if (c.stop.stopped()) {
      finish = engine::FinishReason::kStop;
      s.engine.abort(c.id);
    } else if (finish != engine::FinishReason::kNone) {
      emit += c.stop.push(c.decoder.finish());
      emit += c.stop.flush();
      if (c.stop.stopped()) finish = engine::FinishReason::kStop;
    }
    if (finish == engine::FinishReason::kError) {
      s.m.success_error->inc();
      if (!g.stream) {
        const ApiError e{500, o.error.empty() ? "generation failed" : o.error, ""};
        co_await res.send(e.status, kJsonType, e.body());
      } else {
        const std::string event = sse(ApiError{500, o.error, ""}.body());
        co_await res.write(event);
      }
      for (const auto& other : choices) s.engine.abort(other->id);
      co_return;
    }
    c.text += emit;
    for (auto& e : lps) c.logprobs.push_back(std::move(e));
    if (finish != engine::FinishReason::kNone) {
      c.done = true;
      c.finish = finish;
      --open;
      (finish == engine::FinishReason::kLength ? s.m.success_length : s.m.success_stop)->inc();
      const double e2e = std::chrono::duration<double>(now - arrival).count();
      s.m.e2e->observe(e2e);
    }
    if (g.stream && (!emit.empty() || finish != engine::FinishReason::kNone)) {
      json lp = nullptr;
      if (g.logprobs >= 0) lp = chat ? json{{"content", lps}} : completion_logprobs(lps);
      const char* reason =
          finish != engine::FinishReason::kNone ? engine::finish_reason_name(finish) : nullptr;
      const std::string event = chunk(d->choice, emit, lp, reason);
      if (!co_await res.write(event)) {
        for (const auto& other : choices) s.engine.abort(other->id);
        co_return;
      }
    }
  }
  // vLLM's TPOT: the decode time after the first token, per further token.
  for (const auto& c : choices)
    if (c->generated > 1)
      s.m.tpot->observe(std::chrono::duration<double>(c->last_token - c->first_token).count() /
                        (c->generated - 1));

  if (g.stream) {
    std::string tail;  // the usage event, [DONE] and the stream's end: one write
    if (g.include_usage) {
      json j = {{"id", rid},
                {"object", chat ? "chat.completion.chunk" : "text_completion"},
                {"created", created},
                {"model", s.cfg.served_model_name},
                {"choices", json::array()},
                {"usage", usage_json(choices)}};
      tail = sse(dump(j));
    }
    tail += kDoneEvent;
    co_await res.finish(tail);
    co_return;
  }
  json out = json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const Choice& c = *choices[i];
    json lp = nullptr;
    if (g.logprobs >= 0) lp = chat ? json{{"content", c.logprobs}} : completion_logprobs(c.logprobs);
    json item = {{"index", i}, {"logprobs", lp}, {"finish_reason", engine::finish_reason_name(c.finish)}};
    if (chat)
      item["message"] = {{"role", "assistant"}, {"content", c.text}, {"refusal", nullptr}};
    else
      item["text"] = g.echo ? echo_text + c.text : c.text;
    out.push_back(item);
  }
  json body = {{"id", rid},          {"object", chat ? "chat.completion" : "text_completion"},
               {"created", created}, {"model", s.cfg.served_model_name},
               {"choices", out},     {"usage", usage_json(choices)}};
  if (prefill_leg) {  // vLLM's shape, passed unchanged to the decode server
    const auto& t = *s.cfg.kv_transfer;
    body["kv_transfer_params"] = {
        {"do_remote_decode", false},       {"do_remote_prefill", true},
        {"remote_engine_id", t.engine_id}, {"remote_host", t.host},
        {"remote_port", t.port},           {"remote_block_ids", choices.front()->kv_pinned_blocks},
        {"remote_request_id", rid}};
  }
  co_await res.send(200, kJsonType, dump(body));
}

}  // namespace llmd::server
