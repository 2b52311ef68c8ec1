// decode-filter, prefill-filter (by the llm-d.ai/role label, with llm-d's accepted values) and
// label-selector-filter (a Kubernetes LabelSelector: matchLabels and matchExpressions).
#include <algorithm>
#include <array>

#include "common/error.hpp"
#include "router/plugin_registry.hpp"

namespace llmd::router {
namespace {

class RoleFilter final : public Filter {
 public:
  RoleFilter(std::span<const std::string_view> roles, bool allow_unlabelled)
      : roles_(roles.begin(), roles.end()), allow_unlabelled_(allow_unlabelled) {}
  void filter(SchedContext&, Candidates& eps) override {
    std::erase_if(eps, [&](const Endpoint* e) {
      const std::string_view r = e->role();
      if (r.empty()) return !allow_unlabelled_;
      return std::find(roles_.begin(), roles_.end(), r) == roles_.end();
    });
  }

 private:
  std::vector<std::string_view> roles_;
  bool allow_unlabelled_;
};

// An endpoint without the label serves both legs (a plain vLLM), so decode accepts it.
constexpr std::array<std::string_view, 4> kDecodeRoles = {"decode", "prefill-decode", "both",
                                                          "encode-prefill-decode"};
constexpr std::array<std::string_view, 5> kPrefillRoles = {"prefill", "encode-prefill", "prefill-decode",
                                                           "both", "encode-prefill-decode"};

class LabelSelectorFilter final : public Filter {
 public:
  struct Expr {
    std::string key, op;
    std::vector<std::string> values;
  };
  Labels match;
  std::vector<Expr> exprs;

  void filter(SchedContext&, Candidates& eps) override {
    std::erase_if(eps, [&](const Endpoint* e) { return !matches(*e); });
  }

 private:
  bool matches(const Endpoint& e) const {
    for (const auto& [k, v] : match)
      if (e.label(k) != v || !e.spec().labels.contains(k)) return false;
    for (const Expr& x : exprs) {
      const bool has = e.spec().labels.contains(x.key);
      const std::string_view v = e.label(x.key);
      const bool in = has && std::find(x.values.begin(), x.values.end(), v) != x.values.end();
      if ((x.op == "In" && !in) || (x.op == "NotIn" && in) || (x.op == "Exists" && !has) ||
          (x.op == "DoesNotExist" && has))
        return false;
    }
    return true;
  }
};

std::shared_ptr<Plugin> make_label_selector(Params& p) {
  auto f = std::make_shared<LabelSelectorFilter>();
  if (const nlohmann::json* m = p.object("matchLabels"))
    for (const auto& [k, v] : m->items()) {
      if (!v.is_string()) fail("label-selector-filter: matchLabels.{} must be a string", k);
      f->match[k] = v.get<std::string>();
    }
  if (const nlohmann::json* xs = p.raw("matchExpressions")) {
    if (!xs->is_array()) fail("label-selector-filter: matchExpressions must be a list");
    for (const nlohmann::json& x : *xs) {
      LabelSelectorFilter::Expr e;
      if (!x.is_object() || !x.contains("key") || !x["key"].is_string() || !x.contains("operator") ||
          !x["operator"].is_string())
        fail("label-selector-filter: each matchExpressions entry needs key and operator");
      e.key = x["key"].get<std::string>();
      e.op = x["operator"].get<std::string>();
      if (e.op != "In" && e.op != "NotIn" && e.op != "Exists" && e.op != "DoesNotExist")
        fail("label-selector-filter: operator '{}' is not In, NotIn, Exists or DoesNotExist", e.op);
      if (x.contains("values")) {
        if (!x["values"].is_array()) fail("label-selector-filter: values must be a list");
        for (const auto& v : x["values"]) e.values.push_back(v.is_string() ? v.get<std::string>() : v.dump());
      }
      if ((e.op == "In" || e.op == "NotIn") && e.values.empty())
        fail("label-selector-filter: operator {} needs values", e.op);
      f->exprs.push_back(std::move(e));
    }
  }
  return f;
}

}  // namespace

std::shared_ptr<Plugin> make_filter(std::string_view type, Params& p, const PluginEnv&) {
  if (type == "decode-filter") return std::make_shared<RoleFilter>(kDecodeRoles, true);
  if (type == "prefill-filter") return std::make_shared<RoleFilter>(kPrefillRoles, false);
  if (type == "label-selector-filter" || type == "by-label-selector") return make_label_selector(p);
  return nullptr;
}

}  // namespace llmd::router
