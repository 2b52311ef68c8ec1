#include "kv/transfer/pd_legs.hpp"

#include <nlohmann/json.hpp>

namespace llmd::kv::transfer {

using nlohmann::json;

std::optional<std::string> prefill_leg_body(std::string_view body) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || j.contains("kv_transfer_params")) return std::nullopt;
  j.erase("max_completion_tokens");
  j.erase("stream_options");
  j["max_tokens"] = 1;
  j["stream"] = false;
  j["n"] = 1;
  j["kv_transfer_params"] = {{"do_remote_decode", true}, {"do_remote_prefill", false}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::optional<std::string> decode_leg_body(std::string_view body, std::string_view prefill_response) {
  const json answer = json::parse(prefill_response, nullptr, false);
  if (!answer.is_object()) return std::nullopt;
  const auto params = answer.find("kv_transfer_params");
  if (params == answer.end() || !params->is_object()) return std::nullopt;
  json j = json::parse(body, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  j["kv_transfer_params"] = *params;
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace llmd::kv::transfer
