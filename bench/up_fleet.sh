#!/usr/bin/env bash
# How long `llmd up` takes to bring up a cluster: from the command to its "is up" line (every
# server and the router answering /health), then Ctrl-C and the time to stop. Issue 7's target: the
# simulated fleet of 16 servers (examples/sim-fleet.yaml) in under 10 s.
#
#   bench/up_fleet.sh [--runs 5] [--spec examples/sim-fleet.yaml] [--build build]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=5 spec="$root/examples/sim-fleet.yaml" build="$root/build"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --spec) spec=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "up_fleet: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
source "$root/scripts/bench-lib.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export XDG_RUNTIME_DIR="$work"
up_s=() down_s=()
for _ in $(seq "$runs"); do
  t0=$(date +%s.%N)
  "$build/llmd" up "$spec" >"$work/out" 2>"$work/err" &
  pid=$!
  until grep -q "is up" "$work/out" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { cat "$work/err" >&2; exit 1; }
    sleep 0.02
  done
  t1=$(date +%s.%N)
  kill -INT "$pid"
  wait "$pid"
  t2=$(date +%s.%N)
  up_s+=("$(awk -v a="$t1" -v b="$t0" 'BEGIN {print a - b}')")
  down_s+=("$(awk -v a="$t2" -v b="$t1" 'BEGIN {print a - b}')")
done
echo "$(basename "$spec"): up in $(printf '%s\n' "${up_s[@]}" | median) s, stopped in" \
  "$(printf '%s\n' "${down_s[@]}" | median) s (medians of $runs; $(nproc) cores)"
echo "runs (up s): ${up_s[*]}"
