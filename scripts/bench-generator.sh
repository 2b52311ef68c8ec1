#!/usr/bin/env bash
# How fast `llmd bench` itself is: drives `llmd serve --sim` with zero latency (no model work)
# using short streaming requests (8 prompt tokens, 2 output tokens), the generator pinned to one
# core and the server to the others, at several concurrency levels. Prints a markdown table of
# requests/s achieved and of the generator's own CPU time (requests per generator CPU-second is
# what one core of it could drive if the server were infinitely fast). The generator's CPU time is
# its own (getrusage), as `llmd bench --json` reports it in generator_cpu_s.
#
#   scripts/bench-generator.sh [--gen-core 0] [--server-cores LIST] [--http-threads 1]
#                              [--concurrency 16,64,256] [--requests 50000] [--runs 3] [--build build]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
gen_core=0 server_cores="" http_threads=1 concurrency=16,64,256 requests=50000 runs=3 build="$root/build"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --gen-core) gen_core=$2; shift 2 ;;
    --server-cores) server_cores=$2; shift 2 ;;
    --http-threads) http_threads=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    --requests) requests=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "bench-generator: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

source "$root/scripts/bench-lib.sh"
die() { echo "bench-generator: $*" >&2; exit 1; }
llmd="$build/llmd"
[[ -x "$llmd" ]] || die "$llmd not built (make build, or pass --build DIR)"
ncpu=$(nproc)
[[ $ncpu -ge 2 ]] || die "needs 2 cores at least (one for the generator, one for the server)"
# By default the server gets every core but the generator's.
[[ -n "$server_cores" ]] || server_cores=$(seq 0 $(( ncpu - 1 )) | grep -vx "$gen_core" | paste -sd,)

port=$(free_port)
log=$(mktemp)
taskset -c "$server_cores" "$llmd" serve --sim --port "$port" --http-threads "$http_threads" \
  --max-num-seqs 1024 --sim-prefill-ms-per-token 0 --sim-decode-ms-per-step 0 --sim-base-step-ms 0 \
  >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 100); do
  healthy "$port" && break
  kill -0 $server 2>/dev/null || { cat "$log" >&2; die "the server exited"; }
  sleep 0.1
done


echo "generator on core $gen_core, server on cores $server_cores ($http_threads HTTP threads), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| max concurrency | requests/s | generator CPU s per 10k requests | requests per generator CPU-second | failed |"
echo "|---:|---:|---:|---:|---:|"
IFS=, read -ra levels <<<"$concurrency"
for c in "${levels[@]}"; do
  rates=() cpus=() fails=0
  for _ in $(seq "$runs"); do
    json=$(mktemp)
    taskset -c "$gen_core" "$llmd" bench --base-url "http://127.0.0.1:$port" --model sim-model \
      --workload random --input-len 8 --output-len 2 --range-ratio 0 --num-requests "$requests" \
      --warmup 500 --max-concurrency "$c" --json "$json" >/dev/null 2>&1
    read -r rate cpu failed < <(python3 -c "import json; j = json.load(open('$json')); \
print(j['request_throughput'], j['generator_cpu_s'], j['requests_failed'])")
    rates+=("$rate") cpus+=("$cpu") fails=$(( fails + failed ))
    rm -f "$json"
  done
  rate=$(printf '%s\n' "${rates[@]}" | median)
  cpu=$(printf '%s\n' "${cpus[@]}" | median)
  awk -v c="$c" -v r="$rate" -v cpu="$cpu" -v n="$(( requests + 500 ))" -v f="$fails" \
    'BEGIN {printf "| %d | %.0f | %.2f | %.0f | %d |\n", c, r, cpu / n * 1e4, n / cpu, f}'
done
