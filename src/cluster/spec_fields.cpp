#include "cluster/spec_fields.hpp"

#include <algorithm>
#include <array>

#include "cluster/k8s_names.hpp"
#include "cluster/spec_keys.hpp"

namespace llmd::cluster {
namespace {

bool one_of(std::string_view s, std::initializer_list<std::string_view> values) {
  return std::find(values.begin(), values.end(), s) != values.end();
}

// "cpu"/"memory": a positive quantity; the example in the message fits the resource.
std::string quantity(const Field& f, std::string_view example) {
  const std::string s = f.string();
  const std::optional<double> v = parse_quantity(s);
  if (!v) f.fail("must be a Kubernetes quantity such as {} (got {})", example, quote(s));
  if (!(*v > 0)) f.fail("must be > 0 (got {})", quote(s));
  return s;
}

Resources parse_resources(const Field& f) {
  f.expect_keys(keys::kResources);
  Resources r;
  if (auto v = f.get("cpu")) r.cpu = quantity(*v, "500m or 2");
  if (auto v = f.get("memory")) r.memory = quantity(*v, "512Mi or 4Gi");
  if (auto v = f.get("gpu")) r.gpu = int_in(*v, 0, 1024);
  return r;
}

Toleration parse_toleration(const Field& f) {
  f.expect_keys(keys::kToleration);
  Toleration t;
  if (auto v = f.get("key")) {
    t.key = v->string();
    if (!t.key.empty() && !is_label_key(t.key)) v->fail("must be a label key (got {})", quote(t.key));
  }
  if (auto v = f.get("operator")) {
    t.op = v->string();
    if (!one_of(t.op, {"Equal", "Exists"})) v->fail("must be one of Equal, Exists (got {})", quote(t.op));
  }
  if (auto v = f.get("value")) {
    t.value = v->string();
    if (t.op == "Exists" && !t.value.empty()) v->fail("must be empty when operator is Exists");
    if (!is_label_value(t.value)) v->fail("must be a label value (got {})", quote(t.value));
  }
  if (auto v = f.get("effect")) {
    t.effect = v->string();
    if (!one_of(t.effect, {"NoSchedule", "PreferNoSchedule", "NoExecute"}))
      v->fail("must be one of NoSchedule, PreferNoSchedule, NoExecute (got {})", quote(t.effect));
  }
  if (auto v = f.get("tolerationSeconds")) {
    t.toleration_seconds = v->integer();
    if (t.effect != "NoExecute") v->fail("needs effect NoExecute");
  }
  if (t.key.empty() && t.op != "Exists") f.fail("a toleration without key needs operator Exists");
  return t;
}

}  // namespace

int32_t int_in(const Field& f, int64_t lo, int64_t hi) {
  const int64_t v = f.integer();
  if (v < lo) f.fail("must be ≥ {}", lo);
  if (v > hi) f.fail("must be ≤ {}", hi);
  return static_cast<int32_t>(v);
}

std::string non_empty(const Field& f) {
  std::string s = f.string();
  if (s.empty()) f.fail("must not be empty");
  return s;
}

Placement parse_placement(const Field& section) {
  Placement p;
  if (auto v = section.get("resources")) p.resources = parse_resources(*v);
  if (auto v = section.get("nodeSelector")) {
    p.node_selector = v->string_map();
    for (const auto& [key, value] : p.node_selector) {
      const Field entry(v->node()[key], v->path() + "." + key);
      if (!is_label_key(key)) entry.fail("must be a label key ([prefix/]name)");
      if (!is_label_value(value)) entry.fail("must be a label value (got {})", quote(value));
    }
  }
  if (auto v = section.get("tolerations"))
    for (const Field& item : v->items()) p.tolerations.push_back(parse_toleration(item));
  return p;
}

std::vector<std::string> parse_args(const Field& f, std::span<const std::string_view> owned) {
  std::vector<std::string> args;
  for (const Field& item : f.items()) {
    std::string a = item.string();
    const std::string_view flag = std::string_view(a).substr(0, a.find('='));
    if (std::find(owned.begin(), owned.end(), flag) != owned.end())
      item.fail("{} is set from the spec; it cannot be given in args", flag);
    args.push_back(std::move(a));
  }
  return args;
}

}  // namespace llmd::cluster
