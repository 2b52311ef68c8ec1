#!/usr/bin/env bash
# Continuous batching end to end: starts `llmd serve` on the 160m synthetic model and measures total
# output tok/s of streaming /v1/completions at several concurrency levels with
# build/serve_concurrency_bench (bench/serve_concurrency_bench.cpp), printing a markdown table with
# each level's ratio to one request at a time.
#
#   scripts/bench-serve-concurrency.sh [--model M.gguf] [--preset 160m] [--dtype q8_0] [--threads 2]
#                                      [--max-num-seqs 16] [--concurrency 1,16] [--requests 32]
#                                      [--prompt-tokens 128] [--max-tokens 64] [--min-ratio R]
#                                      [--build build]
#
# Without --model it synthesizes the preset (seed 0) into $BENCH_MODEL_DIR (default /tmp/llmd-bench)
# once. The server's thread pool spin-waits: run on an otherwise idle machine (the client itself
# takes a little CPU), and read the load average printed with the table.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
model="" preset=160m dtype=q8_0 threads=2 max_num_seqs=16 concurrency=1,16 requests=32 prompt=128 gen=64
min_ratio="" build="$root/build"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --model) model=$2; shift 2 ;;
    --preset) preset=$2; shift 2 ;;
    --dtype) dtype=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --max-num-seqs) max_num_seqs=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    --requests) requests=$2; shift 2 ;;
    --prompt-tokens) prompt=$2; shift 2 ;;
    --max-tokens) gen=$2; shift 2 ;;
    --min-ratio) min_ratio=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "bench-serve-concurrency: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

die() { echo "bench-serve-concurrency: $*" >&2; exit 1; }
llmd="$build/llmd" bench="$build/serve_concurrency_bench"
[[ -x "$llmd" ]] || die "$llmd not built (make build, or pass --build DIR)"
[[ -x "$bench" ]] || die "$bench not built (cmake --build $build --target serve_concurrency_bench)"
command -v curl >/dev/null || die "curl is needed to wait for /health"

if [[ -z "$model" ]]; then
  model="${BENCH_MODEL_DIR:-/tmp/llmd-bench}/synth-$preset-$dtype.gguf"
  if [[ ! -f "$model" ]]; then
    mkdir -p "$(dirname "$model")"
    "$llmd" model synth --preset "$preset" --dtype "$dtype" --out "$model" >&2
  fi
fi
[[ -f "$model" ]] || die "$model: no such file"

# A free port: bind port 0, read what the kernel picked, release it.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
# Every sequence's prompt and completion fit; room for all of them at once in the KV cache.
max_seq_len=$(( prompt + gen ))
"$llmd" serve --model "$model" --port "$port" --threads "$threads" --max-num-seqs "$max_num_seqs" \
  --max-seq-len "$max_seq_len" --served-model-name bench >"$log" 2>&1 &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -f "$log"
}
trap cleanup EXIT

for _ in $(seq 1 600); do
  if curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1; then break; fi
  kill -0 "$server" 2>/dev/null || { cat "$log" >&2; die "llmd serve exited"; }
  sleep 0.1
done
curl -sf "http://127.0.0.1:$port/health" >/dev/null || { cat "$log" >&2; die "llmd serve never became healthy"; }
head -1 "$log" >&2

args=(--base-url "127.0.0.1:$port" --concurrency "$concurrency" --requests "$requests"
      --prompt-tokens "$prompt" --max-tokens "$gen" --model bench)
[[ -n "$min_ratio" ]] && args+=(--min-ratio "$min_ratio")
status=0
"$bench" "${args[@]}" || status=$?
echo
echo "model $model, llmd serve --threads $threads --max-num-seqs $max_num_seqs; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
steps=$(curl -sf "http://127.0.0.1:$port/metrics" | grep -E '^vllm:(num_preemptions_total|generation_tokens_total)' || true)
[[ -n "$steps" ]] && echo "$steps"
exit $status
