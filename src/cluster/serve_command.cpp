#include "cluster/serve_command.hpp"

#include <cmath>

#include "cluster/k8s_names.hpp"

namespace llmd::cluster {

namespace {

// True when `args` sets one of `names` ("--threads" or "--threads=4").
bool has_flag(const std::vector<std::string>& args, std::initializer_list<std::string_view> names) {
  for (const std::string& a : args)
    for (const std::string_view n : names)
      if (a == n || a.starts_with(std::string(n) + "=")) return true;
  return false;
}

}  // namespace

std::vector<std::string> serve_command(const InferenceCluster& c, const Pool& p, const ServeSite& site) {
  std::vector<std::string> a = {"serve"};
  if (c.model.sim) a.push_back("--sim");
  if (!site.model_path.empty()) a.insert(a.end(), {"--model", site.model_path});
  a.insert(a.end(), {"--served-model-name", c.model.served_name, "--host", site.host, "--port",
                     std::to_string(site.port), "--role", std::string(role_name(p.role))});
  // Compute threads default to every core; a server that asked for N cores gets N.
  if (!c.model.sim && !p.placement.resources.cpu.empty() && !has_flag(p.args, {"-t", "--threads"})) {
    const double cores = parse_quantity(p.placement.resources.cpu).value_or(0);
    if (cores >= 1) a.insert(a.end(), {"--threads", std::to_string(static_cast<int64_t>(std::floor(cores)))});
  }
  if (c.disaggregated()) {
    a.insert(a.end(), {"--kv-transfer", site.transport, "--kv-transfer-host", site.kv_transfer_host,
                       "--kv-transfer-port", std::to_string(site.kv_transfer_port)});
    if (!site.advertise_host.empty())
      a.insert(a.end(), {"--kv-transfer-advertise-host", site.advertise_host});
  }
  if (!site.kv_events_endpoint.empty()) a.insert(a.end(), {"--kv-events-endpoint", site.kv_events_endpoint});
  a.insert(a.end(), p.args.begin(), p.args.end());
  return a;
}

}  // namespace llmd::cluster
