#pragma once
// Readers of the spec's recurring parts (used by spec_parse.cpp): resources, node placement,
// extra command-line arguments and bounded integers, each failing with its field path.
#include <array>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "cluster/spec.hpp"
#include "cluster/yaml_field.hpp"

namespace llmd::cluster {

// An integer in [lo, hi]: "must be ≥ lo" / "must be ≤ hi".
int32_t int_in(const Field& f, int64_t lo, int64_t hi);
// A non-empty string.
std::string non_empty(const Field& f);

// resources, nodeSelector and tolerations of a section (which lists them in its expect_keys).
Placement parse_placement(const Field& section);

// Extra flags for a command; `owned` are the flags the renderer sets itself, refused here so a
// flag never appears twice on one command line.
std::vector<std::string> parse_args(const Field& f, std::span<const std::string_view> owned);

// The flags rendered from the spec, per command.
inline constexpr std::array<std::string_view, 13> kServeOwnedFlags = {"-m",
                                                                      "--model",
                                                                      "--host",
                                                                      "--port",
                                                                      "--role",
                                                                      "--served-model-name",
                                                                      "--sim",
                                                                      "--kv-transfer",
                                                                      "--kv-transfer-host",
                                                                      "--kv-transfer-port",
                                                                      "--kv-transfer-advertise-host",
                                                                      "--kv-transfer-secret",
                                                                      "--kv-events-endpoint"};
inline constexpr std::array<std::string_view, 9> kRouteOwnedFlags = {
    "--host",           "--port",          "--extproc-port", "--config",        "--endpoints",
    "--endpoints-file", "--endpoints-dns", "--tokenizer",    "--kv-events-port"};

}  // namespace llmd::cluster
