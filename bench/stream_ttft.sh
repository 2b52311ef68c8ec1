#!/usr/bin/env bash
# Does a proxy stream tokens as they come? One `llmd serve --sim` producing a token every 50 ms,
# reached direct, behind `llmd route`, behind HAProxy with `option http-no-delay` and behind
# HAProxy's default configuration; `llmd bench` sends one streaming request at a time (8 prompt
# tokens, 10 output tokens) and reports TTFT and E2E p50. A proxy that holds chunks back shows a
# TTFT near its flush delay instead of near the direct one; E2E is the same on every path.
#
#   bench/stream_ttft.sh [--requests 10] [--build build]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
requests=10 build="$root/build"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --requests) requests=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "stream_ttft: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
source "$root/scripts/bench-lib.sh"
die() { echo "stream_ttft: $*" >&2; exit 1; }
llmd="$build/llmd"
[[ -x "$llmd" ]] || die "$llmd not built (make build)"
command -v haproxy >/dev/null || die "haproxy is not installed (scripts/install-deps.sh installs it)"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

sport=$(free_port) rport=$(free_port) hport=$(free_port) bport=$(free_port)
"$llmd" serve --sim --port "$sport" --sim-decode-ms-per-step 50 >"$work/server.log" 2>&1 &
pids+=($!)
wait_healthy "$sport"
"$llmd" route --port "$rport" --endpoints "127.0.0.1:$sport" --kv-fingerprint sim:vocab32000 >"$work/router.log" 2>&1 &
pids+=($!)
start_haproxy haproxy "$hport" "$sport" 1 "option http-no-delay"
pids+=($!)
start_haproxy haproxy_buffered "$bport" "$sport" 1
pids+=($!)
wait_healthy "$rport"
wait_healthy "$hport"
wait_healthy "$bport"
sleep 0.3

echo "| path | TTFT p50 ms | E2E p50 ms |"
echo "|---|---:|---:|"
for target in "direct:$sport" "llmd route:$rport" "haproxy, option http-no-delay:$hport" "haproxy, default:$bport"; do
  "$llmd" bench --base-url "http://127.0.0.1:${target##*:}" --model sim-model --workload random --input-len 8 \
    --output-len 10 --range-ratio 0 --num-requests "$requests" --request-rate inf --max-concurrency 1 \
    --json "$work/out.json" >/dev/null 2>&1 || die "llmd bench failed against ${target%:*}"
  python3 -c "import json; j = json.load(open('$work/out.json')); \
print('| ${target%:*} | %.1f | %.1f |' % (j['ttft_ms']['p50'], j['e2e_ms']['p50']))"
done
