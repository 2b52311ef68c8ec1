#pragma once
// The `llmd serve` command line of one server of a pool, shared by `llmd render` (a pod) and
// `llmd up` (a local process): what differs between the two is only where things are (ServeSite).
#include <cstdint>
#include <string>
#include <vector>

#include "cluster/spec.hpp"

namespace llmd::cluster {

struct ServeSite {
  std::string model_path;  // the GGUF as the process sees it; empty: none (a simulated model)
  std::string host;        // the HTTP listener
  uint16_t port = 0;
  std::string transport;         // --kv-transfer, when the cluster is disaggregated
  std::string kv_transfer_host;  // the transfer listener
  uint16_t kv_transfer_port = 0;
  std::string advertise_host;      // empty: the transfer listener's address
  std::string kv_events_endpoint;  // empty: no KV events
};

// "serve ..." (the subcommand first). The KV transfer secret is not on it: it travels in the
// environment (LLMD_KV_TRANSFER_SECRET), out of `ps`.
std::vector<std::string> serve_command(const InferenceCluster& c, const Pool& p, const ServeSite& site);

}  // namespace llmd::cluster
