#!/usr/bin/env bash
# What `llmd route` costs in front of a server (issue 5), side by side with HAProxy (Debian's
# haproxy, HTTP mode, keep-alive) proxying the same server: one `llmd serve --sim` with zero
# latency answers short streaming completions (8 prompt tokens, 2 output tokens), driven by
# `llmd bench`, rounds alternating direct / llmd route / haproxy (streaming) / haproxy (default),
# medians of --runs. HAProxy's default holds a chunked response's data back (here each response
# reaches the client in one piece, after its last token; with 50 ms tokens the first one arrives
# after ~200 ms). `option http-no-delay` makes it stream as a token proxy must, as llmd route does.
#   latency:    --request-rate 1000 (Poisson): E2E p50/p99 and what the proxy adds to the direct one
#   throughput: --request-rate inf --max-concurrency 64: requests/s
# Everything shares this machine's cores; read the load average printed with the table.
#
#   bench/route_overhead.sh [--runs 3] [--requests 10000] [--threads 2] [--build build]
# --threads: the I/O threads of every proxy (llmd route --http-threads, haproxy nbthread).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
runs=3 requests=10000 threads=2 build="$root/build"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --requests) requests=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "route_overhead: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
source "$root/scripts/bench-lib.sh"
die() { echo "route_overhead: $*" >&2; exit 1; }
llmd="$build/llmd"
[[ -x "$llmd" ]] || die "$llmd not built (make build)"
command -v haproxy >/dev/null || die "haproxy is not installed (scripts/install-deps.sh installs it)"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

sport=$(free_port) rport=$(free_port) hport=$(free_port) bport=$(free_port)
"$llmd" serve --sim --port "$sport" --max-num-seqs 256 --sim-prefill-ms-per-token 0 --sim-decode-ms-per-step 0 \
  --sim-base-step-ms 0 >"$work/server.log" 2>&1 &
pids+=($!)
wait_healthy "$sport"
"$llmd" route --port "$rport" --http-threads "$threads" --endpoints "127.0.0.1:$sport" --kv-fingerprint sim:vocab32000 >"$work/router.log" 2>&1 &
pids+=($!)
declare -A pid_of=([route]=$!)
start_haproxy haproxy "$hport" "$sport" "$threads" "option http-no-delay"
pids+=($!)
pid_of[haproxy]=$!
start_haproxy haproxy_buffered "$bport" "$sport" "$threads"
pids+=($!)
pid_of[haproxy_buffered]=$!
wait_healthy "$rport"
wait_healthy "$hport"
wait_healthy "$bport"
sleep 0.3

# Prints "e2e_p50 e2e_p99 req/s failed".
one() {
  "$llmd" bench --base-url "http://127.0.0.1:$1" --model sim-model --workload random --input-len 8 --output-len 2 \
    --range-ratio 0 --num-requests "$requests" --warmup 200 "${@:2}" --json "$work/out.json" >/dev/null 2>&1
  python3 -c "import json; j = json.load(open('$work/out.json')); e = j['e2e_ms']; \
print(e['p50'], e['p99'], j['request_throughput'], j['requests_failed'])"
}
cpu_ticks() { [[ -n $1 ]] && awk '{print $14 + $15}' "/proc/$1/stat" || echo 0; }
declare -A lat thr cpu
for _ in $(seq "$runs"); do
  for target in direct:$sport route:$rport haproxy:$hport haproxy_buffered:$bport; do
    name=${target%%:*} port=${target#*:}
    lat[$name]+="$(one "$port" --request-rate 1000)"$'\n'
    c0=$(cpu_ticks "${pid_of[$name]:-}")
    thr[$name]+="$(one "$port" --request-rate inf --max-concurrency 64)"$'\n'
    # The proxy's own CPU per request (user + system), steadier than req/s on shared cores.
    [[ -n ${pid_of[$name]:-} ]] && cpu[$name]+="$(( ($(cpu_ticks "${pid_of[$name]}") - c0) * 1000000 / $(getconf CLK_TCK) / requests ))"$'\n'
  done
done
col() { printf '%s' "$1" | awk -v c="$2" 'NF {print $c}' | median; }
echo "one llmd serve --sim (zero latency), proxies with $threads I/O threads, $requests requests per run, $runs runs alternating, medians; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| path | E2E p50 ms @1000 req/s | E2E p99 ms @1000 req/s | added p50 ms | added p99 ms | max req/s (concurrency 64) | proxy CPU µs/request | failed |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
d50=$(col "${lat[direct]}" 1) d99=$(col "${lat[direct]}" 2)
for name in direct route haproxy haproxy_buffered; do
  p50=$(col "${lat[$name]}" 1) p99=$(col "${lat[$name]}" 2) rps=$(col "${thr[$name]}" 3)
  fails=$(printf '%s%s' "${lat[$name]}" "${thr[$name]}" | awk 'NF {s += $4} END {print s}')
  case $name in
    route) label="llmd route" ;;
    haproxy) label="haproxy (streaming: option http-no-delay)" ;;
    haproxy_buffered) label="haproxy (default: holds the stream back)" ;;
    *) label=$name ;;
  esac
  us=$([[ -n ${cpu[$name]:-} ]] && col "${cpu[$name]}" 1 || echo "")
  awk -v n="$label" -v a="$p50" -v b="$p99" -v c="$d50" -v d="$d99" -v r="$rps" -v f="$fails" -v u="$us" \
    'BEGIN {printf "| %s | %.3f | %.3f | %+.3f | %+.3f | %.0f | %s | %d |\n", n, a, b, a - c, b - d, r, u, f}'
done
