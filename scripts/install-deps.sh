#!/usr/bin/env bash
# Installs every Debian package the build and the tests need. Idempotent and quiet:
# when everything is already present it does nothing (no apt-get update, no network).
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev nlohmann-json3-dev libfmt-dev libxxhash-dev
  libboost-dev libzmq3-dev cppzmq-dev libmsgpack-cxx-dev libyaml-cpp-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler  # the EPP (Envoy ext_proc)
  libsimdjson-dev  # the router's per-request body parse
  libssl-dev  # libcrypto: HMAC-SHA256 of the KV transfer handshake
  libucx-dev  # the ucx KV transfer backend
  prometheus
  haproxy  # bench/route_overhead.sh compares the router with it
  valgrind curl  # bench/route_instructions.sh counts the router's instructions per request
  clang-format
  libxml2-utils  # xmllint: the bench plot test checks its SVG is well-formed XML
)
# Node.js (for the OpenAI SDK and llama.cpp comparison tools) may come from another
# source than Debian; only ask Debian for it when no npm is on the PATH.
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
