#include "bench/sse_parser.hpp"

#include <nlohmann/json.hpp>

namespace llmd::bench {

bool SseParser::take_line(std::string_view line) {
  if (line.front() == ':') return true;  // a comment (keep-alive)
  const std::size_t colon = line.find(':');
  const std::string_view field = line.substr(0, colon);
  std::string_view value = colon == std::string_view::npos ? std::string_view{} : line.substr(colon + 1);
  if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (field == "data") {
    if (has_data_) ev_.data.push_back('\n');
    ev_.data.append(value);
    has_data_ = true;
  } else if (field == "event") {
    ev_.event.assign(value);
  } else if (field == "id" || field == "retry") {
    // Not used by OpenAI streams.
  } else {
    // The spec ignores unknown fields, but no OpenAI-compatible server sends any: a line like this
    // is a body that is not SSE at all (an HTML error page, a JSON body under a 200).
    return false;
  }
  return true;
}

StreamPayload parse_payload(const SseEvent& ev) {
  using json = nlohmann::json;
  StreamPayload p;
  if (ev.data == "[DONE]") {
    p.kind = StreamPayload::Kind::kDone;
    return p;
  }
  json j = json::parse(ev.data, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    if (ev.event == "error") {
      p.kind = StreamPayload::Kind::kError;
      p.error = ev.data;
      return p;
    }
    p.error = "data is not a JSON object";
    return p;
  }
  if (ev.event == "error" || j.contains("error")) {
    p.kind = StreamPayload::Kind::kError;
    const json& e = j.contains("error") ? j["error"] : j;
    if (e.is_object() && e.contains("message") && e["message"].is_string())
      p.error = e["message"].get<std::string>();
    else
      p.error = e.dump();
    return p;
  }
  auto choices = j.find("choices");
  if (choices == j.end() || !choices->is_array()) {
    p.error = "chunk without a choices array";
    return p;
  }
  p.kind = StreamPayload::Kind::kDelta;
  if (!choices->empty()) {
    const json& c = (*choices)[0];
    if (!c.is_object()) {
      p.kind = StreamPayload::Kind::kMalformed;
      p.error = "choice is not an object";
      return p;
    }
    auto text = c.find("text");
    if (text != c.end() && text->is_string()) {
      p.text = text->get<std::string>();
    } else if (auto d = c.find("delta"); d != c.end() && d->is_object()) {
      auto content = d->find("content");
      if (content != d->end() && content->is_string()) p.text = content->get<std::string>();
    }
  }
  auto usage = j.find("usage");
  if (usage != j.end() && usage->is_object()) {
    auto ct = usage->find("completion_tokens");
    if (ct != usage->end() && ct->is_number_integer()) p.completion_tokens = ct->get<int64_t>();
  }
  return p;
}

}  // namespace llmd::bench
