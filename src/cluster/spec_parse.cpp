// The InferenceCluster parser: every key checked, every default filled, every error naming its
// field. Sections are read in document order so the first problem reported is the first one a
// reader of the file meets.
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "cluster/k8s_names.hpp"
#include "cluster/router_config.hpp"
#include "cluster/spec.hpp"
#include "cluster/spec_fields.hpp"
#include "cluster/spec_keys.hpp"
#include "cluster/yaml_field.hpp"
#include "cluster/yaml_value.hpp"
#include "common/error.hpp"

namespace llmd::cluster {
namespace {

namespace fs = std::filesystem;

// Large enough for any fleet; small enough that a typo of a few extra digits is caught.
constexpr int64_t kMaxReplicas = 100000;

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) fail("cannot read {}: {}", quote(p.string()), std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void parse_metadata(const Field& f, InferenceCluster& c) {
  f.expect_keys(keys::kMetadata);
  const Field name = f.require("name");
  c.name = name.string();
  if (!is_dns1123_label(c.name) || c.name.size() > kMaxNameLength || !(c.name[0] >= 'a' && c.name[0] <= 'z'))
    name.fail(
        "must be a DNS-1123 label of at most {} characters starting with a letter (a-z, 0-9 and '-') (got "
        "{})",
        kMaxNameLength, quote(c.name));
  if (auto ns = f.get("namespace")) {
    c.namespace_name = ns->string();
    if (!is_dns1123_label(c.namespace_name))
      ns->fail("must be a DNS-1123 label (got {})", quote(c.namespace_name));
  }
}

ModelSpec parse_model(const Field& f, const InferenceCluster& c, const fs::path& base_dir) {
  f.expect_keys(keys::kModel);
  ModelSpec m;
  if (auto v = f.get("path")) {
    m.path = non_empty(*v);
    m.local_path = (base_dir / m.path).lexically_normal().string();
  }
  if (auto v = f.get("sim")) m.sim = v->boolean();
  if (m.path.empty() && !m.sim) f.fail("needs path (a GGUF file) or sim: true");
  if (auto v = f.get("servedName"))
    m.served_name = non_empty(*v);
  else
    m.served_name =
        m.path.empty() ? std::string(ModelSpec::kDefaultSimServedName) : fs::path(m.path).stem().string();
  if (auto v = f.get("volume")) {
    v->expect_keys(keys::kModelVolume);
    if (m.path.empty()) v->fail("needs spec.model.path (the file to find in it)");
    ModelVolume vol;
    if (auto claim = v->get("claimName")) {
      vol.claim_name = claim->string();
      if (!is_dns1123_subdomain(vol.claim_name))
        claim->fail("must be a PersistentVolumeClaim name (a DNS-1123 subdomain) (got {})",
                    quote(vol.claim_name));
    }
    if (auto host = v->get("hostPath")) {
      vol.host_path = host->string();
      if (!vol.host_path.starts_with('/'))
        host->fail("must be an absolute path (got {})", quote(vol.host_path));
    }
    if (vol.claim_name.empty() == vol.host_path.empty()) v->fail("needs one of claimName or hostPath");
    m.volume = vol;
  } else if (!m.path.empty()) {
    m.volume = ModelVolume{c.name + "-models", ""};
  }
  return m;
}

Pool parse_pool(const Field& f, Role role) {
  f.expect_keys(keys::kPool);
  Pool p;
  p.role = role;
  if (auto v = f.get("replicas")) p.replicas = int_in(*v, 0, kMaxReplicas);
  if (auto v = f.get("args")) p.args = parse_args(*v, kServeOwnedFlags);
  p.placement = parse_placement(f);
  if (auto v = f.get("terminationGracePeriodSeconds")) p.termination_grace_seconds = int_in(*v, 0, 86400);
  return p;
}

void parse_pools(const Field& spec, InferenceCluster& c) {
  const std::optional<Field> agg = spec.get("aggregated"), pre = spec.get("prefill"),
                             dec = spec.get("decode");
  if (agg && (pre || dec)) agg->fail("cannot be combined with spec.prefill and spec.decode");
  if (agg) {
    c.pools.push_back(parse_pool(*agg, Role::kBoth));
    return;
  }
  if (!pre && !dec) spec.fail("needs spec.aggregated, or spec.prefill and spec.decode");
  if (!dec) throw Error("spec.decode: required with spec.prefill");
  if (!pre) throw Error("spec.prefill: required with spec.decode");
  c.pools.push_back(parse_pool(*pre, Role::kPrefill));
  c.pools.push_back(parse_pool(*dec, Role::kDecode));
}

TransportSpec parse_transport(const std::optional<Field>& f, const InferenceCluster& c) {
  TransportSpec t;
  t.secret_ref = c.name + "-kv-transfer";
  if (!f) return t;
  f->expect_keys(keys::kTransport);
  if (auto v = f->get("type")) {
    const std::string s = v->string();
    if (s == "tcp")
      t.type = TransportType::kTcp;
    else if (s == "shm")
      t.type = TransportType::kShm;
    else if (s == "ucx")
      t.type = TransportType::kUcx;
    else if (s == "auto")
      t.type = TransportType::kAuto;
    else
      v->fail("must be one of tcp, shm, ucx, auto (got {})", quote(s));
  }
  if (auto v = f->get("secretRef")) {
    t.secret_ref = v->string();
    if (!is_dns1123_subdomain(t.secret_ref))
      v->fail("must be a Secret name (a DNS-1123 subdomain) (got {})", quote(t.secret_ref));
  }
  return t;
}

CacheSpec parse_cache(const std::optional<Field>& f) {
  CacheSpec cache;
  if (!f) return cache;
  f->expect_keys(keys::kCache);
  if (auto ks = f->get("kvstore")) {
    ks->expect_keys(keys::kKvStore);
    if (auto v = ks->get("replicas")) cache.kvstore.replicas = int_in(*v, 0, kMaxReplicas);
    cache.kvstore.placement = parse_placement(*ks);
  }
  const std::optional<Field> tiers = f->get("tiers");
  if (!tiers) return cache;
  for (const Field& item : tiers->items()) {
    item.expect_keys(keys::kTier);
    CacheTier t;
    const Field type = item.require("type");
    const std::string name = type.string();
    if (name == "host")
      t.type = TierType::kHost;
    else if (name == "disk")
      t.type = TierType::kDisk;
    else if (name == "remote")
      t.type = TierType::kRemote;
    else
      type.fail("must be one of host, disk, remote (got {})", quote(name));
    if (!cache.tiers.empty()) {
      const TierType prev = cache.tiers.back().type;
      if (prev == t.type) type.fail("{} is listed twice", quote(name));
      // Blocks flow down the tiers (DESIGN.md): the list says that order.
      if (prev > t.type)
        type.fail("tiers go in the order host, disk, remote ({} after {})", quote(name),
                  quote(tier_name(prev)));
    }
    const Field size = item.require("size");
    t.size = size.string();
    const std::optional<double> bytes = parse_quantity(t.size);
    if (!bytes) size.fail("must be a Kubernetes quantity such as 8Gi (got {})", quote(t.size));
    if (!(*bytes > 0)) size.fail("must be > 0 (got {})", quote(t.size));
    if (t.type == TierType::kRemote && cache.kvstore.replicas == 0)
      item.fail("the remote tier needs spec.cache.kvstore.replicas > 0");
    cache.tiers.push_back(std::move(t));
  }
  return cache;
}

// spec.router.config as YAML text again. Scalars keep their quoting so the router reads the
// same types the author wrote; keys are checked for repeats, which yaml-cpp lets through.
yaml::Value to_value(const Field& f) {
  const YAML::Node& n = f.node();
  switch (n.Type()) {
    case YAML::NodeType::Map: {
      yaml::Value m = yaml::Value::map();
      for (const auto& kv : n) {
        if (!kv.first.IsScalar()) f.fail("keys must be strings");
        const Field child(kv.second, fmt::format("{}.{}", f.path(), kv.first.Scalar()));
        if (m.find(kv.first.Scalar())) child.fail("given twice");
        m.set(kv.first.Scalar(), to_value(child));
      }
      return m;
    }
    case YAML::NodeType::Sequence: {
      yaml::Value l = yaml::Value::list();
      for (const Field& item : f.items()) l.push(to_value(item));
      return l;
    }
    case YAML::NodeType::Scalar:
      return n.Tag() == "?" ? yaml::Value::plain(n.Scalar()) : yaml::Value(n.Scalar());
    default:
      return {};
  }
}

RouterSpec parse_router(const std::optional<Field>& f, const InferenceCluster& c, const fs::path& base_dir) {
  RouterSpec r;
  std::optional<Field> config, file;
  if (f) {
    f->expect_keys(keys::kRouter);
    config = f->get("config");
    file = f->get("configFile");
    if (config && file) f->fail("set config or configFile, not both");
    if (auto v = f->get("replicas")) r.replicas = int_in(*v, 0, kMaxReplicas);
    if (auto v = f->get("args")) r.args = parse_args(*v, kRouteOwnedFlags);
    r.placement = parse_placement(*f);
  }
  if (config) {
    if (!config->node().IsMap())
      config->fail("must be a mapping (an EndpointPickerConfig) (got {})", config->describe());
    r.config_yaml = yaml::emit(to_value(*config));
  } else if (file) {
    r.config_file = non_empty(*file);
    r.config_local_path = (base_dir / r.config_file).lexically_normal().string();
    try {
      r.config_yaml = read_text(r.config_local_path);
    } catch (const Error& e) {
      file->fail_message(e.what());
    }
  } else {
    r.config_yaml = std::string(c.disaggregated() ? default_disaggregated_router_config()
                                                  : default_aggregated_router_config());
  }
  try {
    r.uses_kv_events = check_router_config(r.config_yaml);
  } catch (const Error& e) {
    const Field where = config ? *config : file ? *file : Field(YAML::Node(), "spec.router");
    where.fail_message(e.what());
  }
  return r;
}

Autoscaling parse_autoscaling(const Field& f) {
  f.expect_keys(keys::kAutoscaling);
  Autoscaling a;
  if (auto v = f.get("min")) a.min = int_in(*v, 0, kMaxReplicas);
  a.max = int_in(f.require("max"), 0, kMaxReplicas);
  if (a.min > a.max) {
    if (f.has("min")) f.require("min").fail("must be ≤ max ({} > {})", a.min, a.max);
    f.require("max").fail("must be ≥ min, {} by default", Autoscaling::kDefaultMin);
  }
  if (auto slo = f.get("slo")) {
    slo->expect_keys(keys::kSlo);
    auto positive = [](const Field& v) {
      const double x = v.number();
      if (!(x > 0)) v.fail("must be > 0");
      return x;
    };
    if (auto v = slo->get("ttftP90Ms")) a.slo.ttft_p90_ms = positive(*v);
    if (auto v = slo->get("itlP90Ms")) a.slo.itl_p90_ms = positive(*v);
  }
  return a;
}

void parse_all_autoscaling(const Field& f, InferenceCluster& c) {
  f.expect_keys(keys::kAutoscalingPools);
  for (Pool& p : c.pools) {
    const std::optional<Field> a = f.get(pool_key(p.role));
    if (!a) continue;
    p.autoscaling = parse_autoscaling(*a);
    if (p.replicas < p.autoscaling->min || p.replicas > p.autoscaling->max)
      throw Error(fmt::format("spec.{}.replicas: must be within spec.autoscaling.{} ({}..{})",
                              pool_key(p.role), pool_key(p.role), p.autoscaling->min, p.autoscaling->max));
  }
  for (const std::string_view key : keys::kAutoscalingPools) {
    const std::optional<Field> a = f.get(key);
    bool matched = false;
    for (const Pool& p : c.pools) matched = matched || pool_key(p.role) == key;
    if (a && !matched) a->fail("there is no spec.{} pool", key);
  }
}

InferenceCluster parse_document(const YAML::Node& doc, const fs::path& base_dir) {
  if (!doc.IsMap() && !doc.IsNull())
    fail("the document must be a mapping (an InferenceCluster) (got {})", Field(doc, "").describe());
  const Field root(doc, "");
  root.expect_keys(keys::kRoot);
  const Field api = root.require("apiVersion");
  if (api.string() != kApiVersion) api.fail("must be {} (got {})", kApiVersion, quote(api.string()));
  const Field kind = root.require("kind");
  if (kind.string() != kKind) kind.fail("must be {} (got {})", kKind, quote(kind.string()));
  InferenceCluster c;
  parse_metadata(root.require("metadata"), c);
  const Field spec = root.require("spec");
  spec.expect_keys(keys::kSpec);
  if (auto v = spec.get("image")) {
    c.image = non_empty(*v);
    if (c.image.find_first_of(" \t\n") != std::string::npos)
      v->fail("must be an image reference without spaces");
  }
  c.model = parse_model(spec.require("model"), c, base_dir);
  parse_pools(spec, c);
  c.transport = parse_transport(spec.get("transport"), c);
  c.cache = parse_cache(spec.get("cache"));
  c.router = parse_router(spec.get("router"), c, base_dir);
  if (auto v = spec.get("autoscaling")) parse_all_autoscaling(*v, c);
  return c;
}

}  // namespace

InferenceCluster parse_inference_cluster(std::string_view yaml, const fs::path& base_dir) {
  YAML::Node doc;
  try {
    doc = YAML::Load(std::string(yaml));
  } catch (const YAML::ParserException& e) {
    fail("line {}: {}", e.mark.line + 1, e.msg);
  }
  try {
    return parse_document(doc, base_dir);
  } catch (const YAML::Exception& e) {
    fail("{}", e.what());  // a node yaml-cpp could not read: not expected once types are checked
  }
}

InferenceCluster load_inference_cluster(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) fail("cannot read: {}", std::strerror(errno));
  std::stringstream text;
  text << in.rdbuf();
  return parse_inference_cluster(text.str(), file.parent_path());
}

}  // namespace llmd::cluster
