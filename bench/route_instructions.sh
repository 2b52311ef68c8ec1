#!/usr/bin/env bash
# The router's user-space instructions per proxied request, counted by callgrind: exact and
# repeatable where CPU time on shared cores is not, so each change to the data path can be judged
# by itself. Two runs of the router under callgrind against one `llmd serve --sim` (zero latency),
# N1 and N2 short streaming completions (8 prompt tokens, 2 output tokens, concurrency 16);
# (Ir(N2) - Ir(N1)) / (N2 - N1) leaves out start-up and shutdown.
#
#   bench/route_instructions.sh [--n1 500] [--n2 2500] [--build build]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
n1=500 n2=2500 build="$root/build"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --n1) n1=$2; shift 2 ;;
    --n2) n2=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "route_instructions: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
source "$root/scripts/bench-lib.sh"
die() { echo "route_instructions: $*" >&2; exit 1; }
llmd="$build/llmd"
[[ -x "$llmd" ]] || die "$llmd not built (make build)"
command -v valgrind >/dev/null || die "valgrind is not installed (scripts/install-deps.sh installs it)"
(( n2 > n1 )) || die "--n2 must exceed --n1"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

sport=$(free_port)
"$llmd" serve --sim --port "$sport" --max-num-seqs 256 --sim-prefill-ms-per-token 0 --sim-decode-ms-per-step 0 \
  --sim-base-step-ms 0 >"$work/server.log" 2>&1 &
pids+=($!)
wait_healthy "$sport"

# Prints the instructions the router ran while serving $1 requests.
instructions() {
  local rport rpid
  rport=$(free_port)
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.$1" "$llmd" route --port "$rport" --http-threads 1 \
    --endpoints "127.0.0.1:$sport" --kv-fingerprint sim:vocab32000 --scrape-interval-ms 1000 --staleness-ms 600000 \
    >"$work/router.log" 2>&1 &
  rpid=$!
  pids+=($rpid)
  for _ in $(seq 300); do  # fit: the first scrape has landed, so no request meets a 503
    curl -sf "http://127.0.0.1:$rport/health" 2>/dev/null | grep -q '"fit":1' && break
    sleep 0.1
  done
  "$llmd" bench --base-url "http://127.0.0.1:$rport" --model sim-model --workload random --input-len 8 --output-len 2 \
    --range-ratio 0 --num-requests "$1" --warmup 0 --request-rate inf --max-concurrency 16 --json "$work/out.json" \
    >/dev/null 2>&1
  python3 -c "import json, sys; j = json.load(open('$work/out.json')); \
sys.exit(0 if j['requests_failed'] == 0 and j['requests_completed'] == $1 else 'route_instructions: requests failed')"
  kill -TERM "$rpid"
  wait "$rpid" || true
  callgrind_annotate "$work/cg.$1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'
}
a=$(instructions "$n1")
b=$(instructions "$n2")
echo "llmd route: $(( (b - a) / (n2 - n1) )) user-space instructions per proxied request (callgrind, $n1 vs $n2 requests)"
