#!/usr/bin/env bash
# One router holding many endpoints (issue 5): N distinct endpoints (127.0.x.y addresses over four
# `llmd serve --sim` processes bound to 0.0.0.0), scraped every --interval-ms; prints how long until
# all were fit, the router's RSS and threads, and its CPU share while scraping.
#
#   bench/route_scale.sh [--endpoints 1000] [--interval-ms 1000] [--build build]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
n=1000 interval=1000 build="$root/build"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --endpoints) n=$2; shift 2 ;;
    --interval-ms) interval=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "route_scale: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
source "$root/scripts/bench-lib.sh"
die() { echo "route_scale: $*" >&2; exit 1; }
llmd="$build/llmd"
[[ -x "$llmd" ]] || die "$llmd not built (make build)"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

ports=()
for _ in 1 2 3 4; do
  p=$(free_port)
  "$llmd" serve --sim --host 0.0.0.0 --port "$p" >/dev/null 2>&1 &
  pids+=($!) ports+=("$p")
done
for p in "${ports[@]}"; do wait_healthy "$p"; done
plist=$(IFS=,; echo "${ports[*]}")
python3 -c "
ports = [$plist]
print('\n'.join(f'127.0.{i // 250}.{i % 250 + 1}:{ports[i % 4]}' for i in range($n)))" >"$work/endpoints"
rport=$(free_port)
start=$(date +%s.%N)
"$llmd" route --port "$rport" --endpoints-file "$work/endpoints" --scrape-interval-ms "$interval" \
  --kv-fingerprint sim:vocab32000 >"$work/router.log" 2>&1 &
router=$!
pids+=($router)
fit=0
for _ in $(seq 600); do
  fit=$(python3 -c "import json, urllib.request; print(json.load(urllib.request.urlopen('http://127.0.0.1:$rport/health', timeout=1))['fit'])" 2>/dev/null || echo 0)
  [[ $fit -ge $n ]] && break
  sleep 0.05
done
elapsed=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
[[ $fit -ge $n ]] || die "only $fit of $n endpoints became fit"
t0=$(awk '{print $14 + $15}' "/proc/$router/stat")
sleep 5
t1=$(awk '{print $14 + $15}' "/proc/$router/stat")
rss=$(awk '/VmRSS/ {print $2}' "/proc/$router/status")
threads=$(awk '/Threads/ {print $2}' "/proc/$router/status")
cpu=$(python3 -c "import os; print(f'{100 * ($t1 - $t0) / os.sysconf(\"SC_CLK_TCK\") / 5:.0f}')")
echo "| endpoints | scrape interval ms | all fit after s | router RSS MiB | threads | router CPU % of a core |"
echo "|---:|---:|---:|---:|---:|---:|"
echo "| $n | $interval | $elapsed | $(python3 -c "print(f'{$rss / 1024:.1f}')") | $threads | $cpu |"
